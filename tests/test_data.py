"""IDX reading, Fashion-MNIST loading and the shipped demo set."""

import gzip
import struct

import numpy as np
import pytest
import torch

from engine.io import data
from engine.core.step import BadInputError


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)


def test_read_idx_plain_and_gzip(tmp_path, images):
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = data.read_idx(tmp_path / name)
        assert out.shape == (5, 4, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, images)


def test_read_idx_big_endian_int32(tmp_path):
    values = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    (tmp_path / "b").write_bytes(idx_bytes(values, 0x0C))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "b"), values)


@pytest.mark.parametrize("corrupt", [
    lambda raw: b"\x01\x00" + raw[2:],  # bad magic
    lambda raw: raw[:2] + b"\x07" + raw[3:],  # unknown type code
    lambda raw: raw[:-1],  # truncated data
    lambda raw: raw + b"\x00",  # trailing bytes
    lambda raw: raw[:6],  # truncated header
])
def test_malformed_idx_is_refused(tmp_path, images, corrupt):
    path = tmp_path / "bad"
    path.write_bytes(corrupt(idx_bytes(images)))
    with pytest.raises(BadInputError):
        data.read_idx(path)


def test_broken_gzip_is_refused(tmp_path, images):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:-12])
    with pytest.raises(BadInputError):
        data.read_idx(path)


def test_load_from_a_folder_of_idx_files(tmp_path, images):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    pixels = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pixels)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    x, y = data.load_fashion_mnist("test", tmp_path)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert float(x[2, 0, 3, 4]) == pytest.approx(pixels[2, 3, 4] / 255)
    assert y.dtype == torch.int64 and y.tolist() == [3, 1, 4, 1, 5]


def write_fashion_mnist(folder, n=5):
    """The four upstream IDX files (gzipped), n random images per split."""
    folder.mkdir()
    rng = np.random.default_rng(2)
    for split in ("train", "t10k"):
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pixels)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder


def test_missing_dataset_says_how_to_get_it_in_one_line(tmp_path):
    with pytest.raises(BadInputError) as err:
        data.load_fashion_mnist("train", tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "apt-get install dataset-fashion-mnist" in message  # Debian
    assert "--data DIR" in message and "FASHION_MNIST_DIR=DIR" in message  # anywhere else
    with pytest.raises(BadInputError, match="split"):
        data.load_fashion_mnist("validation", tmp_path)


def test_the_environment_variable_chooses_the_folder_and_an_explicit_one_wins(tmp_path, monkeypatch):
    folder = write_fashion_mnist(tmp_path / "fmnist", n=3)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folder))
    assert data.data_dir() == folder and data.fashion_mnist_available()
    x, y = data.load_fashion_mnist("train")
    assert x.shape == (3, 1, 28, 28) and y.shape == (3,)
    assert not data.fashion_mnist_available(tmp_path)  # explicit folder beats the variable
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.data_dir() == data.DEFAULT_DATA_DIR


def test_the_suite_runs_without_the_dataset():
    """tests/conftest.py hides Fashion-MNIST from every test not marked ``dataset``."""
    assert not data.fashion_mnist_available()
    with pytest.raises(BadInputError, match="FASHION_MNIST_DIR"):
        data.load_fashion_mnist("test")


def test_train_reads_the_folder_given_with_data(tmp_path, capsys):
    from engine.train import main

    out = tmp_path / "run"
    assert main(["vp", "--steps", "1", "--out", str(out), "--quiet", "--threads", "1"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().out
    folder = write_fashion_mnist(tmp_path / "fmnist", n=4)
    assert main(["features", "--data", str(folder), "--steps", "1", "--batch", "4",
                 "--out", str(out), "--quiet", "--threads", "1"]) == 0
    assert (out / "model.safetensors").exists()


def test_demo_set_is_balanced_and_in_range():
    x, y = data.demo_images()
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert torch.bincount(y, minlength=10).tolist() == [7, 7, 7, 7, 6, 6, 6, 6, 6, 6]
    assert len(set(map(bytes, (x * 255).to(torch.uint8).numpy()))) == 64  # 64 distinct images


def test_demo_gallery_pngs_match_the_demo_set():
    from PIL import Image

    x, y = data.demo_images()
    pngs = sorted(data.SAMPLES_DIR.glob("[0-9][0-9]_*.png"))
    assert len(pngs) == 64
    for k in (0, 37, 63):
        assert pngs[k].name == f"{k:02d}_{data.CLASS_NAMES[y[k]]}.png"
        pixels = np.asarray(Image.open(pngs[k]))
        np.testing.assert_array_equal(pixels, (x[k, 0] * 255).round().to(torch.uint8).numpy())


@pytest.mark.dataset
def test_demo_set_comes_from_the_test_split():
    test_x, test_y = data.load_fashion_mnist("test")
    x, y = data.demo_images()
    index = data.demo_selection(test_y)
    assert torch.equal(test_y[index], y)
    assert torch.allclose(test_x[index], x, atol=1 / 510)


def test_range_conversion_round_trips():
    x = torch.linspace(0, 1, 11)
    assert torch.allclose(data.to_model_range(x), torch.linspace(-1, 1, 11), atol=1e-6)
    assert torch.allclose(data.to_image_range(data.to_model_range(x)), x)
