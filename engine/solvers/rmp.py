"""RMP: reverse mean propagation ("Score-Based Variational Inference for Inverse Problems").

If every reverse step ``p(x_k | x_{k+1}, y)`` is Gaussian, following its *mean* from
``x̄_T`` down to k = 0 lands on ``E[x0 | y]`` whatever ``x̄_T`` was (Theorem 1). Each
step's mean is found by variational inference on the target (posterior.md §1)::

    p̃_k(x) ∝ p(x̄_{k+1} | x_k = x) · p_k(x | y)
    ∇ log p̃_k(x) = a(x̄_{k+1} − a x)/b + s_θ(x, k) + γ_k ∇_x log p(y | x̂0(x))     (eq. 22)

One formulation serves both variants. A grid level is ``(t, gain, signal, var)``: the
state x feeds the network as ``gain·x``, and ``x = signal·x0 + √var ε`` marginally, so
Tweedie gives the score ``s = (signal·x̂0 − x)/var``. A step from level k+1 to k has
the transition ``x̄_{k+1} = a x_k + √b ε`` with ``a = signal_{k+1}/signal_k`` and
``b = var_{k+1} − a² var_k``:

* VP-RMP: the prior's own coordinates: gain 1, signal √ᾱ_k, var 1 − ᾱ_k, so
  ``a = √α_{k+1}``, ``b = β_{k+1}`` (on a strided grid, α = ᾱ_k/ᾱ_{k+1}).
* VE-RMP on a VP network (the "VE view"): ``x̃ = x/√ᾱ_k`` has
  ``x̃ = x0 + σ̃_k ε`` with ``σ̃_k = √((1 − ᾱ_k)/ᾱ_k)``: gain √ᾱ_k, signal 1, var σ̃_k²,
  so ``a = 1``, ``b = δ_k = σ̃_{k+1}² − σ̃_k²``. T levels geometric in σ̃ from
  ``sigma_max`` (capped at the network's largest, ≈157 at k = 1000) to the smallest
  level, each snapped to the nearest integer VP step (kept strictly decreasing).
  On a VE prior the same levels are exact (gain 1).

Decisions:

* The last step (to level 0, σ = 0) never calls the network: ``x̄_0 = x̄_{k_1}/a``, the
  transition-only mean (exact: on a Gaussian posterior the mean chain is
  ``x̄_k = signal_k·m``). NFE = VJPs = ``(T − 1)·T_in``.
* Inner start (``start``): ``transition`` (default, the spec's **[inferred]** start)
  μ = x̄_{k+1}/a zeroes the transition term; ``tweedie`` starts from the reverse mean
  given the previous step's x̂0 (`reverse_mean`, DDPM's eq. 7 mean; x̂0 = 0 before the
  first call). Both have the same fixed point and agree as a → 1 (T ≈ 1000); on a
  coarse grid with T_in = 1 they do not. Measured on the learned vp prior (SR×2, test
  images 100–115, seed 0, PSNR; pinv 18.9): T = 11 (10 NFE) ``transition`` with s1 =
  0.9 / 1.0 / 1.2 / 2 → 4.1 / 4.3 / 17.5 / 15.7 dB (below s1 ≈ 1.1 the state grows
  ≈ 1.3× per step, from RMS 1.2 to 12: μ = x̄/a over-shoots the noise directions
  and one inner step does not pull it back); ``tweedie`` with s1 = 0.3 / 0.5 / 0.9 →
  19.3 / 19.8 / 18.0 dB (ζ = 0.5 / 2 at s1 = 0.5: 18.2 / 18.9; T = 6, T_in = 2: 16.5;
  deterministic inner x: 11.5); deblurring at T = 11: ``tweedie`` s1 = 0.5 17.7 dB,
  the default 4.0. At T = 101 ``transition`` is better (20.5 against 19.5 dB), so it
  stays the default; few-step runs take ``start=tweedie, step_size=0.5``.
* VE-RMP on the learned network (SR×2, test images 100–107/115, seed 0): the paper's
  s1 = 0.1, ζ = 0.07 with the transition start stays near σ̃_max = 50 (T = 31, T_in = 1:
  4.0 dB; ζ = 1: 4.0) — each inner step removes only s1·δ/σ̃²_{k+1} ≈ 4 % of the
  start's noise, so the paper's few-T, T_in ≈ 20 setting is needed. With the
  ``tweedie`` start (the VE reverse mean ``(σ̃_k² x̄ + δ x̂0)/σ̃_{k+1}²``) it works:
  T = 31, ζ = 1, s1 = 0.5 / 0.9 → 23.2 / 24.1 dB (8 images; 16 images: 24.2), ζ = 2:
  23.5; T = 11, s1 = 0.9: 20.6 (16 images). Defaults unchanged (the README's 100-image
  table uses these as explicit parameters). The ``constant`` balance (γ = 1/(2σ_y²),
  the DPS approximation of the likelihood itself) diverges to NaN on these tasks at any
  s1 tried (0.1, the default, and 0.01): with σ_y = 0.02 model units the likelihood
  step s1·V‖AJ‖²/σ_y² exceeds 2 at the low levels, so the explicit step is unstable;
  it is kept for exact-prior checks, where σ_y is larger.
* Fixed precision (Algorithm 2, default): ``μ ← μ + s1·V·G``, V frozen at
  ``b·var_k/var_{k+1}`` (``posterior``: VP β̃, VE ``δσ_k²/σ_{k+1}²``) or ``b``
  (``prior``) **[inferred]**. The transition term is evaluated at μ (exact in
  expectation); the score and likelihood at ``x = μ + √V ε`` (``sample_inner``, the
  default) or at ``x = μ`` (deterministic). Measured on the learned VP network (SR×2,
  demo image 3, T = 30): at μ 10.9 dB with a dark bias — a noise-free mean state is off
  the network's training distribution at level k — at μ + √V ε 16.4 dB. With exact
  scores (defined everywhere) the deterministic form is exact and the tests use it.
* Natural gradient (Algorithm 1, ``precision = natural``): isotropic precision
  ``Λ = λI`` per sample, ``μ ← μ + s1 G/λ``, ``λ ← (1 − s2) λ + s2 (−h)`` with
  ``h = tr(H)/d``. The transition Hessian is exact (``−a²/b``); the rest by Stein's
  lemma, ``E_q[∇²f] = Λ E_q[(x − μ)∇f(x)ᵀ]``, whose trace from the sample
  ``x = μ + λ^{-1/2} ε`` is ``√λ ε·∇f(x)`` (no second-order autograd). λ starts at
  1/V and is kept ≥ ``a²/(2b)`` **[choice]** (a guard against a noisy estimate).
* γ balance **[inferred]**, per image with ``h = ∇_x‖y − A x̂0‖²``: ``norm``:
  ``γ g = −ζ‖s‖ h/‖h‖``; ``residual`` (DPS-style): ``γ g = −ζ h/‖y − A x̂0‖``;
  ``constant``: ``γ g = −ζ h/(2σ_y²)`` (ζ = 1 is the DPS approximation of
  ``∇ log p(y|x)`` itself; needs σ_y > 0).
* Step sizes (s1, ζ) default per task and variant (−1), via `reference_task`: s1 from
  the paper's table; VP ζ = 1 for every task **[measured]**. The paper's FFHQ ζ
  (0.15–0.5) under-weight the likelihood on the 28×28 prior: T = 50, test images
  100–115 (held out from the evaluation's first images), seed 0, PSNR for
  ζ = 0.3 / 0.6 / 1 / 1.5 / 3: SR×2 18.3 / 20.9 / 21.6 / 20.1 / 19.7 (pinv 18.9);
  random inpainting 70 % 20.5 / 20.9 / 21.2 / 21.1 / 21.1 (pinv 9.5); deblur σ_b = 2
  15.2 / 16.1 / 17.2 / – / 15.3; denoising σ = 0.1 19.4 / – / 25.6 / – / 22.7 (input
  21.6). Box inpainting was not measured (ζ = 1 by analogy). With an exact Gaussian
  prior the same ζ = 1 lands near the closed-form posterior mean (tests).
* Float sensitivity: at ζ = 1 the norm balance takes a likelihood step of length
  ζ‖s‖·s1·V whatever the residual, so the chain chatters near consistency and amplifies
  rounding differences between a batched and a single run: max difference of the
  result 7e-4 on the learned vp prior (T = 50, 3 seeds), and 0.8 — chaotic — on the
  atomic ``empirical-vp`` prior (0.15: 2e-7). The conformance suite therefore checks
  RMP's batching and determinism at ζ = 0.15 (``example_params``); a cap of γ near
  consistency would be the fix **[open]**. Reverse KL is mode-seeking: on a bimodal posterior the chain
  lands on the dominant mode's mean, by design.
* ``measurement = None`` drops the likelihood term: RMP then follows the prior's own
  mean chain to ``E[x0]``. Tests use it with an exact posterior as the prior (exact
  posterior scores). The registered method restores only (generates = False).
* Steps: one per outer step; ``x_t`` the mean ``x̄_k`` in the prior's coordinates
  (``gain·x̄_k``), ``x0_hat`` the last x̂0 (the result x̄_0 on the last step);
  extras ``loss`` = RMS of the last inner move ``s1·V·G`` (0 at the step's fixed
  point), ``residual`` = ‖y − A x̂0‖, and ``precision`` = λ under the natural gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch

from engine.core.registry import Measurement, MethodInfo, param, register
from engine.core.rng import SampleRNG
from engine.core.schedules import VPSchedule
from engine.core.step import BadInputError, Step
from engine.solvers.likelihood import norms, per_sample, reference_task, squared_residual_grad

EPS = 1e-12
# (s1, ζ) per variant and task: s1 the paper's table (FFHQ) [row assignment inferred];
# VP ζ re-tuned on the Fashion-MNIST vp prior (module doc; the paper's VP ζ were 0.15 SR,
# 0.3 inpainting, 0.5 deblur), VE ζ the paper's (not re-tuned).
REFERENCE = {"vp": {"sr": (0.9, 1.0), "box": (0.6, 1.0), "random": (0.6, 1.0), "deblur": (0.9, 1.0)},
             "ve": {"sr": (0.1, 0.07), "box": (0.05, 0.1), "random": (0.1, 0.25), "deblur": (0.05, 0.15)}}


@dataclass
class RMPParams:
    variant: str = param("vp", choices=("vp", "ve"), help="VP-RMP, or VE-RMP (VE view of a VP network)")
    steps: int = param(100, lo=2, hi=1000, help="T: outer steps; the last (to σ = 0) needs no network")
    inner: int = param(1, lo=1, hi=100, help="T_in: inner updates per step (each one NFE + one VJP)")
    step_size: float = param(-1.0, lo=-1.0, hi=10.0, help="s1; −1 = the paper's value for the task")
    zeta: float = param(-1.0, lo=-1.0, hi=1e4, help="ζ of the γ balance; −1 = the default for the task")
    balance: str = param("norm", choices=("norm", "residual", "constant"),
                         help="γ: ζ‖s‖/‖∇ log p(y|x̂0)‖, DPS-style ζ/‖y − Ax̂0‖, or ζ (1 = Bayes)")
    precision: str = param("fixed", choices=("fixed", "natural"),
                           help="fixed V (Algorithm 2) or natural-gradient precision (Algorithm 1)")
    variance: str = param("posterior", choices=("posterior", "prior"),
                          help="fixed V: posterior (β̃ / δσ_k²/σ_{k+1}²) or prior (β / δ)")
    sample_inner: bool = param(True, help="fixed V: evaluate the network at μ + √V ε (learned "
                                          "networks need noise at their level), else at μ")
    precision_step: float = param(0.5, lo=0.0, hi=1.0, help="s2: natural-gradient precision step")
    sigma_max: float = param(50.0, lo=0.1, hi=1e4, log=True, help="VE: largest σ̃ (model units)")
    start: str = param("transition", choices=("transition", "tweedie"),
                       help="inner start μ: x̄_{k+1}/a, or the reverse mean given the previous x̂0")


class Level(NamedTuple):
    t: float  # the prior's level
    gain: float  # network input = gain · state
    signal: float  # state = signal · x0 + √var ε
    var: float


def vp_levels(prior, steps: int) -> list[Level]:
    s = prior.schedule
    return [Level(t, 1.0, math.sqrt(s.alpha_bar(t)), 1 - s.alpha_bar(t)) for t in s.grid(steps)]


def ve_levels(prior, steps: int, sigma_max: float) -> list[Level]:
    """``steps + 1`` levels: σ̃ geometric from sigma_max to the smallest, then σ = 0."""
    s = prior.schedule
    if isinstance(s, VPSchedule):
        abar = s.alpha_bars()
        sigmas = ((1 - abar) / abar).sqrt()  # σ̃_k, k = 0 … T
        targets = torch.logspace(math.log10(min(sigma_max, float(sigmas[-1]))),
                                 math.log10(float(sigmas[1])), steps, dtype=torch.float64)
        ks = (sigmas[1:].log()[None] - targets.log()[:, None]).abs().argmin(1) + 1
        ks = ks.tolist()
        for j in range(len(ks) - 2, -1, -1):  # strictly decreasing, bottom up
            ks[j] = max(ks[j], ks[j + 1] + 1)
        ts = [k / s.steps for k in ks]
    else:  # a VE prior: σ(t) = σ_min (σ_max/σ_min)^t
        hi = math.log(min(sigma_max, s.sigma_max) / s.sigma_min) / math.log(s.sigma_max / s.sigma_min)
        ts = [hi * (1 - j / (steps - 1)) for j in range(steps)]
    levels = []
    for t in ts:
        gain = prior.schedule.corruption(t).forward(torch.ones(())).item()
        levels.append(Level(t, gain, 1.0, (prior.schedule.sigma(t) / gain) ** 2))
    return levels + [Level(0.0, 1.0, 1.0, 0.0)]


def likelihood_step(prior, measurement: Measurement | None, x: torch.Tensor, level: Level,
                    zeta: float, balance: str):
    """``(x̂0, s, γ g, ‖y − A x̂0‖)`` at state x: one NFE (+ one VJP with a measurement)."""
    x_in = level.gain * x
    if measurement is None:
        x0_hat = prior.denoise(x_in, level.t)
        score = (level.signal * x0_hat - x) / level.var
        return x0_hat, score, torch.zeros_like(x), None
    x0_hat, grad_sq, residual = squared_residual_grad(prior, measurement, x_in, level.t)
    h = level.gain * grad_sq  # ∇_x ‖y − A x̂0‖² (chain rule through x_in = gain·x)
    score = (level.signal * x0_hat - x) / level.var  # Tweedie
    if balance == "norm":
        weight = zeta * norms(score) / norms(h).clamp_min(EPS)
    elif balance == "residual":
        weight = zeta / residual.clamp_min(EPS)
    else:
        weight = torch.full_like(residual, zeta / (2 * measurement.sigma_y**2))
    return x0_hat, score, -per_sample(weight, h) * h, residual


def reverse_mean(x_bar: torch.Tensor, x0_hat: torch.Tensor, a: float, b: float,
                 level: Level) -> torch.Tensor:
    """``E[x_k | x̄_{k+1}, x0 = x̂0]``: the Gaussian posterior of the transition
    ``x̄_{k+1} = a x_k + √b ε`` under ``x_k ~ N(signal_k x̂0, var_k)`` (DDPM's eq. 7 mean)."""
    upper_var = a**2 * level.var + b
    return (a * level.var * x_bar + b * level.signal * x0_hat) / upper_var


def rmp(prior, measurement: Measurement | None, params: RMPParams, rng: SampleRNG) -> Iterator[Step]:
    if params.variant == "vp" and prior.schedule.kind != "vp":
        raise BadInputError(f"VP-RMP needs a VP prior; {prior.name} is {prior.schedule.kind} "
                            "(use variant=ve)")
    if measurement is not None and params.balance == "constant" and measurement.sigma_y <= 0:
        raise BadInputError("rmp with balance=constant needs measurement noise σ_y > 0")
    task = reference_task(measurement.operator) if measurement is not None else "deblur"
    s1_ref, zeta_ref = REFERENCE[params.variant][task]
    s1 = params.step_size if params.step_size >= 0 else s1_ref
    zeta = params.zeta if params.zeta >= 0 else zeta_ref
    natural = params.precision == "natural"
    levels = vp_levels(prior, params.steps) if params.variant == "vp" else \
        ve_levels(prior, params.steps, params.sigma_max)
    total = len(levels) - 1
    x_bar = math.sqrt(levels[0].var + levels[0].signal**2) * rng.latent(*prior.shape)
    x0_hat = torch.zeros_like(x_bar)  # no estimate before the first network call
    for i, (upper, level) in enumerate(zip(levels, levels[1:])):
        a = upper.signal / level.signal
        b = upper.var - a**2 * level.var
        if level.var == 0:  # the last step: no network at σ = 0
            x_bar = x_bar / a
            yield Step(i, total, level.t, x_bar, x_bar, {})
            continue
        v_fixed = b * level.var / upper.var if params.variance == "posterior" else b
        mu = reverse_mean(x_bar, x0_hat, a, b, level) if params.start == "tweedie" else x_bar / a
        lam = torch.full((len(rng),), 1.0 / v_fixed, dtype=x_bar.dtype, device=x_bar.device)
        for _ in range(params.inner):
            noise = rng.latent_like(mu) if natural or params.sample_inner else None
            spread = per_sample(lam.rsqrt(), mu)
            x = mu if noise is None else mu + spread * noise
            x0_hat, score, guide, residual = likelihood_step(prior, measurement, x, level,
                                                             zeta, params.balance)
            sampled = score + guide
            grad = a * (x_bar - a * mu) / b + sampled  # eq. 22, transition at μ
            move = s1 * per_sample(1.0 / lam, mu) * grad
            if natural:
                stein = lam.sqrt() * (noise * sampled).flatten(1).sum(1)  # tr E[∇²f] (Stein)
                curvature = -a**2 / b + stein / mu[0].numel()
                lam = ((1 - params.precision_step) * lam + params.precision_step * -curvature
                       ).clamp_min(a**2 / (2 * b))
            mu = mu + move
        x_bar = mu.detach()
        extras = {"loss": norms(move) / math.sqrt(mu[0].numel())}
        if residual is not None:
            extras["residual"] = residual
        if natural:
            extras["precision"] = lam
        yield Step(i, total, level.t, level.gain * x_bar, x0_hat, extras)


register(MethodInfo(
    name="rmp", run=rmp, params=RMPParams, kind="solver", family="Posterior (DPS/RMP/APS)",
    summary="Reverse mean propagation: follows the reverse process's mean by variational "
            "inference to E[x0|y] in few steps.",
    nfe=lambda p: (p.steps - 1) * p.inner, schedules=("vp", "ve"), needs_grad=True, default_model="vp",
    generates=False, example_model="empirical-vp", example_degradation="downsample=2,noise=0.02",
    example_params=(("zeta", 0.15),),  # module doc: float sensitivity at ζ = 1
    latent="start x̄_T and the inner samples"))
