"""Samplers against exact priors (soft_diffusion.md "Tests"; Ho et al.; Song et al.)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare

from engine.core import registry
from engine.evaluation.claims import covariance_error
from engine.core.operators import Blur, Downsample, Identity, Mask, Scale
from engine.priors.catalog import load_prior
from engine.priors.exact import EmpiricalPrior, GaussianPrior, smooth_gaussian_4px
from engine.core.registry import Measurement
from engine.core.rng import SampleRNG
from engine.samplers.common import Move, sample_p1, start, start_level
from engine.samplers.soft_diffusion import ddim_update
from engine.samplers.vp import ddpm_update
from engine.core.schedules import SoftBlurSchedule, SoftMaskSchedule, VESchedule, VPSchedule
from engine.core.step import BadInputError, UnsupportedOperatorError

F64 = torch.float64
SAMPLERS = ("naive", "momentum", "pf-momentum", "ddim", "pc", "ddpm")
SOFT_4PX = SoftBlurSchedule(blur_max=2.0)  # ≈ 0.55·H for 4×4 images


pytestmark = pytest.mark.usefixtures("one_thread")


class BatchRNG(SampleRNG):
    """One generator for the whole batch: fast draws for large-sample statistics.

    (Per-sample streams are what `test_batch_sample_equals_single_run` checks.)
    """

    def __init__(self, seed: int, n: int):
        super().__init__(seed, 1, dtype=F64)
        self.generators = self.generators * n

    def randn(self, *shape):
        return torch.randn((len(self), *shape), generator=self.generators[0], dtype=F64)


def gaussian_4px(schedule=SOFT_4PX) -> GaussianPrior:
    return smooth_gaussian_4px(schedule)


def gaussian_2d_vp() -> GaussianPrior:
    return GaussianPrior([0.5, -0.3], [[0.5, 0.4], [0.4, 0.5]], VPSchedule(), (2, 1, 1))


def run(name, prior, rng, measurement=None, **values):
    info = registry.get(name)
    info.check(prior, measurement)
    return list(info.run(prior, measurement, registry.make_params(info.params, values), rng))


def relative_error(estimate, truth):
    return float(torch.linalg.norm(estimate - truth) / torch.linalg.norm(truth))


# --- accounting and the step stream ----------------------------------------------------

@pytest.mark.parametrize("name", SAMPLERS)
def test_nfe_and_steps(name):
    prior = gaussian_2d_vp() if name == "ddpm" else load_prior("ring8")
    info = registry.get(name)
    params = registry.make_params(info.params, {"nfe": 7})
    steps = list(info.run(prior, None, params, SampleRNG(0, 3)))
    assert prior.nfe == info.nfe(params) == len(steps) == 7
    assert [s.index for s in steps] == list(range(7)) and all(s.total == 7 for s in steps)
    assert steps[-1].t == 0.0 and steps[-1].x0_hat is steps[-1].x_t
    assert steps[-1].x0_hat.shape == (3, 2, 1, 1) and steps[-1].x0_hat.dtype == torch.float32
    assert all(a.t > b.t for a, b in zip(steps, steps[1:]))


@pytest.mark.parametrize("name", SAMPLERS)
def test_batch_sample_equals_single_run(name):
    prior = gaussian_2d_vp() if name == "ddpm" else load_prior("ring8")
    extra = {"k": 0.5} if name == "ddim" else {}
    batch = run(name, prior, SampleRNG(5, 4), nfe=12, **extra)[-1].x0_hat
    again = run(name, prior, SampleRNG(5, 4), nfe=12, **extra)[-1].x0_hat
    singles = torch.cat([run(name, prior, SampleRNG(5 + k, 1), nfe=12, **extra)[-1].x0_hat
                         for k in range(4)])
    assert torch.equal(batch, again)
    assert torch.allclose(batch, singles, atol=1e-6)
    assert not torch.allclose(batch[0], batch[1])


def test_ddim_with_k_one_is_the_naive_sampler():
    prior = load_prior("ring8")
    naive = run("naive", prior, SampleRNG(3, 5), nfe=20)[-1].x0_hat
    ddim = run("ddim", prior, SampleRNG(3, 5), nfe=20, k=1.0)[-1].x0_hat
    assert torch.allclose(naive, ddim, atol=1e-6)


# --- the DDIM / DDPM unification ---------------------------------------------------------

def vp_move(t=0.5, t_next=0.4) -> Move:
    s = VPSchedule()
    return Move(0, t, t_next, s.corruption(t), s.corruption(t_next), s.sigma(t), s.sigma(t_next))


def test_eq52_on_vp_is_ddim_and_ddpm_is_its_eta_one_case():
    m, s = vp_move(), VPSchedule()
    abar, abar_next = s.alpha_bar(m.t), s.alpha_bar(m.t_next)
    g = torch.Generator().manual_seed(0)
    x_t, x0_hat = torch.randn(2, 2, 1, 3, 3, generator=g, dtype=F64)
    eps_hat = (x_t - math.sqrt(abar) * x0_hat) / math.sqrt(1 - abar)
    song_ddim = math.sqrt(abar_next) * x0_hat + math.sqrt(1 - abar_next) * eps_hat  # η = 0
    assert torch.allclose(ddim_update(m, x_t, x0_hat, None), song_ddim, atol=1e-12)
    # η = 1: σ_DDIM² = β̃ = (1 − ᾱ')/(1 − ᾱ)·(1 − ᾱ/ᾱ'); as a fraction of σ_t' this is k
    k = math.sqrt((1 - abar / abar_next) / (1 - abar))
    ddim = ddim_update(m, x_t, x0_hat, SampleRNG(9, 2, dtype=F64), k=k)
    ddpm = ddpm_update(m, x_t, x0_hat, SampleRNG(9, 2, dtype=F64))
    assert torch.allclose(ddim, ddpm, atol=1e-12)


def test_ddim_is_exact_for_one_image():
    """h ≡ α: DDIM(k=0) keeps (x_t − C_t α)/σ_t fixed, so C_1α + σ_1ε ↦ C_0α + σ_0ε exactly;
    PF-momentum is only first-order accurate (its error halves when N doubles)."""
    alpha = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=F64) * 2 - 1
    prior = EmpiricalPrior(alpha, SOFT_4PX)

    def residual(step):  # ε recovered from the state
        return (step.x_t - SOFT_4PX.corruption(step.t).forward(alpha)) / SOFT_4PX.sigma(step.t)

    steps = run("ddim", prior, SampleRNG(0, 3, dtype=F64), nfe=40, final="prior")
    x1 = prior.sample_final(SampleRNG(0, 3, dtype=F64))
    eps = (x1 - SOFT_4PX.corruption(1.0).forward(alpha)) / SOFT_4PX.sigma(1.0)
    for step in steps:
        assert torch.allclose(residual(step), eps, atol=1e-10)
    errors = [(residual(run("pf-momentum", prior, SampleRNG(0, 3, dtype=F64), nfe=n, final="prior")[-1])
               - eps).norm() / eps.norm() for n in (40, 80)]
    assert errors[0] > 1e-3 and 1.7 < errors[0] / errors[1] < 2.3


# --- distributions ---------------------------------------------------------------------

def test_gaussian_covariance_from_exact_start():
    """Spec: 200 steps, 4000 samples from exact x_1; momentum/PF/DDIM < 0.10, naive > 0.3.

    Spread over 10 seeds: momentum, PF-momentum and DDIM 0.042 ± 0.007 each (8 sd below
    0.10), naive 0.456 ± 0.009 (17 sd above 0.3).
    """
    prior = gaussian_4px()
    for name in ("momentum", "pf-momentum", "ddim", "naive"):
        error = covariance_error(name, prior, BatchRNG(0, 4000), nfe=200)
        assert error > 0.3 if name == "naive" else error < 0.10, (name, error)


# x_1 must not tell the points apart, else the start alone decides where a sample lands
EIGHT_POINT_RUNS = [(VESchedule(0.01, 10.0), name) for name in ("momentum", "pf-momentum", "ddim", "pc")] + \
    [(SoftBlurSchedule(blur_max=2.0, sigma_end=1.0), name) for name in ("momentum", "ddim")]


@pytest.mark.parametrize("schedule,name", EIGHT_POINT_RUNS)
def test_eight_point_prior_lands_on_points_uniformly(schedule, name):
    """Samples land on the points (distances in units of σ_0 √d) and evenly among them.

    Spread over 10 seeds, per case (mean ± sd): mean distance 0.99 ± 0.007 … 1.34 ± 0.008
    (bound 1.5: ≥ 19 sd); largest distance 1.63 ± 0.05 … 2.16 ± 0.08, worst sd
    soft-blur ddim 1.91 ± 0.18 (bound 3.0: ≥ 6 sd). The χ² p-value is uniform when
    landing is even (measured mean 0.46, smallest 3.9e-4 in 60 runs), so its bound is
    a false-alarm rate: 1e-5; one point with twice its share gives p ≈ 1e-20.
    """
    images = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(4), dtype=F64) * 2 - 1
    prior = EmpiricalPrior(images, schedule)  # points ≥ 1.6 apart
    x = run(name, prior, BatchRNG(1, 800), nfe=100, final="prior")[-1].x0_hat.flatten(1)
    nearest, index = torch.cdist(x, images.flatten(1)).min(1)
    floor = schedule.sigma(0.0) * math.sqrt(16)  # σ_0 √d
    assert nearest.mean() < 1.5 * floor and nearest.max() < 3.0 * floor
    assert chisquare(torch.bincount(index, minlength=8).numpy()).pvalue > 1e-5


@pytest.mark.parametrize("name,nfe", [("ddpm", 250), ("ddim", 200), ("momentum", 200),
                                      ("pf-momentum", 100), ("pc", 100)])
def test_vp_samplers_reproduce_a_gaussian(name, nfe):
    """Spread over 10 seeds: largest |mean error| in standard errors 1.13 ± 0.48 (ddpm) …
    1.37 ± 0.61 (momentum) (bound 4.5: ≥ 5.1 sd); covariance error 0.025 ± 0.009
    (momentum), 0.029 ± 0.017 (pf-momentum), 0.032 ± 0.020 (ddim), 0.036 ± 0.022 (pc),
    0.039 ± 0.015 (ddpm) (bound 0.13: ≥ 4.3 sd; 0.08 was 2 sd for pc). More samples do
    not tighten it: at 16 000 ddpm stays at 0.036 ± 0.014 (its 250-step bias) while
    the samplers' mean bias grows to 3.9 standard errors."""
    prior, n = gaussian_2d_vp(), 4000
    x = run(name, prior, BatchRNG(2, n), nfe=nfe)[-1].x0_hat.reshape(n, 2)
    mean, cov = prior.marginal(0.0)
    assert (x.mean(0) - mean).abs().max() < 4.5 * math.sqrt(0.5 / n)
    assert relative_error(torch.cov(x.T), cov) < 0.13


