"""Datasets: Fashion-MNIST from IDX files and the small demo set shipped in assets/.

Decisions:

* Fashion-MNIST is read from one folder holding the four IDX files as distributed
  upstream (``train-images-idx3-ubyte.gz`` …, gzipped or plain), chosen by `data_dir`:
  an explicit folder (``engine train --data DIR``), else ``$FASHION_MNIST_DIR``, else
  the path of Debian's ``dataset-fashion-mnist`` package. Every loader goes through
  `load_fashion_mnist`, so the variable reaches all of them (training, model cards,
  eval, W2 schedules). A missing dataset is a one-line `BadInputError` saying both ways
  to get it. Images are returned in image units: float32 ``(N, 1, 28, 28)`` in [0, 1],
  native 28×28, no padding.
* The demo set (``assets/samples/``) is 64 *test* images, 6–7 per class, chosen by a
  fixed rule (`DEMO_SEED`) so the app runs without the dataset installed. It is stored
  once as ``demo.safetensors`` (uint8 images + labels) and as small PNGs
  ``NN_<class>.png`` for the GUI gallery; `build_demo_set` rebuilds both.
* Learned models work in [−1, 1]; `to_model_range` / `to_image_range` convert at the
  edges (jobs and training), never inside an algorithm.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from engine.core.step import BadInputError

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist
DATA_DIR_ENV = "FASHION_MNIST_DIR"
HOW_TO_GET = ("install it ('apt-get install dataset-fashion-mnist' on Debian) or download the "
              "four IDX files (train-images-idx3-ubyte.gz, …) from "
              "https://github.com/zalandoresearch/fashion-mnist into a folder and pass "
              f"--data DIR or set {DATA_DIR_ENV}=DIR")
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "samples"
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle-boot")
DEMO_SIZE, DEMO_SEED = 64, 2024

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip): magic ``0 0 type ndim``, big-endian dims, data."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise BadInputError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise BadInputError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise BadInputError(f"{path}: IDX header is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise BadInputError(f"{path}: IDX data holds {len(raw) - header} bytes, "
                            f"the header {dims} needs {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def data_dir(folder: str | Path | None = None) -> Path:
    """Where Fashion-MNIST is read from: ``folder``, else ``$FASHION_MNIST_DIR``, else Debian's."""
    if folder is not None:
        return Path(folder)
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def _locate(folder: Path, stem: str) -> Path | None:
    return next((folder / name for name in (stem + ".gz", stem) if (folder / name).exists()), None)


def _find(folder: Path, stem: str) -> Path:
    path = _locate(folder, stem)
    if path is None:
        raise BadInputError(f"Fashion-MNIST not found: no {stem}(.gz) in {folder}; {HOW_TO_GET}")
    return path


def fashion_mnist_available(folder: str | Path | None = None) -> bool:
    """Whether `data_dir` holds all four IDX files."""
    return all(_locate(data_dir(folder), stem) for stems in _FILES.values() for stem in stems)


def load_fashion_mnist(split: str = "train", folder: str | Path | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64)`` from `data_dir`."""
    if split not in _FILES:
        raise BadInputError(f"unknown split {split!r} (train, test)")
    folder = data_dir(folder)
    image_stem, label_stem = _FILES[split]
    images = read_idx(_find(folder, image_stem))
    labels = read_idx(_find(folder, label_stem))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise BadInputError(f"Fashion-MNIST in {folder}: images {images.shape} and "
                            f"labels {labels.shape} do not match")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] image units → the [−1, 1] range learned models work in."""
    return 2 * x - 1


def to_image_range(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def demo_selection(labels: torch.Tensor, size: int = DEMO_SIZE, seed: int = DEMO_SEED) -> torch.Tensor:
    """Indices of a class-balanced random subset (classes take turns: 0, 1, …, 9, 0, …)."""
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(len(CLASS_NAMES))]
    shuffled = [idx[torch.randperm(len(idx), generator=g)] for idx in per_class]
    return torch.stack([shuffled[k % len(CLASS_NAMES)][k // len(CLASS_NAMES)] for k in range(size)])


def build_demo_set(out_dir: Path = SAMPLES_DIR, folder: str | Path | None = None) -> None:
    """Write ``demo.safetensors`` and the gallery PNGs from the Fashion-MNIST test split."""
    from PIL import Image
    from safetensors.torch import save_file

    images, labels = load_fashion_mnist("test", folder)
    index = demo_selection(labels)
    pixels = (images[index] * 255).round().to(torch.uint8)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"images": pixels.contiguous(), "labels": labels[index].contiguous(),
               "test_index": index.contiguous()}, str(out_dir / "demo.safetensors"))
    for k, (img, label) in enumerate(zip(pixels, labels[index])):
        Image.fromarray(img[0].numpy(), "L").save(out_dir / f"{k:02d}_{CLASS_NAMES[label]}.png")


def demo_images(samples_dir: Path = SAMPLES_DIR) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped demo set: ``(images (64, 1, 28, 28) in [0, 1], labels (64,))``."""
    from safetensors.torch import load_file

    path = samples_dir / "demo.safetensors"
    if not path.exists():
        raise BadInputError(f"demo set {path} is missing; rebuild it with "
                            "engine.io.data.build_demo_set()")
    tensors = load_file(str(path))
    return tensors["images"].float() / 255.0, tensors["labels"].long()
