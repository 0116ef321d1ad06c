"""The measurement term shared by the posterior solvers (DPS, RMP).

Both approximate ``∇_x log p(y | x_t)`` by differentiating the residual of the
denoised estimate, ``‖y − A x̂0(x_t)‖``, through the network (posterior.md §0): one
forward and one backward pass per call, through `engine.priors.base.denoise_with_grad`.

`reference_task` maps an operator to the column of the papers' hyperparameter tables
(SR, box inpainting, random inpainting, Gaussian deblur). Denoising (no operator) has
no column in either paper; it takes the deblur column **[choice]**: the nearest task
(a well-conditioned A).
"""

from __future__ import annotations

import torch

from engine.core.operators import Compose, Downsample, Mask, Operator
from engine.core.registry import Measurement
from engine.priors.base import denoise_with_grad

EPS = 1e-12


def reference_task(op: Operator) -> str:
    """``"sr"``, ``"box"``, ``"random"`` or ``"deblur"``: the paper column for ``op``."""
    ops = op.ops if isinstance(op, Compose) else (op,)
    masks = [o for o in ops if isinstance(o, Mask)]
    if masks:
        return "random" if masks[0].kind == "random" else "box"
    if any(isinstance(o, Downsample) for o in ops):
        return "sr"
    return "deblur"  # blur, or plain denoising (module doc)


def residual_norm(measurement: Measurement, x0_hat: torch.Tensor) -> torch.Tensor:
    """``‖y − A x̂0‖`` per sample ``(B,)``."""
    r = measurement.y.to(x0_hat.dtype) - measurement.operator.forward(x0_hat)
    return r.flatten(1).pow(2).sum(1).clamp_min(EPS).sqrt()


def squared_residual_grad(prior, measurement: Measurement, x_t: torch.Tensor, t: float):
    """``(x̂0, ∇_{x_t} ‖y − A x̂0(x_t)‖², ‖y − A x̂0‖)``; one NFE, one VJP."""
    x0_hat, grad, sq = denoise_with_grad(
        prior, x_t, t, lambda x0: residual_norm(measurement, x0).pow(2))
    return x0_hat, grad, sq.sqrt()


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A ``(B,)`` vector shaped to broadcast against ``like`` ``(B, C, H, W)``."""
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1)
