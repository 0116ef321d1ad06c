"""Our VP DDIM and DDPM equal diffusers' schedulers on the same network and noise."""

import pytest

from engine.evaluation.reference import side_by_side
from engine.core.step import BadInputError

pytest.importorskip("diffusers")


def test_ddim_and_ddpm_match_diffusers_to_float_precision():
    report = side_by_side("empirical-vp", steps=20, n=3, seed=5, repeats=1)
    for name in ("ddim", "ddpm"):
        assert report[name]["max_abs_diff"] < 1e-5, report[name]
        assert report[name]["ours_s"] > 0 and report[name]["diffusers_s"] > 0


def test_grids_must_line_up():
    with pytest.raises(BadInputError, match="divide 1000"):
        side_by_side("empirical-vp", steps=30)
