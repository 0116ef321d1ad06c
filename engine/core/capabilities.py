"""What a model can do, and what the registry needs to know about a model without loading it.

Not every model is a diffusion prior. A model declares *capabilities*, a method declares
what it *needs* (`engine.core.registry.MethodInfo.requirements`), and one registry
function (`engine.core.registry.why_not`) decides whether a model can run a method on a
measurement. The vocabulary (open: a new kind may bring a new word; these are the ones
the engine's methods use):

* ``denoise``: ``denoise(x_t, t) = E[x0 | x_t]`` on a corruption schedule
  (``schedule``: its kind, e.g. "vp", "soft-blur"); diffusion priors and exact priors.
* ``generate-ladder``: ``generate(y_next, level, z)`` on a degradation ladder (RGM's
  generator).
* ``task-sample``: ``sample(y, z)`` for the one task it was trained for (``task``: a
  degradation spec in image units, e.g. "downsample=4,noise=0.05"); an amortized flow.
* ``task-tower``: ``iterate_levels(y, codes)``, a task-bound sampler that decides
  coarse to fine with one code per level (TIM's tower; ``task`` as above).
* ``differentiable``: gradients may flow through it (``x_t`` may require grad and the
  model answers with a graph); methods that take gradients need it.

A `ModelSpec` is what the pickers, the CLI and the conformance suite see of a model:
read from its ``config.json`` (learned models: no weights are read) or from the object
itself (exact priors, a loaded model; `spec_of`).

Model kinds: a model directory's ``config.json`` names its ``"kind"``; `register_kind`
maps a kind to its loader ``load(model_dir, device) -> model`` and the capabilities every
model of that kind has. A kind registers in its own module, listed in `KIND_MODULES`
(as methods are in ``registry.METHOD_MODULES``), so a new kind is one module plus one
registration; `engine.priors.catalog` dispatches on it. A loaded model object has
``name``, ``kind``, ``capabilities`` (the same set its kind declares; tested for every
shipped model), ``shape`` (C, H, W), ``data_range`` (lo, hi), an ``nfe`` counter (and
``vjp`` when it is differentiable), ``task`` for a ``task-sample`` model, and the
methods its capabilities name. The registry lives here, below
the priors, so that kind modules import it and nothing imports back (no cycle).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Modules whose import registers model kinds (later kinds append here).
KIND_MODULES = (
    "engine.priors.learned",
    "engine.models.features",
    "engine.priors.rgm",
    "engine.models.tim",
    "engine.solvers.amortized_flow",
)

DENOISE = "denoise"
GENERATE_LADDER = "generate-ladder"
TASK_SAMPLE = "task-sample"
TASK_TOWER = "task-tower"
DIFFERENTIABLE = "differentiable"

# What each capability means, in words a message can use ("X cannot <phrase>").
PHRASES = {DENOISE: "denoise on a schedule", GENERATE_LADDER: "generate on a degradation ladder",
           TASK_SAMPLE: "sample for a fixed task",
           TASK_TOWER: "restore a fixed task level by level", DIFFERENTIABLE: "pass gradients"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "exact", "diffusion", "rgm-generator", "aps-flow", "tim-tower", ...
    capabilities: frozenset[str]
    shape: tuple[int, ...]  # one sample (C, H, W)
    schedule: str | None = None  # schedule kind of a ``denoise`` model
    task: str | None = None  # degradation spec of a ``task-sample`` model
    exact: bool = False
    # The schedule object of a ``denoise`` model (levels a sampler can start from) and
    # the data range (model units per image unit = hi − lo), for the registry's messages.
    corruption_path: Any = field(default=None, compare=False, repr=False)
    data_range: tuple[float, float] = (0.0, 1.0)
    any_size: bool = False  # fully convolutional: keeps an image's H×W (config ``"any_size"``)

    @property
    def is_image(self) -> bool:
        """Samples are images (H, W > 1), not the 2-D points of the toy priors."""
        return self.shape[1] > 1 and self.shape[2] > 1

    def fitted_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The (C, H, W) an image of ``shape`` is converted to for this model, like the
        loaded model's `fitted_shape`: its own shape, or its channels at the image's H×W."""
        return (self.shape[0], *tuple(shape)[-2:]) if self.any_size else tuple(self.shape)


def spec_of(model, kind: str | None = None) -> ModelSpec:
    """The spec of a model object (its ``capabilities``, ``schedule``, ``task``, ``shape``)."""
    schedule = getattr(model, "schedule", None)
    exact = bool(getattr(model, "exact", False))
    kind = kind or getattr(model, "kind", None) or ("exact" if exact else "model")
    return ModelSpec(name=getattr(model, "name", "model"), kind=kind,
                     capabilities=frozenset(getattr(model, "capabilities", ())),
                     shape=tuple(model.shape), schedule=getattr(schedule, "kind", None),
                     task=getattr(model, "task", None), exact=exact, corruption_path=schedule,
                     data_range=tuple(getattr(model, "data_range", (0.0, 1.0))),
                     any_size=bool(getattr(model, "any_size", False)))


def fitted_shape(model, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The (C, H, W) an image of ``shape`` must be converted to for ``model``: its own
    ``shape``, unless the model keeps any size (`Prior.fitted_shape`, fully convolutional)."""
    fit = getattr(model, "fitted_shape", None)
    return tuple(fit(tuple(shape))) if fit is not None else tuple(model.shape)


@dataclass(frozen=True)
class ModelKind:
    kind: str
    load: Callable[[Path, str], Any]  # (model_dir, device) -> model
    capabilities: frozenset[str]  # empty: shipped, but no method runs it (e.g. "features")


MODEL_KINDS: dict[str, ModelKind] = {}


def register_kind(kind: str, load: Callable[[Path, str], Any], capabilities) -> ModelKind:
    """Make models whose ``config.json`` says ``"kind": kind`` loadable with ``load``."""
    entry = ModelKind(kind, load, frozenset(capabilities))
    if kind in MODEL_KINDS and MODEL_KINDS[kind].load is not load:
        raise ValueError(f"model kind {kind!r} registered twice")
    MODEL_KINDS[kind] = entry
    return entry


def model_kinds() -> dict[str, ModelKind]:
    for module in KIND_MODULES:
        importlib.import_module(module)
    return dict(MODEL_KINDS)