def test_refined_final_distribution_matches_forward_x1_better_than_paper():
    """soft_diffusion.md: compare p_1 draws with forward x_1 = C_1 x0 + σ_1 ε per pixel.

    Spread over 10 seeds: refined 0.020 ± 0.004 (bound 0.05: 8 sd), paper 0.295 ± 0.011.
    """
    prior = load_prior("empirical-soft-blur")
    forward = prior.schedule.corruption(1.0).forward(prior.images).mean(0)
    errors = {}
    for final in ("refined", "paper"):
        x1 = sample_p1(prior, final, SampleRNG(0, 256))
        assert x1.shape == (256, 1, 28, 28)
        errors[final] = float((x1.mean(0) - forward).abs().mean())
    assert errors["refined"] < 0.05 < errors["paper"], errors


# --- restoring from a measurement on the corruption path ---------------------------------

def posterior(prior: GaussianPrior, A: torch.Tensor, y: torch.Tensor, sigma_y: float):
    """Mean and covariance of x0 | y = A x0 + σ_y ε for the prior's Gaussian (flattened)."""
    mu, sigma = prior.means[0], prior.covs[0]
    gain = sigma @ A.T @ torch.linalg.inv(A @ sigma @ A.T + sigma_y**2 * torch.eye(len(A), dtype=F64))
    return mu + gain @ (y - A @ mu), sigma - gain @ A @ sigma


