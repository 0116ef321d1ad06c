"""Jobs: the one entry point that runs any method for a request.

``Job(request)`` resolves the method and prior, loads and degrades the image, and
converts between image units ([0, 1]) and the prior's data range at the edges. Then
either iterate ``job.steps()`` (the GUI worker does, so closing the generator cancels
within one step) and read ``job.result``, or call ``job.run()``.

A `Result` holds the samples in [0, 1], the measurement, metrics against the clean
image when it is known, NFE per sample, wall seconds per image, a bounded trajectory
of 8-bit thumbnails and the full recipe (everything needed to re-run it exactly).
``job.finish()`` after an early stop keeps the current x̂0 ("Stop and keep x̂0").

Decisions:

* Models come from the cache (`engine.priors.catalog.load_model`), so a job on a loaded
  model starts in milliseconds; the model object is shared between jobs, so a job
  counts *deltas* of its counters (see the catalog's threading assumption).
* The job is the one place that counts cost: `Job.nfe` (forward network evaluations)
  and `Job.vjp` (vector–Jacobian products, for methods that differentiate through the
  network) are the model's counters minus their values when the method started. The
  metrics, the CLI, the GUI's frames and the conformance suite read them from here;
  ``MethodInfo.nfe`` only predicts the count.
* The method's generator is advanced without autograd: under ``torch.inference_mode()``
  when the method takes no gradients (measured faster than ``no_grad``: the comparison
  with diffusers in `engine.evaluation.reference`), under ``torch.no_grad()`` when it
  enables them locally (`engine.core.registry`). Shared caches of tensors are built
  outside inference mode (`engine.core.tensor_cache`) so both kinds of job can read them.
* One path for each thing the studio shows too: y is measured by
  `engine.core.operators.measure_image` (the studio's preview calls it as well); each
  step's thumbnails are made once, in `Job._record` (the GUI's frames reuse
  `Job.latest_frame`); the recipe's keys are written by `Request.recipe` (the studio saves
  its settings with it), to which `Job.recipe` adds the resolved parameters and versions.
* Checked before anything runs, each in one line (`check_request`, `engine.core.budget`):
  n, the seeds (0 … `SEED_MAX`), the device (cpu, or cuda where there is one), a model
  named for a method that takes none, an image given to a prior over 2-D points, and
  the job's estimated peak memory against the limit.
"""

from __future__ import annotations

import platform
import time
from numbers import Integral
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

import engine
from engine.evaluation import metrics
from engine.core import budget, registry
from engine.core.capabilities import fitted_shape, spec_of
from engine.core.operators import Degradation, measure_image
from engine.priors.catalog import load_model
from engine.core.rng import MEASUREMENT_NOISE, SampleRNG
from engine.core.step import BadInputError, Step, check_finite, scalar_extras

TRAJECTORY_FRAMES = budget.TRAJECTORY_FRAMES  # bounded ring of thumbnails (DESIGN §3)
SEED_MAX = 2**31 - 1  # the studio's seed boxes hold 32-bit ints; a CLI recipe reopens there
DEVICES = ("cpu", "cuda")


@dataclass
class Request:
    method: str  # "name" or "name@model"
    image: torch.Tensor | None = None  # (C, H, W) in [0, 1]; None = unconditional
    degradation: Degradation | None = None  # None with an image = noise-free identity
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0  # sample k uses seed + k
    n: int = 1
    measurement_seed: int = 0  # seed of the measurement noise ε in y
    measurement_noise: str | None = None  # its scheme (engine.core.rng); None = current
    latent_seed: int | None = None  # second latent for the latent slider (engine.core.rng)
    latent_mix: float = 0.0  # 0 = own latent, 1 = latent of latent_seed + k
    device: str = "cpu"
    source: str = ""  # where the image came from (recipe only)

    def recipe(self) -> dict[str, Any]:
        """The settings as a recipe: the one place its keys are written (`Job.recipe`
        adds the resolved parameters and versions; the studio saves its settings so)."""
        method, _, model = self.method.partition("@")
        return {"method": method, "model": model or None, "params": dict(self.params),
                "seed": self.seed, "n": self.n, "measurement_seed": self.measurement_seed,
                "measurement_noise": self.measurement_noise or MEASUREMENT_NOISE,
                "latent_seed": self.latent_seed, "latent_mix": self.latent_mix,
                "degradation": self.degradation.spec() if self.degradation else None,
                "source": self.source, "device": self.device}


