"""RGM (rgm.md): the oracle generator on finite sets, the training objective's terms,
Algorithm 3 (`rgm`) and Algorithm 4 (`pnp-drs`)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.core.jobs import Job, Request
from engine.core.operators import Degradation, Downsample
from engine.core.schedules import RGMSchedule
from engine.priors.rgm import OracleGenerator
from engine.samplers.rgm import algorithm3
from engine.solvers.pnp_drs import SIGMA_Y_FLOOR, douglas_rachford
from engine.train.rgm import fidelity, posterior_step, prior_term

# ladders and image sides that fit them (RGM-SR naive T = 3 needs sides divisible by 8)
LADDERS = [("rgm-d", 4, 4), ("rgm-sr-naive", 3, 8), ("rgm-sr", 5, 8)]


def finite_set(n: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, side, side, generator=g) * 2 - 1


def chi_square_uniform(counts: torch.Tensor) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


def oracle_chain_counts(variant: str, levels: int, side: int, seed: int, n: int = 4000,
                        images: int = 8) -> torch.Tensor:
    """Algorithm 3 with G*, started from the true level-T marginal: counts per image."""
    data = finite_set(images, side)
    oracle = OracleGenerator(data, RGMSchedule(variant, levels))
    g = torch.Generator().manual_seed(seed)
    start = data[torch.randint(images, (n,), generator=g)]
    y = oracle.degrade(start, levels, torch.randn(start.shape, generator=g))
    *_, (_, _, x_hat) = algorithm3(oracle, y, lambda *shape: torch.randn(n, *shape, generator=g))
    picks = torch.cdist(x_hat.flatten(1), data.flatten(1)).argmin(1)
    assert torch.equal(x_hat, data[picks])  # training points, exactly
    return torch.bincount(picks, minlength=images).float()


@pytest.mark.parametrize("variant, levels, side", LADDERS)
def test_algorithm3_with_the_oracle_returns_training_points_uniformly(variant, levels, side):
    """χ² (df = 7) of 4000 draws over 8 images against uniform frequencies.

    Measured over seeds 0–9: rgm-d mean 5.5 (sd 2.0, max 8.3), rgm-sr-naive 6.2 (4.4,
    max 16.9), rgm-sr 6.5 (2.2, max 10.4) — consistent with the χ²₇ law (mean 7, sd 3.7).
    Bound 7 + 4·3.7 ≈ 22.
    """
    counts = oracle_chain_counts(variant, levels, side, seed=100)
    assert chi_square_uniform(counts) < 22.0


@pytest.mark.parametrize("variant, levels, side", LADDERS)
def test_fidelity_has_expectation_d_over_2_with_the_oracle(variant, levels, side):
    """With G*, (x̂, y_{t+1}) has the law of (x, y_{t+1}): E fidelity = d_{t+1}/2 exactly
    (d_{t+1} = pixels of level t+1's grid). The mean of n = 4000 draws of χ²_d/2 has a
    relative standard error √(2/(d n)) (0.022 at d = 1, 0.0028 at d = 64); measured over
    seeds 0–9 and all levels: mean relative error ≤ 0.0006, sd 0.005–0.017, max 0.052
    (at d = 1). Bound: 4.5 standard errors per level."""
    data = finite_set(8, side)
    schedule = RGMSchedule(variant, levels)
    oracle = OracleGenerator(data, schedule)
    g = torch.Generator().manual_seed(3)
    n = 4000
    for t in range(levels):
        x = data[torch.randint(8, (n,), generator=g)]
        y_next = schedule.degrade(x, t + 1, torch.randn(x.shape, generator=g))
        x_hat = oracle.generate(y_next, t, torch.randn(n, 8, generator=g))
        d = (side // schedule.factor(t + 1)) ** 2
        value = fidelity(schedule, y_next, x_hat, torch.full((n,), t)).mean().item()
        assert value == pytest.approx(d / 2, rel=4.5 * math.sqrt(2 / (d * n))), (t, value, d / 2)


def test_prior_bracket_is_minus_the_logit():
    logit = torch.linspace(-6, 6, 13, dtype=torch.float64)
    d = torch.sigmoid(logit)
    torch.testing.assert_close(prior_term(logit), torch.log(1 - d) - torch.log(d))


def test_posterior_step_is_the_gaussian_conditional_of_the_ladder():
    """Algorithm 1's q(y_t | y_{t+1}, x) against the conditional of the joint Gaussian."""
    schedule = RGMSchedule("rgm-d", 4)
    table = schedule.table()
    x, y_next = torch.full((4, 1, 2, 2), 0.3), torch.full((4, 1, 2, 2), -0.4)
    level = torch.tensor([0, 1, 2, 3])
    mean, fid = posterior_step(schedule, x, y_next, level, torch.zeros_like(x))
    for i, k in enumerate(level.tolist()):
        (a, s, _), (a1, s1, _) = table[k], table[k + 1]
        alpha = a1 / a  # y_{t+1} = α y_t + noise; Cov(y_t, y_{t+1}) = α s²
        expected = a * 0.3 + alpha * s**2 / s1**2 * (-0.4 - a1 * 0.3)
        assert mean[i, 0, 0, 0].item() == pytest.approx(expected, rel=1e-4, abs=1e-6)
        var_step = s1**2 - alpha**2 * s**2
        assert fid[i].item() == pytest.approx(4 * 0.5 * (-0.4 - alpha * expected) ** 2 / var_step, rel=1e-4)


def test_rgm_method_yields_one_step_per_level_with_nfe_t():
    job = Job(Request(method="rgm@rgm-oracle", n=2, seed=5))
    steps = list(job.steps())
    assert [s.extras["level"] for s in steps] == [3, 2, 1, 0]
    assert [s.t for s in steps] == [1.0, 0.75, 0.5, 0.25]
    assert job.result.metrics["nfe"] == 4
    images = job.prior.images
    final = steps[-1].x0_hat
    assert torch.cdist(final.flatten(1), images.flatten(1)).min(1).values.max() == 0  # demo images


@pytest.mark.parametrize("variant, levels, side", LADDERS)
def test_rgm_nfe_is_the_model_s_t_predicted_from_the_model_or_its_spec(variant, levels, side):
    from engine.core.capabilities import spec_of
    from engine.core.registry import get, make_params
    from engine.core.rng import SampleRNG
    from engine.priors.catalog import model_spec

    oracle = OracleGenerator(finite_set(8, side), RGMSchedule(variant, levels))
    info = get("rgm")
    steps = list(info.run(oracle, None, make_params(info.params, {}), SampleRNG(0, 2)))
    assert len(steps) == oracle.nfe == levels
    assert info.predict_nfe(None, oracle) == info.predict_nfe(None, spec_of(oracle)) == levels
    assert info.predict_nfe(None, model_spec("rgm-d")) == 4  # from its config, unloaded


def test_latent_mix_one_equals_the_other_seed_and_z_moves_the_sample():
    other = Job(Request(method="rgm@rgm-oracle", n=6, seed=40)).run().samples
    mixed = Job(Request(method="rgm@rgm-oracle", n=6, seed=0, latent_seed=40, latent_mix=1.0)).run().samples
    own = Job(Request(method="rgm@rgm-oracle", n=6, seed=0)).run().samples
    torch.testing.assert_close(mixed, other)
    assert not torch.equal(own, other)


# --- Algorithm 4 -----------------------------------------------------------------------


def test_drs_with_a_quadratic_prior_converges_to_the_map_solution():
    """α = 1 and restore = prox of g(u) = ½(u − μ)ᵀP(u − μ): DRS minimises g + λf, whose
    minimiser is (P + λHᵀH)⁻¹(Pμ + λHᵀy)."""
    g = torch.Generator().manual_seed(0)
    d, lam = 16, 0.7
    root = torch.randn(d, d, generator=g, dtype=torch.float64)
    precision = root @ root.T / d + 0.2 * torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    op = Downsample(2)
    y = torch.randn(1, 1, 2, 2, generator=g, dtype=torch.float64)
    resolvent = torch.linalg.inv(torch.eye(d, dtype=torch.float64) + precision)

    def restore(x, j):  # prox_g(x) = (I + P)⁻¹(x + Pμ)
        return (resolvent @ (x.flatten() + precision @ mu)).reshape(x.shape)

    x0 = op.pinv(y)
    *_, (_, u) = douglas_rachford(x0, restore, lambda v: op.prox(v, y, lam), 300, 1.0, 1)
    h = torch.stack([op.forward(e.reshape(1, 1, 4, 4)).flatten() for e in torch.eye(d, dtype=torch.float64)], 1)
    expected = torch.linalg.solve(precision + lam * h.T @ h, precision @ mu + lam * h.T @ y.flatten())
    torch.testing.assert_close(u.flatten(), expected, atol=1e-8, rtol=0)


def pnp_drs_job(spec: str, model: str = "empirical-vp", image: int = 7, n: int = 1, **params) -> Job:
    from engine.io.data import demo_images

    return Job(Request(method=f"pnp-drs@{model}", image=demo_images()[0][image], n=n,
                       degradation=Degradation.parse(spec), params=params))


def test_pnp_drs_restores_a_composition_by_conjugate_gradients():
    """Blur then downsampling has no closed-form prox; CG's serves it (no refusal), and on
    the empirical prior that holds the image PnP-DRS lands on it: 37.0 dB against A⁺y's
    4.9 (the product of the factors' inverses amplifies the noise)."""
    job = pnp_drs_job("blur=1,downsample=2,noise=0.02", iterations=40, alpha=0.5)
    baseline = Job(Request(method="pinv", image=job.clean, n=1, degradation=job.degradation)).run()
    assert job.run().metrics["psnr"] > 30 and baseline.metrics["psnr"] < 10


def test_pnp_drs_per_noise_weighs_the_data_term_by_the_measurement_noise():
    """per_noise: λ/σ_y² (σ_y in model units, floored for a noiseless y) — the same
    samples as the plain λ of that value."""
    for spec, sigma_y in (("noise=0.1", 0.2), ("downsample=2", SIGMA_Y_FLOOR)):
        scaled = pnp_drs_job(spec, iterations=3, lam=0.03, per_noise=True).run().samples
        plain = pnp_drs_job(spec, iterations=3, lam=0.03 / sigma_y**2).run().samples
        assert torch.equal(scaled, plain), spec


def test_pnp_drs_prox_start_is_stable_on_a_noisy_blur():
    """Blur 1.5 with noise 0.05 on the vp prior (demo image 0, seed 0, 2 samples; seed 10
    alike): from the paper's H⁺y start the iteration ends at 4.4–4.5 dB (H⁺y's amplified
    noise never leaves), from prox_{λf}(0) at 24.0–24.8 dB."""
    params = dict(iterations=40, lam=0.03, alpha=0.5, sigma=0.4, per_noise=True)
    psnr = {start: pnp_drs_job("blur=1.5,noise=0.05", "vp", 0, 2, start=start, **params).run()
            .metrics["psnr_per_sample"] for start in ("pinv", "prox")}
    assert max(psnr["pinv"]) < 8 and min(psnr["prox"]) > 20


@pytest.mark.parametrize("model", ["rgm-oracle", "empirical-vp"])
def test_pnp_drs_restores_a_demo_image(model):
    """On a demo image the exact models' set contains, PnP-DRS lands on it: far above A⁺y."""
    from engine.io.data import demo_images

    image = demo_images()[0][7]
    request = Request(method=f"pnp-drs@{model}", image=image, n=1,
                      degradation=Degradation.parse("downsample=2,noise=0.05"))
    job = Job(request)
    steps = list(job.steps())
    assert len(steps) == 10 and job.result.metrics["nfe"] == 10
    baseline = Job(Request(method="pinv", image=image, n=1, degradation=request.degradation)).run()
    assert job.result.metrics["psnr"] > baseline.metrics["psnr"] + 10
    assert steps[-1].extras["residual"].shape == (1,)


# --- the 2-D toy's coverage measure ------------------------------------------------------


def test_mode_coverage_of_exact_ring8_draws_and_of_the_ring_s_centre():
    """Exact draws: each mode holds 12.4 % (binomial sd 0.74 % at 2000 draws) and 1.1 %
    lie beyond 3 std of every mean. Seeds 0–9: smallest mode 11.1 % (sd 0.5), largest
    13.5 % (sd 0.3), off-mode 1.08 % (sd 0.28). Bounds: 12.4 ± 4·0.74 %, off < 2.2 %.
    Points at the ring's centre (where an MMSE generator's mass goes) are all off-mode."""
    from engine.priors.exact import ring8
    from engine.train.rgm_toy import mode_coverage

    fractions, off = mode_coverage(ring8().sample(2000, torch.Generator().manual_seed(11)).flatten(1).float())
    assert ((0.094 < fractions) & (fractions < 0.154)).all() and off < 0.022
    assert abs(fractions.sum() + off - 1) < 1e-6
    fractions, off = mode_coverage(0.2 * torch.randn(500, 2, generator=torch.Generator().manual_seed(0)))
    assert off == 1.0 and fractions.sum() == 0
