"""``python -m engine train tim --task {sr4,inpaint,pca10}``: conditional IMLE for TIM.

cIMLE (tim.md): ``min_θ Σ_i min_j d(f_θ(x_i, z_ij), y_i)`` — only the nearest of m
samples is pulled towards the observed output. Training runs in "months" and "days"
[code]: each month draws a set of training pairs and, without gradients, selects one
code per pair and level; the month's days are Adam steps with those codes frozen.

Decisions:

* Hierarchical selection (`select_hierarchical`): level by level, with the earlier
  levels fixed at their chosen codes, each pair picks from m fresh candidates the one
  whose level-l output is nearest the level-l target under that level's distance.
  ``--vanilla-sampling`` (`select_vanilla`) draws m complete code sets and keeps the
  one with the least summed distance over levels (the paper's ablation).
* Targets ``↓_l y``: bicubic (antialiased) downsampling of the clean image to each
  level's resolution. Loss: ``Σ_l d(ŷ^(l), ↓_l y)`` (intermediate supervision), or the
  last level only with ``--no-intermediate``.
* Distance (``--distance``): ``perceptual`` (default) is `feature_distance` on the
  project's Fashion-MNIST feature network (`load_feature_network`; normalised
  multi-layer features, mean squared difference — built like LPIPS, not LPIPS), with
  coarse levels upsampled bilinearly to 28 px first; ``l1`` the mean absolute error in
  image units; ``perceptual+l1`` their sum.
* CPU scale [choice] (tim.md §Architecture): C 32, gc 16, 2 RRDBs per module, code 32 +
  2 noise channels, mapping 32 → 64 × 4; months of 256 pairs, m = 24, days of 16
  pairs, 128 days a month (each pair ≈ 8 gradient visits a month; the reference, 400
  pairs and 1e4 single-pair days, makes 25), Adam 5e-4 (the reference 1e-4 is for far longer
  runs) with the mapping networks at lr × 0.01 [code], 100 warm-up days, EMA 0.999.
* Checkpoints at month ends (`engine.train.loop`'s safetensors state: raw weights, EMA,
  Adam moments, the one CPU generator behind every draw), so ``--resume`` continues
  exactly the run an uninterrupted process would have made. ``selection.jsonl`` logs
  each month's mean selected distance per level; ``samples.png`` shows, per demo
  input, the measurement, 4 samples and the truth.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.core.step import BadInputError, EngineError
from engine.io.data import load_fashion_mnist, to_image_range, to_model_range
from engine.models.tim import IMAGE_SIZE, TASKS, Tower, TowerConfig
from engine.train import Family, register_family
from engine.train.loop import (EMA, TrainSettings, git_revision, init_network, load_train_state,
                               save_grid, save_model, save_train_state)

DISTANCES = ("perceptual", "l1", "perceptual+l1")
GRID_INPUTS, GRID_SAMPLES = 6, 4


@dataclass
class IMLESettings:
    months: int = 60
    month_size: int = 256
    pool: int = 24  # m, candidates per pair and level
    days: int = 128
    day_batch: int = 16
    hierarchical: bool = True
    intermediate: bool = True
    distance: str = "perceptual"
    chunk: int = 1024  # candidates evaluated per forward pass during selection


# -- distances and targets ------------------------------------------------------------

def make_distance(kind: str, device: str = "cpu") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-image distance of two equal-shape batches in model units (module doc)."""
    if kind not in DISTANCES:
        raise BadInputError(f"unknown distance {kind!r} ({', '.join(DISTANCES)})")
    net = None
    if "perceptual" in kind:
        from engine.evaluation.metrics import feature_distance
        from engine.models.features import load_feature_network
        net = load_feature_network(device=device)

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = to_image_range(a), to_image_range(b)
        d = (a - b).abs().flatten(1).mean(1) if "l1" in kind else 0
        if net is not None:
            if a.shape[-1] != IMAGE_SIZE:
                a, b = (F.interpolate(v, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                                      align_corners=False) for v in (a, b))
            d = d + feature_distance(a, b, net.features)
        return d

    return distance


