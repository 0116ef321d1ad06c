"""A small time-conditioned U-Net for 1×28×28 images (28 → 14 → 7 and back), and —
without attention and normalisation (``attention=False, norm="none"``) — a fully-
convolutional network for RGB photos of any size (the ``photo`` prior).

Decisions:

* Conditioned on the corruption level **t ∈ [0, 1]** through a sinusoidal embedding of
  ``1000·t`` and a two-layer MLP — never on σ alone, which is constant during the whole
  blur stage of Soft Diffusion.
* Residual blocks GroupNorm → SiLU → conv, the time embedding added between the two
  convolutions (DDPM style); one self-attention block at 7×7 (49 tokens, cheap).
* Down-sampling by strided 3×3 convolutions (28 → 14 → 7: no padding to 32 needed),
  up-sampling by nearest neighbour + conv; skip connections concatenate.
* The architecture is a plain dict (`UNetConfig.to_dict`) stored in the model's
  ``config.json`` so the network is rebuilt without pickles.
* The output is what the training family asks for (ε for VP, the residual φ for Soft
  Diffusion); the last convolution starts at zero so a fresh network predicts 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class UNetConfig:
    channels: int = 16  # width of the 28×28 level
    multipliers: tuple[int, ...] = (1, 2, 4)  # width factor per level (28, 14, 7)
    blocks: int = 1  # residual blocks per level on the way down
    attention: bool = True  # one self-attention block at the coarsest level
    image_channels: int = 1
    groups: int = 8
    norm: str = "group"  # "group" (GroupNorm) or "none" (purely local: any size, tiles exactly)

    def to_dict(self) -> dict:
        return {"kind": "unet", **asdict(self)}

    @staticmethod
    def from_dict(config: dict) -> "UNetConfig":
        config = {k: v for k, v in config.items() if k != "kind"}
        config["multipliers"] = tuple(config.get("multipliers", (1, 2, 4)))
        return UNetConfig(**config)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of ``1000·t`` (frequencies 1 … 1/10000), shape (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def normalisation(kind: str, groups: int, channels: int) -> nn.Module:
    """GroupNorm, or nothing: GroupNorm's statistics span the whole image, so a network
    with it answers differently for a crop than for the same pixels inside a larger image."""
    return nn.GroupNorm(groups, channels) if kind == "group" else nn.Identity()


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, norm: str = "group"):
        super().__init__()
        self.norm1 = normalisation(norm, groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = normalisation(norm, groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, channels: int, groups: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = config
        c, g = config.channels, config.groups
        widths = [c * m for m in config.multipliers]
        emb_dim = 4 * c
        self.emb = nn.Sequential(nn.Linear(c, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(config.image_channels, c, 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skip_widths, width = [c], c
        for level, w in enumerate(widths):
            for _ in range(config.blocks):
                self.down.append(ResBlock(width, w, emb_dim, g, config.norm))
                width = w
                skip_widths.append(width)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
                skip_widths.append(width)

        self.mid1 = ResBlock(width, width, emb_dim, g, config.norm)
        self.mid_attn = Attention(width, g) if config.attention else nn.Identity()
        self.mid2 = ResBlock(width, width, emb_dim, g, config.norm)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(config.blocks + 1):
                self.up.append(ResBlock(width + skip_widths.pop(), w, emb_dim, g, config.norm))
                width = w
            if level > 0:
                self.upsample.append(nn.Conv2d(width, width, 3, padding=1))

        self.norm_out = normalisation(config.norm, g, width)
        self.conv_out = nn.Conv2d(width, config.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W), ``t`` (B,) or a scalar in [0, 1].

        Without attention any H×W runs; sizes divisible by `size_multiple` keep every
        level's grid aligned with the input (what tiling needs).
        """
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        emb = self.emb(time_embedding(t, self.config.channels))
        blocks, levels = iter(self.down), len(self.config.multipliers)
        h = self.conv_in(x)
        skips = [h]
        for level in range(levels):
            for _ in range(self.config.blocks):
                h = next(blocks)(h, emb)
                skips.append(h)
            if level < levels - 1:
                h = self.downsample[level](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        blocks = iter(self.up)
        for i, level in enumerate(reversed(range(levels))):
            for _ in range(self.config.blocks + 1):
                h = next(blocks)(torch.cat([h, skips.pop()], 1), emb)
            if level > 0:
                h = F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest")
                h = self.upsample[i](h)
        return self.conv_out(F.silu(self.norm_out(h)))


def size_multiple(config: UNetConfig) -> int:
    """H and W should be multiples of this: one factor 2 per strided down-sampling."""
    return 2 ** (len(config.multipliers) - 1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
