"""Speed benchmarks: ``python -m engine bench --json OUT [--quick]``.

Sections (medians over repeats after a warm-up; ratios within this one run):

* ``overhead``: a full job (``ddim``, N steps) against N bare network evaluations on
  the same batch — what the Step machinery, RNG and bookkeeping cost.
* ``start``: a job on a cached model (``ddim@vp`` restoring σ_y = 0.2): building the
  job (model lookup, parameters, measurement, checks), and the time to its first Step
  (that includes one network evaluation, reported beside it). The goal is < 5 ms to
  start; the first load from disk is reported for contrast.
* ``throughput``: network evaluations per second per shipped model and batch size.
* ``preview``: degraded-preview latency of a 256×256 RGB image per operator (the
  GUI's target is one frame, 16 ms).
* ``memory``: peak resident memory of this process.
* ``photo_job`` (``--photo-job``, alone): a 1-NFE ``ddim@photo`` job on a 512×512 RGB
  photo (the held-out chelsea, resized) at σ_y = 25/255 on the cached model — the issue's
  "seconds per 512×512 RGB image" — against its one network evaluation: wall and CPU
  seconds (``time.process_time``) of building the job (measurement), running its steps
  and finishing it (PSNR/SSIM), medians over repeats.
* ``diffusers`` (``--diffusers``): `engine.evaluation.reference`'s side-by-side.
* ``compile`` (``--compile``, alone: it takes minutes): ``torch.compile`` against eager
  on the VP U-Net at batch 64 and the photo network on one 512×512 RGB image, one
  ``denoise`` per call, in this one run: eager median, the first compiled call (its
  compile seconds: that call minus the eager median) with an empty graph cache, the
  same again after `torch._dynamo.reset` with the cache the first compile filled (what
  a later run pays, `engine.models.compile`), and the compiled median (speed-up =
  eager / compiled).
The GUI's event-loop stall benchmark lives beside it in `studio.bench` (it needs Qt,
which the engine never imports).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch

from engine.core.jobs import Job, Request
from engine.core.operators import Degradation
from engine.core.capabilities import DENOISE
from engine.priors.catalog import CACHE, learned_models, load_model, load_prior, model_spec

PREVIEW_SPECS = {"noise": "noise=0.1", "blur": "blur=2,noise=0.05",
                 "mask": "mask=random:0.5,noise=0.05", "downsample": "downsample=4,noise=0.05",
                 "grayscale": "grayscale,noise=0.05",
                 "composition": "blur=1.5,downsample=2,mask=box:0.3,grayscale,noise=0.05"}


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_preview(repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 256, 256, generator=g)
    noise = {name: torch.randn(Degradation.parse(spec).operator(3).out_shape(image.shape), generator=g)
             for name, spec in PREVIEW_SPECS.items()}
    return {name: {"spec": spec, "ms": 1e3 * median_seconds(
                lambda: Degradation.parse(spec).measure(image, noise[name]), repeats)}
            for name, spec in PREVIEW_SPECS.items()}


def bench_throughput(models: list[str], batches: list[int], repeats: int) -> dict:
    out = {}
    for model in models:
        prior = load_model(model)
        rows = {}
        for b in batches:
            x = torch.randn(b, *prior.shape, generator=torch.Generator().manual_seed(b))
            with torch.no_grad():
                seconds = median_seconds(lambda: prior.denoise(x, 0.5), repeats)
            rows[str(b)] = {"evals_per_s": 1 / seconds, "images_per_s": b / seconds}
        out[model] = rows
    return out


def bench_overhead(model: str, steps: int, batch: int, repeats: int) -> dict:
    prior = load_model(model)
    x = torch.randn(batch, *prior.shape, generator=torch.Generator().manual_seed(0))

    def bare():
        with torch.no_grad():
            for i in range(steps):
                prior.denoise(x, 1 - i / steps)

    job = lambda: Job(Request(method=f"ddim@{model}", params={"nfe": steps}, n=batch)).run()
    bare_s, job_s = median_seconds(bare, repeats), median_seconds(job, repeats)
    return {"model": model, "steps": steps, "batch": batch, "bare_s": bare_s, "job_s": job_s,
            "overhead_per_step_ms": 1e3 * (job_s - bare_s) / steps, "ratio": job_s / bare_s}


def bench_start(model: str, repeats: int) -> dict:
    from engine.io.data import demo_images

    request = Request(method=f"ddim@{model}", image=demo_images()[0][0], n=1,
                      degradation=Degradation.parse("noise=0.2"), params={"nfe": 25})
    CACHE.clear()
    started = time.perf_counter()
    Job(request)
    first_load = time.perf_counter() - started
    prior = load_model(model)
    x = torch.randn(1, *prior.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        one_nfe = median_seconds(lambda: prior.denoise(x, 0.5), repeats)
    return {"model": model, "first_load_ms": 1e3 * first_load,
            "job_start_ms": 1e3 * median_seconds(lambda: Job(request), repeats),
            "first_step_ms": 1e3 * median_seconds(lambda: next(Job(request).steps()), repeats),
            "one_nfe_ms": 1e3 * one_nfe}


def _clocked(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def bench_photo_job(repeats: int, side: int = 512) -> dict:
    import torch.nn.functional as F

    from engine.io.photos import load_photo

    photo = F.interpolate(load_photo("chelsea")[None], size=(side, side), mode="bicubic",
                          antialias=True)[0].clamp(0, 1)
    request = Request(method="ddim@photo", image=photo, n=1, params={"nfe": 1},
                      degradation=Degradation.parse(f"noise={25 / 255:.7f}"))
    prior = load_model("photo")
    rows: dict[str, list] = {k: [] for k in ("network", "build", "steps", "finish", "job")}
    for _ in range(repeats + 1):  # the first round warms up
        with torch.inference_mode():
            network = _clocked(lambda: prior.denoise(photo[None], 0.5))
        build = _clocked(lambda: Job(request))
        job = build[2]
        steps = _clocked(lambda: list(job.steps()) and None)  # steps() ends by finishing
        finish = _clocked(lambda: job.finish(stopped=False))
        whole = (build[0] + steps[0], build[1] + steps[1])
        for key, clocks in zip(rows, (network, build, (steps[0] - finish[0], steps[1] - finish[1]),
                                      finish, whole)):
            rows[key].append(clocks[:2])
    return {"side": side, "psnr": job.result.metrics["psnr"], "threads": torch.get_num_threads(),
            **{key: {"wall_s": statistics.median(w for w, _ in v[1:]),
                     "cpu_s": statistics.median(c for _, c in v[1:])} for key, v in rows.items()}}


def format_photo_job(r: dict) -> str:
    parts = ", ".join(f"{k} {r[k]['wall_s']:.2f} s ({r[k]['cpu_s']:.2f} s CPU)"
                      for k in ("build", "steps", "finish"))
    return (f"ddim@photo, 1 NFE, {r['side']}×{r['side']} RGB, σ_y = 25/255 ({r['threads']} threads, "
            f"PSNR {r['psnr']:.1f} dB): whole job {r['job']['wall_s']:.2f} s wall, "
            f"{r['job']['cpu_s']:.2f} s CPU (goal ≤ 2 s); {parts}; "
            f"the network evaluation alone {r['network']['wall_s']:.2f} s ({r['network']['cpu_s']:.2f} s CPU)")


COMPILE_CASES = (("vp", 64, None), ("photo", 1, (3, 512, 512)))  # (model, batch, image shape)


def bench_compile(repeats: int, cases=COMPILE_CASES) -> dict:
    """Eager vs ``torch.compile`` per case (see the module doc); cold compiles use a
    temporary cache folder, so an earlier run's graphs cannot hide the cost."""
    import os
    import tempfile

    from engine.models.compile import CACHE_ENV

    out = {}
    previous = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory() as folder:
        os.environ[CACHE_ENV] = folder
        try:
            for model, batch, shape in cases:
                if model not in learned_models():
                    continue
                # a fresh object, not the cached one: its compiled network must not leak
                out[f"{model} batch {batch}"] = _compile_case(load_prior(model), batch, shape, repeats)
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous
    return out


