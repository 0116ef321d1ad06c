"""Opt-in torch.compile (engine.models.compile): same numbers as eager, graphs cached on
disk, a training step through the compiled network. Slow: compiling takes 10–60 s on
the shared 2-core machine."""

from __future__ import annotations

import pytest
import torch

from engine.models.compile import CACHE_ENV, compile_prior
from engine.priors.learned import load_learned
from engine.train.loop import TrainSettings
from engine.train.photo import train_photo

pytestmark = pytest.mark.slow


def synthetic_photos():
    g = torch.Generator().manual_seed(0)
    return {"a": torch.rand(3, 100, 120, generator=g), "b": torch.rand(3, 96, 96, generator=g)}


def test_compiled_prior_denoises_like_eager_and_caches_its_graphs(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    model = tmp_path / "photo"
    train_photo(model, TrainSettings(steps=2, batch=2, warmup=1, checkpoint_every=2),
                photos=synthetic_photos(), progress=False)
    prior = load_learned(model)
    torch.nn.init.normal_(prior.network.conv_out.weight, std=0.05,
                          generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = prior.denoise(x, 0.3)
        assert compile_prior(prior) and not compile_prior(prior)  # once only
        compiled = prior.denoise(x, 0.3)
    assert eager.abs().max() > 0.1
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4)
    assert any((tmp_path / "cache").rglob("*.py")), "no generated code in the cache folder"
    assert prior.network.state_dict().keys()  # weights shared with the eager module


def test_training_runs_through_the_compiled_network(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    settings = TrainSettings(steps=3, batch=2, warmup=1, checkpoint_every=3, compile=True)
    info = train_photo(tmp_path / "run", settings, photos=synthetic_photos(), progress=False)
    assert info["steps"] == 3 and torch.isfinite(torch.tensor(info["loss"]))
    assert (tmp_path / "run" / "model.safetensors").exists()  # the EMA copy, uncompiled
