"""Side-by-side with an external implementation: our VP samplers against diffusers.

``python -m engine bench --diffusers`` (needs the optional ``diffusers`` package,
``pip install -e '.[compare]'``; the test extra includes it) runs ``ddim`` (η = 0) and
``ddpm`` (ancestral, σ² = β̃) through our `Job` and through diffusers'
``DDIMScheduler`` (η = 0 and η = 1; DDIM with η = 1 *is* the ancestral DDPM step) driven
by the same network, from the same x_T and with the same per-step noise, and reports
the largest pixel difference and both wall times (medians of alternating runs after a
warm-up, the ratio pair by pair, both on the cached model: the comparison is of the sampling loops, not of
loading weights).

Matching the grids: our ``VPSchedule.grid(N)`` visits ``k = 1000, 1000 − s, …, 0``
(s = 1000/N); diffusers' "trailing" spacing visits ``t = k − 1`` (0-based timesteps)
and ends at ``ᾱ = 1`` with ``set_alpha_to_one``. Noise: we replay our sampler's own
draws — the p_1 start (`sample_p1`), then one ``randn_like`` per step — from a fresh
`SampleRNG` with the same seed, and pass them to diffusers as ``variance_noise``.
"""

from __future__ import annotations

import math
import statistics
import time

import torch

from engine.core.jobs import Job, Request
from engine.evaluation import uncertainty
from engine.priors.catalog import load_model
from engine.core.rng import SampleRNG
from engine.samplers.common import sample_p1
from engine.core.step import BadInputError


def diffusers_scheduler(steps: int):
    try:
        from diffusers import DDIMScheduler
    except ImportError:
        raise BadInputError("the side-by-side needs diffusers: pip install -e '.[compare]'") from None
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                              beta_schedule="linear", clip_sample=False, set_alpha_to_one=True,
                              timestep_spacing="trailing", prediction_type="epsilon")
    scheduler.set_timesteps(steps)
    return scheduler


def diffusers_sample(prior, steps: int, n: int, seed: int, eta: float) -> torch.Tensor:
    """diffusers' DDIM loop on our prior, replaying our sampler's random draws."""
    scheduler = diffusers_scheduler(steps)
    rng = SampleRNG(seed, n)
    x = sample_p1(prior, "refined", rng)
    timesteps = scheduler.timesteps.tolist()
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            level = (t + 1) / prior.schedule.steps
            abar = prior.schedule.alpha_bar(level)
            eps = (x - math.sqrt(abar) * prior.denoise(x, level)) / math.sqrt(1 - abar)
            last = i == len(timesteps) - 1
            noise = rng.randn_like(x) if eta > 0 and not last else torch.zeros_like(x)
            x = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    lo, hi = prior.data_range
    return ((x - lo) / (hi - lo)).clamp(0, 1)


def side_by_side(model: str = "vp", steps: int = 50, n: int = 4, seed: int = 0,
                 repeats: int = 9) -> dict:
    """Both samplers on the same cached model: one warm-up each, then ``repeats``
    alternating runs in A B, B A order (so load on a shared machine and the position in
    a pair hit both alike); medians reported, the ratio as the median of the per-pair
    ratios with their range and the 95 % bootstrap interval of that median.

    Profiled (cProfile, 5 runs each, 2026-12-02): the time outside the network is the
    same for both loops (1.19 s vs 1.25 s under the profiler). What separates them is
    the grad mode: diffusers' pipelines run under ``no_grad`` (as `diffusers_sample`
    does), our jobs under ``inference_mode`` (`engine.core.jobs`), 2.4 % faster for the
    vp network at batch 4 on 2 cores. Single pairs vary by ± 10 %, hence many pairs."""
    if 1000 % steps:
        raise BadInputError(f"steps must divide 1000 for identical grids, got {steps}")
    prior = load_model(model)  # the object our jobs get from the cache
    diffusers_scheduler(steps)  # import diffusers before anything is timed
    report = {"model": model, "steps": steps, "n": n, "seed": seed, "repeats": repeats}
    for ours, eta in (("ddim", 0.0), ("ddpm", 1.0)):
        request = Request(method=f"{ours}@{model}", params={"nfe": steps}, n=n, seed=seed)
        mine = Job(request).run()
        theirs = diffusers_sample(prior, steps, n, seed, eta)
        our_times, their_times = [], []
        ours_run = lambda: our_times.append(seconds(lambda: Job(request).run()))
        theirs_run = lambda: their_times.append(seconds(lambda: diffusers_sample(prior, steps, n, seed, eta)))
        for r in range(repeats):  # A B, B A, …: whichever runs second in a pair is not favoured
            for run in ((ours_run, theirs_run) if r % 2 == 0 else (theirs_run, ours_run)):
                run()
        ratios = [a / b for a, b in zip(our_times, their_times)]  # pair by pair: drift cancels
        ratio_ci = (uncertainty.bootstrap_interval([ratios], statistics.median)
                    if len(ratios) > 1 else None)
        report[ours] = {"diffusers": f"DDIMScheduler(eta={eta:g})",
                        "max_abs_diff": float((mine.samples - theirs).abs().max()),
                        "ours_s": statistics.median(our_times),
                        "diffusers_s": statistics.median(their_times),
                        "ratio": statistics.median(ratios),
                        "ratio_range": [min(ratios), max(ratios)],
                        "ratio_ci": list(ratio_ci) if ratio_ci else None}
    return report


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
