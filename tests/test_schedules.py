"""Corruption schedules against the spec's test vectors (rgm.md, soft_diffusion.md)."""

import math

import numpy as np
import pytest
import torch

from engine.core.operators import Blur, Downsample, Identity, Mask, Scale
from engine.core.schedules import (RGMSchedule, SoftBlurSchedule, SoftMaskSchedule, VESchedule,
                                   VPSchedule, rgm_coefficients, rgm_sr_levels,
                                   schedule_from_config)

# --- RGM (rgm.md, App. B.1) ----------------------------------------------------------


def test_rgm_d_coefficients_match_the_test_vectors():
    a, s = rgm_coefficients(4)
    np.testing.assert_allclose(a, [1, .7223, .2805, .0586, .0066], atol=1e-4)
    np.testing.assert_allclose(s, [1e-4, .6916, .9599, .9983, 1.0], atol=1e-4)
    np.testing.assert_allclose(a[1:] ** 2 + s[1:] ** 2, 1.0, rtol=1e-12)  # a VP variance


def test_rgm_squared_time_coefficients_match_the_test_vectors():
    a, s = rgm_coefficients(3, squared_time=True)
    np.testing.assert_allclose(a, [1, .9347, .3653, .0066], atol=1e-4)
    np.testing.assert_allclose(s, [1e-4, .3553, .9309, 1.0], atol=1e-4)


def test_rgm_sr_levels_match_the_test_vectors():
    levels = rgm_sr_levels(5)
    assert len(levels) == 6 and levels[0][0] == pytest.approx(1.0)
    a = [lvl[0] for lvl in levels[1:]]
    low_res_std = [std / 2**m for _, std, m in levels[1:]]
    np.testing.assert_allclose(a, [.5646, .5646, .1058, .1058, .0066], atol=1e-4)
    np.testing.assert_allclose(low_res_std, [1.651, .825, 1.989, .994, 2.000], atol=1e-3)
    assert [m for *_, m in levels] == [0, 0, 1, 1, 2, 2]


def rgm_sr_observation(x, k, noise):
    """``y_k = U_m D_m (a_n x + 2^n s_n ε)`` built from `Downsample` (m 2×2 averages)."""
    a_n, std, m = rgm_sr_levels(5)[k]
    y = a_n * x + std * noise
    for _ in range(m):
        y = Downsample(2).forward(y)
    for _ in range(m):
        y = Downsample(2).pinv(y)  # nearest upsampling U back to full resolution
    return y, m


