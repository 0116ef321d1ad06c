"""Element-wise masks ``A = diag(m)`` (inpainting and Soft Diffusion's mask schedule).

Mask kinds: ``box`` hides a centred square of side ``level·H`` (inpainting); ``frame``
keeps a centred window of side ``(1 − level)·H`` (the Soft Diffusion mask schedule: at
level 1 nothing is seen); ``random`` drops a ``level`` fraction of pixels (pattern fixed
by ``seed``); ``half`` hides the right half. Masks act on all channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.core.tensor_cache import tensor_cache
from engine.core.operators.base import Operator
from engine.core.step import BadInputError

MASK_KINDS = ("box", "frame", "random", "half")


@tensor_cache(maxsize=64)
def _mask_pattern(kind: str, level: float, seed: int, h: int, w: int) -> torch.Tensor:
    """1 where the pixel is observed, 0 where it is hidden; shape (H, W), float32."""
    m = torch.ones(h, w)
    if kind in ("box", "frame"):
        side_h, side_w = round(level * h), round(level * w)
        if kind == "frame":  # keep a centred window of side (1 - level)
            side_h, side_w = h - side_h, w - side_w
        top, left = (h - side_h) // 2, (w - side_w) // 2
        window = torch.zeros(h, w)
        window[top:top + side_h, left:left + side_w] = 1
        m = 1 - window if kind == "box" else window
    elif kind == "random":
        g = torch.Generator("cpu").manual_seed(int(seed))
        m = (torch.rand(h, w, generator=g) >= level).float()
    elif kind == "half":
        m[:, w - round(level * w):] = 0 if level > 0 else 1
    else:
        raise BadInputError(f"unknown mask kind {kind!r} (box, frame, random, half)")
    return m


@dataclass(frozen=True)
class Mask(Operator):
    """Element-wise mask ``A = diag(m)``; A is an orthogonal projection, so A⁺ = Aᵀ = A."""

    kind: str = "box"
    level: float = 0.5
    seed: int = 0
    name = "mask"
    keeps_shape = True

    def __post_init__(self):
        if not 0.0 <= self.level <= 1.0:
            raise BadInputError(f"mask level must lie in [0, 1], got {self.level}")
        if self.kind not in MASK_KINDS:
            raise BadInputError(f"unknown mask kind {self.kind!r} (box, frame, random, half)")

    def pattern(self, like: torch.Tensor) -> torch.Tensor:
        m = _mask_pattern(self.kind, float(self.level), int(self.seed), like.shape[-2], like.shape[-1])
        return m.to(like.device, like.dtype)

    def forward(self, x):
        return self.pattern(x) * x

    adjoint = pinv = forward

    def prox(self, z, y, lam):
        m = self.pattern(z)
        return (z + lam * m * y) / (1 + lam * m)


