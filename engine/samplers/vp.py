"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on a VP prior.

``x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε`` (linear β 1e-4 → 0.02, T = 1000). The prior answers
x̂0; ``ε̂ = (x_t − √ᾱ_t x̂0)/√(1 − ᾱ_t)``. A strided grid ``k_0 > … > k_N = 0``
(`VPSchedule.grid`) takes any NFE from a few to 1000: a step k → k' uses
``α = ᾱ_k/ᾱ_k'``, ``β = 1 − α`` and the posterior variance
``β̃ = (1 − ᾱ_k')/(1 − ᾱ_k) β`` (eq. 7), so at NFE = 1000 it is Ho et al.'s sampler with
σ_t² = β̃_t, and the last step (k' = 0, β̃ = 0) returns x̂0.

DDIM lives in `engine.samplers.soft_diffusion` (``ddim``): for VP its eq. 52 is DDIM, and
DDPM is its η = 1 case; this ancestral form is kept as the classic reference.
Restoring a noise-only y starts at the VP level whose σ_t/√ᾱ_t matches σ_y (common.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.core.registry import param
from engine.samplers.common import (Move, SamplerParams, noise_only, register_sampler,
                                    reverse_process, x0_first)


def ddpm_update(m: Move, x_t, x0_hat, rng):
    abar, abar_next = m.C.c**2, m.C_next.c**2  # C_t = √ᾱ_t I
    alpha = abar / abar_next
    beta = 1 - alpha
    eps_hat = (x_t - math.sqrt(abar) * x0_hat) / math.sqrt(1 - abar)
    mean = (x_t - beta / math.sqrt(1 - abar) * eps_hat) / math.sqrt(alpha)  # Alg. 2, line 4
    var = (1 - abar_next) / (1 - abar) * beta  # β̃, eq. 7
    return mean + math.sqrt(var) * rng.latent_like(x_t) if var > 0 else mean


@dataclass
class DDPMParams(SamplerParams):
    nfe: int = param(1000, lo=1, hi=1000, help="timesteps = network evaluations (stride 1000/nfe)")


def ddpm(prior, measurement, params: DDPMParams, rng):
    """DDPM ancestral sampler (Alg. 2) with posterior variance β̃ on a strided grid."""
    yield from reverse_process(prior, measurement, params, rng, x0_first(ddpm_update))


register_sampler("ddpm", ddpm, DDPMParams, "DDPM ancestral sampling (Ho et al.): the VP "
                 "baseline, hundreds of network evaluations.",
                 family="DDPM", schedules=("vp",), default_model="vp", supports=noise_only,
                 example_model="empirical-vp", example_degradation="noise=0.1")
