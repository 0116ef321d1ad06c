"""The event every method yields, and the engine's error types.

A method is a generator of `Step`s, one per outer iteration. Each Step carries the
current state ``x_t`` and the current estimate of the clean image ``x0_hat``: always
images of the output shape ``(B, C, H, W)`` in the model's units (a method working on a
coarser level upsamples it, nearest, for display). The *last* Step's ``x0_hat`` is the
method's result. Cancelling a method is closing its generator; no method keeps a
cancel flag.

Anything else a method wants to show goes into ``extras`` under one of these keys (the
GUI shows extras generically, through `scalar_extras`; add a key here before using it):

=============  ============================================================================
``level``      int: the rung of a degradation ladder or resolution level (RGM), 0 = finest
``loss``       float or (B,) tensor: the objective the method minimises at this step
``residual``   float or (B,) tensor: data misfit ``‖A x̂0 − y‖`` (model units)
``grad_norm``  float or (B,) tensor: norm of the gradient a guided step followed
``step_size``  float: the step size used (guidance weight, learning rate)
``mean``       (B, C, H, W) tensor: a running mean image (e.g. of a flow's samples)
``codes``      (B, …) tensor: latent codes chosen at this step (IMLE, a GAN's z)
``nfe``        int: network evaluations inside this step when more than one (inner loops)
=============  ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

EXTRAS = ("level", "loss", "residual", "grad_norm", "step_size", "mean", "codes", "nfe")


@dataclass(frozen=True)
class Step:
    index: int  # 0-based step number
    total: int  # number of steps the method will yield
    t: float  # corruption level of x_t (1 = most corrupted, 0 = clean); NaN if none
    x_t: torch.Tensor
    x0_hat: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def is_last(self) -> bool:
        return self.index == self.total - 1


def scalar_extras(extras: dict[str, Any]) -> dict[str, float]:
    """A Step's extras as displayable numbers (a table row, one point of a plot per key).

    Numbers stay as they are; a per-sample vector ``(B,)`` gives sample 0's value (the
    screen shows sample 0); a larger tensor (an image such as ``mean``, ``codes``) gives
    the root mean square of sample 0 under ``KEY rms``. Anything else is left out.
    """
    out: dict[str, float] = {}
    for key, value in extras.items():
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif isinstance(value, torch.Tensor) and value.numel() > 0:
            value = value.detach()
            if value.dim() <= 1:
                out[key] = float(value.reshape(-1)[0])
            else:
                out[f"{key} rms"] = float(value[0].float().pow(2).mean().sqrt())
    return out


class EngineError(Exception):
    """Base class for errors with a message meant for the user."""


class BadInputError(EngineError, ValueError):
    """A parameter, file or request the engine cannot work with."""


class UnsupportedOperatorError(BadInputError):
    """A method was asked to invert an operator it does not support."""


class DivergenceError(EngineError, FloatingPointError):
    """A sampler produced NaN or Inf values."""


def check_finite(x: torch.Tensor, where: str) -> torch.Tensor:
    """Raise `DivergenceError` if ``x`` holds NaN/Inf (cheap: one reduction)."""
    if not torch.isfinite(x).all():
        raise DivergenceError(f"{where}: the state became NaN/Inf (diverged); "
                              "try more steps or a smaller step size")
    return x
