"""Learned priors: the networks trained by `engine.train`, behind the `Prior` protocol.

A model directory holds ``config.json`` (architecture, schedule, parametrisation, data
range, training record) and ``model.safetensors`` (EMA weights under ``net.``, the
training-set ``mean_image`` and the mean-colour statistics of p_1).

Decisions:

* Parametrisations: ``eps`` (VP/DDPM: the network predicts ε, and
  ``E[x0|x_t] = (x_t − σ_t ε̂)/√ᾱ_t``) and ``x0-residual`` (Soft Diffusion:
  ``E[x0|x_t] = φ_θ(x_t, t) + x_t``). `eps` is offered for both:
  ``ε̂ = (x_t − C_t x̂0)/σ_t``.
* The network runs under ``no_grad`` unless the caller asks for a gradient (``x_t``
  requires grad and grad mode is on — DPS differentiates through the denoiser); the
  weights themselves never require grad.
* Final distribution p_1 for blur/mask schedules **[choice]** (soft_diffusion.md): the
  paper fits a Gaussian to each image's mean colour; we draw a mean colour c from that
  fit and start from ``C_1 x̄_c + σ_1 ε``, where ``x̄_c`` is the training mean image
  with its ink rescaled so its mean colour is c (zero padding makes C_1 of a flat image
  vignetted, so the mean image's silhouette is a closer start than a flat one). For
  VP, C_1 = √ᾱ_T ≈ 0.006, so p_1 is the base class's ``C_1 x̄ + σ_1 ε``.
* Model kind ``"diffusion"`` (`engine.core.capabilities.register_kind`): ``denoise``
  on its schedule, ``differentiable``.
* Any size: ``"any_size": true`` in the config declares a fully-convolutional prior:
  it denoises C-channel images of any H×W, padded to ``size_multiple`` and tiled above
  ``max_tile_pixels`` (`engine.priors.tiling`); `fitted_shape` tells callers which
  images it accepts. Its ``shape`` stays concrete — the training crop, what
  unconditional generation draws — so every consumer that needs one shape (the
  studio's catalog, samplers drawing from p_1) keeps working unchanged.
* Loading never unpickles: only ``.safetensors`` weights are read; a ``.pt``/``.pth``/
  ``.pkl``/``.ckpt`` file is refused with a `BadInputError`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from engine.core.capabilities import DENOISE, DIFFERENTIABLE, register_kind
from engine.models.unet import UNet, UNetConfig
from engine.priors.base import Prior
from engine.priors.tiling import MAX_TILE_PIXELS, tiled_apply
from engine.core.rng import SampleRNG
from engine.core.schedules import VPSchedule, schedule_from_config
from engine.core.step import BadInputError

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
PARAMETRISATIONS = ("eps", "x0-residual")


class LearnedPrior(Prior):
    exact = False
    kind = "diffusion"

    def __init__(self, network: torch.nn.Module, config: dict, stats: dict[str, torch.Tensor],
                 name: str = "learned"):
        schedule = schedule_from_config(config["schedule"])
        super().__init__(schedule, tuple(config["shape"]), tuple(config["data_range"]))
        self.any_size = bool(config.get("any_size", False))  # fully convolutional
        self.size_multiple = 2 ** (len(config["architecture"].get("multipliers", (1,))) - 1)
        self.max_tile_pixels = MAX_TILE_PIXELS
        if config["parametrisation"] not in PARAMETRISATIONS:
            raise BadInputError(f"unknown parametrisation {config['parametrisation']!r}")
        self.name = name
        self.config = config
        self.parametrisation = config["parametrisation"]
        self.network = network.eval().requires_grad_(False)
        self._mean_image = stats["mean_image"].float()
        self._colour = stats.get("mean_colour")  # (mean, std) of per-image mean colour

    def _network(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        level = lambda x: torch.full((x.shape[0],), float(t), device=x.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and x_t.requires_grad):
            if self.any_size:
                return tiled_apply(lambda x: self.network(x, level(x)), x_t, self.size_multiple,
                                   self.max_tile_pixels)
            return self.network(x_t, level(x_t))

    def eps(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """The noise estimate ε̂ with ``x_t = C_t x̂0 + σ_t ε̂`` (counts one NFE)."""
        self.nfe += 1
        if self.parametrisation == "eps":
            return self._network(x_t, t)
        x0_hat = self._denoise(x_t, t)
        return (x_t - self.schedule.corruption(t).forward(x0_hat)) / self.schedule.sigma(t)

    def _denoise(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        out = self._network(x_t, t)
        if self.parametrisation == "x0-residual":
            return out + x_t
        alpha_bar = self.schedule.alpha_bar(t)
        return (x_t - math.sqrt(1 - alpha_bar) * out) / math.sqrt(alpha_bar)

    def noise_level(self, sigma: float) -> tuple[float, float]:
        """``(t, c)`` with ``x_t = c·(x0 + σ ε)`` a noise-only state of the schedule.

        σ is in model units. VP: the integer step k whose ``σ_k/√ᾱ_k`` is nearest to σ
        (c = √ᾱ_k). Soft schedules: only their noise stage ``t ≤ t_s`` is noise-only,
        so σ must lie in ``[σ_0, σ_1]`` (c = 1).
        """
        schedule = self.schedule
        if isinstance(schedule, VPSchedule):
            return schedule.noise_level(sigma)
        low, high = schedule.sigma_start, schedule.sigma_end
        if not low <= sigma <= high:
            raise BadInputError(f"{self.name} denoises Gaussian noise only for σ in "
                                f"[{low:g}, {high:g}] (model units), not {sigma:g}")
        return schedule.t_split * math.log(sigma / low) / math.log(high / low), 1.0

    def denoise_gaussian(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        """``E[x0 | y]`` for ``y = x0 + σ ε`` (model units; one NFE)."""
        t, c = self.noise_level(sigma)
        return self.denoise(c * y, t)

    def fitted_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.any_size:
            return (self.shape[0], *tuple(shape)[1:])
        return super().fitted_shape(shape)

    def mean_image(self) -> torch.Tensor:
        return self._mean_image.clone()

    def colour_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (per channel) of an image's mean colour over the training set."""
        if self._colour is None:
            return self._mean_image.mean((1, 2)), self._mean_image.std((1, 2))
        return self._colour[:1].clone(), self._colour[1:].clone()

    def sample_final(self, rng: SampleRNG) -> torch.Tensor:
        if isinstance(self.schedule, VPSchedule) or self._colour is None:
            return super().sample_final(rng)
        low = self.data_range[0]
        x_bar = self._mean_image.to(rng.device, rng.dtype)
        mean, std = (float(v) for v in self._colour)
        z = rng.latent(1 + math.prod(self.shape))  # the whole start is one latent (slerp-able)
        colour = mean + std * z[:, :1, None, None]  # (n, 1, 1, 1)
        ink = (colour - low) / (x_bar.mean() - low)
        start = low + (x_bar - low) * ink.clamp_min(0)
        return self.schedule.corrupt(start, 1.0, z[:, 1:].reshape(len(rng), *self.shape))

    def to(self, device):
        super().to(device)
        self.network.to(self.device)
        self._mean_image = self._mean_image.to(self.device)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "parametrisation": self.parametrisation,
                "training": self.config.get("training", {})}


