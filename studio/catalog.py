"""What the engine offers, gathered once for the pickers: methods, models, demo images.

Qt-free; built after the window is visible (it imports torch). Decisions:

* Models are described by their `engine.core.capabilities.ModelSpec` (kind,
  capabilities, shape, schedule, task), read from ``config.json`` for learned models (no
  weights are read on the GUI thread) and from the factory for exact priors.
* Image models are those whose samples are images (H, W > 1); the 2-D toys (shape
  (2, 1, 1)) belong to the Playground, not to the restoration pickers.
* Which models can run a method is the engine's one rule (`engine.core.registry.why_not`,
  `models_for`); this module only asks it. A task-bound model's degradation is its
  spec's ``task``; `why_not` gives the message when the current degradation differs.
* Model directories the engine cannot use (an unknown kind) are kept in `problems`
  with the reason, for the GUI to say so, instead of vanishing from the pickers.
* Whether a method (with a model) can restore the current degradation is the same rule
  (`engine.core.registry.cannot_restore`, which asks the sampler whether the noise and
  blur levels lie on the model's path); the answers are cached per (method, model,
  degradation, channels), as the pickers ask them on every slider move
  (`problem`). `advice` adds what to do: the method's own fix ("lower noise to 0.05 or
  below") and up to three methods that would work, among the models of the same shape.
* The default choice (`DEFAULTS`, the first whose parts exist) is the shipped VP model
  with Plug-and-Play Douglas–Rachford (``pnp-drs@vp``) at one setting for every
  degradation (`DEFAULT_PNP`): M = 40, α = 0.5, denoiser σ = 0.4, λ per noise (κ = 0.1:
  the data term weighed by 0.1/σ_y²) and the Tikhonov start (`engine.solvers.pnp_drs`),
  so every slider position restores — DDIM, the default before, restores noise only on
  the vp model. Chosen on 32 Fashion-MNIST test images over 15 degradations, the
  evaluation tasks and what the sliders make of the default noise 0.2
  (``docs/results/default/measure.py``, README "Why this default"): it beats Tikhonov on
  14 of them (not ×4 downsampling at noise 0.2: 11.4 against 12.7 dB), while each
  per-task setting of the README's tuned table collapses on blur at noise 0.2 (3.8–3.9
  dB); κ = 0.03 denoises 2 dB better but falls below Tikhonov on ×2 and ×4 at noise 0.2
  and is 7 dB below κ = 0.1 at noise 0.5. Its samples differ only by the noise each iteration re-injects: the gallery shows
  a smaller spread (diversity 0.043 against DDIM's 0.100 at noise 0.2, 8 images × 4
  samples), and not posterior uncertainty (README).
  Without shipped weights it falls back to the exact empirical prior at σ_y = 1 (it
  memorises its 64 images, so milder noise gives back the exact image every time),
  then to the Tikhonov baseline.
"""

from __future__ import annotations

CACHE_LIMIT = 256  # degradations whose answers `Catalog.problem` keeps (a drag adds one per value)

# (method, model, degradation spec, params): the first whose parts exist wins.
DEFAULT_PNP = {"iterations": 40, "lam": 0.1, "alpha": 0.5, "sigma": 0.4, "per_noise": True,
               "start": "prox"}  # one setting for every degradation (module doc)
DEFAULTS = (("pnp-drs", "vp", "noise=0.2", DEFAULT_PNP),
            ("ddim", "empirical-vp", "noise=1", {"nfe": 25, "k": 1.0}),
            ("tikhonov", None, "blur=1.5,noise=0.05", {}),
            ("pinv", None, "downsample=2,noise=0.02", {}))


class Catalog:
    """Methods (`engine.core.registry.MethodInfo` by name), models and the demo set."""

    def __init__(self):
        from engine.core import registry
        from engine.io.data import CLASS_NAMES, demo_images
        from engine.priors.catalog import model_specs, problems

        self.methods = registry.methods()
        self.models = model_specs()  # name → engine.core.capabilities.ModelSpec
        self.problems = problems()  # name → why the engine cannot use it
        self.demo_images, labels = demo_images()
        self.demo_labels = [CLASS_NAMES[int(k)] for k in labels]
        self._problems: dict[tuple, dict] = {}  # (degradation, channels) → {(method, model): reason}
        self._advice: dict[tuple, str | None] = {}

    def params(self, method: str) -> list[dict]:
        from engine.core.registry import describe_params

        return describe_params(self.methods[method].params)

    def why_not(self, method: str, model: str, degradation=None) -> str | None:
        """Why ``model`` cannot run ``method`` (on a `Degradation`), or None (the engine's rule)."""
        from engine.core.registry import why_not

        return why_not(self.methods[method], self.models[model], degradation)

    def fits(self, method: str, model: str, degradation=None) -> bool:
        return self.methods[method].needs_prior and self.why_not(method, model, degradation) is None

    def image_models_for(self, method: str, degradation=None) -> list[str]:
        """Image models that can run the method, its default and example models first."""
        from engine.core.registry import models_for

        if not self.methods[method].needs_prior:
            return []
        images = {n: m for n, m in self.models.items() if m.is_image}
        return models_for(method, degradation, specs=images)

    def verdicts(self, degradation, channels: int = 1):
        """`problem` for one degradation: a function ``(method, model) → reason or None``
        whose answers are cached (the degradation is hashed once, not per question)."""
        from engine.core.registry import cannot_restore

        key = (degradation, channels)
        table = self._problems.get(key)
        if table is None:
            if len(self._problems) >= CACHE_LIMIT:
                self._problems.clear()
            table = self._problems[key] = {}

        def problem(method: str, model: str | None) -> str | None:
            if (method, model) not in table:
                info = self.methods[method]
                table[(method, model)] = cannot_restore(
                    info, self.models.get(model) if info.needs_prior else None, degradation, channels)
            return table[(method, model)]
        return problem

    def problem(self, method: str, model: str | None, degradation, channels: int = 1) -> str | None:
        """Why ``method`` (with ``model``) cannot restore ``degradation`` of a
        ``channels``-channel image, or None (cached; see the module doc)."""
        return self.verdicts(degradation, channels)(method, model)

    def advice(self, method: str, model: str | None, degradation, channels: int = 1) -> str | None:
        """`problem` with what to do instead (its fix and up to three methods that work)."""
        from engine.core.registry import instead, with_advice

        key = (method, model, degradation, channels)
        reason = self.problem(*key)
        if reason is None or key in self._advice:
            return reason and self._advice[key]
        if len(self._advice) >= CACHE_LIMIT:
            self._advice.clear()
        spec = self.models.get(model) if self.methods[method].needs_prior else None
        shape = spec.shape if spec is not None else None
        specs = {n: m for n, m in self.models.items()
                 if m.is_image and (m.shape == shape if shape else m.shape[0] == channels)}
        self._advice[key] = with_advice(reason, instead(degradation, spec, method, specs,
                                                        channels=channels))
        return self._advice[key]

    def task_of(self, model: str | None) -> str | None:
        """The degradation a task-bound model was trained for (None for other models)."""
        return self.models[model].task if model in self.models else None

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

    def fitted_shape(self, model: str | None, shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The (C, H, W) an image of ``shape`` is converted to for ``model`` (None: kept):
        the model's own shape, or for a fully-convolutional one (``photo``) the image's
        H×W with the model's channels, so a photo keeps its size."""
        return self.models[model].fitted_shape(shape) if model in self.models else None
