"""Evaluation suite: every method on the same images, degradation and seeds.

``python -m engine eval --task TASK --methods a,b@model,... [--n-images N] [--first I]
[--samples K] [--nfe N] [--seed S] [--batch B] --json OUT [--grid PNG]`` writes::

    {"task", "config", "results": {spec: {"psnr", "ssim", "fd", "perceptual",
                                          "diversity", "diversity_score", "fwv",
                                          "best_of_n_psnr",
                                          "fwv@σ" for σ in the grid, "nfe", "seconds",
                                          "n_images", "<metric>_ci", "per_image"}}}

Decisions:

* Tasks are data (`TASKS`): a degradation spec in [0, 1] image units, or None for
  unconditional generation. New methods and tasks need no code here.
* Images: the Fashion-MNIST test split when installed, else the bundled demo set
  (``config["images"]`` says which); image i uses measurement seed i and sample seeds
  ``seed + K·i …``, the same for every method. ``--first I`` starts at test image I
  (its index i keeps its seeds): parameters are tuned on images held out from the
  first ones that the tables report (e.g. ``--first 100 --n-images 20``).
* Metrics: PSNR/SSIM are means over images of the per-sample means; "perceptual" and
  "fd" use the project's Fashion-MNIST feature network (FD-FMNIST, not FID). FD is
  reported only from `MIN_FD_SAMPLES` images up (a Fréchet distance of a handful of
  points is noise); diversity, FWV and best-of-K PSNR (the best of an image's K
  samples, then averaged over images) need K > 1. A metric that cannot be measured is
  omitted, never faked. seconds = method wall time per image; nfe and vjp per sample.
* ``--batch B`` restores B images per run (`run_batched`): each image keeps its
  measurement and sample seeds, so the samples equal the one-image runs up to float
  rounding, and the posterior solvers' cost per image drops several-fold on CPU (one
  network call for B images). Its seconds are the batch's wall time / B: a throughput,
  not one image's latency.
* Every compared figure carries its 95 % interval as ``<metric>_ci = [low, high]``
  (`engine.evaluation.uncertainty`): bootstrap over images for the per-image means,
  bootstrap over samples for FD, disjoint blocks of 64 samples for the diversity of
  generation. ``per_image`` keeps each image's values so that two methods run on the
  same images can be compared by a paired bootstrap (claims do).
* Generation's diversity is the mean over disjoint blocks of 64 samples (all of them,
  not only the first 64), so its interval comes from the blocks' spread.
* One-to-many metrics (tim.md §Metrics, `engine.evaluation.metrics`): "diversity" is
  the mean pairwise RMS pixel distance, "diversity_score" the mean pairwise perceptual
  distance; FWV weighs each sample's perceptual distance to the samples' mean by
  ``exp(−d(sample, clean)/(2σ²))`` (faithfulness to the clean image, with the same
  perceptual distance), on the σ grid `metrics.FWV_SIGMAS` (``"fwv@σ"``); "fwv" is
  the value at `FWV_SIGMA`. One-to-one methods score 0 on all of them.
* Photo tasks (``photo-*``) run on the centre 256×256 crops of the three held-out
  photos (`engine.io.photos.test_crops`); the Fashion-MNIST feature metrics
  (perceptual, FD, FWV) are omitted there, diversity stays (pixel-based).
* A method that cannot serve a task gets ``{"error": message}``; the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch

from engine.evaluation import metrics, uncertainty

from engine.core import registry
from engine.core.jobs import Job, Request, grad_mode
from engine.core.operators import Degradation
from engine.core.rng import SampleRNG
from engine.core.step import EngineError

MIN_FD_SAMPLES = 100
FWV_SIGMA = 0.3  # the σ of the grid reported as "fwv" in tables (perceptual distance units)


@dataclass(frozen=True)
class Task:
    degradation: str | None
    summary: str
    images: str = "fashion-mnist"  # or "photos": centre crops of the held-out photos


TASKS = {
    "generate": Task(None, "unconditional generation: FD-FMNIST against test images, diversity"),
    "denoise": Task("noise=0.1", "additive Gaussian noise σ = 0.1"),
    "sr2": Task("downsample=2,noise=0.01", "2× block-average super-resolution, σ_y = 0.01"),
    "sr4": Task("downsample=4,noise=0.01", "4× block-average super-resolution, σ_y = 0.01"),
    "deblur": Task("blur=2,noise=0.01", "Gaussian blur σ_b = 2, σ_y = 0.01"),
    "inpaint-box": Task("mask=box:0.5,noise=0.01", "centred box hole of half the side"),
    "inpaint-random": Task("mask=random:0.7,noise=0.01", "70 % of the pixels dropped"),
    **{f"photo-denoise-{level}": Task(f"noise={level / 255:.7f}", f"photo, Gaussian noise σ = {level}/255",
                                      "photos") for level in (15, 25, 50)},
    "photo-sr2": Task("downsample=2,noise=0.01", "photo, 2× block-average SR, σ_y = 0.01", "photos"),
    "photo-deblur": Task("blur=2,noise=0.01", "photo, Gaussian blur σ_b = 2, σ_y = 0.01", "photos"),
    "photo-inpaint": Task("mask=random:0.5,noise=0.01", "photo, half of the pixels dropped", "photos"),
}


def test_images(n: int, kind: str = "fashion-mnist", first: int = 0) -> tuple[torch.Tensor, str]:
    """n test images from index ``first``: Fashion-MNIST test split if installed, else the
    demo set (up to its 64 images; more is an error that says how to get the dataset); for
    ``kind="photos"`` the centre crops of the held-out photos (`engine.io.photos`)."""
    from engine.io.data import HOW_TO_GET, demo_images, load_fashion_mnist
    from engine.io import photos

    if kind == "photos":
        images = photos.test_crops()
        source = f"held-out photos {', '.join(photos.TEST_PHOTOS)}: centre {photos.EVAL_CROP}² crops"
    else:
        try:
            images, source = load_fashion_mnist("test")[0], "fashion-mnist test split"
        except EngineError:
            images, source = demo_images()[0], "bundled demo set"
    if first + n > len(images):
        hint = f"; for more, {HOW_TO_GET}" if source == "bundled demo set" else ""
        raise EngineError(f"only {len(images)} test images available ({source}), asked for "
                          f"{first} + {n}{hint}")
    return images[first:first + n], source


def feature_network():
    from engine.models.features import load_feature_network
    return load_feature_network()


def _method_params(spec: str, nfe: int | None, extra: dict | None = None) -> dict:
    """``nfe`` and the ``--param`` values, for the methods whose parameters have them."""
    name, _ = registry.split_spec(spec)
    fields = {f.name for f in dataclasses.fields(registry.get(name).params)}
    given = {**(extra or {}), **({"nfe": nfe} if nfe is not None else {})}
    return {k: v for k, v in given.items() if k in fields}


def restore_all(spec: str, images: torch.Tensor, degradation: Degradation, samples: int,
                nfe: int | None, seed: int, net, params: dict | None = None, first: int = 0,
                batch: int = 1) -> tuple[dict, torch.Tensor]:
    """Run one method on every image (test indices ``first …``), ``batch`` images per job
    (module doc); returns its metric row and the first samples."""
    rows, firsts = [], []
    perceptual = lambda x, ref: metrics.perceptual_distance(x, ref, net.features)
    if net is None:  # photos: the feature network knows Fashion-MNIST only
        perceptual = None
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        jobs = [Job(Request(method=spec, image=image, degradation=degradation,
                            params=_method_params(spec, nfe, params), seed=seed + samples * i,
                            n=samples, measurement_seed=i, source=f"test:{i}"))
                for i, image in enumerate(chunk, first + start)]
        results = [jobs[0].run()] if len(jobs) == 1 else run_batched(jobs)
        for image, result in zip(chunk, results):
            rows.append(image_row(result, image, samples, perceptual))
            firsts.append(result.samples[0])
    per_image = {k: [r[k] for r in rows] for k in rows[0]}
    summary = summarise(per_image)
    summary["n_images"] = len(images)
    restored = torch.stack(firsts)
    if len(images) >= MIN_FD_SAMPLES and net is not None:
        summary.update(fd_with_interval(net.embedding(restored), net.embedding(images)))
    return summary, restored


def run_batched(jobs: list[Job]) -> list[SimpleNamespace]:
    """One batched run of the method for several prepared single-image jobs.

    Sample k of job j has seed ``job.request.seed + k`` as in its own run, and every job
    keeps its own measurement (y stacked along the batch; the operator is the same, since
    it depends on the degradation spec only), so the samples equal the one-job-per-image
    run up to float rounding (the conformance suite checks batched against single runs).
    ``seconds`` is the batch's wall time divided evenly among its images."""
    lead = jobs[0]
    n = lead.request.n
    seeds = [job.request.seed for job in jobs]
    if seeds != list(range(seeds[0], seeds[0] + n * len(jobs), n)):
        raise EngineError("batched evaluation needs consecutive sample seeds")
    if lead.measurement is None:
        raise EngineError("batched evaluation restores measurements only")
    measurement = registry.Measurement(torch.cat([job.measurement.y for job in jobs]),
                                       lead.measurement.operator, lead.measurement.sigma_y,
                                       lead.measurement.x_shape)
    rng = SampleRNG(seeds[0], n * len(jobs), device=lead.request.device)
    nfe, vjp = lead.nfe, lead.vjp
    started = time.perf_counter()
    with grad_mode(lead.info):  # as `Job.steps` advances it
        *_, last = lead.info.run(lead.prior, measurement, lead.params, rng)
    seconds = (time.perf_counter() - started) / len(jobs)
    nfe, vjp = lead.nfe - nfe, lead.vjp - vjp
    results = []
    for job, x0_hat in zip(jobs, last.x0_hat.split(n)):
        out = job.to_unit(x0_hat.float().cpu()).clamp(0, 1)
        results.append(SimpleNamespace(samples=out, metrics={
            "nfe": nfe, "vjp": vjp, "seconds": seconds, **metrics.sample_metrics(out, job.clean)}))
    return results


