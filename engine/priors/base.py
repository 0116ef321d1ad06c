"""The prior protocol shared by exact and learned priors.

A prior knows its `Schedule` (so ``x_t = C_t x0 + σ_t ε``), the range of its data
(``data_range``, e.g. (−1, 1)), the shape of one sample (``shape``, ``(C, H, W)``; 2-D
toy points are ``(2, 1, 1)``), and answers ``denoise(x_t, t) = E[x0 | x_t]``.
Every call of `denoise` is one network evaluation: ``nfe`` counts them (per batch call,
which is per sample trajectory). The score follows by Tweedie's formula (Soft
Diffusion Lemma A.2): ``∇ log p_t(x_t) = (C_t E[x0|x_t] − x_t) / σ_t²``.
Its `capabilities` (`engine.core.capabilities`): ``denoise`` on its schedule, and
``differentiable`` (gradients flow through ``denoise`` when ``x_t`` requires them).

Differentiating through the denoiser (DPS, RMP) goes through ONE helper,
`denoise_with_grad`: jobs iterate methods under ``torch.no_grad()``, so it enables
gradients locally, on a detached copy of ``x_t`` only (the weights never require
grad). It counts one NFE (the forward pass) and one VJP (``vjp``, the backward pass
through the network); NFE counts forward evaluations only.
"""

from __future__ import annotations

from typing import Callable

import torch

from engine.core.capabilities import DENOISE, DIFFERENTIABLE
from engine.core.rng import SampleRNG
from engine.core.schedules import Schedule


class Prior:
    name = "prior"
    exact = False  # True for closed-form priors (no network)
    capabilities = frozenset({DENOISE, DIFFERENTIABLE})  # engine.core.capabilities

    def __init__(self, schedule: Schedule, shape: tuple[int, ...],
                 data_range: tuple[float, float] = (-1.0, 1.0)):
        self.schedule = schedule
        self.shape = tuple(shape)
        self.data_range = data_range
        self.nfe = 0  # forward network evaluations (batched calls)
        self.vjp = 0  # backward passes through the network (vector–Jacobian products)
        self.device = torch.device("cpu")

    # -- the one thing a prior must answer -------------------------------------------
    def _denoise(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        raise NotImplementedError

    def denoise(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        """E[x0 | x_t] for the batch ``x_t`` at level ``t`` (counts one NFE)."""
        self.nfe += 1
        return self._denoise(x_t, t)

    def fitted_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The (C, H, W) an image of ``shape`` must be converted to for this prior: its
        own `shape`; a fully-convolutional prior keeps the image's H×W."""
        return self.shape

    # -- derived quantities ----------------------------------------------------------
    def score_from_x0(self, x_t: torch.Tensor, x0_hat: torch.Tensor, t: float) -> torch.Tensor:
        """Tweedie: ``(C_t x̂0 − x_t) / σ_t²``."""
        return (self.schedule.corruption(t).forward(x0_hat) - x_t) / self.schedule.sigma(t) ** 2

    def score(self, x_t: torch.Tensor, t: float) -> torch.Tensor:
        return self.score_from_x0(x_t, self.denoise(x_t, t), t)

    def mean_image(self) -> torch.Tensor:
        """A representative clean image ``(C, H, W)`` used to start from p_1 (data mean)."""
        return torch.zeros(self.shape)

    def sample_final(self, rng: SampleRNG) -> torch.Tensor:
        """A draw from the final distribution p_1 ≈ ``C_1 x̄ + σ_1 ε`` (x̄ = `mean_image`)."""
        x_bar = self.mean_image().to(rng.device, rng.dtype).expand(len(rng), *self.shape)
        return self.schedule.corrupt(x_bar, 1.0, rng.latent(*self.shape))

    def to(self, device: torch.device | str) -> "Prior":
        self.device = torch.device(device)
        return self

    def describe(self) -> dict:
        return {"name": self.name, "schedule": self.schedule.to_config(),
                "shape": list(self.shape), "data_range": list(self.data_range)}


def denoise_with_grad(prior: Prior, x_t: torch.Tensor, t: float,
                      loss_fn: Callable[[torch.Tensor], torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x̂0, ∇_{x_t} loss_fn(x̂0(x_t)), loss)``, all detached; one NFE and one VJP.

    ``loss_fn`` maps the batch x̂0 ``(B, C, H, W)`` to one loss per sample ``(B,)``;
    the gradient of their sum is each sample's own gradient, because samples do not
    interact inside a denoiser. Works under an outer ``torch.no_grad()``.
    """
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        x0_hat = prior.denoise(x, t)
        loss = loss_fn(x0_hat)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    prior.vjp += 1
    return x0_hat.detach(), grad, loss.detach()
