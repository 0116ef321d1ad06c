"""Any-size inference for a fully-convolutional network: padding and blended tiles.

Decisions:

* Padding: H and W are reflect-padded (bottom/right) up to the network's multiple (one
  factor 2 per down-sampling) and the output is cropped back, so every level of the
  U-Net sees whole pixels.
* Memory bound: one network call sees at most `MAX_TILE_PIXELS` pixels summed over the
  batch (1024×1024 for one image; 512×512 each for four). Above it the image is cut
  into square tiles of side ``√(MAX_TILE_PIXELS / B)`` (rounded down to the multiple),
  overlapping by at least `OVERLAP` pixels, with start offsets on the multiple's grid
  so every tile's down-sampling grid is the whole image's.
* Blending: each tile's output is weighted by a separable window that rises as
  ``sin²`` across the overlap on every side that has a neighbour (flat 1 elsewhere, and
  at the image border), and the weighted sum is divided by the summed weights. Tile
  borders then fade out where their zero-padded convolutions differ from the whole
  image; with a network of bounded receptive field (no normalisation, no attention) the
  tiled and the whole-image outputs agree closely (tests/test_photo.py measures it).
* Works under autograd (DPS differentiates through the denoiser): tiles are accumulated
  with out-of-place slices' in-place adds, which autograd supports.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

MAX_TILE_PIXELS = 1024 * 1024
OVERLAP = 64
MIN_TILE = 128


def tile_side(batch: int, multiple: int, max_pixels: int = MAX_TILE_PIXELS) -> int:
    """The side of square tiles for a batch: ``√(max_pixels / batch)`` on the multiple."""
    side = int(math.isqrt(max_pixels // max(batch, 1))) // multiple * multiple
    return max(side, MIN_TILE // multiple * multiple, 2 * OVERLAP + multiple)


def tile_starts(n: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Start offsets (multiples of ``multiple``) of tiles covering ``n`` pixels, each
    neighbouring pair overlapping by ≥ ``overlap``, spread evenly."""
    if n <= tile:
        return [0]
    count = math.ceil((n - tile) / (tile - overlap)) + 1
    return [round(i * (n - tile) / (count - 1) / multiple) * multiple for i in range(count)]


def window(size: int, start: int, n: int, overlap: int, like: torch.Tensor) -> torch.Tensor:
    """1-D blending weights of a tile: sin² ramps across the overlap on interior sides."""
    w = torch.ones(size, dtype=like.dtype, device=like.device)
    ramp = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=like.dtype, device=like.device)
                                      + 0.5) / overlap) ** 2
    if start > 0:
        w[:overlap] = ramp
    if start + size < n:
        w[-overlap:] = ramp.flip(0)
    return w


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def tiled_apply(network: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, multiple: int,
                max_pixels: int = MAX_TILE_PIXELS, overlap: int = OVERLAP) -> torch.Tensor:
    """``network(x)`` for a fully-convolutional ``network`` on a batch of any H×W, with at
    most ``max_pixels`` (summed over the batch) per call (see module doc)."""
    height, width = x.shape[-2:]
    x = pad_to_multiple(x, multiple)
    padded_h, padded_w = x.shape[-2:]
    batch = x.shape[0]
    if batch * padded_h * padded_w <= max_pixels:
        return network(x)[..., :height, :width]
    side = tile_side(batch, multiple, max_pixels)
    out, total = None, torch.zeros(padded_h, padded_w, dtype=x.dtype, device=x.device)
    for top in tile_starts(padded_h, side, overlap, multiple):
        for left in tile_starts(padded_w, side, overlap, multiple):
            rows, cols = slice(top, top + side), slice(left, left + side)
            patch = network(x[..., rows, cols])
            weight = (window(patch.shape[-2], top, padded_h, overlap, x)[:, None]
                      * window(patch.shape[-1], left, padded_w, overlap, x)[None, :])
            if out is None:
                out = patch.new_zeros(*patch.shape[:-2], padded_h, padded_w)
            out[..., rows, cols] += patch * weight
            total[rows, cols] += weight
    return (out / total)[..., :height, :width]
