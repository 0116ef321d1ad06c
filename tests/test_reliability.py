"""Issue 17, engine and CLI: every failure is one line with exit status 2, never a
traceback, silently wrong output or an out-of-memory death. One test per finding
(each failed on the code before the fix); the hostile corpus run through subprocesses
is `tests/test_reliability_suite.py` (marked ``reliability``)."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from engine.__main__ import main

DEMO = ["restore", "--sample", "0", "--degrade", "noise=0.1"]


def cli(argv, capsys) -> tuple[int, list[str]]:
    """Run the CLI in-process: (exit status, stderr lines); a traceback fails the test."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    return code, capsys.readouterr().err.strip().splitlines()


def refused(argv, capsys, reason: str) -> None:
    code, lines = cli(argv, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error:") and reason in lines[0], lines


# -- item 5: tracebacks and usage errors become one line ----------------------------------

@pytest.mark.parametrize("extra,reason", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--seed", str(2**70)], "seed must be an integer in [0, 2147483647]"),
    (["--seed", "2**70"], "seed must be an integer"),
    (["--seed", "-1"], "seed must be an integer"),
    (["--method", "ddim", "--nfe", "1e9"], "nfe=1000000000 is outside [1, 4096]"),
    (["--method", "ddim@gaussian2d"], "gaussian2d is a prior over 2-D points"),
    (["--method", "pinv", "--no-such-option"], "unrecognized arguments"),
])
def test_bad_arguments_are_one_line_with_status_2(extra, reason, tmp_path, capsys):
    argv = DEMO + ["--method", "pinv"] + extra + ["--out", str(tmp_path / "o.png")]
    refused(argv, capsys, reason)
    assert not (tmp_path / "o.png").exists()