@pytest.fixture(scope="module")
def draws():
    """One 28×28 image and 10⁴ standard normal draws."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 1, 28, 28, generator=g), torch.randn(10_000, 1, 28, 28, generator=g)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_rgm_sr_noise_per_low_res_pixel_has_the_stated_std(draws, k):
    x, noise = draws
    y, m = rgm_sr_observation(x, k, noise)
    _, std, _ = rgm_sr_levels(5)[k]
    low_res = y[..., :: 2**m, :: 2**m]  # one full-resolution pixel per low-res pixel
    assert low_res.shape[-1] == 28 // 2**m
    per_pixel = low_res.std(0)
    assert per_pixel.mean().item() == pytest.approx(std / 2**m, rel=0.02)
    assert (per_pixel / (std / 2**m) - 1).abs().max() < 0.05  # ≤ 784 pixels, 10⁴ draws each
    clean, _ = rgm_sr_observation(x, k, torch.zeros_like(x))
    torch.testing.assert_close(y.mean(0, keepdim=True), clean, atol=5 * std / 2**m / 100, rtol=0)
    # U_m copies each low-res value over its 2^m × 2^m block
    blocks = low_res[:10].repeat_interleave(2**m, -2).repeat_interleave(2**m, -1)
    torch.testing.assert_close(y[:10], blocks)


RGM_LADDERS = [("rgm-d", 4, 28), ("rgm-sr-naive", 3, 32), ("rgm-sr", 5, 28)]


def test_rgm_schedules_carry_the_test_vectors_and_their_p_T():
    d, naive, sr = (RGMSchedule(v, T) for v, T, _ in RGM_LADDERS)
    np.testing.assert_allclose([a for a, *_ in d.table()], [1, .7223, .2805, .0586, .0066], atol=1e-4)
    np.testing.assert_allclose([d.sigma(k / 4) for k in range(5)], [1e-4, .6916, .9599, .9983, 1.0],
                               atol=1e-4)
    np.testing.assert_allclose([a for a, *_ in naive.table()], [1, .9347, .3653, .0066], atol=1e-4)
    np.testing.assert_allclose([std for _, std, _ in naive.table()], [1e-4, .3553, .9309, 1.0], atol=1e-4)
    np.testing.assert_allclose([sr.sigma(k / 5) for k in range(1, 6)], [1.651, .825, 1.989, .994, 2.000],
                               atol=1e-3)
    # p_T: N(0, I); N(0, I/64) at H/2^T; N(0, 4I) at the coarsest grid
    np.testing.assert_allclose([d.prior_std() ** 2, naive.prior_std() ** 2, sr.prior_std() ** 2],
                               [1, 1 / 64, 4], rtol=1e-4)
    assert [d.factor(4), naive.factor(3), sr.factor(5)] == [1, 8, 4]
    assert d.grid() == [1.0, 0.75, 0.5, 0.25, 0.0]
    for schedule in (d, naive, sr):
        assert schedule_from_config(schedule.to_config()) == schedule


@pytest.mark.parametrize("variant, levels, side", RGM_LADDERS)
def test_rgm_degrade_has_the_stated_std_per_low_res_pixel(variant, levels, side):
    """`degrade` (full-resolution noise, then D_m, U_m) against ``corrupt``/``sigma`` on the
    level's grid: mean C_t x and per-pixel std σ_t within 2 % over 10⁴ draws."""
    schedule = RGMSchedule(variant, levels)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, side, side, generator=g) * 2 - 1
    noise = torch.randn(10_000, 1, side, side, generator=g)
    for k in range(1, levels + 1):
        f, t = schedule.factor(k), k / levels
        low = schedule.degrade(x, k, noise)[..., ::f, ::f]
        assert low.std(0).mean().item() == pytest.approx(schedule.sigma(t), rel=0.02)
        torch.testing.assert_close(low.mean(0, keepdim=True), schedule.corruption(t).forward(x),
                                   atol=5 * schedule.sigma(t) / 100, rtol=0)
        clean = schedule.degrade(x, k, torch.zeros_like(x))
        torch.testing.assert_close(schedule.upsample(clean[..., ::f, ::f], k), clean)
    start = schedule.sample_prior(noise)[..., ::schedule.factor(levels), ::schedule.factor(levels)]
    assert start.std().item() == pytest.approx(schedule.prior_std(), rel=0.02)


def test_rgm_schedule_refuses_bad_ladders():
    from engine.core.step import BadInputError
    with pytest.raises(BadInputError, match="unknown RGM schedule"):
        RGMSchedule("rgm-x", 4)
    with pytest.raises(BadInputError, match="divisible by 8"):
        RGMSchedule("rgm-sr-naive", 3).check_shape((1, 28, 28))


# --- VE / VP ---------------------------------------------------------------------------


def test_vp_alpha_bars():
    vp = VPSchedule()
    alpha_bars = vp.alpha_bars()
    assert len(alpha_bars) == 1001 and alpha_bars[0] == 1.0
    assert (torch.diff(alpha_bars) < 0).all()
    assert alpha_bars[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)
    assert vp.alpha_bar(1.0) == alpha_bars[-1].item() and vp.sigma(0.0) == 0.0
    assert vp.corruption(0.5) == Scale(math.sqrt(alpha_bars[500].item()))
    assert vp.sigma(0.5) ** 2 + vp.corruption(0.5).c ** 2 == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("n", [1, 7, 50, 333, 999, 1000])
def test_vp_grid_has_n_plus_one_distinct_decreasing_points(n):
    grid = VPSchedule().grid(n)
    assert len(grid) == n + 1 and grid[0] == 1.0 and grid[-1] == 0.0
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert all(abs(t * 1000 - round(t * 1000)) < 1e-9 for t in grid)  # integer timesteps


def test_ve_schedule_is_geometric_noise_only():
    ve = VESchedule(0.01, 50.0)
    assert ve.sigma(0) == pytest.approx(0.01) and ve.sigma(1) == pytest.approx(50.0)
    assert ve.sigma(0.5) == pytest.approx(math.sqrt(0.01 * 50.0))
    assert ve.corruption(0.3) == Identity()
    grid = ve.grid(10, t_start=0.8)
    assert len(grid) == 11 and grid[0] == 0.8 and grid[-1] == 0.0


# --- Soft Diffusion ---------------------------------------------------------------------


