"""What the latent z decides at each level of an RGM ladder (the paper's Fig. 5).

``python -m engine rgm-levels [--model rgm-d] [--variations 8] [--seeds 8] [--out PNG]``

For one start y_T and one set of re-degradation noises, every row re-draws the z of one
level only and keeps every other random draw, so a row shows what that level's z
decides. The paper's reading: at high noise levels z changes the sample a lot, at low
ones barely. The figure is measured by the *spread* of a row, the mean over pixels of
the standard deviation across its variations (in [0, 1] pixel units), averaged over
``--seeds`` independent starts with a 95 % t interval.

The shared draws come from one generator, consumed identically in every row, and the
varied z from a second one, so all rows share the same base path.
"""

from __future__ import annotations

import argparse
import json

import torch

from engine.core.step import EngineError
from engine.evaluation.uncertainty import format_interval, t_interval
from engine.samplers.rgm import algorithm3


def vary_one_level(model, level: int, variations: int, seed: int) -> torch.Tensor:
    """``variations`` samples (in [0, 1]) that share every random draw but level ``level``'s z."""
    shared = torch.Generator().manual_seed(seed)
    varied = torch.Generator().manual_seed(seed + 10_000 * (level + 1))
    z_calls = 0

    def latent(*shape):
        nonlocal z_calls
        draw = torch.randn(1, *shape, generator=shared).expand(variations, *shape)
        if shape == (model.z_dim,):  # algorithm3 draws z for levels T−1, …, 0 in turn
            this_level, z_calls = model.levels - 1 - z_calls, z_calls + 1
            if this_level == level:
                return torch.randn(variations, *shape, generator=varied)
        return draw

    start = model.sample_prior(latent(*model.shape))
    *_, (_, _, x_hat) = algorithm3(model, start, latent)
    lo, hi = model.data_range
    return ((x_hat - lo) / (hi - lo)).clamp(0, 1)


def level_spread(model, variations: int, seeds: int) -> dict[int, dict]:
    """Per level: the mean pixel std across its z variations, over ``seeds`` starts."""
    report = {}
    for level in reversed(range(model.levels)):
        spreads = [float(vary_one_level(model, level, variations, seed).std(0).mean())
                   for seed in range(seeds)]
        mean, interval = sum(spreads) / seeds, t_interval(spreads)
        report[level] = {"spread": mean, "spread_ci": list(interval)}
    return report


def main(argv: list[str]) -> int:
    from engine.io.export import save_grid, save_metrics
    from engine.priors.catalog import load_model

    parser = argparse.ArgumentParser(prog="python -m engine rgm-levels", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="rgm-d")
    parser.add_argument("--variations", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=8, help="starts averaged for the spread")
    parser.add_argument("--out", help="PNG strip: one row per level (top: the noisiest), seed 0")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        if args.variations < 2 or args.seeds < 2:
            raise EngineError("--variations and --seeds must be at least 2")
        model = load_model(args.model)
        if not model.z_dim:
            raise EngineError(f"{args.model} has no latent z (trained with --no-z?)")
        with torch.no_grad():
            report = level_spread(model, args.variations, args.seeds)
            for level, row in report.items():
                print(f"level {level}: spread {row['spread']:.4f} "
                      f"(95 % CI {format_interval(row['spread_ci'])}, {args.seeds} starts × "
                      f"{args.variations} z)")
            if args.out:
                rows = [vary_one_level(model, level, args.variations, 0)
                        for level in reversed(range(model.levels))]
                save_grid(args.out, torch.cat(rows), {"model": args.model, "figure": "rgm-levels",
                                                      "variations": args.variations, "seed": 0},
                          nrow=args.variations, scale=args.scale)
            if args.json:
                save_metrics(args.json, {"model": args.model, "variations": args.variations,
                                         "seeds": args.seeds, "levels": report})
    except EngineError as err:
        print(f"error: {err}")
        return 2
    return 0
