"""TIM's measured claims, with 95 % intervals: hierarchical against vanilla code
selection (paper Fig. 3) and a tower's one-to-many scores (tim.md §Metrics).

``python -m engine train tim --out RUN --compare-selection PAIRS [--pool m]`` and
``... --evaluate INPUTS [--samples n]`` print these as JSON; ``engine claims`` runs
`compare_selection` on the shipped ``tim-sr4`` for the TIM row.

Decisions:

* Selection is compared on held-out pairs (the first Fashion-MNIST test images), the
  tower's own training distance, the summed distance ``Σ_l d(ŷ^(l), ↓_l y)`` of the
  selected sample (the quantity both selections minimise). Hierarchical selection
  draws m candidates per level; vanilla selection k = f·m complete code sets. The
  vanilla pools for the factors f are prefixes of one draw per pair, so a pair's
  distance never increases with f.
* "Equal sample count" compares hierarchical with m per level against vanilla with m
  code sets: the interval of the paired difference vanilla − hierarchical over pairs
  (positive = hierarchical closer) gives the claim's verdict.
* "Vanilla needs": the multiple of m at which vanilla's mean distance reaches
  hierarchical's, log-linear interpolation between the measured factors; 1 if vanilla
  with m already reaches it; `NOT_REACHED` (reported as "> largest factor") if the
  largest pool does not. Its interval is a paired percentile bootstrap over pairs of
  that whole computation.
* Tower scores: per input, n samples from the method ``tim`` (seeds ``seed + n·i …``)
  of the noise-free measurement; per-image mean PSNR, best-of-n PSNR, perceptual
  distance to the truth, diversity score and FWV on the σ grid, each averaged over
  inputs with its bootstrap interval (`engine.evaluation.evaluate.summarise`).
* Ablations (``... --evaluate INPUTS --against NAME=RUN ...``, `compare_towers`): the
  towers restore the same inputs with the same seeds, so per-image scores are compared
  by paired intervals. The paper ranks its ablations by FID; the analogue here is the
  FD-FMNIST of all N·n samples against ``FD_REFERENCE`` clean test images that follow
  the inputs (disjoint from them). Its difference interval resamples inputs, each
  with both towers' samples, and the reference on its own
  (`uncertainty.fd_difference_by_input_interval`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.evaluation import uncertainty

FACTORS = (1, 2, 4, 8, 16)
FD_REFERENCE = 1000  # clean test images after the inputs, the FD reference of `compare_towers`
NOT_REACHED = math.inf


def samples_needed(hierarchical: float, vanilla: dict[int, float]) -> float:
    """Smallest multiple of m at which the vanilla curve ``{factor: mean distance}``
    reaches the hierarchical distance (log-linear interpolation; module doc)."""
    previous = None
    for f, d in sorted(vanilla.items()):
        if d <= hierarchical:
            if previous is None:
                return float(f)
            (f0, d0) = previous
            return float(f0 * (f / f0) ** ((d0 - hierarchical) / (d0 - d)))
        previous = (f, d)
    return NOT_REACHED


@torch.no_grad()
def selection_distances(tower, x, distance, m: int, factors=FACTORS, seed: int = 0) -> dict:
    """Per-pair summed and last-level distances of the selected sample: hierarchical with
    m candidates per level, vanilla with f·m code sets for each factor f (the first f·m
    of one pool of max(f)·m, scored once)."""
    from engine.train.tim import (draw_pools, level_targets, select_hierarchical,
                                  vanilla_distances)

    g = torch.Generator().manual_seed(seed)
    y, targets = tower.measure(x), level_targets(x, tower.config.output_sizes)
    codes = select_hierarchical(tower, y, targets, draw_pools(tower.code_sizes, len(x), m, g), distance)
    per_level = [distance(o, t).double().cpu() for o, t in zip(tower(y, codes), targets)]
    hierarchical = (sum(per_level).numpy(), per_level[-1].numpy())
    d = vanilla_distances(tower, y, targets, draw_pools(tower.code_sizes, len(x), max(factors) * m, g),
                          distance).double()
    total, rows = d.sum(0), torch.arange(len(x))
    vanilla = {}
    for f in sorted(factors):
        best = total[:, :f * m].argmin(1)  # select_vanilla on the first f·m code sets
        vanilla[f] = (total[rows, best].numpy(), d[-1][rows, best].numpy())
    return {"hierarchical": hierarchical, "vanilla": vanilla}


def compare_selection(tower, x, distance, m: int, factors=FACTORS, seed: int = 0) -> dict:
    """Hierarchical (m per level) against vanilla (f·m code sets) selection on the pairs
    ``x`` (model units): means with intervals, the equal-count gain and how many samples
    vanilla needs (module doc)."""
    per_pair = selection_distances(tower, x, distance, m, factors, seed)
    hier_total, hier_last = per_pair["hierarchical"]
    vanilla = per_pair["vanilla"]
    factors = sorted(vanilla)

    def needs(h, *curves):
        return samples_needed(float(np.mean(h)), {f: float(np.mean(c)) for f, c in zip(factors, curves)})

    def capped_needs(h, *curves):  # the bootstrap needs finite values: cap = 2 × largest
        return min(needs(h, *curves), 2.0 * factors[-1])

    point = needs(hier_total, *(vanilla[f][0] for f in factors))
    interval = None
    if len(x) >= 2:
        low, high = uncertainty.bootstrap_interval([hier_total, *(vanilla[f][0] for f in factors)],
                                                   capped_needs, paired=True)
        interval = [low, NOT_REACHED if high > factors[-1] else high]
    summary = lambda values: {"mean": float(np.mean(values)),
                              "ci": list(uncertainty.mean_interval(values) or (math.nan, math.nan))}
    return {"m": m, "pairs": len(x), "seed": seed,
            "hierarchical": {"total": summary(hier_total), "last": summary(hier_last)},
            "vanilla": {f"{f}m": {"total": summary(vanilla[f][0]), "last": summary(vanilla[f][1])}
                        for f in factors},
            "gain_at_equal_samples": {  # vanilla(m) − hierarchical(m): positive = hierarchical closer
                "total": list(uncertainty.paired_difference_interval(vanilla[factors[0]][0], hier_total)),
                "last": list(uncertainty.paired_difference_interval(vanilla[factors[0]][1], hier_last))},
            "vanilla_needs": point, "vanilla_needs_ci": interval}


def format_needs(value: float, largest: int) -> str:
    return f"> {largest}" if math.isinf(value) else f"{value:.1f}"


def tower_restorations(model, images: torch.Tensor, samples: int, seed: int = 0) -> torch.Tensor:
    """``samples`` restorations of each clean image's noise-free measurement from the
    method ``tim`` (seeds ``seed + samples·i …``), image units, shape (N, n, C, H, W)."""
    from engine.core.operators import Degradation
    from engine.core.registry import Measurement
    from engine.core.rng import SampleRNG
    from engine.io.data import to_image_range, to_model_range
    from engine.solvers.tim import TimParams, tim

    # pca10 has no project operator: the tower projects y itself (engine.solvers.tim)
    operator = Degradation.parse("none" if model.task_name == "pca10" else model.degradation).operator(1)
    restored = []
    for i, clean in enumerate(images):
        y = model.net.measure(to_model_range(clean)[None].to(model.device))
        with torch.no_grad():
            *_, last = tim(model, Measurement(y, operator, 0.0, model.shape), TimParams(),
                           SampleRNG(seed + samples * i, samples, model.device))
        restored.append(to_image_range(last.x0_hat).clamp(0, 1).cpu())
    return torch.stack(restored)


def restoration_scores(restored: torch.Tensor, images: torch.Tensor, net) -> dict[str, list[float]]:
    """Per image: mean and best-of-n PSNR, perceptual distance to the truth, diversity
    score and FWV on the σ grid (tim.md §Metrics)."""
    from engine.evaluation import metrics

    perceptual = lambda a, b: metrics.perceptual_distance(a, b, net.features)
    rows = []
    for samples, clean in zip(restored, images):
        psnr = metrics.psnr(samples, clean)
        grid = metrics.faithfulness_weighted_variance(samples[None], clean[None], distance=perceptual)
        rows.append({"psnr": float(psnr.mean()), "best_of_n_psnr": float(psnr.max()),
                     "perceptual": float(perceptual(samples, clean).mean()),
                     "diversity_score": metrics.diversity_score(samples[None], perceptual),
                     **{f"fwv@{s:g}": v for s, v in grid.items()}})
    return {k: [r[k] for r in rows] for k in rows[0]}


def evaluate_tower(model, images: torch.Tensor, samples: int, seed: int = 0) -> dict:
    """The tower's restorations of clean ``images`` (image units), ``samples`` each,
    scored per image and summarised with intervals (module doc)."""
    from engine.evaluation.evaluate import summarise
    from engine.models.features import load_feature_network

    restored = tower_restorations(model, images, samples, seed)
    return {"inputs": len(images), "samples": samples, "seed": seed, "degradation": model.degradation,
            **summarise(restoration_scores(restored, images, load_feature_network()))}


def compare_towers(models: dict, images: torch.Tensor, samples: int, reference: torch.Tensor,
                   seed: int = 0) -> dict:
    """Towers of one task on the same inputs and seeds (an ablation): each one's
    `evaluate_tower` scores plus the FD of all its samples against the clean
    ``reference`` images; for every tower after the first, the paired interval of each
    per-image score's difference (it − first) and the interval of its FD difference
    (inputs resampled with both towers' samples, module doc)."""
    from engine.evaluation.evaluate import fd_with_interval, summarise
    from engine.models.features import load_feature_network

    net = load_feature_network()
    with torch.no_grad():
        reference_features = net.embedding(reference)
    report, scores, features = {}, {}, {}
    for name, model in models.items():
        restored = tower_restorations(model, images, samples, seed)
        scores[name] = restoration_scores(restored, images, net)
        with torch.no_grad():
            features[name] = net.embedding(restored.flatten(0, 1))
        report[name] = {"degradation": model.degradation, **summarise(scores[name]),
                        **fd_with_interval(features[name], reference_features)}
    first = next(iter(models))
    by_input = lambda name: features[name].double().numpy().reshape(len(images), samples, -1)
    for name in list(models)[1:]:
        report[name]["minus_" + first] = {
            **{key: list(uncertainty.paired_difference_interval(values, scores[first][key]))
               for key, values in scores[name].items()},
            "fd": list(uncertainty.fd_difference_by_input_interval(
                by_input(name), by_input(first), reference_features.double().numpy()))}
    return {"inputs": len(images), "samples": samples, "seed": seed, "reference": len(reference),
            "towers": report}
