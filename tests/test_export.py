"""Exports: recipes round-trip, trajectories are readable, failures are clean."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from engine.io.export import (ExportError, make_grid, read_recipe, save_grid, save_metrics,
                           save_trajectory)
from engine.core.step import BadInputError

RECIPE = {"method": "ddim", "model": "vp", "params": {"nfe": 50, "k": 0.0}, "seed": 0,
          "degradation": "blur=2,noise=0.05", "note": "σ_y – ünïcode", "value": 1 / 3}


def test_recipe_round_trips_through_a_png(tmp_path):
    path = save_grid(tmp_path / "g.png", torch.rand(5, 1, 28, 28), RECIPE, scale=2)
    assert read_recipe(path) == RECIPE
    assert Image.open(path).size == (3 * 56 + 4 * 2, 2 * 56 + 3 * 2)
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]  # no temporary file left


def test_grid_places_tiles_with_nearest_neighbour_magnification():
    images = torch.zeros(2, 1, 2, 2)
    images[1] = 1.0
    grid = make_grid(images, nrow=2, pad=1, scale=3)
    assert grid.shape == (1 + 6 + 1, 1 + 2 * (6 + 1), 3)
    assert (grid[1:7, 1:7] == 0).all() and (grid[1:7, 8:14] == 255).all()


def test_reading_a_recipe_from_a_plain_png_is_a_clear_error(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(BadInputError, match="no Restoration Studio recipe"):
        read_recipe(tmp_path / "plain.png")


def frames(n=6):
    return [np.full((28, 28, 1), 40 * k, np.uint8) for k in range(n)]


def test_gif_and_mp4_trajectories_are_readable(tmp_path):
    gif = save_trajectory(tmp_path / "t.gif", frames(), fps=5, scale=2)
    with Image.open(gif) as image:
        assert image.n_frames == 6 and image.size == (56, 56)
    mp4 = save_trajectory(tmp_path / "t.mp4", frames(), fps=5, scale=2)
    video = cv2.VideoCapture(str(mp4))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) >= 1
    ok, first = video.read()
    assert ok and first.shape == (56, 56, 3)
    video.release()


@pytest.mark.parametrize("write", [
    lambda p: save_grid(p / "g.png", torch.rand(1, 1, 4, 4), RECIPE),
    lambda p: save_trajectory(p / "t.gif", frames()),
    lambda p: save_metrics(p / "m.json", {"psnr": 1.0}),
])
def test_unwritable_path_is_a_clear_error_and_leaves_nothing(tmp_path, write):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ExportError, match="file.txt"):
        write(blocker)
    with pytest.raises(ExportError, match="cannot write"):
        write(tmp_path / "no" / "such" / "folder")
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_metrics_as_json_and_csv(tmp_path):
    rows = [{"method": "ddim", "psnr": 20.5}, {"method": "pinv", "ssim": 0.7}]
    assert json.loads(save_metrics(tmp_path / "m.json", rows).read_text()) == rows
    lines = save_metrics(tmp_path / "m.csv", rows).read_text().splitlines()
    assert lines == ["method,psnr,ssim", "ddim,20.5,", "pinv,,0.7"]
    with pytest.raises(ExportError, match=r"\.json or \.csv"):
        save_metrics(tmp_path / "m.txt", rows)
