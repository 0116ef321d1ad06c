"""The one entry point: units at the edges, recipe, bounded trajectory, clear errors."""

import time

import pytest
import torch

from engine.io.data import demo_images
from engine.core.jobs import TRAJECTORY_FRAMES, Job, Request, run_job
from engine.core.operators import Degradation
from engine.core.rng import SampleRNG, measurement_noise
from engine.core.step import BadInputError


@pytest.fixture(scope="module")
def image():
    return demo_images()[0][5]


def test_measurement_is_converted_to_the_priors_range(image):
    degradation = Degradation.parse("blur=2,noise=0.05")  # zero padding: A(1) ≠ 1
    job = Job(Request(method="ddim@empirical-soft-blur", image=image, degradation=degradation,
                      measurement_seed=3, n=2))
    assert job.prior.data_range == (-1.0, 1.0)
    op = degradation.operator(1)
    eps = measurement_noise(3, (1, 28, 28))
    expected = op.forward(2 * image[None] - 1) + 2 * 0.05 * eps
    torch.testing.assert_close(job.measurement.y, expected.expand(2, -1, -1, -1), atol=1e-5, rtol=0)
    assert job.measurement.sigma_y == pytest.approx(0.1)
    # The measurement shown to the user stays in image units.
    torch.testing.assert_close(job.y_image, (op.forward(image[None]) + 0.05 * eps)[0])


def test_measurement_noise_is_independent_of_every_samples_noise(image):
    """ε of y and the noise streams of the samples never coincide, for any pair of seeds.

    Sample k of a job draws from the generator of seed + k (engine.core.rng); before
    scheme v2 the job drew ε from the generator of the measurement seed m, so whenever
    seed + k == m that sample's first draw *was* ε (correlation 1; with the defaults,
    sample 0). Checked: m = 0…15 against seeds 0…63 and seeds that alias m in torch's
    32-bit seeding (m + 2³², m − 2³²), the first 4 draws of each stream. Independent
    784-pixel draws correlate ~ N(0, 1/784), sd 0.036 (expected largest of these 4 224
    correlations ≈ 0.15); measured largest 0.128; the bound 0.3 is 8 sd of one.
    """
    degradation = Degradation.parse("noise=0.1")  # y = x + σ ε, so ε = (y − x)/σ
    streams = list(range(64))
    worst = 0.0
    for m in range(16):
        job = Job(Request(method="pinv", image=image, degradation=degradation, measurement_seed=m))
        eps = ((job.y_image - image) / 0.1).flatten().double()
        for s in streams + [m + 2**32, m - 2**32]:
            draws = SampleRNG(s, 1).randn(4, 28 * 28)[0].double()
            corr = torch.corrcoef(torch.cat([eps[None], draws]))[0, 1:]
            worst = max(worst, float(corr.abs().max()))
    assert worst < 0.3, worst


def test_old_recipes_reproduce_with_their_measurement_noise(image):
    """A job's recipe from before the scheme was recorded used v1: ε of seed m's torch stream."""
    from engine.core.rng import recipe_measurement_noise

    assert recipe_measurement_noise({"measurement_seed": 3, "versions": {}}) == "v1"
    assert recipe_measurement_noise({"measurement_seed": 3}) is None  # settings, never run
    assert recipe_measurement_noise({"measurement_noise": "v2", "versions": {}}) is None  # current
    with pytest.raises(BadInputError, match="v3"):
        recipe_measurement_noise({"measurement_noise": "v3"})
    degradation = Degradation.parse("noise=0.1")
    old = Job(Request(method="pinv", image=image, degradation=degradation, measurement_seed=3,
                      measurement_noise="v1"))
    torch.testing.assert_close(old.y_image, image + 0.1 * SampleRNG(3, 1).randn(1, 28, 28)[0])
    assert old.recipe()["measurement_noise"] == "v1"
    new = Job(Request(method="pinv", image=image, degradation=degradation, measurement_seed=3))
    assert new.recipe()["measurement_noise"] == "v2" and not torch.equal(new.y_image, old.y_image)


