"""TIM's tower: L modules at successive resolutions, causal in their codes (tim.md).

Module l outputs ``ŷ^(l) = f^(l)(x, z^(1..l))`` at resolution ``R_L / 2^{L−l}`` and
sees only the codes of levels ≤ l, so changing ``z^(l+1..L)`` leaves ``ŷ^(1..l)``
bit-identical (tested).

Decisions (maintainers read these first):

* Data range [−1, 1] (the project's learned-model range), ``tanh`` outputs; the tower's
  input is the measurement ``y`` in the same range, exactly as `measure` makes it:
  ``sr4`` the 4×4 block average (7×7, the project's ``downsample=4``), ``inpaint`` the
  masked image (``mask=box:0.5``: a centred 14×14 hole, zeros in model units), ``pca10``
  the image-space projection ``μ + U Uᵀ(x − μ)`` onto the first 10 principal
  components of the training set (``U``, ``μ`` are buffers saved with the weights).
  ``pca10`` has no operator in `engine.core.operators`; its spec string ``pca=10`` is
  this module's own.
* Resolutions: outputs ``28 / 2^{L−l}``. Module 1 reads the input at
  ``min(input size, its output size)`` (7 for SR ×4 with L = 2, so it upsamples
  7 → 14; 7 for the 28-px tasks with L = 3, so it works at 7 without upsampling);
  module l > 1 reads at the previous output's resolution and upsamples ×2.
* Module input [choice, uniform over tasks]: the input pyramid (y resized to the
  module's input resolution: area-averaged down or nearest up), the previous output,
  the code's noise map (``code_nc`` channels at the input resolution) and 0.1 × the
  previous module's features [code]. The paper feeds SR modules only the previous
  output; giving every module y as well keeps each level tied to the measurement.
* Body [code]: weight-normalised 3×3 conv → ``blocks`` RRDBs (3 dense blocks of 5
  convs, growth ``gc``, LeakyReLU 0.2, residual scale 0.2), each followed by an
  instance norm and a style modulation ``(1 + γ)·IN(h) + β`` whose γ, β are affine in
  the level's mapped code → trunk conv + skip → (nearest ×2) conv → LReLU → conv →
  tanh. Weight normalisation on every conv (``torch.nn.utils.parametrizations``), no
  batch norm. The style affines start at zero, so a fresh tower starts as plain IN.
* Code of level l: one flat vector ``[vector part (code_dim) | noise map
  (code_nc · r_l²)]``; `code_sizes` gives the lengths, so a sampler draws each level
  with ``rng.latent(size)``. Mapping network per level: ``code_dim → mapping_dim`` ×
  ``mapping_layers`` (LeakyReLU 0.2) [code]; ``mapping=False`` (the ablation) feeds the
  raw vector part to the style affines.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

from engine.core.capabilities import TASK_TOWER, register_kind
from engine.core.step import BadInputError

IMAGE_SIZE = 28
TASKS = {"sr4": "downsample=4", "inpaint": "mask=box:0.5", "pca10": "pca=10"}
PCA_COMPONENTS = 10


@dataclass(frozen=True)
class TowerConfig:
    task: str = "sr4"
    levels: int = 2
    channels: int = 32
    growth: int = 16
    blocks: int = 2
    code_dim: int = 32
    code_nc: int = 2
    mapping: bool = True
    mapping_dim: int = 64
    mapping_layers: int = 4

    def __post_init__(self):
        if self.task not in TASKS:
            raise BadInputError(f"unknown TIM task {self.task!r} ({', '.join(TASKS)})")
        if not 1 <= self.levels <= 3:
            raise BadInputError(f"{self.levels} levels do not fit {IMAGE_SIZE}-px images")
        if self.task == "sr4" and self.levels != 2:
            raise BadInputError("SR ×4 with ×2 modules needs exactly 2 levels (7 → 14 → 28)")

    @property
    def input_size(self) -> int:
        return IMAGE_SIZE // 4 if self.task == "sr4" else IMAGE_SIZE

    @property
    def output_sizes(self) -> list[int]:
        return [IMAGE_SIZE // 2 ** (self.levels - 1 - l) for l in range(self.levels)]

    @property
    def module_input_sizes(self) -> list[int]:
        outs = self.output_sizes
        return [min(self.input_size, outs[0])] + outs[:-1]

    @property
    def code_sizes(self) -> list[int]:
        return [self.code_dim + self.code_nc * r * r for r in self.module_input_sizes]

    def to_dict(self) -> dict:
        return asdict(self)


def wn_conv(cin: int, cout: int, k: int = 3) -> nn.Module:
    return weight_norm(nn.Conv2d(cin, cout, k, padding=k // 2))


class DenseBlock(nn.Module):
    """5 convs with dense connections (growth gc), LeakyReLU 0.2, residual scale 0.2."""

    def __init__(self, c: int, gc: int):
        super().__init__()
        self.convs = nn.ModuleList([wn_conv(c + k * gc, gc) for k in range(4)] + [wn_conv(c + 4 * gc, c)])

    def forward(self, x):
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.convs[-1](torch.cat(feats, 1))


class StyledRRDB(nn.Module):
    """Residual-in-residual dense block, then ``(1 + γ)·IN(h) + β`` from the style w."""

    def __init__(self, c: int, gc: int, style_dim: int):
        super().__init__()
        self.dense = nn.Sequential(*(DenseBlock(c, gc) for _ in range(3)))
        self.affine = nn.Linear(style_dim, 2 * c)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, h, w):
        h = h + 0.2 * self.dense(h)
        gamma, beta = self.affine(w)[:, :, None, None].chunk(2, 1)
        return (1 + gamma) * F.instance_norm(h) + beta


class TowerModule(nn.Module):
    """One level: (pyramid, previous output, noise map, 0.1·previous features) → ŷ^(l)."""

    def __init__(self, cfg: TowerConfig, level: int):
        super().__init__()
        c, first = cfg.channels, level == 0
        self.upsample = cfg.output_sizes[level] // cfg.module_input_sizes[level]
        self.code_dim, self.code_nc = cfg.code_dim, cfg.code_nc
        self.size = cfg.module_input_sizes[level]
        if cfg.mapping:
            layers, width = [], cfg.code_dim
            for _ in range(cfg.mapping_layers):
                layers += [nn.Linear(width, cfg.mapping_dim), nn.LeakyReLU(0.2)]
                width = cfg.mapping_dim
            self.mapping = nn.Sequential(*layers)
        else:
            self.mapping = nn.Identity()
        style_dim = cfg.mapping_dim if cfg.mapping else cfg.code_dim
        in_ch = 1 + cfg.code_nc + (0 if first else 1 + c)
        self.conv_in = wn_conv(in_ch, c)
        self.body = nn.ModuleList([StyledRRDB(c, cfg.growth, style_dim) for _ in range(cfg.blocks)])
        self.trunk = wn_conv(c, c)
        self.conv_up = wn_conv(c, c)
        self.conv_out = wn_conv(c, 1)

    def forward(self, y_pyr, code, prev_out=None, prev_feat=None):
        vec, noise = code[:, :self.code_dim], code[:, self.code_dim:]
        noise = noise.reshape(-1, self.code_nc, self.size, self.size)
        parts = [y_pyr, noise] if prev_out is None else [y_pyr, noise, prev_out, 0.1 * prev_feat]
        fea = self.conv_in(torch.cat(parts, 1))
        w, h = self.mapping(vec), fea
        for block in self.body:
            h = block(h, w)
        h = fea + self.trunk(h)
        if self.upsample > 1:
            h = F.interpolate(h, scale_factor=self.upsample, mode="nearest")
        feat = F.leaky_relu(self.conv_up(h), 0.2)
        return torch.tanh(self.conv_out(feat)), feat


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area average down, nearest up (the input pyramid)."""
    if x.shape[-1] == size:
        return x
    if x.shape[-1] > size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="nearest")


