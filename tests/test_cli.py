"""The CLI contract of the foundation issue (later issues rely on it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.__main__ import main
from engine.io.export import read_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_list_json_has_the_contracted_keys(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) >= {"operators", "methods", "models", "priors"}
    assert set(listing["operators"]) >= {"noise", "blur", "mask", "downsample", "grayscale"}
    pinv = next(m for m in listing["methods"] if m["name"] == "pinv")
    assert pinv["kind"] == "baseline" and pinv["params"] == []
    tikhonov = next(m for m in listing["methods"] if m["name"] == "tikhonov")
    alpha = next(p for p in tikhonov["params"] if p["name"] == "alpha")
    assert alpha["lo"] > 0 and alpha["help"]


def test_restore_writes_png_with_recipe_and_flat_json(tmp_path):
    out, js = tmp_path / "x.png", tmp_path / "x.json"
    code = main(["restore", "--sample", "0", "--degrade", "downsample=2,noise=0.02",
                 "--method", "pinv", "--out", str(out), "--json", str(js)])
    assert code == 0
    metrics = json.loads(js.read_text())
    assert {"psnr", "ssim", "nfe", "seconds"} <= set(metrics)
    assert all(not isinstance(v, (list, dict)) for v in metrics.values())
    assert metrics["nfe"] == 0 and 15 < metrics["psnr"] < 40  # 19.50 ± 0.01 dB over 10 noise seeds
    recipe = read_recipe(out)
    assert recipe["method"] == "pinv" and recipe["degradation"] == "downsample=2,noise=0.02"
    assert recipe["source"] == "demo:0" and recipe["seed"] == 0
    from PIL import Image
    assert Image.open(out).size == (28 + 4, 28 + 4)  # one tile, 2-pixel gutters
    assert main(["restore", "--sample", "0", "--degrade", "noise=0.1", "--method", "pinv",
                 "--scale", "3", "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * 28 + 4, 3 * 28 + 4)


def test_restore_reports_diversity_for_several_samples(tmp_path):
    js = tmp_path / "x.json"
    assert main(["restore", "--sample", "1", "--degrade", "blur=1.5,noise=0.05", "--method",
                 "tikhonov", "--n", "3", "--out", str(tmp_path / "x.png"), "--json", str(js)]) == 0
    assert json.loads(js.read_text())["diversity"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("argv, reason", [
    (["--degrade", "blur=-1"], "blur σ must be ≥ 0"),
    (["--degrade", "downsample=3"], "not divisible"),
    (["--degrade", "noise=0.1", "--param", "alpha=-5"], "outside"),
    (["--degrade", "noise=0.1", "--method", "nosuch"], "unknown method"),
    (["--degrade", "noise=0.1", "--sample", "999"], "--sample must lie"),
])
def test_bad_input_exits_2_with_one_line_reason(tmp_path, argv, reason):
    base = {"--method": "tikhonov", "--sample": "0"}
    for key, value in zip(argv[::2], argv[1::2]):
        base[key] = value
    args = [a for kv in base.items() for a in kv] + ["--out", str(tmp_path / "o.png")]
    done = subprocess.run([sys.executable, "-m", "engine", "restore", *args], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and reason in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_unreadable_image_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["restore", "--image", str(bad), "--degrade", "noise=0.1", "--method", "pinv",
                 "--out", str(tmp_path / "o.png")]) == 2
    assert "broken.png" in capsys.readouterr().err


@pytest.mark.parametrize("argv,reason", [(["card", "no-such-model"], "no-such-model"),
                                         (["card", "features"], "not a diffusion model")])
def test_card_refuses_what_is_not_a_shipped_diffusion_model(argv, reason, capsys):
    assert main(argv) == 2
    assert reason in capsys.readouterr().out
