"""Explicit, per-sample randomness (DESIGN §3).

Every sample of a batch owns a CPU `torch.Generator` seeded with ``seed + k``. Noise is
drawn per sample on the CPU and moved to the working device, so sample k of a batch
equals a single run with seed ``seed + k`` at any batch size and on any device.
Seed 0 is a seed like any other. Library code never touches the global RNG.

The *latent* of a method (all the noise a diffusion sampler draws — its start and the
fresh noise of its steps — or the z of a GAN or flow) is drawn with `SampleRNG.latent`.
With ``latent_seed`` set, every such draw is moved along the great circle from sample
k's own draw (``latent_mix = 0``) to the matching draw of seed ``latent_seed + k``
(``latent_mix = 1``), taken from a second set of generators that advances in step:
spherical interpolation, so the GUI's latent slider explores between two runs while
keeping the noise's typical norm. A method whose draws all go through `latent` gives,
at mix 1, exactly the run of seed ``latent_seed``. (Restoring from a measurement's own
noise level, a sampler's start holds no fresh noise, so the slider acts through the
steps' noise: a deterministic sampler there has no latent to move.)

The *measurement* noise ε of ``y = A x + σ_y ε`` comes from `measurement_noise`, in a
seed domain of its own, so it is independent of every sample's noise for every pair
of seeds. Scheme ``"v2"`` (`MEASUREMENT_NOISE`, recorded in each recipe as
``"measurement_noise"``) draws ε from numpy's PCG64 seeded with
``SeedSequence(measurement_seed, spawn_key=(MEASUREMENT_DOMAIN,))``: another generator
family than the samples' torch Mersenne Twisters, reached through a hash of the seed
and the domain key. (A torch generator in a shifted seed range would not do: torch
seeds its Mersenne Twister from the low 32 bits only, so ``s`` and ``s + 2³²`` share a
stream, and any 32-bit value is some sample's seed.) Scheme ``"v1"``, the recipes made
before the scheme was recorded, drew ε from the torch generator seeded with
``measurement_seed`` — sample k's own stream whenever ``seed + k == measurement_seed``
(with the defaults, sample 0's noise *was* the measurement's). It stays available so
that those recipes reproduce exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.core.step import BadInputError

MEASUREMENT_NOISE = "v2"  # the scheme new jobs use (module doc)
MEASUREMENT_SCHEMES = ("v1", "v2")
MEASUREMENT_DOMAIN = 1  # SeedSequence spawn key of the measurement noise


class SampleRNG:
    """One CPU generator per sample; draws return batched tensors."""

    def __init__(self, seed: int, n: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, latent_seed: int | None = None,
                 latent_mix: float = 0.0):
        if n < 1:
            raise ValueError("need at least one sample")
        self.seed = int(seed)
        self.latent_seed, self.latent_mix = latent_seed, float(latent_mix)
        self.device = torch.device(device)
        self.dtype = dtype
        self.generators = [torch.Generator("cpu").manual_seed(self.seed + k) for k in range(n)]
        self._other = None  # the generators of latent_seed, created on the first latent draw

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int) -> torch.Tensor:
        """A ``(n, *shape)`` standard normal tensor, sample k from generator k."""
        draws = [torch.randn(shape, generator=g, dtype=self.dtype) for g in self.generators]
        return torch.stack(draws).to(self.device)

    def rand(self, *shape: int) -> torch.Tensor:
        draws = [torch.rand(shape, generator=g, dtype=self.dtype) for g in self.generators]
        return torch.stack(draws).to(self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == len(self), "batch size must equal the number of generators"
        return self.randn(*x.shape[1:]).to(dtype=x.dtype)

    def latent(self, *shape: int) -> torch.Tensor:
        """Like `randn`, but moved towards seed ``latent_seed + k``'s draw (module doc)."""
        z = self.randn(*shape)
        if self.latent_seed is None or self.latent_mix == 0.0:
            return z
        if self._other is None:
            self._other = SampleRNG(self.latent_seed, len(self), self.device, self.dtype)
        return slerp(z, self._other.randn(*shape), self.latent_mix)

    def latent_like(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == len(self), "batch size must equal the number of generators"
        return self.latent(*x.shape[1:]).to(dtype=x.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation per sample: ``a`` at w = 0, ``b`` at w = 1."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-30)
    theta = torch.arccos(cos.clamp(-1, 1))[:, None]
    sin = torch.sin(theta).clamp_min(1e-12)
    mixed = torch.where(theta > 1e-6, (torch.sin((1 - w) * theta) * fa + torch.sin(w * theta) * fb) / sin,
                        (1 - w) * fa + w * fb)
    return mixed.to(a.dtype).reshape(a.shape)


def measurement_noise(seed: int, shape: tuple[int, ...], scheme: str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ε of ``y = A x + σ_y ε`` for measurement seed ``seed``: a ``(1, *shape)``
    standard normal draw in ``scheme`` (None: `MEASUREMENT_NOISE`; module doc)."""
    scheme = _check_scheme(scheme) or MEASUREMENT_NOISE
    if scheme == "v1":
        return SampleRNG(seed, 1, dtype=dtype).randn(*shape)
    entropy = int(seed) % 2**64  # negative seeds wrap as torch's do
    stream = np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(entropy, spawn_key=(MEASUREMENT_DOMAIN,))))
    return torch.from_numpy(stream.standard_normal((1, *shape))).to(dtype)


def recipe_measurement_noise(recipe: dict[str, Any]) -> str | None:
    """The scheme to reproduce a recipe's measurement noise with, None for the current one:
    its ``"measurement_noise"``; "v1" for a job's recipe from before that key (it records
    ``"versions"``); None for settings without it that never ran."""
    scheme = recipe.get("measurement_noise")
    if scheme is None and "versions" in recipe:
        return "v1"
    return None if _check_scheme(scheme) == MEASUREMENT_NOISE else scheme


def _check_scheme(scheme: str | None) -> str | None:
    if scheme is not None and scheme not in MEASUREMENT_SCHEMES:
        raise BadInputError(f"unknown measurement-noise scheme {scheme!r} (this version knows "
                            f"{', '.join(MEASUREMENT_SCHEMES)})")
    return scheme
