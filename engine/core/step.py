"""The event every method yields, and the engine's error types.

A method is a generator of `Step`s. Each Step carries the current state ``x_t`` and
the current estimate of the clean image ``x0_hat`` (both in the prior's data range,
shape ``(B, C, H, W)``). The *last* Step's ``x0_hat`` is the method's result.
Cancelling a method is closing its generator; no method keeps a cancel flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


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