@pytest.mark.parametrize("name,schedule,sigma_y,nfe", [
    ("ddpm", VPSchedule(), 0.5, 1000),  # min(1000, k_start) steps from the matched level
    ("momentum", VPSchedule(), 0.3, 200),  # VP reverse SDE with λ² = ᾱ_t
    ("momentum", SOFT_4PX, 0.05, 100),  # the noise stage: the VE reverse SDE
])
def test_sdedit_restoring_noise_samples_the_posterior(name, schedule, sigma_y, nfe):
    """Spread over 10 seeds (instance and sampler): largest |mean error| in standard
    errors 2.10 ± 0.43 … 2.14 ± 0.60 (bound 5: ≥ 4.7 sd); covariance error 0.066 ±
    0.005 (ddpm), 0.073 ± 0.006 (momentum, VP), 0.082 ± 0.005 (momentum, soft-blur)
    (bound 0.15: ≥ 11 sd)."""
    prior, n = gaussian_4px(schedule), 3000
    g = torch.Generator().manual_seed(5)
    x0 = prior.sample(1, g)
    y = x0 + sigma_y * torch.randn(x0.shape, generator=g, dtype=F64)
    measurement = Measurement(y.expand(n, -1, -1, -1), Identity(), sigma_y, prior.shape)
    x = run(name, prior, BatchRNG(6, n), measurement, nfe=nfe)[-1].x0_hat.reshape(n, 16)
    mean, cov = posterior(prior, torch.eye(16, dtype=F64), y.flatten(), sigma_y)
    assert (x.mean(0) - mean).abs().max() < 5 * math.sqrt(cov.diagonal().max() / n)
    assert relative_error(torch.cov(x.T), cov) < 0.15


