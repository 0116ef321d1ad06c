"""Baseline restorers that need no prior: the pseudo-inverse and Tikhonov.

* ``pinv``: ``x = A⁺ y`` (one step, no network).
* ``tikhonov``: ``x = argmin ½‖A x − y‖² + (αL/2)‖x − m‖² + (βL/2)‖∇x‖²`` with ``m``
  the middle of the data range, ∇ forward differences (zero flux at the border) and
  ``L = ‖AᵀA‖`` (power iteration). Scaling by L makes α and β relative to the
  operator, so one setting suits blur, masks and downsampling alike (4× block
  averaging has L = 1/16: an absolute α = 0.05 would drown its data term). With
  β = 0 this is the operator's closed-form prox at ``z = m``, ``λ = 1/(αL)``; with
  β > 0 the normal equations ``(AᵀA + αL I + βL ∇ᵀ∇) x = Aᵀy + αL m`` are solved by
  conjugate gradients, one Step per iteration (so the trajectory shows convergence).
  When A keeps nothing (L = 0: a mask hiding every pixel) the data term is empty and
  the minimiser is m itself, returned in one Step (the limit L → 0 of the above).

Both are deterministic: every sample of a batch is the same image (diversity 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from engine.core.operators import cg_iterates
from engine.core.registry import MethodInfo, Measurement, param, register
from engine.core.step import Step

NAN = math.nan


@dataclass
class PinvParams:
    pass


def pinv(prior, measurement: Measurement, params: PinvParams, rng) -> Iterator[Step]:
    x = measurement.operator.pinv(measurement.y)
    yield Step(0, 1, NAN, x, x)


def gradient_gram(x: torch.Tensor) -> torch.Tensor:
    """∇ᵀ∇ x for forward differences along H and W (a negative Laplacian)."""
    return sum(_diff_adjoint(torch.diff(x, dim=dim), dim) for dim in (-2, -1))


def _diff_adjoint(d: torch.Tensor, dim: int) -> torch.Tensor:
    """Adjoint of forward differences: (Dᵀ d)_i = d_{i−1} − d_i (zero outside)."""
    zero = torch.zeros_like(d.narrow(dim, 0, 1))
    return torch.cat([zero, d], dim) - torch.cat([d, zero], dim)


def gram_norm(op, x_shape: tuple[int, ...], like: torch.Tensor, iterations: int = 30) -> float:
    """Largest eigenvalue of AᵀA by power iteration from a fixed start (deterministic)."""
    g = torch.Generator().manual_seed(0)
    v = torch.rand((1, *x_shape[1:]), generator=g, dtype=like.dtype).to(like.device) + 0.5
    norm = 0.0
    for _ in range(iterations):
        w = op.adjoint(op.forward(v))
        norm = float(w.norm())
        if norm == 0.0:  # A = 0 on every image (a mask hiding every pixel)
            return 0.0
        v = w / norm
    return norm


@dataclass
class TikhonovParams:
    alpha: float = param(0.05, lo=1e-6, hi=100.0, log=True,
                         help="weight α of ‖x − m‖² relative to ‖AᵀA‖ (pulls towards mid-grey)")
    smoothness: float = param(0.1, lo=0.0, hi=100.0,
                              help="weight β of ‖∇x‖² relative to ‖AᵀA‖ (0 = closed-form prox, "
                                    "no iterations)")
    iterations: int = param(50, lo=1, hi=1000, help="conjugate-gradient iterations when β > 0")


def tikhonov(prior, measurement: Measurement, params: TikhonovParams, rng) -> Iterator[Step]:
    op, y = measurement.operator, measurement.y
    x_shape = (y.shape[0], *measurement.x_shape)
    lo, hi = prior.data_range if prior is not None else (0.0, 1.0)
    m = torch.full(x_shape, (lo + hi) / 2, dtype=y.dtype, device=y.device)
    scale = gram_norm(op, x_shape, y)
    if scale == 0.0:  # no data term: the regularisers alone are minimal at x = m
        yield Step(0, 1, NAN, m, m)
        return
    alpha, beta = params.alpha * scale, params.smoothness * scale
    if beta == 0:
        x = op.prox(m, y, 1.0 / alpha)  # argmin ½‖Ax−y‖² + (αL/2)‖x−m‖²
        yield Step(0, 1, NAN, x, x)
        return
    normal = lambda v: op.adjoint(op.forward(v)) + alpha * v + beta * gradient_gram(v)
    rhs = op.adjoint(y) + alpha * m
    iterates = cg_iterates(normal, rhs, m)
    for i in range(params.iterations):
        x, _ = next(iterates)
        yield Step(i, params.iterations, NAN, x, x)

register(MethodInfo(
    name="pinv", run=pinv, params=PinvParams, kind="baseline", family="Baselines",
    summary="Pseudo-inverse A⁺y: undoes what the operator can undo, nothing more "
            "(for a chain of degradations, the product of each one's pseudo-inverse).",
    nfe=lambda p: 0, needs_prior=False, generates=False,
    example_degradation="downsample=2,noise=0.02"))

register(MethodInfo(
    name="tikhonov", run=tikhonov, params=TikhonovParams, kind="baseline", family="Baselines",
    summary="Tikhonov-regularised least squares with a zero-mean and smoothness prior.",
    nfe=lambda p: 0, needs_prior=False, generates=False,
    example_degradation="downsample=2,noise=0.02"))
