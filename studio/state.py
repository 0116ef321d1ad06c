"""The studio's Qt-free state: what the user has chosen, as evented dataclasses.

The window is a thin view of a `StudioState` (DESIGN §6, the napari pattern): widgets
write fields, and every field change is a psygnal signal the views listen to. Nothing
here imports Qt, so the model is tested headless and serialises to the engine's
recipe (the dict `engine.core.jobs.Job.recipe` returns and `engine.io.export` embeds in PNGs).

Decisions:

* Three groups, one per panel: `SourceState` (the loaded image and where it came from),
  `DegradationState` (σ_y, the operators' fields of `engine.core.operators.Degradation`
  as one dict, and the measurement seed) and `MethodState` (method, model, parameter
  values, seed, n). Child events bubble up, so ``state.events.all`` fires on any
  change; views connect to the fields they show (``state.method.events.model``), so
  a change reaches only the views it concerns.
* The operators are the engine's, declared as data: the degradation state holds their
  fields in one dict (defaults filled from the registry), so a newly registered
  operator needs no field here, and the panel generates its controls from the same rows.
* The latent slider is two `MethodState` fields, ``latent_seed`` and ``latent_mix``;
  a request carries the second latent only while the mix is above 0, so a mix of 0
  gives exactly the run without the slider.
* ``MethodState.params`` holds only values the user set; the method's defaults fill the
  rest (``make_params``). Changing the method drops values the new one does not take.
  Assign a new dict to change it (`set_param`), never mutate it in place: psygnal
  compares old and new values to decide whether to emit.
* The image is kept as loaded (``SourceState.image``, (C, H, W) in [0, 1]); the
  conversion a model needs is done when a request is built (`working_image`), so the
  note saying what was converted is computed in one place.
* Recipes are written in one place, `engine.core.jobs.Request.recipe` (method, model,
  params, seed, n, measurement_seed, degradation spec, source, device, latent seed and
  mix, and the measurement-noise scheme): `to_recipe` is the recipe of a request for the current settings (`Job.recipe`
  adds the resolved parameters and versions); `apply_recipe` reads them back. A job's recipe from
  before the scheme was recorded is reproduced with the legacy scheme "v1"
  (`engine.core.rng.recipe_measurement_noise`); the scheme then stays with the
  settings until another recipe is opened. Keys it does not know (versions, rng_device, dtype) are ignored. The
  source is restored by `load_source` when it names a demo image or a file that
  exists; otherwise the current image stays and the caller is told.
* A recipe is validated whole before anything changes (`recipe_settings`): the
  method, its model (available here and able to run it), its parameters (the engine's
  `make_params`), seeds, n (up to `MAX_SAMPLES`), latent mix, device, degradation and
  measurement-noise scheme; a bad value raises `BadInputError` naming it, and the
  state stays as it was. The source image is read before the first field is set.
* Engine imports are local to functions: importing this module must not import torch
  (the window appears before torch is loaded).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from psygnal import SignalGroupDescriptor

DEMO_PREFIX = "demo:"
SAMPLE_PREFIX = "sample:"
MAX_SAMPLES = 64  # samples per run the studio offers (the n box; recipes are held to it)


@dataclass
class SourceState:
    name: str = ""  # recipe "source": "demo:K", a file path, or "sample:METHOD@MODEL:seed=S"
    image: Any = None  # torch.Tensor (C, H, W) in [0, 1], as loaded (never converted)

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor(
        equality_operators={"image": operator.is_})


@dataclass
class DegradationState:
    """The Degradation panel's values: σ_y, the operators' fields and the measurement seed.

    ``operators`` holds the operator fields the user set, by their `Degradation` keyword
    (``{"blur": 2.0, "mask": "box"}``); the registry's defaults fill the rest. Read and
    write one as an attribute (``state.blur = 2``): that assigns a new ``operators`` dict,
    so its ``events.operators`` signal carries the old and new values and a view updates
    only the fields that changed. The set of operators is the engine's
    (`engine.core.operators.degradation_rows`), so a new operator needs no field here.
    """

    noise: float = 0.05
    operators: dict = field(default_factory=dict)
    measurement_seed: int = 0
    measurement_noise: str | None = None  # its scheme (engine.core.rng); None = current

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor()

    def __getattr__(self, name: str):  # only called for names that are not attributes
        if name.startswith("_"):
            raise AttributeError(name)
        return self.value(name)

    def __setattr__(self, name: str, value) -> None:
        if name in ("noise", "operators", "measurement_seed", "measurement_noise") or name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.set_value(name, value)

    def value(self, name: str):
        """An operator field's value (its default until set)."""
        defaults = operator_defaults()
        if name not in defaults:
            raise AttributeError(f"the degradation has no field {name!r}")
        return self.operators.get(name, defaults[name])

    def set_value(self, name: str, value) -> None:
        self.value(name)  # refuses an unknown name
        self.operators = {**self.operators, name: value}

    def degradation(self):
        """The engine `Degradation` (raises `BadInputError` for impossible values)."""
        from engine.core.operators import Degradation

        return Degradation(noise=float(self.noise), **self.operators)

    def spec(self) -> str:
        return self.degradation().spec()

    def set_degradation(self, degradation) -> None:
        """Take every value of an engine `Degradation`."""
        values = degradation.as_dict()
        self.noise = values.pop("noise")
        self.operators = values

    def set_spec(self, spec: str | None) -> None:
        """Set every field from a CLI/recipe spec such as ``blur=2,noise=0.05``."""
        from engine.core.operators import Degradation

        self.set_degradation(Degradation.parse(spec or "none"))