def _compile_case(prior, batch: int, shape, repeats: int) -> dict:
    from engine.models.compile import compile_prior

    x = torch.randn(batch, *(shape or prior.shape), generator=torch.Generator().manual_seed(0))
    call = lambda: prior.denoise(x, 0.5)
    eager_network = prior.network

    def first_call() -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    with torch.no_grad():
        eager = median_seconds(call, repeats)
        compile_prior(prior)
        cold = first_call()
        compiled = median_seconds(call, repeats, warmup=0)
        torch._dynamo.reset()  # forget the in-memory graphs; the on-disk cache stays
        prior.network = eager_network
        compile_prior(prior)
        warm = first_call()
        expected = eager_network(x, torch.full((batch,), 0.5))
        max_diff = float((prior.network(x, torch.full((batch,), 0.5)) - expected).abs().max())
    prior.network = eager_network
    return {"shape": list(x.shape), "eager_s": eager, "compiled_s": compiled, "speedup": eager / compiled,
            "compile_s_cold": cold - eager, "compile_s_cached": warm - eager, "max_abs_diff": max_diff,
            "repeats": repeats}


def run(quick: bool = False) -> dict:
    repeats = 3 if quick else 15
    denoisers = [m for m in learned_models() if DENOISE in model_spec(m).capabilities]
    models = denoisers or ["empirical-vp"]  # the network timings are of denoisers
    report = {
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
        "preview": bench_preview(repeats if quick else 50),
        "throughput": bench_throughput(models, [1, 16] if quick else [1, 16, 64], repeats),
        "overhead": bench_overhead(models[0], 10 if quick else 50, 4 if quick else 16,
                                   repeats if quick else 5),
        "start": bench_start("vp" if "vp" in models else models[0], repeats if quick else 30),
    }
    report["memory"] = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return report