class Tower(nn.Module):
    def __init__(self, cfg: TowerConfig = TowerConfig()):
        super().__init__()
        self.config = cfg
        self.stages = nn.ModuleList([TowerModule(cfg, l) for l in range(cfg.levels)])
        n = IMAGE_SIZE * IMAGE_SIZE
        # pca10's basis and mean (flattened, model units); zeros until `set_pca` is called.
        self.register_buffer("pca_basis", torch.zeros(n, PCA_COMPONENTS if cfg.task == "pca10" else 0))
        self.register_buffer("pca_mean", torch.zeros(n if cfg.task == "pca10" else 0))

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def code_sizes(self) -> list[int]:
        return self.config.code_sizes

    def set_pca(self, images: torch.Tensor) -> None:
        """Fit pca10's basis on training images (model units)."""
        flat = images.flatten(1).double()
        mean = flat.mean(0)
        _, _, v = torch.linalg.svd(flat - mean, full_matrices=False)
        self.pca_basis.copy_(v[:PCA_COMPONENTS].T.float())
        self.pca_mean.copy_(mean.float())

    def measure(self, x: torch.Tensor) -> torch.Tensor:
        """The tower's input y for clean images x (model units), per the task."""
        task = self.config.task
        if task == "sr4":
            return F.avg_pool2d(x, 4)
        if task == "inpaint":
            h = IMAGE_SIZE // 4
            mask = torch.ones_like(x)
            mask[..., h:IMAGE_SIZE - h, h:IMAGE_SIZE - h] = 0
            return mask * x
        centred = x.flatten(1) - self.pca_mean
        return (self.pca_mean + centred @ self.pca_basis @ self.pca_basis.T).reshape(x.shape)

    def level(self, l: int, y, code, state=(None, None)):
        """Level l alone, from the (output, features) state of level l − 1; returns
        ``(ŷ^(l), state of level l)``."""
        out, feat = self.stages[l](resize(y, self.stages[l].size), code, *state)
        return out, (out, feat)

    def forward(self, y: torch.Tensor, codes: list[torch.Tensor], upto: int | None = None
                ) -> list[torch.Tensor]:
        """Outputs ``ŷ^(1..upto)`` (default all levels) for the codes of those levels."""
        outs, state = [], (None, None)
        for l in range(upto or self.levels):
            out, state = self.level(l, y, codes[l], state)
            outs.append(out)
        return outs

    def prefix(self, y, codes, upto: int):
        """The state after levels < upto (the input of level upto)."""
        state = (None, None)
        for l in range(upto):
            _, state = self.level(l, y, codes[l], state)
        return state


