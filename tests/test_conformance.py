"""Conformance suite: every registered method, present and future, must pass these.

Each method runs on its ``example_model`` (fast, exact priors where possible) and its
``example_degradation``, with a few network evaluations.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.core import registry
from engine.core.jobs import Job, Request
from engine.core.operators import Degradation
from engine.core.step import BadInputError, UnsupportedOperatorError

METHODS = sorted(registry.methods())
# Degradations tried when looking for an operator a method does not support.
CANDIDATE_DEGRADATIONS = ["noise=0.05", "blur=1.5,noise=0.1", "downsample=2,noise=0.02",
                          "mask=box:0.5,noise=0.01", "mask=random:0.5", "blur=1,downsample=2"]


def image_for(info: registry.MethodInfo) -> torch.Tensor | None:
    if info.example_degradation is None:
        return None
    from engine.io.data import demo_images
    return demo_images()[0][3]


def make_request(name: str, seed: int = 0, n: int = 2, **overrides) -> Request:
    info = registry.get(name)
    model = info.example_model or info.default_model
    spec = f"{name}@{model}" if info.needs_prior else name
    fields = {f.name for f in dataclasses.fields(info.params)}
    params = {"nfe": 4} if "nfe" in fields else {}
    degradation = info.example_degradation
    request = Request(method=spec, image=image_for(info), params=params, seed=seed, n=n,
                      degradation=Degradation.parse(degradation) if degradation else None)
    return dataclasses.replace(request, **overrides)


def run(request: Request):
    job = Job(request)
    steps = list(job.steps())
    return job, steps, job.result


@pytest.mark.parametrize("name", METHODS)
def test_shapes_range_and_nfe(name):
    job, steps, result = run(make_request(name, n=2))
    shape = job.clean.shape if job.clean is not None else job.prior.shape
    assert result.samples.shape == (2, *shape)
    assert result.samples.dtype == torch.float32
    assert 0.0 <= float(result.samples.min()) and float(result.samples.max()) <= 1.0
    assert [s.index for s in steps] == list(range(steps[0].total))
    for step in steps:
        assert step.x0_hat.shape == (2, *shape)
    assert result.metrics["nfe"] == job.info.nfe(job.params)
    if job.clean is not None:
        # a restoration, not noise: over 10 seeds the lowest method (pinv) 18.75 ± 0.01 dB
        assert result.metrics["psnr"] > 5.0


@pytest.mark.parametrize("name", METHODS)
def test_determinism_and_batch_independence(name):
    batch = run(make_request(name, seed=7, n=3))[2].samples
    again = run(make_request(name, seed=7, n=3))[2].samples
    assert torch.equal(batch, again)
    for k in range(3):
        single = run(make_request(name, seed=7 + k, n=1))[2].samples
        torch.testing.assert_close(single[0], batch[k], atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_stopping_after_one_step_leaves_no_work(name):
    job = Job(make_request(name, n=1))
    steps = job.steps()
    first = next(steps)
    nfe_at_stop = job.prior.nfe if job.prior is not None else 0
    steps.close()
    assert first.index == 0
    assert (job.prior.nfe if job.prior is not None else 0) == nfe_at_stop
    kept = job.finish()  # "Stop and keep x̂0"
    assert kept.stopped and kept.samples.shape[0] == 1


@pytest.mark.parametrize("name", METHODS)
def test_unsupported_operator_is_a_clear_error(name):
    info = registry.get(name)
    base = make_request(name, n=1)
    image = base.image if base.image is not None else _demo_image()
    for spec in CANDIDATE_DEGRADATIONS:
        request = dataclasses.replace(base, image=image, degradation=Degradation.parse(spec))
        try:
            Job(request)
        except UnsupportedOperatorError as err:
            assert info.name in str(err)
            return
        except BadInputError:
            continue  # supported operator, but off this method's path: also a clear error
    pytest.skip(f"{name} supports every candidate operator")


@pytest.mark.parametrize("name", [m for m in METHODS if not registry.get(m).generates])
def test_restorers_refuse_unconditional_requests(name):
    with pytest.raises(BadInputError, match="cannot generate"):
        Job(dataclasses.replace(make_request(name), image=None, degradation=None))


def _demo_image():
    from engine.io.data import demo_images
    return demo_images()[0][3]
