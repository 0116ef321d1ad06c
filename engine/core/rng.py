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
"""

from __future__ import annotations

import torch


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