def operator_defaults() -> dict:
    """Every operator field of the measurement model with its default (imports the engine)."""
    from engine.core.operators import degradation_rows

    return {row["name"]: row["default"] for row in degradation_rows() if row["operator"]}


@dataclass
class MethodState:
    method: str = ""  # registry name, e.g. "ddim"
    model: str | None = None  # prior name; None for methods without a prior
    params: dict = field(default_factory=dict)  # values the user set (others: defaults)
    seed: int = 0  # sample k uses seed + k
    n: int = 8  # number of samples
    device: str = "cpu"
    latent_seed: int = 1  # the second latent of the latent slider (engine.core.rng)
    latent_mix: float = 0.0  # 0 = each sample's own z, 1 = the z of latent_seed + k

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor()

    @property
    def spec(self) -> str:
        return f"{self.method}@{self.model}" if self.model else self.method

    def set_param(self, name: str, value) -> None:
        self.params = {**self.params, name: value}


@dataclass
class StudioState:
    source: SourceState = field(default_factory=SourceState)
    degradation: DegradationState = field(default_factory=DegradationState)
    method: MethodState = field(default_factory=MethodState)

    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor()

    # -- recipes ----------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        """The settings as a recipe, written by the engine (`engine.core.jobs.Request.recipe`)."""
        from engine.core.jobs import Request

        m = self.method
        return Request(method=m.spec, degradation=self.degradation.degradation(),
                       params=dict(m.params), seed=m.seed, n=m.n,
                       measurement_seed=self.degradation.measurement_seed,
                       measurement_noise=self.degradation.measurement_noise,
                       latent_seed=m.latent_seed, latent_mix=m.latent_mix, device=m.device,
                       source=self.source.name).recipe()

    def apply_recipe(self, recipe: dict[str, Any]) -> bool:
        """Restore the settings of a recipe; True if its source image was restored too.

        Everything is checked before anything changes (`recipe_settings`, with the
        engine's own validation), the source image is read, and only then the settings
        are set: a malformed recipe raises `BadInputError` and leaves the state as it was.
        """
        settings = recipe_settings(recipe)
        image = load_source(settings["source"])
        d, m = self.degradation, self.method
        d.set_degradation(settings["degradation"])
        d.measurement_seed, d.measurement_noise = settings["measurement_seed"], settings["measurement_noise"]
        m.method, m.model = settings["method"], settings["model"]
        m.params, m.seed, m.n = settings["params"], settings["seed"], settings["n"]
        m.device = settings["device"]
        m.latent_seed, m.latent_mix = settings["latent_seed"], settings["latent_mix"]
        if image is not None:
            self.set_source(image, settings["source"])
        return image is not None

    # -- building requests ------------------------------------------------------------
    def set_source(self, image, name: str) -> None:
        self.source.image, self.source.name = image, name

    def request(self, shape_of=None, n: int | None = None, **changes):
        """The engine `Request` for the current settings, optionally with some changed.

        ``changes`` may set ``method`` (a ``NAME[@MODEL]`` spec; its own parameters then
        start from their defaults), ``nfe``, ``noise`` or ``seed``. ``shape_of(model,
        image_shape)`` gives the (C, H, W) a model needs for the source image (its own
        size for a fully-convolutional model); the source image is converted to it.
        """
        from engine.core import registry
        from engine.core.jobs import Request

        m = self.method
        spec = changes.get("method", m.spec)
        name, model = registry.split_spec(spec)
        info = registry.get(name)
        model = model if info.needs_prior else None
        params = dict(m.params) if spec == m.spec else {}
        if "nfe" in changes:
            params["nfe"] = changes["nfe"]
        degradation = self.degradation.degradation()
        if "noise" in changes:
            degradation = degradation.replace(noise=float(changes["noise"]))
        image_shape = tuple(self.source.image.shape)
        shape = shape_of(model, image_shape) if shape_of is not None and model else None
        image, _ = working_image(self.source.image, shape)
        return Request(method=f"{name}@{model}" if model else name, image=image,
                       degradation=degradation, params=params, seed=int(changes.get("seed", m.seed)),
                       n=m.n if n is None else n, measurement_seed=self.degradation.measurement_seed,
                       measurement_noise=self.degradation.measurement_noise,
                       device=m.device, source=self.source.name,
                       latent_seed=m.latent_seed if m.latent_mix > 0 else None,
                       latent_mix=m.latent_mix)


