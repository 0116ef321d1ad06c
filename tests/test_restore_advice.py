"""Issue 15: what the engine says when a method cannot restore a degradation (in the
degradation panel's units, with what to do), and the Playground's bias figures."""

import numpy as np
import pytest
import torch

from engine.core import registry
from engine.core.jobs import Job, Request
from engine.core.operators import Degradation
from engine.core.step import BadInputError
from engine.evaluation.playground import mixture_moments, sampler_bias
from engine.io.data import demo_images
from engine.priors.catalog import load_prior, model_specs

IMAGE = demo_images()[0][0]


def refusal(method: str, spec: str, error=BadInputError) -> str:
    with pytest.raises(error) as caught:
        Job(Request(method=method, image=IMAGE, degradation=Degradation.parse(spec), n=1))
    return str(caught.value)


def picked(message: str) -> list[str]:
    tail = message.rpartition(" pick ")[2]
    return [p.strip() for p in tail.replace(" or ", ",").split(",") if p.strip()]


def test_noise_beyond_a_models_path_is_said_in_image_units_before_the_run():
    """The soft-blur model's noise stage ends at σ = 0.1 in its [−1, 1] units: 0.05 on the slider."""
    message = refusal("momentum@empirical-soft-blur", "noise=0.2")
    assert message.startswith("noise 0.2 is above what momentum@empirical-soft-blur was trained "
                              "for (at most 0.05); lower noise to 0.05 or below, or pick ")
    assert "model units" not in message and "σ_y" not in message
    message = refusal("momentum@empirical-soft-blur", "blur=2,noise=0.2")
    assert "at blur 2 (at most 0.05)" in message
    Job(Request(method="momentum@empirical-soft-blur", image=IMAGE,
                degradation=Degradation.parse("noise=0.05"), n=1))  # the limit itself runs


def test_an_operator_off_the_path_names_methods_that_restore_it():
    message = refusal("ddim@empirical-vp", "blur=1.5,noise=0.05")
    assert message.startswith("ddim@empirical-vp cannot restore blur: its vp model only removes noise; pick ")
    assert "scale(" not in message and "rcond" not in message
    degradation = Degradation.parse("blur=1.5,noise=0.05")
    specs = model_specs()
    names = picked(message)
    assert len(names) == 3 and not names[-1].count("@")  # a model-free baseline last
    for spec in names:
        name, _, model = spec.partition("@")
        assert registry.cannot_restore(registry.get(name), specs.get(model), degradation) is None
    message = refusal("ddpm@empirical-vp", "mask=box,noise=0.05")
    assert message.startswith("ddpm cannot restore mask box:0.5; pick ")


def test_mixture_moments_and_sampler_bias_are_exact():
    ring = load_prior("ring8")  # 8 unit-weight N(2(cos, sin), 0.1² I): Σ = (4/2 + 0.01) I
    mean, cov = mixture_moments(ring)
    torch.testing.assert_close(mean, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(cov, 2.01 * torch.eye(2, dtype=torch.float64))
    exact = ring.sample(300, torch.Generator("cpu").manual_seed(8)).reshape(300, 2).double()
    bias = sampler_bias(ring, exact, seed=7)  # its first reference draw is that same set
    assert bias.points == 300 and bias.w2 == pytest.approx(0.0, abs=1e-6) and bias.w2_floor > 0
    expected = np.linalg.norm(np.cov(exact.numpy().T) - 2.01 * np.eye(2)) / np.linalg.norm(2.01 * np.eye(2))
    assert bias.cov_error == pytest.approx(expected, rel=1e-9)
    shifted = sampler_bias(ring, exact + torch.tensor([0.3, 0.4], dtype=torch.float64), seed=7)
    assert shifted.mean_error == pytest.approx(np.linalg.norm(exact.numpy().mean(0) + [0.3, 0.4])
                                               / np.sqrt(4.02), rel=1e-9)
