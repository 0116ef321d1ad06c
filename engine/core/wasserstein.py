"""Blur schedules chosen by the shortest Wasserstein path (Soft Diffusion, §3.3).

The blur stage of a `SoftBlurSchedule` walks through a table of blur levels σ_b placed at
uniform times. Instead of spacing them geometrically, Soft Diffusion picks the table so
that successive corrupted distributions are close in W2:

1. candidate levels ω_1 < … < ω_N (`blur_levels`, geometric in σ_b [choice]);
2. noise-free blurred copies ``P_i = {C_{ω_i} x : x ∈ S}`` of a fixed image subset S
   (noise would add a floor that swamps ε);
3. ``M_ij = W2(P_i, P_j)`` (`w2_matrix`);
4. edges i → j (i < j) weighted ``M_ij`` where ``M_ij ≤ ε`` (`shortest_path`);
5. the shortest path from the clean level to the most blurred one;
6. ε bisected until the path has K nodes (`select_schedule`).

Decisions recorded here:

* W2 is exact. Both sets hold the same number of images with uniform weights, so the
  transport polytope is the Birkhoff polytope, whose vertices are permutations: the
  optimal plan is an assignment. `scipy.optimize.linear_sum_assignment` solves it
  exactly and ≈10× faster than POT's network simplex (``ot.emd2``) at 256 images; the
  tests check that both give the same value.
* Distances are in the units of the images passed to `w2_matrix`. `compute_schedule`
  converts its [0, 1] images to the [−1, 1] range the networks see, because that is
  where C_t acts during training (zero padding makes the two ranges differ by more
  than a factor: the constant −1 darkens at the borders).
* The graph only has forward edges, so it is a DAG with the level order as a
  topological order; relaxing the nodes in that order yields exactly the distances
  Dijkstra would (tested against `scipy.sparse.csgraph.dijkstra`) and keeps
  zero-weight edges between numerically identical levels, which a dense scipy graph
  would drop.
* Paths whose W2 lengths agree to `TIE_TOLERANCE` (relative to max M) are ties, broken
  toward fewer nodes. Geometric candidates start deep in the regime where the blur is
  the identity to float precision (σ_b ≲ 0.15), so many levels are copies of the clean
  one; without this rule a path may spend a node on such a copy.
* ε is bisected over the sorted distinct edge weights (`eps_candidates`; weights equal
  to the tie tolerance count as one), the only values at which the path can change.
  The node count is *not* monotone in ε in general: a newly allowed long edge can
  complete a path that is strictly shorter in W2 and has more nodes (seen on small
  image sets; the total W2 length is monotone, the count only by and large). The
  bisection finds an ε where the count crosses K; if it does not hit K exactly, the
  closer of the two neighbouring counts is returned (ties: the longer path), and
  callers compare ``len(table)`` with K and say so.
* Baseline (paper: FID 8.35 vs 1.85): `mse_matching_schedule` picks levels so that
  ``E‖x0 − x_t‖² = E‖x0 − C_ω x0‖² + d σ²`` (σ the constant noise of the blur stage)
  grows by the same factor on every grid step, exactly as ``d σ_t²`` does for a VE
  schedule with geometric σ_t on a uniform grid.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from engine.core.operators import Blur
from engine.core.schedules import NO_BLUR, RGM_VARIANTS, RGMSchedule, SoftBlurSchedule, rgm_table_text
from engine.core.step import BadInputError, EngineError

DEFAULT_LEVELS, DEFAULT_PATH, DEFAULT_IMAGES = 128, 32, 256
TIE_TOLERANCE = 1e-6  # path lengths this close (relative to max M) are equal


def blur_levels(n: int, sigma_min: float = NO_BLUR, sigma_max: float = 15.0) -> np.ndarray:
    """n candidate blur levels, geometric from σ_min (the clean level) to σ_max."""
    if n < 2 or not 0 < sigma_min < sigma_max:
        raise BadInputError(f"need at least 2 levels and 0 < sigma_min < sigma_max, "
                            f"got n={n}, [{sigma_min}, {sigma_max}]")
    return np.geomspace(sigma_min, sigma_max, n)


def blurred_sets(images: torch.Tensor, levels) -> torch.Tensor:
    """``P_i = {C_{ω_i} x}`` as a ``(L, N, d)`` float64 tensor (noise-free)."""
    x = images.to(torch.float64)
    return torch.stack([Blur(float(w)).forward(x).flatten(1) for w in levels])


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖a_k − b_l‖²`` for point sets a (…, N, d) and b (…, N, d)."""
    sq = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :] - 2 * a @ b.transpose(-1, -2)
    return sq.clamp_min(0)


