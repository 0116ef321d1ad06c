"""Soft Diffusion samplers (soft_diffusion.md): reverse processes for ``x_t = C_t x0 + σ_t η``.

Each update below is one row of the spec's sampler table, for a step t → t' of the grid
``t_start = t_0 > … > t_N = 0`` with ``x̂0 = E[x0 | x_t]`` from the prior (one network
evaluation per step); `engine.samplers.common` runs the loop, draws p_1 and places a
measurement on the path (SDEdit-style restoring).

Decisions and facts (checked in tests/test_samplers.py):

* ``ddim``'s k is a *fraction of σ_{t'}*: ``k_abs = k·σ_{t'}`` (eq. 52 needs
  0 ≤ k_abs ≤ σ_{t'}); k = 0 is deterministic, k = 1 is exactly the naive sampler.
* One ``ddim`` serves every schedule: with ``C_t = √ᾱ_t I`` and ``σ_t = √(1 − ᾱ_t)``
  eq. 52 *is* DDIM (Song et al., eq. 12) with ``σ_DDIM = k_abs``; DDIM's η corresponds to
  ``k_abs = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'})``, and η = 1 is DDPM's
  ancestral step (``ddpm`` in `engine.samplers.vp`).
* With ``C_t ≡ I`` momentum is the VE reverse-SDE Euler–Maruyama step and PF-momentum the
  VE probability-flow Euler step. With ``C_t = √ᾱ_t I`` (VP) PF-momentum is the
  probability-flow Euler step and momentum the reverse SDE of the family
  ``dx = [f − ½(1 + λ²) g² ∇log p] dt + λ g dw̄`` with ``λ² = ᾱ_t``: both are consistent
  samplers, so every method here accepts VE, VP, soft-blur and soft-mask priors.
* ``pc`` [choice]: DDIM (k = 0) predictor on even grid steps, PF-momentum corrector on
  odd ones, so NFE = N (App. F.3).
* ``default_model`` is the shipped learned ``soft-blur`` model; ``example_model`` the
  exact ``empirical-soft-blur`` prior (fast, for demos and the conformance suite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from engine.core.registry import param
from engine.samplers.common import (SOFT_SCHEDULES, Move, SamplerParams, on_corruption_path,
                                    register_sampler, reverse_process, x0_first)


def naive_update(m: Move, x_t, x0_hat, rng):
    return m.C_next(x0_hat) + m.sigma_next * rng.latent_like(x_t)  # Alg. 1


def momentum_update(m: Move, x_t, x0_hat, rng):
    c_x0, drop = m.C(x0_hat), m.sigma**2 - m.sigma_next**2
    e_hat = c_x0 - x_t  # Alg. 2
    z = x_t + drop / m.sigma**2 * e_hat + math.sqrt(drop) * rng.latent_like(x_t)  # eq. 17
    return z + m.C_next(x0_hat) - c_x0


def pf_momentum_update(m: Move, x_t, x0_hat, rng):
    c_x0, drop = m.C(x0_hat), m.sigma**2 - m.sigma_next**2
    return x_t + (m.C_next(x0_hat) - c_x0) + 0.5 * drop / m.sigma**2 * (c_x0 - x_t)  # eq. 51


def ddim_update(m: Move, x_t, x0_hat, rng, k: float = 0.0):
    k_abs = k * m.sigma_next
    x = m.C_next(x0_hat) + math.sqrt(m.sigma_next**2 - k_abs**2) * (x_t - m.C(x0_hat)) / m.sigma  # eq. 52
    return x + k_abs * rng.latent_like(x_t) if k_abs > 0 else x


def pc_update(m: Move, x_t, x0_hat, rng):
    corrector = m.index % 2 == 1  # App. F.3: alternate predictor and corrector
    return (pf_momentum_update if corrector else ddim_update)(m, x_t, x0_hat, rng)


@dataclass
class DDIMParams(SamplerParams):
    k: float = param(0.0, lo=0.0, hi=1.0,
                     help="noise k of eq. 52 as a fraction of σ_t' (0 = deterministic, 1 = naive)")


def naive(prior, measurement, params: SamplerParams, rng):
    """Naive sampler (Alg. 1): re-corrupt x̂0 to the next level."""
    yield from reverse_process(prior, measurement, params, rng, x0_first(naive_update))


def momentum(prior, measurement, params: SamplerParams, rng):
    """Momentum sampler (Alg. 2): remove noise along ê, then move the corruption C_t → C_t'."""
    yield from reverse_process(prior, measurement, params, rng, x0_first(momentum_update))


def pf_momentum(prior, measurement, params: SamplerParams, rng):
    """Probability-flow momentum (eq. 51): the deterministic counterpart of momentum."""
    yield from reverse_process(prior, measurement, params, rng, x0_first(pf_momentum_update))


def ddim(prior, measurement, params: DDIMParams, rng):
    """DDIM-type sampler (eq. 52); on VP priors this is DDIM."""
    rule = x0_first(partial(ddim_update, k=params.k))
    yield from reverse_process(prior, measurement, params, rng, rule)


def pc(prior, measurement, params: SamplerParams, rng):
    """Predictor–corrector (App. F.3): DDIM(k = 0) and PF-momentum on alternate steps."""
    yield from reverse_process(prior, measurement, params, rng, x0_first(pc_update))


SOFT = dict(family="Soft Diffusion", schedules=SOFT_SCHEDULES, default_model="soft-blur",
            supports=on_corruption_path, example_model="empirical-soft-blur",
            example_degradation="blur=2,noise=0.05")

register_sampler("naive", naive, SamplerParams, "Naive re-corruption sampler: fast to "
                 "write, repetitive samples (low diversity).", **SOFT)
register_sampler("momentum", momentum, SamplerParams, "Momentum sampler of Soft Diffusion: "
                 "denoise then de-blur, the paper's best (FID 1.85).", **SOFT)
register_sampler("pf-momentum", pf_momentum, SamplerParams, "Deterministic probability-flow "
                 "momentum sampler.", **SOFT)
register_sampler("ddim", ddim, DDIMParams, "DDIM-type sampler for any linear corruption "
                 "(k = 0 deterministic); DDIM itself on VP models.", **SOFT)
register_sampler("pc", pc, SamplerParams, "Predictor–corrector: DDIM predictor and "
                 "PF-momentum corrector on alternate steps.", **SOFT)
