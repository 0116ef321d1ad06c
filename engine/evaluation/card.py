"""``python -m engine card MODEL [--samples 1000] [--nfe 50] [--method M] [--write]``.

Measures a shipped diffusion model's quality for its model card: test-set denoising
PSNR (`engine.train.diffusion.measure`: one network evaluation at the matching noise
level, σ = 0.05 and 0.1 for VP, 0.05 for the Soft Diffusion noise stage) and FD-FMNIST
of ``--samples`` unconditional samples at ``--nfe`` with the sampler that drew its
training grids (through `engine.evaluation.evaluate`, so the figure is the eval suite's).
``--write`` stores the numbers, with the command and its wall time, under
``"quality"`` in the model's config.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time

from engine.core.step import EngineError

def measure_card(model: str, samples: int, nfe: int, method: str | None) -> dict:
    from engine.evaluation.evaluate import evaluate
    from engine.priors.catalog import MODELS_DIR
    from engine.train.diffusion import FAMILIES, measure

    model_dir = MODELS_DIR / model
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("kind") != "diffusion":
        raise EngineError(f"{model} is not a diffusion model (kind {config.get('kind')!r})")
    method = method or FAMILIES[config["family"]][2]  # the sampler of its training grids
    quality = measure(model_dir)
    report, _ = evaluate("generate", [f"{method}@{model}"], n_images=samples, nfe=nfe)
    row = report["results"][f"{method}@{model}"]
    if "error" in row:
        raise EngineError(row["error"])
    quality.update({"fd_fmnist": round(row["fd"], 2), "fd_samples": samples,
                    "fd_reference": f"{report['config']['images']}[:{samples}]",
                    "sampler": method, "nfe": row["nfe"],
                    "diversity": round(row["diversity"], 4)})
    return quality


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m engine card", description=__doc__.splitlines()[0])
    p.add_argument("model", help="a model in assets/models, e.g. vp or soft-blur")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--nfe", type=int, default=50)
    p.add_argument("--method", help="sampler (default: the family's: ddim for vp, momentum for soft)")
    p.add_argument("--write", action="store_true", help="store the numbers in the model's config.json")
    args = p.parse_args(argv)
    started = time.perf_counter()
    try:
        quality = measure_card(args.model, args.samples, args.nfe, args.method)
    except (EngineError, OSError, KeyError) as err:
        print(f"error: {err}")
        return 2
    quality["command"] = "python -m engine card " + shlex.join(argv)
    quality["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(quality, indent=2))
    if args.write:
        from engine.priors.catalog import MODELS_DIR
        path = MODELS_DIR / args.model / "config.json"
        config = json.loads(path.read_text())
        config["quality"] = quality
        path.write_text(json.dumps(config, indent=2) + "\n")
    return 0