@pytest.mark.parametrize("schedule,op,sigma_y", [
    (SOFT_4PX, Blur(0.8), 0.1), (SOFT_4PX, Blur(0.8), 0.04), (SoftMaskSchedule(), Mask("frame", 0.5), 0.1),
    (VPSchedule(), Identity(), 0.3), (VPSchedule(), Scale(0.5), 0.2)])
def test_start_is_an_exact_draw_of_x_t(schedule, op, sigma_y):
    """y = A x0 + σ_y ε becomes x_t = C_t x0 + σ_t η (fresh noise tops up σ_y to σ_t).

    Spread over 10 seeds, every case alike: largest |mean of η| 0.015 ± 0.0034 (bound
    0.04: 7 sd); covariance error 0.029 ± 0.002 (bound 0.06: 15 sd).
    """
    n, g = 20000, torch.Generator().manual_seed(8)
    prior = gaussian_4px(schedule)
    x0 = prior.sample(1, g)
    y = op(x0) + sigma_y * torch.randn(n, 1, 4, 4, generator=g, dtype=F64)
    t, x_t = start(prior, Measurement(y, op, sigma_y, prior.shape), "refined", BatchRNG(9, n))
    noise = (x_t - schedule.corruption(t).forward(x0)).reshape(n, 16) / schedule.sigma(t)
    assert noise.mean(0).abs().max() < 0.04
    assert relative_error(torch.cov(noise.T), torch.eye(16, dtype=F64)) < 0.06


def test_start_level_places_the_measurement_on_the_path():
    vp = VPSchedule()
    t, c = start_level(vp, Identity(), 0.3)
    ratio = lambda t: vp.sigma(t) / math.sqrt(vp.alpha_bar(t))
    assert ratio(t) >= 0.3 > ratio(t - 1 / vp.steps) and c == pytest.approx(math.sqrt(vp.alpha_bar(t)))
    t2, c2 = start_level(vp, Scale(2.0), 0.6)  # y/2 = x0 + 0.3 ε: the same level
    assert t2 == t and c2 == pytest.approx(c / 2)
    soft = SoftBlurSchedule()
    t, _ = start_level(soft, Identity(), 0.05)
    assert soft.sigma(t) == pytest.approx(0.05) and t < soft.t_split
    t, _ = start_level(soft, Blur(3.0), 0.1)
    assert soft.blur_sigma(t) == pytest.approx(3.0) and soft.corruption(t) == Blur(soft.blur_sigma(t))


@pytest.mark.parametrize("schedule,op,sigma_y,error,words", [
    (SoftBlurSchedule(), Identity(), 0.3, BadInputError, r"noise 0.3 is above .* \(at most 0.1\); lower noise to 0.1"),
    (SoftBlurSchedule(), Blur(2.0), 0.3, BadInputError, r"at blur 2 \(at most 0.1\); lower noise to 0.1"),
    (SoftBlurSchedule(), Blur(20.0), 0.1, BadInputError, "blur 20 is beyond the strongest"),
    (SoftBlurSchedule(), Identity(), 0.005, BadInputError, "smallest noise"),
    (VPSchedule(), Identity(), 0.0, BadInputError, "nothing to restore; raise noise above 0"),
    (VPSchedule(), Blur(2.0), 0.1, UnsupportedOperatorError, "cannot restore blur: its vp model only removes noise$"),
    (SoftBlurSchedule(), Mask("frame", 0.5), 0.1, UnsupportedOperatorError, "only removes noise and blur"),
    (SoftBlurSchedule(), Blur(2.0, radius=3), 0.1, UnsupportedOperatorError, "cannot restore blur"),
])
def test_off_path_measurements_are_refused_clearly(schedule, op, sigma_y, error, words):
    with pytest.raises(error, match=words):
        start_level(schedule, op, sigma_y)


def test_restoring_off_path_fails_on_first_step_and_unsupported_operators_at_check():
    prior = load_prior("empirical-soft-blur")
    y = torch.zeros(1, 1, 28, 28)
    with pytest.raises(BadInputError, match="above what"):
        run("momentum", prior, SampleRNG(0, 1), Measurement(y, Identity(), 0.6, prior.shape))
    for name, op in [("momentum", Downsample(2)), ("ddim", Mask("box", 0.5)), ("ddpm", Blur(1.0))]:
        measurement = Measurement(y, op, 0.1, prior.shape)
        with pytest.raises(UnsupportedOperatorError):
            registry.get(name).check(gaussian_2d_vp() if name == "ddpm" else prior, measurement)
    with pytest.raises(BadInputError, match="vp"):
        registry.get("ddpm").check(prior, None)
