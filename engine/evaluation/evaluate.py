"""Evaluation suite: every method on the same images, degradation and seeds.

``python -m engine eval --task TASK --methods a,b@model,... [--n-images N]
[--samples K] [--nfe N] [--seed S] --json OUT [--grid PNG]`` writes::

    {"task", "config", "results": {spec: {"psnr", "ssim", "fd", "perceptual",
                                          "diversity", "fwv", "nfe", "seconds",
                                          "n_images"}}}

Decisions:

* Tasks are data (`TASKS`): a degradation spec in [0, 1] image units, or None for
  unconditional generation. New methods and tasks need no code here.
* Images: the Fashion-MNIST test split when installed, else the bundled demo set
  (``config["images"]`` says which); image i uses measurement seed i and sample seeds
  ``seed + K·i …``, the same for every method.
* Metrics: PSNR/SSIM are means over images of the per-sample means; "perceptual" and
  "fd" use the project's Fashion-MNIST feature network (FD-FMNIST, not FID). FD is
  reported only from `MIN_FD_SAMPLES` images up (a Fréchet distance of a handful of
  points is noise); diversity and FWV need K > 1. A metric that cannot be measured is
  omitted, never faked. seconds = method wall time per image; nfe per sample.
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
from dataclasses import dataclass

import torch

from engine.evaluation import metrics

from engine.core import registry
from engine.core.jobs import Job, Request
from engine.core.operators import Degradation
from engine.core.step import EngineError

MIN_FD_SAMPLES = 100
FWV_SIGMA = 0.1  # σ of the faithfulness weight, image units [inferred]


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


def test_images(n: int, kind: str = "fashion-mnist") -> tuple[torch.Tensor, str]:
    """The first n test images: Fashion-MNIST test split if installed, else the demo set;
    for ``kind="photos"`` the centre crops of the held-out photos (`engine.io.photos`)."""
    from engine.io.data import demo_images, load_fashion_mnist
    from engine.io import photos

    if kind == "photos":
        images = photos.test_crops()
        source = f"held-out photos {', '.join(photos.TEST_PHOTOS)}: centre {photos.EVAL_CROP}² crops"
    else:
        try:
            images, source = load_fashion_mnist("test")[0], "fashion-mnist test split"
        except EngineError:
            images, source = demo_images()[0], "bundled demo set"
    if n > len(images):
        raise EngineError(f"only {len(images)} test images available ({source}), asked for {n}")
    return images[:n], source


def feature_network():
    from engine.models.features import load_feature_network
    return load_feature_network()


def faithfulness_weighted_variance(samples: torch.Tensor, y: torch.Tensor, operator,
                                   distance) -> float:
    """TIM's FWV for one input [inferred form, tim.md]: ``mean_j w_j · dist(x_j, x̄)`` with
    ``w_j = exp(−MSE(A x_j, y)/(2σ²))``: spread counts only where samples explain y.
    Faithfulness is measured in measurement space (the feature network sees only
    clean-sized images), spread with the perceptual ``distance``."""
    misfit = ((operator.forward(samples) - y) ** 2).flatten(1).mean(1)
    weights = torch.exp(-misfit / (2 * FWV_SIGMA**2))
    return float((weights * distance(samples, samples.mean(0, keepdim=True))).mean())


def _method_params(spec: str, nfe: int | None) -> dict:
    name, _ = registry.split_spec(spec)
    fields = {f.name for f in dataclasses.fields(registry.get(name).params)}
    return {"nfe": nfe} if nfe is not None and "nfe" in fields else {}


def restore_all(spec: str, images: torch.Tensor, degradation: Degradation, samples: int,
                nfe: int | None, seed: int, net) -> tuple[dict, torch.Tensor]:
    """Run one method on every image; returns its metric row and the first samples."""
    rows, firsts = [], []
    perceptual = lambda x, ref: metrics.perceptual_distance(x, ref, net.features)
    if net is None:  # photos: the feature network knows Fashion-MNIST only
        perceptual = None
    for i, image in enumerate(images):
        job = Job(Request(method=spec, image=image, degradation=degradation,
                          params=_method_params(spec, nfe), seed=seed + samples * i,
                          n=samples, measurement_seed=i, source=f"test:{i}"))
        result = job.run()
        row = {k: result.metrics[k] for k in ("psnr", "ssim", "nfe", "seconds") if k in result.metrics}
        if perceptual is not None:
            row["perceptual"] = float(perceptual(result.samples, image).mean())
        if samples > 1:
            row["diversity"] = result.metrics["diversity"]
        if samples > 1 and perceptual is not None:
            row["fwv"] = faithfulness_weighted_variance(
                result.samples, result.measurement[None], job.measurement.operator, perceptual)
        rows.append(row)
        firsts.append(result.samples[0])
    summary = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    summary["n_images"] = len(images)
    restored = torch.stack(firsts)
    if len(images) >= MIN_FD_SAMPLES and net is not None:
        summary["fd"] = metrics.frechet_distance(net.embedding(restored), net.embedding(images))
    return summary, restored


def generate_all(spec: str, n: int, nfe: int | None, seed: int, net, reference: torch.Tensor
                 ) -> tuple[dict, torch.Tensor]:
    """Unconditional samples (batches of 100): FD-FMNIST and feature diversity."""
    batches, seconds, nfe_used = [], 0.0, 0
    for start in range(0, n, 100):
        result = Job(Request(method=spec, params=_method_params(spec, nfe), seed=seed + start,
                             n=min(100, n - start))).run()
        batches.append(result.samples)
        seconds += result.metrics["seconds"]
        nfe_used = result.metrics["nfe"]
    samples = torch.cat(batches)
    with torch.no_grad():
        summary = {"nfe": nfe_used, "seconds": seconds / n, "n_images": n,
                   "diversity": metrics.diversity(samples[:64], features=net.embedding)}
        if n >= MIN_FD_SAMPLES:
            summary["fd"] = metrics.frechet_distance(net.embedding(samples), net.embedding(reference))
    return summary, samples


def evaluate(task: str, methods: list[str], n_images: int = 8, samples: int = 4,
             nfe: int | None = None, seed: int = 0, progress=None) -> tuple[dict, dict]:
    """The eval JSON and, per method, a tensor of images for the optional grid."""
    if task not in TASKS:
        raise EngineError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    spec, kind = TASKS[task].degradation, TASKS[task].images
    net = feature_network() if kind == "fashion-mnist" else None
    images, source = test_images(max(n_images, MIN_FD_SAMPLES) if spec is None else n_images, kind)
    results, pictures = {}, {}
    for method in methods:
        try:
            with torch.no_grad():
                if spec is None:
                    results[method], pictures[method] = generate_all(method, n_images, nfe, seed,
                                                                     net, images)
                else:
                    results[method], pictures[method] = restore_all(
                        method, images, Degradation.parse(spec), samples, nfe, seed, net)
        except EngineError as err:
            results[method] = {"error": str(err)}
        if progress is not None:
            progress(method)
    config = {"task": task, "degradation": spec, "n_images": n_images, "samples": samples,
              "nfe": nfe, "seed": seed, "images": source,
              "metrics": {"fd": "FD-FMNIST (project feature network)",
                          "perceptual": "normalised multi-layer feature distance"}}
    return {"task": task, "config": config, "results": results}, pictures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine eval")
    parser.add_argument("--task")
    parser.add_argument("--methods", help="comma-separated method specs, e.g. pinv,ddim@vp")
    parser.add_argument("--n-images", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--nfe", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    parser.add_argument("--grid", help="PNG: the first sample of each image, one row per method")
    parser.add_argument("--list-tasks", action="store_true")
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
        with tqdm(total=len(methods), file=sys.stderr, unit="method", delay=1.0) as bar:
            report, pictures = evaluate(args.task, methods, args.n_images, args.samples,
                                        args.nfe, args.seed, progress=lambda m: bar.update(1))
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


def format_table(report: dict) -> str:
    """A Markdown table of the results (missing metrics shown as –)."""
    keys = ["psnr", "ssim", "perceptual", "fd", "diversity", "fwv", "nfe", "seconds"]
    lines = ["| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for method, row in report["results"].items():
        if "error" in row:
            lines.append(f"| {method} | " + f"error: {row['error']}" + " |" * len(keys))
            continue
        cells = [f"{row[k]:.4g}" if isinstance(row.get(k), (int, float)) and not
                 (isinstance(row[k], float) and math.isnan(row[k])) else "–" for k in keys]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