def test_recipe_records_everything_needed_to_rerun(image):
    result = run_job(Request(method="tikhonov", image=image, n=2, seed=0,
                             degradation=Degradation.parse("downsample=2,noise=0.02"),
                             params={"alpha": 0.1}, source="demo:5"))
    recipe = result.recipe
    assert recipe["method"] == "tikhonov" and recipe["model"] is None
    assert recipe["params"] == {"alpha": 0.1, "smoothness": 0.1, "iterations": 50}
    assert recipe["seed"] == 0 and recipe["n"] == 2 and recipe["rng_device"] == "cpu"
    assert recipe["degradation"] == "downsample=2,noise=0.02" and recipe["source"] == "demo:5"
    assert {"engine", "torch", "numpy", "python"} <= set(recipe["versions"])
    again = run_job(Request(method=recipe["method"], image=image, n=recipe["n"],
                            seed=recipe["seed"], params=recipe["params"],
                            degradation=Degradation.parse(recipe["degradation"])))
    assert torch.equal(again.samples, result.samples)


def test_trajectory_is_a_bounded_ring_covering_the_whole_run(image):
    result = run_job(Request(method="tikhonov", image=image, params={"iterations": 300},
                             degradation=Degradation.parse("blur=2,noise=0.01")))
    assert TRAJECTORY_FRAMES // 2 <= len(result.trajectory) <= TRAJECTORY_FRAMES
    t, x_t, x0 = result.trajectory[0]
    assert x_t.dtype.name == "uint8" and x_t.shape == (28, 28, 1)
    # The last frame is the final estimate.
    final = (result.samples[0, 0] * 255 + 0.5).to(torch.uint8).numpy()
    assert abs(result.trajectory[-1][2][..., 0].astype(int) - final.astype(int)).max() <= 1


def test_consumer_time_is_not_counted_as_method_time(image, monkeypatch):
    """A consumer that takes 1000 s per step (on a clock the job reads) adds nothing."""
    from types import SimpleNamespace

    from engine.core import jobs

    consumer = [0.0]  # seconds the consumer spent so far
    monkeypatch.setattr(jobs, "time", SimpleNamespace(perf_counter=lambda: time.perf_counter() + consumer[0]))
    job = Job(Request(method="tikhonov", image=image, params={"iterations": 10},
                      degradation=Degradation.parse("blur=2,noise=0.01")))
    for _ in job.steps():
        consumer[0] += 1000.0  # a slow GUI must not make the method look slow
    assert 0 < job.result.metrics["seconds"] < 1000


@pytest.mark.parametrize("request_kwargs, message", [
    ({"method": "tikhonov", "n": 0}, "number of samples"),
    ({"method": "ddim@empirical-vp", "image": torch.rand(3, 32, 32)}, "convert it first"),
    ({"method": "ddim@no-such-model"}, "unknown model"),
])
def test_bad_requests_are_clear_errors(image, request_kwargs, message):
    kwargs = {"image": image, "degradation": Degradation.parse("noise=0.1"), **request_kwargs}
    with pytest.raises(BadInputError, match=message):
        Job(Request(**kwargs))


def test_latent_slider_moves_between_two_seeds_latents():
    def generate(seed=3, **kw):
        return run_job(Request(method="ddim@empirical-vp", params={"nfe": 10}, n=2, seed=seed,
                               **kw)).samples

    own, other = generate(), generate(seed=11)
    torch.testing.assert_close(generate(latent_seed=11, latent_mix=0.0), own)
    torch.testing.assert_close(generate(latent_seed=11, latent_mix=1.0), other, atol=1e-5, rtol=0)
    halfway = generate(latent_seed=11, latent_mix=0.5)
    assert not torch.allclose(halfway, own) and not torch.allclose(halfway, other)
    with pytest.raises(BadInputError, match="latent mix"):
        Job(Request(method="ddim@empirical-vp", latent_mix=1.5))


