"""``python -m engine train FAMILY``: train the project's networks.

Families: ``vp`` (DDPM ε-prediction), ``soft-blur`` and ``soft-mask`` (Soft Diffusion,
Soft Score Matching), ``photo`` (a fully-convolutional VP prior on natural photos), ``features`` (the Fashion-MNIST classifier behind the perceptual
and Fréchet metrics). The output directory is a loadable model; ``--resume`` continues
an interrupted run from its last checkpoint with the same random stream.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import torch

from engine.core.step import BadInputError

FAMILY_NAMES = ("soft-blur", "soft-mask", "vp", "features", "photo")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine train", description=__doc__.splitlines()[0])
    p.add_argument("family", choices=FAMILY_NAMES)
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: per family)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/FAMILY)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--loss", choices=("ssm", "clean", "ssm+clean"), default="ssm",
                   help="Soft Score Matching (default), the clean-image baseline, or their sum")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blur-table", type=Path, default=None,
                   help="soft-blur: JSON with a 'blur_table' list, e.g. the output of "
                        "'python -m engine schedule --json FILE' (W2 shortest path)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def read_blur_table(path: Path | None) -> list[float] | None:
    if path is None:
        return None
    try:
        table = json.loads(path.read_text())["blur_table"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BadInputError(f"cannot read a blur table from {path}: {err}") from None
    if len(table) < 2 or any(not b > a for a, b in zip(table, table[1:])):
        raise BadInputError(f"the blur table in {path} must hold ≥ 2 increasing levels")
    return [float(v) for v in table]


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from engine.train.loop import TrainSettings

    out = args.out or Path("runs") / args.family
    settings = TrainSettings(batch=args.batch, lr=args.lr, checkpoint_every=args.checkpoint_every,
                             seed=args.seed, device=args.device,
                             extra={"command": "python -m engine train " + shlex.join(argv)})
    try:
        if args.family == "features":
            from engine.train.features import train_features
            settings.steps = args.steps or 3000
            info = train_features(out, settings, resume=args.resume, progress=not args.quiet)
        elif args.family == "photo":
            from engine.train.photo import train_photo
            settings.steps = args.steps or 6000
            info = train_photo(out, settings, resume=args.resume, progress=not args.quiet)
        else:
            from engine.train.diffusion import train_diffusion
            settings.steps = args.steps or 4000
            info = train_diffusion(args.family, out, settings, loss=args.loss,
                                   blur_table=read_blur_table(args.blur_table),
                                   resume=args.resume, progress=not args.quiet)
    except BadInputError as err:
        print(f"error: {err}")
        return 2
    print(f"{args.family}: {info['steps']} steps, {info['wall_seconds']:.0f} s, "
          f"loss {info['loss']:.4f} → {out}")
    return 0
