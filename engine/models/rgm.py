"""RGM networks (rgm.md, "Networks"): the generator ``G(y_{t+1}, t, z)`` and the
discriminator ``D(y_t, t)``, sized for a CPU at 28–32 px; and the 2-D toy's MLPs.

Decisions:

* Generator: a small U-Net (two down-samplings, 28 → 14 → 7) whose residual blocks are
  modulated by the latent through adaptive group norm, ``γ(w) ⊙ GN(h) + β(w)`` with
  ``w = MLP(z)`` and the γ bias initialised to 1 (weights at PyTorch's default, so z moves the
  output from the first step).
  The level t (an integer 0 … T−1, the level G restores *to*) enters through a learned
  embedding added between the two convolutions (DDPM style). The output is
  ``tanh``: G returns an image in the data range [−1, 1].
* ``z_dim = 0`` builds the "no z" ablation: the blocks keep their (then constant)
  modulation, so the two networks differ only in what the mapping MLP sees.
* Discriminator: strided 3×3 convolution blocks (LeakyReLU 0.2) with the level
  embedding added as a per-channel bias, a minibatch-stddev feature (groups of ≤ 4)
  before the last convolution, a spatial sum and a linear logit plus a projection term
  ``⟨e(t), h⟩`` so the logit depends on the level even where features do not.
* Configs are plain dicts stored in ``config.json`` (no pickles).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GeneratorConfig:
    levels: int = 4  # T: G restores to levels 0 … T−1
    channels: int = 32
    multipliers: tuple[int, ...] = (1, 2, 2)
    z_dim: int = 32  # 0 = the no-z ablation
    style_dim: int = 64
    image_channels: int = 1
    groups: int = 8

    def to_dict(self) -> dict:
        return {"kind": "rgm-unet", **asdict(self)}

    @staticmethod
    def from_dict(config: dict) -> "GeneratorConfig":
        config = {k: v for k, v in config.items() if k != "kind"}
        return GeneratorConfig(**{**config, "multipliers": tuple(config["multipliers"])})


@dataclass(frozen=True)
class DiscriminatorConfig:
    levels: int = 4  # D judges levels 0 … T−1
    channels: int = 32
    multipliers: tuple[int, ...] = (1, 2, 4)
    image_channels: int = 1

    def to_dict(self) -> dict:
        return {"kind": "rgm-disc", **asdict(self)}


class AdaptiveGroupNorm(nn.Module):
    """``γ(w) ⊙ GN(h) + β(w)``; γ's bias starts at 1, β's at 0."""

    def __init__(self, groups: int, channels: int, style_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, affine=False)
        self.style = nn.Linear(style_dim, 2 * channels)
        with torch.no_grad():
            self.style.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, h, w):
        gamma, beta = self.style(w)[:, :, None, None].chunk(2, 1)
        return gamma * self.norm(h) + beta


class StyledBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, style_dim: int, groups: int):
        super().__init__()
        self.norm1 = AdaptiveGroupNorm(groups, c_in, style_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = AdaptiveGroupNorm(groups, c_out, style_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h, emb, w):
        out = self.conv1(F.silu(self.norm1(h, w))) + self.emb(emb)[:, :, None, None]
        return self.skip(h) + self.conv2(F.silu(self.norm2(out, w)))


class Generator(nn.Module):
    """``G(y, t, z) → x̂``: y a level-(t+1) image (full resolution), t integer levels (B,)."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = config
        c, g, s = config.channels, config.groups, config.style_dim
        widths = [c * m for m in config.multipliers]
        emb_dim = 4 * c
        self.level_emb = nn.Sequential(nn.Embedding(config.levels, emb_dim), nn.SiLU(),
                                       nn.Linear(emb_dim, emb_dim))
        self.mapping = nn.Sequential(nn.Linear(max(config.z_dim, 1), s), nn.SiLU(), nn.Linear(s, s),
                                     nn.SiLU())
        self.conv_in = nn.Conv2d(config.image_channels, c, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        width, skips = c, []
        for i, w in enumerate(widths):
            self.down.append(StyledBlock(width, w, emb_dim, s, g))
            width = w
            skips.append(width)
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.mid = StyledBlock(width, width, emb_dim, s, g)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(StyledBlock(width + skips.pop(), w, emb_dim, s, g))
            width = w
            if i > 0:
                self.upsample.append(nn.Conv2d(width, width, 3, padding=1))
        self.norm_out = nn.GroupNorm(g, width)
        self.conv_out = nn.Conv2d(width, config.image_channels, 3, padding=1)

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def forward(self, y: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if self.config.z_dim == 0 or z is None:
            z = torch.zeros(y.shape[0], max(self.config.z_dim, 1), device=y.device, dtype=y.dtype)
        emb = self.level_emb(torch.as_tensor(t, device=y.device).long().expand(y.shape[0]))
        w = self.mapping(z)
        h, skips = self.conv_in(y), []
        for i, block in enumerate(self.down):
            h = block(h, emb, w)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb, w)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), emb, w)
            if skips:
                h = self.upsample[i](F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return torch.tanh(self.conv_out(F.silu(self.norm_out(h))))


def minibatch_stddev(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean std over groups of ≤ ``group`` samples as one feature map."""
    b, _, height, width = h.shape
    g = min(group, b)
    while b % g:
        g -= 1
    std = h.reshape(g, -1, *h.shape[1:]).std(0, unbiased=False).add(1e-8)  # (b/g, C, H, W)
    feature = std.mean((1, 2, 3))[:, None, None, None].repeat(g, 1, height, width)
    return torch.cat([h, feature], 1)


class Discriminator(nn.Module):
    """``D(y_t, t)`` → one logit per sample (``l``; D = sigmoid(l))."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.config = config
        widths = [config.channels * m for m in config.multipliers]
        self.conv_in = nn.Conv2d(config.image_channels, widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1)
                                    for a, b in zip(widths, widths[1:]))
        self.level_bias = nn.ModuleList(nn.Embedding(config.levels, w) for w in widths)
        self.conv_out = nn.Conv2d(widths[-1] + 1, widths[-1], 3, padding=1)
        self.linear = nn.Linear(widths[-1], 1)
        self.projection = nn.Embedding(config.levels, widths[-1])
        for emb in (*self.level_bias, self.projection):
            nn.init.zeros_(emb.weight)

    def forward(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=y.device).long().expand(y.shape[0])
        h = F.leaky_relu(self.conv_in(y) + self.level_bias[0](t)[:, :, None, None], 0.2)
        for conv, bias in zip(self.blocks, self.level_bias[1:]):
            h = F.leaky_relu(conv(h) + bias(t)[:, :, None, None], 0.2)
        h = F.leaky_relu(self.conv_out(minibatch_stddev(h)), 0.2).sum((2, 3))
        return self.linear(h)[:, 0] + (self.projection(t) * h).sum(1)


class ToyGenerator(nn.Module):
    """2-D toy: ``G([y, t/T, z])``, a 3-layer tanh MLP (32 hidden); points as (B, 2, 1, 1)."""

    def __init__(self, levels: int, z_dim: int = 2, hidden: int = 32, dim: int = 2):
        super().__init__()
        self.levels, self.z_dim = levels, z_dim
        self.net = nn.Sequential(nn.Linear(dim + 1 + z_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, y, t, z):
        b = y.shape[0]
        t = torch.as_tensor(t, device=y.device, dtype=y.dtype).expand(b)[:, None] / self.levels
        z = z if self.z_dim and z is not None else y.new_zeros(b, self.z_dim)
        return self.net(torch.cat([y.flatten(1), t, z[:, :self.z_dim]], 1)).reshape(y.shape)


class ToyDiscriminator(nn.Module):
    def __init__(self, levels: int, hidden: int = 32, dim: int = 2):
        super().__init__()
        self.levels = levels
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, y, t):
        t = torch.as_tensor(t, device=y.device, dtype=y.dtype).expand(y.shape[0])[:, None] / self.levels
        return self.net(torch.cat([y.flatten(1), t], 1))[:, 0]
