"""Exports: sample grids with the recipe embedded, trajectories, metrics tables.

* Grids are PNGs whose ``restoration-studio-recipe`` text chunk (iTXt, UTF-8) holds the
  full recipe as JSON (method, parameters, seeds and the measurement-noise scheme —
  see `engine.core.rng` —, degradation, model, versions);
  `read_recipe` reads it back, and the GUI's "Open recipe" restores the settings.
* Trajectories: ``.gif`` (Pillow, loops forever) or ``.mp4`` (OpenCV's ``mp4v``).
* Metrics: ``.json`` or ``.csv``.

Every write is atomic: a temporary file in the destination folder, then
``os.replace``; a failed write leaves neither a partial file nor the temporary one,
and raises `ExportError` naming the path and the reason.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from engine.core.step import BadInputError, EngineError

RECIPE_KEY = "restoration-studio-recipe"


class ExportError(EngineError):
    """A file could not be written; the message names the path and the reason."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ExportError(f"cannot write {path}: {reason}") from None
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return path


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2,
              scale: int = 1) -> np.ndarray:
    """(N, C, H, W) in [0, 1] → one (H', W', 3) uint8 mosaic, white gutters."""
    images = images.detach().float().cpu().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, _, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    h, w = h * scale, w * scale
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k, image in enumerate(images):
        tile = (image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        tile = tile.repeat(scale, 0).repeat(scale, 1)  # nearest-neighbour magnification
        top, left = pad + (k // nrow) * (h + pad), pad + (k % nrow) * (w + pad)
        grid[top:top + h, left:left + w] = tile
    return grid


def save_grid(path: str | Path, images: torch.Tensor, recipe: dict, nrow: int | None = None,
              scale: int = 1) -> Path:
    """Write a PNG grid of ``images`` with ``recipe`` embedded as JSON."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECIPE_KEY, json.dumps(recipe, default=str, ensure_ascii=False))
    grid = Image.fromarray(make_grid(images, nrow, scale=scale))
    return atomic_write(path, lambda tmp: grid.save(tmp, format="PNG", pnginfo=info))


def read_recipe(path: str | Path) -> dict:
    """The recipe embedded by `save_grid` (clear error when there is none)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            text = image.text.get(RECIPE_KEY) if hasattr(image, "text") else None
    except (OSError, ValueError) as err:
        raise BadInputError(f"{path.name}: not a readable PNG ({err})") from None
    if text is None:
        raise BadInputError(f"{path.name}: no Restoration Studio recipe in this image")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInputError(f"{path.name}: the embedded recipe is damaged ({err})") from None


def _video_frames(frames: list[np.ndarray], scale: int) -> list[np.ndarray]:
    if not frames:
        raise ExportError("nothing to export: the trajectory is empty")
    out = []
    for frame in frames:
        frame = frame if frame.ndim == 3 else frame[..., None]
        frame = np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame
        out.append(frame.repeat(scale, 0).repeat(scale, 1))
    return out


def save_trajectory(path: str | Path, frames: list[np.ndarray], fps: float = 10,
                    scale: int = 4) -> Path:
    """Frames (H, W, C) uint8 → ``.gif`` or ``.mp4`` (nearest-neighbour ``scale``)."""
    path = Path(path)
    frames = _video_frames(frames, scale)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        pictures = [Image.fromarray(f) for f in frames]
        return atomic_write(path, lambda tmp: pictures[0].save(
            tmp, format="GIF", save_all=True, append_images=pictures[1:],
            duration=int(1000 / fps), loop=0))
    if suffix == ".mp4":
        return atomic_write(path, lambda tmp: _write_mp4(tmp, frames, fps))
    raise ExportError(f"cannot write {path}: trajectories are .gif or .mp4")


def _write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import cv2

    h, w = (frames[0].shape[0] + 1) // 2 * 2, (frames[0].shape[1] + 1) // 2 * 2  # even size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(0, "the MP4 encoder could not be opened")
    try:
        for frame in frames:
            padded = np.zeros((h, w, 3), dtype=np.uint8)
            padded[:frame.shape[0], :frame.shape[1]] = frame
            writer.write(cv2.cvtColor(padded, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def save_metrics(path: str | Path, rows: list[dict] | dict) -> Path:
    """Metrics as pretty JSON, or CSV over the union of the rows' keys."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(rows, indent=2, default=str, ensure_ascii=False)
        return atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    if suffix == ".csv":
        rows = [rows] if isinstance(rows, dict) else rows
        keys = list(dict.fromkeys(k for row in rows for k in row))

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)
        return atomic_write(path, write)
    raise ExportError(f"cannot write {path}: metrics are .json or .csv")
