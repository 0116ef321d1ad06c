"""Metrics against scikit-image and closed forms."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from engine.evaluation import metrics
from engine.evaluation.metrics import diversity_score, faithfulness_weighted_variance, mean_squared_distance


def pair(shape, seed):
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, shape[-1]).expand(*shape)  # structure, not only noise
    clean = (0.5 * ramp + 0.5 * torch.rand(shape, generator=g)).clamp(0, 1)
    noisy = (clean + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return clean, noisy


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 64, 64), (3, 28, 28), (3, 64, 64)])
def test_psnr_and_ssim_equal_scikit_image(shape):
    clean, noisy = pair(shape, seed=shape[0] * shape[1])
    ref_ssim = structural_similarity(
        noisy.numpy(), clean.numpy(), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1, channel_axis=0)
    ref_psnr = peak_signal_noise_ratio(clean.numpy(), noisy.numpy(), data_range=1)
    assert metrics.ssim(noisy[None], clean)[0].item() == pytest.approx(ref_ssim, abs=1e-6)
    assert metrics.psnr(noisy[None], clean)[0].item() == pytest.approx(ref_psnr, abs=1e-4)


def test_identical_images_are_perfect():
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(metrics.ssim(x, x), torch.ones(2))
    assert torch.isinf(metrics.psnr(x, x)).all()


def test_diversity_and_pixel_std_closed_forms():
    a, b = torch.zeros(1, 4, 4), torch.full((1, 4, 4), 0.5)
    assert metrics.diversity(torch.stack([a, a, a])) == 0.0
    assert metrics.diversity(torch.stack([a, b])) == pytest.approx(0.5)
    assert metrics.diversity(torch.stack([a])) is None
    assert torch.allclose(metrics.pixel_std(torch.stack([a, b])), torch.full((1, 4, 4), 0.25))


def test_sample_metrics_are_plain_json_values():
    clean, noisy = pair((1, 28, 28), 3)
    out = metrics.sample_metrics(torch.stack([noisy, clean]), clean)
    assert out["psnr_per_sample"][1] == float("inf") and len(out["ssim_per_sample"]) == 2
    assert out["diversity"] > 0 and out["std"] > 0
    assert set(metrics.sample_metrics(noisy[None], None)) == set()


def test_frechet_distance_of_diagonal_gaussians():
    """Relative error over 10 seeds: 0.0003 ± 0.0017 (bound 0.02: 11 sd)."""
    rng = np.random.default_rng(0)
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    a = mu_a + np.sqrt(var_a) * rng.standard_normal((200_000, 3))
    b = mu_b + np.sqrt(var_b) * rng.standard_normal((200_000, 3))
    exact = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert metrics.frechet_distance(a, b) == pytest.approx(exact, rel=0.02)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_perceptual_distance_is_zero_for_equal_and_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    conv1, conv2 = torch.randn(4, 1, 3, 3, generator=g), torch.randn(8, 4, 3, 3, generator=g)

    def extractor(x):
        h1 = torch.relu(torch.nn.functional.conv2d(x, conv1))
        return [h1, torch.relu(torch.nn.functional.conv2d(h1, conv2))]

    clean, noisy = pair((1, 28, 28), 5)
    worse = (clean + 0.3 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    d = metrics.perceptual_distance(torch.stack([clean, noisy, worse]), clean, extractor)
    assert d[0].item() == pytest.approx(0.0, abs=1e-6)
    assert 0 < d[1].item() < d[2].item()


def test_ssim_is_left_out_for_images_smaller_than_its_window():
    from engine.evaluation.metrics import sample_metrics, ssim

    g = torch.Generator().manual_seed(0)
    clean, samples = torch.rand(1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    m = sample_metrics(samples, clean)
    assert "psnr" in m and not any(k.startswith("ssim") for k in m)
    with pytest.raises(ValueError, match="11 pixels"):
        ssim(samples, clean)
    assert "ssim" in sample_metrics(torch.rand(2, 1, 11, 11, generator=g), torch.rand(1, 11, 11, generator=g))


def test_frechet_distance_is_exact_and_silent_for_rank_deficient_covariances():
    import warnings

    from scipy import linalg

    g = np.random.default_rng(0)
    a, b = g.normal(size=(40, 64)), g.normal(0.3, 1.5, size=(50, 64))  # fewer samples than dims
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b) \
        - 2 * np.trace(linalg.sqrtm(cov_a @ cov_b).real)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = metrics.frechet_distance(a, b)
    assert value == pytest.approx(reference, rel=1e-3)


def test_frechet_distance_forms_agree_on_either_side_of_the_dimension():
    """The cross-Gram SVD (n ≤ d) and the covariance form (n > d) give one value."""
    g = np.random.default_rng(1)
    a, b = g.normal(size=(64, 64)), g.normal(0.2, 1.3, size=(80, 64))
    centred_a, centred_b = a - a.mean(0), b - b.mean(0)
    by_covariance = metrics.trace_sqrt_product(np.cov(a, rowvar=False), np.cov(b, rowvar=False))
    assert metrics.cross_trace_sqrt(centred_a, centred_b) == pytest.approx(by_covariance, rel=1e-9)
    narrow_a, narrow_b = a[:, :16], b[:, :16]  # n > d: frechet_distance takes the covariance form
    mean_term = ((narrow_a.mean(0) - narrow_b.mean(0)) ** 2).sum()
    traces = np.trace(np.cov(narrow_a, rowvar=False) + np.cov(narrow_b, rowvar=False))
    cross = metrics.cross_trace_sqrt(narrow_a - narrow_a.mean(0), narrow_b - narrow_b.mean(0))
    assert metrics.frechet_distance(narrow_a, narrow_b) == pytest.approx(mean_term + traces - 2 * cross, rel=1e-9)


# -- one-to-many metrics (tim.md §Metrics) ----------------------------------------------------------------------------

def test_identical_samples_score_zero():
    g = torch.Generator().manual_seed(0)
    one = torch.rand(4, 1, 1, 28, 28, generator=g)
    samples = one.expand(4, 6, 1, 28, 28)
    truth = torch.rand(4, 1, 28, 28, generator=g)
    assert diversity_score(samples) == 0.0
    assert all(v == 0.0 for v in faithfulness_weighted_variance(samples, truth).values())


def test_diversity_score_is_the_mean_pairwise_distance():
    g = torch.Generator().manual_seed(1)
    samples = torch.rand(2, 3, 1, 5, 5, generator=g)
    pairs = [float(mean_squared_distance(samples[i, a][None], samples[i, b][None]))
             for i in range(2) for a, b in ((0, 1), (0, 2), (1, 2))]
    assert diversity_score(samples) == pytest.approx(sum(pairs) / 6, rel=1e-12)


def test_fwv_is_non_decreasing_in_sigma_and_weighs_by_faithfulness():
    g = torch.Generator().manual_seed(2)
    truth = torch.rand(3, 1, 8, 8, generator=g)
    samples = truth[:, None] + 0.2 * torch.randn(3, 5, 1, 8, 8, generator=g)
    sigmas = [0.01, 0.03, 0.1, 0.3, 1.0, 10.0]
    fwv = list(faithfulness_weighted_variance(samples, truth, sigmas).values())
    assert all(a <= b for a, b in zip(fwv, fwv[1:])) and fwv[0] < fwv[-1]
    # σ → ∞: the plain variance around the samples' mean
    variance = float(mean_squared_distance(samples.flatten(0, 1), samples.mean(1).repeat_interleave(5, 0)).mean())
    assert fwv[-1] == pytest.approx(variance, rel=1e-3)
    # unfaithful samples with the same spread score less
    shifted = list(faithfulness_weighted_variance(samples + 0.5, truth, sigmas).values())
    assert all(s <= f for s, f in zip(shifted, fwv)) and shifted[2] < fwv[2]
