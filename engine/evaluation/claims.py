"""Small-scale reproductions of each seed paper's headline claim.

``python -m engine claims [--quick] [--json OUT]`` prints: claim, paper figure, our
figure with its 95 % interval, and a verdict. Each claim is one record (`CLAIMS`) with
one function that measures it through the evaluation suite, so a later method adds a
record, not a branch.

Verdicts (`engine.evaluation.uncertainty`) come from the interval of the *difference*
the claim is about, oriented so that positive means "as the paper says": "holds",
"does not hold", or "inconclusive at this size" when the interval straddles 0. Claims
whose methods are not implemented yet are "pending", never a made-up number.
``--quick`` shrinks sample counts and NFE to a smoke check; its intervals are wide and
it says "inconclusive" rather than a wrong verdict where it is too small to decide.

Cost (this 2-core machine): the full run ≈ 8 min for the soft-blur rows (1000 + 1000
samples at 50 NFE dominate) and ≈ 5 min for the soft-mask row (297 s on one thread), plus the RMP/DPS row (100 SR×2 images batched: DPS and RMP at 100 NFE,
RMP at 10, each NFE with a VJP; 98 s on the shared machine at load ≈ 10, its numbers
equal to the README's `engine eval --batch 100` runs), the amortized-flow row (100
denoising images through DPS at 100 NFE: ≈ 6 CPU-seconds each, ≈ 10 CPU-minutes) and the
TIM row (200 SR×4 pairs, 24 candidates per level and up to 16 × 24 code sets each:
≈ 8 CPU-minutes). ``--quick`` < 1 min on an idle machine (52 s with all eight rows, 2026-12-02) (its flow row: 8 images at 20
NFE, ≈ 5 CPU-seconds; its TIM row: 32 pairs, m = 8, ≈ 20 CPU-seconds with the imports).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from typing import Callable

from engine.core.step import EngineError
from engine.evaluation import uncertainty
from engine.evaluation.uncertainty import format_interval


@dataclass(frozen=True)
class Outcome:
    ours: str
    verdict: str  # uncertainty.HOLDS / FAILS / INCONCLUSIVE


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str  # the paper's figure
    measure: Callable[[bool], Outcome] | None  # None: the methods do not exist yet


def compare_generators(better: str, worse: str, n: int, nfe: int):
    """Evaluate two generators on ``n`` samples; return their rows and the 95 % intervals
    of FD(worse) − FD(better) (bootstrap over samples with a shared reference resample)
    and of diversity(better) − diversity(worse) (Welch, disjoint 64-sample blocks)."""
    from engine.evaluation.evaluate import evaluate, feature_network, test_images

    report, pictures = evaluate("generate", [better, worse], n_images=n, nfe=nfe)
    rows = report["results"]
    for row in rows.values():
        if "error" in row:
            raise EngineError(row["error"])
    net = feature_network()
    reference = net.embedding(test_images(n)[0]).double().numpy()  # evaluate's reference
    a, b = (net.embedding(pictures[s]).double().numpy() for s in (better, worse))
    fd_gain = uncertainty.fd_difference_interval(b, a, reference)
    diversity_gain = uncertainty.difference_t_interval(rows[better]["diversity_blocks"],
                                                       rows[worse]["diversity_blocks"])
    return rows[better], rows[worse], fd_gain, diversity_gain


def sampler_beats_sampler(better: str, worse: str, n: int, nfe: int) -> Outcome:
    """FD-FMNIST lower *and* diversity higher for ``better`` than ``worse`` (same n, NFE)."""
    m, v, fd_gain, diversity_gain = compare_generators(better, worse, n, nfe)
    ours = (f"FD-FMNIST {m['fd']:.1f} vs {v['fd']:.1f} (difference {v['fd'] - m['fd']:.1f}, "
            f"95 % CI {format_interval(fd_gain)}); diversity {m['diversity']:.2f} vs "
            f"{v['diversity']:.2f} (difference CI {format_interval(diversity_gain)}); "
            f"{n} samples, {nfe} NFE")
    return Outcome(ours, uncertainty.verdict(fd_gain, diversity_gain))


def ssm_beats_clean_loss(quick: bool) -> Outcome:
    """Soft Diffusion: Soft Score Matching trains a better model than the clean-image
    loss. The shipped ``soft-blur`` (SSM) and ``soft-blur-clean`` share architecture,
    schedule, data, seed, batch and 3600 steps; both sampled with momentum (positive =
    the SSM model's FD is lower)."""
    n, nfe = (128, 10) if quick else (1000, 50)
    m, v, fd_gain, _ = compare_generators("momentum@soft-blur", "momentum@soft-blur-clean", n, nfe)
    ours = (f"FD-FMNIST {m['fd']:.1f} (SSM) vs {v['fd']:.1f} (clean loss), momentum "
            f"(difference {v['fd'] - m['fd']:.1f}, 95 % CI {format_interval(fd_gain)}); "
            f"{n} samples, {nfe} NFE, both trained 3600 steps")
    return Outcome(ours, uncertainty.verdict(fd_gain))


def rgm_few_steps(quick: bool) -> Outcome:
    """RGM: T = 4 network evaluations suffice. Judged against DDPM at the *same* 4 NFE on
    the shipped VP prior (positive = RGM's FD is lower); DDPM needing hundreds of steps
    for the same quality is then the question the README's NFE table answers."""
    n = 128 if quick else 1000
    m, v, fd_gain, _ = compare_generators("rgm@rgm-d", "ddpm@vp", n, nfe=4)
    ours = (f"FD-FMNIST {m['fd']:.1f} (`rgm@rgm-d`) vs {v['fd']:.1f} (`ddpm@vp`), both 4 NFE "
            f"(difference {v['fd'] - m['fd']:.1f}, 95 % CI {format_interval(fd_gain)}); "
            f"{n} samples")
    return Outcome(ours, uncertainty.verdict(fd_gain))


def momentum_beats_naive(model: str, quick: bool) -> Outcome:
    """Soft Diffusion: momentum sampling is far better than naive at equal NFE on the
    learned ``model`` (soft-blur: blur then noise; soft-mask: a shrinking window)."""
    n, nfe = (128, 10) if quick else (1000, 50)
    return sampler_beats_sampler(f"momentum@{model}", f"naive@{model}", n, nfe)


def covariance_error_of(samples, truth) -> float:
    """‖Ĉ − Σ‖/‖Σ‖ of ``samples`` (N, d) against the covariance ``truth`` (d, d)."""
    import torch

    samples = torch.as_tensor(samples)
    cov = torch.cov(samples.reshape(len(samples), -1).T)
    return float(torch.linalg.norm(cov - truth) / torch.linalg.norm(truth))


def sampler_draws(method: str, prior, rng, nfe: int):
    """``len(rng)`` samples of ``method`` from the exact p_1 of ``prior``, flattened."""
    from engine.core import registry

    info = registry.get(method)
    params = registry.make_params(info.params, {"nfe": nfe, "final": "prior"})
    *_, last = info.run(prior, None, params, rng)
    return last.x0_hat.reshape(len(rng), -1)


def covariance_error(method: str, prior, rng, nfe: int) -> float:
    """‖Ĉ − Σ‖/‖Σ‖: the covariance of ``len(rng)`` samples of ``method`` from the exact
    p_1 of a Gaussian ``prior`` against the prior's own (soft_diffusion.md, "Tests")."""
    _, truth = prior.marginal(0.0)
    return covariance_error_of(sampler_draws(method, prior, rng, nfe), truth)


def momentum_beats_naive_exact(quick: bool) -> Outcome:
    """The same claim with the exact score of a 4×4 Gaussian blur+noise prior: the
    samplers alone, no learned network. Positive = naive's covariance error exceeds
    momentum's (bootstrap over samples); exact draws from the prior give the error floor
    at this sample size, for context."""
    import numpy as np
    import torch

    from engine.core.rng import SampleRNG
    from engine.core.schedules import SoftBlurSchedule
    from engine.priors.exact import smooth_gaussian_4px

    # quick: 2000 samples, where momentum's error alone is 9 sd below 0.10 (figures in
    # tests/test_bench.py); the verdict is the interval of naive's excess error
    n, nfe = (2000, 100) if quick else (4000, 200)
    prior = smooth_gaussian_4px(SoftBlurSchedule(blur_max=2.0))
    _, truth = prior.marginal(0.0)
    draws = {name: sampler_draws(name, prior, SampleRNG(0, n, dtype=torch.float64), nfe).numpy()
             for name in ("momentum", "naive")}
    floor = covariance_error_of(prior.sample(n, torch.Generator().manual_seed(1)).reshape(n, -1), truth)
    error = lambda x: covariance_error_of(np.asarray(x), truth)
    gap = uncertainty.bootstrap_interval([draws["naive"], draws["momentum"]],
                                 lambda a, b: error(a) - error(b), resamples=300)
    ours = (f"covariance error {error(draws['momentum']):.3f} vs {error(draws['naive']):.3f} "
            f"(difference CI {format_interval(gap)}; exact draws give {floor:.3f} at this size; "
            f"{n} samples, {nfe} NFE, exact prior)")
    return Outcome(ours, uncertainty.verdict(gap))


# Few-step RMP, chosen on held-out test images 100–115 (SR×2, 10 NFE, PSNR): VE view with
# the tweedie start, s1 = 0.9, ζ = 1: 20.6 dB; VP, tweedie, s1 = 0.5: 19.8; the defaults
# 4.1 (engine/solvers/rmp.py)
FEW_STEP_RMP = {"variant": "ve", "start": "tweedie", "step_size": 0.9, "zeta": 1.0}


def rmp_beats_dps(quick: bool) -> Outcome:
    """RMP: better restorations than DPS at equal NFE, and at 10× fewer (SR×2, vp prior).

    Same images, same measurements, one sample each, every image batched (``batch = n``,
    equal to one-image runs up to rounding). Four parts, each a paired bootstrap interval
    over images oriented "positive = RMP better": PSNR(RMP) − PSNR(DPS) and
    perceptual(DPS) − perceptual(RMP), with RMP at DPS's NFE (``steps`` = N + 1: its last
    step needs no network; default parameters) and at N/10 (the few-step settings
    `FEW_STEP_RMP`, chosen on held-out images 100–115). The verdict needs all four."""
    from engine.evaluation.evaluate import evaluate

    n, nfe = (8, 20) if quick else (100, 100)
    few = max(nfe // 10, 1)
    equal, _ = evaluate("sr2", ["dps@vp", "rmp@vp"], n_images=n, samples=1, nfe=nfe,
                        params={"steps": nfe + 1}, batch=n)
    cheap, _ = evaluate("sr2", ["rmp@vp"], n_images=n, samples=1,
                        params={"steps": few + 1, **FEW_STEP_RMP}, batch=n)
    return rmp_outcome({**equal["results"], "rmp-few": cheap["results"]["rmp@vp"]}, n, nfe, few)


def rmp_outcome(rows: dict, n: int, nfe: int, few: int) -> Outcome:
    """The RMP row from eval rows ``dps@vp``, ``rmp@vp`` (equal NFE) and ``rmp-few``."""
    for row in rows.values():
        if "error" in row:
            raise EngineError(row["error"])
    d = rows["dps@vp"]
    parts, text = [], []
    for key, label in (("rmp@vp", f"{nfe} NFE"), ("rmp-few", f"{few} NFE")):
        r = rows[key]
        psnr_gain = uncertainty.paired_difference_interval(r["per_image"]["psnr"], d["per_image"]["psnr"])
        perceptual_gain = uncertainty.paired_difference_interval(d["per_image"]["perceptual"],
                                                                 r["per_image"]["perceptual"])
        parts += [psnr_gain, perceptual_gain]
        text.append(f"RMP at {label}: PSNR {r['psnr']:.2f} vs {d['psnr']:.2f} dB (difference CI "
                    f"{format_interval(psnr_gain)}), perceptual {r['perceptual']:.3f} vs "
                    f"{d['perceptual']:.3f} (DPS − RMP CI {format_interval(perceptual_gain)}; "
                    f"{uncertainty.verdict(psnr_gain, perceptual_gain)})")
    ours = f"SR×2, DPS at {nfe} NFE; " + "; ".join(text) + f"; {n} images"
    return Outcome(ours, uncertainty.verdict(*parts))


def tim_hierarchical_beats_vanilla(quick: bool) -> Outcome:
    """TIM: hierarchical code selection (m candidates per level) finds a closer sample
    than vanilla selection from m complete code sets (paper Fig. 3: vanilla needs 2–8×
    the samples for the same distance). Shipped ``tim-sr4`` on held-out SR×4 pairs under
    its training distance (`engine.evaluation.tim_study`); positive = hierarchical's
    selected sample is closer (paired over pairs)."""
    from engine.evaluation.evaluate import test_images
    from engine.evaluation.tim_study import FACTORS, compare_selection, format_needs
    from engine.io.data import to_model_range
    from engine.priors.catalog import load_model
    from engine.train.tim import make_distance

    pairs, m, factors = (32, 8, (1, 2, 4, 8)) if quick else (200, 24, FACTORS)
    tower = load_model("tim-sr4")
    r = compare_selection(tower.net, to_model_range(test_images(pairs)[0]),
                          make_distance(tower.info["imle"]["distance"]), m, factors)
    gain = tuple(r["gain_at_equal_samples"]["total"])
    low, high = r["vanilla_needs_ci"]
    ours = (f"`tim-sr4`, SR×4, {pairs} test pairs, m = {m}: summed distance "
            f"{r['hierarchical']['total']['mean']:.4f} (hierarchical) vs "
            f"{r['vanilla']['1m']['total']['mean']:.4f} (vanilla, m code sets), difference CI "
            f"{format_interval(gain)}; vanilla needs {format_needs(r['vanilla_needs'], factors[-1])}× m "
            f"(95 % CI {format_needs(low, factors[-1])}–{format_needs(high, factors[-1])})")
    return Outcome(ours, uncertainty.verdict(gain))


FASTER_BY = 100.0  # "orders of magnitude": at least two (see `flow_beats_dps_on_time`)
MODEST_COST_DB = 1.0  # "a modest PSNR cost": under 1 dB


def flow_beats_dps_on_time(quick: bool) -> Outcome:
    """APS: one flow pass per posterior sample, orders of magnitude faster than DPS at a
    modest PSNR cost. The shipped ``aps-denoise`` against ``dps@vp`` on denoising
    σ = 0.1, same images, measurements and process, one sample each.

    Two parts, each a paired bootstrap interval over images, positive = as the paper
    says: the mean of log10(seconds DPS / seconds flow) − log10(`FASTER_BY`) (at least
    100× faster) and PSNR(flow) − PSNR(DPS) + `MODEST_COST_DB` (a cost under 1 dB); the
    two thresholds are our reading of "orders of magnitude" and "small" **[choice]**.
    DPS runs 100 NFE (the reference 1000 would make the ratio 10× larger); the quick
    form's 20-NFE DPS is held to the proportional 20× (DPS's time is linear in NFE), so
    a short chain does not turn into a verdict against the flow."""
    import numpy as np

    from engine.evaluation.evaluate import evaluate

    n, nfe = (8, 20) if quick else (100, 100)
    flow, dps = "aps@aps-denoise", "dps@vp"
    report, _ = evaluate("denoise", [flow, dps], n_images=n, samples=1, nfe=nfe)
    rows = report["results"]
    for row in rows.values():
        if "error" in row:
            raise EngineError(row["error"])
    f, d = rows[flow]["per_image"], rows[dps]["per_image"]
    log_ratio = np.log10(d["seconds"]) - np.log10(f["seconds"])
    speed = uncertainty.mean_interval(log_ratio) or (float("nan"),) * 2
    psnr_gap = uncertainty.paired_difference_interval(f["psnr"], d["psnr"])
    faster = tuple(v - np.log10(FASTER_BY * nfe / 100) for v in speed)  # per 100 DPS steps
    modest = tuple(v + MODEST_COST_DB for v in psnr_gap)
    ours = (f"denoise σ = 0.1: {rows[dps]['seconds'] / rows[flow]['seconds']:.0f}× faster "
            f"(mean log10 ratio {log_ratio.mean():.2f}, CI {format_interval(speed)}); PSNR "
            f"{rows[flow]['psnr']:.2f} vs {rows[dps]['psnr']:.2f} dB (difference CI "
            f"{format_interval(psnr_gap)}); {n} images, DPS at {nfe} NFE")
    return Outcome(ours, uncertainty.verdict(faster, modest))


CLAIMS = [
    Claim("Soft Diffusion: momentum sampler beats naive (FD and diversity, equal NFE)",
          "FID 1.85 vs 27.8 (CelebA-64)", partial(momentum_beats_naive, "soft-blur")),
    Claim("Soft Diffusion, masks (`soft-mask`): momentum sampler beats naive",
          "naive: repetitive, low-diversity samples", partial(momentum_beats_naive, "soft-mask")),
    Claim("Soft Diffusion, exact score: momentum keeps the prior's covariance, naive does not",
          "naive: repetitive, low-diversity samples", momentum_beats_naive_exact),
    Claim("Soft Diffusion: Soft Score Matching beats the clean-image loss",
          "FID 1.85 vs 5.91 (CelebA-64)", ssm_beats_clean_loss),
    Claim("RGM: ≈4 network evaluations where DDPM needs hundreds",
          "FID 2.47 at 4 NFE (RGM-KLD-D, CIFAR-10)", rgm_few_steps),
    Claim("RMP beats DPS at equal or lower cost", "lower LPIPS/FID at ≤ NFE", rmp_beats_dps),
    Claim("Amortized flow: orders of magnitude faster than DPS, modest quality cost",
          "≈ 10⁴× faster than DPS at a small PSNR cost", flow_beats_dps_on_time),
    Claim("TIM: hierarchical sampling beats vanilla at equal sample count",
          "vanilla needs 2–8× the samples for the same distance (Fig. 3)",
          tim_hierarchical_beats_vanilla),
]


def run_claims(quick: bool) -> list[dict]:
    rows = []
    for claim in CLAIMS:
        row = {"claim": claim.name, "paper": claim.paper}
        if claim.measure is None:
            row.update(ours="not yet implemented", verdict="pending")
        else:
            try:
                outcome = claim.measure(quick)
                row.update(ours=outcome.ours, verdict=outcome.verdict)
            except EngineError as err:
                row.update(ours=f"could not run: {err}", verdict="pending")
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| claim | paper | ours (95 % intervals) | verdict |", "|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['paper']} | {r['ours']} | {r['verdict']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine claims")
    parser.add_argument("--quick", action="store_true", help="smoke check (< 1 minute)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = run_claims(args.quick)
    print(format_table(rows))
    if args.json:
        from engine.io.export import save_metrics
        try:
            save_metrics(args.json, {"quick": args.quick, "claims": rows})
        except EngineError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0
