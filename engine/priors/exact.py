"""Closed-form priors: a Gaussian, a Gaussian mixture and the empirical prior of an image set.

For ``x_t = C_t x0 + σ_t ε`` with any schedule (C_t an `Operator`), ``E[x0 | x_t]`` has a
closed form, so every sampler and solver can be checked against the truth on a CPU:

* Gaussian component N(μ, Σ): ``p_t = N(C μ, S)`` with ``S = C Σ Cᵀ + σ² I`` and
  ``E[x0 | x_t] = μ + Σ Cᵀ S⁻¹ (x_t − C μ)``.
* Mixture: responsibilities ∝ ``w_k N(x_t; C μ_k, S_k)`` times the per-component means.
* Empirical (N images x_i): ``E[x0 | x_t] = Σ_i softmax_i(−‖x_t − C x_i‖²/(2σ²)) x_i``.

Each also gives ``log_density(x_t, t) = log p_t(x_t)``, whose gradient is the score
``(C_t E[x0|x_t] − x_t)/σ_t²`` (Soft Diffusion, Lemma A.2; tested with autograd).

Decisions:

* Gaussians work with the dense matrix of C_t, built by applying the schedule's operator
  to the identity basis (d = C·H·W must stay small: 2-D toys, 4×4 images). Per-level
  moments are computed in float64 and cached (LRU over levels); answers come back in
  the dtype and on the device of ``x_t``.
* The empirical prior never forms a matrix: it corrupts its N images with C_t and takes
  exact pairwise distances (no ‖a‖² − 2ab + ‖b‖² cancellation: at σ_0 = 0.01 the
  logits are distances divided by 2·10⁻⁴), so it runs at 28×28.
* ``sample_final`` draws p_1 *exactly* (x0 from the prior with sample k's generator, then
  ``C_1 x0 + σ_1 ε``); samplers use it with ``final="prior"``.
* ``colour_stats`` gives the per-channel mean and std of an image's mean colour (Soft
  Diffusion's p_1 recipe).

Presets (`PRESETS`, all zero-argument factories; `engine.priors.catalog` serves them by
name and is the only module that imports this list):

* ``ring8``: 8 Gaussians (std 0.1) on a circle of radius 2, shape (2, 1, 1) (the two
  coordinates are the two channels of a 1×1 image), VE σ 0.01 → 10, data range
  (−2.5, 2.5) (image unit 0 ↔ −2.5, 1 ↔ 2.5).
* ``gaussian2d``: N((0.5, −0.3), [[0.5, 0.4], [0.4, 0.5]]) (correlation 0.8), same
  shape, schedule and data range.
* ``empirical-vp`` / ``empirical-soft-blur`` / ``empirical-soft-mask``: the 64 demo
  images (`engine.io.data.demo_images`) in [−1, 1] with `VPSchedule` / `SoftBlurSchedule` /
  `SoftMaskSchedule`.
* ``rgm-oracle``: the exact RGM generator G* of the demo images on the RGM-D ladder
  (`engine.priors.rgm.OracleGenerator`, a ladder model, not a denoiser).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from engine.core.operators import Operator
from engine.priors.base import Prior
from engine.core.rng import SampleRNG
from engine.core.schedules import Schedule, SoftBlurSchedule, SoftMaskSchedule, VESchedule, VPSchedule
from engine.core.step import BadInputError
from engine.core.tensor_cache import tensor_cache

F64 = torch.float64


def dense_matrix(op: Operator, shape: tuple[int, ...]) -> torch.Tensor:
    """The matrix of ``op`` acting on flattened ``shape`` images (columns = A e_j), float64."""
    d = math.prod(shape)
    basis = torch.eye(d, dtype=F64).reshape(d, *shape)
    return op.forward(basis).reshape(d, -1).T


class ExactPrior(Prior):
    """Shared by the closed-form priors: exact p_1 draws from `sample`."""

    exact = True
    kind = "exact"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` clean samples x0 ``(n, C, H, W)`` drawn with ``generator``."""
        raise NotImplementedError

    def log_density(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """``log p_t(x_t)`` per batch element (differentiable in ``x_t``)."""
        raise NotImplementedError

    def sample_final(self, rng: SampleRNG) -> torch.Tensor:
        """Exact p_1: ``C_1 x0 + σ_1 ε`` with x0 from the prior (sample k uses generator k)."""
        x0 = torch.cat([self.sample(1, g) for g in rng.generators]).to(rng.device, rng.dtype)
        return self.schedule.corrupt(x0, 1.0, rng.randn(*self.shape))


class Marginal(NamedTuple):
    """The mixture's components at one level t, per component k (flattened, float64)."""

    mean: torch.Tensor  # C μ_k
    cov: torch.Tensor  # S_k = C Σ_k Cᵀ + σ² I
    whiten: torch.Tensor  # L_k⁻¹ with S_k = L_k L_kᵀ
    half_log_det: torch.Tensor  # log det L_k = ½ log det S_k
    gain: torch.Tensor  # Σ_k Cᵀ S_k⁻¹


class GaussianMixturePrior(ExactPrior):
    """``Σ_k w_k N(μ_k, Σ_k)`` over flattened images of ``shape``."""

    def __init__(self, weights, means, covs, schedule: Schedule, shape: tuple[int, ...],
                 data_range: tuple[float, float] = (-1.0, 1.0), name: str = "gmm"):
        super().__init__(schedule, shape, data_range)
        self.name = name
        d = math.prod(self.shape)
        self.weights = torch.as_tensor(weights, dtype=F64).flatten()
        k = len(self.weights)
        try:
            self.means = torch.as_tensor(means, dtype=F64).reshape(k, d)
            self.covs = torch.as_tensor(covs, dtype=F64).reshape(k, d, d)
        except RuntimeError:
            raise BadInputError(f"a mixture of {k} components over {self.shape} needs means "
                                f"({k}, {d}) and covariances ({k}, {d}, {d})") from None
        if (self.weights < 0).any() or self.weights.sum() <= 0:
            raise BadInputError("mixture weights must be non-negative and not all zero")
        self.weights = self.weights / self.weights.sum()
        evals, evecs = torch.linalg.eigh(self.covs)
        if (evals < -1e-9 * evals.abs().max()).any():
            raise BadInputError("a mixture covariance is not positive semi-definite")
        self._root = evecs * evals.clamp_min(0).sqrt()[:, None, :]  # Σ_k = R_k R_kᵀ
        self._at = tensor_cache(maxsize=4096)(self._moments)

    def _moments(self, t: float) -> "Marginal":
        c = dense_matrix(self.schedule.corruption(t), self.shape)
        cov = c @ self.covs @ c.T + self.schedule.sigma(t) ** 2 * torch.eye(len(c), dtype=F64)
        chol = torch.linalg.cholesky(cov)
        return Marginal(
            mean=self.means @ c.T, cov=cov,
            whiten=torch.linalg.solve_triangular(chol, torch.eye(len(c), dtype=F64), upper=False),
            half_log_det=chol.diagonal(dim1=-2, dim2=-1).log().sum(-1),
            gain=torch.cholesky_solve(c @ self.covs, chol).transpose(-1, -2))  # (S⁻¹ C Σ)ᵀ

    def _components(self, x_t: torch.Tensor, t: float):
        """log(w_k N(x_t; C μ_k, S_k)) ``(B, K)``, the residuals x_t − C μ_k and the gains."""
        at = Marginal(*(m.to(x_t.device) for m in self._at(float(t))))
        diff = x_t.reshape(len(x_t), -1).to(F64)[:, None, :] - at.mean  # (B, K, d)
        white = torch.einsum("kij,bkj->bki", at.whiten, diff)
        log_pdf = -0.5 * white.pow(2).sum(-1) - at.half_log_det - 0.5 * diff.shape[-1] * math.log(2 * math.pi)
        return self.weights.to(x_t.device).log() + log_pdf, diff, at.gain

    def _denoise(self, x_t, t):
        logits, diff, gain = self._components(x_t, t)
        posterior = self.means.to(x_t.device) + torch.einsum("kij,bkj->bki", gain, diff)
        x0 = (logits.softmax(-1)[..., None] * posterior).sum(1)
        return x0.reshape(x_t.shape).to(x_t.dtype)

    def log_density(self, x_t, t):
        return self._components(x_t, t)[0].logsumexp(-1)

    def sample(self, n, generator):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], 1, generator=generator, dtype=F64)
        return (self.means[k] + (self._root[k] @ z)[..., 0]).reshape(n, *self.shape)

    def mean_image(self):
        return (self.weights @ self.means).reshape(self.shape).float()

    def colour_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std per channel of an image's mean colour ``P x0`` (P averages pixels)."""
        channels, pixels = self.shape[0], math.prod(self.shape[1:])
        p = torch.eye(channels, dtype=F64).repeat_interleave(pixels, 1) / pixels  # (C, d)
        colour_means = self.means @ p.T  # (K, C)
        second = self.weights @ ((p @ self.covs @ p.T).diagonal(dim1=-2, dim2=-1) + colour_means**2)
        mean = self.weights @ colour_means
        return mean.float(), (second - mean**2).clamp_min(0).sqrt().float()


