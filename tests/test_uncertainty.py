"""Intervals and verdicts (engine.evaluation.uncertainty), with fixed seeds."""

import math

import numpy as np
import pytest

from engine.evaluation import uncertainty as u
from engine.evaluation.metrics import frechet_distance


def test_mean_interval_matches_normal_theory_for_large_samples():
    values = np.random.default_rng(0).normal(3.0, 2.0, 2000)
    lo, hi = u.mean_interval(values)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))  # 0.088
    assert lo < values.mean() < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)


def test_mean_interval_of_constant_values_is_a_point_and_needs_two_values():
    assert u.mean_interval([2.5, 2.5, 2.5]) == (2.5, 2.5)
    assert u.mean_interval([1.0]) is None


def test_paired_difference_removes_the_shared_image_difficulty():
    rng = np.random.default_rng(1)
    difficulty = rng.normal(25.0, 4.0, 50)  # per-image PSNR varies a lot
    a, b = difficulty + 0.3, difficulty + rng.normal(0.0, 0.05, 50)
    lo, hi = u.paired_difference_interval(a, b)
    assert 0.25 < lo < hi < 0.35  # unpaired, the ±4 dB spread would swamp 0.3 dB
    assert u.verdict((lo, hi)) == u.HOLDS


def test_fd_difference_interval_separates_a_shift_and_straddles_zero_without_one():
    rng = np.random.default_rng(2)
    reference = rng.normal(0, 1, (400, 4))
    same_a, same_b = rng.normal(0, 1, (400, 4)), rng.normal(0, 1, (400, 4))
    shifted = rng.normal(0.5, 1, (400, 4))  # FD ≈ 4·0.25 = 1 more than same_a's
    gap = u.fd_difference_interval(shifted, same_a, reference, resamples=300)
    assert gap[0] > 0.5 and gap[0] < frechet_distance(shifted, reference) - frechet_distance(same_a, reference) < gap[1]
    null = u.fd_difference_interval(same_a, same_b, reference, resamples=300)
    assert null[0] < 0 < null[1]


def test_fd_difference_by_input_resolves_a_shift_that_unpaired_resampling_hides():
    """Two methods' samples of the same 50 inputs (4 each, 32-d), which share each
    input's content: resampling inputs with both sample sets keeps their shared draw
    and resolves a 0.1 shift; resampling the two sets apart straddles zero."""
    rng = np.random.default_rng(4)
    a = rng.normal(0, 1, (50, 1, 32)) + rng.normal(0, 0.3, (50, 4, 32))
    b = a + rng.normal(0.1, 0.05, a.shape)
    reference = rng.normal(0, 1, (400, 32))
    flat = lambda x: x.reshape(-1, 32)
    estimate = frechet_distance(flat(b), reference) - frechet_distance(flat(a), reference)
    low, high = u.fd_difference_by_input_interval(b, a, reference, resamples=300)
    assert 0 < low < estimate < high
    low, high = u.fd_difference_interval(flat(b), flat(a), reference, resamples=300)
    assert low < 0 < estimate < high
    assert u.fd_difference_by_input_interval(a, a, reference, resamples=50) == (0.0, 0.0)


def test_fd_interval_contains_the_estimate():
    rng = np.random.default_rng(3)
    a, r = rng.normal(0.2, 1, (300, 3)), rng.normal(0, 1, (300, 3))
    lo, hi = u.fd_interval(a, r, resamples=200)
    assert lo < frechet_distance(a, r) < hi


def test_blocks_and_t_intervals():
    values = u.block_values(np.arange(200.0), np.mean, block=64)
    assert values == [31.5, 95.5, 159.5]  # three full blocks; the 8 left over are dropped
    lo, hi = u.t_interval(values)
    assert lo < 95.5 < hi and u.t_interval([1.0]) is None
    lo, hi = u.difference_t_interval([5.0, 5.2, 4.9, 5.1], [1.0, 1.1, 0.9, 1.05])
    assert 3.6 < lo < 4.0 < hi < 4.4


def test_verdict_is_three_valued_and_needs_every_part():
    assert u.verdict((0.1, 0.5)) == u.HOLDS
    assert u.verdict((-0.5, -0.1)) == u.FAILS
    assert u.verdict((-0.1, 0.5)) == u.INCONCLUSIVE
    assert u.verdict((0.1, 0.5), (-0.2, 0.3)) == u.INCONCLUSIVE
    assert u.verdict((0.1, 0.5), (-0.3, -0.2)) == u.FAILS
    assert u.verdict((math.nan, math.nan)) == u.INCONCLUSIVE


def test_with_interval_writes_the_half_width():
    assert u.with_interval(27.8123, (27.4, 28.2)) == "27.81 ± 0.4"
    assert u.with_interval(3.0, None) == "3"


def test_fd_interval_is_shifted_off_the_duplicates_bias():
    """32-d, 800 samples against 400 references, FD 1.22: resampling with replacement
    raises FD so much that the plain percentile interval (2.06–2.56) misses the
    estimate; the shifted interval keeps its width and holds the estimate."""
    rng = np.random.default_rng(5)
    a, r = rng.normal(0.05, 1, (800, 32)), rng.normal(0, 1, (400, 32))
    fd = frechet_distance(a, r)
    plain = u.bootstrap_interval([a, r], frechet_distance, resamples=200)
    lo, hi = u.fd_interval(a, r, resamples=200)
    assert fd < plain[0] and lo < fd < hi
    assert hi - lo == pytest.approx(plain[1] - plain[0])
