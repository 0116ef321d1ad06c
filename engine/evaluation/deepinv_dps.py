"""Our ``dps`` side by side with DeepInverse's DPS on the same ε-network, inputs and noise.

``python -m engine.evaluation.deepinv_dps [--task sr2] [--n-images 16] [--nfe 100]
[--json OUT]`` (needs deepinv: the optional ``compare-dps`` extra, not a project
dependency; the README says how it ran on the CPU-torch machines) restores the first
test images with both, batched, in the order ours / theirs / ours / theirs, and prints
PSNR, the paired PSNR difference, the largest pixel difference and seconds per image.

What is compared (decisions):

* The network: our VP model wrapped as a DeepInverse `Denoiser` (`VPDenoiser`): it is
  called with the VE view ``x/s(t) = x0 + σ n`` and σ; the wrapper takes the VP level
  k with ``σ̃_k = √((1 − ᾱ_k)/ᾱ_k)`` nearest to σ (exact on the grid below), feeds
  ``√ᾱ_k · x`` to the network and returns its x̂0.
* The chain: DeepInverse's `PosteriorDiffusion` with its `VariancePreservingDiffusion`
  SDE, `DDPMSolver` (ancestral, posterior variance β̃) and `DPSDataFidelity` ("norm":
  λ‖y − A D(x)‖, the DPS paper's form), at the continuous times whose σ(t) equal our
  strided grid's σ̃_k (found by bisection on the SDE's own σ(t)), so both walk the same
  levels. No clipping of x̂0 (ours does not clip), float32 (DeepInverse's DPS defaults to
  float64).
* The guidance step: DeepInverse folds λ∇‖r‖ into the score, which its step multiplies
  by ``c_t = s_t s_t' σ_t²(1 − σ_t'²/σ_t²)``; the original DPS subtracts ``scale·∇‖r‖``
  after the DDPM step (ours). λ per step is therefore ``scale / c_t`` (`StepWeightedDPS`,
  a `DPSDataFidelity` whose weight is looked up by σ): the same algorithm, written two
  ways.
* The noise: the start x_T and every step's noise are drawn from the same `SampleRNG`
  streams in both (DeepInverse's solver's ``randn_like`` is replaced), so the two runs
  should agree to float rounding, not merely in distribution.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch


def vp_denoiser(prior):
    import deepinv as dinv

    abar = prior.schedule.alpha_bars().double()
    log_sigmas = (((1 - abar[1:]) / abar[1:]).sqrt()).log()  # k = 1 … T

    class VPDenoiser(dinv.models.Denoiser):
        def forward(self, x, sigma, *args, **kwargs):
            s = float(torch.as_tensor(sigma).flatten()[0])
            k = int((log_sigmas - math.log(s)).abs().argmin()) + 1
            return prior.denoise(math.sqrt(float(abar[k])) * x, k / prior.schedule.steps)

    return VPDenoiser()


def matching_times(sde, sigmas: list[float]) -> list[float]:
    """Continuous times whose ``sde.sigma_t`` equals each σ (bisection; σ = 0 → t = 0)."""
    out = []
    for target in sigmas:
        lo, hi = 0.0, 4.0  # the network's top level lies past the SDE's t = 1
        if target == 0:
            out.append(0.0)
            continue
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float(sde.sigma_t(torch.tensor(mid, dtype=torch.float64))) < target else (lo, mid)
        out.append((lo + hi) / 2)
    return out


def deepinv_dps(prior, measurement, nfe: int, scale: float, rng):
    """DeepInverse's DPS on our network and grid with per-step λ = scale / c_t (module doc)."""
    import deepinv as dinv
    from deepinv.sampling import DDPMSolver, DPSDataFidelity, PosteriorDiffusion, VariancePreservingDiffusion

    sde = VariancePreservingDiffusion(device="cpu", dtype=torch.float32)
    grid = prior.schedule.grid(nfe)
    sig = [math.sqrt((1 - prior.schedule.alpha_bar(t)) / prior.schedule.alpha_bar(t)) for t in grid]
    times = torch.tensor(matching_times(sde, sig), dtype=torch.float32)
    weights = {}
    for t0, t1 in zip(times, times[1:]):
        s0, s1, g0, g1 = sde.scale_t(t0), sde.scale_t(t1), sde.sigma_t(t0), sde.sigma_t(t1)
        c = float(s0 * s1 * g0**2 * (1 - (g1 / g0) ** 2))
        weights[float(g0)] = scale / c

    class StepWeightedDPS(DPSDataFidelity):
        def grad(self, x, y, physics, sigma, *args, **kwargs):
            s = float(torch.as_tensor(sigma).flatten()[0])
            self.weight = weights[min(weights, key=lambda g: abs(math.log(g / s)))]
            return super().grad(x, y, physics, sigma, *args, **kwargs)

    denoiser = vp_denoiser(prior)
    solver = DDPMSolver(timesteps=times)
    solver.randn_like = lambda x, seed=None: rng.latent_like(x)
    model = PosteriorDiffusion(data_fidelity=StepWeightedDPS(denoiser=denoiser), denoiser=denoiser, sde=sde,
                               solver=solver, minus_one_one=False, device="cpu", dtype=torch.float32)
    physics = dinv.physics.Physics(A=measurement.operator.forward)
    x_init = rng.latent(*prior.shape)
    return model(measurement.y, physics, x_init=x_init, denoise_output=False)