def _integer(recipe: dict, key: str, default: int, lo: int, hi: int) -> int:
    """An integer setting of a recipe (JSON may write 3 as 3.0) within [lo, hi]."""
    value = recipe.get(key, default)
    if value is None:
        value = default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRecipe(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


class BadRecipe(ValueError):
    """A recipe value out of range or of the wrong type (becomes a `BadInputError`)."""


def recipe_settings(recipe: Any) -> dict[str, Any]:
    """Every setting of a recipe, checked as the engine checks a request (method, model,
    parameters, seeds, n, device, degradation); raises `BadInputError`, changes nothing."""
    from engine.core import registry
    from engine.core.jobs import SEED_MAX, check_device
    from engine.core.operators import Degradation
    from engine.core.rng import recipe_measurement_noise
    from engine.core.step import BadInputError

    if not isinstance(recipe, dict):
        raise BadInputError("a recipe is a JSON object with method, params, seed, …")
    try:
        info = registry.get(str(recipe["method"]))
        model = info.default_model if recipe.get("model") is None else recipe["model"]
        model = _checked_model(info, model) if info.needs_prior else None
        params = recipe.get("params") or {}
        if not isinstance(params, dict):
            raise BadRecipe(f"params must be an object, got {params!r}")
        typed = registry.make_params(info.params, params)
        latent_mix = recipe.get("latent_mix") or 0.0
        if isinstance(latent_mix, bool) or not isinstance(latent_mix, (int, float)) \
                or not 0.0 <= latent_mix <= 1.0:
            raise BadRecipe(f"latent_mix must be a number in [0, 1], got {latent_mix!r}")
        degradation, device, source = (recipe.get(key) for key in ("degradation", "device", "source"))
        for key, value in (("degradation", degradation), ("device", device), ("source", source)):
            if value is not None and not isinstance(value, str):
                raise BadRecipe(f"{key} must be a string, got {type(value).__name__}")
        check_device(device or "cpu")
        return {"method": info.name, "model": model,
                "params": {name: getattr(typed, name) for name in params},
                "seed": _integer(recipe, "seed", 0, 0, SEED_MAX),
                "n": _integer(recipe, "n", 1, 1, MAX_SAMPLES),
                "measurement_seed": _integer(recipe, "measurement_seed", 0, 0, SEED_MAX),
                "measurement_noise": recipe_measurement_noise(recipe),
                "latent_seed": _integer(recipe, "latent_seed", 1, 0, SEED_MAX),
                "latent_mix": float(latent_mix),
                "degradation": Degradation.parse(degradation or "none"),
                "device": device or "cpu", "source": source or ""}
    except BadInputError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as err:
        reason = f"no {err}" if isinstance(err, KeyError) else str(err)
        raise BadInputError(f"the recipe is incomplete or malformed ({reason})") from None


def _checked_model(info, model) -> str:
    """The recipe's model when it exists here and can run the method."""
    from engine.core import registry
    from engine.core.step import BadInputError
    from engine.priors.catalog import model_specs

    specs = model_specs()
    if not isinstance(model, str) or model not in specs:
        raise BadInputError(f"the recipe's model {model!r} is not available here "
                            f"(models: {', '.join(sorted(specs))})")
    reason = registry.why_not(info, specs[model])
    if reason:
        raise BadInputError(reason)
    return model


def load_source(name: str):
    """The image a recipe's source names: ``demo:K`` or an existing file; else None."""
    if name.startswith(DEMO_PREFIX):
        from engine.io.data import demo_images

        images, _ = demo_images()
        try:
            index = int(name[len(DEMO_PREFIX):])
        except ValueError:
            return None
        return images[index] if 0 <= index < len(images) else None
    if name and not name.startswith(SAMPLE_PREFIX) and _is_file(name):
        from engine.io.imageio import load_image

        return load_image(name)
    return None


def _is_file(name: str) -> bool:
    """An existing file (a name too long for the file system, or with a NUL, is none)."""
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False


def working_image(image, shape: tuple[int, ...] | None):
    """``(image, note)``: the image converted to a model's (C, H, W), or as is for None.

    The last conversion is remembered (for the same image object and shape): the studio
    converts a large photo off the GUI thread once, and a Run then reuses it."""
    if shape is None or tuple(image.shape) == tuple(shape):
        return image, ""
    last = _last_conversion[0]
    if last is not None and last[0] is image and last[1] == tuple(shape):
        return last[2]
    from engine.io.imageio import conform

    converted, note = conform(image, tuple(shape))
    _last_conversion[0] = (image, tuple(shape), (converted, note or ""))
    return converted, note or ""


_last_conversion: list = [None]  # (image, shape, (converted, note)) of the last conversion
