"""Our DPS against DeepInverse's on the same network, grid and noise (skipped without deepinv).

`engine.evaluation.deepinv_dps` wraps the learned vp network for DeepInverse's
`PosteriorDiffusion` + `DDPMSolver` + `DPSDataFidelity` with a per-step weight that
makes its folded-in guidance the original DPS step; with the same start and step noise
the two runs are the same algorithm written twice. Measured (2 SR×2 images, 5 steps):
max difference 1.7e-5 without guidance, 6.7e-6 at scale 0.3.
"""

import pytest
import torch

pytest.importorskip("deepinv")

from engine.core import registry  # noqa: E402
from engine.core.jobs import Job, Request  # noqa: E402
from engine.core.operators import Degradation  # noqa: E402
from engine.core.rng import SampleRNG  # noqa: E402
from engine.evaluation.deepinv_dps import deepinv_dps  # noqa: E402
from engine.io.data import demo_images  # noqa: E402
from engine.solvers.dps import DPSParams, dps  # noqa: E402


@pytest.mark.parametrize("scale", [0.0, 0.3])
def test_deepinv_dps_equals_ours_with_the_same_noise(scale):
    images = demo_images()[0][:2]
    jobs = [Job(Request(method="dps@vp", image=im, degradation=Degradation.parse("downsample=2,noise=0.01"),
                        seed=i, measurement_seed=i)) for i, im in enumerate(images)]
    lead = jobs[0]
    measurement = registry.Measurement(torch.cat([j.measurement.y for j in jobs]), lead.measurement.operator,
                                       lead.measurement.sigma_y, lead.measurement.x_shape)
    with torch.no_grad():
        *_, last = dps(lead.prior, measurement, DPSParams(nfe=5, scale=scale), SampleRNG(0, 2))
        theirs = deepinv_dps(lead.prior, measurement, 5, scale, SampleRNG(0, 2))
    assert (last.x0_hat - theirs).abs().max() < 1e-4
