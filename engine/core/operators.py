"""Linear corruption operators ``A`` and the measurement model ``y = A x + σ_y ε``.

Every operator works on batches ``(B, C, H, W)`` of 1- or 3-channel images and offers

* ``forward(x)``  = A x,
* ``adjoint(y)``  = Aᵀ y (exact adjoint for the Euclidean inner product),
* ``pinv(y)``     = A⁺ y (Moore–Penrose; for blur a truncated spectral inverse),
* ``prox(z, y, lam)`` = argmin_x ½‖A x − y‖² + ‖x − z‖²/(2 lam)
                      = (I + lam AᵀA)⁻¹ (z + lam Aᵀ y),

in closed form where one exists: blur through the eigen-decomposition of its separable
symmetric Toeplitz factors (exact for zero padding, unlike the FFT, which is circular),
masks and grayscale element-wise, block-average downsampling through its block
structure (RGM, Algorithm 4). `Compose` falls back to conjugate gradients for prox.

Parameters are plain numbers (one slider, one field). Decisions recorded here:

* Blur (Soft Diffusion): truncated Gaussian on ``[−h, h]``, normalised over the whole
  support, zero padding, no renormalisation at the borders (edges darken). ``h``
  defaults to the image side, so the kernel is never cut inside the image.
* Mask kinds: ``box`` hides a centred square of side ``level·H`` (inpainting);
  ``frame`` keeps a centred window of side ``(1 − level)·H`` (the Soft Diffusion mask
  schedule: at level 1 nothing is seen); ``random`` drops a ``level`` fraction of pixels
  (pattern fixed by ``seed``); ``half`` hides the right half. Masks act on all channels.
* Degradations compose in the fixed order blur → downsample → mask → grayscale (the
  mask acts on the measured grid; grayscale commutes with the spatial operators).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

from engine.core.step import BadInputError

Shape = tuple[int, ...]


class Operator:
    """Base class: subclasses implement forward/adjoint/pinv; prox defaults to CG."""

    name = "operator"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def out_shape(self, shape: Shape) -> Shape:
        """Shape of ``A x`` for ``x`` of the given ``(B, C, H, W)`` shape (no arithmetic:
        the forward runs on a meta tensor)."""
        return tuple(self.forward(torch.zeros(shape, device="meta")).shape)

    def check_input(self, shape: Shape) -> None:
        """Raise `BadInputError` if the operator cannot act on images of this shape."""

    def prox(self, z: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
        """(I + lam AᵀA)⁻¹(z + lam Aᵀy) by conjugate gradients (SPD system)."""
        rhs = z + lam * self.adjoint(y)
        return conjugate_gradient(lambda v: v + lam * self.adjoint(self.forward(v)), rhs, z)

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in vars(self).items() if v is not None)
        return f"{self.name}({params})" if params else self.name


def cg_iterates(apply, rhs: torch.Tensor, x0: torch.Tensor):
    """Conjugate-gradient iterates for ``apply(x) = rhs`` (SPD map), per batch element.

    Yields ``(x, relative residual)`` after every iteration, without end; the caller stops.
    """
    dims = tuple(range(1, rhs.dim()))
    x = x0.clone()
    r = rhs - apply(x)
    p = r.clone()
    rr = (r * r).sum(dims, keepdim=True)
    scale = (rhs * rhs).sum(dims, keepdim=True).clamp_min(1e-30)
    while True:
        ap = apply(p)
        alpha = rr / (p * ap).sum(dims, keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum(dims, keepdim=True)
        p = r + (rr_new / rr.clamp_min(1e-30)) * p
        rr = rr_new
        yield x, float((rr / scale).max().sqrt())


def conjugate_gradient(apply, rhs: torch.Tensor, x0: torch.Tensor, iters: int = 200,
                       tol: float = 1e-7) -> torch.Tensor:
    """Solve ``apply(x) = rhs`` for an SPD map to relative residual ``tol``."""
    x = x0
    for i, (x, residual) in enumerate(cg_iterates(apply, rhs, x0)):
        if residual <= tol or i + 1 >= iters:
            break
    return x


@dataclass(frozen=True)
class Identity(Operator):
    """Noise only: A = I."""

    name = "noise"

    def forward(self, x):
        return x

    adjoint = pinv = forward

    def prox(self, z, y, lam):
        return (z + lam * y) / (1 + lam)


@dataclass(frozen=True)
class Scale(Operator):
    """A = c·I (the signal scaling √ᾱ_t of a VP schedule)."""

    c: float = 1.0
    name = "scale"

    def forward(self, x):
        return self.c * x

    adjoint = forward

    def pinv(self, y):
        return y / self.c if self.c != 0 else torch.zeros_like(y)

    def prox(self, z, y, lam):
        return (z + lam * self.c * y) / (1 + lam * self.c**2)


@lru_cache(maxsize=256)
def blur_matrix(sigma: float, n: int, radius: int) -> torch.Tensor:
    """The n×n banded Toeplitz matrix of the truncated, normalised 1-D Gaussian (float64)."""
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()  # normalised over the whole support [-h, h]
    offsets = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    inside = offsets.abs() <= radius
    return torch.where(inside, kernel[(offsets + radius).clamp(0, 2 * radius)], 0.0)


@lru_cache(maxsize=256)
def _blur_eig(sigma: float, n: int, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    evals, evecs = torch.linalg.eigh(blur_matrix(sigma, n, radius))
    return evals, evecs


@dataclass(frozen=True)
class Blur(Operator):
    """Separable Gaussian blur with zero padding: ``A x = G_H X G_Wᵀ`` per channel."""

    sigma: float = 1.0
    radius: int | None = None  # h; None = the image side (never truncated inside)
    rcond: float = 1e-3  # relative spectral cut-off of the pseudo-inverse
    name = "blur"

    def __post_init__(self):
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise BadInputError(f"blur sigma must be positive, got {self.sigma}")
        if self.radius is not None and self.radius < 0:
            raise BadInputError(f"blur radius must be ≥ 0, got {self.radius}")

    def _radius(self, n: int) -> int:
        return n if self.radius is None else int(self.radius)

    def _mat(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return blur_matrix(float(self.sigma), n, self._radius(n)).to(like.device, like.dtype)

    def _eig(self, n: int, like: torch.Tensor):
        evals, evecs = _blur_eig(float(self.sigma), n, self._radius(n))
        return evals.to(like.device, like.dtype), evecs.to(like.device, like.dtype)

    def forward(self, x):
        gh, gw = self._mat(x.shape[-2], x), self._mat(x.shape[-1], x)
        return gh @ x @ gw.T

    adjoint = forward  # G is symmetric, so A is self-adjoint

    def _spectral(self, r: torch.Tensor, gain) -> torch.Tensor:
        """Apply f(A) for A = G_H ⊗ G_W, with f given on the eigenvalue products."""
        eh, uh = self._eig(r.shape[-2], r)
        ew, uw = self._eig(r.shape[-1], r)
        coeffs = uh.T @ r @ uw
        return uh @ (coeffs * gain(eh[:, None] * ew[None, :])) @ uw.T

    def pinv(self, y):
        def inverse(e):
            keep = e.abs() > self.rcond * e.abs().max()
            return torch.where(keep, 1.0 / torch.where(keep, e, torch.ones_like(e)), 0.0)
        return self._spectral(y, inverse)

    def prox(self, z, y, lam):
        return self._spectral(z + lam * self.forward(y), lambda e: 1.0 / (1.0 + lam * e * e))


@lru_cache(maxsize=64)
def _mask_pattern(kind: str, level: float, seed: int, h: int, w: int) -> torch.Tensor:
    """1 where the pixel is observed, 0 where it is hidden; shape (H, W), float32."""
    m = torch.ones(h, w)
    if kind in ("box", "frame"):
        side_h, side_w = round(level * h), round(level * w)
        if kind == "frame":  # keep a centred window of side (1 - level)
            side_h, side_w = h - side_h, w - side_w
        top, left = (h - side_h) // 2, (w - side_w) // 2
        window = torch.zeros(h, w)
        window[top:top + side_h, left:left + side_w] = 1
        m = 1 - window if kind == "box" else window
    elif kind == "random":
        g = torch.Generator("cpu").manual_seed(int(seed))
        m = (torch.rand(h, w, generator=g) >= level).float()
    elif kind == "half":
        m[:, w - round(level * w):] = 0 if level > 0 else 1
    else:
        raise BadInputError(f"unknown mask kind {kind!r} (box, frame, random, half)")
    return m


@dataclass(frozen=True)
class Mask(Operator):
    """Element-wise mask ``A = diag(m)``; A is an orthogonal projection, so A⁺ = Aᵀ = A."""

    kind: str = "box"
    level: float = 0.5
    seed: int = 0
    name = "mask"

    def __post_init__(self):
        if not 0.0 <= self.level <= 1.0:
            raise BadInputError(f"mask level must lie in [0, 1], got {self.level}")
        if self.kind not in ("box", "frame", "random", "half"):
            raise BadInputError(f"unknown mask kind {self.kind!r} (box, frame, random, half)")

    def pattern(self, like: torch.Tensor) -> torch.Tensor:
        m = _mask_pattern(self.kind, float(self.level), int(self.seed), like.shape[-2], like.shape[-1])
        return m.to(like.device, like.dtype)

    def forward(self, x):
        return self.pattern(x) * x

    adjoint = pinv = forward

    def prox(self, z, y, lam):
        m = self.pattern(z)
        return (z + lam * m * y) / (1 + lam * m)


@dataclass(frozen=True)
class Downsample(Operator):
    """r×r block averaging B; ``B Bᵀ = I/r²`` so ``B⁺ = r² Bᵀ`` = nearest upsampling."""

    factor: int = 2
    name = "downsample"

    def __post_init__(self):
        if int(self.factor) != self.factor or self.factor < 1:
            raise BadInputError(f"downsampling factor must be a positive integer, got {self.factor}")

    def check_input(self, shape):
        h, w = shape[-2:]
        if h % self.factor or w % self.factor:
            raise BadInputError(f"image size {h}×{w} is not divisible by the downsampling "
                                f"factor {self.factor}")

    def forward(self, x):
        self.check_input(x.shape)
        return F.avg_pool2d(x, self.factor)

    def upsample(self, y):
        """U_r: nearest-neighbour upsampling (each low-res pixel copied to its block)."""
        return y.repeat_interleave(self.factor, -2).repeat_interleave(self.factor, -1)

    def adjoint(self, y):
        return self.upsample(y) / self.factor**2

    def pinv(self, y):
        return self.upsample(y)

    def prox(self, z, y, lam):
        # RGM Algorithm 4: v + λ/(λ + r²) · U_r(y − B_r v)
        return z + lam / (lam + self.factor**2) * self.upsample(y - self.forward(z))


@dataclass(frozen=True)
class Grayscale(Operator):
    """Channel mean ``(B, C, H, W) → (B, 1, H, W)`` of a C-channel image."""

    channels: int = 3
    name = "grayscale"

    def check_input(self, shape):
        if shape[1] != self.channels:
            raise BadInputError(f"grayscale expects {self.channels}-channel images, got {shape[1]}")

    def forward(self, x):
        return x.mean(1, keepdim=True)

    def adjoint(self, y):
        return y.expand(-1, self.channels, -1, -1) / self.channels

    def pinv(self, y):
        return y.expand(-1, self.channels, -1, -1).clone()

    def prox(self, z, y, lam):
        # RGM Algorithm 4 (colourisation): v_c + λ/(λ + C) (y − mean_c v)
        return z + lam / (lam + self.channels) * (y - self.forward(z))


@dataclass(frozen=True)
class Compose(Operator):
    """A = A_k ∘ … ∘ A_1 (``ops`` listed in the order they act)."""

    ops: tuple[Operator, ...] = field(default_factory=tuple)
    name = "compose"

    def check_input(self, shape):
        for op in self.ops:
            op.check_input(shape)
            shape = op.out_shape(shape)

    def forward(self, x):
        for op in self.ops:
            x = op.forward(x)
        return x

    def adjoint(self, y):
        for op in reversed(self.ops):
            y = op.adjoint(y)
        return y

    def pinv(self, y):
        """Product of the factors' pseudo-inverses (exact when the factors commute)."""
        for op in reversed(self.ops):
            y = op.pinv(y)
        return y

    def describe(self):
        return " ∘ ".join(op.describe() for op in reversed(self.ops)) or "noise"


