"""Memory budget: a job's peak memory, estimated before it starts and refused over the limit.

A job that cannot fit must fail at once with a sentence, not after minutes of swapping
or with the process killed. `check` estimates the peak from what is known before the
method runs (image size, number of samples, the method, its parameters) and raises
`BadInputError` naming the estimate, the limit and a smaller setting that fits (fewer
samples, or a smaller image). Decisions:

* The limit is ``$RESTORATION_MEMORY_LIMIT`` (bytes, or with a suffix K/M/G/T, e.g.
  ``2G``) when set, else the memory available when the job starts (``MemAvailable`` of
  ``/proc/meminfo``; all physical memory where that file is missing).
* The estimate is an upper bound from measured peaks, not a model of every tensor:
  the method's working set is counted in *image copies per sample* (float32, one
  sample's C·H·W). Peak RSS growth measured on this project's CPU build (2 cores,
  torch 2.13): pinv 28–30 copies (3×1000×1000, n = 1 and 4); tikhonov 65 (3×1000×1000,
  trajectory subtracted) and 109 (1×28×28, n = 4096); ddim@vp 260–311 (1×28×28,
  n = 256 and 1024); ddim@photo 101 and 78 (3×512×512 and 3×1024×1024, n = 1). A
  method without a network is counted at `BASELINE_COPIES` (pinv at its own figure);
  one with a network at `STATE_COPIES` per sample plus `NETWORK_COPIES` per pixel one
  network call sees: all n·C·H·W, or at most a tile's worth for a prior that tiles
  large images (``max_tile_pixels``, `engine.priors.tiling`), whose activations then
  stay bounded however large the photo.
* Added on top: the trajectory (8-bit thumbnails of sample 0: x_t and x̂0 for at most
  `TRAJECTORY_FRAMES` steps; the step count is the method's ``nfe``, ``steps`` or
  ``iterations`` parameter when it has one), and ``torch.pdist``'s n(n−1)/2 float64
  distances of the diversity metric. PSNR and SSIM are computed in chunks
  (`engine.evaluation.metrics`), so they are inside the per-sample copies.
"""

from __future__ import annotations

import os
import re

from engine.core.step import BadInputError

LIMIT_ENV = "RESTORATION_MEMORY_LIMIT"
TRAJECTORY_FRAMES = 128  # the job's bounded ring of thumbnails (engine.core.jobs)
BASELINE_COPIES = 128  # image copies per sample, methods without a network (measured ≤ 109)
STATE_COPIES = 64  # image copies per sample, a network method's own state and metrics
NETWORK_COPIES = 320  # image copies per pixel a network call sees (with STATE: measured ≤ 311)
OWN_COPIES = {"pinv": 32}  # measured 28–30
FLOAT32, FLOAT64 = 4, 8
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """``"2G"`` → 2·2³⁰ bytes (suffixes K, M, G, T; an optional trailing B)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([KMGT]?)B?\s*", text.upper())
    if match is None or float(match[1]) <= 0:
        raise BadInputError(f"{LIMIT_ENV}={text!r} is not a memory size such as 2G or 512M")
    return int(float(match[1]) * UNITS[match[2]])


def memory_limit() -> tuple[int, str]:
    """(bytes a job may use, where that figure comes from)."""
    text = os.environ.get(LIMIT_ENV)
    if text:
        return parse_size(text), f"{LIMIT_ENV}={text}"
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024, \
            f"the memory available now; set {LIMIT_ENV} to change it"
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), \
            f"the physical memory; set {LIMIT_ENV} to change it"


def _steps(params) -> int:
    for name in ("nfe", "steps", "iterations"):
        if isinstance(getattr(params, name, None), int):
            return min(getattr(params, name), TRAJECTORY_FRAMES)
    return TRAJECTORY_FRAMES


def estimate(info, params, shape: tuple[int, ...], n: int, tile_pixels: int | None = None) -> int:
    """Peak bytes of a job running ``info`` with ``params`` on n samples of ``shape``;
    ``tile_pixels``: the most pixels one network call sees (a tiling prior), else None."""
    pixels = 1
    for side in shape:
        pixels *= int(side)
    if info.needs_prior:  # the method's own state, and the network's activations
        seen = n * pixels if tile_pixels is None else min(n * pixels, tile_pixels * int(shape[0]))
        working = (STATE_COPIES * n * pixels + NETWORK_COPIES * seen) * FLOAT32
    else:
        working = OWN_COPIES.get(info.name, BASELINE_COPIES) * n * pixels * FLOAT32
    trajectory = 2 * _steps(params) * pixels  # uint8 thumbnails of x_t and x̂0
    distances = n * (n - 1) // 2 * FLOAT64  # the diversity metric's pdist
    return working + trajectory + distances


def _largest(fits, upper: int) -> int:
    """The largest k in [0, upper) with fits(k) (fits is monotone), by bisection."""
    lo, hi = 0, upper
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _gb(size: int) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**28 else f"{size / 2**20:.0f} MB"


def check(info, params, shape: tuple[int, ...], n: int, tile_pixels: int | None = None) -> None:
    """Raise `BadInputError` when the job would need more memory than the limit."""
    estimate_for = lambda shape, n: estimate(info, params, shape, n, tile_pixels)
    need = estimate_for(shape, n)
    limit, origin = memory_limit()
    if need <= limit:
        return
    size = "×".join(str(int(s)) for s in shape)
    fits_n = _largest(lambda k: k < 1 or estimate_for(shape, k) <= limit, n)
    if fits_n >= 1:
        smaller = f"{fits_n} samples fit" if fits_n > 1 else "1 sample fits"
    else:
        c, h, w = (tuple(shape) + (1, 1, 1))[:3]
        scale = _largest(lambda k: estimate_for((c, k, k * w // max(h, 1)), 1) <= limit, h)
        smaller = (f"an image of at most {scale}×{scale * w // max(h, 1)} pixels fits"
                   if scale >= 1 else "nothing fits")
    raise BadInputError(f"{info.name} on {n} sample(s) of {size} needs about {_gb(need)} of memory; "
                        f"the limit is {_gb(limit)} ({origin}); {smaller}")