class GaussianPrior(GaussianMixturePrior):
    """A single Gaussian ``N(mean, cov)``: one mixture component."""

    def __init__(self, mean, cov, schedule: Schedule, shape: tuple[int, ...],
                 data_range: tuple[float, float] = (-1.0, 1.0), name: str = "gaussian"):
        mean = torch.as_tensor(mean, dtype=F64)
        cov = torch.as_tensor(cov, dtype=F64)
        super().__init__([1.0], mean[None], cov[None], schedule, shape, data_range, name)

    def marginal(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``C_t μ`` and covariance ``C_t Σ C_tᵀ + σ_t² I`` of x_t (flattened, float64)."""
        at = self._at(float(t))
        return at.mean[0], at.cov[0]


class EmpiricalPrior(ExactPrior):
    """The uniform distribution over a finite image set ``(N, C, H, W)``."""

    def __init__(self, images: torch.Tensor, schedule: Schedule,
                 data_range: tuple[float, float] = (-1.0, 1.0), name: str = "empirical"):
        if images.dim() != 4 or len(images) == 0:
            raise BadInputError(f"an empirical prior needs images (N, C, H, W), got {tuple(images.shape)}")
        super().__init__(schedule, tuple(images.shape[1:]), data_range)
        self.name = name
        self.images = images

    def _logits(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """``−‖x_t − C_t x_i‖² / (2σ_t²)`` for every batch element and image, ``(B, N)``."""
        images = self.images.to(x_t.device, x_t.dtype)
        corrupted = self.schedule.corruption(t).forward(images)
        dist = torch.cdist(x_t.flatten(1), corrupted.flatten(1),
                           compute_mode="donot_use_mm_for_euclid_dist")
        return -dist.pow(2) / (2 * self.schedule.sigma(t) ** 2)

    def _denoise(self, x_t, t):
        weights = self._logits(x_t, t).softmax(-1)
        images = self.images.to(x_t.device, x_t.dtype)
        return (weights @ images.flatten(1)).reshape(x_t.shape)

    def log_density(self, x_t, t):
        d, sigma = x_t[0].numel(), self.schedule.sigma(t)
        return (self._logits(x_t, t).logsumexp(-1) - math.log(len(self.images))
                - 0.5 * d * math.log(2 * math.pi * sigma**2))

    def sample(self, n, generator):
        return self.images[torch.randint(len(self.images), (n,), generator=generator)]

    def mean_image(self):
        return self.images.mean(0).float()

    def colour_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        colours = self.images.float().mean((2, 3))  # (N, C)
        return colours.mean(0), colours.std(0, unbiased=False)


# --- presets --------------------------------------------------------------------------

TOY_RANGE = (-2.5, 2.5)


def ring8() -> GaussianMixturePrior:
    angles = torch.arange(8, dtype=F64) * (2 * math.pi / 8)
    means = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
    covs = 0.1**2 * torch.eye(2, dtype=F64).expand(8, 2, 2)
    return GaussianMixturePrior(torch.full((8,), 1 / 8), means, covs, VESchedule(0.01, 10.0),
                                (2, 1, 1), TOY_RANGE, name="ring8")


def gaussian2d() -> GaussianPrior:
    return GaussianPrior([0.5, -0.3], [[0.5, 0.4], [0.4, 0.5]], VESchedule(0.01, 10.0),
                         (2, 1, 1), TOY_RANGE, name="gaussian2d")


def smooth_field_covariance(side: int = 4, scale: float = 0.3, length: float = 1.5,
                            nugget: float = 0.05) -> torch.Tensor:
    """Squared-exponential covariance of a side×side field plus white noise (float64)."""
    ij = torch.cartesian_prod(torch.arange(float(side)), torch.arange(float(side))).to(F64)
    return scale * torch.exp(-torch.cdist(ij, ij) ** 2 / (2 * length**2)) + \
        nugget * torch.eye(side * side, dtype=F64)


def smooth_gaussian_4px(schedule: Schedule) -> GaussianPrior:
    """A 4×4 Gaussian image prior with a smooth covariance: the spec's sampler test bed."""
    mean = 0.2 * torch.linspace(-1, 1, 16, dtype=F64)
    return GaussianPrior(mean, smooth_field_covariance(), schedule, (1, 4, 4), name="gaussian-4px")


def demo_empirical(schedule: Schedule, name: str) -> EmpiricalPrior:
    from engine.io.data import demo_images, to_model_range

    images, _ = demo_images()
    return EmpiricalPrior(to_model_range(images), schedule, (-1.0, 1.0), name=name)


PRESETS = {
    "ring8": ring8,
    "gaussian2d": gaussian2d,
    "empirical-vp": lambda: demo_empirical(VPSchedule(), "empirical-vp"),
    "empirical-soft-blur": lambda: demo_empirical(SoftBlurSchedule(), "empirical-soft-blur"),
    "empirical-soft-mask": lambda: demo_empirical(SoftMaskSchedule(), "empirical-soft-mask"),
    "rgm-oracle": lambda: rgm_oracle(),
}


def rgm_oracle():
    """The exact RGM generator G* of the demo set on the RGM-D ladder (`engine.priors.rgm`)."""
    from engine.priors.rgm import demo_oracle
    return demo_oracle()