def test_soft_blur_noise_stage_then_blur_stage():
    s = SoftBlurSchedule()
    ts = np.linspace(0, s.t_split, 7)
    sigmas = np.array([s.sigma(t) for t in ts])
    np.testing.assert_allclose(sigmas, 0.01 * 10 ** (ts / s.t_split), rtol=1e-12)  # geometric
    assert [s.sigma(t) for t in (0.2, 0.6, 1.0)] == pytest.approx([0.1] * 3, rel=1e-12)
    assert all(s.blur_sigma(t) == 0.01 for t in ts)
    blur = [s.blur_sigma(t) for t in np.linspace(s.t_split, 1, 40)]
    assert blur[0] == pytest.approx(0.01) and blur[-1] == pytest.approx(s.blur_max)
    assert all(a < b for a, b in zip(blur, blur[1:]))
    assert s.corruption(0.6) == Blur(s.blur_sigma(0.6))


def test_soft_blur_at_t0_is_the_identity():
    x = torch.rand(2, 3, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(SoftBlurSchedule().corruption(0.0).forward(x), x, atol=1e-6, rtol=0)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(SoftBlurSchedule().corrupt(x, 0.0, noise), x + 0.01 * noise,
                               atol=1e-6, rtol=0)


def test_soft_blur_table_is_interpolated_at_uniform_times():
    s = SoftBlurSchedule(t_split=0.2, blur_table=[0.01, 1.0, 4.0])
    assert s.blur_sigma(0.6) == pytest.approx(1.0)
    assert s.blur_sigma(0.4) == pytest.approx(0.505)
    assert s.blur_sigma(0.8) == pytest.approx(2.5)


def test_soft_mask_window_shrinks_to_nothing():
    s = SoftMaskSchedule()
    x = torch.ones(1, 1, 28, 28)
    assert s.corruption(0.0).forward(x).sum() == 28 * 28
    seen = [s.corruption(t).forward(x).sum().item() for t in np.linspace(s.t_split, 1, 12)]
    assert seen[0] == 28 * 28 and seen[-1] == 0.0
    assert all(a >= b for a, b in zip(seen, seen[1:])) and seen[5] < seen[0]
    assert s.corruption(1.0) == Mask("frame", 1.0)


def test_soft_mask_noise_rises_over_the_mask_stage_only_when_asked():
    flat, rising = SoftMaskSchedule(), SoftMaskSchedule(sigma_max=1.0)
    ts = np.linspace(0, 1, 41)
    assert [flat.sigma(t) for t in ts] == [SoftMaskSchedule(sigma_max=0.05).sigma(t) for t in ts]
    assert flat.sigma(1.0) == pytest.approx(0.1) and rising.sigma(1.0) == pytest.approx(1.0)
    noise_stage = ts[ts <= flat.t_split]
    assert [flat.sigma(t) for t in noise_stage] == [rising.sigma(t) for t in noise_stage]
    assert rising.sigma(0.575) == pytest.approx(0.1 * 10 ** 0.5)  # halfway through the mask stage
    mask_stage = [rising.sigma(t) for t in ts[ts >= flat.t_split]]
    assert all(b > a for a, b in zip(mask_stage, mask_stage[1:]))


@pytest.mark.parametrize("schedule", [
    VESchedule(), VESchedule(0.002, 80.0), VPSchedule(), VPSchedule(1e-4, 0.03, 500),
    SoftBlurSchedule(), SoftBlurSchedule(t_split=0.1, blur_table=[0.01, 0.5, 2.0, 9.0]),
    SoftMaskSchedule(), SoftMaskSchedule(sigma_end=0.2), SoftMaskSchedule(sigma_max=1.0)],
    ids=lambda s: s.kind)
def test_schedule_config_round_trips(schedule):
    config = schedule.to_config()
    assert config["kind"] == schedule.kind
    again = schedule_from_config(config)
    assert again == schedule and type(again) is type(schedule)
    assert again.sigma(0.7) == schedule.sigma(0.7) and again.grid(9) == schedule.grid(9)


def test_unknown_schedule_kind_is_refused():
    with pytest.raises(ValueError, match="unknown schedule kind"):
        schedule_from_config({"kind": "cosine"})


def test_engine_schedule_prints_an_rgm_ladder(capsys):
    from engine.core.wasserstein import main
    assert main(["--corruption", "rgm-sr"]) == 0
    out = capsys.readouterr().out
    assert "7×7" in out and "1.9888" in out and "p_T = N(0, 4 I)" in out