def level_targets(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """``↓_l y``: the clean images bicubically downsampled to every level's size."""
    return [x if s == x.shape[-1] else
            F.interpolate(x, size=(s, s), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
            for s in sizes]


# -- code selection (no gradients) -------------------------------------------------------

def draw_pools(code_sizes: list[int], n: int, m: int, generator: torch.Generator) -> list[torch.Tensor]:
    """m candidate codes per pair and level: ``(n, m, size_l)`` each."""
    return [torch.randn(n, m, size, generator=generator) for size in code_sizes]


def _expand(t, m: int):
    return None if t is None else t.repeat_interleave(m, 0)


@torch.no_grad()
def select_hierarchical(tower, y, targets, pools, distance, chunk: int = 1024) -> list[torch.Tensor]:
    """Per level l, earlier levels fixed: ``z^(l) = argmin_j d(f^(l)(y, z^(<l), ζ_j), ↓_l y)``."""
    n, m = pools[0].shape[:2]
    chosen: list[torch.Tensor] = []
    for l in range(len(pools)):
        best = []
        for lo in range(0, n, max(1, chunk // m)):
            hi = min(n, lo + max(1, chunk // m))
            state = tower.prefix(y[lo:hi], [c[lo:hi] for c in chosen], l)
            state = tuple(_expand(s, m) for s in state)
            cand = pools[l][lo:hi].reshape((hi - lo) * m, -1).to(y.device)
            out, _ = tower.level(l, _expand(y[lo:hi], m), cand, state)
            d = distance(out, _expand(targets[l][lo:hi], m)).reshape(hi - lo, m)
            best.append(d.argmin(1).cpu())
        index = torch.cat(best)
        chosen.append(pools[l][torch.arange(n), index].to(y.device))
    return chosen


@torch.no_grad()
def vanilla_distances(tower, y, targets, pools, distance, chunk: int = 1024) -> torch.Tensor:
    """``(L, n, m)``: level l's distance of candidate j = ``(ζ_j^(1), …, ζ_j^(L))`` of pair i."""
    n, m = pools[0].shape[:2]
    per_chunk = []
    for lo in range(0, n, max(1, chunk // m)):
        hi = min(n, lo + max(1, chunk // m))
        cand = [p[lo:hi].reshape((hi - lo) * m, -1).to(y.device) for p in pools]
        outs = tower(_expand(y[lo:hi], m), cand)
        per_chunk.append(torch.stack([distance(o, _expand(t[lo:hi], m)).reshape(hi - lo, m).cpu()
                                      for o, t in zip(outs, targets)]))
    return torch.cat(per_chunk, 1)


def select_vanilla(tower, y, targets, pools, distance, chunk: int = 1024) -> list[torch.Tensor]:
    """All levels at once: candidate j is ``(ζ_j^(1), …, ζ_j^(L))``; least Σ_l distance."""
    n = pools[0].shape[0]
    index = vanilla_distances(tower, y, targets, pools, distance, chunk).sum(0).argmin(1)
    return [p[torch.arange(n), index].to(y.device) for p in pools]


def selected_distances(tower, y, targets, codes, distance) -> list[float]:
    """Mean distance per level of the selected codes' outputs (the month's log)."""
    with torch.no_grad():
        return [float(distance(o, t).mean()) for o, t in zip(tower(y, codes), targets)]


# -- the month/day loop ---------------------------------------------------------------

def imle_loss(tower, y, targets, codes, distance, intermediate: bool = True) -> torch.Tensor:
    """``Σ_l d(ŷ^(l), ↓_l y)`` averaged over the batch (only the last level without
    intermediate supervision)."""
    outs = tower(y, codes)
    levels = range(len(outs)) if intermediate else [len(outs) - 1]
    return sum(distance(outs[l], targets[l]).mean() for l in levels)


def optimizer_for(tower: Tower, lr: float) -> torch.optim.Adam:
    """Adam; the mapping networks at lr × 0.01 [code]."""
    mapping = [p for n, p in tower.named_parameters() if ".mapping." in n]
    rest = [p for n, p in tower.named_parameters() if ".mapping." not in n]
    groups = [{"params": rest, "lr": lr, "scale": 1.0}]
    if mapping:
        groups.append({"params": mapping, "lr": lr * 0.01, "scale": 0.01})
    return torch.optim.Adam(groups, lr=lr)


def grid_images(tower: Tower, clean: torch.Tensor) -> torch.Tensor:
    """Rows of [measurement (nearest-upsampled), GRID_SAMPLES samples, truth] in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    y = tower.measure(clean)
    rows = []
    for k in range(len(clean)):
        codes = [torch.randn(GRID_SAMPLES, s, generator=g).to(clean.device) for s in tower.code_sizes]
        with torch.no_grad():
            samples = tower(y[k:k + 1].expand(GRID_SAMPLES, -1, -1, -1), codes)[-1]
        shown = F.interpolate(y[k:k + 1], size=(IMAGE_SIZE, IMAGE_SIZE), mode="nearest")
        rows.append(torch.cat([shown, samples, clean[k:k + 1]]))
    return to_image_range(torch.cat(rows)).cpu()


def train_tim(out: Path, cfg: TowerConfig, imle: IMLESettings, settings: TrainSettings,
              data: torch.Tensor, grid_clean: torch.Tensor, resume: bool = False,
              progress: bool = True) -> dict:
    """Train a tower on ``data`` (clean images, model units) and save it in ``out``."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(settings.device)
    tower = init_network(lambda: Tower(cfg), settings.seed).to(device)
    if cfg.task == "pca10":
        tower.set_pca(data.to(device))
    ema = EMA(tower, settings.ema)
    optimizer = optimizer_for(tower, settings.lr)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    distance = make_distance(imle.distance, settings.device)
    select = select_hierarchical if imle.hierarchical else select_vanilla
    day, wall = 0, 0.0
    if resume and (out / "train_state.json").exists():
        day, wall = load_train_state(out, tower, ema, optimizer, generator)
    config = {"kind": "tim-tower", "architecture": cfg.to_dict(),
              "task": None if cfg.task == "pca10" else TASKS[cfg.task],
              "shape": [1, IMAGE_SIZE, IMAGE_SIZE], "data_range": [-1.0, 1.0],
              "imle": vars(imle), "training": {"seed": settings.seed, "lr": settings.lr,
              "ema": settings.ema, "device": settings.device, "git": git_revision(),
              "machine": platform.machine(), **settings.extra}}
    month = day // imle.days
    bar = tqdm(total=imle.months, initial=month, disable=not progress, dynamic_ncols=True,
               desc=out.name, unit="month")
    start, loss_sum = time.perf_counter() - wall, 0.0
    while month < imle.months:
        index = torch.randint(len(data), (imle.month_size,), generator=generator)
        x = data[index].to(device)
        y, targets = tower.measure(x), level_targets(x, cfg.output_sizes)
        pools = draw_pools(cfg.code_sizes, imle.month_size, imle.pool, generator)
        codes = select(tower, y, targets, pools, distance, imle.chunk)
        picked = selected_distances(tower, y, targets, codes, distance)
        loss_sum = 0.0
        for _ in range(imle.days):
            b = torch.randint(imle.month_size, (imle.day_batch,), generator=generator).to(device)
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * group["scale"] * min(1.0, (day + 1) / settings.warmup)
            loss = imle_loss(tower, y[b], [t[b] for t in targets], [c[b] for c in codes],
                             distance, imle.intermediate)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(tower.parameters(), settings.clip)
            optimizer.step()
            ema.update(tower, day)
            day += 1
            loss_sum += loss.item()
        month += 1
        info = {"months": month, "days": day, "wall_seconds": round(time.perf_counter() - start, 1),
                "loss": loss_sum / imle.days, "selected_distance": picked}
        with open(out / "selection.jsonl", "a") as log:
            log.write(json.dumps(info) + "\n")
        bar.update(1)
        bar.set_postfix(loss=f"{info['loss']:.4f}", picked="/".join(f"{d:.3f}" for d in picked))
        if month % settings.checkpoint_every == 0 or month == imle.months:
            save_train_state(out, day, tower, ema, optimizer, generator, info["wall_seconds"])
            save_model(out, ema.model, {**config, "training": {**config["training"], **info}}, {})
            images = grid_images(ema.model, grid_clean.to(device))
            save_grid(images, out / f"samples_{month:04d}.png", columns=GRID_SAMPLES + 2)
            save_grid(images, out / "samples.png", columns=GRID_SAMPLES + 2)
    bar.close()
    return {"months": month, "days": day, "wall_seconds": round(time.perf_counter() - start, 1),
            "loss": loss_sum / imle.days}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine train tim", description=__doc__.splitlines()[0])
    d, c = IMLESettings(), TowerConfig()
    p.add_argument("--task", choices=tuple(TASKS), default="sr4")
    p.add_argument("--levels", type=int, default=None, help="tower levels (default 2 for sr4, else 3)")
    p.add_argument("--months", type=int, default=d.months)
    p.add_argument("--month-size", type=int, default=d.month_size, help="training pairs per month")
    p.add_argument("--pool", type=int, default=d.pool, help="m: candidate codes per pair and level")
    p.add_argument("--days", type=int, default=d.days, help="Adam steps per month")
    p.add_argument("--day-batch", type=int, default=d.day_batch)
    p.add_argument("--distance", choices=DISTANCES, default=d.distance)
    p.add_argument("--vanilla-sampling", action="store_true", help="select all levels' codes at once")
    p.add_argument("--no-mapping", action="store_true", help="style from the raw code (no mapping MLP)")
    p.add_argument("--no-intermediate", action="store_true", help="supervise the last level only")
    p.add_argument("--channels", type=int, default=c.channels)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=100, help="linear lr warm-up, in days")
    p.add_argument("--train-size", type=int, default=None, help="use the first N training images")
    p.add_argument("--data", type=Path, default=None, help="Fashion-MNIST folder (IDX files)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/tim-TASK)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=1, help="months between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--evaluate", type=int, default=None, metavar="INPUTS",
                   help="instead of training: restore INPUTS test images with the tower in --out, "
                        "--samples each, and print PSNR, best-of-n PSNR, diversity and FWV (JSON)")
    p.add_argument("--samples", type=int, default=8, help="samples per input for --evaluate")
    p.add_argument("--against", nargs="+", default=None, metavar="NAME=RUN",
                   help="with --evaluate: also score these towers on the same inputs and seeds, "
                        "with FD and paired differences against --out's tower (an ablation table)")
    p.add_argument("--compare-selection", type=int, default=None, metavar="PAIRS",
                   help="instead of training: load the tower in --out and compare hierarchical "
                        "with vanilla code selection on PAIRS test pairs (prints JSON)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from engine.io.data import demo_images

    out = args.out or Path("runs") / f"tim-{args.task}"
    try:
        if args.compare_selection:
            return print_selection_comparison(out, args)
        if args.evaluate:
            return print_evaluation(out, args)
        cfg = TowerConfig(task=args.task, levels=args.levels or (2 if args.task == "sr4" else 3),
                          channels=args.channels, mapping=not args.no_mapping)
        imle = IMLESettings(months=args.months, month_size=args.month_size, pool=args.pool,
                            days=args.days, day_batch=args.day_batch,
                            hierarchical=not args.vanilla_sampling,
                            intermediate=not args.no_intermediate, distance=args.distance)
        settings = TrainSettings(lr=args.lr, warmup=args.warmup, checkpoint_every=args.checkpoint_every,
                                 seed=args.seed, device=args.device,
                                 extra={"command": "python -m engine train tim " + shlex.join(argv)})
        images = load_fashion_mnist("train", args.data)[0]
        data = to_model_range(images[:args.train_size] if args.train_size else images)
        grid_clean = to_model_range(demo_images()[0][:GRID_INPUTS])
        info = train_tim(out, cfg, imle, settings, data, grid_clean, resume=args.resume,
                         progress=not args.quiet)
    except EngineError as err:  # bad options, missing runs, too few test images
        print(f"error: {err}")
        return 2
    print(f"tim {args.task}: {info['months']} months ({info['days']} days), "
          f"{info['wall_seconds']:.0f} s, loss {info['loss']:.4f} → {out}")
    return 0


def print_selection_comparison(model_dir: Path, args) -> int:
    """``--compare-selection PAIRS``: `tim_study.compare_selection` on the first test pairs."""
    from engine.evaluation.evaluate import test_images
    from engine.evaluation.tim_study import compare_selection
    from engine.models.tim import load_tim_tower

    tower = load_tim_tower(model_dir, args.device).net
    x = to_model_range(test_images(args.compare_selection)[0]).to(args.device)
    distance = make_distance(json.loads((model_dir / "config.json").read_text())["imle"]["distance"],
                             args.device)
    print(json.dumps(compare_selection(tower, x, distance, args.pool, seed=args.seed), indent=2))
    return 0


def print_evaluation(model_dir: Path, args) -> int:
    """``--evaluate INPUTS``: `tim_study.evaluate_tower` on the first test images, or with
    ``--against``, `tim_study.compare_towers` of --out's tower (named "out") and those."""
    from engine.evaluation.evaluate import test_images
    from engine.evaluation.tim_study import FD_REFERENCE, compare_towers, evaluate_tower
    from engine.models.tim import load_tim_tower

    images = test_images(args.evaluate)[0]
    if not args.against:
        report = evaluate_tower(load_tim_tower(model_dir, args.device), images, args.samples, args.seed)
        print(json.dumps({"model": str(model_dir), **report}, indent=2))
        return 0
    runs = {"out": model_dir}
    for item in args.against:
        name, sep, run = item.partition("=")
        if not sep or not name or not run or name in runs:
            raise BadInputError(f"--against takes distinct NAME=RUN pairs, got {item!r}")
        runs[name] = Path(run)
    models = {name: load_tim_tower(run, args.device) for name, run in runs.items()}
    reference = test_images(FD_REFERENCE, first=args.evaluate)[0]
    report = compare_towers(models, images, args.samples, reference, args.seed)
    print(json.dumps({"runs": {k: str(v) for k, v in runs.items()}, **report}, indent=2))
    return 0


register_family(Family("tim", train=None, steps=0, main=main,
                       summary="TIM tower (hierarchical cIMLE) for one task; own options: "
                               "python -m engine train tim --help"))
