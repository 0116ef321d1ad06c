"""Image loading: every mode converts explicitly; every bad file is one clear error."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from engine.io.imageio import BadImageError, conform, load_image

RNG = np.random.default_rng(0)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A PNG whose header claims 100000×100000 pixels."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize("mode, suffix, channels", [
    ("L", ".png", 1), ("RGB", ".png", 3), ("RGBA", ".png", 3), ("P", ".png", 3),
    ("I;16", ".png", 1), ("1", ".png", 1), ("LA", ".png", 1), ("RGB", ".jpg", 3),
    ("L", ".tif", 1), ("RGB", ".bmp", 3),
])
def test_every_mode_loads_into_unit_range(tmp_path, mode, suffix, channels):
    pixels = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image).astype(np.uint16) * 257))
    path = tmp_path / f"x{suffix}"
    image.save(path)
    x = load_image(path)
    assert x.shape == (channels, 20, 30) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.max()) > 0.5


def test_sixteen_bit_scale_and_alpha_on_black(tmp_path):
    Image.fromarray(np.full((4, 4), 65535 // 2, np.uint16)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png")[0, 0, 0].item() == pytest.approx(0.5, abs=1e-4)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 51  # red at 20 % opacity
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png")[:, 0, 0].tolist() == pytest.approx(
        [200 / 255 * 0.2, 0, 0], abs=1e-6)


def bad_files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    corpus = {"empty.png": b"", "truncated.png": data[: len(data) // 2],
              "noise.png": RNG.integers(0, 256, 500, dtype=np.uint8).tobytes(),
              "notes.txt": b"this is not an image\n", "bomb.png": bomb_png()}
    for name, content in corpus.items():
        (tmp_path / name).write_bytes(content)
    return [*corpus, "missing.png"]


def test_every_bad_file_is_one_clear_error(tmp_path):
    for name in bad_files(tmp_path):
        with pytest.raises(BadImageError) as err:
            load_image(tmp_path / name)
        assert name in str(err.value), str(err.value)


def test_conform_says_what_it_did():
    image = torch.rand(3, 48, 64)
    out, note = conform(image, (1, 28, 28))
    assert out.shape == (1, 28, 28)
    assert note == "converted RGB→gray, centre-cropped 64×48→48×48, resized 48×48→28×28"
    same, none = conform(out, (1, 28, 28))
    assert none is None and torch.equal(same, out)
    # A constant image stays constant through crop and resize.
    flat, _ = conform(torch.full((1, 40, 30), 0.25), (3, 28, 28))
    assert torch.allclose(flat, torch.full((3, 28, 28), 0.25))