def image_row(result, image: torch.Tensor, samples: int, perceptual) -> dict:
    """The metric row of one image from its job's result."""
    row = {k: result.metrics[k] for k in ("psnr", "ssim", "nfe", "vjp", "seconds") if k in result.metrics}
    if perceptual is not None:
        row["perceptual"] = float(perceptual(result.samples, image).mean())
    if samples > 1:
        row["diversity"] = result.metrics["diversity"]
        row["best_of_n_psnr"] = max(result.metrics["psnr_per_sample"])
        if perceptual is not None:
            row["diversity_score"] = metrics.diversity_score(result.samples[None], perceptual)
            grid = metrics.faithfulness_weighted_variance(result.samples[None], image[None],
                                                          distance=perceptual)
            row.update(fwv=grid[FWV_SIGMA], **{f"fwv@{s:g}": v for s, v in grid.items()})
    return row


def summarise(per_image: dict[str, list[float]]) -> dict:
    """Means over images with their bootstrap intervals, and the per-image values."""
    summary = {}
    for key, values in per_image.items():
        summary[key] = sum(values) / len(values)
        interval = uncertainty.mean_interval(values) if key not in ("nfe", "vjp") else None
        if interval is not None:
            summary[f"{key}_ci"] = list(interval)
    summary["per_image"] = {k: v for k, v in per_image.items() if k not in ("nfe", "vjp")}
    return summary


