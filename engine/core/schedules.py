"""Corruption schedules: for a level ``t`` in [0, 1] the pair ``(C_t, σ_t)`` of
``x_t = C_t x0 + σ_t ε`` (the schedule is data, separate from network and sampler).

* `VESchedule`: ``C_t = I``, σ geometric between σ_min and σ_max.
* `VPSchedule`: DDPM, linear β 1e-4 → 0.02 over 1000 steps; ``C_t = √ᾱ_k I``,
  ``σ_t = √(1 − ᾱ_k)`` with ``k = round(t·T)`` (t = 0 is the clean image, ᾱ_0 = 1).
* `SoftBlurSchedule` (Soft Diffusion): a noise stage (σ geometric 0.01 → 0.1 on
  ``[0, t_s]``, no blur) then σ fixed while the blur σ_b grows through a table of blur
  levels placed at uniform times (geometric by default; `engine.core.wasserstein` selects
  one by shortest W2 path). C_t is always rebuilt from the interpolated σ_b.
* `SoftMaskSchedule`: the same noise stage, then a centred observed window that
  shrinks to nothing at t = 1 (``Mask("frame", level)``), σ fixed.
* RGM schedules (`rgm_coefficients`): the level-k coefficients of RGM-D, RGM-SR naive
  and RGM-SR (rgm.md, App. B.1 and the authors' code); `RGMSchedule` puts them behind
  the same interface on the discrete levels ``t = k/T`` (see its docstring).

Every schedule serialises to a plain dict (`to_config`) that is stored with a model and
read back by `schedule_from_config`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
import torch

from engine.core.operators import Blur, Compose, Downsample, Identity, Mask, Operator, Scale

NO_BLUR = 0.01  # σ_b this small is the identity to float precision (Soft Diffusion)


class Schedule:
    kind = "schedule"

    def corruption(self, t: float) -> Operator:
        raise NotImplementedError

    def sigma(self, t: float) -> float:
        raise NotImplementedError

    def grid(self, n: int, t_start: float = 1.0) -> list[float]:
        """``t_start = t_0 > t_1 > … > t_n = 0``: n steps, uniform in t."""
        return [t_start * (1 - i / n) for i in range(n + 1)]

    def corrupt(self, x0: torch.Tensor, t: float, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = C_t x0 + σ_t ε`` for one level t."""
        return self.corruption(t).forward(x0) + self.sigma(t) * noise

    def to_config(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def noise_level(self, sigma: float) -> tuple[float, float]:
        """``(t, c)`` with ``x_t = c·(x0 + σ ε)`` a noise-only level (model units)."""
        from engine.core.step import BadInputError
        raise BadInputError(f"a {self.kind} schedule has no pure-noise level for σ = {sigma:g}")


@dataclass
class VESchedule(Schedule):
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    kind = "ve"

    def corruption(self, t):
        return Identity()

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def noise_level(self, sigma):
        """t with σ_t = σ, clipped to [0, 1]; c = 1."""
        t = math.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min) if sigma > 0 else 0.0
        return min(max(t, 0.0), 1.0), 1.0


@dataclass
class VPSchedule(Schedule):
    beta_start: float = 1e-4
    beta_end: float = 0.02
    steps: int = 1000
    kind = "vp"

    def betas(self) -> torch.Tensor:
        """β_1 … β_T (float64); index k−1 holds β_k."""
        return torch.linspace(self.beta_start, self.beta_end, self.steps, dtype=torch.float64)

    def alpha_bars(self) -> torch.Tensor:
        """ᾱ_0 … ᾱ_T with ᾱ_0 = 1 (float64)."""
        return torch.tensor(_alpha_bar_table(self.beta_start, self.beta_end, self.steps),
                            dtype=torch.float64)

    def index(self, t: float) -> int:
        return int(round(t * self.steps))

    def alpha_bar(self, t: float) -> float:
        # a table lookup: samplers ask several times per step (the cumulative product of
        # 1000 betas each time was a third of a job's non-network time)
        return _alpha_bar_table(self.beta_start, self.beta_end, self.steps)[self.index(t)]

    def corruption(self, t):
        return Scale(math.sqrt(self.alpha_bar(t)))

    def sigma(self, t):
        return math.sqrt(1.0 - self.alpha_bar(t))

    def noise_level(self, sigma):
        """The integer step k whose ``σ_k/√ᾱ_k`` is nearest to σ; c = √ᾱ_k."""
        alpha_bars = self.alpha_bars()
        k = int((((1 - alpha_bars) / alpha_bars).sqrt() - sigma).abs().argmin())
        return k / self.steps, math.sqrt(float(alpha_bars[k]))

    def grid(self, n, t_start=1.0):
        """n steps over the integer timesteps (DDIM's uniform stride), ending at k = 0.

        At most one step per timestep: n larger than the start index gives that many.
        """
        k_start = self.index(t_start)
        ks = np.unique(np.round(np.linspace(0, k_start, n + 1)).astype(int))[::-1]
        return [float(k) / self.steps for k in ks]


