"""Training of the diffusion priors: VP (DDPM) and Soft Diffusion (blur, mask).

Loss (Soft Score Matching, soft_diffusion.md): ``E_{t,x0,η} ||C_t(h_θ(x_t, t) − x0)||² / σ_t²``
with ``x_t = C_t x0 + σ_t η``, i.e. the weight ``w(t) = 1/σ_t²``.

* Soft Diffusion families predict the residual ``φ_θ`` with ``h_θ = φ_θ(x_t, t) + x_t``
  (parametrisation ``x0-residual``); t ~ U(0, 1]. ``--loss clean`` trains the
  baseline ``||h_θ − x0||²`` instead (the paper's upper bound, for comparison).
* ``--loss ssm+clean`` [choice] adds the clean term to SSM. Both terms, and so their
  sum, are minimised by ``E[x0|x_t]``: the target is unchanged and the SSM emphasis
  stays (×1/σ² = ×100 in the blur stage). What it fixes: SSM does not see the
  components of h that C_t removes, and with ``h = φ + x_t`` those default to the
  white noise of x_t. Measured after 750–1000 steps: x̂0 carried that noise at every
  blur level and the momentum sampler built it into grainy textures.
* VP predicts ε (parametrisation ``eps``), t = k/1000 with k uniform in 1 … 1000. With
  ``C_t = √ᾱ I`` and ``x̂0 = (x_t − σ_t ε̂)/√ᾱ`` the SSM loss equals ``||ε̂ − ε||²``
  exactly, so VP's SSM loss *is* the DDPM loss; the clean loss is refused for VP (its
  weight explodes as ᾱ → 0).
* Each sample of a batch has its own t. C_t is applied per sample (a 28×28 blur is two
  tiny matmuls; masks and scales are element-wise), exactly the operator the samplers
  use, so training and sampling cannot disagree about C_t.
* Sample grids at checkpoints are drawn with the registered sampler of the family
  (``ddim`` for VP, ``momentum`` for Soft Diffusion; `FAMILIES`), exactly as users run
  it: no clipping of x̂0. (Until 2026-12 the grids used a built-in copy that clipped x̂0
  to the data range; clipped momentum is much worse on soft-blur, FD 441, and clipping
  hid VP's saturated samples, so grids looked unlike what the app produced.)
* Registered as the training families ``vp``, ``soft-blur`` and ``soft-mask`` of
  ``python -m engine train`` (options ``--loss``, ``--blur-table``; 4000 steps by default).
* Short CPU budget [choice]: Adam lr 1e-3 (the paper's 2e-4 is for 1–2 M steps),
  200 warm-up steps, clip 1, EMA 0.999, batch 64.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import numpy as np
import torch

from engine.io.data import load_fashion_mnist, to_image_range, to_model_range
from engine.models.unet import UNet, UNetConfig, parameter_count
from engine.priors.learned import LearnedPrior
from engine.core.rng import SampleRNG
from engine.core.schedules import Schedule, SoftBlurSchedule, SoftMaskSchedule, VPSchedule
from engine.core.step import BadInputError
from engine.train import Family, register_family
from engine.train.loop import TrainSettings, git_revision, init_network, save_model, train



def soft_blur_schedule(blur_table: list[float] | None = None) -> SoftBlurSchedule:
    """The blur schedule of a soft-blur model: ``blur_table`` (e.g. the W2 shortest path of
    ``python -m engine schedule``), else [choice] σ_b = 0.01 then geometric 0.5 → 15 px.

    The plain geometric table 0.01 → 15 spends the first half of the blur stage below
    σ_b ≈ 0.4 px, where a Gaussian blur of a 28-px image is the identity to < 1 % (a
    0.4-px kernel gives its neighbours weight e^−3); training and sampling then repeat
    plain denoising at σ = 0.1 for half of t (measured: after 1000 steps that model drew
    textured blobs). The W2 path on Fashion-MNIST starts its blur stage at 0.38 px and
    is close to geometric from there, which the fallback imitates without the 3-minute
    W2 computation.
    """
    if blur_table is None:
        blur_table = [0.01, *np.geomspace(0.5, 15.0, 31).round(4).tolist()]
    return SoftBlurSchedule(blur_table=list(blur_table))


FAMILIES = {"vp": (VPSchedule, "eps", "ddim"),
            "soft-blur": (soft_blur_schedule, "x0-residual", "momentum"),
            "soft-mask": (SoftMaskSchedule, "x0-residual", "momentum")}
LOSSES = ("ssm", "clean", "ssm+clean")
GRID_SAMPLES, GRID_STEPS, GRID_SEED = 36, {"ddim": 50, "momentum": 100}, 0


def draw_levels(schedule: Schedule, n: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample corruption levels: VP's integer steps k/T, else t ~ U(0, 1]."""
    if isinstance(schedule, VPSchedule):
        return torch.randint(1, schedule.steps + 1, (n,), generator=generator) / schedule.steps
    return 1.0 - torch.rand(n, generator=generator)


