"""The Qt-free state model: recipes round-trip, requests match the settings."""

import pytest
import torch

from engine.core.registry import get, make_params
from engine.core.step import BadInputError
from studio.state import StudioState, load_source, working_image


def configured_state() -> StudioState:
    state = StudioState()
    state.set_source(load_source("demo:5"), "demo:5")
    state.degradation.set_spec("blur=1.5,mask=random:0.3:7,noise=0.05")
    state.degradation.measurement_seed = 11
    state.method.method, state.method.params = "tikhonov", {"alpha": 0.2}
    state.method.seed, state.method.n = 3, 4
    state.method.latent_seed, state.method.latent_mix = 9, 0.25
    return state


def test_recipe_round_trip_restores_every_setting():
    state = configured_state()
    recipe = state.to_recipe()
    assert recipe["degradation"] == "blur=1.5,mask=random:0.3:7,noise=0.05"
    restored = StudioState()
    assert restored.apply_recipe(recipe)
    assert restored.to_recipe() == recipe
    assert torch.equal(restored.source.image, state.source.image)


def test_an_old_exported_recipe_reproduces_its_measurement_noise():
    """Recipes exported before "measurement_noise" existed used scheme v1 (engine.core.rng)."""
    from engine.core.jobs import Job
    from engine.core.rng import SampleRNG

    recipe = Job(configured_state().request()).recipe()
    assert recipe["measurement_noise"] == "v2"
    old = {k: v for k, v in recipe.items() if k != "measurement_noise"}
    state = StudioState()
    state.apply_recipe(old)
    job = Job(state.request())
    assert job.recipe()["measurement_noise"] == "v1"
    clean = job.clean[None]
    eps = SampleRNG(11, 1).randn(*job.y_image.shape)
    torch.testing.assert_close(job.y_image, job.degradation.measure(clean, eps)[0])
    state.apply_recipe(recipe)  # a current recipe brings the current scheme back
    assert Job(state.request()).recipe()["measurement_noise"] == "v2"


def test_changes_emit_signals_once_per_changed_field():
    state = StudioState()
    seen = []
    state.events.all.connect(lambda info: seen.append(info.signal.name))
    state.degradation.noise = 0.2
    state.degradation.noise = 0.2  # unchanged: no signal
    state.method.set_param("nfe", 10)
    assert seen == ["noise", "params"]


def test_request_matches_the_engine_job_recipe():
    from engine.core.jobs import Job

    state = configured_state()
    job = Job(state.request())
    recipe = job.recipe()
    assert recipe["degradation"] == state.degradation.spec()
    assert (recipe["seed"], recipe["n"], recipe["measurement_seed"]) == (3, 4, 11)
    assert recipe["params"]["alpha"] == 0.2
    assert recipe["source"] == "demo:5"
    # a job's full recipe (defaults filled in) restores the same resolved parameters
    again = StudioState()
    again.apply_recipe(recipe)
    info = get("tikhonov")
    assert make_params(info.params, again.method.params) == make_params(info.params, state.method.params)


def test_malformed_recipe_is_a_clear_error_and_missing_source_is_reported():
    with pytest.raises(BadInputError, match="recipe"):
        StudioState().apply_recipe({"params": {}})
    untouched = configured_state()
    with pytest.raises(BadInputError, match="unknown method"):
        untouched.apply_recipe({**untouched.to_recipe(), "method": "no-such-method", "seed": 99})
    assert untouched.to_recipe() == configured_state().to_recipe()
    state = configured_state()
    before = state.source.image
    recipe = {**state.to_recipe(), "source": "/nonexistent/file.png"}
    assert state.apply_recipe(recipe) is False
    assert state.source.image is before


def test_working_image_converts_only_when_the_model_needs_it():
    image = torch.rand(3, 56, 56)
    same, note = working_image(image, None)
    assert same is image and note == ""
    converted, note = working_image(image, (1, 28, 28))
    assert converted.shape == (1, 28, 28)
    assert note  # the user is told what was converted
