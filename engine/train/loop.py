"""Shared training utilities: the loop, EMA, checkpoints, resume, sample grids.

Decisions:

* A run directory is itself a loadable model: ``model.safetensors`` (EMA weights and
  the training-set statistics a prior needs) + ``config.json``. Resume state lives
  beside it in ``train_state.safetensors`` (raw weights, EMA, Adam moments, the data
  generator's state) + ``train_state.json`` (step, optimiser hyper-parameters, wall
  time). Nothing is ever pickled.
* Determinism: the network is initialised inside ``torch.random.fork_rng`` from the run
  seed; every random draw of training (batches, t, noise) comes from one explicit CPU
  ``torch.Generator`` whose state is checkpointed, so an interrupted and resumed run
  takes exactly the steps of an uninterrupted one.
* Optimiser: Adam with a linear warm-up, gradient clipping at norm 1, EMA with the
  usual warm-up ``min(decay, (1 + k)/(10 + k))`` so early checkpoints are usable.
* Data parallel under torchrun (`engine.train.distributed`): ``settings.batch`` is the
  global batch, each process draws its share from its own generator, only process 0
  writes checkpoints and shows progress.
* Progress: tqdm shows loss, it/s and the ETA; a sample grid PNG is written at every
  checkpoint (``samples.png``, the latest, and ``samples_<step>.png``).
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from engine.train import distributed

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TrainSettings:
    steps: int = 4000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 200
    clip: float = 1.0
    ema: float = 0.999
    checkpoint_every: int = 250
    seed: int = 0
    device: str = "cpu"
    compile: bool = False  # torch.compile the (DDP-wrapped) network (engine.models.compile)
    extra: dict = field(default_factory=dict)  # family options recorded in the config


class EMA:
    """Exponential moving average of a model's parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for ema_p, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema_p.dtype.is_floating_point:
                ema_p.lerp_(p, 1 - decay)
            else:
                ema_p.copy_(p)


def init_network(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a network with weights drawn from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- checkpoints ----------------------------------------------------------------------

def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in tensors.items()}


def _unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def save_model(out: Path, network: nn.Module, config: dict, extra: dict[str, torch.Tensor]) -> None:
    """``model.safetensors`` (weights under ``net.``, statistics as named) + ``config.json``."""
    tensors = {**_prefixed("net", network.state_dict()),
               **{k: v.detach().cpu().contiguous() for k, v in extra.items()}}
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def save_train_state(out: Path, step: int, model: nn.Module, ema: EMA,
                     optimizer: torch.optim.Optimizer,
                     generator_states: dict[str, torch.Tensor] | torch.Generator,
                     wall: float) -> None:
    """``generator_states``: every process's data generator (`distributed.generator_states`),
    or the one generator of a single-process run."""
    if isinstance(generator_states, torch.Generator):
        generator_states = distributed.generator_states(generator_states, distributed.World(), "cpu")
    opt_state = optimizer.state_dict()
    tensors = {**_prefixed("model", model.state_dict()), **_prefixed("ema", ema.model.state_dict()),
               **generator_states}
    for index, state in opt_state["state"].items():
        tensors.update(_prefixed(f"opt.{index}", state))
    save_file(tensors, str(out / "train_state.safetensors"))
    meta = {"step": step, "wall_seconds": wall, "param_groups": opt_state["param_groups"]}
    (out / "train_state.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_train_state(out: Path, model: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, world: distributed.World = distributed.World()
                     ) -> tuple[int, float]:
    """Restore a run saved by `save_train_state`; returns ``(step, wall seconds so far)``."""
    tensors = load_file(str(out / "train_state.safetensors"))
    meta = json.loads((out / "train_state.json").read_text())
    model.load_state_dict(_unprefixed("model", tensors))
    ema.model.load_state_dict(_unprefixed("ema", tensors))
    state = {index: _unprefixed(f"opt.{index}", tensors) for index in range(len(list(model.parameters())))}
    optimizer.load_state_dict({"state": {k: v for k, v in state.items() if v},
                               "param_groups": meta["param_groups"]})
    distributed.restore_generator(generator, tensors, world)
    return int(meta["step"]), float(meta["wall_seconds"])


