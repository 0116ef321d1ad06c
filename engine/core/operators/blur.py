"""Separable Gaussian blur with zero padding (Soft Diffusion's corruption).

Decisions: a truncated Gaussian on ``[−h, h]``, normalised over the whole support,
zero padding, no renormalisation at the borders (edges darken). ``h`` defaults to the
image side, so the kernel is never cut inside the image. The pseudo-inverse and the
prox go through the eigen-decomposition of the separable symmetric Toeplitz factors
(exact for zero padding, unlike the FFT, which is circular).

Speed (issue 14, the studio's 512×512 photo preview): the forward multiplies by the
dense factors up to `BANDED_ABOVE` pixels a side (every Fashion-MNIST and photo-crop
result unchanged bit for bit). Above it, each factor is applied in row blocks of
`BLOCK` that read only the columns within ``⌈8σ⌉`` of the block: the taps left out
weigh below e^−32 ≈ 10^−14 of the centre tap, so the result is the dense one to float32
rounding (tests/test_operators.py), at a quarter of the cost or less (512×512 RGB on
one thread of the loaded 2-core machine: σ = 2, 70 → 25 ms). Every block multiplies a
slice of one ``BLOCK × (BLOCK + 2·band)`` Toeplitz slab (`band_slab`, its entries those
of the dense factor), so a new σ costs a slab (0.1 ms) instead of the dense n×n factor
(2.5 ms and 2 MB at n = 512, 128 MB at n = 4000, each of them cached). The FFT,
``conv2d`` (with the long kernel or the ±8σ one: 60–160 ms at 512×512 RGB) and OpenCV's
``sepFilter2D`` (faster only below σ ≈ 2) were no better than these matmuls here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.core.tensor_cache import tensor_cache
from engine.core.operators.base import Operator
from engine.core.step import BadInputError

BANDED_ABOVE = 256  # image sides above this are blurred block-banded (module doc)
BLOCK = 32  # 64 took 15 % more at σ = 1 on 512×512 RGB (the band fills less of a block)
TAIL = 8.0  # taps beyond TAIL·σ are left out above BANDED_ABOVE: e^−TAIL²/2 ≈ 1e−14


def gaussian_taps(sigma: float, radius: int) -> torch.Tensor:
    """The 2·radius + 1 taps of the Gaussian on [−h, h], normalised over it (float64)."""
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.sum()


def _toeplitz(kernel: torch.Tensor, rows: int, cols: int, shift: int) -> torch.Tensor:
    """M[i, j] = kernel[i − j + shift + r] where |i − j + shift| ≤ r, else 0 (kernel of 2r + 1 taps)."""
    r = (len(kernel) - 1) // 2
    offsets = torch.arange(rows)[:, None] - torch.arange(cols)[None, :] + shift
    return torch.where(offsets.abs() <= r, kernel[(offsets + r).clamp(0, 2 * r)], 0.0)


@tensor_cache(maxsize=256)
def blur_matrix(sigma: float, n: int, radius: int) -> torch.Tensor:
    """The n×n banded Toeplitz matrix of the truncated, normalised 1-D Gaussian (float64)."""
    return _toeplitz(gaussian_taps(sigma, radius), n, n, 0)


@tensor_cache(maxsize=64)
def band_slab(sigma: float, radius: int, band: int, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
    """Rows ``top … top + BLOCK`` of `blur_matrix` over columns ``top − band … top + BLOCK +
    band``, the same for every ``top`` (Toeplitz), with the taps beyond ``band`` left out."""
    kernel = gaussian_taps(sigma, radius)[radius - band:radius + band + 1]
    return _toeplitz(kernel, BLOCK, BLOCK + 2 * band, band).to(device, dtype)


@tensor_cache(maxsize=64)
def _cast_matrix(sigma: float, n: int, radius: int, dtype: torch.dtype, device: torch.device):
    """`blur_matrix` in the working dtype and device, made once (a slider revisits σ)."""
    return blur_matrix(sigma, n, radius).to(device, dtype)


@tensor_cache(maxsize=256)
def _blur_eig(sigma: float, n: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    evals, evecs = torch.linalg.eigh(blur_matrix(sigma, n, radius))
    return evals, evecs


@dataclass(frozen=True)
class Blur(Operator):
    """Separable Gaussian blur with zero padding: ``A x = G_H X G_Wᵀ`` per channel."""

    sigma: float = 1.0
    radius: int | None = None  # h; None = the image side (never truncated inside)
    rcond: float = 1e-3  # relative spectral cut-off of the pseudo-inverse
    name = "blur"
    keeps_shape = True

    def __post_init__(self):
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise BadInputError(f"blur sigma must be positive, got {self.sigma}")
        if self.radius is not None and self.radius < 0:
            raise BadInputError(f"blur radius must be ≥ 0, got {self.radius}")

    def _radius(self, n: int) -> int:
        return n if self.radius is None else int(self.radius)

    def _mat(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return _cast_matrix(float(self.sigma), n, self._radius(n), like.dtype, like.device)

    def _eig(self, n: int, like: torch.Tensor):
        evals, evecs = _blur_eig(float(self.sigma), n, self._radius(n))
        return evals.to(like.device, like.dtype), evecs.to(like.device, like.dtype)

    def forward(self, x):
        return self._along(self._along(x, -2), -1)  # G_H X, then (G_H X) G_Wᵀ

    def _along(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """The 1-D blur along rows (``axis`` −2: G X) or columns (−1: X Gᵀ)."""
        n = x.shape[axis]
        band = min(self._radius(n), math.ceil(TAIL * self.sigma))
        if n <= BANDED_ABOVE or band >= n // 2:
            g = self._mat(n, x)
            return g @ x if axis == -2 else x @ g.T
        slab = band_slab(float(self.sigma), self._radius(n), band, x.dtype, x.device)
        blocks = []
        for top in range(0, n, BLOCK):  # rows top … top + BLOCK read columns lo … hi
            lo, hi = max(0, top - band), min(n, top + BLOCK + band)
            rows = slab[:n - top, lo - top + band:hi - top + band]
            blocks.append(rows @ x[..., lo:hi, :] if axis == -2 else x[..., lo:hi] @ rows.T)
        return torch.cat(blocks, axis)

    adjoint = forward  # G is symmetric, so A is self-adjoint

    def _spectral(self, r: torch.Tensor, gain) -> torch.Tensor:
        """Apply f(A) for A = G_H ⊗ G_W, with f given on the eigenvalue products."""
        eh, uh = self._eig(r.shape[-2], r)
        ew, uw = self._eig(r.shape[-1], r)
        coeffs = uh.T @ r @ uw
        return uh @ (coeffs * gain(eh[:, None] * ew[None, :])) @ uw.T

    def pinv(self, y):
        def inverse(e):
            keep = e.abs() > self.rcond * e.abs().max()
            return torch.where(keep, 1.0 / torch.where(keep, e, torch.ones_like(e)), 0.0)
        return self._spectral(y, inverse)

    def prox(self, z, y, lam):
        return self._spectral(z + lam * self.forward(y), lambda e: 1.0 / (1.0 + lam * e * e))


