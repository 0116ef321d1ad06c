"""Method registry: names → method functions, parameter dataclasses, capabilities.

A method is a generator function with one signature::

    run(prior, measurement, params, rng) -> Iterator[Step]

* ``prior``: a `engine.priors.Prior` (None for methods with ``needs_prior=False``);
* ``measurement``: a `Measurement` (y, operator, σ_y, all in the prior's data range)
  or None for unconditional generation;
* ``params``: an instance of the method's parameter dataclass;
* ``rng``: a `engine.core.rng.SampleRNG`; the batch size is ``len(rng)``.

The GUI builds its forms and the CLI its options from the parameter dataclasses: each
field is declared with `param` (default, range, help, choices). Adding a method is one
function plus one `register` call in its module, and the module listed in
`METHOD_MODULES`; no GUI code.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from engine.core.operators import Operator
from engine.core.step import BadInputError, Step

# Modules whose import registers methods (later families append here).
METHOD_MODULES = (
    "engine.solvers.baselines",
    "engine.solvers.classical",
    "engine.samplers.soft_diffusion",
    "engine.samplers.vp",
)


@dataclass(frozen=True)
class Measurement:
    """``y = A x + σ_y ε`` expressed in the prior's data range; y is batched like x."""

    y: torch.Tensor
    operator: Operator
    sigma_y: float
    x_shape: tuple[int, ...]  # shape of one clean sample (C, H, W)


def param(default, *, lo=None, hi=None, help: str = "", choices=None, log: bool = False):
    """A dataclass field carrying its range, help text and choices for forms and CLIs."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "help": help,
                                            "choices": tuple(choices) if choices else None,
                                            "log": log})


def describe_params(params_cls) -> list[dict]:
    """The parameter dataclass as plain dicts (``engine list --json``, GUI forms)."""
    out = []
    for f in dataclasses.fields(params_cls):
        meta = dict(f.metadata)
        out.append({"name": f.name, "type": type(f.default).__name__, "default": f.default,
                    "lo": meta.get("lo"), "hi": meta.get("hi"), "help": meta.get("help", ""),
                    "choices": list(meta["choices"]) if meta.get("choices") else None,
                    "log": meta.get("log", False)})
    return out


def make_params(params_cls, values: dict[str, Any] | None):
    """Build and validate a parameter dataclass from loose values (strings allowed)."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise BadInputError(f"unknown parameter(s) {sorted(unknown)}; "
                            f"this method takes {sorted(known)}")
    kwargs = {}
    for name, f in known.items():
        if name not in values:
            continue
        value, kind = values[name], type(f.default)
        try:
            value = (str(value).lower() in ("1", "true", "yes", "on")) if kind is bool and isinstance(value, str) else kind(value)
        except (TypeError, ValueError):
            raise BadInputError(f"parameter {name}={values[name]!r} is not a {kind.__name__}") from None
        lo, hi, choices = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("choices")
        if lo is not None and value < lo or hi is not None and value > hi:
            raise BadInputError(f"parameter {name}={value} is outside [{lo}, {hi}]")
        if choices and value not in choices:
            raise BadInputError(f"parameter {name}={value!r} must be one of {list(choices)}")
        if isinstance(value, float) and value != value:
            raise BadInputError(f"parameter {name} is NaN")
        kwargs[name] = value
    return params_cls(**kwargs)


def any_operator(op: Operator) -> bool:
    return True


@dataclass(frozen=True)
class MethodInfo:
    name: str
    run: Callable[..., Iterator[Step]]
    params: type
    kind: str  # "sampler" (generates; restores on its corruption path), "solver", "baseline"
    family: str  # paper family, e.g. "Soft Diffusion"
    summary: str
    nfe: Callable[[Any], int]  # network evaluations per sample for given params
    needs_prior: bool = True
    schedules: tuple[str, ...] = ()  # schedule kinds of priors it accepts; () = any
    default_model: str | None = None
    generates: bool = True  # can run without a measurement
    supports: Callable[[Operator], bool] = any_operator
    # A fast model and a supported degradation (image units) for demos and the
    # conformance suite; None = the default model / unconditional generation.
    example_model: str | None = None
    example_degradation: str | None = None
    # What the method's latent z is (drawn with `SampleRNG.latent`, so the GUI's latent
    # slider moves it), e.g. "initial noise"; None for methods without one.
    latent: str | None = None

    def check(self, prior, measurement: Measurement | None) -> None:
        """Raise a clear `BadInputError` if this method cannot serve the request."""
        if measurement is None and not self.generates:
            raise BadInputError(f"{self.name} restores a measurement; it cannot generate "
                                "unconditionally")
        if self.needs_prior and prior is None:
            raise BadInputError(f"{self.name} needs a prior (name it as {self.name}@MODEL)")
        if self.needs_prior and self.schedules and prior.schedule.kind not in self.schedules:
            raise BadInputError(f"{self.name} works with {'/'.join(self.schedules)} priors, "
                                f"not with {prior.name} ({prior.schedule.kind})")
        if measurement is not None and not self.supports(measurement.operator):
            from engine.core.step import UnsupportedOperatorError
            raise UnsupportedOperatorError(
                f"{self.name} cannot restore {measurement.operator.describe()}")


_METHODS: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    if info.name in _METHODS and _METHODS[info.name].run is not info.run:
        raise ValueError(f"method {info.name!r} registered twice")
    _METHODS[info.name] = info
    return info


def load_all() -> None:
    for module in METHOD_MODULES:
        importlib.import_module(module)


def methods() -> dict[str, MethodInfo]:
    load_all()
    return dict(_METHODS)


def get(name: str) -> MethodInfo:
    load_all()
    if name not in _METHODS:
        raise BadInputError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"momentum@soft-blur"`` → ("momentum", "soft-blur"); no ``@`` → the default model."""
    name, _, model = spec.partition("@")
    info = get(name.strip())
    return info.name, (model.strip() or info.default_model)
