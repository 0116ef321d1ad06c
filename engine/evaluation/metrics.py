"""Image-quality and sample-set metrics (tensors in image units, [0, 1]).

* PSNR (data range 1) and SSIM: Gaussian window σ = 1.5 truncated at 3.5σ (11×11),
  population covariances, the constants K1 = 0.01, K2 = 0.03, mean over the valid
  (unpadded) region and over channels — the settings of scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)``, which the tests compare against. Written in torch so the engine does
  not depend on scikit-image at run time.
* diversity: mean pairwise RMS distance between the samples for one input (or the mean
  pairwise feature distance given a feature map); None for fewer than two samples.
* pixel_std: per-pixel standard deviation across samples (the method's uncertainty).
* frechet_distance: Fréchet distance between Gaussian fits of two feature sets; the
  features come from the project's own Fashion-MNIST network, so it is "FD-FMNIST",
  not FID.
* perceptual_distance: squared distance of channel-normalised multi-layer features
  (the LPIPS recipe without learned weights); `feature_distance` is its differentiable
  core (TIM trains with it).
* One-to-many methods (tim.md §Metrics): `diversity_score` (mean pairwise distance
  between the samples of one input, averaged over inputs) and
  `faithfulness_weighted_variance` on a σ grid, both for any per-image distance
  (default: mean squared pixel difference; the perceptual distance for TIM's tables).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

SSIM_SIGMA, SSIM_K1, SSIM_K2 = 1.5, 0.01, 0.03
SSIM_BAND = 256  # output rows per band (memory bound for large photos)
SSIM_MAPS = 12  # float64 band-sized maps alive at once in `_ssim_map`
CHUNK_BYTES = 2**27  # float64 working memory of one chunk of samples (PSNR, SSIM)


def _batched(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.double()
    ref = ref.double().expand_as(x) if ref.dim() == x.dim() - 1 or ref.shape[0] == 1 else ref.double()
    return x, ref


def _in_chunks(per_chunk: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               x: torch.Tensor, ref: torch.Tensor, bytes_per_sample: int) -> torch.Tensor:
    """``per_chunk`` over chunks of the batch (≤ `CHUNK_BYTES` of float64 work each),
    concatenated: a per-image metric of n samples then needs one chunk's memory."""
    rows = max(1, CHUNK_BYTES // max(1, bytes_per_sample))
    shared = ref.dim() == x.dim() - 1 or ref.shape[0] == 1
    return torch.cat([per_chunk(x[i:i + rows], ref if shared else ref[i:i + rows])
                      for i in range(0, x.shape[0], rows)])


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of the batch (data range 1)."""
    return _in_chunks(_psnr, x, ref, 3 * x[0].numel() * 8)


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    x, ref = _batched(x, ref)
    mse = ((x - ref) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse)).float()


def _gaussian_taps() -> torch.Tensor:
    """The 1-D factor of SSIM's 11×11 window (float64, sums to 1)."""
    from engine.core.operators.blur import gaussian_taps
    return gaussian_taps(SSIM_SIGMA, int(3.5 * SSIM_SIGMA + 0.5))


def ssim_defined(shape: tuple[int, ...]) -> bool:
    """SSIM needs an image at least as large as its 11×11 window (skimage refuses too)."""
    side = len(_gaussian_taps())
    return shape[-1] >= side and shape[-2] >= side


def ssim(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (mean over the valid region and channels).

    Computed in bands of `SSIM_BAND` output rows and chunks of samples, so a
    multi-megapixel photo or a large batch needs a few band-sized float64 maps, not a
    dozen full-size ones; each image's value is the same as computed whole."""
    if not ssim_defined(tuple(x.shape)):
        raise ValueError(f"SSIM needs images of at least {len(_gaussian_taps())} "
                         f"pixels a side, got {tuple(x.shape[-2:])}")
    side = len(_gaussian_taps())
    band_bytes = SSIM_MAPS * x.shape[-3] * (SSIM_BAND + side) * x.shape[-1] * 8
    return _in_chunks(_ssim_banded, x, ref, band_bytes)


def _ssim_banded(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    side = len(_gaussian_taps())
    valid_h, valid_w = x.shape[-2] - side + 1, x.shape[-1] - side + 1
    total = 0.0
    for top in range(0, valid_h, SSIM_BAND):
        rows = slice(top, min(top + SSIM_BAND, valid_h) + side - 1)
        total = total + _ssim_map(*_batched(x[..., rows, :], ref[..., rows, :])).flatten(1).sum(1)
    return (total / (x.shape[-3] * valid_h * valid_w)).float()


def _ssim_map(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    c, g = x.shape[1], _gaussian_taps()
    column, row = g.view(1, 1, -1, 1).expand(c, 1, -1, 1), g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    # the window is separable: its two 11-tap factors (valid region only, as skimage crops);
    # float64 conv2d with the whole 11×11 window took 0.8 s per map at 512×512 RGB, 20× more
    blur = lambda v: F.conv2d(F.conv2d(v, column, groups=c), row, groups=c)
    mu_x, mu_y = blur(x), blur(ref)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(ref * ref) - mu_y**2
    cov = blur(x * ref) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def diversity(samples: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor] | None = None
              ) -> float | None:
    """Mean pairwise distance between samples (RMS per pixel, or L2 of features)."""
    if samples.shape[0] < 2:
        return None
    if features is None:
        flat = samples.double().flatten(1)
        scale = flat.shape[1] ** 0.5
    else:
        with torch.no_grad():
            flat = features(samples).double().flatten(1)
        scale = 1.0
    return float(torch.pdist(flat).mean() / scale)


def pixel_std(samples: torch.Tensor) -> torch.Tensor:
    """Per-pixel standard deviation across samples, (C, H, W)."""
    return samples.std(0, unbiased=False)


def sample_metrics(samples: torch.Tensor, clean: torch.Tensor | None) -> dict:
    """The metrics a job reports for the samples of one input (plain floats/lists).

    SSIM is left out for images smaller than its window (not faked)."""
    out: dict = {}
    if clean is not None:
        single = samples.shape[0] == 1  # the mean is the sample: its metrics are the sample's
        p, mean = psnr(samples, clean), samples.mean(0, keepdim=True)
        out.update(psnr=float(p.mean()), psnr_per_sample=p.tolist(),
                   psnr_mean=float(p[0] if single else psnr(mean, clean)[0]))
        if ssim_defined(tuple(samples.shape)):
            s = ssim(samples, clean)
            out.update(ssim=float(s.mean()), ssim_per_sample=s.tolist(),
                       ssim_mean=float(s[0] if single else ssim(mean, clean)[0]))
    if samples.shape[0] > 1:
        out.update(diversity=diversity(samples), std=float(pixel_std(samples).mean()))
    return out


def frechet_distance(feats_a, feats_b) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2(Σa Σb)^½) between Gaussian fits of two feature sets.

    With no more samples than feature dimensions the cross term comes from one SVD of the
    n_a × n_b matrix of centred samples, `cross_trace_sqrt` (half the cost of the two
    d × d eigendecompositions: the quick claims bootstrap thousands of FDs of 128
    samples); otherwise from the covariances, `trace_sqrt_product`."""
    a, b = (np.asarray(f, dtype=np.float64) for f in (feats_a, feats_b))
    mu_a, mu_b = a.mean(0), b.mean(0)
    centred_a, centred_b = a - mu_a, b - mu_b
    var_a = (centred_a ** 2).sum() / (len(a) - 1)  # Tr Σa
    var_b = (centred_b ** 2).sum() / (len(b) - 1)
    if min(len(a), len(b)) <= a.shape[1]:
        cross = cross_trace_sqrt(centred_a, centred_b)
    else:
        cross = trace_sqrt_product(np.cov(a, rowvar=False), np.cov(b, rowvar=False))
    return float(((mu_a - mu_b) ** 2).sum() + var_a + var_b - 2 * cross)


def cross_trace_sqrt(centred_a: np.ndarray, centred_b: np.ndarray) -> float:
    """Tr (Σa Σb)^½ from centred samples: with Σ = XᵀX/(n − 1), the nonzero eigenvalues
    of Σa Σb are those of M Mᵀ/((n_a − 1)(n_b − 1)) for M = Xa Xbᵀ, so the trace of the
    root is the sum of M's singular values over √((n_a − 1)(n_b − 1))."""
    singular = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False)
    return float(singular.sum() / np.sqrt((len(centred_a) - 1) * (len(centred_b) - 1)))


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """Tr (Σa Σb)^½ = Σ √λ of the PSD matrix Σa^½ Σb Σa^½ (same spectrum as Σa Σb).

    Symmetric eigendecompositions only, so a rank-deficient covariance (fewer samples
    than feature dimensions) is exact instead of a warning from a general sqrtm."""
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum())


