"""Conformance suite: every registered method, present and future, must pass these.

Each method runs on its ``example_model`` (fast, exact priors where possible) and its
``example_degradation``, with a few network evaluations. Beyond shapes, determinism and
cancellation: capabilities (a method is offered exactly the models that can run it and
any other model is refused with the registry's reason), grad-mode independence of
methods that take gradients, and NFE/VJP accounting against the model's actual
evaluations.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest
import torch

from engine.core import registry
from engine.core.jobs import Job, Request
from engine.core.operators import Degradation
from engine.core.rng import SampleRNG
from engine.core.step import BadInputError, Step, UnsupportedOperatorError
from engine.priors import catalog

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
    params = {**({"nfe": 4} if "nfe" in fields else {}), **dict(info.example_params)}
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
    assert result.metrics["nfe"] == job.info.predict_nfe(job.params, job.prior)
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


# --- capabilities ----------------------------------------------------------------------

@pytest.mark.parametrize("name", [m for m in METHODS if registry.get(m).needs_prior])
def test_a_method_is_offered_exactly_the_models_that_can_run_it(name):
    """Offered models run (unconditionally, for generating methods); the others are refused
    by the job with the registry's own reason."""
    info = registry.get(name)
    specs = catalog.model_specs()
    offered = registry.models_for(name)
    assert (info.example_model or info.default_model) in offered
    for model, spec in specs.items():
        reason = registry.why_not(info, spec)
        assert (reason is None) == (model in offered), model
        if reason is None:
            assert info.requirements <= spec.capabilities
            if info.generates:
                params = {"nfe": 2} if "nfe" in {f.name for f in dataclasses.fields(info.params)} else {}
                result = Job(Request(method=f"{name}@{model}", params=params)).run()
                assert result.samples.shape == (1, *spec.shape)
        else:
            with pytest.raises(BadInputError) as err:
                Job(Request(method=f"{name}@{model}"))
            assert str(err.value) == reason


# --- gradients -------------------------------------------------------------------------

def grad_mode_dependence(name: str, request: Request) -> str | None:
    """How the method's result depends on the caller's grad mode (None: it does not).

    The method's generator runs directly (not through a job, which always disables
    gradients) with grad mode off and on; a method that needs gradients must enable them
    itself around its network call and return a result without a graph.
    """
    info, results = registry.get(name), []
    for enabled in (False, True):
        job = Job(request)
        rng = SampleRNG(request.seed, request.n)
        try:
            with torch.set_grad_enabled(enabled):
                last = list(info.run(job.prior, job.measurement, job.params, rng))[-1].x0_hat
        except RuntimeError as err:
            return f"fails with grad mode {'on' if enabled else 'off'}: {err}"
        if last.requires_grad:
            return "its result carries an autograd graph"
        results.append(last)
    return None if torch.equal(*results) else "its result changes with grad mode"


@pytest.mark.parametrize("name", [m for m in METHODS if registry.get(m).needs_grad])
def test_gradient_methods_do_not_depend_on_grad_mode(name):
    assert grad_mode_dependence(name, make_request(name, n=2)) is None


@dataclass
class GuidedParams:
    steps: int = registry.param(3, lo=1, hi=10, help="gradient steps")


def guided_descent(local_grad: bool):
    """A throw-away gradient-taking method: x ← x − η ∇ ½‖A D(x) − y‖², D the denoiser."""
    def run(prior, measurement, params, rng):
        op, y = measurement.operator, measurement.y
        x = op.pinv(y)
        for i in range(params.steps):
            with torch.set_grad_enabled(local_grad or torch.is_grad_enabled()):
                x_in = x.detach().requires_grad_(True)
                x0_hat = prior.denoise(x_in, 0.9)
                loss = 0.5 * (op.forward(x0_hat) - y).pow(2).flatten(1).sum(1)
                grad, = torch.autograd.grad(loss.sum(), x_in)
            prior.vjp = getattr(prior, "vjp", 0) + 1  # one VJP per backward pass
            x = (x - 0.5 * grad).detach()
            yield Step(i, params.steps, math.nan, x, x0_hat.detach(), {"loss": loss.detach()})
    return run


@pytest.fixture
def guided_methods(monkeypatch):
    registry.methods()
    for name, local in (("guided-local", True), ("guided-global", False)):
        monkeypatch.setitem(registry._METHODS, name, registry.MethodInfo(
            name=name, run=guided_descent(local), params=GuidedParams, kind="solver",
            family="Test", summary="throw-away", nfe=lambda p: p.steps, generates=False,
            needs_grad=True, example_model="empirical-vp", example_degradation="blur=1,noise=0.05"))
    yield


def test_the_grad_mode_check_tells_local_gradients_from_global_ones(guided_methods):
    assert grad_mode_dependence("guided-local", make_request("guided-local")) is None
    assert "fails with grad mode off" in grad_mode_dependence("guided-global", make_request("guided-global"))
    result = Job(make_request("guided-local", n=2)).run()  # jobs run under no_grad
    assert result.metrics["nfe"] == 3 and result.metrics["vjp"] == 3
    losses = [v for _, v in result.extras["loss"]]
    assert losses[-1] < losses[0]  # descent on the data term
    assert "differentiable" in registry.get("guided-local").requirements
    assert registry.models_for("guided-local")[0] == "empirical-vp"


# --- NFE and VJP accounting ------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_nfe_and_vjp_are_counted_once_and_match_the_evaluations(name):
    """The job's count (metrics) equals the model's actual batched evaluations (counted
    here by wrapping the exact prior's closed form) and the method's prediction."""
    job = Job(make_request(name, n=2))
    calls = []
    # the model's one uncounted evaluation: a denoiser's closed form, a generator's map,
    # a tower's pass
    evaluation = next((e for e in ("_denoise", "_generate", "_levels") if hasattr(job.prior, e)), None)
    if job.prior is not None:
        closed_form = getattr(job.prior, evaluation)
        setattr(job.prior, evaluation, lambda *a: (calls.append(a[1]), closed_form(*a))[1])
    try:
        result = job.run()
    finally:
        if job.prior is not None:
            delattr(job.prior, evaluation)
    assert result.metrics["nfe"] == job.nfe == len(calls) == job.info.predict_nfe(job.params, job.prior)
    assert result.metrics["vjp"] == job.vjp
    if job.info.needs_grad:  # one backward pass per forward evaluation at most
        assert 0 < job.vjp <= job.nfe
    else:
        assert job.vjp == 0
