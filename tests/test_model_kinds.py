"""Model kinds and capabilities: a throw-away kind and method (tests/conftest.py `toy_kind`)
driven through the registry, a job and the CLI; the model cache."""

import json
import os
import time

import pytest
import torch

from engine.__main__ import main
from engine.core import registry
from engine.core.jobs import Job, Request
from engine.core.operators import Degradation
from engine.core.rng import SampleRNG
from engine.io.data import demo_images
from engine.priors import catalog

TOY_TASK = "downsample=2,noise=0.02"  # the task of the toy model (tests/conftest.py)


def test_the_registry_offers_a_new_kind_only_to_the_method_that_needs_it(toy_kind):
    assert registry.models_for("toy-task-sample") == ["toy-up"]
    assert registry.models_for("toy-task-sample", TOY_TASK) == ["toy-up"]
    assert registry.models_for("toy-task-sample", "blur=1,noise=0.02") == []
    assert "toy-up" not in registry.models_for("ddim")
    spec = catalog.model_spec("toy-up")
    assert spec.kind == "toy-upsampler" and spec.task == TOY_TASK
    assert "trained for downsample=2,noise=0.02" in registry.why_not(
        toy_kind, spec, Degradation.parse("noise=0.1"))
    assert "can denoise on a schedule" in registry.why_not(registry.get("ddim"), spec)
    assert catalog.problems() == {"mystery": "unknown model kind 'mystery' (known: "
                                  + ", ".join(sorted(catalog.model_kinds())) + ")"}


def test_a_job_runs_the_new_kind_and_counts_its_evaluations(toy_kind):
    image = demo_images()[0][2]
    request = Request(method="toy-task-sample@toy-up", image=image,
                      degradation=Degradation.parse(TOY_TASK), n=2, seed=4)
    job = Job(request)
    steps = list(job.steps())
    result = job.result
    assert result.metrics["nfe"] == 1 and result.metrics["vjp"] == 0
    y = job.measurement.y
    z = SampleRNG(4, 2).latent(1, 28, 28)
    expected = (y.repeat_interleave(2, -2).repeat_interleave(2, -1) + 0.01 * z).clamp(0, 1)
    torch.testing.assert_close(result.samples, expected)
    assert [k for k, _ in result.extras["level"]] == [0, 1]
    assert result.extras["level"] == [(0, 1.0), (1, 0.0)]
    # the residual of sample 0 is ‖g z‖ on the kept pixels
    assert result.extras["residual"][0][1] == pytest.approx(float((0.01 * z[0, :, ::2, ::2]).norm()), rel=1e-5)
    assert steps[-1].x0_hat.shape == (2, 1, 28, 28)


def test_the_cli_lists_runs_and_refuses_with_reasons(toy_kind, tmp_path, capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    toy = next(m for m in listing["methods"] if m["name"] == "toy-task-sample")
    assert toy["runs_on"] == ["toy-up"] and toy["requires"] == ["task-sample"]
    assert listing["model_specs"]["toy-up"]["task"] == TOY_TASK
    assert "mystery" in listing["unusable_models"]
    ddim = next(m for m in listing["methods"] if m["name"] == "ddim")
    assert "toy-up" not in ddim["runs_on"]

    out, js = tmp_path / "x.png", tmp_path / "x.json"
    assert main(["restore", "--sample", "2", "--degrade", TOY_TASK, "--method",
                 "toy-task-sample", "--n", "2", "--out", str(out), "--json", str(js)]) == 0
    metrics = json.loads(js.read_text())
    assert metrics["nfe"] == 1 and metrics["vjp"] == 0 and 15 < metrics["psnr"] < 30
    capsys.readouterr()

    cases = [(["restore", "--sample", "0", "--degrade", "blur=1,noise=0.02", "--method",
               "toy-task-sample@toy-up"], "toy-up was trained for downsample=2,noise=0.02"),
             (["restore", "--sample", "0", "--degrade", "noise=0.1", "--method", "ddim@toy-up"],
              "ddim needs a model that can denoise on a schedule"),
             (["restore", "--sample", "0", "--degrade", "noise=0.1", "--method", "ddim@mystery"],
              "unknown model kind 'mystery'"),
             (["sample", "--method", "toy-task-sample@toy-up"], "cannot generate")]
    for argv, reason in cases:
        assert main(argv + ["--out", str(tmp_path / "no.png")]) == 2
        assert reason in capsys.readouterr().err
    assert not (tmp_path / "no.png").exists()


def test_loaded_models_have_the_capabilities_their_kind_declares():
    from engine.core.capabilities import spec_of

    for name in catalog.prior_names():
        declared, loaded = catalog.model_spec(name), spec_of(catalog.load_model(name))
        assert (loaded.capabilities, loaded.schedule, loaded.task, loaded.shape) == \
            (declared.capabilities, declared.schedule, declared.task, declared.shape), name


def test_the_cache_keeps_models_per_device_and_reloads_changed_files(toy_kind):
    first = catalog.load_model("toy-up")
    assert catalog.load_model("toy-up") is first
    assert catalog.load_model("toy-up", "cpu") is first  # "cpu" and torch.device("cpu") agree
    weights = catalog.MODELS_DIR / "toy-up" / "model.safetensors"
    from safetensors.torch import save_file
    save_file({"gain": torch.tensor(0.5)}, str(weights))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # coarse clocks
    reloaded = catalog.load_model("toy-up")
    assert reloaded is not first and float(reloaded.gain) == 0.5
    assert catalog.load_model("toy-up") is reloaded


def test_the_cache_is_bounded_least_recently_used_first():
    cache = catalog.ModelCache(size=2)
    ring, gauss = cache.get("ring8"), cache.get("gaussian2d")
    assert cache.get("ring8") is ring  # ring8 is now the most recent
    cache.get("empirical-vp")  # evicts gaussian2d
    assert len(cache) == 2 and cache.get("ring8") is ring and cache.get("gaussian2d") is not gauss


def test_jobs_on_a_cached_model_count_their_own_evaluations():
    """The cached model's counter keeps growing; each job reports only its own delta."""
    request = Request(method="ddim@ring8", params={"nfe": 5}, n=2)
    first, second = Job(request).run(), Job(request).run()
    assert first.metrics["nfe"] == second.metrics["nfe"] == 5
    assert catalog.load_model("ring8").nfe >= 10


def test_a_noise_free_task_accepts_noise_but_a_noisy_task_needs_its_level():
    from engine.core.operators import Degradation
    from engine.core.registry import matches_task

    tower, flow = Degradation.parse("downsample=4"), Degradation.parse("noise=0.1")
    assert matches_task(tower, Degradation.parse("downsample=4,noise=0.01"))
    assert not matches_task(tower, Degradation.parse("downsample=2,noise=0.01"))
    assert matches_task(flow, Degradation.parse("noise=0.1"))
    assert not matches_task(flow, Degradation.parse("noise=0.05"))
