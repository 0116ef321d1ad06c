"""Prior names → loaders: learned models in ``assets/models/<name>/`` and exact priors.

Exact priors register a factory in `EXACT_PRIORS` (see `engine.priors.exact`); learned
models are discovered from their ``config.json``. `load_prior` is the one way any
caller (jobs, CLI, GUI, tests) gets a prior by name.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Callable

from engine.priors.base import Prior
from engine.core.step import BadInputError

MODELS_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"
EXACT_PRIORS: dict[str, Callable[[], Prior]] = {}


def _load_exact_module() -> None:
    importlib.import_module("engine.priors.exact")


NOT_PRIORS = {"features"}  # shipped networks that are not diffusion priors


def learned_models(models_dir: Path = MODELS_DIR) -> list[str]:
    return sorted(p.parent.name for p in models_dir.glob("*/config.json")
                  if json.loads(p.read_text()).get("kind") not in NOT_PRIORS)


def prior_names() -> list[str]:
    _load_exact_module()
    return learned_models() + sorted(EXACT_PRIORS)


def load_prior(name: str, device: str = "cpu") -> Prior:
    _load_exact_module()
    if name in EXACT_PRIORS:
        return EXACT_PRIORS[name]().to(device)
    if name in learned_models():
        if json.loads((MODELS_DIR / name / "config.json").read_text()).get("kind") == "rgm-generator":
            from engine.priors.rgm import load_rgm_generator  # a ladder model (spine: model kinds)
            return load_rgm_generator(MODELS_DIR / name, device=device)
        from engine.priors.learned import load_learned
        return load_learned(MODELS_DIR / name, device=device)
    raise BadInputError(f"unknown model {name!r}; available: {', '.join(prior_names()) or 'none'}")