@dataclass(frozen=True)
class Degradation:
    """The measurement model ``y = A x + σ_y ε``, with σ_y in the units of ``x``.

    Built from plain numbers (the GUI's sliders, the CLI's SPEC) by `build`; the
    operator is composed in the fixed order blur → downsample → mask → grayscale.
    """

    noise: float = 0.0
    blur: float = 0.0  # Gaussian σ_b in pixels; 0 = off
    downsample: int = 1  # block-average factor; 1 = off
    mask: str = ""  # "" = off, else kind: "box", "frame", "random" or "half"
    mask_level: float = 0.5
    mask_seed: int = 0
    grayscale: bool = False

    def __post_init__(self):
        """Refuse impossible values when the degradation is made, not when it is used."""
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise BadInputError(f"noise σ_y must be ≥ 0, got {self.noise}")
        if not (math.isfinite(self.blur) and self.blur >= 0):
            raise BadInputError(f"blur σ must be ≥ 0, got {self.blur}")
        Downsample(self.downsample)
        if self.mask:
            Mask(self.mask, self.mask_level, self.mask_seed)

    def operator(self, channels: int) -> Operator:
        ops: list[Operator] = []
        if self.blur > 0:
            ops.append(Blur(self.blur))
        if self.downsample != 1:
            ops.append(Downsample(self.downsample))
        if self.mask:
            ops.append(Mask(self.mask, self.mask_level, self.mask_seed))
        if self.grayscale and channels > 1:
            ops.append(Grayscale(channels))
        if not ops:
            return Identity()
        return ops[0] if len(ops) == 1 else Compose(tuple(ops))

    def measure(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``A x + σ_y ε``; ``noise`` is ε (drawn by the caller's RNG) or None for ε = 0."""
        op = self.operator(x.shape[1])
        op.check_input(tuple(x.shape))
        y = op.forward(x)
        return y if noise is None or self.noise == 0 else y + self.noise * noise

    def spec(self) -> str:
        """The CLI form, e.g. ``blur=2.0,noise=0.05``; `parse` reads it back."""
        parts = []
        if self.blur > 0:
            parts.append(f"blur={self.blur:g}")
        if self.downsample != 1:
            parts.append(f"downsample={self.downsample}")
        if self.mask:
            parts.append(f"mask={self.mask}:{self.mask_level:g}"
                         + (f":{self.mask_seed}" if self.mask_seed else ""))
        if self.grayscale:
            parts.append("grayscale")
        if self.noise > 0:
            parts.append(f"noise={self.noise:g}")
        return ",".join(parts) or "none"

    @staticmethod
    def parse(spec: str) -> "Degradation":
        """Read ``blur=2.0,noise=0.05``, ``downsample=4``, ``mask=box:0.5``, ``grayscale``."""
        fields: dict = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            key, _, value = item.partition("=")
            try:
                if key == "none":
                    continue
                if key == "grayscale":
                    fields["grayscale"] = True
                elif key in ("noise", "blur"):
                    fields[key] = float(value)
                elif key == "downsample":
                    fields["downsample"] = int(value)
                elif key == "mask":
                    kind, _, rest = value.partition(":")
                    if not kind:
                        raise BadInputError("mask needs a kind (box, frame, random, half), "
                                            "e.g. mask=box:0.5")
                    level, _, seed = rest.partition(":")
                    fields.update(mask=kind, mask_level=float(level or 0.5), mask_seed=int(seed or 0))
                else:
                    raise BadInputError(f"unknown degradation {key!r} in {spec!r} "
                                        "(noise, blur, downsample, mask, grayscale)")
            except ValueError as err:
                if isinstance(err, BadInputError):
                    raise
                raise BadInputError(f"cannot read {item!r} in degradation {spec!r}: {err}") from None
        return Degradation(**fields)

    def as_dict(self) -> dict:
        return dict(vars(self))
