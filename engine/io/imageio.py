"""Reading images into float tensors, with explicit conversions and one error type.

`load_image` returns ``(C, H, W)`` float32 in [0, 1] with C = 1 (gray) or 3 (RGB):

* gray ``L``, 1-bit ``1`` → 1 channel; ``I;16``/``I`` (16/32-bit integer) scaled by
  65535 and clipped; ``F`` (float) clipped to [0, 1];
* ``RGB``; ``P`` (palette) and ``CMYK``/``YCbCr`` converted to RGB;
  ``RGBA``/``LA``/``PA`` composited on **black** (the Fashion-MNIST background),
  alpha dropped.

Every failure — missing file, a folder, empty file, truncated data, not an image, dimensions
beyond `MAX_PIXELS` (a decompression bomb) — raises `BadImageError` with the file name
and the reason, and nothing else.

`conform` converts an image to a model's ``(C, H, W)`` and says in words what it did
(channels, centre crop, resize), so nothing is converted silently.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from engine.core.step import BadInputError

MAX_SIDE = 16384
MAX_PIXELS = 40_000_000


class BadImageError(BadInputError):
    """An image file that cannot be read; the message names the file and the reason."""


def _check_size(path: Path, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise BadImageError(f"{path.name}: image has no pixels ({width}×{height})")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise BadImageError(f"{path.name}: {width}×{height} pixels is larger than the "
                            f"{MAX_PIXELS // 1_000_000} MP this program accepts")


def _to_array(image: Image.Image) -> np.ndarray:
    """Pixel data as float32 (H, W, C) in [0, 1] following the module's conversions."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0, 1)[..., None]
    if mode == "F":
        return np.asarray(image, dtype=np.float32)[..., None]  # checked, then clipped by load_image
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    if image.mode in ("RGBA", "LA"):  # composite on black: colour × alpha
        array = array[..., :-1] * array[..., -1:]
    return array


def load_image(path: str | Path) -> torch.Tensor:
    """Read PNG/JPEG/TIFF/BMP/… into ``(C, H, W)`` float32 in [0, 1] (see module doc)."""
    path = Path(path)
    if path.is_dir():
        raise BadImageError(f"{path.name or path}: a folder, not an image file")
    if not path.is_file():
        raise BadImageError(f"{path.name}: no such file")
    if path.stat().st_size == 0:
        raise BadImageError(f"{path.name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(path, *image.size)
                image.load()
                array = _to_array(image)
    except BadImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as err:
        raise BadImageError(f"{path.name}: not a readable image ({err.__class__.__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise BadImageError(f"{path.name}: damaged or truncated image ({err})") from None
    if not np.isfinite(array).all():
        raise BadImageError(f"{path.name}: {int((~np.isfinite(array)).sum())} pixel value(s) "
                            "are NaN or infinite")
    array = np.clip(array, 0, 1)  # float images may hold any value
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def conform(image: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, str | None]:
    """Convert ``image`` (C, H, W) to ``shape``; the note says what was done (or None)."""
    channels, height, width = shape
    notes = []
    c, h, w = image.shape
    if c != channels:
        image = image.mean(0, keepdim=True) if channels == 1 else image[:1].expand(channels, -1, -1)
        notes.append(f"converted {'RGB' if c == 3 else 'gray'}→{'gray' if channels == 1 else 'RGB'}")
    if h * width != w * height:  # centre-crop to the target aspect ratio
        new_h, new_w = min(h, w * height // width), min(w, h * width // height)
        top, left = (h - new_h) // 2, (w - new_w) // 2
        image = image[:, top:top + new_h, left:left + new_w]
        notes.append(f"centre-cropped {w}×{h}→{new_w}×{new_h}")
        h, w = new_h, new_w
    if (h, w) != (height, width):
        image = F.interpolate(image[None], size=(height, width), mode="bilinear",
                              antialias=True, align_corners=False)[0].clamp(0, 1)
        notes.append(f"resized {w}×{h}→{width}×{height}")
    return image.contiguous(), (", ".join(notes) or None)
