"""``python -m engine train FAMILY``: train the project's networks.

Families register like methods: a module of this package defines a training function
and calls `register_family`; ``python -m engine train`` imports every module of the
package (`families`) and offers the registered names, so a new family (``rgm-d``,
``aps``, ``tim``) is one module plus one registration, with no central table to edit.
A family may add its own options (``add_arguments``; the same function registered by
several families is added once). Registered today: ``vp`` (DDPM ε-prediction),
``soft-blur`` and ``soft-mask`` (Soft Diffusion, Soft Score Matching) in
`engine.train.diffusion`, ``features`` (the Fashion-MNIST classifier behind the
perceptual and Fréchet metrics) in `engine.train.features`. The output directory is a
loadable model; ``--resume`` continues an interrupted run from its last checkpoint with
the same random stream. ``--data DIR``
reads Fashion-MNIST from a folder of the four upstream IDX files (default:
``$FASHION_MNIST_DIR``, else Debian's ``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from engine.core.step import BadInputError


@dataclass(frozen=True)
class Family:
    name: str
    # (out directory, settings with .steps set, parsed options) -> training record
    # with at least "steps", "wall_seconds" and "loss"
    train: Callable[[Path, "TrainSettings", argparse.Namespace], dict]
    steps: int  # default optimiser steps
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    # A family with a command line of its own (TIM's month/day loop): ``main(argv)``
    # receives the arguments after the family's name; ``train`` is then unused.
    main: Callable[[list[str]], int] | None = None


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES and _FAMILIES[family.name].train is not family.train:
        raise ValueError(f"training family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def families() -> dict[str, Family]:
    """Every registered family (importing the package's modules registers them)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return dict(_FAMILIES)


def parser(known: dict[str, Family] | None = None) -> argparse.ArgumentParser:
    known = known if known is not None else families()
    p = argparse.ArgumentParser(prog="python -m engine train", description=__doc__.splitlines()[0])
    p.add_argument("family", choices=sorted(known),
                   help="; ".join(f"{f.name}: {f.summary}" for f in known.values()))
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: per family)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/FAMILY)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=None,
                   help="folder with the Fashion-MNIST IDX files (default: $FASHION_MNIST_DIR, "
                        "else /usr/share/datasets/fashion-mnist)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network being trained (engine.models.compile)")
    for add in dict.fromkeys(f.add_arguments for f in known.values() if f.add_arguments):
        add(p)
    return p


def main(argv: list[str]) -> int:
    known = families()
    if argv[:1] and argv[0] in known and known[argv[0]].main is not None:
        return known[argv[0]].main(argv[1:])
    args = parser(known).parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from engine.train.loop import TrainSettings

    family = known[args.family]
    out = args.out or Path("runs") / args.family
    settings = TrainSettings(batch=args.batch, lr=args.lr, checkpoint_every=args.checkpoint_every,
                             seed=args.seed, device=args.device, steps=args.steps or family.steps,
                             compile=args.compile,
                             extra={"command": "python -m engine train " + shlex.join(argv)})
    try:
        info = family.train(out, settings, args)
    except BadInputError as err:
        print(f"error: {err}")
        return 2
    print(f"{args.family}: {info['steps']} steps, {info['wall_seconds']:.0f} s, "
          f"loss {info['loss']:.4f} → {out}")
    return 0
