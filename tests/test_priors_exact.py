"""Closed-form priors against independent truths: Tweedie/autograd, Monte Carlo moments."""

from __future__ import annotations

import math

import pytest
import torch

from engine.core.operators import Blur, Compose, Mask
from engine.priors.catalog import EXACT_PRIORS, load_prior
from engine.priors.exact import (EmpiricalPrior, GaussianMixturePrior, GaussianPrior, dense_matrix,
                                 smooth_field_covariance)
from engine.core.rng import SampleRNG
from engine.core.schedules import SoftBlurSchedule, SoftMaskSchedule, VPSchedule
from engine.core.step import BadInputError

F64 = torch.float64
SHAPE = (1, 4, 4)
D = 16


pytestmark = pytest.mark.usefixtures("one_thread")

class MaskedBlurSchedule(SoftBlurSchedule):
    """C_t = M B_t: a product of non-commuting symmetric operators is not symmetric, so
    any C/Cᵀ mix-up in a closed form shows."""

    def corruption(self, t):
        return Compose((Blur(0.5 + t), Mask("random", 0.3, seed=1)))


# (schedule, level): a blur C_t, a frame mask C_t, a VP scale C_t, the soft noise stage
# and a non-symmetric C_t
CORRUPTIONS = {
    "blur": (SoftBlurSchedule(blur_max=2.0), 0.6),
    "masked-blur": (MaskedBlurSchedule(), 0.5),
    "mask": (SoftMaskSchedule(), 0.55),
    "scale": (VPSchedule(), 0.3),
    "noise-stage": (SoftBlurSchedule(blur_max=2.0), 0.1),
}


def make_prior(kind: str, schedule):
    g = torch.Generator().manual_seed(7)
    if kind == "gaussian":
        return GaussianPrior(0.3 * torch.randn(D, generator=g, dtype=F64), smooth_field_covariance(),
                             schedule, SHAPE)
    if kind == "gmm":
        means = torch.randn(3, D, generator=g, dtype=F64)
        covs = torch.stack([smooth_field_covariance(scale=s) for s in (0.1, 0.2, 0.4)])
        return GaussianMixturePrior([0.2, 0.5, 0.3], means, covs, schedule, SHAPE)
    images = torch.rand(6, *SHAPE, generator=g, dtype=F64) * 2 - 1
    return EmpiricalPrior(images, schedule)


def corrupted_samples(prior, t, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = prior.sample(n, g).to(F64)
    return prior.schedule.corrupt(x0, t, torch.randn(x0.shape, generator=g, dtype=F64))


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("kind", ["gaussian", "gmm", "empirical"])
def test_tweedie_matches_autograd_of_log_density(kind, corruption):
    """Lemma A.2: ∇ log p_t(x) = (C_t E[x0|x] − x)/σ_t²."""
    schedule, t = CORRUPTIONS[corruption]
    prior = make_prior(kind, schedule)
    x = corrupted_samples(prior, t, 5).requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.log_density(x, t).sum(), x)
    x = x.detach()
    tweedie = prior.score_from_x0(x, prior.denoise(x, t), t)
    assert torch.allclose(grad, tweedie, rtol=1e-7, atol=1e-9 * tweedie.abs().max())
    assert prior.nfe == 1


def test_tweedie_on_the_28px_demo_prior():
    prior = load_prior("empirical-soft-blur")
    x = corrupted_samples(prior, 0.5, 3).requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.log_density(x, 0.5).sum(), x)
    tweedie = prior.score(x.detach(), 0.5)
    assert torch.allclose(grad, tweedie, rtol=1e-6, atol=1e-8 * tweedie.abs().max())


@pytest.mark.parametrize("corruption", ["blur", "mask", "scale", "masked-blur"])
def test_gaussian_marginal_matches_monte_carlo(corruption):
    """p_t = N(C μ, C Σ Cᵀ + σ² I): checked against 20 000 forward samples.

    Spread over 10 seeds: largest |mean error| of the 16 pixels, in standard errors,
    1.19 ± 0.32 … 2.05 ± 0.49 (scale) (bound 5: ≥ 6 sd); covariance error 0.013 ±
    0.004 … 0.028 ± 0.002 (bound 0.05: ≥ 8 sd).
    """
    schedule, t = CORRUPTIONS[corruption]
    prior = make_prior("gaussian", schedule)
    x = corrupted_samples(prior, t, 20000, seed=1).reshape(20000, D)
    mean, cov = prior.marginal(t)
    assert (x.mean(0) - mean).abs().max() < 5 * math.sqrt(cov.diagonal().max() / 20000)
    assert torch.linalg.norm(torch.cov(x.T) - cov) / torch.linalg.norm(cov) < 0.05