@lru_cache(maxsize=16)
def _alpha_bar_table(beta_start: float, beta_end: float, steps: int) -> tuple[float, ...]:
    """ᾱ_0 … ᾱ_T of a linear β schedule as Python floats (computed in float64, once)."""
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return (1.0, *torch.cumprod(1 - betas, 0).tolist())


@lru_cache(maxsize=16)
def _geometric_table(lo: float, hi: float) -> np.ndarray:
    table = np.geomspace(lo, hi, 32)
    table.flags.writeable = False  # shared between calls
    return table


def _noise_stage_sigma(t: float, t_split: float, sigma_start: float, sigma_end: float) -> float:
    return sigma_start * (sigma_end / sigma_start) ** min(t / t_split, 1.0)


@dataclass
class SoftBlurSchedule(Schedule):
    sigma_start: float = 0.01  # σ_0
    sigma_end: float = 0.1  # σ during the blur stage (= σ_1)
    t_split: float = 0.15  # t_s: end of the noise-only stage [choice]
    blur_min: float = NO_BLUR
    blur_max: float = 15.0  # ≈ 0.55·H for 28 px
    # Blur levels at uniform times over [t_split, 1]; empty = geometric blur_min → blur_max.
    blur_table: list[float] = field(default_factory=list)
    kind = "soft-blur"

    def table(self) -> np.ndarray:
        if self.blur_table:
            return np.asarray(self.blur_table, dtype=np.float64)
        return _geometric_table(self.blur_min, self.blur_max)  # cached: asked per level

    def blur_sigma(self, t: float) -> float:
        if t <= self.t_split:
            return self.blur_min
        table = self.table()
        s = (t - self.t_split) / (1 - self.t_split) * (len(table) - 1)
        return float(np.interp(s, np.arange(len(table)), table))

    def corruption(self, t):
        return Blur(self.blur_sigma(t))

    def sigma(self, t):
        return _noise_stage_sigma(t, self.t_split, self.sigma_start, self.sigma_end)


@dataclass
class SoftMaskSchedule(Schedule):
    """Noise stage up to t_s, then a centred window shrinking to nothing.

    ``sigma_max`` > ``sigma_end``: σ also rises geometrically σ_1 → σ_max over the mask
    stage. With σ constant there (``sigma_max`` = 0, the original schedule) a reverse step
    fills the ring it reveals with E[x0 | x_t] and only σ_1 = 0.1 of noise: starting from
    an empty window every sample follows the mean image (measured on a trained network:
    naive and DDIM draw one grey shirt, momentum adds texture). A noise level comparable
    to the data's spread keeps the mask stage a diffusion [choice, 2026-12-02].
    """
    sigma_start: float = 0.01
    sigma_end: float = 0.1
    t_split: float = 0.15
    sigma_max: float = 0.0
    kind = "soft-mask"

    def mask_level(self, t: float) -> float:
        """Fraction of the side hidden: 0 up to t_s, then linear to 1 (nothing seen)."""
        return max(0.0, (t - self.t_split) / (1 - self.t_split))

    def corruption(self, t):
        return Mask("frame", min(1.0, self.mask_level(t)))

    def sigma(self, t):
        if self.sigma_max > self.sigma_end and t > self.t_split:
            return self.sigma_end * (self.sigma_max / self.sigma_end) ** self.mask_level(t)
        return _noise_stage_sigma(t, self.t_split, self.sigma_start, self.sigma_end)