@dataclass
class Result:
    samples: torch.Tensor  # (n, C, H, W) in [0, 1]
    metrics: dict[str, Any]
    recipe: dict[str, Any]
    clean: torch.Tensor | None = None  # (C, H, W) in [0, 1]
    measurement: torch.Tensor | None = None  # y in image units, (C', H', W')
    trajectory: list[tuple[float, np.ndarray, np.ndarray]] = field(default_factory=list)
    stopped: bool = False  # True when finished early with the current x̂0
    # Step extras as numbers per step, {key: [(step index, value), ...]} (engine.core.step)
    extras: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def mean(self) -> torch.Tensor:
        return self.samples.mean(0)


def to_thumbnail(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] → (H, W, C) uint8."""
    return (x.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def grad_mode(info):
    """The context a method is advanced in: inference mode when it takes no gradients
    (no autograd bookkeeping at all: the network pass is several % faster than under
    ``no_grad``), ``no_grad`` when it enables them locally (`engine.core.registry`)."""
    return torch.no_grad() if info.needs_grad else torch.inference_mode()


class Job:
    def __init__(self, request: Request):
        self.request = request
        check_request(request)
        name, model = registry.split_spec(request.method)
        self.info = registry.get(name)
        if not self.info.needs_prior and model is not None:
            raise BadInputError(f"{name} takes no model; drop @{model}")
        self.model = model if self.info.needs_prior else None
        self.params = registry.make_params(self.info.params, request.params)
        self.prior = load_model(model, request.device) if self.model else None
        self.lo, self.hi = self.prior.data_range if self.prior else (0.0, 1.0)
        self.clean = None if request.image is None else request.image.float().cpu()
        if self.prior is not None and self.clean is not None and not spec_of(self.prior).is_image:
            raise BadInputError(f"{model} is a prior over 2-D points, not images; "
                                "it cannot restore an image")
        if self.prior is not None and self.clean is not None and \
                tuple(self.clean.shape) != fitted_shape(self.prior, self.clean.shape):
            raise BadInputError(f"the image is {tuple(self.clean.shape)} but {model} works on "
                                f"{fitted_shape(self.prior, self.clean.shape)} (C, H, W); "
                                "convert it first")
        shape = self.clean.shape if self.clean is not None else getattr(self.prior, "shape", None)
        if shape is not None:  # (else `info.check` below refuses: nothing to restore or sample)
            budget.check(self.info, self.params, tuple(shape), request.n,
                         getattr(self.prior, "max_tile_pixels", None))
        self.degradation = request.degradation or (Degradation() if self.clean is not None else None)
        self.y_image, self.measurement = self._measure()
        self.info.check(self.prior, self.measurement, self.degradation)
        self.result: Result | None = None
        self._x0_hat: torch.Tensor | None = None
        self._trajectory: list = []
        self._extras: dict[str, list[tuple[int, float]]] = {}
        self._seconds = 0.0
        self._counts_start = (0, 0)

    # -- units ----------------------------------------------------------------------
    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * x

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo) / (self.hi - self.lo)

    def _measure(self):
        """y in image units (for display) and the `Measurement` in model units (for the method)."""
        if self.clean is None:
            return None, None
        x = self.clean[None]
        op, y_unit = measure_image(self.degradation, x, self.request.measurement_seed,
                                   self.request.measurement_noise)
        # y in model units: A(lo + s·x) + s·σ ε = lo·A(1) + s·y  (A linear)
        scale = self.hi - self.lo
        y_model = self.lo * op.forward(torch.ones_like(x)) + scale * y_unit
        device = self.request.device
        batch = y_model.to(device).expand(self.request.n, *y_model.shape[1:]).contiguous()
        measurement = registry.Measurement(batch, op, self.degradation.noise * scale, tuple(x.shape[1:]))
        return y_unit[0], measurement

    # -- cost: the one place NFE and VJPs are counted ------------------------------------
    def _counts(self) -> tuple[int, int]:
        if self.prior is None:
            return 0, 0
        return self.prior.nfe, getattr(self.prior, "vjp", 0)

    @property
    def nfe(self) -> int:
        """Forward network evaluations (per sample: one per batched call) since the start."""
        return self._counts()[0] - self._counts_start[0]

    @property
    def vjp(self) -> int:
        """Vector–Jacobian products through the network since the start."""
        return self._counts()[1] - self._counts_start[1]

    def _record_extras(self, step: Step) -> None:
        for key, value in scalar_extras(step.extras).items():
            self._extras.setdefault(key, []).append((step.index, value))

    # -- running ----------------------------------------------------------------------
    def steps(self) -> Iterator[Step]:
        """Yield the method's Steps (batch = all samples); sets ``self.result`` at the end."""
        req = self.request
        rng = SampleRNG(req.seed, req.n, device=req.device, latent_seed=req.latent_seed,
                        latent_mix=req.latent_mix)
        self._counts_start = self._counts()
        self._seconds = 0.0
        steps = self.info.run(self.prior, self.measurement, self.params, rng)
        try:
            while True:
                started = time.perf_counter()  # time the method, not the consumer
                with grad_mode(self.info):
                    step = next(steps, None)
                if step is None:
                    break
                check_finite(step.x0_hat, self.info.name)
                self._x0_hat = step.x0_hat
                self._record(step)
                self._record_extras(step)
                self._seconds += time.perf_counter() - started
                yield step
        finally:
            steps.close()  # a closed job stops its method within one step
        self.finish(stopped=False)

    def thumbnail(self, x: torch.Tensor) -> np.ndarray:
        """One image (C, H, W) in model units as an 8-bit (H, W, C) thumbnail."""
        return to_thumbnail(self.to_unit(x).float().cpu())

    def _record(self, step: Step) -> None:
        """Add sample 0 of a step to the trajectory; `latest_frame` is what the GUI shows."""
        if len(self._trajectory) >= TRAJECTORY_FRAMES:
            self._trajectory = self._trajectory[::2]  # keep the whole path, half as dense
        self._trajectory.append((step.t, self.thumbnail(step.x_t[0]), self.thumbnail(step.x0_hat[0])))

    @property
    def latest_frame(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(t, x_t, x̂0) thumbnails of sample 0 at the latest step (made once, in `_record`)."""
        return self._trajectory[-1]

    def run(self, progress: Callable[[Step], None] | None = None) -> Result:
        for step in self.steps():
            if progress is not None:
                progress(step)
        return self.result

    def finish(self, stopped: bool = True) -> Result:
        """Build the Result from the latest x̂0 (after a full run or an early stop)."""
        if self._x0_hat is None:
            raise BadInputError("the job was stopped before its first step; nothing to keep")
        samples = self.to_unit(self._x0_hat.float().cpu()).clamp(0, 1)
        values = {"nfe": self.nfe, "vjp": self.vjp, "seconds": self._seconds, "n": self.request.n}
        values.update(metrics.sample_metrics(samples, self.clean))
        self.result = Result(samples=samples, metrics=values, recipe=self.recipe(),
                             clean=self.clean, measurement=self.y_image,
                             trajectory=list(self._trajectory), stopped=stopped,
                             extras={k: list(v) for k, v in self._extras.items()})
        return self.result

    def recipe(self) -> dict[str, Any]:
        """The request's recipe with the method's resolved parameters and the versions."""
        return {**self.request.recipe(), "method": self.info.name, "model": self.model,
                "params": {k: getattr(self.params, k) for k in vars(self.params)},
                "degradation": self.degradation.spec() if self.degradation else None,
                "rng_device": "cpu", "dtype": "float32",
                "versions": {"engine": engine.__version__, "torch": torch.__version__,
                             "numpy": np.__version__, "python": platform.python_version()}}


def check_device(device: str) -> None:
    """Refuse a device this machine cannot run on, in one line (before any torch call)."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError, ValueError):
        kind = None
    if kind not in DEVICES:
        raise BadInputError(f"unknown device {device!r}; use {' or '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r}: no CUDA device is available here; use cpu")
    index = torch.device(device).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise BadInputError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices")


def check_request(request: Request) -> None:
    """The request's own numbers and device, checked before anything is loaded."""
    if isinstance(request.n, bool) or not isinstance(request.n, Integral) or request.n < 1:
        raise BadInputError(f"number of samples must be an integer ≥ 1, got {request.n!r}")
    seeds = {"seed": request.seed, "measurement seed": request.measurement_seed}
    if request.latent_seed is not None:
        seeds["latent seed"] = request.latent_seed
    for what, seed in seeds.items():
        if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed <= SEED_MAX:
            raise BadInputError(f"{what} must be an integer in [0, {SEED_MAX}], got {seed!r}")
    if not 0.0 <= request.latent_mix <= 1.0:
        raise BadInputError(f"latent mix must lie in [0, 1], got {request.latent_mix}")
    check_device(request.device)


def run_job(request: Request, progress: Callable[[Step], None] | None = None) -> Result:
    return Job(request).run(progress)