def fd_with_interval(features: torch.Tensor, reference: torch.Tensor) -> dict:
    features, reference = features.double().numpy(), reference.double().numpy()
    return {"fd": metrics.frechet_distance(features, reference),
            "fd_ci": list(uncertainty.fd_interval(features, reference))}


def block_diversity(samples: torch.Tensor, net) -> dict:
    """Feature diversity as the mean over disjoint 64-sample blocks, with its interval."""
    if len(samples) < 2:
        return {}
    block = min(uncertainty.DIVERSITY_BLOCK, len(samples))
    embedding = net.embedding(samples)
    values = uncertainty.block_values(embedding, lambda e: metrics.diversity(e, features=lambda x: x),
                                      block)
    out = {"diversity": sum(values) / len(values)}
    interval = uncertainty.t_interval(values)
    if interval is not None:
        out["diversity_ci"] = list(interval)
    out["diversity_blocks"] = values
    return out


def generate_all(spec: str, n: int, nfe: int | None, seed: int, net, reference: torch.Tensor,
                 params: dict | None = None) -> tuple[dict, torch.Tensor]:
    """Unconditional samples (batches of 100): FD-FMNIST and feature diversity."""
    batches, seconds, nfe_used = [], 0.0, 0
    for start in range(0, n, 100):
        result = Job(Request(method=spec, params=_method_params(spec, nfe, params), seed=seed + start,
                             n=min(100, n - start))).run()
        batches.append(result.samples)
        seconds += result.metrics["seconds"]
        nfe_used = result.metrics["nfe"]
    samples = torch.cat(batches)
    with torch.no_grad():
        summary = {"nfe": nfe_used, "seconds": seconds / n, "n_images": n,
                   **block_diversity(samples, net)}
        if n >= MIN_FD_SAMPLES:
            summary.update(fd_with_interval(net.embedding(samples), net.embedding(reference)))
    return summary, samples


