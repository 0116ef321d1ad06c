"""Training of RGM generators (rgm.md, "Objective"): ``python -m engine train rgm-d|rgm-sr``.

Algorithm 2 (default), per iteration, with t ~ U{0 … T−1} per sample:

1. D step: ``x̂ = G(y_{t+1}, t, z)`` (no gradient), ``ŷ_t = degrade(x̂, t)`` with fresh
   noise; ``L_D = softplus(−l(y_t, t)) + softplus(l(ŷ_t, t))`` plus R1
   ``(γ/2) E‖∇_{y_t} l(y_t, t)‖²`` on the real inputs every ``lazy`` steps.
2. G step: fresh draws, ``ŷ_t`` differentiable; ``L_G = g(ŷ_t) + λ_c · fidelity`` with the
   prior term ``g = log(1 − D) − log D = −l`` (eq. 8) and the fidelity
   ``½ Σ_pixels ((y_{t+1} − A_{t+1} x̂)/σ_{t+1})²`` on level t+1's grid (eq. 10).

Algorithm 1 (``--posterior``, RGM-D only) replaces the re-degradation by a draw of the
DDPM posterior ``q(y_t | y_{t+1}, x̂) = N(c1 x̂ + c2 y_{t+1}, v)`` and the fidelity by the
one-step transition ``½‖(y_{t+1} − α ŷ_t)/σ‖²`` (`posterior_step`).

Decisions:

* λ [code]: ``λ_c = 1/λ_paper`` multiplies a *sum* over pixels; the default
  ``λ_paper = d/3`` (d = pixels of one image) lies in the paper's sweet spot [d/10, d]
  and gives λ_c ≈ 3.8e-3 at 28×28 (the spec's ≈ 4e-3). ``--lambda inf`` (λ_c = 0, no
  fidelity) and ``--no-z`` (z_dim = 0) are the paper's ablations.
* Adam lr 2e-4 (G) and 1e-4 (D), betas (0.5, 0.9) [code], γ = 0.02, lazy = 15; EMA of G
  0.999 (short CPU runs; the shipped weights are the EMA).
* G and D live in one ``ModuleDict`` with one Adam of two parameter groups, so the
  shared checkpoint utilities of `engine.train.loop` (safetensors train state, EMA,
  grids, resume with the data generator's state) serve unchanged: a D step leaves G's
  gradients empty (x̂ detached) and a G step freezes D, and Adam skips parameters
  without gradients.
* Networks are sized for one CPU core (`engine.models.rgm`); sample grids are
  Algorithm 3 with the EMA generator at every checkpoint.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.core.schedules import RGMSchedule
from engine.core.step import BadInputError
from engine.models.rgm import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from engine.priors.rgm import LadderModel, RGMGenerator
from engine.train import Family, register_family
from engine.train.loop import (EMA, TrainSettings, git_revision, init_network, load_train_state,
                               save_grid, save_model, save_train_state)

FAMILIES = {"rgm-d": ("rgm-d", 4), "rgm-sr": ("rgm-sr", 5)}
GRID_SAMPLES, GRID_SEED = 36, 0


@dataclass(frozen=True)
class RGMOptions:
    posterior: bool = False  # Algorithm 1 instead of Algorithm 2
    lambda_paper: float | None = None  # None = d/3; math.inf = no fidelity
    r1_gamma: float = 0.02
    lazy: int = 15
    lr_g: float = 2e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    generator: GeneratorConfig = GeneratorConfig(channels=16, multipliers=(1, 2, 4))
    discriminator: DiscriminatorConfig = DiscriminatorConfig(channels=16)

    def lambda_c(self, d: int) -> float:
        lam = d / 3 if self.lambda_paper is None else self.lambda_paper
        return 0.0 if math.isinf(lam) else 1.0 / lam


def prior_term(logit: torch.Tensor) -> torch.Tensor:
    """``g_φ = log(1 − D) − log D`` with ``D = sigmoid(l)``: exactly ``−l`` (eq. 8)."""
    return -logit


def fidelity(schedule: RGMSchedule, y_next: torch.Tensor, x_hat: torch.Tensor, level: torch.Tensor
             ) -> torch.Tensor:
    """``½ Σ ((y_{t+1} − A_{t+1} x̂)/σ_{t+1})²`` per sample on level t+1's grid (eq. 10)."""
    out = torch.empty(len(x_hat), device=x_hat.device, dtype=x_hat.dtype)
    for k in level.unique().tolist():
        i = level == k
        t, f = (k + 1) / schedule.levels, schedule.factor(k + 1)
        residual = y_next[i][..., ::f, ::f] - schedule.corruption(t).forward(x_hat[i])
        out[i] = 0.5 * (residual / schedule.sigma(t)).pow(2).flatten(1).sum(1)
    return out


