"""Explicit, per-sample randomness (DESIGN §3).

Every sample of a batch owns a CPU `torch.Generator` seeded with ``seed + k``. Noise is
drawn per sample on the CPU and moved to the working device, so sample k of a batch
equals a single run with seed ``seed + k`` at any batch size and on any device.
Seed 0 is a seed like any other. Library code never touches the global RNG.
"""

from __future__ import annotations

from typing import Sequence

import torch


class SampleRNG:
    """One CPU generator per sample; draws return batched tensors."""

    def __init__(self, seed: int, n: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        if n < 1:
            raise ValueError("need at least one sample")
        self.seed = int(seed)
        self.device = torch.device(device)
        self.dtype = dtype
        self.generators = [torch.Generator("cpu").manual_seed(self.seed + k) for k in range(n)]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int) -> torch.Tensor:
        """A ``(n, *shape)`` standard normal tensor, sample k from generator k."""
        draws = [torch.randn(shape, generator=g, dtype=self.dtype) for g in self.generators]
        return torch.stack(draws).to(self.device)

    def rand(self, *shape: int) -> torch.Tensor:
        draws = [torch.rand(shape, generator=g, dtype=self.dtype) for g in self.generators]
        return torch.stack(draws).to(self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == len(self), "batch size must equal the number of generators"
        return self.randn(*x.shape[1:]).to(dtype=x.dtype)

    def subset(self, indices: Sequence[int]) -> "SampleRNG":
        """A view on some samples' generators (shares their state)."""
        view = SampleRNG.__new__(SampleRNG)
        view.seed, view.device, view.dtype = self.seed, self.device, self.dtype
        view.generators = [self.generators[i] for i in indices]
        return view
