"""95 % intervals for every compared figure, and three-valued verdicts for claims.

A figure that is compared with another carries its interval; a claim is judged from the
interval of the *difference*, never from two point estimates.

Decisions:

* Means over images (PSNR, SSIM, perceptual distance, FWV, seconds): percentile
  bootstrap over images (`scipy.stats.bootstrap`, `RESAMPLES` resamples, seed
  `BOOTSTRAP_SEED`). Two methods evaluated on the *same* images are compared by a
  paired bootstrap of their per-image differences.
* Fréchet distance: bootstrap over samples. Generated and reference features are
  resampled independently; for the difference FD(a, r) − FD(b, r) one reference
  resample serves both terms of a replicate, so the reference's own noise cancels.
  FD is biased upwards by O(dim / n); the bias is nearly equal for two methods at the
  same n, so the interval of a difference is the figure to trust, not an interval of
  one FD against another. A resample duplicates about a third of its rows, which
  raises FD further, so the plain percentile interval of one FD can lie wholly above
  its estimate (4000 TIM samples against 1000 references: FD 14.5, interval [16.6,
  27.9]); `fd_interval` shifts it by the bootstrap's bias estimate mean(FD*) − FD,
  an interval for the FD at these sample sizes (the only FD compared here). Before
  2026-12-02 16:40 eval wrote the unshifted interval: FD intervals in JSON files and
  figures older than that sit too high by that bias (their widths are right).
* Diversity (mean pairwise distance, a U-statistic: a bootstrap resample's duplicate
  pairs bias it to 0): disjoint blocks of `DIVERSITY_BLOCK` samples, mean ± Student-t
  half-width over the blocks (≥ 2 blocks; one block gives no interval).
* Verdict of "a is better than b" from the interval of the difference oriented so
  that positive means "as claimed": `HOLDS` if the whole interval is > 0, `FAILS` if it
  is < 0, else `INCONCLUSIVE` ("inconclusive at this size").
* Intervals are reported as ``[low, high]`` next to the figure (``<key>_ci``) in JSON
  and written ``27.8 ± 0.4`` (half-width) in tables.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
DIVERSITY_BLOCK = 64
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this size"

Interval = tuple[float, float]


def bootstrap_distribution(samples: Sequence[np.ndarray], statistic: Callable[..., float], *,
                           paired: bool = False, resamples: int = RESAMPLES):
    """``scipy.stats.bootstrap`` of ``statistic(*samples)``, each sample resampled along
    its first axis (rows together when ``paired``); scipy resamples index vectors, so
    rows may be feature vectors of any width. The result holds the percentile interval
    and the replicates."""
    data = [np.asarray(s, dtype=np.float64) for s in samples]
    indices = tuple(np.arange(len(d)) for d in data)
    on_rows = lambda *idx: statistic(*(d[i.astype(np.intp)] for d, i in zip(data, idx)))
    return stats.bootstrap(indices, on_rows, paired=paired, vectorized=False,
                           n_resamples=resamples, confidence_level=LEVEL,
                           method="percentile", random_state=BOOTSTRAP_SEED)


def bootstrap_interval(samples: Sequence[np.ndarray], statistic: Callable[..., float], *,
                       paired: bool = False, resamples: int = RESAMPLES) -> Interval:
    """Percentile bootstrap interval of ``statistic(*samples)`` (`bootstrap_distribution`)."""
    interval = bootstrap_distribution(samples, statistic, paired=paired,
                                      resamples=resamples).confidence_interval
    return float(interval.low), float(interval.high)


def mean_interval(values: Sequence[float], resamples: int = RESAMPLES) -> Interval | None:
    """Bootstrap interval of the mean of per-image values (None below two values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or not np.isfinite(values).all():
        return None
    if np.ptp(values) == 0:
        return float(values[0]), float(values[0])
    return bootstrap_interval([values], np.mean, paired=False, resamples=resamples)


def paired_difference_interval(a: Sequence[float], b: Sequence[float],
                               resamples: int = RESAMPLES) -> Interval:
    """Interval of mean(a − b) for two methods measured on the same images."""
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return mean_interval(difference, resamples) or (math.nan, math.nan)


def fd_interval(features: np.ndarray, reference: np.ndarray,
                resamples: int = RESAMPLES) -> Interval:
    """Interval of the FD at these sample sizes, both sets resampled: the percentile
    interval shifted by the bootstrap's bias estimate mean(FD*) − FD (module doc)."""
    from engine.evaluation.metrics import frechet_distance
    result = bootstrap_distribution([features, reference], frechet_distance, resamples=resamples)
    bias = float(np.mean(result.bootstrap_distribution)) - frechet_distance(features, reference)
    return float(result.confidence_interval.low) - bias, float(result.confidence_interval.high) - bias


def fd_difference_interval(a: np.ndarray, b: np.ndarray, reference: np.ndarray,
                           resamples: int = RESAMPLES) -> Interval:
    """Interval of FD(a, r) − FD(b, r) with a shared reference resample per replicate."""
    from engine.evaluation.metrics import frechet_distance
    statistic = lambda fa, fb, fr: frechet_distance(fa, fr) - frechet_distance(fb, fr)
    return bootstrap_interval([a, b, reference], statistic, paired=False, resamples=resamples)


def fd_difference_by_input_interval(a: np.ndarray, b: np.ndarray, reference: np.ndarray,
                                    resamples: int = RESAMPLES) -> Interval:
    """Interval of FD(a, r) − FD(b, r) when ``a[i]`` and ``b[i]`` (shape N × n × d) are
    two methods' samples of the same input i: inputs are resampled together, the
    reference on its own."""
    from engine.evaluation.metrics import frechet_distance
    flat = lambda x: x.reshape(-1, x.shape[-1])
    statistic = lambda pairs, fr: (frechet_distance(flat(pairs[:, 0]), fr)
                                   - frechet_distance(flat(pairs[:, 1]), fr))
    return bootstrap_interval([np.stack([a, b], axis=1), reference], statistic, resamples=resamples)


def block_values(samples, statistic: Callable, block: int = DIVERSITY_BLOCK) -> list[float]:
    """``statistic`` of each disjoint block of ``block`` consecutive samples."""
    return [statistic(samples[i:i + block]) for i in range(0, len(samples) - block + 1, block)]


def t_interval(values: Sequence[float]) -> Interval | None:
    """Mean ± Student-t half-width (None for fewer than two values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return None
    half = stats.t.ppf(0.5 + LEVEL / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def difference_t_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Welch interval of mean(a) − mean(b) for independent block values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1.0
    half = stats.t.ppf(0.5 + LEVEL / 2, dof) * se
    centre = a.mean() - b.mean()
    return float(centre - half), float(centre + half)


def verdict(*intervals: Interval) -> str:
    """Three-valued verdict from intervals of differences oriented 'positive = as claimed'.

    Several intervals (a claim with several parts, e.g. FD *and* diversity): it holds
    when every part holds, fails when any part fails, else it is inconclusive.
    """
    if any(not (math.isfinite(lo) and math.isfinite(hi)) for lo, hi in intervals):
        return INCONCLUSIVE
    if any(hi < 0 for _, hi in intervals):
        return FAILS
    if all(lo > 0 for lo, _ in intervals):
        return HOLDS
    return INCONCLUSIVE


def half_width(interval: Interval | None) -> float | None:
    return None if interval is None else (interval[1] - interval[0]) / 2


def with_interval(value: float, interval: Interval | None, digits: int = 4) -> str:
    """``27.8 ± 0.4`` (the interval's half-width), or the bare value without one."""
    if interval is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {half_width(interval):.2g}"


def format_interval(interval: Interval, digits: int = 3) -> str:
    return f"[{interval[0]:.{digits}g}, {interval[1]:.{digits}g}]"
