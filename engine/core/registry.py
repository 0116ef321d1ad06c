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

Capabilities (`engine.core.capabilities`): a model declares what it can do, a method
what it needs (`MethodInfo.requirements`: ``needs``, by default ``denoise`` for a method
that takes a model, plus ``differentiable`` when ``needs_grad``). `why_not` is the one
rule that says whether a model can run a method on a degradation; `models_for`,
`MethodInfo.check`, ``engine list``, the CLI's errors, the studio's pickers and the
conformance suite all ask it.

Messages are for a user at the degradation panel (issue 15): they speak in its units
(noise σ_y in image units, blur in pixels, never model units or operator reprs), say the
fix when there is one ("lower noise to 0.05 or below") and name methods that would work
now (`instead`, `with_advice`: "pick dps@vp, pnp-drs@vp or pinv"), chosen by the same
rule, so a message never suggests what cannot run. `cannot_restore` asks it for a
method with or without a model.

Gradients: jobs iterate methods under ``torch.no_grad()``. A method that differentiates
through the model sets ``needs_grad=True`` and enables gradients locally around its
network call (``engine.priors.base.denoise_with_grad``), so its result does not depend
on the caller's grad mode (checked by the conformance suite).

NFE: `MethodInfo.nfe` *predicts* the forward network evaluations per sample from the
parameters (the GUI shows it before a run); the job measures them (and VJPs) from the
model's counters (`engine.core.jobs.Job.nfe`), and the conformance suite checks the two
agree. A count that depends on the model too (rgm: one evaluation per level of the
model's ladder) is ``nfe_of_model(params, model)``, asked by `MethodInfo.predict_nfe`
with the loaded model or its `ModelSpec`.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from engine.core.capabilities import DENOISE, DIFFERENTIABLE, PHRASES, ModelSpec, spec_of
from engine.core.operators import Operator

if TYPE_CHECKING:
    from engine.core.operators import Degradation
from engine.core.step import BadInputError, Step, UnsupportedOperatorError

# Modules whose import registers methods (later families append here).
METHOD_MODULES = (
    "engine.solvers.baselines",
    "engine.solvers.classical",
    "engine.samplers.soft_diffusion",
    "engine.samplers.vp",
    "engine.samplers.rgm",
    "engine.solvers.pnp_drs",
    "engine.solvers.dps",
    "engine.solvers.rmp",
    "engine.solvers.tim",
    "engine.solvers.amortized_flow",
)


@dataclass(frozen=True)
class Measurement:
    """``y = A x + σ_y ε`` expressed in the prior's data range; y is batched like x."""

    y: torch.Tensor
    operator: Operator
    sigma_y: float
    x_shape: tuple[int, ...]  # shape of one clean sample (C, H, W)


def param(default, *, lo=None, hi=None, help: str = "", choices=None, log: bool = False,
          units: str = ""):
    """A dataclass field carrying its range, help text, choices and units for forms and CLIs."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "help": help,
                                            "choices": tuple(choices) if choices else None,
                                            "log": log, "units": units})


def describe_params(params_cls) -> list[dict]:
    """The parameter dataclass as plain dicts (``engine list --json``, GUI forms)."""
    out = []
    for f in dataclasses.fields(params_cls):
        meta = dict(f.metadata)
        out.append({"name": f.name, "type": type(f.default).__name__, "default": f.default,
                    "lo": meta.get("lo"), "hi": meta.get("hi"), "help": meta.get("help", ""),
                    "choices": list(meta["choices"]) if meta.get("choices") else None,
                    "log": meta.get("log", False), "units": meta.get("units", "")})
    return out


def parse_params(items: list[str]) -> dict[str, str]:
    """``["k=0.6", "nfe=50"]`` (CLI ``--param`` values) → ``{"k": "0.6", "nfe": "50"}``."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise BadInputError(f"--param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    return params


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
    # Parameter values for that demo/conformance run (name → value pairs); () = defaults.
    example_params: tuple[tuple[str, Any], ...] = ()
    # What the method's latent z is (drawn with `SampleRNG.latent`, so the GUI's latent
    # slider moves it), e.g. "initial noise"; None for methods without one.
    latent: str | None = None

    # Capabilities the model must have (engine.core.capabilities), e.g. ("task-sample",)
    # or ("generate-ladder",); None = ("denoise",) for a method that takes a model.
    needs: tuple[str, ...] | None = None
    # The method differentiates through the model (enables gradients locally; adds the
    # ``differentiable`` requirement; the conformance suite checks grad-mode independence).
    needs_grad: bool = False
    # At least one of these capabilities too (a method served by several model kinds,
    # e.g. pnp-drs: a denoiser at a level or an RGM generator); () = no such choice.
    needs_one_of: tuple[str, ...] = ()
    # Whether a measurement's level suits the model, asked before a job starts:
    # ``check_level(schedule, operator, σ_y in model units, model units per image unit,
    # "method@model") -> why not, in the degradation panel's units, or None`` (samplers
    # that start from the measurement on their path: `engine.samplers.common.level_problem`).
    check_level: Callable[..., str | None] | None = None
    # Network evaluations per sample that depend on the model as well as the parameters,
    # ``(params, model or its ModelSpec) -> int``; None = ``nfe(params)`` for any model.
    nfe_of_model: Callable[[Any, Any], int] | None = None

    def predict_nfe(self, params, model=None) -> int:
        """Network evaluations per sample for ``params`` on ``model`` (a loaded model or
        its `ModelSpec`; None: the count without a model, ``nfe(params)``)."""
        if model is not None and self.nfe_of_model is not None:
            return self.nfe_of_model(params, model)
        return self.nfe(params)

    @property
    def requirements(self) -> frozenset[str]:
        """Capabilities a model must have to run this method (empty without a model)."""
        if not self.needs_prior:
            return frozenset()
        needs = set((DENOISE,) if self.needs is None else self.needs)
        return frozenset(needs | ({DIFFERENTIABLE} if self.needs_grad else set()))

    def check(self, prior, measurement: Measurement | None,
              degradation: Degradation | None = None) -> None:
        """Raise a clear `BadInputError` if this method cannot serve the request (the
        model's capabilities first: they decide whether the pairing makes sense at all),
        naming what would work instead (`instead`)."""
        if self.needs_prior and prior is None:
            raise BadInputError(f"{self.name} needs a prior (name it as {self.name}@MODEL; "
                                f"models that can run it: {', '.join(models_for(self.name)) or 'none'})")
        spec = spec_of(prior) if self.needs_prior else None
        if self.needs_prior:
            reason = why_not(self, spec, degradation)
            if reason:
                raise BadInputError(with_advice(reason, instead(degradation, spec, self.name)))
        if measurement is None and not self.generates:
            raise BadInputError(f"{self.name} restores a measurement; it cannot generate "
                                "unconditionally")
        if measurement is not None and not self.supports(measurement.operator):
            what = in_words(degradation) if degradation is not None else measurement.operator.describe()
            raise UnsupportedOperatorError(with_advice(
                f"{self.name} cannot restore {what}",
                instead(degradation, spec, self.name, channels=measurement.x_shape[0])))


def degradation_type():
    """`Degradation`, imported late: its module declares operator parameters with this
    module's `param`, so importing it here at the top would be circular."""
    from engine.core.operators import Degradation
    return Degradation


def why_not(info: MethodInfo, model: ModelSpec, degradation: Degradation | None = None) -> str | None:
    """Why ``model`` cannot run ``info`` (on ``degradation``), or None when it can.

    The one capability rule: the model has every capability the method requires (and
    one of ``needs_one_of``); a denoising model of a method restricted to schedule kinds
    has one of them; a task-bound model
    (``task-sample``) runs only on the degradation it was trained for; the method
    supports the degradation's operator, and a method that starts from the measurement
    on the model's path (``check_level``) finds its noise and blur levels there. The
    reasons speak in the degradation panel's units (σ_y in image units, blur in pixels).
    """
    if not info.needs_prior:
        return f"{info.name} takes no model"
    missing = sorted(info.requirements - model.capabilities)
    if missing:
        return (f"{info.name} needs a model that can {' and '.join(PHRASES.get(m, m) for m in missing)}; "
                f"{model.name} ({model.kind}) cannot")
    if info.needs_one_of and not set(info.needs_one_of) & model.capabilities:
        return (f"{info.name} needs a model that can "
                f"{' or '.join(PHRASES.get(m, m) for m in info.needs_one_of)}; "
                f"{model.name} ({model.kind}) cannot")
    if DENOISE in model.capabilities and info.schedules and model.schedule not in info.schedules:
        return (f"{info.name} works with {'/'.join(info.schedules)} priors, "
                f"not with {model.name} ({model.schedule})")
    if degradation is not None and model.task is not None and \
            not matches_task(degradation_type().parse(model.task), degradation):
        return (f"{model.name} was trained for {model.task}; the measurement is "
                f"{degradation.spec()}")
    if degradation is None:
        return None
    op = degradation.operator(model.shape[0])
    if not info.supports(op):
        return f"{info.name} cannot restore {in_words(degradation)}"
    if info.check_level is not None and model.corruption_path is not None:
        unit = model.data_range[1] - model.data_range[0]
        return info.check_level(model.corruption_path, op, degradation.noise * unit, unit,
                                f"{info.name}@{model.name}")
    return None


def matches_task(task: Degradation, degradation: Degradation) -> bool:
    """A task-bound model serves its own degradation. A task trained noise-free (a TIM
    tower) names no noise level and accepts the measurement's noise; a task with a noise
    level (an APS flow) needs exactly that level."""
    if task.noise == 0:
        return task == degradation.replace(noise=0.0)
    return task == degradation


def cannot_restore(info: MethodInfo, model: ModelSpec | None, degradation: Degradation,
                   channels: int = 1) -> str | None:
    """Why ``info`` (with ``model``, None for a method without one) cannot restore
    ``degradation`` of a ``channels``-channel image, or None: `why_not` for a method
    with a model, its operator check for one without."""
    if info.needs_prior:
        return why_not(info, model, degradation) if model is not None else \
            f"{info.name} needs a model"
    if not info.supports(degradation.operator(channels)):
        return f"{info.name} cannot restore {in_words(degradation)}"
    return None


def in_words(degradation: Degradation) -> str:
    """The operators of a degradation as the panel shows them: ``blur 1.5``, ``mask box:0.5``."""
    parts = [part.replace("=", " ") for part in degradation.spec().split(",")
             if not part.startswith(("noise=", "none"))]
    return " and ".join(parts) or "noise"


KIND_ORDER = ("solver", "sampler", "baseline")  # what `instead` suggests first


def instead(degradation: Degradation | None, model: ModelSpec | None = None, method: str = "",
            specs: dict[str, ModelSpec] | None = None, limit: int = 3,
            channels: int | None = None) -> list[str]:
    """Up to ``limit`` methods (``NAME@MODEL`` or ``NAME``) that can restore ``degradation``:
    ``method`` with another model first, then solvers and samplers, one model per method
    (its default first), and one model-free baseline last. ``specs``: the models to
    choose from (default: the catalog's models of ``model``'s shape, as the image will
    not change); ``channels``:
    the image's (default: the model's, else 1), for the methods without a model."""
    if degradation is None:
        return []
    if specs is None:
        from engine.priors.catalog import model_specs
        specs = {n: s for n, s in model_specs().items()
                 if model is None and s.is_image or model is not None and s.shape == model.shape}
    if channels is None:
        channels = model.shape[0] if model is not None else 1
    infos = sorted(methods().values(), key=lambda i: (i.name != method, KIND_ORDER.index(i.kind)
                                                      if i.kind in KIND_ORDER else len(KIND_ORDER)))
    with_model, without = [], []
    for info in infos:
        if not info.needs_prior:
            if info.name != method and cannot_restore(info, None, degradation, channels) is None:
                without.append(info.name)
            continue
        if len(with_model) >= limit:
            continue
        names = dict.fromkeys([n for n in (info.default_model, info.example_model) if n in specs]
                              + list(specs))
        usable = next((n for n in names if (info.name, n) != (method, getattr(model, "name", None))
                       and why_not(info, specs[n], degradation) is None), None)
        with_model += [f"{info.name}@{usable}"] if usable else []
    # one model-free baseline last when there is one: it always runs, in milliseconds
    return with_model[:limit - 1] + without[:1] if without else with_model[:limit]


def with_advice(reason: str, alternatives: list[str]) -> str:
    """``reason`` and what to do: its own fix ("…; lower noise to 0.05 or below") and/or
    the methods that would work ("pick dps@vp, pnp-drs@vp or pinv")."""
    if not alternatives:
        return reason
    pick = ", ".join(alternatives[:-1]) + (" or " if len(alternatives) > 1 else "") + alternatives[-1]
    has_fix = reason.rpartition("; ")[2].startswith(("lower ", "raise "))
    return f"{reason}{', or' if has_fix else ';'} pick {pick}"


def models_for(method: str, degradation: Degradation | str | None = None,
               specs: dict[str, ModelSpec] | None = None) -> list[str]:
    """Names of the models that can run ``method`` (on ``degradation``): the one question
    the CLI, the GUI's pickers and the conformance suite ask. Default and example first.
    ``specs``: the models to choose from (default: every model of the catalog)."""
    if specs is None:
        from engine.priors.catalog import model_specs
        specs = model_specs()
    info = get(method)
    if isinstance(degradation, str):
        degradation = degradation_type().parse(degradation)
    names = [name for name, spec in specs.items() if why_not(info, spec, degradation) is None]
    preferred = [n for n in (info.default_model, info.example_model) if n in names]
    return list(dict.fromkeys(preferred + names))


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
