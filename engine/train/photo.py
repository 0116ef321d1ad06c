"""Training of ``photo``: a fully-convolutional VP (DDPM ε) prior on natural photos.

Decisions:

* Schedule **VP** (linear β 1e-4 → 0.02, T = 1000) with ε-prediction, the same as the
  ``vp`` family: ``denoise(x_t, t) = (x_t − σ_t ε̂)/√ᾱ_t`` and every VP method (DDIM,
  DDPM, DPS, RMP, PnP-DRS) runs on it unchanged. A VE schedule would have needed its
  own samplers; VP's ``x_t = √ᾱ x0 + σ ε`` also denoises Gaussian noise of any σ up to
  the schedule's end by rescaling (`LearnedPrior.noise_level`).
* Network: the project's U-Net without attention and **without normalisation**
  (``norm="none"``, DRUNet-style): every output pixel depends only on a bounded
  neighbourhood, so the prior runs on any H×W, and tiles (`engine.priors.tiling`) agree
  with the whole image. GroupNorm would average over the whole input: a 64×64 training
  crop and a 4000×3000 photo would see different statistics.
* Levels [choice]: half of each batch draws k uniformly from 1 … T, half from
  1 … `LOW_LEVELS` (σ_t/√ᾱ_t ≲ 0.72 in model units, ≈ 92/255 in image units). The
  minimiser at every level is still E[x0|x_t] (only the weighting across levels
  changes); the small CPU budget goes where restoration works — photo noise of 5–50/255
  and the last steps of every sampler — rather than on pure-noise levels that a prior
  trained on 13 photos cannot draw convincingly anyway.
* Data: random 64×64 crops of the training photos (`engine.io.photos`), flips, 90°
  rotations, mild rescaling; the held-out photos are never read here.
* Shape: the config records ``"any_size": true`` (RGB, any H×W; see
  `engine.priors.learned`) and ``"shape": [3, 64, 64]``, the training crop, which is
  what unconditional generation draws.
* No sample grids at checkpoints: 64×64 draws from pure noise say little about a
  restoration prior; `measure` reports denoising PSNR on the held-out crops instead.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.io.data import to_model_range
from engine.io.photos import CropSampler, TEST_PHOTOS, training_photos
from engine.models.unet import UNet, UNetConfig, parameter_count
from engine.core.schedules import VPSchedule
from engine.train.diffusion import dataset_statistics, diffusion_loss, model_config
from engine.train import Family, register_family
from engine.train.loop import TrainSettings, init_network, save_model, train

ARCHITECTURE = UNetConfig(channels=16, multipliers=(1, 2, 4), blocks=1, attention=False,
                          image_channels=3, norm="none")
CROP = 64
LOW_LEVELS = 200
STATISTICS_CROPS, STATISTICS_SEED = 512, 12345


def photo_levels(schedule: VPSchedule, n: int, generator: torch.Generator) -> torch.Tensor:
    """t = k/T: the first half of the batch k ~ U{1 … T}, the second k ~ U{1 … LOW_LEVELS}."""
    high = n - n // 2
    k = torch.cat([torch.randint(1, schedule.steps + 1, (high,), generator=generator),
                   torch.randint(1, LOW_LEVELS + 1, (n - high,), generator=generator)])
    return k / schedule.steps


def train_photo(out: Path, settings: TrainSettings, architecture: UNetConfig = ARCHITECTURE,
                crop: int = CROP, photos: dict[str, torch.Tensor] | None = None,
                resume: bool = False, progress: bool = True) -> dict:
    """Train the photo prior into ``out`` (a loadable model directory).

    ``photos``: training photos ``(3, H, W)`` in [0, 1] (default: `training_photos`).
    """
    photos = training_photos() if photos is None else photos
    sampler = CropSampler(photos, crop)
    schedule = VPSchedule()
    stats = dataset_statistics(to_model_range(
        sampler(STATISTICS_CROPS, torch.Generator().manual_seed(STATISTICS_SEED))))
    model = init_network(lambda: UNet(architecture), settings.seed)
    parameters = parameter_count(model)

    def write_model(ema_net, info):
        config = model_config("vp", architecture, schedule, "ssm", settings, info, parameters)
        config.update(family="photo", shape=[3, crop, crop], any_size=True,
                      dataset={"name": "scikit-image bundled photos", "photos": sorted(photos),
                               "held_out": list(TEST_PHOTOS), "crop": crop,
                               "augmentation": "flips, 90° rotations, rescale 2^U(−½, ½)"})
        config["training"]["levels"] = f"½ k ~ U{{1…{schedule.steps}}}, ½ k ~ U{{1…{LOW_LEVELS}}}"
        del config["grid_sampler"]
        save_model(out, ema_net, config, stats)

    def loss_fn(net, batch, generator):
        x0 = to_model_range(batch)
        t = photo_levels(schedule, len(x0), generator)
        return diffusion_loss(net, schedule, "eps", "ssm", x0, generator, t)

    return train(out, model, loss_fn, sampler, settings, write_model, None,
                 resume=resume, progress=progress)


register_family(Family("photo", lambda out, settings, args: train_photo(
    out, settings, resume=args.resume, progress=not args.quiet),
    steps=6000, summary="a fully-convolutional VP prior on the bundled natural photos"))
