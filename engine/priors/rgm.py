"""Model kind ``rgm-generator``: a generator on a degradation ladder (RGM).

Not a diffusion prior: it answers ``generate(y_next, level, z)`` — restore the level
``level + 1`` observation ``y_next`` (full resolution, model units) to an image, given a
latent z — and knows its ladder (`RGMSchedule`): ``degrade(x, level, noise)`` and
``sample_prior(noise)`` (p_T). Every `generate` call is one network evaluation (``nfe``).

* `RGMGenerator` wraps the trained network (``config.json`` with ``"kind":
  "rgm-generator"`` + ``model.safetensors``, EMA weights under ``net.``);
  `load_rgm_generator` reads it without unpickling.
* `OracleGenerator` is the exact generator of a finite image set: it returns ``x_i``
  drawn from ``softmax_i(−‖(y_{t+1} − A_{t+1} x_i)/σ_{t+1}‖²/2)`` (the true posterior of
  the uniform distribution over the set) by Gumbel-max, with the Gumbel noise made from
  z (``u = Φ(z)``, one coordinate per image), so z moves it like a trained G's latent.
  It tests the whole ladder's plumbing without training (rgm.md, Tests) and serves as
  the fast example model of the RGM methods (``rgm-oracle``: the 64 demo images).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.core.capabilities import GENERATE_LADDER, register_kind
from engine.core.schedules import RGMSchedule, schedule_from_config
from engine.core.step import BadInputError


class LadderModel:
    """What the RGM methods need from a model: the ladder, the latent size, `generate`."""

    kind = "rgm-generator"
    capabilities = frozenset({GENERATE_LADDER})
    exact = False

    def __init__(self, schedule: RGMSchedule, shape, z_dim: int, data_range=(-1.0, 1.0),
                 name: str = "rgm"):
        schedule.check_shape(tuple(shape))
        self.schedule, self.shape, self.z_dim = schedule, tuple(shape), z_dim
        self.data_range, self.name = tuple(data_range), name
        self.nfe, self.vjp = 0, 0
        self.device = torch.device("cpu")

    @property
    def levels(self) -> int:
        return self.schedule.levels

    def generate(self, y_next: torch.Tensor, level: int, z: torch.Tensor | None) -> torch.Tensor:
        """x̂ = G(y_{level+1}, level, z) (one NFE)."""
        if not 0 <= level < self.levels:
            raise BadInputError(f"{self.name} restores to levels 0 … {self.levels - 1}, not {level}")
        self.nfe += 1
        return self._generate(y_next, level, z)

    def _generate(self, y_next, level, z):
        raise NotImplementedError

    def degrade(self, x: torch.Tensor, level: int, noise: torch.Tensor) -> torch.Tensor:
        return self.schedule.degrade(x, level, noise)

    def sample_prior(self, noise: torch.Tensor) -> torch.Tensor:
        """A draw of p_T (full resolution) from full-resolution white noise."""
        return self.schedule.sample_prior(noise)

    def to(self, device):
        self.device = torch.device(device)
        return self

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "schedule": self.schedule.to_config(),
                "shape": list(self.shape), "data_range": list(self.data_range), "z_dim": self.z_dim}


class RGMGenerator(LadderModel):
    def __init__(self, network: torch.nn.Module, config: dict, name: str = "rgm"):
        super().__init__(schedule_from_config(config["schedule"]), config["shape"],
                         network.z_dim, config["data_range"], name)
        self.config = config
        self.network = network.eval().requires_grad_(False)

    def _generate(self, y_next, level, z):
        with torch.set_grad_enabled(torch.is_grad_enabled() and y_next.requires_grad):
            t = torch.full((y_next.shape[0],), level, device=y_next.device, dtype=torch.long)
            return self.network(y_next, t, z)

    def to(self, device):
        super().to(device)
        self.network.to(self.device)
        return self


class OracleGenerator(LadderModel):
    """The exact G* of the uniform distribution over ``images`` (N, C, H, W); z_dim = N."""

    exact = True

    def __init__(self, images: torch.Tensor, schedule: RGMSchedule, name: str = "rgm-oracle"):
        super().__init__(schedule, images.shape[1:], len(images), name=name)
        self.images = images

    def log_weights(self, y_next: torch.Tensor, level: int) -> torch.Tensor:
        """``−‖(y_{t+1} − A_{t+1} x_i)/σ_{t+1}‖²/2`` on level t+1's grid, (B, N)."""
        t = (level + 1) / self.levels
        f = self.schedule.factor(level + 1)
        images = self.images.to(y_next.device, y_next.dtype)
        seen = self.schedule.corruption(t).forward(images).flatten(1)
        dist = torch.cdist(y_next[..., ::f, ::f].flatten(1), seen, compute_mode="donot_use_mm_for_euclid_dist")
        return -0.5 * (dist / self.schedule.sigma(t)) ** 2

    def _generate(self, y_next, level, z):
        u = torch.special.ndtr(z.double()).clamp(1e-12, 1 - 1e-12)
        gumbel = -torch.log(-torch.log(u))  # Gumbel-max: argmax(logits + G) ~ softmax(logits)
        pick = (self.log_weights(y_next, level).double() + gumbel).argmax(1)
        return self.images.to(y_next.device, y_next.dtype)[pick]


def load_rgm_generator(model_dir: Path | str, device: str = "cpu") -> RGMGenerator:
    """Load a ``kind: rgm-generator`` model directory (safetensors + config.json)."""
    from engine.models.rgm import Generator, GeneratorConfig
    from engine.priors.learned import read_safetensors

    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise BadInputError(f"cannot read {model_dir / 'config.json'}: {err}") from None
    if config.get("kind") != "rgm-generator":
        raise BadInputError(f"{model_dir} is a {config.get('kind')!r} model, not an rgm-generator")
    tensors = read_safetensors(model_dir / "model.safetensors")
    network = Generator(GeneratorConfig.from_dict(config["architecture"]))
    network.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    return RGMGenerator(network, config, name=model_dir.name).to(device)


register_kind("rgm-generator", load_rgm_generator, {GENERATE_LADDER})


def demo_oracle() -> OracleGenerator:
    """``rgm-oracle``: G* of the 64 demo images on the RGM-D ladder (T = 4)."""
    from engine.io.data import demo_images, to_model_range

    return OracleGenerator(to_model_range(demo_images()[0]), RGMSchedule("rgm-d", 4))
