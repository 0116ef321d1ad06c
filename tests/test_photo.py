"""The photo domain: bundled photos, crops, the any-size prior and its tiles."""

from __future__ import annotations

import json

import pytest
import torch

from engine.io import photos
from engine.models.unet import UNet
from engine.priors.learned import load_learned
from engine.priors.tiling import tile_starts, tiled_apply
from engine.train.loop import TrainSettings
from engine.train.photo import ARCHITECTURE, train_photo


def synthetic_photos(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.rand(3, 100, 120, generator=g), "b": torch.rand(3, 96, 96, generator=g)}


@pytest.fixture(scope="module")
def tiny_photo_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("photo")
    train_photo(out, TrainSettings(steps=2, batch=2, warmup=1, checkpoint_every=2),
                photos=synthetic_photos(), progress=False)
    return out


def random_output_layer(prior, seed: int = 0):
    """A trained-for-2-steps network predicts ≈ 0; give its last layer real weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.nn.init.normal_(prior.network.conv_out.weight, std=0.05)
    return prior


def test_photo_set_is_bundled_natural_and_held_out():
    assert set(photos.TEST_PHOTOS) == {"chelsea", "coffee", "rocket"}
    assert set(photos.TRAIN_PHOTOS).isdisjoint(photos.TEST_PHOTOS)
    assert not {"text", "page", "logo", "chessboard", "color", "phantom"} & set(photos.PHOTOS)
    pytest.importorskip("skimage")
    camera, chelsea = photos.load_photo("camera"), photos.load_photo("chelsea")
    assert camera.shape == (3, 512, 512) and torch.equal(camera[0], camera[2])  # gray → RGB
    assert chelsea.shape == (3, 300, 451) and not torch.equal(chelsea[0], chelsea[2])
    crops = photos.test_crops(64)
    assert crops.shape == (3, 3, 64, 64)
    torch.testing.assert_close(crops[0], chelsea[:, 118:182, 193:257])


def test_crop_sampler_is_seeded_and_augments():
    sampler = photos.CropSampler(synthetic_photos(), 32)
    a = sampler(8, torch.Generator().manual_seed(3))
    b = sampler(8, torch.Generator().manual_seed(3))
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b)
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert not torch.equal(a, sampler(8, torch.Generator().manual_seed(4)))
    with pytest.raises(Exception, match="too small"):
        photos.CropSampler(synthetic_photos(), 90)


def test_tile_starts_cover_with_overlap_on_the_grid():
    starts = tile_starts(1000, 256, 64, 4)
    assert starts[0] == 0 and starts[-1] == 1000 - 256
    assert all(s % 4 == 0 for s in starts)
    assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:]))
    assert tile_starts(200, 256, 64, 4) == [0]


def test_any_size_prior_loads_with_its_declared_shape(tiny_photo_model):
    config = json.loads((tiny_photo_model / "config.json").read_text())
    assert config["any_size"] is True and config["shape"] == [3, 64, 64]
    prior = load_learned(tiny_photo_model)
    assert prior.any_size and prior.shape == (3, 64, 64) and prior.size_multiple == 4
    assert prior.fitted_shape((3, 37, 53)) == (3, 37, 53)
    assert prior.fitted_shape((1, 37, 53)) == (3, 37, 53)
    x = torch.randn(2, 3, 37, 53)  # not a multiple of 4: padded, then cropped back
    assert prior.denoise(x, 0.05).shape == (2, 3, 37, 53)


def test_tiled_denoise_matches_whole_image_without_seams(tiny_photo_model):
    """512×512: whole image in one call vs 256×256 tiles (9 calls, 64-px overlaps).

    Measured: max |Δx̂0| = 2.9e-5 in model units (a random-output network, seed 0),
    concentrated along the tile borders; the bound is a tenth of one 8-bit grey level
    in [−1, 1] units, 0.2/255 = 7.8e-4.
    """
    prior = random_output_layer(load_learned(tiny_photo_model))
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    whole = prior.denoise(x, 0.08)
    prior.max_tile_pixels = 256 * 256
    tiled = prior.denoise(x, 0.08)
    assert float((whole - x).abs().mean()) > 1e-3  # the network does something
    # any step at a tile border is at most twice the largest difference: no visible seam
    assert float((tiled - whole).abs().max()) < 0.2 / 255


def test_tiles_carry_gradients(tiny_photo_model):
    prior = random_output_layer(load_learned(tiny_photo_model))
    prior.max_tile_pixels = 128 * 128
    x = torch.randn(1, 3, 200, 200, generator=torch.Generator().manual_seed(2), requires_grad=True)
    tiled = prior.denoise(x, 0.1)
    (grad,) = torch.autograd.grad(tiled.square().sum(), x)
    prior.max_tile_pixels = 10**9
    x_whole = x.detach().requires_grad_(True)
    (grad_whole,) = torch.autograd.grad(prior.denoise(x_whole, 0.1).square().sum(), x_whole)
    torch.testing.assert_close(grad, grad_whole, atol=1e-4, rtol=1e-3)


def test_tiling_applies_any_fully_convolutional_network():
    net = UNet(ARCHITECTURE).eval()
    torch.nn.init.normal_(net.conv_out.weight, std=0.05)
    x = torch.randn(3, 3, 96, 160, generator=torch.Generator().manual_seed(5))
    f = lambda z: net(z, torch.full((z.shape[0],), 0.3))
    with torch.no_grad():
        torch.testing.assert_close(tiled_apply(f, x, 4, max_pixels=3 * 128 * 128), f(x),
                                   atol=1e-4, rtol=0)


PEAK_MEMORY_SCRIPT = """
import resource, sys, torch
from engine.priors.learned import load_learned
torch.set_num_threads(1)
prior = load_learned(sys.argv[1])
prior.max_tile_pixels = 512 * 512
with torch.no_grad():
    prior.denoise(torch.zeros(1, 3, int(sys.argv[2]), int(sys.argv[2])), 0.05)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
