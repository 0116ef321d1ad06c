"""What the engine thread runs: Qt-free generators of events, one per kind of task.

Each task is a generator ``task(ticket, ...)`` that the worker (`studio.worker`) runs
on the engine thread. It yields after every engine step, so an abort is honoured within
one step, and returns what the GUI shows at the end. Decisions:

* A job task (`job_events`) yields `Prepared` once, then for every step either a
  `Frame` (8-bit thumbnails of sample 0, at most every `FRAME_INTERVAL` seconds and for
  the last step) or None; the worker drops the Nones at once. It returns an `Outcome`.
* "Stop and keep x̂0": when the value `KEEP` is sent in at a yield, the task closes the
  method and calls ``job.finish()`` here, on the engine thread.
* Everything that touches torch (loading priors, measuring, thumbnails, metrics) runs
  inside these generators, never on the GUI thread.
* The forward trajectory (x0 → x_t under the prior's schedule) covers the levels the
  reverse run covers (issue 15): from 0 to the level it starts from (`reverse_start`),
  which for a sampler restoring a measurement is where y joins the model's path (VP at
  noise 0.2 starts at t ≈ 0.12, not at 1, where the forward image is pure noise).
* Cost and frames come from the job (`engine.core.jobs.Job.nfe`, ``latest_frame``): the
  job counts network evaluations and makes each step's thumbnails once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAME_INTERVAL = 1 / 25  # seconds between frames sent to the screen (≈25 per second)
FORWARD_FRAMES = 33  # levels t = 0, …, t_start of the forward trajectory, evenly spaced
KEEP = "keep"  # sent into a running job: stop and keep the current x̂0


@dataclass(frozen=True)
class Frame:
    """What the screen shows of one step: sample 0 as 8-bit (H, W, C) thumbnails."""

    index: int
    total: int
    t: float
    x_t: np.ndarray
    x0_hat: np.ndarray
    nfe: int  # network evaluations so far (per sample)
    elapsed: float  # seconds the job has run (not counting time paused at a yield)
    psnr: float | None  # of x̂0 (sample 0) against the clean image, when known

    @property
    def eta(self) -> float:
        done = self.index + 1
        return self.elapsed / done * (self.total - done)

    @property
    def nfe_rate(self) -> float:
        return self.nfe / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class Prepared:
    """Sent once the job is built: the forward trajectory of its clean image."""

    forward: list[tuple[float, np.ndarray]]  # (t, x_t thumbnail) for x0 → x_T; [] if no prior


@dataclass
class Outcome:
    """A finished (or stopped-and-kept) job with what the diversity view shows."""

    result: Any  # engine.core.jobs.Result
    sample_psnr: list[float]
    sample_ssim: list[float]
    std_map: np.ndarray  # per-pixel standard deviation over samples, (H, W), channel mean

    @property
    def stopped(self) -> bool:
        return self.result.stopped


@dataclass
class Ticket:
    """One submitted task; ``steps`` counts the steps its methods have yielded."""

    id: int
    purpose: str  # "restore" (the main job), "draw" (a source image), "compare", "playground"
    label: str  # what the status bar calls it, e.g. "ddim@empirical-vp"
    request: Any = None  # the engine Request of a job task
    steps: int = 0  # engine steps yielded so far (written by the engine thread)


def reverse_start(job) -> float:
    """The level the job's reverse run starts from: where its measurement joins the
    model's path for a sampler that starts there (`MethodInfo.check_level`), else 1."""
    m = job.measurement
    if m is None or job.info.check_level is None or getattr(job.prior, "schedule", None) is None:
        return 1.0
    from engine.samplers.common import start_level

    return start_level(job.prior.schedule, m.operator, m.sigma_y)[0]


def forward_trajectory(job, seed: int) -> list[tuple[float, np.ndarray]]:
    """x0 → x_t under the prior's schedule, ``x_t = C_t x0 + σ_t ε`` with one fixed ε, for
    t from 0 to `reverse_start` ([] for a model without a schedule, e.g. a generator or a
    task-bound sampler)."""
    if getattr(job.prior, "schedule", None) is None or job.clean is None:
        return []
    from engine.core.rng import SampleRNG

    x0 = job.to_model(job.clean[None])
    eps = SampleRNG(seed, 1).randn(*x0.shape[1:])
    levels = np.linspace(0.0, reverse_start(job), FORWARD_FRAMES)
    return [(float(t), job.thumbnail(job.prior.schedule.corrupt(x0, float(t), eps)[0]))
            for t in levels]


def _psnr(x, clean) -> float | None:
    if clean is None or x.shape != clean.shape:
        return None
    from engine.evaluation.metrics import psnr

    return float(psnr(x[None], clean[None])[0])


def summarise(result) -> Outcome:
    """A result with its per-sample PSNR/SSIM and the per-pixel std map (channel mean)."""
    from engine.evaluation.metrics import pixel_std

    m = result.metrics
    std = pixel_std(result.samples).mean(0).numpy()
    return Outcome(result, list(m.get("psnr_per_sample", [])), list(m.get("ssim_per_sample", [])), std)


