"""DPS, RMP and the gradient helper against closed-form priors and posteriors (posterior.md §4)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.core.operators import Downsample, Identity, Mask
from engine.core.registry import Measurement, make_params
from engine.core.rng import SampleRNG
from engine.core.schedules import VESchedule, VPSchedule
from engine.priors.base import denoise_with_grad
from engine.priors.exact import F64, GaussianMixturePrior, GaussianPrior, dense_matrix, smooth_gaussian_4px
from engine.priors.posterior import MatrixOperator, exact_posterior, posterior_moments
from engine.solvers.dps import DPSParams, dps, guidance
from engine.solvers.rmp import RMPParams, rmp


def Row(a):
    """y = aᵀx for 2-D points (2, 1, 1): the toy measurement of the spec."""
    return MatrixOperator([a], (2, 1, 1))


def run_last(method, prior, measurement, params_cls, n=2, seed=0, **values):
    steps = list(method(prior, measurement, make_params(params_cls, values), SampleRNG(seed, n)))
    return steps[-1].x0_hat.reshape(n, -1).double(), steps


@pytest.fixture
def masked_gaussian():
    """A 4×4 Gaussian prior, half the pixels observed with σ_y = 0.1, and its posterior."""
    prior = smooth_gaussian_4px(VPSchedule())
    op = Mask("random", 0.5, 0)
    g = torch.Generator().manual_seed(1)
    x0 = prior.sample(1, g).float()
    y = op.forward(x0) + 0.1 * torch.randn(op.forward(x0).shape, generator=g)
    return prior, op, y, 0.1


# --- the gradient helper ------------------------------------------------------------

def test_denoise_with_grad_is_the_vjp_of_the_denoiser_and_counts_it():
    prior = GaussianPrior([0.5, -0.3], [[0.5, 0.4], [0.4, 0.5]], VPSchedule(), (2, 1, 1))
    t = 0.3
    c, sigma = math.sqrt(prior.schedule.alpha_bar(t)), prior.schedule.sigma(t)
    cov = prior.covs[0]
    jac = c * cov @ torch.linalg.inv(c**2 * cov + sigma**2 * torch.eye(2, dtype=F64))  # ∂x̂0/∂x_t
    x = torch.tensor([[0.2, 1.0], [-1.0, 0.4]]).reshape(2, 2, 1, 1)
    w = torch.tensor([1.0, -2.0])
    with torch.no_grad():  # jobs iterate methods without autograd
        x0_hat, grad, loss = denoise_with_grad(prior, x, t, lambda x0: (x0.flatten(1) * w).sum(1) ** 2)
    expected_x0 = prior.means[0] + (jac @ (x.reshape(2, 2).double() - c * prior.means[0]).T).T
    torch.testing.assert_close(x0_hat.reshape(2, 2).double(), expected_x0, atol=1e-6, rtol=0)
    expected = 2 * (expected_x0 @ w.double())[:, None] * (jac.T @ w.double())[None]
    torch.testing.assert_close(grad.reshape(2, 2).double(), expected, atol=1e-5, rtol=0)
    assert loss.shape == (2,) and not grad.requires_grad and not x0_hat.requires_grad
    assert (prior.nfe, prior.vjp) == (1, 1)


def test_denoise_with_grad_through_the_learned_network_keeps_weights_frozen():
    from engine.priors.catalog import load_prior
    prior = load_prior("vp")
    x = torch.randn(1, *prior.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x0_hat, grad, _ = denoise_with_grad(prior, x, 0.5, lambda x0: x0.flatten(1).sum(1))
    assert grad.abs().sum() > 0 and (prior.nfe, prior.vjp) == (1, 1)
    assert all(not p.requires_grad and p.grad is None for p in prior.network.parameters())
    # finite difference along one direction (float32 network: a loose relative check)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    h = 1e-2
    with torch.no_grad():
        f = lambda z: float(prior.denoise(z, 0.5).sum())
        numeric = (f(x + h * v) - f(x - h * v)) / (2 * h)
    assert abs(numeric - float((grad * v).sum())) < 0.02 * abs(numeric) + 1e-3


# --- closed-form posteriors -------------------------------------------------------------

def test_exact_posterior_of_a_gaussian_matches_the_information_form(masked_gaussian):
    prior, op, y, sigma_y = masked_gaussian
    post = exact_posterior(prior, op, y, sigma_y)
    a = dense_matrix(op, prior.shape)
    prec = torch.linalg.inv(prior.covs[0]) + a.T @ a / sigma_y**2
    cov = torch.linalg.inv(prec)
    mean = cov @ (torch.linalg.solve(prior.covs[0], prior.means[0]) + a.T @ y.reshape(-1).double() / sigma_y**2)
    m, c = posterior_moments(post)
    torch.testing.assert_close(m, mean, atol=1e-10, rtol=0)
    torch.testing.assert_close(c, cov, atol=1e-10, rtol=0)


def test_exact_posterior_of_a_mixture_matches_numerical_integration():
    prior = GaussianMixturePrior([0.5, 0.5], [[0.5, 0.5], [-0.5, -0.5]], 0.01 * torch.eye(2).expand(2, 2, 2),
                                 VPSchedule(), (2, 1, 1))
    op, y, sigma_y = Row([-2.0, 1.7]), torch.tensor([0.1]), 0.2
    grid = torch.linspace(-1.2, 1.2, 601, dtype=F64)
    pts = torch.cartesian_prod(grid, grid)
    log_p = prior.log_density(pts.reshape(-1, 2, 1, 1), 0.0).double() \
        - (pts @ op.matrix[0] - 0.1) ** 2 / (2 * sigma_y**2)
    w = (log_p - log_p.max()).exp()
    w = w / w.sum()
    m, c = posterior_moments(exact_posterior(prior, op, y, sigma_y))
    torch.testing.assert_close(m, w @ pts, atol=1e-4, rtol=0)
    torch.testing.assert_close(c, (pts - m).T @ ((pts - m) * w[:, None]), atol=1e-4, rtol=0)


# --- DPS ----------------------------------------------------------------------------------

@pytest.mark.slow  # 400 samples × 1000 steps: ≈ 40 s alone, minutes on a loaded machine
def test_dps_with_scale_zero_reproduces_the_prior_moments():
    """400 samples, DDPM with 1000 steps. Standard errors: mean ≈ √(0.5/400) = 0.035,
    covariance entries ≈ √(0.41/400) = 0.032; bounds are 4 of them. (At 100 steps the
    variance is visibly low, 0.466 for 0.5 with 4000 samples: the test uses 1000.)"""
    prior = GaussianPrior([0.5, -0.3], [[0.5, 0.4], [0.4, 0.5]], VPSchedule(), (2, 1, 1))
    n = 400
    meas = Measurement(torch.zeros(n, 2, 1, 1), Identity(), 0.1, prior.shape)
    out, steps = run_last(dps, prior, meas, DPSParams, n=n, seed=3, nfe=1000, scale=0.0)
    assert prior.vjp == 0 and prior.nfe == 1000 and len(steps) == 1000
    assert (out.mean(0) - prior.means[0]).abs().max() < 0.14
    assert (torch.cov(out.T) - prior.covs[0]).abs().max() < 0.13


def test_dps_guidance_equals_the_analytic_gradient(masked_gaussian):
    prior, op, y, sigma_y = masked_gaussian
    t = 0.4
    c, sigma = math.sqrt(prior.schedule.alpha_bar(t)), prior.schedule.sigma(t)
    cov = prior.covs[0]
    jac = c * cov @ torch.linalg.inv(c**2 * cov + sigma**2 * torch.eye(16, dtype=F64))
    a = dense_matrix(op, prior.shape)
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    meas = Measurement(y.expand(2, 1, 4, 4), op, sigma_y, prior.shape)
    with torch.no_grad():
        x0_hat, grad, residual = guidance(prior, meas, x, t)
    r = (x0_hat.reshape(2, 16).double() @ a.T) - y.reshape(-1).double()
    expected = (r @ a @ jac) / r.norm(dim=1, keepdim=True)  # Jᵀ Aᵀ (A x̂0 − y)/‖A x̂0 − y‖
    torch.testing.assert_close(grad.reshape(2, 16).double(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(residual.double(), r.norm(dim=1), atol=1e-5, rtol=0)


def test_dps_moves_towards_the_posterior(masked_gaussian):
    """DPS's likelihood is approximate (a Jensen gap): a loose check that its sample mean
    is closer to E[x0|y] than the prior mean is (seed 0 only; not a statistical bound)."""
    prior, op, y, sigma_y = masked_gaussian
    n = 64
    meas = Measurement(y.expand(n, 1, 4, 4), op, sigma_y, prior.shape)
    out, steps = run_last(dps, prior, meas, DPSParams, n=n, nfe=200, scale=0.5)
    m, _ = posterior_moments(exact_posterior(prior, op, y, sigma_y))
    assert (out.mean(0) - m).norm() < 0.75 * (prior.means[0] - m).norm()
    assert steps[-1].extras["residual"].shape == (n,) and prior.vjp == 200


# --- RMP ------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant,schedule,steps,inner,bound", [
    ("vp", VPSchedule(), 1000, 1, 5e-3),  # measured 2.1e-3 (spec: 2e-3)
    ("ve", VPSchedule(), 30, 20, 0.05),  # VE view of a VP prior, σ_max 50: measured 6.5e-3
    ("ve", VESchedule(0.01, 50.0), 30, 20, 0.05),  # a VE prior: measured 6.5e-3
])
def test_rmp_with_exact_scores_reaches_the_gaussian_posterior_mean(masked_gaussian, variant, schedule,
                                                                    steps, inner, bound):
    prior, op, y, sigma_y = masked_gaussian
    post = exact_posterior(prior, op, y, sigma_y, schedule=schedule)
    m, _ = posterior_moments(post)
    out, trajectory = run_last(rmp, post, None, RMPParams, variant=variant, steps=steps, inner=inner,
                               step_size=1.0, sample_inner=False)
    assert (out - m).abs().max() < bound
    assert len(trajectory) == steps and post.nfe == (steps - 1) * inner


@pytest.mark.parametrize("step_size", [0.5, 1.0])
def test_rmp_tweedie_start_reaches_the_posterior_mean_on_a_coarse_grid(masked_gaussian, step_size):
    """T = 11, T_in = 1, exact scores: the ``tweedie`` start (reverse mean given the
    previous x̂0) lands within 3.0e-3 of the posterior mean at s1 = 0.5 and 1 (seeds 0–2:
    2.4e-3–3.0e-3); the ``transition`` start x̄/a needs s1 = 1 there (7.2e-3) and at
    s1 = 0.5 ends 4.7–6.0 away (a coarse step's x̄/a is far outside, one half step does
    not pull it back)."""
    prior, op, y, sigma_y = masked_gaussian
    post = exact_posterior(prior, op, y, sigma_y, schedule=VPSchedule())
    m, _ = posterior_moments(post)
    run = lambda start: run_last(rmp, post, None, RMPParams, steps=11, inner=1, step_size=step_size,
                                 sample_inner=False, start=start)[0]
    assert (run("tweedie") - m).abs().max() < 5e-3
    if step_size < 1:
        assert (run("transition") - m).abs().max() > 1.0


def test_rmp_is_independent_of_its_start_on_a_unimodal_mixture_posterior():
    """Two overlapping components (unimodal posterior, weights 0.54/0.46). Measured over
    these 12 starts: spread 1.4e-3 (the exact chain keeps √ᾱ_T C P_T⁻¹ x̄_T ≈ 1.5e-3 of
    the start), distance to E[x0|y] 1.9e-3 (the mode-vs-mean gap of a slightly skewed
    posterior)."""
    prior = GaussianMixturePrior([0.5, 0.5], [[0.0, 0.0], [0.3, 0.2]], 0.09 * torch.eye(2).expand(2, 2, 2),
                                 VPSchedule(), (2, 1, 1))
    post = exact_posterior(prior, Row([-2.0, 1.7]), torch.tensor([0.3]), 0.2)
    m, _ = posterior_moments(post)
    outs = torch.cat([run_last(rmp, post, None, RMPParams, n=4, seed=s, steps=200, step_size=1.0,
                               sample_inner=False)[0]
                      for s in (0, 10, 20)])
    assert (outs - outs.mean(0)).abs().max() < 4e-3
    assert (outs.mean(0) - m).abs().max() < 0.01


def test_rmp_natural_gradient_reaches_the_posterior_mean(masked_gaussian):
    """Algorithm 1 (isotropic precision, Stein trace): stochastic; seed 0 only (at
    T = 1000 on the prior itself seeds 0–2 gave 0.014; the bound 0.05 is not statistical)."""
    prior, op, y, sigma_y = masked_gaussian
    post = exact_posterior(prior, op, y, sigma_y)
    m, _ = posterior_moments(post)
    out, steps = run_last(rmp, post, None, RMPParams, steps=300, step_size=1.0, precision="natural")
    assert (out - m).abs().max() < 0.05
    assert steps[1].extras["precision"].shape == (2,)


@pytest.fixture(scope="module")
def demo_gaussian_14px():
    """A Gaussian fitted to the 64 bundled demo images at 14×14 (2×2 block means, model
    range; covariance + 0.01 I): an image-like prior whose posterior is exact."""
    from engine.io.data import demo_images, to_model_range
    small = torch.nn.functional.avg_pool2d(to_model_range(demo_images()[0]), 2).flatten(1).double()
    cov = torch.cov(small.T) + 0.01 * torch.eye(small.shape[1], dtype=F64)
    return GaussianPrior(small.mean(0), cov, VPSchedule(), (1, 14, 14), name="demo-gaussian-14px")


@pytest.mark.parametrize("operator,bound", [(Downsample(2), 0.07), (Mask("random", 0.7, 0), 0.12)])
def test_rmp_defaults_approach_the_gaussian_posterior_mean(demo_gaussian_14px, operator, bound):
    """RMP at its defaults (VP, T = 100, norm balance ζ = 1, network at μ + √V ε) with the
    DPS likelihood, 4 measurements (σ_y = 0.02) of draws from the prior: RMS distance to
    the closed-form E[x0|y]. Measured over seeds 0–9: SR×2 0.0514 (sd 0.0010), random
    70 % mask 0.0883 (sd 0.0050); the bounds are > 4 sd above, and far below the
    distances of the prior mean (0.44, 0.44) and the pseudo-inverse (0.21, 0.59).
    (The paper's FFHQ ζ = 0.15 for SR lands 0.82 max-abs away on the 784-pixel analogue.)"""
    prior, sigma_y = demo_gaussian_14px, 0.02
    g = torch.Generator().manual_seed(1)
    x0 = prior.sample(4, g).float()
    y = operator.forward(x0) + sigma_y * torch.randn(operator.forward(x0).shape, generator=g)
    truth = torch.stack([posterior_moments(exact_posterior(prior, operator, y[i:i + 1], sigma_y))[0]
                         for i in range(4)])
    out, _ = run_last(rmp, prior, Measurement(y, operator, sigma_y, prior.shape), RMPParams, n=4)
    assert (out - truth).pow(2).mean().sqrt() < bound
    assert (operator.pinv(y).flatten(1).double() - truth).pow(2).mean().sqrt() > 2.5 * bound


@pytest.mark.parametrize("balance,zeta", [("constant", 1.0), ("norm", 0.5), ("residual", 0.5)])
def test_rmp_with_the_network_likelihood_moves_towards_the_posterior(masked_gaussian, balance, zeta):
    """The DPS likelihood approximation inside RMP (the Jensen gap of the spec): a loose
    check that every γ form moves the mean towards E[x0|y] and reports its residual."""
    prior, op, y, sigma_y = masked_gaussian
    meas = Measurement(y.expand(2, 1, 4, 4), op, sigma_y, prior.shape)
    m, _ = posterior_moments(exact_posterior(prior, op, y, sigma_y))
    out, steps = run_last(rmp, prior, meas, RMPParams, steps=200, step_size=1.0, balance=balance, zeta=zeta,
                           sample_inner=False)
    assert (out.mean(0) - m).norm() < 0.75 * (prior.means[0] - m).norm()
    if balance == "constant":  # a fixed γ: the start is (nearly) forgotten. The norm form's γ
        assert (out[0] - out[1]).abs().max() < 5e-3  # grows with ‖s‖, large at high noise: not so
    assert "residual" in steps[-2].extras and prior.vjp == 199


def test_playground_on_the_bimodal_toy(tmp_path):
    """The spec's bimodal toy: reverse KL is mode-seeking, so RMP with exact posterior
    scores lands on the dominant mode's mean (weight 0.57), not on E[x0|y] between the
    modes; DPS draws from both modes (measured at y = 0.1, seed 0: 50 % / 43 % exact)."""
    from engine.evaluation.playground import render, solve, summary
    with torch.no_grad():
        result = solve(0.1, n=60, nfe=100, seed=0)
    post = result["posterior"]
    dominant = post.means[post.weights.argmax()]
    assert (result["rmp-exact"][0].double() - dominant).abs().max() < 0.05
    first = summary(result)["dps_fraction_in_first_mode"]
    assert 0.2 < first < 0.8
    render(result, tmp_path / "playground.png", size=64)
    assert (tmp_path / "playground.png").stat().st_size > 0
