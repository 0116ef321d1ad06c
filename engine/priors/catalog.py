"""Model names → models: learned models by kind, the exact priors, and a cache of loaded ones.

`load_model` is how jobs, the CLI, the GUI and the benchmarks get a model by name;
`model_spec` describes one without loading it (`engine.core.capabilities.ModelSpec`).

Decisions:

* Learned models live in ``assets/models/<name>/``: ``config.json`` with a ``"kind"``
  and ``"shape"`` (plus ``"schedule"`` for a model that denoises on one, ``"task"``, a
  degradation spec, for a task-bound model) and ``model.safetensors``. Loading
  dispatches on the kind through `engine.core.capabilities.MODEL_KINDS` (still
  safetensors only; each loader refuses pickles).
* A directory whose kind no loader knows is not silently dropped: `problems` names it
  with the reason (``engine list`` prints it) and loading it says which kinds exist.
  Kinds without capabilities (the ``features`` classifier behind the metrics) are
  shipped networks, not models a method runs: they are not listed.
* Exact priors are the factories of `engine.priors.exact.PRESETS`, copied into
  `EXACT_PRIORS` (tests and later modules may add factories). This module imports
  ``exact``; ``exact`` never imports this module.
* Cache: `load_model` keeps the last `CACHE_SIZE` loaded models per ``(name, device)``
  (LRU) and reloads one whose files changed (modification time and size of every file in
  its directory, compared on each call: a few µs). `load_prior` always builds a fresh
  object (tests that count a model's own NFE from zero use it).
* Threading assumption: a cached model is one shared object; its counters (``nfe``,
  ``vjp``) only grow and a job reads their *deltas* over its own run. That is exact as
  long as one thread runs jobs at a time — the studio's single engine worker thread (the
  GUI thread never runs a network, DESIGN §3), or the CLI's main thread. The cache's
  own bookkeeping is locked, so looking models up from several threads is safe; running
  two jobs on one model concurrently is not supported (their counts would mix).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from engine.core.capabilities import DENOISE, GENERATE_LADDER, ModelSpec, model_kinds, spec_of
from engine.core.step import BadInputError
from engine.priors import exact
from engine.priors.base import Prior

MODELS_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"
EXACT_PRIORS: dict[str, Callable[[], Prior]] = dict(exact.PRESETS)
CACHE_SIZE = 8


def _models_dir() -> Path:
    return MODELS_DIR  # read at call time, so a test may point it at a temporary folder


def read_config(name: str) -> dict:
    path = _models_dir() / name / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BadInputError(f"cannot read {path}: {err}") from None


def _scan() -> tuple[list[str], dict[str, str]]:
    """(usable learned model names, {name: why it is unusable})."""
    kinds = model_kinds()
    usable, problems = [], {}
    for path in sorted(_models_dir().glob("*/config.json")):
        name = path.parent.name
        try:
            kind = json.loads(path.read_text()).get("kind")
        except (OSError, ValueError) as err:
            problems[name] = f"unreadable config.json ({err})"
            continue
        if kind not in kinds:
            problems[name] = f"unknown model kind {kind!r} (known: {', '.join(sorted(kinds))})"
        elif kinds[kind].capabilities:
            usable.append(name)
    return usable, problems


def learned_models() -> list[str]:
    """Learned models a method can run (known kind with capabilities), sorted."""
    return _scan()[0]


def problems() -> dict[str, str]:
    """Model directories that cannot be used, with the reason (shown by ``engine list``)."""
    return _scan()[1]


def prior_names() -> list[str]:
    """Every model a method can run: learned ones, then the exact priors."""
    return learned_models() + sorted(EXACT_PRIORS)


_exact_specs: dict[str, ModelSpec] = {}


def model_spec(name: str) -> ModelSpec:
    """What a model can do, its shape, schedule and task — without loading learned weights."""
    if name in EXACT_PRIORS:
        if name not in _exact_specs:
            model = EXACT_PRIORS[name]()
            _exact_specs[name] = spec_of(model, kind=getattr(model, "kind", None) or "exact")
        return _exact_specs[name]
    if name not in learned_models():
        _unknown(name)
    config = read_config(name)
    kind = config["kind"]
    capabilities = model_kinds()[kind].capabilities
    try:
        return ModelSpec(name=name, kind=kind, capabilities=capabilities,
                         shape=tuple(config["shape"]),
                         schedule=(config.get("schedule") or {}).get("kind"),
                         task=config.get("task"),
                         corruption_path=_schedule(config) if capabilities & PATHS else None,
                         data_range=tuple(config.get("data_range", (0.0, 1.0))),
                         any_size=bool(config.get("any_size", False)))
    except (KeyError, TypeError) as err:
        raise BadInputError(f"{name}'s config.json lacks {err}") from None


PATHS = {DENOISE, GENERATE_LADDER}  # kinds whose schedule is their corruption path


def _schedule(config: dict):
    """A denoising model's schedule or a generator's ladder, from its config (data: no
    weights are read)."""
    from engine.core.schedules import schedule_from_config

    try:
        return schedule_from_config(config["schedule"])
    except (KeyError, TypeError, ValueError):
        return None  # the registry then checks the operator kind only


def model_specs() -> dict[str, ModelSpec]:
    return {name: model_spec(name) for name in prior_names()}


def _unknown(name: str):
    reason = problems().get(name)
    if reason:
        raise BadInputError(f"model {name!r} cannot be loaded: {reason}")
    raise BadInputError(f"unknown model {name!r}; available: {', '.join(prior_names()) or 'none'}")


def load_prior(name: str, device: str = "cpu") -> Any:
    """A freshly loaded model (any kind) by name; see `load_model` for the cached one."""
    if name in EXACT_PRIORS:
        return EXACT_PRIORS[name]().to(device)
    if name not in learned_models():
        _unknown(name)
    return model_kinds()[read_config(name)["kind"]].load(_models_dir() / name, device)


def _stamp(name: str) -> tuple:
    """What invalidates a cached model: the files of its directory (name, mtime, size)."""
    if name in EXACT_PRIORS:
        return ("exact", EXACT_PRIORS[name])
    folder = _models_dir() / name
    try:
        return tuple((p.name, s.st_mtime_ns, s.st_size)
                     for p in sorted(folder.iterdir()) if p.is_file() for s in [p.stat()])
    except OSError:
        return ()


class ModelCache:
    """Loaded models per ``(name, device)``, least recently used dropped first."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[tuple, tuple[tuple, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, device: str = "cpu") -> Any:
        key = (str(_models_dir()), name, str(torch.device(device)))
        stamp = _stamp(name)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] == stamp:
                self._items.move_to_end(key)
                return hit[1]
        model = load_prior(name, device)  # outside the lock: loading takes tens of ms
        with self._lock:
            self._items[key] = (stamp, model)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return model

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


CACHE = ModelCache()


def load_model(name: str, device: str = "cpu") -> Any:
    """The model by name, from the cache when its files are unchanged (see module doc)."""
    return CACHE.get(name, device)
