"""Shared test fixtures.

Every test runs as on a machine without Fashion-MNIST: `pytest_configure` points
``$FASHION_MNIST_DIR`` (which every loader honours, engine.io.data) at an empty folder
for the whole session, subprocesses included, so `make test` (= CI) proves the
no-dataset case on every run and no test's outcome depends on the dataset silently.
A test that needs the real dataset is marked ``@pytest.mark.dataset``: it sees the
folder the user configured (``$FASHION_MNIST_DIR`` or the Debian path) and skips
with a one-line reason when that folder lacks the IDX files.
"""

import os
import shutil
import tempfile

import pytest
import torch

_USER_DATA_DIR = os.environ.get("FASHION_MNIST_DIR")


def pytest_configure(config):
    config.addinivalue_line("markers", "dataset: needs the Fashion-MNIST IDX files (skipped without)")
    config._empty_data_dir = tempfile.mkdtemp(prefix="no-fashion-mnist-")
    os.environ["FASHION_MNIST_DIR"] = config._empty_data_dir


def pytest_unconfigure(config):
    shutil.rmtree(config._empty_data_dir, ignore_errors=True)
    if _USER_DATA_DIR is None:
        os.environ.pop("FASHION_MNIST_DIR", None)
    else:
        os.environ["FASHION_MNIST_DIR"] = _USER_DATA_DIR


@pytest.fixture(autouse=True)
def _real_dataset_only_when_marked(request, monkeypatch):
    if request.node.get_closest_marker("dataset") is None:
        return
    from engine.io.data import data_dir, fashion_mnist_available

    if _USER_DATA_DIR is None:
        monkeypatch.delenv("FASHION_MNIST_DIR")
    else:
        monkeypatch.setenv("FASHION_MNIST_DIR", _USER_DATA_DIR)
    if not fashion_mnist_available():
        pytest.skip(f"Fashion-MNIST not installed in {data_dir()}")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: intra-op threads only add synchronisation (20× slower on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