def schedule_from_config(config: dict) -> Schedule:
    config = dict(config)
    kind = config.pop("kind")
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule kind {kind!r}")
    return SCHEDULES[kind](**config)


# --- RGM (rgm.md, App. B.1, Table 5) --------------------------------------------------

RGM_BETA_MIN, RGM_BETA_MAX, RGM_EPS0 = 0.1, 20.0, 1e-3


def rgm_beta_integral(tau: np.ndarray) -> np.ndarray:
    """β(τ) = ¼(β_max − β_min) τ² + ½ β_min τ (the integrated VP rate)."""
    return 0.25 * (RGM_BETA_MAX - RGM_BETA_MIN) * tau**2 + 0.5 * RGM_BETA_MIN * tau


def rgm_coefficients(levels: int, squared_time: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(a_k, s_k)`` for k = 0 … T: ``a_k = exp(−(β(τ_k) − β(τ_0)))``, ``s_k = √(1 − a_k²)``.

    ``τ_k = ε0 + (1 − ε0) k/T`` [code]; ``squared_time`` uses β̃_k = β(τ_k²) (eq. 13).
    s_0 is floored at 1e-4 (level 0 is essentially clean).
    """
    tau = RGM_EPS0 + (1 - RGM_EPS0) * np.arange(levels + 1) / levels
    if squared_time:  # the test vectors square the whole grid point
        tau = tau**2
    a = np.exp(-(rgm_beta_integral(tau) - rgm_beta_integral(tau[0])))
    s = np.sqrt(np.maximum(1 - a**2, 1e-8))
    return a, s


def rgm_sr_levels(levels: int) -> list[tuple[float, float, int]]:
    """RGM-SR: level k observes ``U_m D_m (a_n x + 2^n s_n ε)``, n = ⌈k/2⌉, m = ⌊k/2⌋.

    Returns ``(a_n, noise std at full resolution 2^n s_n, m)`` per level; the std of a
    low-resolution pixel (after m block averages of 2×2) is that std divided by 2^m.
    """
    a, s = rgm_coefficients(math.ceil(levels / 2))
    return [(float(a[math.ceil(k / 2)]), float(2 ** math.ceil(k / 2) * s[math.ceil(k / 2)]), k // 2)
            for k in range(levels + 1)]


RGM_VARIANTS = ("rgm-d", "rgm-sr-naive", "rgm-sr")


@dataclass
class RGMSchedule(Schedule):
    """The RGM degradation ladder on levels k = 0 … T (``t = k/T``), rgm.md Table 5.

    * ``rgm-d``:        ``y_k = a_k x + s_k ε``;                         p_T = N(0, I)
    * ``rgm-sr-naive``: ``y_k = U_k D_k (a_k x + s_k ε)`` with β̃ (eq. 13); p_T = N(0, I/64)
      at H/2^T for T = 3
    * ``rgm-sr``:       ``y_k = U_m D_m (a_n x + 2^n s_n ε)``, n = ⌈k/2⌉, m = ⌊k/2⌋;
      p_T = N(0, 4I) at the coarsest grid

    Decisions: the networks see full-resolution tensors (`degrade`, the authors' code
    keeps them). As a `Schedule`, the level is expressed on its low-resolution grid,
    where the noise is white: ``C_t = a·D_m`` and ``σ_t = std/2^m`` (m 2×2 block
    averages of white noise of std σ_f leave white noise of std σ_f/2^m), so
    ``corrupt`` and ``sigma`` describe the same distribution as `degrade` (tested).
    """

    variant: str = "rgm-d"
    levels: int = 4  # T
    kind = "rgm"

    def __post_init__(self):
        from engine.core.step import BadInputError
        if self.variant not in RGM_VARIANTS:
            raise BadInputError(f"unknown RGM schedule {self.variant!r} ({', '.join(RGM_VARIANTS)})")
        if self.levels < 1:
            raise BadInputError(f"an RGM schedule needs T ≥ 1 levels, got {self.levels}")

    def table(self) -> list[tuple[float, float, int]]:
        """``(a, full-resolution noise std, m)`` for k = 0 … T."""
        if self.variant == "rgm-sr":
            return rgm_sr_levels(self.levels)
        a, s = rgm_coefficients(self.levels, squared_time=self.variant == "rgm-sr-naive")
        scales = range(self.levels + 1) if self.variant == "rgm-sr-naive" else [0] * (self.levels + 1)
        return [(float(a_k), float(s_k), m) for a_k, s_k, m in zip(a, s, scales)]

    def level(self, t: float) -> int:
        return int(round(t * self.levels))

    def factor(self, k: int) -> int:
        """The side ratio 2^m of level k's grid to the full image."""
        return 2 ** self.table()[k][2]

    def corruption(self, t):
        a, _, m = self.table()[self.level(t)]
        return Scale(a) if m == 0 else Compose((Scale(a), Downsample(2**m)))

    def sigma(self, t):
        _, std, m = self.table()[self.level(t)]
        return std / 2**m

    def grid(self, n: int | None = None, t_start: float = 1.0) -> list[float]:
        """The levels T, T−1, …, 0 as t = k/T (RGM has exactly T steps)."""
        return [k / self.levels for k in range(self.level(t_start), -1, -1)]

    def degrade(self, x: torch.Tensor, k: int, noise: torch.Tensor) -> torch.Tensor:
        """Level k of a clean batch, full resolution: ``U_m D_m (a x + std·ε)``."""
        a, std, m = self.table()[k]
        return self.upsample(downsample_levels(a * x + std * noise, m), k)

    def upsample(self, y_low: torch.Tensor, k: int) -> torch.Tensor:
        """U_m: nearest upsampling of a level-k grid back to full resolution."""
        f = self.factor(k)
        return y_low if f == 1 else y_low.repeat_interleave(f, -2).repeat_interleave(f, -1)

    def prior_std(self) -> float:
        """The std of p_T on level T's grid (the a_T x ≈ 0.0066 x term is dropped)."""
        return self.sigma(1.0)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        from engine.core.step import BadInputError
        f = self.factor(self.levels)
        if shape[-1] % f or shape[-2] % f:
            raise BadInputError(f"{self.variant} with T = {self.levels} needs image sides "
                                f"divisible by {f}, got {shape[-2]}×{shape[-1]}")

    def sample_prior(self, noise: torch.Tensor) -> torch.Tensor:
        """A full-resolution draw of p_T from full-resolution white noise ε: ``U(σ_T ε_low)``."""
        f = self.factor(self.levels)
        return self.upsample(self.prior_std() * noise[..., ::f, ::f], self.levels)


def downsample_levels(x: torch.Tensor, m: int) -> torch.Tensor:
    """D_m: m successive 2×2 block averages."""
    for _ in range(m):
        x = Downsample(2).forward(x)
    return x


def rgm_table_text(schedule: RGMSchedule, side: int = 28) -> str:
    """The ladder as a table (``python -m engine schedule --corruption rgm-d``)."""
    lines = [f"{schedule.variant}, T = {schedule.levels}, {side}×{side} images",
             f"{'k':>3}  {'a_k':>7}  {'std (full res)':>14}  {'grid':>7}  {'std (grid)':>10}"]
    for k, (a, std, m) in enumerate(schedule.table()):
        grid = f"{side // 2**m}×{side // 2**m}" if side % 2**m == 0 else "—"
        lines.append(f"{k:>3}  {a:7.4f}  {std:14.4f}  {grid:>7}  {std / 2**m:10.4f}")
    lines.append(f"p_T = N(0, {schedule.prior_std() ** 2:.4g} I) on the level-T grid")
    return "\n".join(lines)


SCHEDULES = {cls.kind: cls for cls in (VESchedule, VPSchedule, SoftBlurSchedule, SoftMaskSchedule,
                                       RGMSchedule)}
