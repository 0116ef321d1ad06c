"""Exports: sample grids with the recipe embedded, trajectories, metrics tables.

* Grids are PNGs whose ``restoration-studio-recipe`` text chunk (iTXt, UTF-8) holds the
  full recipe as JSON (method, parameters, seeds and the measurement-noise scheme —
  see `engine.core.rng` —, degradation, model, versions);
  `read_recipe` reads it back, and the GUI's "Open recipe" restores the settings.
* Trajectories: ``.gif`` (Pillow, loops forever) or ``.mp4`` (OpenCV's ``mp4v``).
* Metrics: ``.json`` or ``.csv``.

Every write is atomic: a temporary file in the destination folder, then
``os.replace``; a failed write leaves neither a partial file nor the temporary one,
and raises `ExportError` naming the path and the reason. Several outputs of one run
(grid, trajectory, metrics) are written all or none (`atomic_write_all`): each
``*_writer`` returns ``(path, write)`` without touching the disk, and ``*_path``
checks a destination before a run starts. New files get the mode a plain ``open``
gives (0o666 less the umask), not the 0600 of the temporary file.

* A grid is written in the format its extension names (``.png`` appended when there is
  none; an extension that is not an image format is refused); only PNG holds the recipe.
* JSON metrics are strict JSON: NaN and ±Infinity become null with a ``KEY_note``
  saying why (an infinite PSNR: the result equals the clean image).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from engine.core.step import BadInputError, EngineError

RECIPE_KEY = "restoration-studio-recipe"
GRID_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")  # named in errors
_PSNR_INFINITE = {"inf": "infinite: the result equals the clean image exactly (zero error)"}
NON_FINITE_NOTES = {"psnr": _PSNR_INFINITE, "psnr_mean": _PSNR_INFINITE}
_UMASK_LOCK = threading.Lock()


class ExportError(EngineError):
    """A file could not be written; the message names the path and the reason."""


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file: 0o666 less the umask."""
    try:
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        with _UMASK_LOCK:  # os.umask can only be read by setting it
            umask = os.umask(0o022)
            os.umask(umask)
    return 0o666 & ~umask


def atomic_write_all(writes: list[tuple[str | Path, Callable[[Path], None]]]) -> list[Path]:
    """Write several files, all or none: ``write(tmp)`` for each ``(path, write)`` on a
    temporary file beside its path, then every one is renamed into place."""
    staged: list[tuple[Path, Path]] = []
    path = None
    try:
        for path, write in writes:
            path = Path(path)
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
            os.close(fd)
            staged.append((Path(name), path))
            write(Path(name))
            os.chmod(name, _file_mode())  # mkstemp creates 0600
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ExportError(f"cannot write {path}: {reason}") from None
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return [path for _, path in staged]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    return atomic_write_all([(path, write)])[0]