def corrupt_each(schedule: Schedule, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``C_{t_i} x_i`` for every sample i of the batch."""
    return torch.cat([schedule.corruption(float(ti)).forward(x[i:i + 1]) for i, ti in enumerate(t)])


def diffusion_loss(model, schedule: Schedule, parametrisation: str, loss: str,
                   x0: torch.Tensor, generator: torch.Generator,
                   t: torch.Tensor | None = None) -> torch.Tensor:
    """The family's loss on ``x0`` at levels ``t`` (default: `draw_levels`)."""
    t = draw_levels(schedule, len(x0), generator) if t is None else t
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    sigma = torch.tensor([schedule.sigma(float(ti)) for ti in t], device=x0.device)[:, None, None, None]
    x_t = corrupt_each(schedule, t, x0) + sigma * noise  # x_t = C_t x0 + σ_t η
    out = model(x_t, t.to(x0.device))
    if parametrisation == "eps":
        return (out - noise).pow(2).mean()  # = SSM for C_t = √ᾱ I (see module doc)
    error = out + x_t - x0  # h_θ − x0 with h_θ = φ_θ + x_t
    clean = error.pow(2).mean()
    if loss == "clean":
        return clean
    ssm = (corrupt_each(schedule, t, error) / sigma).pow(2).mean()  # SSM, w = 1/σ_t²
    return ssm + clean if loss == "ssm+clean" else ssm


@torch.no_grad()
def sample_for_grid(prior: LearnedPrior, n: int, steps: int, method: str, seed: int) -> torch.Tensor:
    """Checkpoint grids drawn with the registered sampler ``method``: what users get."""
    from engine.core import registry

    info = registry.get(method)
    params = registry.make_params(info.params, {"nfe": steps})
    *_, last = info.run(prior, None, params, SampleRNG(seed, n, device=prior.device))
    return last.x0_hat


def dataset_statistics(x0: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean image (1, 28, 28) and the (mean, std) of per-image mean colour, model range."""
    colour = x0.mean(dim=(1, 2, 3))
    return {"mean_image": x0.mean(0), "mean_colour": torch.stack([colour.mean(), colour.std()])}


def model_config(family: str, architecture: UNetConfig, schedule: Schedule, loss: str,
                 settings: TrainSettings, info: dict, parameters: int) -> dict:
    parametrisation, sampler = FAMILIES[family][1:]
    return {"kind": "diffusion", "family": family, "architecture": architecture.to_dict(),
            "parameters": parameters, "schedule": schedule.to_config(),
            "parametrisation": parametrisation, "shape": [1, 28, 28], "data_range": [-1.0, 1.0],
            "dataset": {"name": "fashion-mnist", "split": "train", "size": 60000},
            "grid_sampler": {"method": sampler, "steps": GRID_STEPS[sampler], "seed": GRID_SEED},
            "training": {**info, "loss": loss, "batch": settings.batch, "lr": settings.lr,
                         "warmup": settings.warmup, "clip": settings.clip, "ema": settings.ema,
                         "seed": settings.seed, "device": settings.device,
                         "threads": torch.get_num_threads(), "machine": platform.machine(),
                         "command": settings.extra.get("command", ""),
                         "git_revision": git_revision()}}


def train_diffusion(family: str, out: Path, settings: TrainSettings, loss: str = "ssm",
                    architecture: UNetConfig = UNetConfig(), data: torch.Tensor | None = None,
                    blur_table: list[float] | None = None, resume: bool = False,
                    progress: bool = True, grids: bool = True, data_dir: Path | None = None,
                    mask_sigma_max: float = 0.0) -> dict:
    """Train one diffusion family into ``out`` (a loadable model directory).

    ``data``: training images in [0, 1] (default: the Fashion-MNIST train split, read
    from ``data_dir`` or `engine.io.data.data_dir`'s default);
    ``blur_table``: the soft-blur family's table of blur levels (see `soft_blur_schedule`);
    ``mask_sigma_max``: the soft-mask family's noise at t = 1 (`SoftMaskSchedule.sigma_max`).
    """
    if family not in FAMILIES:
        raise BadInputError(f"unknown family {family!r} ({', '.join(FAMILIES)})")
    schedule_cls, parametrisation, sampler = FAMILIES[family]
    choices = LOSSES if parametrisation != "eps" else LOSSES[:1]
    if loss not in choices:
        raise BadInputError(f"loss {loss!r} is not available for {family} ({', '.join(choices)})")
    if blur_table is not None and family != "soft-blur":
        raise BadInputError("a blur table only applies to the soft-blur family")
    if mask_sigma_max and family != "soft-mask":
        raise BadInputError("--mask-sigma-max only applies to the soft-mask family")
    schedule = (schedule_cls(blur_table) if blur_table is not None
                else SoftMaskSchedule(sigma_max=mask_sigma_max) if family == "soft-mask"
                else schedule_cls())
    x0 = to_model_range(load_fashion_mnist("train", data_dir)[0] if data is None else data)
    stats = dataset_statistics(x0)
    model = init_network(lambda: UNet(architecture), settings.seed)
    parameters = parameter_count(model)

    def config_for(ema_net, info):
        return model_config(family, architecture, schedule, loss, settings, info, parameters)

    def write_model(ema_net, info):
        save_model(out, ema_net, config_for(ema_net, info), stats)

    def draw_samples(ema_net):
        prior = LearnedPrior(ema_net, config_for(ema_net, {}), stats).to(settings.device)
        return to_image_range(sample_for_grid(prior, GRID_SAMPLES, GRID_STEPS[sampler], sampler, GRID_SEED))

    def loss_fn(net, batch, generator):
        return diffusion_loss(net, schedule, parametrisation, loss, batch, generator)

    return train(out, model, loss_fn, x0, settings, write_model,
                 draw_samples if grids else None, resume=resume, progress=progress)


@torch.no_grad()
def denoising_psnr(prior: LearnedPrior, images: torch.Tensor, sigma: float, seed: int = 0,
                   batch: int = 250) -> tuple[float, float]:
    """Mean PSNR (dB, [0, 1] units) of ``E[x0 | x0 + σ ε]`` and of the noisy input itself.

    ``images`` and ``sigma`` are in [0, 1] image units; the prior works in [−1, 1].
    """
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    noisy = images + sigma * noise
    denoised = torch.cat([to_image_range(prior.denoise_gaussian(to_model_range(noisy[i:i + batch]), 2 * sigma))
                          for i in range(0, len(images), batch)])

    def psnr(x):
        return float((-10 * torch.log10((x.clamp(0, 1) - images).pow(2).mean(dim=(1, 2, 3)))).mean())
    return psnr(denoised), psnr(noisy)


def measure(model_dir: Path, test_images: int = 2000) -> dict:
    """The model card's numbers: denoising PSNR on the first Fashion-MNIST test images."""
    from engine.priors.learned import load_learned

    prior = load_learned(model_dir)
    images = load_fashion_mnist("test")[0][:test_images]
    sigmas = (0.05, 0.1) if prior.schedule.kind == "vp" else (0.05,)
    metrics = {}
    for sigma in sigmas:
        denoised, noisy = denoising_psnr(prior, images, sigma)
        metrics[f"denoise_psnr_sigma{sigma:g}"] = round(denoised, 2)
        metrics[f"noisy_psnr_sigma{sigma:g}"] = round(noisy, 2)
    metrics["psnr_images"] = f"Fashion-MNIST test[:{test_images}], [0, 1] units, seed 0"
    return metrics


# --- ``python -m engine train vp|soft-blur|soft-mask`` ------------------------------------

def read_blur_table(path: Path | None) -> list[float] | None:
    if path is None:
        return None
    try:
        table = json.loads(path.read_text())["blur_table"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BadInputError(f"cannot read a blur table from {path}: {err}") from None
    if len(table) < 2 or any(not b > a for a, b in zip(table, table[1:])):
        raise BadInputError(f"the blur table in {path} must hold ≥ 2 increasing levels")
    return [float(v) for v in table]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loss", choices=LOSSES, default="ssm",
                   help="Soft Score Matching (default), the clean-image baseline, or their sum")
    p.add_argument("--blur-table", type=Path, default=None,
                   help="soft-blur: JSON with a 'blur_table' list, e.g. the output of "
                        "'python -m engine schedule --json FILE' (W2 shortest path)")
    p.add_argument("--mask-sigma-max", type=float, default=0.0,
                   help="soft-mask: noise std at t = 1, rising from 0.1 over the mask stage "
                        "(0 = constant 0.1, the original schedule)")


def _family(name: str, summary: str) -> Family:
    def run(out: Path, settings: TrainSettings, args: argparse.Namespace) -> dict:
        return train_diffusion(name, out, settings, loss=args.loss,
                               blur_table=read_blur_table(args.blur_table), data_dir=args.data,
                               resume=args.resume, progress=not args.quiet,
                               mask_sigma_max=args.mask_sigma_max)
    return Family(name, run, steps=4000, summary=summary, add_arguments=add_arguments)


register_family(_family("vp", "DDPM ε-prediction on the VP schedule"))
register_family(_family("soft-blur", "Soft Diffusion, blur then noise (Soft Score Matching)"))
register_family(_family("soft-mask", "Soft Diffusion, masks then noise (Soft Score Matching)"))