def _layer_distance(fx: torch.Tensor, fr: torch.Tensor) -> torch.Tensor:
    """Squared distance of unit-normalised channel vectors, averaged over positions."""
    d = ((F.normalize(fx, dim=1) - F.normalize(fr, dim=1)) ** 2).sum(1)
    return d.flatten(1).mean(1) if d.dim() > 1 else d


def feature_distance(x: torch.Tensor, ref: torch.Tensor,
                     extractor: Callable[[torch.Tensor], list[torch.Tensor]]) -> torch.Tensor:
    """Mean over layers of the squared distance of channel-unit-normalised features, per
    image of two equal-shape batches; differentiable (TIM trains with it)."""
    per_layer = [_layer_distance(fx, fr) for fx, fr in zip(extractor(x), extractor(ref))]
    return torch.stack(per_layer).mean(0)


def perceptual_distance(x: torch.Tensor, ref: torch.Tensor,
                        extractor: Callable[[torch.Tensor], list[torch.Tensor]]) -> torch.Tensor:
    """`feature_distance` without gradients; ``ref`` may be one image for the batch."""
    x, ref = (v.float() for v in _batched(x, ref))
    with torch.no_grad():
        return feature_distance(x, ref, extractor)


# -- one-to-many metrics (TIM, tim.md §Metrics) -----------------------------------------