def save_grid(images: torch.Tensor, path: Path, columns: int = 8, scale: int = 2) -> None:
    """Tile ``(N, 1, H, W)`` images in [0, 1] into one 8-bit PNG (1 px gaps)."""
    from PIL import Image

    n, _, h, w = images.shape
    rows = -(-n // columns)
    canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1), np.uint8) * 255
    pixels = (images.clamp(0, 1)[:, 0] * 255).round().to(torch.uint8).cpu().numpy()
    for k in range(n):
        r, c = divmod(k, columns)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = pixels[k]
    Image.fromarray(canvas, "L").resize((canvas.shape[1] * scale, canvas.shape[0] * scale),
                                        Image.NEAREST).save(path)


# -- the loop -------------------------------------------------------------------------

def draw_batch(data, batch: int, generator: torch.Generator, device: torch.device):
    """``batch`` random rows of the training set (a tensor or a tuple indexed together),
    or ``data(batch, generator)`` when the training set is a sampler (e.g. photo crops)."""
    if callable(data):
        return data(batch, generator).to(device)
    tensors = data if isinstance(data, tuple) else (data,)
    index = torch.randint(len(tensors[0]), (batch,), generator=generator)
    drawn = tuple(x[index].to(device) for x in tensors)
    return drawn if isinstance(data, tuple) else drawn[0]


def train(out: Path, model: nn.Module, loss_fn: Callable,
          data: torch.Tensor | tuple[torch.Tensor, ...] | Callable,
          settings: TrainSettings, write_model: Callable[[nn.Module, dict], None],
          draw_samples: Callable[[nn.Module], torch.Tensor] | None = None,
          resume: bool = False, progress: bool = True) -> dict:
    """Run Adam steps of ``loss_fn(model, batch, generator)`` up to ``settings.steps``.

    ``data`` holds the training set on the CPU (a tensor, or a tuple of tensors indexed
    together, e.g. images and labels) or draws batches (see `draw_batch`). At every
    checkpoint ``write_model(ema_net, info)``
    saves the loadable model and ``draw_samples(ema_net)`` returns images in [0, 1] for
    the grid. Returns the training info (steps, wall seconds, recent mean loss).
    Under torchrun the processes share the work (`engine.train.distributed`).
    """
    from tqdm import tqdm

    world, device_name = distributed.join(settings.device)
    batch_size = distributed.local_batch(settings.batch, world)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device_name)
    model.to(device).train()
    ema = EMA(model, settings.ema)
    network = distributed.wrap(model, world, device_name)
    if settings.compile:
        from engine.models.compile import compile_network
        network = compile_network(network)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator("cpu").manual_seed(distributed.rank_seed(settings.seed, world))
    step, wall = 0, 0.0
    if resume and (out / "train_state.json").exists():
        step, wall = load_train_state(out, model, ema, optimizer, generator, world)
    info = {"steps": step, "wall_seconds": wall, "loss": float("nan")}
    bar = tqdm(total=settings.steps, initial=step, disable=not (progress and world.main),
               dynamic_ncols=True, desc=out.name)
    start, losses = time.perf_counter() - wall, []
    while step < settings.steps:
        batch = draw_batch(data, batch_size, generator, device)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / settings.warmup)
        loss = loss_fn(network, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.clip)
        optimizer.step()
        ema.update(model, step)
        step += 1
        losses.append(distributed.mean_over_processes(loss, world))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            info = {"steps": step, "wall_seconds": round(time.perf_counter() - start, 1),
                    "loss": float(np.mean(losses[-200:]))}
            states = distributed.generator_states(generator, world, device_name)
            if not world.main:
                continue
            save_train_state(out, step, model, ema, optimizer, states, info["wall_seconds"])
            write_model(ema.model, info)
            if draw_samples is not None:
                images = draw_samples(ema.model).cpu()
                save_grid(images, out / f"samples_{step:06d}.png", columns=6)
                save_grid(images, out / "samples.png", columns=6)
    bar.close()
    distributed.leave(world)
    return info


def ship_model(run_dir: Path, dest: Path, metrics: dict | None = None) -> None:
    """Copy a run's loadable model (EMA weights, config, latest grid) to ``dest``.

    ``metrics`` are merged into the config's ``metrics`` entry (the model card's numbers).
    """
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    config = json.loads((run_dir / "config.json").read_text())
    config["metrics"] = {**config.get("metrics", {}), **(metrics or {})}
    shutil.copyfile(run_dir / "model.safetensors", dest / "model.safetensors")
    if (run_dir / "samples.png").exists():
        shutil.copyfile(run_dir / "samples.png", dest / "samples.png")
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
