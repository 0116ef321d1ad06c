"""The step interface: a rule gets the model's denoiser and the grid as data, so a
Heun-type rule (two evaluations per step) fits the shape of the one-evaluation samplers."""

import math

import torch

from engine.core.rng import SampleRNG
from engine.core.schedules import VESchedule
from engine.priors.exact import GaussianPrior
from engine.samplers.common import Grid, run_grid, x0_first
from engine.samplers.soft_diffusion import pf_momentum_update

F64 = torch.float64
MEAN, COV = torch.tensor([0.5, -0.3], dtype=F64), torch.tensor([[0.5, 0.4], [0.4, 0.5]], dtype=F64)


def heun_rule(denoise, m, x, rng):
    """Heun's method on the VE probability-flow ODE dx/dσ = (x − D(x, σ))/σ (C_t = I)."""
    x0_hat = denoise(x, m.t)
    d = (x - x0_hat) / m.sigma
    x_euler = x + (m.sigma_next - m.sigma) * d
    d_next = (x_euler - denoise(x_euler, m.t_next)) / m.sigma_next
    return x + (m.sigma_next - m.sigma) * (d + d_next) / 2, x0_hat


def exact_flow(x, sigma_from, sigma_to):
    """The PF-ODE's solution for N(μ, Σ): x − μ scales by √((λ + σ_to²)/(λ + σ_from²)) along
    each eigenvector of Σ."""
    evals, evecs = torch.linalg.eigh(COV)
    gain = ((evals + sigma_to**2) / (evals + sigma_from**2)).sqrt()
    flat = x.reshape(len(x), 2) - MEAN
    return (MEAN + flat @ evecs @ torch.diag(gain) @ evecs.T).reshape(x.shape)


def test_a_two_evaluation_rule_runs_on_the_same_grid_and_beats_euler_at_equal_nfe():
    """Deterministic (fixed x_1): measured mean error 0.0132 (Heun, 20 steps) against
    0.163 (PF-momentum = Euler in σ², 40 steps), both at 40 NFE."""
    prior = GaussianPrior(MEAN, COV, VESchedule(0.01, 10.0), (2, 1, 1))
    x1 = 10.0 * torch.randn(64, 2, 1, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
    truth = exact_flow(x1, 10.0, 0.01)
    errors = {}
    for name, rule, steps in (("heun", heun_rule, 20), ("euler", x0_first(pf_momentum_update), 40)):
        start = prior.nfe
        grid = Grid.of(prior.schedule, steps)
        out = list(run_grid(prior.denoise, x1, grid, SampleRNG(0, 64, dtype=F64), rule))
        assert len(out) == steps and out[-1].index == steps - 1
        errors[name] = float((out[-1].x_t - truth).norm(dim=1).mean())
        assert prior.nfe - start == 40  # equal cost: 20 steps × 2 evaluations, 40 × 1
    assert errors["heun"] < errors["euler"] / 5, errors
    assert math.isfinite(errors["heun"])
