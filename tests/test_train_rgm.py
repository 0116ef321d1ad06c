"""RGM training (engine.train.rgm): networks, Algorithms 1 and 2 on tiny data, resume,
ablations, the rgm-generator model kind."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from engine.core.jobs import Job, Request
from engine.core.step import BadInputError
from engine.models.rgm import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from engine.priors.rgm import load_rgm_generator
from engine.train.loop import TrainSettings
from engine.train.rgm import RGMOptions, train_rgm

TINY = RGMOptions(generator=GeneratorConfig(channels=8, multipliers=(1, 2), style_dim=16, z_dim=4),
                  discriminator=DiscriminatorConfig(channels=8, multipliers=(1, 2)), lazy=2)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_data(n: int = 32, side: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0))


def test_generator_and_discriminator_shapes_and_latent():
    g, d = Generator(GeneratorConfig()), Discriminator(DiscriminatorConfig())
    y, t, z = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]), torch.randn(4, 32)
    with torch.no_grad():
        x = g(y, t, z)
        other = g(y, t, torch.randn(4, 32))
        assert x.shape == y.shape and x.abs().max() < 1  # tanh output
        assert d(x, t).shape == (4,)
        assert not torch.allclose(x, other)  # z reaches the output through adaptive GN
    no_z = Generator(GeneratorConfig(z_dim=0))
    with torch.no_grad():
        torch.testing.assert_close(no_z(y, t, None), no_z(y, t, torch.randn(4, 1)))


def settings(steps: int) -> TrainSettings:
    return TrainSettings(steps=steps, batch=8, checkpoint_every=2, seed=3)


def test_training_resumes_exactly_and_writes_a_loadable_model(tmp_path):
    straight = tmp_path / "straight"
    train_rgm("rgm-d", straight, settings(4), TINY, data=tiny_data(), progress=False)
    resumed = tmp_path / "resumed"
    train_rgm("rgm-d", resumed, settings(2), TINY, data=tiny_data(), progress=False)
    train_rgm("rgm-d", resumed, settings(4), TINY, data=tiny_data(), resume=True, progress=False)
    a, b = load_rgm_generator(straight), load_rgm_generator(resumed)
    for p, q in zip(a.network.state_dict().values(), b.network.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    config = json.loads((straight / "config.json").read_text())
    assert config["kind"] == "rgm-generator" and config["training"]["steps"] == 4
    assert config["objective"]["lambda_c"] == pytest.approx(3 / 64)  # λ = d/3
    assert (straight / "samples.png").exists() and (straight / "samples_000004.png").exists()
    before = a.nfe
    y = a.sample_prior(torch.randn(2, 1, 8, 8))
    assert a.generate(y, 3, torch.randn(2, 4)).shape == (2, 1, 8, 8) and a.nfe == before + 1


def test_ablations_and_algorithm1_are_recorded(tmp_path):
    no_z = replace(TINY, generator=replace(TINY.generator, z_dim=0), lambda_paper=math.inf)
    train_rgm("rgm-d", tmp_path / "a", settings(2), no_z, data=tiny_data(), progress=False)
    objective = json.loads((tmp_path / "a" / "config.json").read_text())["objective"]
    assert objective["z_dim"] == 0 and objective["lambda_c"] == 0 and objective["lambda_paper"] == "inf"
    train_rgm("rgm-d", tmp_path / "b", settings(2), replace(TINY, posterior=True), data=tiny_data(),
              progress=False)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["objective"]["algorithm"] == 1
    with pytest.raises(BadInputError, match="rgm-d only"):
        train_rgm("rgm-sr", tmp_path / "c", settings(2), replace(TINY, posterior=True), data=tiny_data())


def test_rgm_sr_trains_on_its_ladder(tmp_path):
    info = train_rgm("rgm-sr", tmp_path, settings(2), TINY, data=tiny_data(), progress=False)
    model = load_rgm_generator(tmp_path)
    assert info["steps"] == 2 and model.levels == 5 and model.schedule.factor(5) == 4


def test_trained_generator_runs_the_rgm_method_with_nfe_t(tmp_path):
    from engine.core.registry import get, make_params
    from engine.core.rng import SampleRNG

    train_rgm("rgm-d", tmp_path, settings(2), TINY, data=tiny_data(16, 28), progress=False)
    model = load_rgm_generator(tmp_path)
    info = get("rgm")
    info.check(model, None)
    steps = list(info.run(model, None, make_params(info.params, {}), SampleRNG(0, 2)))
    assert len(steps) == 4 and model.nfe == 4 == info.predict_nfe(None, model)
    assert steps[-1].x0_hat.shape == (2, 1, 28, 28)
