"""Resampling and colour: block-average downsampling and the grayscale projection.

Both have closed-form proxes from their block structure (RGM, Algorithm 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.core.operators.base import Operator
from engine.core.step import BadInputError


@dataclass(frozen=True)
class Downsample(Operator):
    """r×r block averaging B; ``B Bᵀ = I/r²`` so ``B⁺ = r² Bᵀ`` = nearest upsampling."""

    factor: int = 2
    name = "downsample"

    def __post_init__(self):
        if int(self.factor) != self.factor or self.factor < 1:
            raise BadInputError(f"downsampling factor must be a positive integer, got {self.factor}")

    def check_input(self, shape):
        h, w = shape[-2:]
        if h % self.factor or w % self.factor:
            raise BadInputError(f"image size {h}×{w} is not divisible by the downsampling "
                                f"factor {self.factor}")

    def forward(self, x):
        self.check_input(x.shape)
        return F.avg_pool2d(x, self.factor)

    def upsample(self, y):
        """U_r: nearest-neighbour upsampling (each low-res pixel copied to its block)."""
        return y.repeat_interleave(self.factor, -2).repeat_interleave(self.factor, -1)

    def adjoint(self, y):
        return self.upsample(y) / self.factor**2

    def pinv(self, y):
        return self.upsample(y)

    def prox(self, z, y, lam):
        # RGM Algorithm 4: v + λ/(λ + r²) · U_r(y − B_r v)
        return z + lam / (lam + self.factor**2) * self.upsample(y - self.forward(z))


@dataclass(frozen=True)
class Grayscale(Operator):
    """Channel mean ``(B, C, H, W) → (B, 1, H, W)`` of a C-channel image."""

    channels: int = 3
    name = "grayscale"

    def check_input(self, shape):
        if shape[1] != self.channels:
            raise BadInputError(f"grayscale expects {self.channels}-channel images, got {shape[1]}")

    def forward(self, x):
        return x.mean(1, keepdim=True)

    def adjoint(self, y):
        return y.expand(-1, self.channels, -1, -1) / self.channels

    def pinv(self, y):
        return y.expand(-1, self.channels, -1, -1).clone()

    def prox(self, z, y, lam):
        # RGM Algorithm 4 (colourisation): v_c + λ/(λ + C) (y − mean_c v)
        return z + lam / (lam + self.channels) * (y - self.forward(z))


