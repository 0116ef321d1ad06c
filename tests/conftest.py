"""Shared test fixtures.

Every test runs as on a machine without Fashion-MNIST: `pytest_configure` points
``$FASHION_MNIST_DIR`` (which every loader honours, engine.io.data) at an empty folder
for the whole session, subprocesses included, so `make test` (= CI) proves the
no-dataset case on every run and no test's outcome depends on the dataset silently.
A test that needs the real dataset is marked ``@pytest.mark.dataset``: it sees the
folder the user configured (``$FASHION_MNIST_DIR`` or the Debian path) and skips
with a one-line reason when that folder lacks the IDX files. Settings go to a
temporary folder the same way (``$RESTORATION_STUDIO_SETTINGS``, ``$XDG_CONFIG_HOME``).
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
    # Settings (the studio's, and Qt's own such as QFileDialog's) go to a temporary
    # folder for the whole session, subprocesses included: no test reads or writes the
    # user's ~/.config (studio.app.settings_store).
    config._settings_dir = tempfile.mkdtemp(prefix="studio-settings-")
    os.environ["RESTORATION_STUDIO_SETTINGS"] = os.path.join(config._settings_dir, "studio.ini")
    os.environ["XDG_CONFIG_HOME"] = config._settings_dir


def pytest_unconfigure(config):
    shutil.rmtree(config._empty_data_dir, ignore_errors=True)
    shutil.rmtree(config._settings_dir, ignore_errors=True)
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


# --- a throw-away model kind and method, registered for one test only -------------------

TOY_TASK = "downsample=2,noise=0.02"


class ToyUpsampler:
    """A task-bound model of a new kind: ``sample(y, z) = nearest-upsampled y + g·z``."""

    kind = "toy-upsampler"
    capabilities = frozenset({"task-sample"})
    exact = False

    def __init__(self, name: str, gain: torch.Tensor, task: str):
        self.name, self.gain, self.task = name, gain, task
        self.shape, self.data_range = (1, 28, 28), (0.0, 1.0)
        self.nfe = 0

    def sample(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return y.repeat_interleave(2, -2).repeat_interleave(2, -1) + self.gain * z


def load_toy_upsampler(model_dir, device):
    import json

    from engine.priors.learned import read_safetensors

    config = json.loads((model_dir / "config.json").read_text())
    weights = read_safetensors(model_dir / "model.safetensors")
    return ToyUpsampler(model_dir.name, weights["gain"].to(device), config["task"])


def toy_task_sample(prior, measurement, params, rng):
    """Upsample y, then draw the model's sample: two Steps with documented extras."""
    from engine.core.step import Step

    up = measurement.y.repeat_interleave(2, -2).repeat_interleave(2, -1)
    yield Step(0, 2, float("nan"), up, up, {"level": 1})
    x = prior.sample(measurement.y, rng.latent(*prior.shape))
    residual = (x[:, :, ::2, ::2] - measurement.y).flatten(1).norm(dim=1)
    yield Step(1, 2, float("nan"), x, x, {"level": 0, "residual": residual})


@pytest.fixture
def toy_kind(monkeypatch, tmp_path):
    """A models folder holding one model of a new kind (and one of an unknown kind), the
    kind's loader and a method needing it, all registered for this test only."""
    import json
    from dataclasses import dataclass

    from safetensors.torch import save_file

    from engine.core import capabilities, registry
    from engine.priors import catalog

    models = tmp_path / "models"
    (models / "toy-up").mkdir(parents=True)
    (models / "toy-up" / "config.json").write_text(json.dumps(
        {"kind": "toy-upsampler", "shape": [1, 28, 28], "task": TOY_TASK}))
    save_file({"gain": torch.tensor(0.01)}, str(models / "toy-up" / "model.safetensors"))
    (models / "mystery").mkdir()
    (models / "mystery" / "config.json").write_text(json.dumps({"kind": "mystery", "shape": [1, 28, 28]}))
    monkeypatch.setattr(catalog, "MODELS_DIR", models)
    monkeypatch.setitem(capabilities.MODEL_KINDS, "toy-upsampler", capabilities.ModelKind(
        "toy-upsampler", load_toy_upsampler, frozenset({"task-sample"})))

    @dataclass
    class ToyParams:
        pass

    info = registry.MethodInfo(
        name="toy-task-sample", run=toy_task_sample, params=ToyParams, kind="solver",
        family="Test", summary="A throw-away task-bound sampler.", nfe=lambda p: 1,
        needs=("task-sample",), generates=False, default_model="toy-up",
        example_model="toy-up", example_degradation=TOY_TASK, latent="z")
    registry.methods()  # the real modules register first
    monkeypatch.setitem(registry._METHODS, info.name, info)
    yield info
    catalog.CACHE.clear()
