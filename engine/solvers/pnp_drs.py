"""Plug-and-Play Douglas–Rachford restoration (rgm.md, Algorithm 4), method ``pnp-drs``.

For ``y = H x + n`` and ``f(u) = ½‖Hu − y‖²``, with ``x = H⁺ y`` at the start:

```
repeat M times:
  for j = K … 1:
     x̂ = restore(x, j)             # push x into level j, restore it to level j − 1
     u = (1 − α) x + α x̂
     w = prox_{λf}(2u − x)          # (I + λHᵀH)⁻¹(2u − x + λHᵀy)
     x = x + (w − u)
return u
```

Decisions:

* ``restore(x, j)`` is what "any model that can denoise at a level" offers:
  - a ladder model (RGM generator, kind ``rgm-generator``):
    ``G(degrade(x, j), j − 1, z)``;
  - a diffusion prior (learned or exact): ``E[x0 | c(x + σ_j ε)]`` at the level whose
    noise is σ_j (`noise_level`), with σ_j = s_j/a_j of the RGM-D ladder (T = 4) — the
    noise-to-signal ratio the RGM generator sees at level j, so ``pnp-drs@vp`` and
    ``pnp-drs@rgm-d`` run the same algorithm at the same level; ``sigma`` > 0
    overrides it.
  One network evaluation per inner step: NFE = M·K.
* z is drawn once per sample (`SampleRNG.latent`) and kept through the iterations, so
  the solver is a fixed-point iteration and the latent slider moves its result; the
  re-degradation noise is drawn fresh (also through the latent) at every step.
* prox: the operator's own closed form (noise, scaling, block-average SR, masks,
  grayscale → colourisation, blur by its eigen-decomposition); a composition (blur then
  downsampling, a mask on a blurred image …) by the base class's conjugate gradients on
  the SPD system (I + λHᵀH) (`Operator.prox`), so every degradation the studio's sliders
  make is served.
* ``per_noise`` (off by default) reads λ in units of 1/σ_y², i.e. the data term is the
  negative log-likelihood ``f(u) = ‖Hu − y‖²/(2σ_y²)`` and the prox weight is λ/σ_y²
  (σ_y in model units, floored at `SIGMA_Y_FLOOR` = 1/255 for noiseless measurements;
  there a composition's CG prox runs to its iteration cap: 5 s for 8 samples of blur 1
  then ×2 with the default setting, against 2.7 s at noise 0.2). Then one λ serves every noise level: the tuned plain λ of the README
  are 0.1 at σ_y = 0.2 (denoising) and 20–100 at σ_y = 0.02, i.e. λσ_y² = 0.004–0.04,
  where a fixed plain λ trusts a noisy y as much as a clean one (measured in
  ``docs/results/default/``; the studio's default uses it).
* ``start="prox"`` (off by default: the paper starts at H⁺y) starts at
  ``prox_{λf}(0) = (I + λHᵀH)⁻¹ λHᵀy``, the Tikhonov inverse of the same data term. H⁺y of
  a noisy blur amplifies the noise beyond recovery; with the studio's default setting
  (32 test images, ``docs/results/default/``) blur 1.5 at noise 0.05 ends at 4.2 dB from
  H⁺y and 21.4 dB from the prox start, at noise 0.2 3.8 against 18.9 dB. The prox start
  is not better everywhere: with a weak data term it shrinks what a coarse measurement
  says (×4 downsampling at noise 0.2: 11.4 dB against 15.2 from H⁺y); elsewhere the two
  end within 0.45 dB.
* Defaults are Table 6's CIFAR-10 SR×4 column (M = 10, λ = 0.1, α = 0.2, K = 1). The
  whole table (CIFAR SR2, SR4, σ = 10, 20, 40/255; LSUN/CelebA SR4, SR8, colour):
  M = 5, 10, 10, 20, 10, 40, 40, 20; λ = 0.2, 0.1, 0.01, 5, 5, 10, 10, 5;
  α = 0.2, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.5; K = 2 for colourisation, else 1.
  On Fashion-MNIST they are weak (within ~1 dB of Tikhonov; deblurring 8–12 dB): a sweep
  on held-out test images (`docs/results/rgm/pnp_drs_sweep.py`, README's RGM section)
  prefers a stronger data term (λ = 5–100 except for denoising), α = 0.5 (vp) and
  M = 40: +2.9–12.9 dB for ``pnp-drs@vp``. The
  defaults stay the paper's, so that ``pnp-drs`` runs Algorithm 4 as published.
* Step per outer iteration: ``x_t`` = the DRS variable x, ``x0_hat`` = u (the solution),
  ``extras["residual"]`` = RMS of ``Hu − y`` per sample (model units).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from engine.core.capabilities import DENOISE, GENERATE_LADDER
from engine.core.registry import MethodInfo, Measurement, param, register
from engine.core.schedules import RGMSchedule
from engine.core.step import BadInputError, Step

MATCHED_LADDER = RGMSchedule("rgm-d", 4)  # σ_j = s_j/a_j for diffusion priors
SIGMA_Y_FLOOR = 1 / 255  # model units: σ_y of a noiseless measurement when λ is per noise


@dataclass
class PnPDRSParams:
    iterations: int = param(10, lo=1, hi=500, help="outer iterations M (Table 6: 5–40)")
    lam: float = param(0.1, lo=1e-4, hi=1e4, log=True,
                       help="λ of prox_{λf}: weight of the data term (Table 6: 0.01–10)")
    alpha: float = param(0.2, lo=0.0, hi=1.0,
                         help="α: weight of the restored image in u = (1 − α) x + α x̂ (Table 6: 0.05–0.5)")
    levels: int = param(1, lo=1, hi=8, help="K: levels restored per iteration (2 for colourisation)")
    sigma: float = param(0.0, lo=0.0, hi=20.0,
                         help="diffusion priors: denoiser noise σ (model units); 0 = matched to "
                              "RGM-D level j (s_j/a_j)")
    start: str = param("pinv", choices=("pinv", "prox"),
                       help="x at the start: H⁺y (the paper) or prox_{λf}(0), the Tikhonov "
                            "inverse (stable on noisy blur)")
    per_noise: bool = param(False, help="λ in units of 1/σ_y²: the prox weighs the data term "
                                        "by λ/σ_y², so one λ fits every noise level")


def douglas_rachford(x: torch.Tensor, restore: Callable[[torch.Tensor, int], torch.Tensor],
                     prox: Callable[[torch.Tensor], torch.Tensor], iterations: int, alpha: float,
                     levels: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Algorithm 4: yield ``(x, u)`` after each of the M outer iterations."""
    for _ in range(iterations):
        for j in range(levels, 0, -1):
            u = (1 - alpha) * x + alpha * restore(x, j)
            w = prox(2 * u - x)
            x = x + (w - u)
        yield x, u


