"""RGM few-step generation (rgm.md, Algorithm 3), method ``rgm``.

```
y ~ p_T
for t = T−1 … 0:  z ~ N(0, I);  x̂ = G(y, t, z);  y = degrade(x̂, t)
return x̂                  # NFE = T
```

Decisions:

* One Step per level: ``x_t`` is the level-(t+1) observation the generator restores
  (full resolution: RGM-SR's coarse grids are already upsampled nearest by the
  ladder), ``t = (t+1)/T``, ``x0_hat`` the generator's image, ``extras["level"]`` = t.
* Every random draw — the start from p_T, each level's z and each re-degradation's
  noise — goes through `SampleRNG.latent`, so the latent slider moves all of it and at
  mix 1 the run equals the other seed's. At high levels z changes the sample a lot, at
  low ones barely (the paper's Fig. 5).
* ``z_scale`` multiplies z (the truncation trick; 1 = the trained distribution).
* NFE = the model's T (`ladder_levels`: ``nfe_of_model``, so the GUI and the
  conformance suite predict it per model; the job counts it); without a model
  (``nfe(params)``) the RGM-D ladder's T = 4. Restoring a measurement is not RGM's
  sampler's job (that is ``pnp-drs``): every operator is refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from engine.core.capabilities import GENERATE_LADDER
from engine.core.registry import MethodInfo, Measurement, param, register
from engine.core.step import BadInputError, Step


@dataclass
class RGMParams:
    z_scale: float = param(1.0, lo=0.0, hi=2.0,
                           help="scale of the latent z fed to the generator (1 = as trained; "
                                "0 = one deterministic path per start)")


def algorithm3(model, y: torch.Tensor, latent: Callable[..., torch.Tensor], z_scale: float = 1.0
               ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(t, y_{t+1}, x̂)`` for t = T−1 … 0 from a level-T start ``y`` (NFE = T)."""
    for t in reversed(range(model.levels)):
        z = z_scale * latent(model.z_dim) if model.z_dim else None
        x_hat = model.generate(y, t, z)
        yield t, y, x_hat
        if t > 0:
            y = model.degrade(x_hat, t, latent(*y.shape[1:]))


def ladder_levels(model) -> int:
    """T of a ladder model, loaded or as its `ModelSpec` (whose corruption path is the ladder)."""
    ladder = getattr(model, "corruption_path", None) or getattr(model, "schedule", None)
    if not hasattr(ladder, "levels"):
        raise BadInputError(f"{model.name} names no degradation ladder")
    return ladder.levels


def sample_prior(model, rng) -> torch.Tensor:
    """y_T ~ p_T, drawn through the latent."""
    return model.sample_prior(rng.latent(*model.shape))


def rgm(model, measurement: Measurement | None, params: RGMParams, rng) -> Iterator[Step]:
    total = model.levels
    for index, (t, y, x_hat) in enumerate(algorithm3(model, sample_prior(model, rng), rng.latent,
                                                     params.z_scale)):
        yield Step(index, total, (t + 1) / total, y, x_hat, {"level": t})


register(MethodInfo(
    name="rgm", run=rgm, params=RGMParams, kind="sampler", family="RGM",
    summary="Restoration-based generative model: a GAN-prior MAP generator walks the "
            "degradation ladder down in T ≈ 4 network evaluations.",
    nfe=lambda p: 4, nfe_of_model=lambda p, model: ladder_levels(model),
    needs=(GENERATE_LADDER,), default_model="rgm-oracle",
    example_model="rgm-oracle",
    supports=lambda op: False, latent="p_T start, z per level and re-degradation noise"))
