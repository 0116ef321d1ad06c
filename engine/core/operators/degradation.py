"""The measurement model ``y = A x + σ_y ε``, its operators declared as data, and the
one function that measures.

Decisions recorded here:

* **Operators as data.** Every operator a degradation may contain is an `OperatorInfo`:
  a name (its key in a spec), a parameter dataclass declared with
  `engine.core.registry.param` (default, range, help, units) exactly as a method
  declares its parameters, a ``build(params, channels)`` returning the operator, and an
  explicit ``order``. The studio's state and degradation panel are generated from
  `degradation_rows`, so a new operator (motion blur, colour jitter, JPEG-like
  quantisation) is one operator class, one parameter dataclass and one
  `register_operator` call (in a module listed in `OPERATOR_MODULES`), and no GUI file.
* **Field names are global**: a parameter's field name is its keyword in `Degradation`
  (``Degradation(blur=2, mask="box", mask_level=0.3)``) and its field in the studio's
  state; registration refuses duplicates. The first field is the switch: an operator is
  off while its first field holds its default (blur 0, downsample 1, mask "", grayscale
  False); its other fields only matter while it is on.
* **Composition order is explicit**: ``A = A_k ∘ … ∘ A_1`` with the operators sorted by
  ``order``: blur (10) → downsample (20) → mask (30) → grayscale (40). The mask acts on
  the measured grid; grayscale commutes with the spatial operators. The formula line of
  the studio (`Compose.describe`) shows them in that order.
* A parameter's ``lo``/``hi`` are the range of its control, not a limit: the operator's
  own checks (blur σ ≥ 0, a mask level in [0, 1], …) decide what is valid, so the CLI
  accepts ``blur=8``. Impossible values are refused when the `Degradation` is made.
* ``options(shape)`` (optional) says which values a field may take on images of a
  given (C, H, W): the downsampling factors that divide the size, grayscale only for
  colour images. The GUI offers just these.
* Spec strings (CLI, recipes): ``name=v1:v2:…`` gives one operator's fields in order
  (the first ``written`` always, later ones only when not at their default), a bare
  ``name`` switches a bool operator on, ``noise=σ`` sets σ_y; for example
  ``blur=2,mask=random:0.7:3,grayscale,noise=0.05``.
* **One measurement path.** `measure_image` computes y for the job and for the studio's
  preview alike; `measurement_noise` is the one draw of ε (by the measurement seed). The
  preview keeps a `StageMemo` across slider moves: the same forwards, fewer of them.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from engine.core.tensor_cache import tensor_cache
from engine.core.operators.base import Compose, Identity, Operator
from engine.core.operators.blur import Blur
from engine.core.operators.masks import MASK_KINDS, Mask
from engine.core.operators.resample import Downsample, Grayscale
from engine.core.registry import describe_params, param
from engine.core.rng import measurement_noise as draw_measurement_noise
from engine.core.step import BadInputError

# Modules whose import registers more operators (the built-in ones are registered below).
OPERATOR_MODULES: tuple[str, ...] = ()
MAX_FACTOR = 16  # the largest downsampling factor a control offers


@dataclass(frozen=True)
class OperatorInfo:
    """One kind of operator in the measurement model (see the module docstring)."""

    name: str  # key in a spec, e.g. "blur"
    params: type  # frozen dataclass of `param` fields; the first one is the on/off switch
    build: Callable[[Any, int], Operator | None]  # (params, channels) → A; None = nothing to do
    order: float  # A = A_k ∘ … ∘ A_1, ascending order
    summary: str = ""
    written: int = 1  # leading fields a spec always writes
    options: Callable[[tuple[int, ...]], dict[str, list]] | None = None  # allowed values per shape

    @property
    def fields(self) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(self.params)

    def is_on(self, params) -> bool:
        first = self.fields[0]
        return getattr(params, first.name) != first.default


_OPERATORS: dict[str, OperatorInfo] = {}


def register_operator(info: OperatorInfo) -> OperatorInfo:
    taken = {"noise"} | {f.name for other in _OPERATORS.values() if other.name != info.name
                          for f in other.fields}
    clash = taken & {f.name for f in info.fields}
    if clash:
        raise ValueError(f"operator {info.name!r} reuses the field name(s) {sorted(clash)}")
    _OPERATORS[info.name] = info
    return info


def operator_infos() -> list[OperatorInfo]:
    """The registered operators in composition order (the order they act)."""
    for module in OPERATOR_MODULES:
        importlib.import_module(module)
    return sorted(_OPERATORS.values(), key=lambda info: info.order)


@dataclass(frozen=True)
class NoiseParams:
    noise: float = param(0.0, lo=0.0, hi=2.0, units="image units",
                         help="σ_y: standard deviation of the Gaussian measurement noise ε, "
                              "in image units ([0, 1])")

    def __post_init__(self):
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise BadInputError(f"noise σ_y must be ≥ 0, got {self.noise}")


def degradation_rows() -> list[dict]:
    """Every field of the measurement model as a `describe_params` row (noise first, then
    the operators in composition order), each with ``operator`` (its name; "" for noise)
    and ``switch`` (True for an operator's first field). The studio generates its
    degradation state and panel from these rows."""
    rows = [{**row, "operator": "", "switch": False} for row in describe_params(NoiseParams)]
    for info in operator_infos():
        rows += [{**row, "operator": info.name, "switch": k == 0}
                 for k, row in enumerate(describe_params(info.params))]
    return rows


def allowed_values(shape: tuple[int, ...]) -> dict[str, list]:
    """The values each restricted field may take on images of this (C, H, W), from the
    operators' ``options`` (e.g. the downsampling factors that divide H and W)."""
    out: dict[str, list] = {}
    for info in operator_infos():
        if info.options is not None:
            out.update(info.options(tuple(shape)))
    return out


def _coerce(f: dataclasses.Field, value):
    """Numbers of the field's type; an int field refuses a fraction (its check says why)."""
    kind = type(f.default)
    if kind is float and not isinstance(value, str):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Degradation:
    """The measurement model ``y = A x + σ_y ε``, with σ_y in the units of ``x``.

    Built from plain numbers (the GUI's controls, the CLI's SPEC): ``noise`` and the
    fields of the registered operators by name, e.g. ``Degradation(noise=0.05, blur=2)``.
    Immutable and comparable; `replace` makes a changed copy.
    """

    __slots__ = ("noise", "_params")

    def __init__(self, noise: float = 0.0, **fields):
        infos = operator_infos()
        known = {f.name for info in infos for f in info.fields}
        unknown = set(fields) - known
        if unknown:
            raise BadInputError(f"unknown degradation field(s) {sorted(unknown)}; "
                                f"known: noise, {', '.join(sorted(known))}")
        params = {}
        for info in infos:
            own = {f.name: _coerce(f, fields[f.name]) for f in info.fields if f.name in fields}
            params[info.name] = info.params(**own)
            if info.is_on(params[info.name]):
                info.build(params[info.name], 3)  # refuse impossible values when made, not when used
        object.__setattr__(self, "noise", NoiseParams(float(noise)).noise)
        object.__setattr__(self, "_params", params)

    # -- a frozen value ---------------------------------------------------------------
    def __getattr__(self, name: str):
        for params in object.__getattribute__(self, "_params").values():
            if name in params.__dataclass_fields__:
                return getattr(params, name)
        raise AttributeError(f"a Degradation has no field {name!r}")

    def __setattr__(self, name, value):
        raise AttributeError("a Degradation is immutable; use .replace(...)")

    def __eq__(self, other):
        return isinstance(other, Degradation) and self.as_dict() == other.as_dict()

    def __hash__(self):
        return hash(tuple(self.as_dict().items()))

    def __repr__(self):
        return f"Degradation({self.spec()})"

    def __reduce__(self):
        return _from_dict, (self.as_dict(),)

    def as_dict(self) -> dict:
        """``noise`` and every operator field, in composition order."""
        out = {"noise": self.noise}
        for params in self._params.values():
            out.update(dataclasses.asdict(params))
        return out

    def replace(self, **changes) -> "Degradation":
        return Degradation(**{**self.as_dict(), **changes})

    # -- the operator -------------------------------------------------------------------
    def active(self) -> list[tuple[OperatorInfo, Any]]:
        """(info, params) of the operators that are on, in the order they act."""
        return [(info, self._params[info.name]) for info in operator_infos()
                if info.name in self._params and info.is_on(self._params[info.name])]

    def operator(self, channels: int) -> Operator:
        ops = [op for info, params in self.active() if (op := info.build(params, channels)) is not None]
        if not ops:
            return Identity()
        return ops[0] if len(ops) == 1 else Compose(tuple(ops))

    def measure(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``A x + σ_y ε``; ``noise`` is ε (drawn by the caller's RNG) or None for ε = 0."""
        op = self.operator(x.shape[1])
        op.check_input(tuple(x.shape))
        y = op.forward(x)
        return y if noise is None or self.noise == 0 else y + self.noise * noise

    # -- spec strings -------------------------------------------------------------------
    def spec(self) -> str:
        """The CLI form, e.g. ``blur=2,noise=0.05``; `parse` reads it back."""
        parts = []
        for info, params in self.active():
            values = [getattr(params, f.name) for f in info.fields]
            if isinstance(values[0], bool) and len(values) == 1:
                parts.append(info.name)
                continue
            shown = max([info.written] + [k + 1 for k, f in enumerate(info.fields)
                                          if values[k] != f.default])
            parts.append(f"{info.name}=" + ":".join(_format(v) for v in values[:shown]))
        if self.noise > 0:
            parts.append(f"noise={self.noise:g}")
        return ",".join(parts) or "none"

    @staticmethod
    def parse(spec: str) -> "Degradation":
        """Read ``blur=2.0,noise=0.05``, ``downsample=4``, ``mask=box:0.5``, ``grayscale``."""
        infos = {info.name: info for info in operator_infos()}
        fields: dict = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            key, has_value, value = item.partition("=")
            try:
                if key == "none":
                    continue
                if key == "noise":
                    fields["noise"] = float(value)
                elif key in infos:
                    fields.update(_parse_values(infos[key], value if has_value else None))
                else:
                    raise BadInputError(f"unknown degradation {key!r} in {spec!r} "
                                        f"(noise, {', '.join(infos)})")
            except ValueError as err:
                if isinstance(err, BadInputError):
                    raise
                raise BadInputError(f"cannot read {item!r} in degradation {spec!r}: {err}") from None
        return Degradation(**fields)


def _from_dict(values: dict) -> Degradation:
    return Degradation(**values)


def _format(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def _parse_values(info: OperatorInfo, text: str | None) -> dict:
    """``name=v1:v2`` → the operator's first fields; a bare ``name`` switches a bool on."""
    fields = info.fields
    if text is None:
        if type(fields[0].default) is not bool:
            raise BadInputError(f"{info.name} needs a value, e.g. {info.name}=…")
        return {fields[0].name: True}
    values = text.split(":")
    if len(values) > len(fields):
        raise ValueError(f"{info.name} takes at most {len(fields)} values "
                         f"({', '.join(f.name for f in fields)})")
    if not values[0]:
        example = fields[0].metadata.get("choices") or ("…",)
        raise BadInputError(f"{info.name} needs its {fields[0].name.replace('_', ' ')} first, "
                            f"e.g. {info.name}={[c for c in example if c][0]}")
    out = {}
    for f, value in zip(fields, values):
        if value == "":
            continue
        kind = type(f.default)
        out[f.name] = (value.lower() in ("1", "true", "yes", "on")) if kind is bool else kind(value)
    return out


@tensor_cache(maxsize=4)
def measurement_noise(seed: int, shape: tuple[int, ...], scheme: str | None = None) -> torch.Tensor:
    """ε of ``y = A x + σ_y ε`` for one measurement of ``shape`` (C', H', W'), by the
    measurement seed in its own seed domain (`engine.core.rng.measurement_noise`, scheme
    None = current): the one place it is drawn. Cached, because the studio's preview
    measures again on every slider move; callers never modify it."""
    return draw_measurement_noise(int(seed), shape, scheme)


class StageMemo:
    """The outputs of a chain's leading operators on one image, kept from one measurement
    to the next (the studio's preview, at every slider move): moving σ_y recomputes no
    operator, moving the mask recomputes the mask but not the blur before it. Entries are
    keyed by the leading operators themselves (frozen dataclasses, equal by value), each
    computed by the same forward in the same order as without the memo, so y is the same
    bit for bit. Holds the image and the current chain's stages only; one thread per memo."""

    def __init__(self):
        self._x: torch.Tensor | None = None  # held: its memory is not reused meanwhile
        self._key: tuple | None = None
        self._stages: dict[tuple[Operator, ...], torch.Tensor] = {}

    @staticmethod
    def _image_key(x: torch.Tensor) -> tuple:
        """Equal for views of the same pixels (``working[None]`` at every call) until they
        change in place (the version counter; inference tensors keep none)."""
        return (x.data_ptr(), x.shape, x.stride(), x.dtype, x.device,
                None if x.is_inference() else x._version)

    def forward(self, op: Operator, x: torch.Tensor) -> torch.Tensor:
        key = self._image_key(x)
        if key != self._key:
            self._x, self._key, self._stages = x, key, {}
        ops = op.ops if isinstance(op, Compose) else (op,)
        stages, y = {}, x
        for k, a in enumerate(ops):
            key = ops[:k + 1]
            y = stages[key] = self._stages[key] if key in self._stages else a.forward(y)
        self._stages = stages
        return y


def measure_image(degradation: Degradation, x: torch.Tensor, seed: int,
                  scheme: str | None = None,
                  memo: StageMemo | None = None) -> tuple[Operator, torch.Tensor]:
    """``(A, y)`` with ``y = A x + σ_y ε`` for images ``x`` (1, C, H, W) in image units and ε
    drawn by the measurement seed (in noise ``scheme``, None = current). The job and the
    studio's preview both measure here, so the preview *is* the job's y; the preview
    passes a `StageMemo` so that a slider recomputes only the stages after its own."""
    op = degradation.operator(x.shape[1])
    op.check_input(tuple(x.shape))
    y = op.forward(x) if memo is None else memo.forward(op, x)
    if degradation.noise > 0:  # ε's shape is y's (no meta-tensor forward to find it)
        eps = measurement_noise(seed, tuple(y.shape[1:]), scheme)
        y = y + degradation.noise * eps.to(y.device, y.dtype)
    return op, y


# -- the built-in operators ------------------------------------------------------------------

@dataclass(frozen=True)
class BlurParams:
    blur: float = param(0.0, lo=0.0, hi=5.0, units="px",
                        help="σ of the Gaussian blur in pixels (0 = no blur)")

    def __post_init__(self):
        if not (math.isfinite(self.blur) and self.blur >= 0):
            raise BadInputError(f"blur σ must be ≥ 0, got {self.blur}")


@dataclass(frozen=True)
class DownsampleParams:
    downsample: int = param(1, lo=1, hi=MAX_FACTOR, units="×",
                            help="block-average downsampling factor (1 = off); only factors "
                                 "that divide the image size are offered")


@dataclass(frozen=True)
class MaskParams:
    mask: str = param("", choices=("",) + MASK_KINDS,
                      help="which pixels are hidden: box (a centred square), frame (all but a "
                           "centred window), random pixels, or the right half")
    mask_level: float = param(0.5, lo=0.0, hi=1.0,
                              help="box/frame: side as a fraction of the image; random: "
                                   "fraction of pixels dropped; half: fraction of the width")
    mask_seed: int = param(0, lo=0, hi=2**31 - 1, help="seed of the random mask pattern")


@dataclass(frozen=True)
class GrayscaleParams:
    grayscale: bool = param(False, help="measure the channel mean (colour images only)")


def _factors(shape: tuple[int, ...]) -> dict[str, list]:
    side = math.gcd(*shape[-2:])
    return {"downsample": [f for f in range(1, MAX_FACTOR + 1) if side % f == 0]}


register_operator(OperatorInfo(
    "blur", BlurParams, lambda p, channels: Blur(p.blur), order=10,
    summary="separable Gaussian blur, zero padding"))
register_operator(OperatorInfo(
    "downsample", DownsampleParams, lambda p, channels: Downsample(p.downsample), order=20,
    summary="r×r block averaging", options=_factors))
register_operator(OperatorInfo(
    "mask", MaskParams, lambda p, channels: Mask(p.mask, p.mask_level, p.mask_seed), order=30,
    summary="element-wise mask on the measured grid", written=2))
register_operator(OperatorInfo(
    "grayscale", GrayscaleParams, lambda p, channels: Grayscale(channels) if channels > 1 else None,
    order=40, summary="channel mean",
    options=lambda shape: {"grayscale": [False, True] if shape[0] > 1 else [False]}))