class TowerModel:
    """A loaded tower ("tim-tower" kind): samples the one task it was trained for."""

    kind = "tim-tower"
    capabilities = frozenset({TASK_TOWER})
    data_range = (-1.0, 1.0)

    def __init__(self, net: Tower, name: str = "tim", info: dict | None = None):
        self.net, self.name, self.info = net.eval().requires_grad_(False), name, info or {}
        self.nfe = 0

    @property
    def levels(self) -> int:
        return self.net.levels

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, IMAGE_SIZE, IMAGE_SIZE)

    @property
    def degradation(self) -> str:
        return TASKS[self.net.config.task]

    @property
    def task_name(self) -> str:
        """"sr4", "inpaint" or "pca10"."""
        return self.net.config.task

    @property
    def task(self) -> str | None:
        """The degradation it was trained for (the registry's task-bound rule); None for
        pca10, which has no project operator and completes any full-size image."""
        return None if self.task_name == "pca10" else self.degradation

    @property
    def code_sizes(self) -> list[int]:
        return self.net.code_sizes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        s = self.net.config.input_size
        return (1, s, s)

    @property
    def device(self) -> torch.device:
        return self.net.pca_mean.device

    def iterate_levels(self, y: torch.Tensor, codes: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """``ŷ^(1)``, …, ``ŷ^(L)`` for measurements y ``(B, *input_shape)`` and per-level codes
        ``(B, code_sizes[l])``, coarse to fine. One pass through the tower counts one NFE."""
        if tuple(y.shape[1:]) != self.input_shape:
            raise BadInputError(f"{self.name} expects measurements of shape {self.input_shape} "
                                f"({self.degradation}), got {tuple(y.shape[1:])}")
        self.nfe += 1
        yield from self._levels(y, codes)

    def _levels(self, y: torch.Tensor, codes: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The tower's pass, level by level (uncounted: `iterate_levels` counts it)."""
        state = (None, None)
        for l in range(self.levels):
            with torch.no_grad():
                out, state = self.net.level(l, y, codes[l], state)
            yield out

    def sample_levels(self, y: torch.Tensor, codes: list[torch.Tensor]) -> list[torch.Tensor]:
        return list(self.iterate_levels(y, codes))

    def sample(self, y: torch.Tensor, codes: list[torch.Tensor]) -> torch.Tensor:
        return self.sample_levels(y, codes)[-1]


def load_tim_tower(model_dir: Path | str, device: str = "cpu") -> TowerModel:
    """``config.json`` (``"kind": "tim-tower"``) + ``model.safetensors`` (weights under ``net.``)."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text())
        tensors = load_file(str(model_dir / "model.safetensors"))
    except OSError as err:
        raise BadInputError(f"no TIM tower in {model_dir}: {err}") from None
    if config.get("kind") != "tim-tower":
        raise BadInputError(f"{model_dir} does not hold a TIM tower (kind {config.get('kind')!r})")
    net = Tower(TowerConfig(**config["architecture"]))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    return TowerModel(net.to(device), name=model_dir.name, info=config)


register_kind("tim-tower", load_tim_tower, {TASK_TOWER})
