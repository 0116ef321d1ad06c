"""Measuring methods: metrics (PSNR, SSIM, FD, diversity), the evaluation suite
(`evaluate`), the papers' claims at small scale (`claims`), benchmarks (`bench`),
model cards (`card`) and side-by-side checks against reference libraries (`reference`)."""