def level_restorer(model, params: PnPDRSParams, rng) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``restore(x, j)``: one network evaluation that pushes x to level j and restores it."""
    if hasattr(model, "generate"):  # a generator on a degradation ladder
        if params.levels > model.levels:
            raise BadInputError(f"pnp-drs: K = {params.levels} exceeds {model.name}'s {model.levels} levels")
        z = rng.latent(model.z_dim) if model.z_dim else None
        return lambda x, j: model.generate(model.degrade(x, j, rng.latent(*x.shape[1:])), j - 1, z)
    noise_level = getattr(model, "noise_level", None) or model.schedule.noise_level

    def restore(x, j):
        a, std, _ = MATCHED_LADDER.table()[min(j, MATCHED_LADDER.levels)]
        sigma = params.sigma or std / a
        t, c = noise_level(sigma)
        return model.denoise(c * (x + sigma * rng.latent(*x.shape[1:])), t)
    return restore


def pnp_drs(model, measurement: Measurement, params: PnPDRSParams, rng) -> Iterator[Step]:
    op, y = measurement.operator, measurement.y
    restore = level_restorer(model, params, rng)
    lam = params.lam / max(measurement.sigma_y, SIGMA_Y_FLOOR) ** 2 if params.per_noise else params.lam
    prox = lambda v: op.prox(v, y, lam)
    x = op.pinv(y) if params.start == "pinv" else prox(torch.zeros_like(op.adjoint(y)))
    iterates = douglas_rachford(x, restore, prox, params.iterations,
                                params.alpha, params.levels)
    for m, (x, u) in enumerate(iterates):
        residual = (op.forward(u) - y).flatten(1).pow(2).mean(1).sqrt()
        yield Step(m, params.iterations, math.nan, x, u, {"residual": residual})


register(MethodInfo(
    name="pnp-drs", run=pnp_drs, params=PnPDRSParams, kind="solver", family="RGM",
    summary="Plug-and-Play Douglas–Rachford: alternate a learned restoration at a level "
            "with the proximal step of the data term.",
    nfe=lambda p: p.iterations * p.levels, default_model="vp", generates=False,
    needs=(), needs_one_of=(DENOISE, GENERATE_LADDER), schedules=("vp", "ve"),
    example_model="empirical-vp",
    example_degradation="downsample=2,noise=0.02",
    latent="z (RGM generators) and the noise that pushes x to each level"))