@pytest.mark.parametrize("method,spec", [("ddpm@empirical-vp", None), ("naive@empirical-soft-blur", None),
                                         ("ddim@vp", "noise=0.2")])
def test_latent_covers_every_draw_of_a_stochastic_sampler(method, spec):
    """All noise goes through the latent, so at mix 1 a stochastic run, generating or
    restoring from the measurement's own level (no fresh noise at the start), is the
    run of the other seed; at mix 0.5 it is neither."""
    def run(seed=3, **kw):
        degradation = Degradation.parse(spec) if spec else None
        image = demo_images()[0][2] if spec else None
        return run_job(Request(method=method, image=image, degradation=degradation,
                               params={"nfe": 8, **({"k": 1.0} if method.startswith("ddim") else {})},
                               n=2, seed=seed, **kw)).samples

    own, other = run(), run(seed=11)
    torch.testing.assert_close(run(latent_seed=11, latent_mix=1.0), other, atol=1e-5, rtol=0)
    halfway = run(latent_seed=11, latent_mix=0.5)
    assert not torch.allclose(halfway, own, atol=1e-3) and not torch.allclose(halfway, other, atol=1e-3)


def test_slerp_keeps_the_norm_of_orthogonal_latents():
    from engine.core.rng import slerp
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    mid = slerp(a, b, 0.5)
    torch.testing.assert_close(mid, torch.tensor([[0.5**0.5, 0.5**0.5]]))


@pytest.mark.parametrize("spec,smoothness", [("downsample=4,noise=0.01", 0.0),
                                             ("downsample=2,noise=0.01", 0.1),
                                             ("blur=1.5,noise=0.05", 0.1)])
def test_tikhonov_solves_its_normal_equations_with_weights_relative_to_the_operator(spec, smoothness):
    """(AᵀA + αL I + βL ∇ᵀ∇) x = Aᵀy + αL m with L = ‖AᵀA‖, against a dense solve."""
    from engine.priors.exact import dense_matrix
    from engine.solvers.baselines import gradient_gram

    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = run_job(Request(method="tikhonov", image=image, degradation=Degradation.parse(spec),
                             params={"alpha": 0.05, "smoothness": smoothness, "iterations": 200}))
    A = dense_matrix(Degradation.parse(spec).operator(1), (1, 8, 8))
    L = float(torch.linalg.eigvalsh(A.T @ A).max())
    G = dense_matrix(type("Grad", (), {"forward": staticmethod(gradient_gram)})(), (1, 8, 8))
    y = result.measurement.reshape(-1).double()
    x = torch.linalg.solve(A.T @ A + 0.05 * L * torch.eye(64, dtype=torch.float64) + smoothness * L * G,
                           A.T @ y + 0.05 * L * 0.5)
    torch.testing.assert_close(result.samples[0].reshape(-1).double(), x, atol=2e-4, rtol=0)


def test_jobs_without_gradients_run_in_inference_mode_and_leave_caches_usable_by_gradient_jobs(image):
    """A job of a method without gradients advances it in inference mode; an operator
    cache filled there (a blur kernel) must still serve a gradient-taking method later
    (inference tensors cannot be saved for backward)."""
    from engine.core.operators import Blur
    from engine.core.registry import get

    seen = []
    method = get("pinv")
    original = method.run

    def spy(*args):
        for step in original(*args):
            seen.append(torch.is_inference_mode_enabled())
            yield step

    try:
        object.__setattr__(method, "run", spy)
        Job(Request(method="pinv", image=image, degradation=Degradation.parse("blur=1.3"))).run()
    finally:
        object.__setattr__(method, "run", original)
    assert seen and all(seen)
    operator = Blur(1.2345)  # a σ no other test uses: its kernel is made here
    with torch.inference_mode():
        operator.forward(torch.rand(1, 1, 28, 28))
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    (operator.forward(x) ** 2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
