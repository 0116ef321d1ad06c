"""What the engine offers, gathered once for the pickers: methods, models, demo images.

Qt-free; built after the window is visible (it imports torch). Decisions:

* A model's shape and schedule kind come from its ``config.json`` for learned models
  (no weights are read on the GUI thread) and from the factory for exact priors (they
  are closed forms; the empirical ones read the 64-image demo set, milliseconds).
* Image models are those whose samples are images (H, W > 1); the 2-D toys (shape
  (2, 1, 1)) belong to the Playground, not to the restoration pickers.
* A model fits a method when the method needs a prior and accepts the model's
  schedule kind (``MethodInfo.schedules``, empty = any).
* The default choice (`DEFAULTS`, the first whose parts exist) is the shipped VP model
  with stochastic DDIM (k = 1, 25 NFE) restoring σ_y = 0.2: a real learned prior, a
  visible posterior spread and a few seconds for 8 samples on a laptop CPU.
  Without shipped weights it falls back to the exact empirical prior at σ_y = 1 (it
  memorises its 64 images, so milder noise gives back the exact image every time),
  then to the Tikhonov baseline. Deterministic DDIM would give N identical samples
  from one measurement, hence k = 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# (method, model, degradation spec, params): the first whose parts exist wins.
DEFAULTS = (("ddim", "vp", "noise=0.2", {"nfe": 25, "k": 1.0}),
            ("ddim", "empirical-vp", "noise=1", {"nfe": 25, "k": 1.0}),
            ("tikhonov", None, "blur=1.5,noise=0.05", {}),
            ("pinv", None, "downsample=2,noise=0.02", {}))


@dataclass(frozen=True)
class ModelInfo:
    name: str
    shape: tuple[int, ...]  # (C, H, W)
    schedule: str  # schedule kind, e.g. "vp"
    exact: bool

    @property
    def is_image(self) -> bool:
        return self.shape[1] > 1 and self.shape[2] > 1


def _learned_info(name: str) -> ModelInfo | None:
    from engine.priors.catalog import MODELS_DIR

    try:
        config = json.loads((MODELS_DIR / name / "config.json").read_text())
        return ModelInfo(name, tuple(config["shape"]), config["schedule"]["kind"], False)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable model is left out of the pickers, not fatal


class Catalog:
    """Methods (`engine.core.registry.MethodInfo` by name), models and the demo set."""

    def __init__(self):
        from engine.core import registry
        from engine.io.data import CLASS_NAMES, demo_images
        from engine.priors.catalog import EXACT_PRIORS, learned_models, prior_names

        self.methods = registry.methods()
        self.models: dict[str, ModelInfo] = {}
        for name in learned_models():
            info = _learned_info(name)
            if info is not None:
                self.models[name] = info
        prior_names()  # registers the exact priors
        for name, factory in sorted(EXACT_PRIORS.items()):
            prior = factory()
            self.models[name] = ModelInfo(name, tuple(prior.shape), prior.schedule.kind, True)
        self.demo_images, labels = demo_images()
        self.demo_labels = [CLASS_NAMES[int(k)] for k in labels]

    def params(self, method: str) -> list[dict]:
        from engine.core.registry import describe_params

        return describe_params(self.methods[method].params)

    def fits(self, method: str, model: str) -> bool:
        info, m = self.methods[method], self.models[model]
        return info.needs_prior and (not info.schedules or m.schedule in info.schedules)

    def image_models_for(self, method: str) -> list[str]:
        """Image models the method accepts, its default and example models first."""
        info = self.methods[method]
        if not info.needs_prior:
            return []
        names = [n for n, m in self.models.items() if m.is_image and self.fits(method, n)]
        preferred = [n for n in (info.default_model, info.example_model) if n in names]
        return list(dict.fromkeys(preferred + names))

    def toy_models(self) -> list[str]:
        """The 2-D priors of the Playground, the eight-Gaussian ring first."""
        return sorted((n for n, m in self.models.items() if not m.is_image), key=lambda n: n != "ring8")

    def samplers_for(self, model: str) -> list[str]:
        """Methods that can generate from this model (unconditional sampling)."""
        return [n for n, info in self.methods.items()
                if info.generates and self.fits(n, model)]

    def default_choice(self) -> tuple[str, str | None, str, dict]:
        """(method, model, degradation spec, params) to start with."""
        for method, model, spec, params in DEFAULTS:
            if method in self.methods and (model is None or model in self.models):
                return method, model, spec, dict(params)
        name = next(iter(self.methods))
        return name, (self.image_models_for(name) or [None])[0], "noise=0.1", {}

    def model_shape(self, model: str | None) -> tuple[int, ...] | None:
        return self.models[model].shape if model in self.models else None