def degrade_each(schedule: RGMSchedule, x: torch.Tensor, level: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor:
    """Level ``level_i`` of sample i, full resolution."""
    out = torch.empty_like(x)
    for k in level.unique().tolist():
        i = level == k
        out[i] = schedule.degrade(x[i], k, noise[i])
    return out


def posterior_step(schedule: RGMSchedule, x_hat, y_next, level, noise):
    """Algorithm 1 (RGM-D): ``ŷ_t ~ N(c1 x̂ + c2 y_{t+1}, v)`` and the one-step fidelity.

    With ``y_t ~ N(a_t x, s_t²)`` and ``y_{t+1} | y_t ~ N(α y_t, σ²)``, α = a_{t+1}/a_t,
    σ² = s_{t+1}² − α² s_t²: ``v = 1/(1/s_t² + α²/σ²)``, ``c1 = v a_t/s_t²``, ``c2 = v α/σ²``.
    """
    table = schedule.table()
    a, s = (torch.tensor([table[k][j] for k in level.tolist()], device=x_hat.device)[:, None, None, None]
            for j in (0, 1))
    a1, s1 = (torch.tensor([table[k + 1][j] for k in level.tolist()], device=x_hat.device)[:, None, None, None]
              for j in (0, 1))
    alpha = a1 / a
    var_step = s1**2 - alpha**2 * s**2
    v = 1 / (1 / s**2 + alpha**2 / var_step)
    y_t = v * (a * x_hat / s**2 + alpha * y_next / var_step) + v.sqrt() * noise
    fid = 0.5 * ((y_next - alpha * y_t).pow(2) / var_step).flatten(1).sum(1)
    return y_t, fid


def draw(generator: torch.Generator, x: torch.Tensor, levels: int, z_dim: int):
    """Per-sample level t, its two noises, a third for ŷ_t, and z."""
    n = len(x)
    t = torch.randint(levels, (n,), generator=generator).to(x.device)
    noises = [torch.randn(x.shape, generator=generator).to(x.device) for _ in range(3)]
    z = torch.randn(n, max(z_dim, 1), generator=generator).to(x.device)
    return t, noises, z


def d_loss(nets, schedule, x, opts, generator, r1: bool):
    g, d = nets["generator"], nets["discriminator"]
    t, (e1, e2, e3), z = draw(generator, x, schedule.levels, g.z_dim)
    y_t = degrade_each(schedule, x, t, e1).requires_grad_(r1)
    y_next = degrade_each(schedule, x, t + 1, e2)
    with torch.no_grad():
        x_hat = g(y_next, t, z)
        fake = (posterior_step(schedule, x_hat, y_next, t, e3)[0] if opts.posterior
                else degrade_each(schedule, x_hat, t, e3))
    real_logit, fake_logit = d(y_t, t), d(fake, t)
    loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
    if r1:  # R1 on real inputs (lazy)
        grad, = torch.autograd.grad(real_logit.sum(), y_t, create_graph=True)
        loss = loss + opts.r1_gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()
    return loss


def g_loss(nets, schedule, x, opts, lambda_c, generator):
    g, d = nets["generator"], nets["discriminator"]
    t, (_, e2, e3), z = draw(generator, x, schedule.levels, g.z_dim)
    y_next = degrade_each(schedule, x, t + 1, e2)
    x_hat = g(y_next, t, z)
    if opts.posterior:
        fake, fid = posterior_step(schedule, x_hat, y_next, t, e3)
    else:
        fake, fid = degrade_each(schedule, x_hat, t, e3), fidelity(schedule, y_next, x_hat, t)
    prior = prior_term(d(fake, t)).mean()
    return prior + lambda_c * fid.mean(), prior, fid.mean()


@torch.no_grad()
def grid_samples(model: LadderModel, n: int = GRID_SAMPLES, seed: int = GRID_SEED) -> torch.Tensor:
    """The checkpoint grid: the ``rgm`` method's result (Algorithm 3) for seeds seed … seed+n−1."""
    from engine.core.rng import SampleRNG
    from engine.samplers.rgm import algorithm3, sample_prior

    rng = SampleRNG(seed, n, device=model.device)
    *_, (_, _, x_hat) = algorithm3(model, sample_prior(model, rng), rng.latent)
    return x_hat


def model_config(family: str, opts: RGMOptions, schedule: RGMSchedule, shape, d: int,
                 settings: TrainSettings, info: dict, parameters: dict) -> dict:
    return {"kind": "rgm-generator", "family": family, "architecture": opts.generator.to_dict(),
            "discriminator": opts.discriminator.to_dict(), "parameters": parameters,
            "schedule": schedule.to_config(), "shape": list(shape), "data_range": [-1.0, 1.0],
            "dataset": {"name": "fashion-mnist", "split": "train", "size": 60000},
            "objective": {"algorithm": 1 if opts.posterior else 2, "lambda_paper":
                          "inf" if opts.lambda_c(d) == 0 else 1 / opts.lambda_c(d),
                          "lambda_c": opts.lambda_c(d), "z_dim": opts.generator.z_dim,
                          "r1_gamma": opts.r1_gamma, "lazy": opts.lazy},
            "grid_sampler": {"method": "rgm", "seed": GRID_SEED},
            "training": {**info, "batch": settings.batch, "lr_g": opts.lr_g, "lr_d": opts.lr_d,
                         "betas": list(opts.betas), "ema": settings.ema, "seed": settings.seed,
                         "device": settings.device, "threads": torch.get_num_threads(),
                         "machine": platform.machine(), "command": settings.extra.get("command", ""),
                         "git_revision": git_revision()}}


def train_rgm(family: str, out: Path, settings: TrainSettings, opts: RGMOptions = RGMOptions(),
              data: torch.Tensor | None = None, resume: bool = False, progress: bool = True) -> dict:
    """Train an RGM generator into ``out`` (a loadable ``rgm-generator`` directory).

    ``data``: training images (N, C, H, W) in [0, 1] (default: Fashion-MNIST train).
    """
    from tqdm import tqdm

    from engine.io.data import load_fashion_mnist, to_image_range, to_model_range

    if family not in FAMILIES:
        raise BadInputError(f"unknown RGM family {family!r} ({', '.join(FAMILIES)})")
    if opts.posterior and family != "rgm-d":
        raise BadInputError("--posterior (Algorithm 1) is defined for rgm-d only")
    schedule = RGMSchedule(*FAMILIES[family])
    x0 = to_model_range(load_fashion_mnist("train")[0] if data is None else data)
    schedule.check_shape(tuple(x0.shape[1:]))
    d = math.prod(x0.shape[1:])
    opts = replace(opts, generator=replace(opts.generator, levels=schedule.levels,
                                           image_channels=x0.shape[1]),
                   discriminator=replace(opts.discriminator, levels=schedule.levels,
                                         image_channels=x0.shape[1]))
    lambda_c = opts.lambda_c(d)
    device = torch.device(settings.device)
    nets = init_network(lambda: nn.ModuleDict({"generator": Generator(opts.generator),
                                               "discriminator": Discriminator(opts.discriminator)}),
                        settings.seed).to(device).train()
    g, disc = nets["generator"], nets["discriminator"]
    parameters = {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}
    ema = EMA(g, settings.ema)
    optimizer = torch.optim.Adam([{"params": g.parameters(), "lr": opts.lr_g},
                                  {"params": disc.parameters(), "lr": opts.lr_d}], betas=opts.betas)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    out.mkdir(parents=True, exist_ok=True)
    step, wall = 0, 0.0
    if resume and (out / "train_state.json").exists():
        step, wall = load_train_state(out, nets, ema, optimizer, generator)
    start, history = time.perf_counter() - wall, []
    info = {"steps": step, "wall_seconds": wall, "loss": float("nan")}
    bar = tqdm(total=settings.steps, initial=step, disable=not progress, dynamic_ncols=True, desc=out.name)
    while step < settings.steps:
        x = x0[torch.randint(len(x0), (settings.batch,), generator=generator)].to(device)
        optimizer.zero_grad(set_to_none=True)  # D step (G gets no gradient: x̂ detached)
        loss_d = d_loss(nets, schedule, x, opts, generator, r1=step % opts.lazy == 0)
        loss_d.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # G step (D frozen)
        disc.requires_grad_(False)
        loss_g, prior, fid = g_loss(nets, schedule, x, opts, lambda_c, generator)
        loss_g.backward()
        optimizer.step()
        disc.requires_grad_(True)
        ema.update(g, step)
        step += 1
        history.append((loss_d.item(), prior.item(), fid.item()))
        bar.update(1)
        recent = np.mean(history[-50:], axis=0)
        bar.set_postfix(d=f"{recent[0]:.3f}", g=f"{recent[1]:.2f}", fid=f"{recent[2]:.0f}")
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            recent = np.mean(history[-200:], axis=0)
            info = {"steps": step, "wall_seconds": round(time.perf_counter() - start, 1),
                    "loss": float(recent[0]), "loss_d": float(recent[0]),
                    "prior_term": float(recent[1]), "fidelity": float(recent[2])}
            save_train_state(out, step, nets, ema, optimizer, generator, info["wall_seconds"])
            config = model_config(family, opts, schedule, x0.shape[1:], d, settings, info, parameters)
            save_model(out, ema.model, config, {})
            images = to_image_range(grid_samples(RGMGenerator(ema.model, config).to(device))).cpu()
            save_grid(images, out / f"samples_{step:06d}.png", columns=6)
            save_grid(images, out / "samples.png", columns=6)
    bar.close()
    return info


def add_arguments(parser) -> None:
    """The RGM options of ``python -m engine train`` (ablations and Algorithm 1)."""
    parser.add_argument("--posterior", action="store_true",
                        help="rgm-d: Algorithm 1 (DDPM posterior) instead of Algorithm 2")
    parser.add_argument("--no-z", action="store_true", help="rgm: ablation without the latent z")
    parser.add_argument("--lambda", dest="lambda_paper", type=float, default=None,
                        help="rgm: λ of eq. 10 (default d/3; 'inf' = no fidelity term)")


def run_from_args(args, out: Path, settings: TrainSettings) -> dict:
    opts = RGMOptions(posterior=args.posterior, lambda_paper=args.lambda_paper)
    if args.no_z:
        opts = replace(opts, generator=replace(opts.generator, z_dim=0))
    settings.checkpoint_every = min(settings.checkpoint_every, settings.steps)
    return train_rgm(args.family, out, settings, opts, resume=args.resume, progress=not args.quiet)


register_family(Family("rgm-d", lambda out, settings, args: run_from_args(args, out, settings),
                       steps=8000, summary="RGM generator on the RGM-D ladder (MAP-GAN)",
                       add_arguments=add_arguments))
register_family(Family("rgm-sr", lambda out, settings, args: run_from_args(args, out, settings),
                       steps=8000, summary="RGM generator on the RGM-SR ladder (MAP-GAN)",
                       add_arguments=add_arguments))
