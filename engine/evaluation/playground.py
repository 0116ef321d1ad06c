"""The exact-posterior playground: posterior solvers on a 2-D toy with a known posterior.

``python -m engine playground --out FILE.png`` draws the exact posterior density of the
spec's bimodal toy (posterior.md §4: prior ``½N((0.5, 0.5), 0.1²I) + ½N((−0.5, −0.5),
0.1²I)`` on the VP schedule, ``y = aᵀx + η``, ``a = (−2, 1.7)``, σ = 0.2) and over it
DPS samples (red), RMP's mean with the network-style likelihood (blue) and with exact
posterior scores (cyan), and the exact posterior mean (white cross). It prints the
numbers behind the picture.

`sampler_bias` measures how far a sampler's particles are from the exact prior, for the
studio's Playground tab (issue 15): W2 to an independent exact draw of the same size
(exact optimal matching, `engine.core.wasserstein.exact_w2`, on at most `W2_POINTS`
particles: the assignment is cubic in n), W2 between two exact draws (the value W2 reads
for an unbiased sampler at this n: an empirical W2 is never 0), and the relative error
of the particles' covariance and mean against the prior's exact moments.

Decisions: DPS's scale defaults to 0.02 here: the image defaults (0.3–1.0) overshoot on
a 2-D point whose measurement row has norm 2.6 (at 0.2 the mean residual |aᵀx − y| is
0.68, at 0.02 it is 0.08, below σ). Rendered with Pillow (no plotting dependency); the density is shown as
``p^{1/2}`` on a grey ramp so both modes stay visible. Flow samples are not drawn: a
flow needs training per problem (`engine.train.aps`), which this command does not do.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.core.registry import Measurement, make_params
from engine.core.rng import SampleRNG
from engine.core.schedules import VPSchedule
from engine.priors.exact import F64, GaussianMixturePrior
from engine.priors.posterior import MatrixOperator, exact_posterior, posterior_moments

W2_POINTS = 1000  # particles matched for W2 (Hungarian assignment, O(n³))
EXTENT = (-1.2, 1.2)
A_ROW, SIGMA = (-2.0, 1.7), 0.2
COLOURS = {"dps": (230, 60, 50), "rmp": (60, 120, 255), "rmp-exact": (0, 230, 230), "truth": (255, 255, 255)}


def toy_problem(y_value: float):
    prior = GaussianMixturePrior([0.5, 0.5], [[0.5, 0.5], [-0.5, -0.5]], 0.01 * torch.eye(2).expand(2, 2, 2),
                                 VPSchedule(), (2, 1, 1), (-2.5, 2.5), name="bimodal-toy")
    op = MatrixOperator([A_ROW], (2, 1, 1))
    return prior, op, torch.tensor([[[[y_value]]]])


def solve(y_value: float, n: int, nfe: int, seed: int, dps_scale: float = 0.02) -> dict:
    """DPS samples, RMP means and the exact posterior for one measurement value."""
    from engine.solvers.dps import DPSParams, dps
    from engine.solvers.rmp import RMPParams, rmp

    prior, op, y = toy_problem(y_value)
    posterior = exact_posterior(prior, op, y, SIGMA)
    measurement = Measurement(y.expand(n, 1, 1, 1), op, SIGMA, prior.shape)
    last = lambda steps: [s for s in steps][-1].x0_hat.reshape(-1, 2)
    return {
        "posterior": posterior,
        "dps": last(dps(prior, measurement, make_params(DPSParams, {"nfe": nfe, "scale": dps_scale}),
                        SampleRNG(seed, n))),
        "rmp": last(rmp(prior, Measurement(y, op, SIGMA, prior.shape),
                        make_params(RMPParams, {"steps": nfe, "step_size": 1.0, "balance": "constant",
                                                "zeta": 1.0, "sample_inner": False}), SampleRNG(seed, 1))),
        "rmp-exact": last(rmp(posterior, None, make_params(RMPParams, {"steps": nfe, "step_size": 1.0,
                                                             "sample_inner": False}),
                              SampleRNG(seed, 1))),
        "truth": posterior_moments(posterior)[0][None].float(),
    }


@dataclass(frozen=True)
class SamplerBias:
    """How far n particles are from the exact prior (see the module doc)."""

    points: int  # particles compared
    w2: float  # W2(particles, an exact draw of the same size)
    w2_floor: float  # W2 between two exact draws of that size: what no bias reads
    cov_error: float  # ‖Cov(particles) − Σ‖_F / ‖Σ‖_F
    mean_error: float  # ‖mean(particles) − μ‖ / √(tr Σ)


def mixture_moments(prior: GaussianMixturePrior) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean μ = Σ w_k μ_k and covariance Σ = Σ w_k (Σ_k + μ_k μ_kᵀ) − μ μᵀ (float64)."""
    w = prior.weights
    mean = (w[:, None] * prior.means).sum(0)
    second = (w[:, None, None] * (prior.covs + prior.means[:, :, None] * prior.means[:, None, :])).sum(0)
    return mean, second - torch.outer(mean, mean)


