"""Data-parallel training: every ``engine train`` family runs unchanged under torchrun.

``torchrun --nproc_per_node=N -m engine train FAMILY ...`` starts N processes; each
joins the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``/``PORT`` in the environment) and wraps its network in
`DistributedDataParallel`, which averages the gradients over the processes after every
backward pass.

Decisions:

* Backend: NCCL on CUDA (each process takes GPU ``LOCAL_RANK``), gloo on the CPU.
* ``--batch`` is the global batch: each of N processes draws ``batch / N`` samples, so
  the averaged gradient is the gradient of the loss on the combined batch and the
  learning rate means the same for any N (tests/test_distributed.py checks it).
* Different data per process: process r draws from its own generator seeded
  ``seed + 7919·r``; process 0 keeps the single-process stream (seed), so a run with
  N = 1 is the run it always was.
* Only process 0 writes: checkpoints, the loadable model, sample grids, the progress
  bar. At a checkpoint every process's generator state is gathered to it and saved
  (``generator``, ``generator.1`` …), so a resumed run continues every stream exactly;
  resuming with a different N is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from engine.core.step import BadInputError

RANK_SEED_STRIDE = 7919


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def join(device: str) -> tuple[World, str]:
    """Join torchrun's process group (``WORLD_SIZE`` > 1), else a world of one process.
    Returns the world and this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World(), device
    cuda = device.startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    return World(dist.get_rank(), dist.get_world_size()), device


def leave(world: World) -> None:
    """Tear the process group down together: without the barrier a gloo process could
    destroy its group while its peer's last collective was in flight, and abort
    ("terminate called without an active exception"; seen once in about 10 CI runs)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, world: World, device: str) -> torch.nn.Module:
    """The network to train: ``model`` itself, or its DDP wrapper across processes."""
    if world.size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)


def local_batch(batch: int, world: World) -> int:
    if batch % world.size:
        raise BadInputError(f"the batch {batch} does not split evenly over {world.size} processes")
    return batch // world.size


def rank_seed(seed: int, world: World) -> int:
    return seed + RANK_SEED_STRIDE * world.rank


def generator_key(rank: int) -> str:
    return "generator" if rank == 0 else f"generator.{rank}"


def generator_states(generator: torch.Generator, world: World, device: str) -> dict[str, torch.Tensor]:
    """Every process's generator state, keyed by `generator_key` (a collective call)."""
    state = generator.get_state()
    if world.size == 1:
        return {generator_key(0): state}
    local = state.to(device)
    states = [torch.empty_like(local) for _ in range(world.size)]
    dist.all_gather(states, local)
    return {generator_key(rank): s.cpu() for rank, s in enumerate(states)}


def restore_generator(generator: torch.Generator, tensors: dict[str, torch.Tensor], world: World) -> None:
    key = generator_key(world.rank)
    saved = sum(k.startswith("generator") for k in tensors)
    if key not in tensors or saved != world.size:
        raise BadInputError(f"the checkpoint was written by {saved} process(es); resume it with "
                            f"as many, not {world.size}")
    generator.set_state(tensors[key])


def mean_over_processes(value: torch.Tensor, world: World) -> float:
    """The mean of a scalar over the processes (for the logged loss)."""
    value = value.detach()
    if world.size == 1:
        return float(value)
    value = value.clone()
    dist.all_reduce(value)
    return float(value) / world.size
