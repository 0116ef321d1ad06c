"""README figures: curves are gathered per method across eval reports and drawn."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from studio.figures import curves


def main(argv: list[str]) -> int:
    """`python -m studio.figures` in its own process, as users run it: in this process
    its offscreen plot preceded every one of the GUI suite's segfaults (4 of 10 full
    runs on 2026-12-02, each while the next test built its window)."""
    return subprocess.run([sys.executable, "-m", "studio.figures", *argv], timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}).returncode


def report(nfe, rows):
    return {"task": "generate", "results": {m: {"fd": fd, "nfe": nfe} for m, fd in rows.items()}}


def test_curves_group_points_by_method_and_skip_failures():
    reports = [report(50, {"a": 3.0, "b": 5.0}), report(10, {"a": 9.0}),
               {"results": {"b": {"error": "diverged"}}}]
    assert curves(reports, "fd") == {"a": [(10, 9.0, None), (50, 3.0, None)],
                                     "b": [(50, 5.0, None)]}


def test_curves_against_a_swept_parameter_carry_intervals():
    reports = [{"config": {"params": {"k": str(k)}},
                "results": {"ddim": {"fd": fd, "fd_ci": [fd - 1, fd + 2], "nfe": 50}}}
               for k, fd in ((0.6, 4.0), (0.0, 8.0))]
    assert curves(reports, "fd", x="k") == {"ddim": [(0.0, 8.0, (7.0, 10.0)), (0.6, 4.0, (3.0, 6.0))]}


def test_error_bars_are_drawn(tmp_path):
    path = tmp_path / "r.json"
    rows = {"fd": 5.0, "fd_ci": [1.0, 9.0], "nfe": 10}
    path.write_text(json.dumps({"results": {"a": rows}}))
    out = tmp_path / "bars.png"
    assert main([str(out), str(path)]) == 0
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    blue_rows = np.nonzero((abs(pixels - [0x4E, 0x79, 0xA7]).sum(-1) < 30).any(1))[0]
    assert blue_rows.max() - blue_rows.min() > 200  # a single point with a tall bar


def test_plot_is_written_with_a_curve_per_method(tmp_path):
    paths = []
    for nfe, rows in ((10, {"a": 9.0, "b": 7.0}), (50, {"a": 3.0, "b": 5.0})):
        paths.append(tmp_path / f"r{nfe}.json")
        paths[-1].write_text(json.dumps(report(nfe, rows)))
    out = tmp_path / "plot.png"
    assert main([str(out), *map(str, paths)]) == 0
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert pixels.shape[1] == 900
    blue = (abs(pixels - [0x4E, 0x79, 0xA7]).sum(-1) < 30).sum()
    orange = (abs(pixels - [0xF2, 0x8E, 0x2B]).sum(-1) < 30).sum()
    assert blue > 100 and orange > 100  # both curves drawn
    assert main([str(out), str(tmp_path / "missing.json")]) == 2
