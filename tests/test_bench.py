"""Benchmark and claims reports: structure and sanity (no timing thresholds)."""

import pytest

from engine.evaluation import bench, claims
from engine.core.step import EngineError


def test_bench_sections_have_positive_medians():
    preview = bench.bench_preview(repeats=2)
    assert set(preview) == set(bench.PREVIEW_SPECS)
    assert all(row["ms"] > 0 for row in preview.values())
    throughput = bench.bench_throughput(["empirical-vp"], [1, 4], repeats=2)
    rows = throughput["empirical-vp"]
    assert set(rows) == {"1", "4"}
    assert rows["4"]["images_per_s"] == pytest.approx(4 * rows["4"]["evals_per_s"])
    overhead = bench.bench_overhead("empirical-vp", steps=3, batch=2, repeats=1)
    assert overhead["bare_s"] > 0 and overhead["job_s"] > 0 and overhead["steps"] == 3
    start = bench.bench_start("empirical-vp", repeats=2)
    assert 0 < start["job_start_ms"] < start["first_step_ms"]
    report = bench.format_report({"preview": preview, "throughput": throughput, "overhead": overhead,
                                  "start": start, "memory": {"peak_rss_mb": 1.0}})
    assert "ratio" in report and "job start" in report


def test_photo_job_section_splits_the_job_into_its_parts():
    from engine.priors.catalog import learned_models

    if "photo" not in learned_models():
        pytest.skip("the photo model is not shipped here")
    r = bench.bench_photo_job(repeats=1, side=64)
    assert r["side"] == 64 and r["psnr"] > 20
    for part in ("network", "build", "steps", "finish", "job"):
        assert r[part]["wall_s"] > 0 and r[part]["cpu_s"] >= 0
    assert r["job"]["wall_s"] >= r["steps"]["wall_s"]
    assert "whole job" in bench.format_photo_job(r)


def test_claims_are_pending_until_their_methods_exist(monkeypatch):
    def unavailable(quick):
        raise EngineError("no model")

    def measured(quick):
        return claims.Outcome("ours 1.0 vs 2.0", verdict="holds")

    monkeypatch.setattr(claims, "CLAIMS", [
        claims.Claim("runs", "paper 1", measured), claims.Claim("breaks", "paper 2", unavailable),
        claims.Claim("later", "paper 3", None)])
    rows = claims.run_claims(quick=True)
    assert [r["verdict"] for r in rows] == ["holds", "pending", "pending"]
    assert rows[1]["ours"] == "could not run: no model"
    assert rows[2]["ours"] == "not yet implemented"
    assert claims.format_table(rows).count("\n") == 4


def test_every_claim_names_its_paper_figure():
    assert len(claims.CLAIMS) == 8
    assert all(c.paper and c.name for c in claims.CLAIMS)


def test_exact_prior_claim_separates_momentum_from_naive():
    """The quick claim: 2000 samples, 100 NFE. Over 10 seeds, covariance error momentum
    0.056 ± 0.005, naive 0.401 ± 0.013: naive's excess 0.345 ± 0.014, so the verdict
    ("holds" when the bootstrap interval of the excess lies above 0) is 25 sd clear.
    The former fixed bound 0.10 at 500 samples / 50 NFE was a coin toss (momentum
    0.109 ± 0.025)."""
    outcome = claims.momentum_beats_naive_exact(quick=True)
    assert outcome.verdict == "holds" and "exact prior" in outcome.ours


@pytest.mark.parametrize("psnr_gap, speed_up, quick, expected", [
    (-0.5, 1000.0, False, "holds"),                      # 0.5 dB inside the 1 dB bound, 10³×
    (-2.0, 1000.0, False, "does not hold"),              # fast, but 2 dB worse
    (-0.5, 20.0, False, "does not hold"),                # good, but not two orders of magnitude
    (-1.0, 1000.0, False, "inconclusive at this size"),  # the gap sits on the 1 dB bound
    (-0.5, 50.0, False, "does not hold"),                # 50× a 100-step DPS: too slow
    (-0.5, 50.0, True, "holds"),                         # 50× a 20-step DPS: bound 20×
])
def test_flow_claim_is_judged_from_the_speed_up_and_the_psnr_gap(monkeypatch, psnr_gap, speed_up,
                                                                  quick, expected):
    """`flow_beats_dps_on_time` on made-up per-image rows (40 images, the flow's PSNR =
    DPS's + gap + a ±0.3 dB wobble, its seconds = DPS's / speed-up × 1.1^±1): the
    verdict comes from the two paired intervals, not from the means alone."""
    import math

    from engine.evaluation import evaluate

    def fake_evaluate(task, methods, n_images, samples, nfe):
        flow, dps = methods
        assert task == "denoise" and samples == 1 and "dps@vp" in methods
        base = [20 + 0.2 * i for i in range(n_images)]
        wobble = [0.3 * math.sin(1.7 * i) for i in range(n_images)]
        seconds = [5.0 + 0.1 * i for i in range(n_images)]
        per_flow = {"psnr": [b + psnr_gap + w for b, w in zip(base, wobble)],
                    "seconds": [s / speed_up * 1.1 ** math.cos(i) for i, s in enumerate(seconds)]}
        per_dps = {"psnr": base, "seconds": seconds}
        row = lambda p: {"psnr": sum(p["psnr"]) / n_images, "seconds": sum(p["seconds"]) / n_images,
                         "per_image": p}
        return {"results": {flow: row(per_flow), dps: row(per_dps)}}, {}

    monkeypatch.setattr(evaluate, "evaluate", lambda task, methods, **kw: fake_evaluate(
        task, methods, 40, kw["samples"], kw["nfe"]))
    outcome = claims.flow_beats_dps_on_time(quick=quick)
    assert outcome.verdict == expected
    assert "faster" in outcome.ours and ("8 images" if quick else "100 images") in outcome.ours
