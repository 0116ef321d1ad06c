"""Shared test fixtures."""

import pytest
import torch


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
