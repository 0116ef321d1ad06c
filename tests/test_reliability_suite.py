"""Reliability suite (issue 17): the command line fed a corpus of bad images and bad
arguments that this file writes itself, each in its own process.

Bad input must end with exit status 2 and exactly one line on stderr (``error: …``),
never a traceback, within `HANG_BOUND` seconds (a generous hang bound for a loaded
2-core machine, not a speed claim). Odd but valid images (16-bit, palette, CMYK, 1×1, …)
may also succeed (status 0, the grid written). The 6000×6000 photo runs under a
512 MB memory limit (``RESTORATION_MEMORY_LIMIT``): the job is refused before it starts.

Marked ``reliability`` (excluded from the default run): ``pytest -m reliability``.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[1]
HANG_BOUND = 180  # seconds per command


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(array, mode=mode).save(path)
    return path


def _noise(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def bad_images(folder: Path) -> dict[str, Path]:
    """Files no image reader should accept (status 2 expected)."""
    files = {}
    (folder / "empty.png").write_bytes(b"")
    files["zero bytes"] = folder / "empty.png"
    (folder / "text.png").write_text("this is not an image\n" * 20)
    files["text"] = folder / "text.png"
    png = write_png(folder / "full.png", _noise((64, 64, 3))).read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    files["truncated PNG"] = folder / "truncated.png"
    Image.fromarray(_noise((64, 64, 3))).save(folder / "full.jpg", quality=90)
    jpeg = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    files["truncated JPEG"] = folder / "truncated.jpg"
    (folder / "header.png").write_bytes(png[:33])  # signature + IHDR only
    files["PNG header only"] = folder / "header.png"
    nan = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    nan[5, 5] = np.nan
    Image.fromarray(nan, mode="F").save(folder / "nan.tif")
    files["NaN TIFF"] = folder / "nan.tif"
    inf = np.zeros((32, 32), np.float32)
    inf[0, 0] = np.inf
    Image.fromarray(inf, mode="F").save(folder / "inf.tif")
    files["Inf TIFF"] = folder / "inf.tif"
    (folder / "a folder.png").mkdir()
    files["a folder"] = folder / "a folder.png"
    files["missing"] = folder / "missing.png"
    bomb = folder / "bomb.png"  # 20000×20000 declared: beyond MAX_PIXELS, never decoded
    Image.new("1", (20000, 20000)).save(bomb)
    files["decompression bomb"] = bomb
    return files


def odd_images(folder: Path) -> dict[str, Path]:
    """Valid but unusual images: read (status 0) or refused in one line (status 2)."""
    files = {"16-bit": folder / "16.png", "palette": folder / "p.png", "CMYK": folder / "cmyk.jpg",
             "1×1": folder / "one.png", "RGBA": folder / "rgba.png", "1-bit": folder / "bit.png",
             "LA": folder / "la.png", "float TIFF": folder / "f.tif", "tall 1×300": folder / "tall.png"}
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(files["16-bit"])
    Image.fromarray(_noise((32, 32, 3))).convert("P").save(files["palette"])
    Image.fromarray(_noise((32, 32, 3))).convert("CMYK").save(files["CMYK"])
    write_png(files["1×1"], np.zeros((1, 1, 3), np.uint8))
    write_png(files["RGBA"], _noise((32, 32, 4)))
    Image.fromarray(_noise((32, 32)) > 127).save(files["1-bit"])
    Image.fromarray(_noise((32, 32, 2))).save(files["LA"])
    Image.fromarray(np.linspace(-1, 2, 32 * 32, dtype=np.float32).reshape(32, 32), mode="F").save(files["float TIFF"])
    write_png(files["tall 1×300"], _noise((300, 1)))
    return files


def run_cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=HANG_BOUND, env={**os.environ, **(env or {})})


def assert_one_line_refusal(done: subprocess.CompletedProcess, what: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr, f"{what}: {done.stderr[-2000:]}"
    assert done.returncode == 2, f"{what}: status {done.returncode}: {done.stderr[-500:]}"
    assert len(lines) == 1 and lines[0].startswith("error:"), f"{what}: {lines}"


def restore(image: Path, out: Path, method: str = "pinv", degrade: str = "noise=0.1") -> list[str]:
    return ["restore", "--image", str(image), "--degrade", degrade, "--method", method, "--out", str(out)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, bad_images(folder), odd_images(folder)


@pytest.mark.parametrize("name", ["zero bytes", "text", "truncated PNG", "truncated JPEG",
                                  "PNG header only", "NaN TIFF", "Inf TIFF", "a folder", "missing",
                                  "decompression bomb"])
def test_a_bad_image_is_refused_in_one_line(corpus, name, tmp_path):
    _, bad, _ = corpus
    done = run_cli(restore(bad[name], tmp_path / "o.png"))
    assert_one_line_refusal(done, name)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("name", ["16-bit", "palette", "CMYK", "1×1", "RGBA", "1-bit", "LA",
                                  "float TIFF", "tall 1×300"])
@pytest.mark.parametrize("method", ["pinv", "ddim@empirical-vp"])
def test_an_odd_image_is_restored_or_refused_in_one_line(corpus, name, method, tmp_path):
    _, _, odd = corpus
    done = run_cli(restore(odd[name], tmp_path / "o.png", method))
    if done.returncode == 0:
        assert "Traceback" not in done.stderr and (tmp_path / "o.png").is_file(), done.stderr
    else:
        assert_one_line_refusal(done, f"{name} with {method}")


def test_a_6000_by_6000_photo_over_the_memory_limit_is_refused_before_it_runs(tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (6000, 6000), (90, 120, 150)).save(big)  # compresses to ~100 KB
    done = run_cli(restore(big, tmp_path / "o.png", "tikhonov"),
                   env={"RESTORATION_MEMORY_LIMIT": "512M"})
    assert_one_line_refusal(done, "6000×6000")
    assert "3×6000×6000 needs about" in done.stderr and "pixels fits" in done.stderr


BAD_ARGUMENTS = [
    ["--device", "tpu"], ["--device", "cuda:7"], ["--device", ""], ["--seed", "2**70"],
    ["--seed", "-5"], ["--seed", "1.5"], ["--seed", "abc"], ["--n", "0"], ["--n", "-3"],
    ["--n", "1e12"], ["--nfe", "1e9"], ["--nfe", "0"], ["--nfe", "nan"], ["--scale", "99"],
    ["--param", "alpha"], ["--param", "alpha=nan"], ["--param", "alpha=1e400"],
    ["--param", "nosuch=1"], ["--degrade", "blur=nan"], ["--degrade", "blur=1e400"],
    ["--degrade", "downsample=0"], ["--degrade", "mask=box:2"], ["--degrade", "noise=-1"],
    ["--degrade", "wobble"], ["--method", "nosuch"], ["--method", "pinv@nosuch"],
    ["--method", "ddim@nosuch"], ["--method", "ddim@gaussian2d"], ["--method", "ddim", "--model", "vp",
                                                                    "--method", "ddim@vp"],
    ["--out", "/nonexistent/o.png"], ["--out", "o.txt"], ["--json", "/nonexistent/m.json"],
    ["--json", "m.txt"], ["--trajectory", "t.avi"], ["--sample", "-1"], ["--sample", "100000"],
    ["--measurement-seed", "-1"], ["--bogus"],
]


@pytest.mark.parametrize("extra", BAD_ARGUMENTS, ids=lambda a: " ".join(a) or "nothing")
def test_a_bad_argument_is_refused_in_one_line(extra, tmp_path):
    args = {"--sample": "0", "--degrade": "noise=0.1", "--method": "tikhonov", "--out": "o.png"}
    for key, value in zip(extra[::2], extra[1::2]):
        args[key] = value
    argv = ["restore"] + [a for kv in args.items() for a in kv] + (extra if len(extra) % 2 else [])
    argv = [str(tmp_path / a) if a in ("o.png", "o.txt", "m.txt", "t.avi") else a for a in argv]
    done = run_cli(argv)
    assert_one_line_refusal(done, " ".join(extra))
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("argv", [
    ["sample", "--method", "ddim@ring8", "--n", "4", "--out", "o.png"],
    ["sample", "--method", "pinv", "--out", "o.png"],
    ["sample", "--method", "ddim@empirical-vp", "--n", "100000000", "--out", "o.png"],
    ["restore"], ["nosuch-command"], ["list", "--bogus"],
], ids=lambda a: " ".join(a))
def test_other_bad_commands_are_refused_in_one_line(argv, tmp_path):
    done = run_cli([str(tmp_path / a) if a == "o.png" else a for a in argv])
    assert_one_line_refusal(done, " ".join(argv))