def test_peak_memory_stays_bounded_as_the_image_grows(tiny_photo_model):
    """Peak RSS of one denoise in a fresh process, 512² tiles: 1024² vs 2048² pixels.

    Measured: 593 MB and 677 MB (+84 MB; one 2048² RGB float image is 48 MB), while an
    untiled 2048² pass would add ≈ 3.8 GB (the network needs ≈ 0.94 GB per megapixel).
    """
    import subprocess
    import sys

    def peak_mb(side: int) -> int:
        done = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(tiny_photo_model),
                               str(side)], capture_output=True, text=True, check=True, timeout=600)
        return int(done.stdout.split()[-1])

    assert peak_mb(2048) - peak_mb(1024) < 250


RESTORE_PEAK_SCRIPT = """
import resource, sys
from engine.__main__ import main
code = main(sys.argv[1:])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
def test_a_3000x2000_photo_restores_through_the_cli_within_4_gb(tmp_path):
    """``engine restore --image`` of a 3000×2000 RGB photo with ``ddim@photo`` (1 NFE,
    σ = 25/255) in a fresh process: full-size output, peak RSS under 4 GB.

    Measured on the loaded 2-core machine (/usr/bin/time -v, 2026-12-02): 1969 MB
    peak RSS, 729 s (the process got 13 % of a core); the shipped model tiles above
    1024×1024 pixels per call.
    """
    import subprocess
    import sys

    from PIL import Image

    from engine.priors.catalog import learned_models

    if "photo" not in learned_models():
        pytest.skip("the photo model is not shipped")
    photo = (photos.load_photo("chelsea").permute(1, 2, 0) * 255).round().byte().numpy()
    source, out = tmp_path / "big.png", tmp_path / "restored.png"
    Image.fromarray(photo).resize((3000, 2000), Image.BICUBIC).save(source, compress_level=1)
    done = subprocess.run([sys.executable, "-c", RESTORE_PEAK_SCRIPT, "restore", "--image", str(source),
                           "--degrade", "noise=0.0980392", "--method", "ddim@photo", "--nfe", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=3600)
    code, peak_mb = (int(v) for v in done.stdout.split()[-2:])
    assert code == 0, done.stderr
    assert Image.open(out).size == (3000 + 4, 2000 + 4)  # one full-size tile, 2-pixel grid border
    assert peak_mb < 4000, f"peak RSS {peak_mb} MB"