def compare(task: str = "sr2", n_images: int = 16, nfe: int = 100, seed: int = 0) -> dict:
    from engine.core import registry
    from engine.core.jobs import Job, Request
    from engine.core.operators import Degradation
    from engine.core.rng import SampleRNG
    from engine.evaluation import metrics, uncertainty
    from engine.evaluation.evaluate import TASKS, test_images
    from engine.solvers.dps import DPSParams, dps, reference_scale

    images, source = test_images(n_images)
    degradation = Degradation.parse(TASKS[task].degradation)
    jobs = [Job(Request(method="dps@vp", image=im, degradation=degradation, seed=seed + i,
                        measurement_seed=i)) for i, im in enumerate(images)]
    lead = jobs[0]
    prior = lead.prior
    measurement = registry.Measurement(torch.cat([j.measurement.y for j in jobs]), lead.measurement.operator,
                                       lead.measurement.sigma_y, lead.measurement.x_shape)
    scale = reference_scale(measurement.operator, prior.schedule, nfe)
    runs = {}
    for name in ("ours", "deepinv", "ours (repeat)", "deepinv (repeat)"):  # A B A B: neither favoured by place
        rng = SampleRNG(seed, n_images)
        started = time.perf_counter()
        with torch.no_grad():
            if name.startswith("ours"):
                *_, last = dps(prior, measurement, DPSParams(nfe=nfe, scale=scale), rng)
                x = last.x0_hat
            else:
                x = deepinv_dps(prior, measurement, nfe, scale, rng)
        seconds = (time.perf_counter() - started) / n_images
        runs.setdefault(name.split(" ")[0], []).append((lead.to_unit(x.detach().float()).clamp(0, 1), seconds))
    out = {"task": task, "n_images": n_images, "nfe": nfe, "scale": scale, "images": source,
           "batched": True, "versions": {"torch": torch.__version__}}
    import deepinv
    out["versions"]["deepinv"] = deepinv.__version__
    for name, results in runs.items():
        samples = results[0][0]
        psnr = metrics.psnr(samples, images).tolist()
        out[name] = {"psnr": sum(psnr) / len(psnr), "psnr_ci": list(uncertainty.mean_interval(psnr)),
                     "seconds_per_image": [s for _, s in results], "per_image_psnr": psnr}
    ours, theirs = runs["ours"][0][0], runs["deepinv"][0][0]
    out["max_pixel_difference"] = float((ours - theirs).abs().max())
    out["psnr_difference_ci"] = list(uncertainty.paired_difference_interval(out["ours"]["per_image_psnr"],
                                                                            out["deepinv"]["per_image_psnr"]))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.evaluation.deepinv_dps")
    parser.add_argument("--task", default="sr2")
    parser.add_argument("--n-images", type=int, default=16)
    parser.add_argument("--nfe", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    try:
        import deepinv  # noqa: F401
    except ImportError as err:
        print(f"error: deepinv is not importable here ({err}); pip install deepinv", file=sys.stderr)
        return 2
    out = compare(args.task, args.n_images, args.nfe)
    text = json.dumps(out, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    summary = {k: v for k, v in out.items() if k not in ("ours", "deepinv")}
    for name in ("ours", "deepinv"):
        summary[name] = {k: v for k, v in out[name].items() if k != "per_image_psnr"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