def job_events(ticket: Ticket):
    """The generator the worker runs: Prepared, then Frames (or None), returns an Outcome."""
    import torch

    from engine.core.jobs import Job

    job = Job(ticket.request)
    with torch.no_grad():
        forward = forward_trajectory(job, ticket.request.seed)
    yield Prepared(forward)
    last_frame, started, suspended = -math.inf, time.perf_counter(), 0.0
    steps = job.steps()
    try:
        for step in steps:
            ticket.steps += 1
            now = time.perf_counter()
            frame = None
            if step.is_last or now - last_frame >= FRAME_INTERVAL:
                last_frame = now
                nfe = job.nfe  # counted by the job, the one counter
                x0 = job.to_unit(step.x0_hat[0]).float().cpu().clamp(0, 1)
                _, x_t_thumbnail, x0_thumbnail = job.latest_frame  # made once, by the job
                frame = Frame(step.index, step.total, step.t, x_t_thumbnail, x0_thumbnail,
                              nfe, now - started - suspended, _psnr(x0, job.clean))
            yielded = time.perf_counter()
            sent = yield frame  # a paused job waits here: that time is not the job's
            suspended += time.perf_counter() - yielded
            if sent == KEEP:
                steps.close()
                return summarise(job.finish(stopped=True))
    finally:
        steps.close()
    return summarise(job.result)


# -- compare: a grid of jobs --------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One finished cell of a comparison grid (sample 0 and the run's metrics)."""

    index: int  # cells done before this one
    total: int
    row: int
    col: int
    thumbnail: np.ndarray | None
    psnr: float | None
    ssim: float | None
    nfe: int
    seconds: float
    error: str = ""


def compare_events(ticket: Ticket, grid: list[list[Any]]):
    """Run a grid of requests one after another; a failing cell says why and the rest go on.

    A grid entry is an engine `Request`, or a string: why that cell has no request.
    """
    from engine.core.jobs import Job, to_thumbnail
    from engine.core.step import EngineError

    total = sum(len(row) for row in grid)
    cells = [(r, c, request) for r, row in enumerate(grid) for c, request in enumerate(row)]
    for k, (r, c, request) in enumerate(cells):
        failed = lambda reason: Cell(k, total, r, c, None, None, None, 0, 0.0, reason)
        if isinstance(request, str):
            yield failed(request)
            continue
        try:
            job = Job(request)
            for _ in job.steps():
                ticket.steps += 1
                yield None
        except EngineError as err:
            yield failed(str(err))
            continue
        m = job.result.metrics
        yield Cell(k, total, r, c, to_thumbnail(job.result.samples[0]), m.get("psnr"),
                   m.get("ssim"), m["nfe"], m["seconds"])


# -- playground: particles of a 2-D prior ---------------------------------------------------

@dataclass(frozen=True)
class Particles:
    """Particle positions (n, 2) in data coordinates and log p_t on the density grid."""

    phase: str  # "forward" (x0 → x_1 under the schedule) or "reverse" (the sampler)
    index: int
    total: int
    t: float
    points: np.ndarray
    log_density: np.ndarray | None  # (G, G), rows = y, columns = x; None when t is unknown


def density_grid(prior, t: float, extent: float, size: int) -> np.ndarray | None:
    """``log p_t`` of a 2-D exact prior on a size × size grid over [−extent, extent]²."""
    if t != t or not hasattr(prior, "log_density"):
        return None
    import torch

    axis = torch.linspace(-extent, extent, size, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], 1).reshape(-1, 2, 1, 1)
    return prior.log_density(points, float(t)).reshape(size, size).numpy()


def playground_events(ticket: Ticket, model: str, method: str, params: dict, n: int, seed: int,
                      extent: float, grid: int, forward_frames: int = 24):
    """Particles from a 2-D prior diffused forward, then run back by a sampler, live.

    Returns the job's result; for a Gaussian-mixture prior its metrics also hold the
    sampler's bias against the exact prior (``bias``: the fields of an
    `engine.evaluation.playground.SamplerBias` of the final particles, in model units).
    """
    import torch

    from engine.core.jobs import Job, Request
    from engine.priors.catalog import load_model
    from engine.core.rng import SampleRNG

    prior = load_model(model)
    x0 = prior.sample(n, torch.Generator("cpu").manual_seed(seed)).float()
    eps = SampleRNG(seed, n).randn(*prior.shape)
    for k, t in enumerate(np.linspace(0.0, 1.0, forward_frames)):
        x_t = prior.schedule.corrupt(x0, float(t), eps)
        yield Particles("forward", k, forward_frames, float(t), x_t.flatten(1).numpy(),
                        density_grid(prior, float(t), extent, grid))
    job = Job(Request(method=f"{method}@{model}", params=params, n=n, seed=seed))
    last_frame, step = -math.inf, None
    for step in job.steps():
        ticket.steps += 1
        now = time.perf_counter()
        if step.is_last or now - last_frame >= FRAME_INTERVAL:
            last_frame = now
            yield Particles("reverse", step.index, step.total, step.t,
                            step.x_t.flatten(1).float().numpy(),
                            density_grid(job.prior, step.t, extent, grid))
        else:
            yield None
    if step is not None and hasattr(prior, "weights"):  # a mixture: its moments are exact
        from dataclasses import asdict

        from engine.evaluation.playground import sampler_bias

        job.result.metrics["bias"] = asdict(sampler_bias(prior, step.x0_hat.double(), seed))
    return job.result
