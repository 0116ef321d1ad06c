"""What every diffusion sampler shares: the reverse-process loop, its start, and p_1.

The step interface (as k-diffusion's samplers get ``model`` and ``sigmas``): a *step
rule* ``(x_{t'}, x̂0) = rule(denoise, move, x_t, rng)`` receives the model's denoiser
``denoise(x_t, t) = E[x0 | x_t]`` and one `Move` t → t' of the `Grid`, the schedule
evaluated on the time grid as data. `run_grid` applies a rule along a grid; a
Heun-type rule calls ``denoise`` twice, a gradient-guided one differentiates through
it, an inner loop calls it as often as it likes. Most samplers here evaluate x̂0 once
at x_t and then apply a closed-form *update* ``x_{t'} = update(move, x_t, x̂0, rng)``
(the paper's box); `x0_first` turns such an update into a step rule. Decisions:

* Grid: ``t_start = t_0 > … > t_N = 0`` from ``prior.schedule.grid(nfe, t_start)``
  (uniform in t; VP uses integer timesteps, DDIM's stride), with ``C_t`` and ``σ_t``
  evaluated once per grid point (not twice per step). One network evaluation per step
  for `x0_first` rules, so NFE = N. Restoring from a VP level k takes ``min(nfe, k)``
  steps.
* Steps: each Step reports the state *after* its update: ``t = t_{i+1}``,
  ``x_t = x_{t_{i+1}}`` and the x̂0 that produced it; the last Step's x0_hat is the
  final sample x_{t_N} itself (it carries the schedule's σ_0 noise; no extra NFE).
* p_1 (param ``final``; soft_diffusion.md, "Final distribution"): a colour
  ``c ~ N(m, diag s²)`` fitted to the per-image mean colour, then
  ``refined``: ``C_1(c·1) + σ_1 η`` [choice, default]: zero padding vignettes C_1 x0;
  ``paper``: ``c·1 + σ_1 η``;
  ``prior``: the prior's own p_1 (`Prior.sample_final`: exact for closed-form priors).
  (m, s) come from ``prior.colour_stats()`` when the prior has it (exact priors do);
  otherwise from the mean image's per-channel mean and spread over pixels — a rough
  stand-in for priors that do not know their data's colour statistics.
* Restoring (SDEdit): a measurement ``y = A x0 + σ_y ε`` whose operator lies on the
  prior's corruption path, ``C_t = c·A`` for some t, is turned into an exact draw of x_t,
  ``x_t = c·y + sqrt(σ_t² − c²σ_y²) η``, and the reverse process starts there.
  `start_level` finds t: for noise (A = a·I) the smallest t with ``σ_t / c_t ≥ σ_y / a``
  (fresh noise tops up the difference, which is what makes VP's discrete levels exact);
  for a blur or frame mask the t whose blur σ / mask level equals A's, where σ_y must
  not exceed σ_t. Off-path levels raise `BadInputError` naming the limit, off-path
  operator kinds `UnsupportedOperatorError`. Where the sampler is a reverse SDE (ddpm
  and momentum on VP, momentum in a noise stage) the result is a posterior sample of
  x0 | y (tested). Through a constant-σ blur or mask stage momentum, PF, DDIM(k = 0) and
  PC move deterministically, so from a blurred y they give the flow's image of y (plus
  the noise stage's spread): a plausible sharp image, not a posterior sample.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from engine.core.operators import Blur, Identity, Mask, Operator, Scale
from engine.core.registry import Measurement, MethodInfo, param, register
from engine.core.rng import SampleRNG
from engine.core.schedules import NO_BLUR, Schedule
from engine.core.step import BadInputError, Step, UnsupportedOperatorError

FINALS = ("refined", "paper", "prior")
SOFT_SCHEDULES = ("ve", "vp", "soft-blur", "soft-mask")  # paths x_t = C_t x0 + σ_t ε
TOLERANCE = 1e-3  # relative slack when σ_y must not exceed σ_t


@dataclass
class SamplerParams:
    nfe: int = param(100, lo=1, hi=4096, help="grid steps = network evaluations per sample")
    final: str = param("refined", choices=FINALS,
                       help="start distribution p_1: refined C_1(c·1)+σ_1η, paper c·1+σ_1η, "
                            "or the prior's own (exact for closed-form priors)")


@dataclass(frozen=True)
class Move:
    """One step t → t' of the reverse process: ``(C_t, σ_t) → (C_{t'}, σ_{t'})``."""

    index: int
    t: float
    t_next: float
    C: Operator
    C_next: Operator
    sigma: float
    sigma_next: float


@dataclass(frozen=True)
class Grid:
    """The schedule on a time grid ``t_0 > … > t_N``: levels, corruptions and noise, as data."""

    t: tuple[float, ...]
    C: tuple[Operator, ...]
    sigma: tuple[float, ...]

    @staticmethod
    def of(schedule: Schedule, nfe: int, t_start: float = 1.0) -> "Grid":
        t = tuple(schedule.grid(nfe, t_start))
        return Grid(t, tuple(schedule.corruption(s) for s in t), tuple(schedule.sigma(s) for s in t))

    def __len__(self) -> int:
        return len(self.t) - 1  # steps

    def moves(self) -> Iterator[Move]:
        for i in range(len(self)):
            yield Move(i, self.t[i], self.t[i + 1], self.C[i], self.C[i + 1],
                       self.sigma[i], self.sigma[i + 1])


Denoise = Callable[[torch.Tensor, float], torch.Tensor]
Update = Callable[[Move, torch.Tensor, torch.Tensor, SampleRNG], torch.Tensor]
StepRule = Callable[[Denoise, Move, torch.Tensor, SampleRNG], tuple[torch.Tensor, torch.Tensor]]


def x0_first(update: Update) -> StepRule:
    """The step rule that evaluates ``x̂0 = denoise(x_t, t)`` once, then applies ``update``."""
    def rule(denoise: Denoise, move: Move, x_t: torch.Tensor, rng: SampleRNG):
        x0_hat = denoise(x_t, move.t)
        return update(move, x_t, x0_hat, rng), x0_hat
    return rule


def run_grid(denoise: Denoise, x: torch.Tensor, grid: Grid, rng: SampleRNG,
             rule: StepRule) -> Iterator[Step]:
    """Apply ``rule`` along ``grid`` from ``x = x_{t_0}``; the last Step's x̂0 is x_{t_N}."""
    total = len(grid)
    for move in grid.moves():
        x, x0_hat = rule(denoise, move, x, rng)
        yield Step(move.index, total, move.t_next, x, x if move.index == total - 1 else x0_hat)


def reverse_process(prior, measurement: Measurement | None, params: SamplerParams,
                    rng: SampleRNG, rule: StepRule) -> Iterator[Step]:
    """Start from p_1 (or the measurement's level), then apply ``rule`` along the grid."""
    t_start, x = start(prior, measurement, params.final, rng)
    yield from run_grid(prior.denoise, x, Grid.of(prior.schedule, params.nfe, t_start), rng, rule)


def start(prior, measurement: Measurement | None, final: str,
          rng: SampleRNG) -> tuple[float, torch.Tensor]:
    """``(t_start, x_{t_start})``: a p_1 draw, or the measurement placed on the path."""
    if measurement is None:
        return 1.0, sample_p1(prior, final, rng)
    lo, hi = getattr(prior, "data_range", (0.0, 1.0))
    t, gain = start_level(prior.schedule, measurement.operator, measurement.sigma_y, hi - lo,
                          getattr(prior, "name", "this model"))
    y = measurement.y.to(rng.device, rng.dtype)
    top_up = prior.schedule.sigma(t) ** 2 - (gain * measurement.sigma_y) ** 2
    return t, gain * y + math.sqrt(max(top_up, 0.0)) * rng.latent_like(y)


# --- the final distribution p_1 --------------------------------------------------------

def colour_statistics(prior) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of an image's mean colour under the prior (see module doc)."""
    if hasattr(prior, "colour_stats"):
        return prior.colour_stats()
    mean_image = prior.mean_image()
    return mean_image.mean((1, 2)), mean_image.std((1, 2), unbiased=False)


def sample_p1(prior, final: str, rng: SampleRNG) -> torch.Tensor:
    if final == "prior":
        return prior.sample_final(rng)
    mean, std = (s.to(rng.device, rng.dtype) for s in colour_statistics(prior))
    channels = len(mean)
    z = rng.latent(channels + math.prod(prior.shape))  # the whole start is one latent
    colour = mean + std * z[:, :channels]  # (n, C): one constant colour per sample
    flat = colour[:, :, None, None].expand(len(rng), *prior.shape)
    if final == "refined":
        flat = prior.schedule.corruption(1.0).forward(flat)
    return flat + prior.schedule.sigma(1.0) * z[:, channels:].reshape(len(rng), *prior.shape)


# --- restoring: where a measurement lies on the corruption path --------------------------

STRENGTH = {Blur: "sigma", Mask: "level"}  # the one number that grows along a blur/mask path
SLIDER = {Blur: "blur", Mask: "mask level"}  # ... as the degradation panel calls it


def scalar_gain(op: Operator) -> float | None:
    """c when ``op`` is c·I (identity, scaling, a blur below NO_BLUR, an empty frame)."""
    if isinstance(op, Identity):
        return 1.0
    if isinstance(op, Scale):
        return float(op.c)
    if isinstance(op, Blur) and op.sigma <= NO_BLUR or isinstance(op, Mask) and op.level == 0:
        return 1.0
    return None


def bracket(passed: Callable[[float], bool], lo: float, hi: float) -> tuple[float, float]:
    """Bisect ``[lo, hi]`` (``passed`` false at lo, true at hi) to the switch point's bracket."""
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if passed(mid) else (mid, hi)
    return lo, hi


def smallest_level(f: Callable[[float], float], lo: float, hi: float, target: float) -> float:
    """The smallest t in [lo, hi] with ``f(t) ≥ target`` for non-decreasing f."""
    return bracket(lambda t: f(t) >= target, lo, hi)[1]


def path_words(schedule: Schedule) -> str:
    """What a schedule's corruption path holds, in words (for messages)."""
    final = schedule.corruption(1.0)
    if scalar_gain(final) is not None:
        return "noise"
    return "noise and a shrinking frame" if isinstance(final, Mask) else f"noise and {final.name}"


_NOISE_END: dict[int, tuple[Schedule, float]] = {}  # id → (schedule, its noise stage's end)


def noise_stage_end(schedule: Schedule) -> float:
    """The last level with ``C_t = c·I`` (1 for a pure-noise path); kept per schedule
    object, as the studio's pickers ask for every model on every slider move."""
    known = _NOISE_END.get(id(schedule))
    if known is None or known[0] is not schedule:
        C = schedule.corruption
        end = 1.0 if scalar_gain(C(1.0)) is not None else \
            bracket(lambda t: scalar_gain(C(t)) is None, 0.0, 1.0)[0]
        known = _NOISE_END[id(schedule)] = (schedule, end)  # holds the schedule: ids stay valid
    return known[1]


def start_level(schedule: Schedule, op: Operator, sigma_y: float, unit: float = 1.0,
                who: str = "this model", locate: bool = True) -> tuple[float, float]:
    """``(t, c)`` with ``C_t = c·A`` and ``σ_t ≥ c σ_y``: where the measurement joins the path.

    Refusals speak in the degradation panel's units: σ_y / ``unit`` (model units per
    image unit) and the operator's own number, and say which value would work. With
    ``locate=False`` only the refusals are checked (a noise-only level's t is not searched).
    """
    C = schedule.corruption
    noise_end = noise_stage_end(schedule)
    a = scalar_gain(op)
    if a is not None:
        return _noise_level(schedule, a, sigma_y, noise_end, unit, who, locate)
    final = C(1.0)
    name = STRENGTH.get(type(op))
    if name is None or type(final) is not type(op) or \
            dataclasses.replace(op, **{name: getattr(final, name)}) != final:
        raise UnsupportedOperatorError(
            f"{who} cannot restore {op.name}: its {schedule.kind} model only removes "
            f"{path_words(schedule)}")
    strength, largest = getattr(op, name), getattr(final, name)
    if strength > largest * (1 + TOLERANCE):
        raise BadInputError(f"{SLIDER[type(op)]} {strength:.3g} is beyond the strongest "
                            f"{who} was trained for ({largest:.3g}); lower {SLIDER[type(op)]} "
                            f"to {largest:.3g} or below")
    t = smallest_level(lambda t: getattr(C(t), name) if type(C(t)) is type(op) else 0.0,
                       noise_end, 1.0, strength)
    limit = schedule.sigma(t)
    if sigma_y > limit * (1 + TOLERANCE):
        raise BadInputError(f"noise {sigma_y / unit:.3g} is above what {who} was trained for "
                            f"at {SLIDER[type(op)]} {strength:.3g} (at most {limit / unit:.3g}); "
                            f"lower noise to {limit / unit:.3g} or below")
    return t, 1.0


def _noise_level(schedule: Schedule, a: float, sigma_y: float, noise_end: float, unit: float,
                 who: str, locate: bool) -> tuple[float, float]:
    """Noise-only y = a x0 + σ_y ε, i.e. y/a = x0 + (σ_y/a) ε: match σ_t / c_t."""
    if a <= 0:
        raise BadInputError(f"cannot restore a measurement scaled by {a:g} ≤ 0")
    ratio = lambda t: schedule.sigma(t) / scalar_gain(schedule.corruption(t))
    level = sigma_y / a
    largest, smallest = a * ratio(noise_end) / unit, a * ratio(0.0) / unit  # slider units
    if level > ratio(noise_end) * (1 + TOLERANCE):
        raise BadInputError(f"noise {sigma_y / unit:.3g} is above what {who} was trained for "
                            f"(at most {largest:.3g}); lower noise to {largest:.3g} or below")
    if level <= ratio(0.0):
        raise BadInputError(f"noise {sigma_y / unit:.3g} is at or below the smallest noise "
                            f"{who} removes ({smallest:.3g}): nothing to restore; raise noise "
                            f"above {smallest:.3g}")
    if not locate:
        return math.nan, math.nan
    t = smallest_level(ratio, 0.0, noise_end, level)
    return t, scalar_gain(schedule.corruption(t)) / a


def level_problem(schedule: Schedule, op: Operator, sigma_y: float, unit: float = 1.0,
                  who: str = "this model") -> str | None:
    """Why a sampler on ``schedule`` cannot start from ``y = A x0 + σ_y ε`` (σ_y in model
    units), in the panel's units, or None: `start_level`'s verdict without running
    anything (the registry asks it before a job starts, `MethodInfo.check_level`)."""
    try:
        start_level(schedule, op, sigma_y, unit, who, locate=False)
    except BadInputError as err:
        return str(err)
    return None


def on_corruption_path(op: Operator) -> bool:
    """Operator kinds a sampler may restore (`start_level` checks the level against the prior)."""
    return isinstance(op, (Identity, Scale, Blur)) or isinstance(op, Mask) and op.kind == "frame"


def noise_only(op: Operator) -> bool:
    return isinstance(op, (Identity, Scale))


def register_sampler(name: str, run, params: type, summary: str, **info) -> MethodInfo:
    """Register a diffusion sampler: NFE = ``params.nfe``, generates and restores on its path."""
    return register(MethodInfo(name=name, run=run, params=params, kind="sampler", summary=summary,
                               nfe=lambda p: p.nfe, latent="noise (start and steps)",
                               check_level=level_problem, **info))