def evaluate(task: str, methods: list[str], n_images: int = 8, samples: int = 4,
             nfe: int | None = None, seed: int = 0, progress=None, params: dict | None = None,
             first: int = 0, batch: int = 1) -> tuple[dict, dict]:
    """The eval JSON and, per method, a tensor of images for the optional grid.

    ``params``: extra method parameters (``--param k=0.6``), given to each method whose
    parameter dataclass has the field and ignored by the others, like ``nfe``.
    """
    if task not in TASKS:
        raise EngineError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if batch < 1:
        raise EngineError(f"batch must be ≥ 1, got {batch}")
    spec, kind = TASKS[task].degradation, TASKS[task].images
    net = feature_network() if kind == "fashion-mnist" else None
    images, source = test_images(n_images, kind, first)  # generate: the FD reference (from MIN_FD_SAMPLES up)
    results, pictures = {}, {}
    for method in methods:
        try:
            with torch.no_grad():
                if spec is None:
                    results[method], pictures[method] = generate_all(method, n_images, nfe, seed,
                                                                     net, images, params)
                else:
                    results[method], pictures[method] = restore_all(
                        method, images, Degradation.parse(spec), samples, nfe, seed, net, params,
                        first, batch)
        except EngineError as err:
            results[method] = {"error": str(err)}
        if progress is not None:
            progress(method)
    config = {"task": task, "degradation": spec, "n_images": n_images, "first": first,
              "samples": samples,
              "nfe": nfe, "params": dict(params or {}), "seed": seed, "images": source,
              "batch": batch,
              "metrics": {"fd": "FD-FMNIST (project feature network)",
                          "perceptual": "normalised multi-layer feature distance"}}
    return {"task": task, "config": config, "results": results}, pictures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine eval")
    parser.add_argument("--task")
    parser.add_argument("--methods", help="comma-separated method specs, e.g. pinv,ddim@vp")
    parser.add_argument("--n-images", type=int, default=8)
    parser.add_argument("--first", type=int, default=0, help="index of the first test image")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--nfe", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1,
                        help="restore this many images per batched run (same samples up to "
                             "rounding; seconds = batch wall time / images)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a method parameter, for the methods that have it (e.g. k=0.6)")
    parser.add_argument("--json")
    parser.add_argument("--grid", help="PNG: the first sample of each image, one row per method")
    parser.add_argument("--list-tasks", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the models' networks first (engine.models.compile)")
    args = parser.parse_args(argv)
    if args.list_tasks:
        for name, task in TASKS.items():
            print(f"{name:<15} {task.degradation or '-':<28} {task.summary}")
        return 0
    try:
        if not (args.task and args.methods and args.json):
            raise EngineError("eval needs --task, --methods and --json (or --list-tasks)")
        from tqdm import tqdm
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.compile:
            compile_models(methods)
        with tqdm(total=len(methods), file=sys.stderr, unit="method", delay=1.0) as bar:
            report, pictures = evaluate(args.task, methods, args.n_images, args.samples,
                                        args.nfe, args.seed, progress=lambda m: bar.update(1),
                                        params=registry.parse_params(args.param),
                                        first=args.first, batch=args.batch)
        from engine.io.export import save_grid, save_metrics
        save_metrics(args.json, report)
        if args.grid and pictures:
            rows = list(pictures.values())
            per_row = min(len(r) for r in rows)
            save_grid(args.grid, torch.cat([r[:per_row] for r in rows]), report["config"],
                      nrow=per_row, scale=2)
        print(format_table(report))
        return 0
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def compile_models(methods: list[str]) -> None:
    """Compile the cached networks of the methods' models (the jobs then use them)."""
    from engine.models.compile import compile_prior
    from engine.priors.catalog import load_model

    for spec in methods:
        name, model = registry.split_spec(spec)
        if model is not None and registry.get(name).needs_prior:
            compile_prior(load_model(model))


def format_table(report: dict) -> str:
    """A Markdown table of the results (missing metrics shown as –)."""
    keys = ["psnr", "ssim", "perceptual", "fd", "diversity", "fwv", "nfe", "vjp", "seconds"]
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for method, row in report["results"].items():
        if "error" in row:
            lines.append(f"| {method} | " + f"error: {row['error']}" + " |" * len(keys))
            continue
        cells = [uncertainty.with_interval(row[k], row.get(f"{k}_ci"))
                 if isinstance(row.get(k), (int, float)) and math.isfinite(row[k]) else "–"
                 for k in keys]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
