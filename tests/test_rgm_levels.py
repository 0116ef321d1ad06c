"""The RGM level sweep (engine.evaluation.rgm_levels) on the exact oracle generator."""

import torch

from engine.evaluation.rgm_levels import level_spread, vary_one_level
from engine.priors.catalog import load_model


def test_rows_share_every_draw_but_the_varied_level():
    model = load_model("rgm-oracle")
    with torch.no_grad():
        untouched = vary_one_level(model, level=model.levels, variations=4, seed=3)  # no such level
        varied = vary_one_level(model, level=2, variations=4, seed=3)
    assert torch.equal(untouched, untouched[:1].expand_as(untouched))
    assert varied.std(0).mean() > 0.1  # the oracle's z picks a different image at level 2


def test_the_oracle_decides_at_high_noise_not_at_the_last_level():
    """Seeds 0–3: level 2 spread 0.24 (CI [0.18, 0.30]); level 0 exactly 0 — at the lowest
    noise the exact G* returns the nearest training image whatever z is."""
    model = load_model("rgm-oracle")
    with torch.no_grad():
        report = level_spread(model, variations=8, seeds=4)
    assert report[0]["spread"] == 0.0
    assert report[2]["spread_ci"][0] > 0.1