def build_network(architecture: dict) -> torch.nn.Module:
    kind = architecture.get("kind", "unet")
    if kind != "unet":
        raise BadInputError(f"unknown network kind {kind!r} in model config")
    return UNet(UNetConfig.from_dict(architecture))


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a weights file, refusing anything that would need unpickling."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise BadInputError(f"refusing to load {path.name}: pickled PyTorch files can run "
                            "arbitrary code; convert the weights to .safetensors")
    if not path.exists():
        raise BadInputError(f"weights file {path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise BadInputError(f"cannot read weights {path}: {err}") from None


def load_learned(model_dir: Path | str, device: str = "cpu") -> LearnedPrior:
    """Rebuild a learned prior from ``config.json`` + ``model.safetensors`` (EMA weights)."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        if model_dir.suffix.lower() in PICKLE_SUFFIXES:
            read_safetensors(model_dir)  # raises the refusal
        model_dir = model_dir.parent
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise BadInputError(f"{model_dir} holds no config.json")
    config = json.loads(config_path.read_text())
    if config.get("kind") != "diffusion":
        raise BadInputError(f"{model_dir.name} is a {config.get('kind')!r} model, not a diffusion prior")
    tensors = read_safetensors(model_dir / "model.safetensors")
    network = build_network(config["architecture"])
    try:
        network.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    except RuntimeError as err:
        raise BadInputError(f"weights in {model_dir} do not match its config: {err}") from None
    stats = {k: v for k, v in tensors.items() if not k.startswith("net.")}
    return LearnedPrior(network, config, stats, name=model_dir.name).to(device)


register_kind("diffusion", load_learned, {DENOISE, DIFFERENTIABLE})