def test_cuda_without_cuda_is_one_line(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    refused(DEMO + ["--method", "pinv", "--device", "cuda", "--out", str(tmp_path / "o.png")],
            capsys, "no CUDA device")


def test_sampling_a_point_prior_is_refused_before_it_runs(tmp_path, capsys):
    refused(["sample", "--method", "ddim@ring8", "--n", "4", "--out", str(tmp_path / "o.png")],
            capsys, "ring8 is a prior over 2-D points")


# -- item 6: nothing silently wrong ----------------------------------------------------------

@pytest.mark.parametrize("name,fmt", [("g.jpg", "JPEG"), ("g.gif", "GIF"), ("g.tif", "TIFF"),
                                      ("g.bmp", "BMP"), ("g.png", "PNG")])
def test_out_writes_the_format_its_extension_names(name, fmt, tmp_path, capsys):
    assert main(DEMO + ["--method", "pinv", "--out", str(tmp_path / name)]) == 0
    with Image.open(tmp_path / name) as image:
        assert image.format == fmt and image.size == (32, 32)


def test_out_without_extension_is_a_png_and_unknown_extensions_are_refused(tmp_path, capsys):
    assert main(DEMO + ["--method", "pinv", "--out", str(tmp_path / "grid")]) == 0
    assert "wrote " + str(tmp_path / "grid.png") in capsys.readouterr().err
    with Image.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG"
    assert not (tmp_path / "grid").exists()
    refused(DEMO + ["--method", "pinv", "--out", str(tmp_path / "g.txt")], capsys,
            ".txt is not an image format")
    assert not (tmp_path / "g.txt").exists()


def test_a_model_for_a_method_without_one_is_refused(tmp_path, capsys):
    refused(DEMO + ["--method", "pinv@nosuch", "--out", str(tmp_path / "o.png")], capsys,
            "pinv takes no model")


def test_infinite_psnr_is_null_with_a_reason_in_strict_json(tmp_path, capsys):
    out, metrics = tmp_path / "o.png", tmp_path / "m.json"
    assert main(["restore", "--sample", "0", "--degrade", "none", "--method", "pinv",
                 "--out", str(out), "--json", str(metrics)]) == 0

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    values = json.loads(metrics.read_text(), parse_constant=no_constants)
    assert values["psnr"] is None and "equals the clean image" in values["psnr_note"]
    assert values["ssim"] == pytest.approx(1.0)


def test_a_failed_json_write_leaves_no_image(tmp_path, capsys):
    out = tmp_path / "o.png"
    refused(DEMO + ["--method", "pinv", "--out", str(out), "--json", str(tmp_path / "no" / "m.json")],
            capsys, "does not exist")
    (tmp_path / "m.json").mkdir()  # a folder where the metrics should go
    refused(DEMO + ["--method", "pinv", "--out", str(out), "--json", str(tmp_path / "m.json")],
            capsys, "it is a folder")
    assert not out.exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_tiff_with_nan_or_infinite_pixels_is_refused_as_the_file(bad, tmp_path, capsys):
    pixels = np.linspace(-0.5, 1.5, 32 * 32, dtype=np.float32).reshape(32, 32)
    pixels[3, 4] = bad
    Image.fromarray(pixels, mode="F").save(tmp_path / "bad.tif")
    refused(["restore", "--image", str(tmp_path / "bad.tif"), "--degrade", "noise=0.1",
             "--method", "pinv", "--out", str(tmp_path / "o.png")], capsys,
            "bad.tif: 1 pixel value(s) are NaN or infinite")
    pixels[3, 4] = 0.5  # finite values outside [0, 1] are clipped, as documented
    Image.fromarray(pixels, mode="F").save(tmp_path / "ok.tif")
    from engine.io.imageio import load_image
    image = load_image(tmp_path / "ok.tif")
    assert image.min() == 0 and image.max() == 1


def test_a_folder_given_as_image_is_called_a_folder(tmp_path, capsys):
    refused(["restore", "--image", str(tmp_path), "--degrade", "noise=0.1", "--method", "pinv",
             "--out", str(tmp_path / "o.png")], capsys, "a folder, not an image file")


# -- item 7: Tikhonov on a fully masked image ---------------------------------------------

@pytest.mark.parametrize("mask", ["box:1", "half:1", "random:1"])
def test_tikhonov_on_a_fully_masked_image_returns_mid_grey(mask, one_thread):
    from engine.core.jobs import Request, run_job
    from engine.core.operators import Degradation
    from engine.io.data import demo_images

    image = demo_images()[0][0]
    result = run_job(Request(method="tikhonov", image=image,
                             degradation=Degradation.parse(f"mask={mask},noise=0.05")))
    # no pixel is observed: the data term is empty and the regulariser's minimiser is m
    assert torch.equal(result.samples, torch.full_like(result.samples, 0.5))


# -- item 8: file modes follow the umask ----------------------------------------------------

@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_exports_get_the_mode_the_umask_gives(umask, mode, tmp_path):
    from engine.io import export

    old = os.umask(umask)
    try:
        grid = export.save_grid(tmp_path / "g.png", torch.rand(2, 1, 8, 8), {"method": "pinv"})
        metrics = export.save_metrics(tmp_path / "m.csv", [{"psnr": 20.0}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(grid.stat().st_mode) == mode
    assert stat.S_IMODE(metrics.stat().st_mode) == mode


# -- item 3: a memory budget before the job starts ----------------------------------------

def test_a_job_over_the_memory_limit_is_refused_naming_the_limit_and_a_setting_that_fits(
        tmp_path, capsys, monkeypatch):
    from engine.core import budget, registry

    monkeypatch.setenv("RESTORATION_MEMORY_LIMIT", "64M")
    refused(DEMO + ["--method", "pinv", "--n", "2000", "--out", str(tmp_path / "o.png")], capsys,
            "pinv on 2000 sample(s) of 1×28×28 needs about")
    code, lines = cli(DEMO + ["--method", "pinv", "--n", "2000", "--out", str(tmp_path / "o.png")], capsys)
    assert "the limit is 64 MB (RESTORATION_MEMORY_LIMIT=64M)" in lines[0]
    fits = int(lines[0].rsplit("; ", 1)[1].split()[0])  # "N samples fit"
    info = registry.get("pinv")
    params = registry.make_params(info.params, {})
    assert budget.estimate(info, params, (1, 28, 28), fits) <= 64 * 2**20
    assert budget.estimate(info, params, (1, 28, 28), fits + 1) > 64 * 2**20
    assert main(DEMO + ["--method", "pinv", "--n", str(fits), "--out", str(tmp_path / "o.png")]) == 0


def test_an_image_too_large_for_the_limit_names_a_size_that_fits(monkeypatch):
    from engine.core import budget, registry
    from engine.core.step import BadInputError

    monkeypatch.setenv("RESTORATION_MEMORY_LIMIT", "2G")
    info = registry.get("tikhonov")
    params = registry.make_params(info.params, {})
    with pytest.raises(BadInputError, match=r"on 1 sample\(s\) of 3×6000×6000 needs about .* "
                                            r"an image of at most \d+×\d+ pixels fits"):
        budget.check(info, params, (3, 6000, 6000), 1)
    assert budget.parse_size("1.5G") == 3 * 2**29


def test_the_limit_defaults_to_the_available_memory(monkeypatch):
    from engine.core import budget

    monkeypatch.delenv("RESTORATION_MEMORY_LIMIT", raising=False)
    limit, origin = budget.memory_limit()
    assert 2**26 < limit <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert "RESTORATION_MEMORY_LIMIT" in origin


def test_chunked_psnr_and_ssim_equal_the_whole_batch_exactly(monkeypatch):
    from engine.evaluation import metrics

    g = torch.Generator().manual_seed(0)
    x, ref, refs = (torch.rand(*shape, generator=g) for shape in
                    ((9, 3, 40, 50), (3, 40, 50), (9, 3, 40, 50)))
    whole = [metrics.psnr(x, ref), metrics.ssim(x, ref), metrics.psnr(x, refs), metrics.ssim(x, refs)]
    monkeypatch.setattr(metrics, "CHUNK_BYTES", 1)  # one sample per chunk
    chunked = [metrics.psnr(x, ref), metrics.ssim(x, ref), metrics.psnr(x, refs), metrics.ssim(x, refs)]
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked))
