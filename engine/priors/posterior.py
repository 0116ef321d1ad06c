"""Closed-form posteriors of the exact priors under a linear measurement.

For ``y = A x0 + σ_y ε`` and a Gaussian-mixture prior ``Σ_i w_i N(μ_i, Σ_i)`` the
posterior is again a mixture (posterior.md §4):

* weights ``w_i' ∝ w_i N(y; A μ_i, A Σ_i Aᵀ + σ_y² I)``,
* covariances ``C_i' = (Σ_i⁻¹ + AᵀA/σ_y²)⁻¹``,
* means ``m_i' = C_i' (Σ_i⁻¹ μ_i + Aᵀ y/σ_y²)``.

A single Gaussian is the one-component case. `exact_posterior` returns the posterior
as a `GaussianMixturePrior` on a schedule of the caller's choice, so its ``denoise``
gives the *exact* posterior score ``∇ log p_t(x_t | y)`` at every level: the test bed
of the posterior solvers (RMP with exact scores must land on ``E[x0 | y]``).

Decisions: computed in float64 with the dense matrix of A (`dense_matrix`), in the
equivalent "gain" form ``m_i' = μ_i + K_i (y − A μ_i)``, ``C_i' = Σ_i − K_i A Σ_i``,
``K_i = Σ_i Aᵀ S_i⁻¹``, which needs no inverse of Σ_i (singular covariances allowed);
σ_y = 0 is allowed when every ``A Σ_i Aᵀ`` is invertible.

`MatrixOperator` is a dense linear map for the 2-D toys (``y = aᵀx`` of the spec's
playground), outside `engine.core.operators` because image operators have a
slider-shaped parameter set and this one does not.
"""

from __future__ import annotations

import math

import torch

from engine.core.operators import Operator
from engine.core.step import BadInputError
from engine.core.schedules import Schedule
from engine.priors.exact import F64, GaussianMixturePrior, dense_matrix


class MatrixOperator(Operator):
    """``y = M vec(x)`` for a dense matrix M ``(m, d)`` and images of ``x_shape``."""

    name = "matrix"

    def __init__(self, matrix, x_shape: tuple[int, ...]):
        self.matrix = torch.atleast_2d(torch.as_tensor(matrix, dtype=F64))
        self.x_shape = tuple(x_shape)
        if self.matrix.shape[1] != math.prod(self.x_shape):
            raise BadInputError(f"a {tuple(self.matrix.shape)} matrix cannot act on {self.x_shape}")

    def check_input(self, shape):
        if tuple(shape[1:]) != self.x_shape:
            raise BadInputError(f"this matrix acts on {self.x_shape}, not {tuple(shape[1:])}")

    def forward(self, x):
        return (x.flatten(1) @ self.matrix.T.to(x)).reshape(len(x), -1, 1, 1)

    def adjoint(self, y):
        return (y.flatten(1) @ self.matrix.to(y)).reshape(len(y), *self.x_shape)

    def pinv(self, y):
        return (y.flatten(1) @ torch.linalg.pinv(self.matrix).T.to(y)).reshape(len(y), *self.x_shape)

    def describe(self):
        return f"matrix{tuple(self.matrix.shape)}"


def exact_posterior(prior: GaussianMixturePrior, op: Operator, y: torch.Tensor, sigma_y: float,
                    schedule: Schedule | None = None, name: str = "posterior") -> GaussianMixturePrior:
    """The posterior p(x0 | y) of a mixture prior for ONE measurement ``y`` (any shape)."""
    a = dense_matrix(op, prior.shape)  # (m, d)
    y = y.reshape(-1).to(F64)
    cov_y = a @ prior.covs @ a.T + sigma_y**2 * torch.eye(len(a), dtype=F64)  # S_i (K, m, m)
    gain = torch.linalg.solve(cov_y, a @ prior.covs).transpose(-1, -2)  # K_i = Σ_i Aᵀ S_i⁻¹
    residual = y - prior.means @ a.T  # (K, m)
    means = prior.means + torch.einsum("kdm,km->kd", gain, residual)
    covs = prior.covs - gain @ a @ prior.covs
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    chol = torch.linalg.cholesky(cov_y)
    white = torch.linalg.solve_triangular(chol, residual[..., None], upper=False)[..., 0]
    log_evidence = (-0.5 * white.pow(2).sum(-1) - chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                    - 0.5 * len(a) * math.log(2 * math.pi))
    weights = (prior.weights.log() + log_evidence).softmax(0)
    return GaussianMixturePrior(weights, means, covs, schedule or prior.schedule, prior.shape,
                                prior.data_range, name=name)


def posterior_moments(posterior: GaussianMixturePrior) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``E[x0|y]`` and covariance ``Cov[x0|y]`` of a mixture (flattened, float64)."""
    mean = posterior.weights @ posterior.means
    spread = posterior.means - mean
    cov = torch.einsum("k,kij->ij", posterior.weights, posterior.covs +
                       spread[:, :, None] * spread[:, None, :])
    return mean, cov
