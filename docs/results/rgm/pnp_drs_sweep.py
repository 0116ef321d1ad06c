"""Coordinate sweep of pnp-drs's parameters on held-out Fashion-MNIST test images.

``python docs/results/rgm/pnp_drs_sweep.py MODEL OUT.json [TASK ...]`` runs `engine eval`'s
`evaluate` on test images 100–119 (held out from the 100 that the README's table reports),
one sample each, and for each task walks the parameters one at a time from Table 6's
defaults (CIFAR SR×4: M = 10, λ = 0.1, α = 0.2, K = 1), keeping the best mean PSNR:
σ (diffusion priors only; 0 = matched to RGM-D level 1), then λ, α and M.
"""

import json
import sys

from engine.evaluation.evaluate import evaluate

GRID = {"sigma": [0.0, 0.4, 0.2, 0.1], "lam": [0.1, 1.0, 5.0, 20.0, 100.0],
        "alpha": [0.05, 0.2, 0.5, 0.8, 1.0], "iterations": [10, 20, 40]}


def psnr(task, model, params):
    report, _ = evaluate(task, [f"pnp-drs@{model}"], n_images=20, samples=1, first=100,
                         params={k: str(v) for k, v in params.items()})
    row = report["results"][f"pnp-drs@{model}"]
    return row["psnr"], row["seconds"]


def sweep(task, model):
    best = {"iterations": 10, "lam": 0.1, "alpha": 0.2, "levels": 1, "sigma": 0.0}
    tried = []
    score = None
    for name, values in GRID.items():
        if name == "sigma" and model.startswith("rgm"):
            continue
        for value in values:
            params = {**best, name: value}
            if score is not None and value == best[name]:
                continue
            p, sec = psnr(task, model, params)
            tried.append({**params, "psnr": p, "seconds": sec})
            print(task, model, params, f"{p:.2f} dB", flush=True)
            if score is None or p > score:
                score, best = p, params
    return {"best": best, "psnr": score, "tried": tried}


if __name__ == "__main__":
    model, out = sys.argv[1], sys.argv[2]
    tasks = sys.argv[3:] or ["denoise", "sr2", "sr4", "deblur", "inpaint-box"]
    results = {task: sweep(task, model) for task in tasks}
    json.dump(results, open(out, "w"), indent=1)
