"""The application entry point: the demo run end to end, and a start-up without torch."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def test_run_demo_saves_a_screenshot_of_the_finished_window(tmp_path):
    shot = tmp_path / "studio.png"
    done = subprocess.run([sys.executable, "-m", "studio", "--run-demo", "--screenshot", str(shot),
                           "--n", "4", "--timeout", "60"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 samples" in done.stdout
    with Image.open(shot) as image:
        assert image.width >= 1200 and image.height >= 800
        assert np.unique(np.asarray(image.convert("L"))).size > 16  # a real picture, not a blank


def test_the_window_modules_do_not_import_torch():
    code = ("import sys, studio.app, studio.main_window\n"
            "print(sorted(m for m in ('torch', 'engine.core.jobs') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