def format_report(report: dict) -> str:
    lines = ["degraded preview, 256×256 RGB (target ≤ 16 ms):"]
    lines += [f"  {name:<12} {row['ms']:7.2f} ms   {row['spec']}" for name, row in report["preview"].items()]
    lines.append("network evaluations per second:")
    for model, rows in report["throughput"].items():
        lines += [f"  {model:<12} batch {b:>3}: {r['evals_per_s']:8.1f} evals/s "
                  f"({r['images_per_s']:.0f} images/s)" for b, r in rows.items()]
    o = report["overhead"]
    lines.append(f"job vs bare network ({o['model']}, {o['steps']} steps, batch {o['batch']}): "
                 f"{o['job_s']:.3f} s vs {o['bare_s']:.3f} s, ratio {o['ratio']:.3f}, "
                 f"{o['overhead_per_step_ms']:.2f} ms/step")
    if "start" in report:
        s = report["start"]
        lines.append(f"job start on the cached {s['model']} (goal < 5 ms): {s['job_start_ms']:.2f} ms; "
                     f"first Step {s['first_step_ms']:.1f} ms (one NFE {s['one_nfe_ms']:.1f} ms); "
                     f"first load from disk {s['first_load_ms']:.0f} ms")
    lines.append(f"peak memory: {report['memory']['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def format_compile(rows: dict) -> str:
    lines = ["torch.compile vs eager (one denoise per call, medians of this run):"]
    lines += [f"  {name:<14} {tuple(r['shape'])}: eager {r['eager_s'] * 1e3:8.1f} ms, compiled "
              f"{r['compiled_s'] * 1e3:8.1f} ms, speed-up {r['speedup']:.2f}×; compile "
              f"{r['compile_s_cold']:.1f} s (empty cache), {r['compile_s_cached']:.1f} s (cached); "
              f"max |Δ| {r['max_abs_diff']:.1e}" for name, r in rows.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine bench")
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke check)")
    parser.add_argument("--diffusers", action="store_true",
                        help="also run our VP samplers side by side with diffusers' schedulers")
    parser.add_argument("--compile", action="store_true",
                        help="only torch.compile against eager (VP batch 64, photo 512×512; minutes)")
    parser.add_argument("--photo-job", action="store_true",
                        help="only the 1-NFE ddim@photo job on a 512×512 RGB photo against its network pass")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.photo_job:
        report = {"photo_job": bench_photo_job(3 if args.quick else 5)}
        print(format_photo_job(report["photo_job"]))
        return _save(args.json, report)
    if args.compile:
        report = {"machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
                  "compile": bench_compile(3 if args.quick else 10)}
        print(format_compile(report["compile"]))
        return _save(args.json, report)
    report = run(args.quick)
    print(format_report(report))
    if args.diffusers:
        from engine.evaluation.reference import side_by_side
        model = "vp" if "vp" in learned_models() else "empirical-vp"
        report["diffusers"] = side_by_side(model, steps=20 if args.quick else 50,
                                           repeats=1 if args.quick else 25)
        for name in ("ddim", "ddpm"):
            row = report["diffusers"][name]
            print(f"{name} vs {row['diffusers']} on {model}: max |Δ| {row['max_abs_diff']:.2e}, "
                  f"{row['ours_s']:.3f} s vs {row['diffusers_s']:.3f} s (ratio {row['ratio']:.2f}, "
                  f"pairs {row['ratio_range'][0]:.2f}–{row['ratio_range'][1]:.2f}"
                  + (f", median's 95 % CI {row['ratio_ci'][0]:.3f}–{row['ratio_ci'][1]:.3f})"
                     if row["ratio_ci"] else ")"))
    return _save(args.json, report)


def _save(path: str | None, report: dict) -> int:
    if path:
        from engine.io.export import save_metrics
        from engine.core.step import EngineError
        try:
            save_metrics(path, report)
        except EngineError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0
