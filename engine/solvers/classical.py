"""Classical anchors that need no prior: non-local means, BM3D and bicubic upsampling.

They stand beside the learned methods on the photo tasks (`engine eval`), registered
like any other method, each through its reference library:

* ``nlm``: OpenCV's ``fastNlMeansDenoisingColored`` (``fastNlMeansDenoising`` for one
  channel) on the 8-bit image, 7×7 patches, 21×21 search window. Its filter strength is
  matched to the noise: ``h = hColor = strength·σ_y·255`` with ``strength`` 0.6 by
  default [choice: measured on 256×256 crops of three *training* photos — astronaut,
  motorcycle_left, ihc — at σ = 15, 25, 50/255, 0.6 gave the best mean PSNR of
  0.4 … 1.2 at each σ: 28.2, 25.7, 23.2 dB].
* ``bm3d``: the reference BM3D of Mäkinen, Azzari & Foi (the ``bm3d`` package):
  ``bm3d_rgb`` (its opponent colour transform) for RGB, ``bm3d`` for one channel, with
  the true σ_y; single-threaded, since its threads make results vary by ~1e-7.
* ``bicubic``: OpenCV ``resize`` with ``INTER_CUBIC`` from the block-averaged grid back
  to the full grid (pixel centres aligned: block i's centre is at s·i + (s − 1)/2).

``nlm`` and ``bm3d`` restore noise only (the identity operator); ``bicubic`` only
block-average downsampling (it ignores the noise). Anything else is refused with
`UnsupportedOperatorError`. All three are deterministic: identical rows of a batch are
computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from engine.core.operators import Downsample, Identity
from engine.core.registry import MethodInfo, Measurement, param, register
from engine.core.step import Step

NAN = math.nan


def per_image(restore: Callable[[np.ndarray], np.ndarray], y: torch.Tensor) -> torch.Tensor:
    """Apply ``restore`` ((H, W, C) float in [0, 1] → same) to each row of ``y``, once per
    distinct row."""
    out, done = [], []
    for row in y:
        match = next((r for seen, r in done if torch.equal(seen, row)), None)
        if match is None:
            image = row.detach().cpu().permute(1, 2, 0).numpy().astype(np.float32)
            result = np.asarray(restore(image), np.float32)
            result = result[..., None] if result.ndim == 2 else result  # OpenCV drops C = 1
            match = torch.from_numpy(result).permute(2, 0, 1).to(y.device, y.dtype)
            done.append((row, match))
        out.append(match)
    return torch.stack(out)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class NLMParams:
    strength: float = param(0.6, lo=0.05, hi=5.0,
                            help="filter strength h as a multiple of σ_y (8-bit units)")
    template: int = param(7, lo=3, hi=21, help="patch side (odd)")
    search: int = param(21, lo=5, hi=61, help="search window side (odd)")


def nlm(prior, measurement: Measurement, params: NLMParams, rng) -> Iterator[Step]:
    import cv2

    h = params.strength * measurement.sigma_y * 255.0
    template, search = params.template | 1, params.search | 1

    def restore(image):
        if image.shape[2] == 1:
            return cv2.fastNlMeansDenoising(to_uint8(image[..., 0]), None, h, template, search) / 255.0
        return cv2.fastNlMeansDenoisingColored(to_uint8(image), None, h, h, template, search) / 255.0

    x = per_image(restore, measurement.y)
    yield Step(0, 1, NAN, x, x)


@dataclass
class BM3DParams:
    pass


def bm3d(prior, measurement: Measurement, params: BM3DParams, rng) -> Iterator[Step]:
    import bm3d as reference

    sigma = measurement.sigma_y
    profile = reference.BM3DProfile()
    profile.num_threads = 1  # its threads sum in varying order: results differ by ~1e-7

    def restore(image):
        if sigma == 0:
            return image
        if image.shape[2] == 1:
            return reference.bm3d(image[..., 0].astype(np.float64), sigma, profile)
        return reference.bm3d_rgb(image.astype(np.float64), sigma, profile)

    x = per_image(restore, measurement.y)
    yield Step(0, 1, NAN, x, x)


@dataclass
class BicubicParams:
    pass


def bicubic(prior, measurement: Measurement, params: BicubicParams, rng) -> Iterator[Step]:
    import cv2

    _, height, width = measurement.x_shape
    x = per_image(lambda image: cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC),
                  measurement.y)
    yield Step(0, 1, NAN, x, x)


def noise_only(op) -> bool:
    return isinstance(op, Identity)


def downsampling(op) -> bool:
    return isinstance(op, Downsample)


register(MethodInfo(
    name="nlm", run=nlm, params=NLMParams, kind="baseline", family="Classical",
    summary="Non-local means (OpenCV), filter strength matched to the noise level.",
    nfe=lambda p: 0, needs_prior=False, generates=False, supports=noise_only,
    example_degradation="noise=0.1"))

register(MethodInfo(
    name="bm3d", run=bm3d, params=BM3DParams, kind="baseline", family="Classical",
    summary="BM3D (reference implementation) at the true noise level.",
    nfe=lambda p: 0, needs_prior=False, generates=False, supports=noise_only,
    example_degradation="noise=0.1"))

register(MethodInfo(
    name="bicubic", run=bicubic, params=BicubicParams, kind="baseline", family="Classical",
    summary="Bicubic upsampling (OpenCV) of a block-averaged image.",
    nfe=lambda p: 0, needs_prior=False, generates=False, supports=downsampling,
    example_degradation="downsample=2,noise=0.01"))