def check_folder(path: str | Path) -> Path:
    """``path`` as a Path, refused at once when its folder does not exist or it is a
    folder itself (then no rename of `atomic_write_all` can fail after another one)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a folder")
    return path


def grid_path(path: str | Path) -> tuple[Path, str]:
    """(path, Pillow format) for a grid: the format the extension names (``.png`` added
    when there is none); an extension that is not an image format Pillow writes is refused."""
    path = check_folder(path)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt not in Image.SAVE:
        known = sorted(ext for ext, f in Image.registered_extensions().items()
                       if f in Image.SAVE and ext in GRID_EXTENSIONS)
        raise ExportError(f"cannot write {path}: {path.suffix} is not an image format; "
                          f"use {', '.join(known)}")
    return path, fmt


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


def grid_writer(path: str | Path, images: torch.Tensor, recipe: dict, nrow: int | None = None,
                scale: int = 1) -> tuple[Path, Callable[[Path], None]]:
    """(path, write) of a grid of ``images`` in the format its extension names; a PNG
    embeds ``recipe`` as JSON (other formats hold the pixels only)."""
    path, fmt = grid_path(path)
    grid = Image.fromarray(make_grid(images, nrow, scale=scale))
    if fmt != "PNG":
        return path, lambda tmp: grid.save(tmp, format=fmt)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECIPE_KEY, json.dumps(recipe, default=str, ensure_ascii=False))
    return path, lambda tmp: grid.save(tmp, format="PNG", pnginfo=info)


def save_grid(path: str | Path, images: torch.Tensor, recipe: dict, nrow: int | None = None,
              scale: int = 1) -> Path:
    """Write a grid of ``images`` (a PNG with ``recipe`` embedded as JSON, see `grid_writer`)."""
    return atomic_write(*grid_writer(path, images, recipe, nrow, scale))


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
    except (json.JSONDecodeError, RecursionError) as err:
        raise BadInputError(f"{path.name}: the embedded recipe is damaged "
                            f"({err if isinstance(err, ValueError) else 'nested too deeply'})") from None


def _video_frames(frames: list[np.ndarray], scale: int) -> list[np.ndarray]:
    if not frames:
        raise ExportError("nothing to export: the trajectory is empty")
    out = []
    for frame in frames:
        frame = frame if frame.ndim == 3 else frame[..., None]
        frame = np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame
        out.append(frame.repeat(scale, 0).repeat(scale, 1))
    return out


def trajectory_path(path: str | Path) -> Path:
    """``path`` when it names a trajectory format (.gif or .mp4) in an existing folder."""
    path = check_folder(path)
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise ExportError(f"cannot write {path}: trajectories are .gif or .mp4")
    return path


def trajectory_writer(path: str | Path, frames: list[np.ndarray], fps: float = 10,
                      scale: int = 4) -> tuple[Path, Callable[[Path], None]]:
    """(path, write) of frames (H, W, C) uint8 as ``.gif`` or ``.mp4`` (nearest ``scale``)."""
    path = trajectory_path(path)
    frames = _video_frames(frames, scale)
    if path.suffix.lower() == ".mp4":
        return path, lambda tmp: _write_mp4(tmp, frames, fps)
    pictures = [Image.fromarray(f) for f in frames]
    return path, lambda tmp: pictures[0].save(tmp, format="GIF", save_all=True,
                                              append_images=pictures[1:],
                                              duration=int(1000 / fps), loop=0)


def save_trajectory(path: str | Path, frames: list[np.ndarray], fps: float = 10,
                    scale: int = 4) -> Path:
    """Frames (H, W, C) uint8 → ``.gif`` or ``.mp4`` (nearest-neighbour ``scale``)."""
    return atomic_write(*trajectory_writer(path, frames, fps, scale))


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


def metrics_path(path: str | Path) -> Path:
    """``path`` when it names a metrics format (.json or .csv) in an existing folder."""
    path = check_folder(path)
    if path.suffix.lower() not in (".json", ".csv"):
        raise ExportError(f"cannot write {path}: metrics are .json or .csv")
    return path


def json_safe(row: dict) -> dict:
    """A flat row with NaN/±Inf replaced by null and a ``KEY_note`` saying what it was
    (JSON has no such numbers; Python's ``Infinity`` is not valid JSON)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
            out.setdefault(f"{key}_note", NON_FINITE_NOTES.get(key, {}).get(
                "inf" if value > 0 else "-inf" if value < 0 else "nan", f"{value} (not a JSON number)"))
        else:
            out[key] = value
    return out


def metrics_writer(path: str | Path, rows: list[dict] | dict) -> tuple[Path, Callable[[Path], None]]:
    """(path, write) of metrics as pretty JSON, or CSV over the union of the rows' keys."""
    path = metrics_path(path)
    if path.suffix.lower() == ".json":
        safe = json_safe(rows) if isinstance(rows, dict) else [json_safe(row) for row in rows]
        text = json.dumps(safe, indent=2, default=str, ensure_ascii=False, allow_nan=False)
        return path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8")
    rows = [rows] if isinstance(rows, dict) else rows
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    return path, write


def save_metrics(path: str | Path, rows: list[dict] | dict) -> Path:
    """Metrics as pretty JSON (non-finite numbers as null, see `json_safe`), or CSV."""
    return atomic_write(*metrics_writer(path, rows))