@pytest.mark.parametrize("corruption", ["blur", "masked-blur"])
def test_gaussian_posterior_mean_is_the_best_linear_estimate(corruption):
    """E[x0|x_t] minimises the mean squared error: no linear correction improves it.

    A least-squares fit of 17 features to 20 000 residuals explains ≈ 17/20 000 = 8.5e-4
    of them by chance alone: measured over 10 seeds 8.8e-4 ± 0.75e-4 (blur) and 9.2e-4 ±
    0.75e-4 (masked blur). Bound 1.5e-3: ≥ 7.7 sd (1e-3 was 1.1 sd from the mean).
    """
    schedule, t = CORRUPTIONS[corruption]
    prior = make_prior("gaussian", schedule)
    g = torch.Generator().manual_seed(2)
    x0 = prior.sample(20000, g)
    x_t = schedule.corrupt(x0, t, torch.randn(x0.shape, generator=g, dtype=F64))
    error = (x0 - prior.denoise(x_t, t)).reshape(20000, D)
    features = torch.cat([x_t.reshape(20000, D), torch.ones(20000, 1, dtype=F64)], 1)
    correction = torch.linalg.lstsq(features, error).solution
    assert (features @ correction).pow(2).mean() < 1.5e-3 * error.pow(2).mean()


def test_empirical_prior_limits():
    prior = make_prior("empirical", SoftBlurSchedule(blur_max=2.0))
    clean = prior.schedule.corruption(0.0).forward(prior.images)
    assert torch.allclose(prior.denoise(clean, 0.0), prior.images, atol=1e-12)
    far = torch.zeros(2, *SHAPE, dtype=F64)  # at huge noise every image is equally likely
    vp = EmpiricalPrior(prior.images, VPSchedule())
    assert torch.allclose(vp.denoise(far, 1.0), prior.images.mean(0).expand(2, *SHAPE), atol=1e-4)


def test_dense_matrix_applies_the_operator():
    op, x = Blur(1.3), torch.randn(3, *SHAPE, dtype=F64)
    assert torch.allclose(x.reshape(3, D) @ dense_matrix(op, SHAPE).T, op(x).reshape(3, D))


def test_mixture_samples_and_colour_stats_match_monte_carlo():
    """Spread over 10 seeds: |colour mean error| 0.0018 ± 0.0010, |colour std error|
    0.0012 ± 0.0010 (bounds 0.02: ≥ 18 sd); largest pixel mean error 0.0089 ± 0.0039
    (bound 0.03: 5.4 sd)."""
    prior = make_prior("gmm", VPSchedule())
    x = prior.sample(40000, torch.Generator().manual_seed(3))
    colours = x.mean((2, 3))[:, 0]
    mean, std = prior.colour_stats()
    assert abs(colours.mean() - mean[0]) < 0.02 and abs(colours.std() - std[0]) < 0.02
    assert torch.allclose(x.mean(0), prior.mean_image().to(F64), atol=0.03)


def test_exact_final_draws_are_per_sample():
    prior = make_prior("gmm", SoftBlurSchedule(blur_max=2.0))
    batch = prior.sample_final(SampleRNG(10, 3, dtype=F64))
    singles = torch.cat([prior.sample_final(SampleRNG(10 + k, 1, dtype=F64)) for k in range(3)])
    assert torch.equal(batch, singles)
    assert not torch.equal(batch[0], batch[1])


def test_presets():
    """Spread over 10 seeds: |mean radius − 2| 0.0030 ± 0.0013 (bound 0.02: 13 sd);
    |correlation − 0.8| 0.0017 ± 0.0015 (bound 0.01: 5.5 sd)."""
    assert {"ring8", "gaussian2d", "empirical-vp", "empirical-soft-blur"} <= set(EXACT_PRIORS)
    ring = load_prior("ring8")
    radius = ring.sample(4000, torch.Generator().manual_seed(0)).flatten(1).norm(dim=1)
    assert ring.shape == (2, 1, 1) and ring.exact and abs(radius.mean() - 2.0) < 0.02
    gauss = load_prior("gaussian2d")
    x = gauss.sample(40000, torch.Generator().manual_seed(0)).flatten(1)
    assert abs(torch.corrcoef(x.T)[0, 1] - 0.8) < 0.01
    vp = load_prior("empirical-vp")
    assert vp.name == "empirical-vp" and vp.shape == (1, 28, 28) and vp.schedule.kind == "vp"
    assert vp.images.min() >= -1 and vp.images.max() <= 1 and len(vp.images) == 64


def test_bad_mixtures_are_refused():
    with pytest.raises(BadInputError, match="means"):
        GaussianMixturePrior([1.0], torch.zeros(1, 3), torch.eye(2)[None], VPSchedule(), (2, 1, 1))
    with pytest.raises(BadInputError, match="semi-definite"):
        GaussianPrior([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]], VPSchedule(), (2, 1, 1))
    with pytest.raises(BadInputError, match="weights"):
        GaussianMixturePrior([-1.0], torch.zeros(1, 2), torch.eye(2)[None], VPSchedule(), (2, 1, 1))