def sampler_bias(prior: GaussianMixturePrior, particles: torch.Tensor, seed: int = 0) -> SamplerBias:
    """The bias of ``particles`` (n, …) drawn by a sampler from ``prior`` (model units);
    the exact draws use generators seeded ``seed + 1`` and ``seed + 2``."""
    from engine.core.wasserstein import exact_w2, squared_distances

    x = particles.reshape(len(particles), -1).to(F64)
    m = min(len(x), W2_POINTS)
    draw = lambda s: prior.sample(m, torch.Generator("cpu").manual_seed(s)).reshape(m, -1).to(F64)
    exact_a, exact_b = draw(seed + 1), draw(seed + 2)
    w2 = lambda a, b: exact_w2(squared_distances(a, b).numpy())
    mean, cov = mixture_moments(prior)
    return SamplerBias(points=m, w2=w2(x[:m], exact_a), w2_floor=w2(exact_a, exact_b),
                       cov_error=float(torch.linalg.norm(torch.cov(x.T) - cov) / torch.linalg.norm(cov)),
                       mean_error=float(torch.linalg.norm(x.mean(0) - mean) / cov.trace().sqrt()))


def render(result: dict, path: Path, size: int = 480) -> None:
    from PIL import Image, ImageDraw

    grid = torch.linspace(*EXTENT, size, dtype=F64)
    yy, xx = torch.meshgrid(grid.flip(0), grid, indexing="ij")  # image row 0 = top = largest x₂
    points = torch.stack([xx.flatten(), yy.flatten()], 1).reshape(-1, 2, 1, 1)
    density = result["posterior"].log_density(points, 0.0).reshape(size, size).exp().sqrt()
    grey = (40 + 200 * density / density.max()).to(torch.uint8).numpy()
    image = Image.fromarray(np.stack([grey] * 3, -1), "RGB")
    draw = ImageDraw.Draw(image)
    to_pixel = lambda p: ((p[0] - EXTENT[0]) / (EXTENT[1] - EXTENT[0]) * (size - 1),
                          (EXTENT[1] - p[1]) / (EXTENT[1] - EXTENT[0]) * (size - 1))
    for u, v in map(to_pixel, result["dps"].tolist()):
        draw.ellipse((u - 2, v - 2, u + 2, v + 2), fill=COLOURS["dps"])
    for key in ("rmp", "rmp-exact", "truth"):
        u, v = to_pixel(result[key][0].tolist())
        draw.line((u - 7, v - 7, u + 7, v + 7), fill=COLOURS[key], width=3)
        draw.line((u - 7, v + 7, u + 7, v - 7), fill=COLOURS[key], width=3)
    draw.text((6, 6), "exact posterior; DPS samples (red), RMP mean (blue), RMP exact scores "
              "(cyan), E[x|y] (white)", fill=(255, 255, 0))
    image.save(path)


def summary(result: dict) -> dict:
    truth = result["truth"][0].double()
    weights = result["posterior"].weights.tolist()
    return {"posterior_mean": truth.tolist(), "posterior_weights": weights,
            "dps_mean": result["dps"].double().mean(0).tolist(),
            "dps_fraction_in_first_mode": float((result["dps"].sum(1) > 0).double().mean()),
            "rmp_mean": result["rmp"][0].tolist(), "rmp_exact_scores_mean": result["rmp-exact"][0].tolist()}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m engine playground", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="PNG file")
    p.add_argument("--y", type=float, default=0.1, help="the measurement value aᵀx + η")
    p.add_argument("--n", type=int, default=200, help="DPS samples")
    p.add_argument("--nfe", type=int, default=200, help="steps of DPS and RMP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dps-scale", type=float, default=0.02,
                   help="DPS guidance scale (image-sized defaults overshoot on this 2-D toy)")
    args = p.parse_args(argv)
    with torch.no_grad():
        result = solve(args.y, args.n, args.nfe, args.seed, args.dps_scale)
    render(result, args.out)
    print(json.dumps(summary(result), indent=2))
    return 0