# σ grid of the faithfulness-weighted variance, for distances of the size of the
# perceptual distance (≈ 0.05–1 between Fashion-MNIST images).
FWV_SIGMAS = (0.1, 0.2, 0.3, 0.5, 1.0)
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mean_squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared pixel difference (the default distance below)."""
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1)


def diversity_score(samples: torch.Tensor, distance: Distance = mean_squared_distance) -> float:
    """Mean pairwise distance between the m samples of each input, averaged over inputs.

    ``samples``: ``(N, m, C, H, W)``, the m samples of each of N inputs (m ≥ 2)."""
    n, m = samples.shape[:2]
    if m < 2:
        raise ValueError("the diversity score needs at least two samples per input")
    i, j = torch.triu_indices(m, m, 1)
    with torch.no_grad():
        d = distance(samples[:, i].flatten(0, 1), samples[:, j].flatten(0, 1))
    return float(d.double().mean())


def faithfulness_weighted_variance(samples: torch.Tensor, truth: torch.Tensor,
                                   sigmas=FWV_SIGMAS, distance: Distance = mean_squared_distance
                                   ) -> dict[float, float]:
    """``FWV_σ = 1/N Σ_i 1/m Σ_j exp(−d(ŷ_ij, y_i)/(2σ²)) · d(ŷ_ij, ȳ_i)`` [inferred form].

    ``samples`` ``(N, m, C, H, W)``, ``truth`` ``(N, C, H, W)``; ``ȳ_i`` is the pixel mean of
    input i's samples. Spread counts only as far as the samples stay faithful to the truth;
    one-to-one methods (identical samples) score 0, and each term grows with σ."""
    n, m = samples.shape[:2]
    flat = samples.flatten(0, 1)
    with torch.no_grad():
        to_truth = distance(flat, truth.repeat_interleave(m, 0)).double()
        mean = samples.double().mean(1).to(samples.dtype)  # exact for identical samples
        to_mean = distance(flat, mean.repeat_interleave(m, 0)).double()
    return {float(s): float((torch.exp(-to_truth / (2 * s * s)) * to_mean).mean()) for s in sigmas}