def exact_w2(cost: np.ndarray) -> float:
    """W2 between two uniform sets of equal size from their squared-distance matrix."""
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def w2_matrix(images: torch.Tensor, levels,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``M_ij = W2(P_i, P_j)``, an (L, L) symmetric matrix with zero diagonal (step 3).

    ``progress`` is called with the number of pairs finished after each row.
    """
    sets = blurred_sets(images, levels)
    n_levels = len(sets)
    m = np.zeros((n_levels, n_levels))
    for i in range(n_levels - 1):
        costs = squared_distances(sets[i], sets[i + 1:]).numpy()
        for j, cost in enumerate(costs, start=i + 1):
            m[i, j] = m[j, i] = exact_w2(cost)
        if progress is not None:
            progress(len(costs))
    return m


def identity_coupling_bound(images: torch.Tensor, levels) -> np.ndarray:
    """Upper bound on M: pair every image with itself, ``sqrt(E‖C_i x − C_j x‖²)``."""
    sets = blurred_sets(images, levels)
    norms = (sets * sets).sum(-1)  # (L, N)
    cross = torch.einsum("ind,jnd->ijn", sets, sets)
    sq = (norms[:, None] + norms[None, :] - 2 * cross).clamp_min(0)
    return sq.mean(-1).sqrt().numpy()


def shortest_path(m: np.ndarray, eps: float) -> list[int] | None:
    """Nodes of the shortest path 0 → L−1 over edges i → j (i < j) with ``M_ij ≤ ε``.

    Steps 4–5; None when the last level cannot be reached.
    """
    n = len(m)
    dist, previous, nodes = np.full(n, np.inf), np.full(n, -1), np.ones(n)
    dist[0] = 0.0
    tie = TIE_TOLERANCE * m.max()
    for j in range(1, n):  # nodes in topological order: every edge into j is settled
        candidates = dist[:j] + np.where(m[:j, j] <= eps, m[:j, j], np.inf)
        ties = candidates <= candidates.min() + tie
        previous[j] = int(np.argmin(np.where(ties, nodes[:j], np.inf)))
        dist[j], nodes[j] = candidates[previous[j]], nodes[previous[j]] + 1
    if not np.isfinite(dist[-1]):
        return None
    path = [n - 1]
    while path[-1] != 0:
        path.append(int(previous[path[-1]]))
    return path[::-1]


def eps_candidates(m: np.ndarray) -> np.ndarray:
    """The ε at which the path can change: the distinct edge weights, increasing.

    Weights within the tie tolerance form one value (the largest of them), so that
    numerically identical levels enter the graph together.
    """
    weights = np.unique(m[np.triu_indices(len(m), 1)])
    return weights[np.append(np.diff(weights) > TIE_TOLERANCE * m.max(), True)]


def node_count(m: np.ndarray, eps: float) -> float:
    """Node count of the ε-path; ∞ when unreachable (more nodes than any real path)."""
    path = shortest_path(m, eps)
    return np.inf if path is None else len(path)


def select_schedule(m: np.ndarray, levels, path_nodes: int) -> tuple[np.ndarray, float]:
    """Bisect ε until the path has ``path_nodes`` nodes (step 6); ``(levels on path, ε)``.

    ε runs over `eps_candidates`. If no ε gives exactly K nodes, the closest count is
    returned.
    """
    if path_nodes < 2:
        raise BadInputError(f"a schedule path needs at least 2 nodes, got {path_nodes}")
    candidates = eps_candidates(m)
    lo, hi = 0, len(candidates) - 1  # invariant: count(hi) ≤ K (the 2-node path)
    while lo < hi:
        mid = (lo + hi) // 2
        if node_count(m, candidates[mid]) <= path_nodes:
            hi = mid
        else:
            lo = mid + 1
    eps = candidates[hi]
    if hi > 0 and node_count(m, eps) < path_nodes:
        longer = candidates[hi - 1]
        if node_count(m, longer) - path_nodes <= path_nodes - node_count(m, eps):
            eps = longer
    nodes = shortest_path(m, eps)
    return np.asarray(levels, dtype=np.float64)[nodes], float(eps)


def mse_matching_schedule(images: torch.Tensor, levels, path_nodes: int,
                          sigma: float = 0.1) -> np.ndarray:
    """Baseline: K levels with ``E‖x0 − C_ω x0‖² + dσ²`` geometric along the grid.

    The error curve is measured on the candidate levels and inverted by log-log
    interpolation; the first and last candidates are the table's ends.
    """
    x = images.to(torch.float64).flatten(1)
    sets = blurred_sets(images, levels)
    error = ((sets - x) ** 2).sum(-1).mean(-1).numpy() + x.shape[1] * sigma**2
    error = np.maximum.accumulate(error)  # the inverse needs a monotone curve
    keep = np.concatenate([[True], np.diff(error) > 0])
    target = np.geomspace(error[0], error[-1], path_nodes)
    log_levels = np.log(np.asarray(levels, dtype=np.float64)[keep])
    return np.exp(np.interp(np.log(target), np.log(error[keep]), log_levels))


def training_images(n_images: int, seed: int) -> torch.Tensor:
    """A seeded subset of Fashion-MNIST train (the demo set if it is not installed)."""
    from engine.io import data

    try:
        images, _ = data.load_fashion_mnist("train")
    except BadInputError:
        images, _ = data.demo_images()
    return subset(images, n_images, seed)


def subset(images: torch.Tensor, n_images: int, seed: int) -> torch.Tensor:
    if n_images < 2:
        raise BadInputError(f"need at least 2 images for a W2 schedule, got {n_images}")
    g = torch.Generator().manual_seed(seed)
    return images[torch.randperm(len(images), generator=g)[:n_images]]


def compute_schedule(corruption: str = "blur", levels: int = DEFAULT_LEVELS,
                     path: int = DEFAULT_PATH, n_images: int = DEFAULT_IMAGES,
                     data: torch.Tensor | None = None, seed: int = 0,
                     sigma_max: float = SoftBlurSchedule.blur_max,
                     progress: Callable[[int], None] | None = None) -> dict:
    """The W2 shortest-path blur table for a model config (``SoftBlurSchedule(blur_table=…)``).

    ``data``: images in [0, 1] units (default: a seeded training subset); distances
    are measured in the model's [−1, 1] range.
    """
    if corruption != "blur":
        raise BadInputError(f"W2 schedules are implemented for blur only, not {corruption!r}")
    from engine.io.data import to_model_range

    if path < 2:
        raise BadInputError(f"a schedule path needs at least 2 nodes, got {path}")
    images = training_images(n_images, seed) if data is None else subset(data, n_images, seed)
    images = to_model_range(images)
    candidates = blur_levels(levels, NO_BLUR, sigma_max)
    m = w2_matrix(images, candidates, progress)
    table, eps = select_schedule(m, candidates, path)
    nodes = shortest_path(m, eps)
    return {"method": "w2-shortest-path", "corruption": corruption,
            "blur_table": table.tolist(), "eps": eps, "path_nodes": nodes,
            "requested_path": path, "w2": [float(m[i, j]) for i, j in zip(nodes, nodes[1:])],
            "levels": candidates.tolist(), "n_images": len(images), "seed": seed,
            "baseline_table": mse_matching_schedule(images, candidates, path).tolist()}


def format_table(result: dict) -> str:
    table, steps, baseline = result["blur_table"], result["w2"], result["baseline_table"]
    lines = [f"W2 shortest path over {len(result['levels'])} blur levels, "
             f"{result['n_images']} images: eps = {result['eps']:.4g}, {len(table)} nodes",
             f"{'k':>3}  {'sigma_b':>9}  {'W2 step':>9}  {'MSE-matching':>12}"]
    for k, sigma_b in enumerate(table):
        step = f"{steps[k - 1]:9.4f}" if k else f"{'':9}"
        base = f"{baseline[k]:12.4f}" if k < len(baseline) else ""
        lines.append(f"{k:>3}  {sigma_b:9.4f}  {step}  {base}")
    if len(table) != result["requested_path"]:
        lines.append(f"note: no eps gives exactly {result['requested_path']} nodes; "
                     f"the closest path has {len(table)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m engine schedule --corruption blur --levels N --path K [--images N] [--json OUT]``."""
    parser = argparse.ArgumentParser(prog="python -m engine schedule",
                                     description="Soft Diffusion blur schedule by the shortest W2 "
                                                 "path, or an RGM degradation ladder.")
    parser.add_argument("--corruption", default="blur", choices=["blur", *RGM_VARIANTS],
                        help="blur (W2 path) or an RGM ladder (rgm-d, rgm-sr-naive, rgm-sr)")
    parser.add_argument("--steps", type=int, default=None,
                        help="RGM: levels T (default 4, 3, 5); the image side is --side")
    parser.add_argument("--side", type=int, default=28, help="RGM: image side in pixels")
    parser.add_argument("--levels", type=int, default=DEFAULT_LEVELS, help="candidate blur levels")
    parser.add_argument("--path", type=int, default=DEFAULT_PATH, help="nodes on the path (table size)")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="images in the subset")
    parser.add_argument("--sigma-max", type=float, default=SoftBlurSchedule.blur_max)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the result (blur_table etc.) to this file")
    args = parser.parse_args(argv)
    if args.corruption in RGM_VARIANTS:
        return print_rgm_schedule(args.corruption, args.steps, args.side, args.json)
    from tqdm import tqdm

    bar = tqdm(total=args.levels * (args.levels - 1) // 2, delay=1.0, file=sys.stderr,
               unit="pair", desc="W2 matrix", leave=False)
    try:
        result = compute_schedule(args.corruption, args.levels, args.path, args.images,
                                  seed=args.seed, sigma_max=args.sigma_max, progress=bar.update)
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


RGM_DEFAULT_LEVELS = {"rgm-d": 4, "rgm-sr-naive": 3, "rgm-sr": 5}


def print_rgm_schedule(variant: str, levels: int | None, side: int, json_path: str | None) -> int:
    try:
        schedule = RGMSchedule(variant, levels or RGM_DEFAULT_LEVELS[variant])
        schedule.check_shape((side, side))
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(rgm_table_text(schedule, side))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({**schedule.to_config(), "table": schedule.table(),
                       "prior_std": schedule.prior_std()}, f, indent=2)
    return 0
