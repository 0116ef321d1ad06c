"""Candidate default settings of the studio, measured on every degradation its sliders make.

``python docs/results/default/measure.py OUT.json [--n-images N] [--samples K]
[--candidates NAME,…] [--degradations NAME,…]`` restores the first N Fashion-MNIST test
images (measurement seed i, sample seeds K·i … for image i, one thread, all images of a
candidate in one batched run) with each candidate on each degradation and writes, per
degradation and candidate, `engine eval`'s metric row (PSNR, SSIM, perceptual with 95 %
bootstrap intervals, seconds per image, NFE; diversity when K > 1). The degradations are
the evaluation tasks plus what the studio's sliders make on top of them: its default
measurement (noise 0.2), and noise, blur, downsampling and masks combined.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # this checkout's engine, not the venv's

import torch  # noqa: E402

from engine.core.operators import Degradation  # noqa: E402
from engine.evaluation.evaluate import TASKS, feature_network, restore_all, test_images  # noqa: E402

DEGRADATIONS = {
    **{name: TASKS[name].degradation
       for name in ("denoise", "sr2", "sr4", "deblur", "inpaint-box", "inpaint-random")},
    "noise-0.2": "noise=0.2",  # the studio's default measurement, and what moving one slider makes of it:
    "blur+noise-0.2": "blur=1.5,noise=0.2",
    "sr2+noise-0.2": "downsample=2,noise=0.2",
    "sr4+noise-0.2": "downsample=4,noise=0.2",
    "box+noise-0.2": "mask=box:0.5,noise=0.2",
    "noise-0.5": "noise=0.5",
    "blur+noise": "blur=1.5,noise=0.05",
    "sr2+noise": "downsample=2,noise=0.1",
    "blur+sr2": "blur=1,downsample=2,noise=0.01",  # a composition (CG prox)
}

TUNED = {  # the README's tuned pnp-drs@vp rows (sweep on test images 100–119)
    "denoise": {"iterations": 20, "lam": 0.1, "alpha": 0.2, "sigma": 0.2},
    "sr2": {"iterations": 40, "lam": 20.0, "alpha": 0.5, "sigma": 0.4},
    "deblur": {"iterations": 40, "lam": 100.0, "alpha": 0.5, "sigma": 0.0},
}  # … and the candidate single settings: λ per noise (λ/σ_y², σ_y in model units)
PER_NOISE = {f"per-noise κ={lam} σ={sigma} start={start}":
             {"iterations": 40, "lam": lam, "alpha": 0.5, "sigma": sigma, "per_noise": True,
              "start": start}  # λ = κ/σ_y²
             for lam, sigma, start in ((0.03, 0.4, "prox"), (0.1, 0.4, "prox"), (0.1, 0.4, "pinv"))}
CANDIDATES = {
    "ddim@vp (old default)": ("ddim@vp", {"nfe": 25, "k": 1.0}),
    "tikhonov": ("tikhonov", {}),
    **{f"pnp-drs@vp {task}-tuned": ("pnp-drs@vp", p) for task, p in TUNED.items()},
    **{f"pnp-drs@vp {name}": ("pnp-drs@vp", p) for name, p in PER_NOISE.items()},
}


def table(report: dict) -> str:
    """The README's table: PSNR ± the half-width of its 95 % interval, one row per degradation."""
    names = list(next(iter(report["results"].values())))
    lines = ["| degradation | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for degradation, rows in report["results"].items():
        cells = [f"{r['psnr']:.2f} ± {(r['psnr_ci'][1] - r['psnr_ci'][0]) / 2:.2f}" if "psnr" in r
                 else "refused" for r in rows.values()]
        lines.append(f"| {degradation} | " + " | ".join(cells) + " |")
    seconds = [[rows[n]["seconds"] for rows in report["results"].values() if "seconds" in rows[n]]
               for n in names]
    lines.append("| mean s / image | " + " | ".join(f"{sum(t) / len(t):.3f}" for t in seconds) + " |")
    return "\n".join(lines)


def main():
    if sys.argv[1:2] == ["--table"]:  # --table REPORT.json: print the README's table
        print(table(json.load(open(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--degradations", default=",".join(DEGRADATIONS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = feature_network()
    images, source = test_images(args.n_images)
    report = {"config": {"n_images": args.n_images, "samples": args.samples, "images": source,
                         "threads": 1, "batch": args.n_images}, "results": {}}
    for degradation in args.degradations.split(","):
        spec = DEGRADATIONS[degradation]
        rows = report["results"][f"{degradation} ({spec})"] = {}
        for name in args.candidates.split(","):
            method, params = CANDIDATES[name]
            try:
                row, _ = restore_all(method, images, Degradation.parse(spec), args.samples, None, 0,
                                     net, {k: str(v) for k, v in params.items()},
                                     batch=args.n_images)
                row.pop("per_image")
            except Exception as err:  # a refusal is a result too
                row = {"error": f"{type(err).__name__}: {err}"}
            rows[name] = {"params": params, **row}
            print(degradation, name, {k: row.get(k) for k in ("psnr", "psnr_ci", "seconds", "error")},
                  flush=True)
            json.dump(report, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
