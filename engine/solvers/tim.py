"""Method ``tim``: many plausible restorations of one input from a TIM tower (tim.md).

At test time every level's code is drawn independently (hierarchical selection is a
training device); the n samples of a job go through the tower in one batched pass.

Decisions:

* One Step per tower level, coarse to fine: ``x_t`` and ``x0_hat`` are level l's output
  upsampled (nearest) to the output shape; ``extras``: ``level`` (1-based), ``levels``,
  ``resolution`` (the level's side in pixels). ``t = 1 − l/L`` (1 = nothing decided yet,
  0 = the finished sample). The last Step is the full-resolution result.
* Codes: level by level with ``rng.latent(code_size_l)`` (vector part + noise map as one
  flat vector), so the latent slider moves every level's code.
* ``vary_level`` = l > 0: only level l's code differs between samples; every other
  level uses sample 0's code (seed s's draw) for all samples, so the gallery shows what
  level l alone decides. Sample k then is not the single run of seed s + k (it shares
  sample 0's other codes), by design; ``vary_level = 0`` keeps that property.
* The tower is bound to its task: the measurement's operator must be the tower's
  degradation (``downsample=4`` for ``sr4``, ``mask=box:0.5`` for ``inpaint``). For
  ``pca10``, which has no project operator, y (28×28) is projected onto the tower's ten
  principal components first, so any full-size image is completed from its first ten
  PCA coefficients. Noise σ_y is accepted, but the towers are trained noise-free.
* NFE: one per batched pass through the tower (all levels), i.e. 1 per job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from engine.core.capabilities import TASK_TOWER
from engine.core.operators import Degradation
from engine.core.registry import Measurement, MethodInfo, param, register
from engine.core.step import BadInputError, Step, UnsupportedOperatorError


@dataclass
class TimParams:
    vary_level: int = param(0, lo=0, hi=3, help="0: every level's code varies between samples; "
                            "l: only level l's code varies and the others are sample 0's, "
                            "showing what level l decides")


def tower_input(tower, measurement: Measurement) -> torch.Tensor:
    """The measurement as the tower's input, refused if it is not the tower's task."""
    if tower.task_name == "pca10":
        y = measurement.y
        if tuple(y.shape[1:]) != tower.shape:
            raise BadInputError(f"{tower.name} completes {tower.shape} images from their first "
                                f"ten PCA coefficients; got a measurement of shape {tuple(y.shape[1:])}")
        return tower.net.measure(y.to(tower.device))
    expected = Degradation.parse(tower.degradation).operator(tower.shape[0]).describe()
    if measurement.operator.describe() != expected:
        raise UnsupportedOperatorError(f"{tower.name} restores {tower.degradation} measurements "
                                       f"only, not {measurement.operator.describe()}")
    return measurement.y.to(tower.device)


def draw_codes(tower, rng, vary_level: int) -> list[torch.Tensor]:
    """Each level's code through ``rng.latent``; with ``vary_level`` = l, every other level
    takes sample 0's code."""
    if vary_level > tower.levels:
        raise BadInputError(f"vary_level={vary_level}, but {tower.name} has {tower.levels} levels")
    codes = [rng.latent(size) for size in tower.code_sizes]
    if vary_level:
        codes = [c if l + 1 == vary_level else c[:1].expand_as(c) for l, c in enumerate(codes)]
    return [c.to(tower.device) for c in codes]


def tim(tower, measurement: Measurement, params: TimParams, rng) -> Iterator[Step]:
    if measurement is None:
        raise BadInputError("tim restores a measurement; it cannot generate unconditionally")
    y = tower_input(tower, measurement)
    n = len(rng)
    if y.shape[0] not in (1, n):
        raise BadInputError(f"measurement batch {y.shape[0]} does not match {n} samples")
    codes = draw_codes(tower, rng, params.vary_level)
    y = y.expand(n, -1, -1, -1)
    size = tower.shape[-2:]
    for l, out in enumerate(tower.iterate_levels(y, codes)):
        shown = F.interpolate(out, size=size, mode="nearest")
        yield Step(l, tower.levels, 1.0 - (l + 1) / tower.levels, shown, shown,
                   {"level": l + 1, "levels": tower.levels, "resolution": out.shape[-1]})


register(MethodInfo(
    name="tim", run=tim, params=TimParams, kind="solver", family="TIM",
    summary="Tower Implicit Model: many plausible restorations of one input, decided "
            "coarse to fine, one network pass for all samples.",
    nfe=lambda p: 1, generates=False, default_model="tim-sr4", needs=(TASK_TOWER,),
    example_model="tim-sr4", example_degradation="downsample=4",
    latent="each tower level's code (style vector + noise map)"))
