"""Command line: ``python -m engine {list,restore,sample,train,schedule,...}``.

The contract later issues and the GUI rely on (extend, don't break):

* ``list [--json]``: operators, methods (with their parameter dataclasses, the
  capabilities they require and the models that can run them, ``runs_on``), models,
  priors, each model's spec (kind, capabilities, shape, schedule, task) and the model
  directories that cannot be used, with the reason (``unusable_models``).
* ``restore (--image PATH | --sample INDEX) --degrade SPEC --method NAME[@MODEL]
  [--model NAME] [--nfe N] [--n K] [--seed S] [--param K=V ...] --out PNG [--json PATH]
  [--trajectory GIF|MP4]``: JSON is a flat object with psnr, ssim, nfe, seconds (per
  image) and diversity when K > 1.
* ``sample --model NAME --method NAME [--nfe N] [--n K] [--seed S] --out PNG [--json PATH]``.
* ``train``, ``schedule``, ``eval``, ``claims``, ``bench``, ``card``, ``playground`` and
  ``rgm-levels`` are forwarded to the
  ``main(argv)`` of their modules (see `FORWARDED`).

Progress goes to stderr with an ETA once a run takes longer than a second. Bad input
exits with status 2 and a one-line reason; nothing else is printed on stderr then.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from engine.core.step import EngineError

EXIT_BAD_INPUT = 2


def _method_spec(method: str, model: str | None) -> str:
    if model and "@" in method:
        raise EngineError("give the model either as --model or as METHOD@MODEL, not both")
    return f"{method}@{model}" if model else method


def _progress_bar():
    """A tqdm callback over Steps: shown only when the run takes over a second."""
    from tqdm import tqdm

    bar = None

    def update(step):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=step.total, delay=1.0, file=sys.stderr, unit="step", leave=False)
        bar.update(1)
        if step.is_last:
            bar.close()

    return update


def cmd_list(args) -> int:
    from engine.core import registry
    from engine.priors.catalog import learned_models, model_specs, prior_names, problems

    methods = [{"name": m.name, "kind": m.kind, "family": m.family, "summary": m.summary,
                "default_model": m.default_model, "needs_prior": m.needs_prior,
                "generates": m.generates, "schedules": list(m.schedules), "latent": m.latent,
                "requires": sorted(m.requirements), "needs_grad": m.needs_grad,
                "runs_on": registry.models_for(m.name) if m.needs_prior else [],
                "params": registry.describe_params(m.params)}
               for m in registry.methods().values()]
    from engine.core.operators import operator_infos

    listing = {"operators": ["noise"] + [info.name for info in operator_infos()],
               "methods": methods, "models": learned_models(), "priors": prior_names()}
    listing["model_specs"] = {name: {"kind": s.kind, "capabilities": sorted(s.capabilities),
                                     "shape": list(s.shape), "schedule": s.schedule, "task": s.task}
                              for name, s in model_specs().items()}
    listing["unusable_models"] = problems()
    if args.json:
        print(json.dumps(listing, indent=2, default=str))
        return 0
    print("operators: " + ", ".join(listing["operators"]))
    print("models:    " + (", ".join(listing["models"]) or "(none shipped)"))
    print("priors:    " + ", ".join(listing["priors"]))
    for name, reason in listing["unusable_models"].items():
        print(f"unusable:  {name}: {reason}")
    print("methods:")
    for m in methods:
        default = f" (default model {m['default_model']})" if m["default_model"] else ""
        print(f"  {m['name']:<14} {m['kind']:<9} {m['summary']}{default}")
        if m["needs_prior"]:
            print(f"  {'':<14} {'':<9} runs on: {', '.join(m['runs_on']) or '(no model available)'}")
    return 0


def _request_params(args) -> dict:
    from engine.core.registry import parse_params

    params = parse_params(args.param)
    if args.nfe is not None:
        params["nfe"] = args.nfe
    return params


def _check_outputs(args) -> None:
    """Refuse bad output paths before the run: the format of --out (by its extension),
    --json (.json/.csv), --trajectory (.gif/.mp4), each in an existing folder."""
    from engine.io import export

    args.out = str(export.grid_path(args.out)[0])
    if args.json:
        export.metrics_path(args.json)
    if getattr(args, "trajectory", None):
        export.trajectory_path(args.trajectory)
    if getattr(args, "strip", None):
        args.strip = str(export.grid_path(args.strip)[0])


def _write_outputs(args, result, extra: dict) -> None:
    """Write the grid, trajectory and metrics of a run: all of them or none."""
    from engine.io import export

    writes = [export.grid_writer(args.out, result.samples, result.recipe, scale=args.scale)]
    if getattr(args, "trajectory", None):
        writes.append(export.trajectory_writer(args.trajectory,
                                               [frame for _, frame, _ in result.trajectory]))
    if getattr(args, "strip", None) and result.clean is not None:
        writes.append(export.grid_writer(args.strip, before_after(result), result.recipe, nrow=3,
                                         scale=args.scale))
    if args.json:
        flat = {k: v for k, v in result.metrics.items() if not isinstance(v, (list, dict))}
        flat.update(extra)
        writes.append(export.metrics_writer(args.json, flat))
    export.atomic_write_all(writes)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items() if isinstance(v, float))
    print(f"wrote {args.out}: {summary}", file=sys.stderr)


def before_after(result):
    """(3, C, H, W): the clean image, y at its size (nearest; grey y drawn in every
    channel) and the first sample, for ``--strip``."""
    import torch
    import torch.nn.functional as F

    clean, y = result.clean, result.measurement.clamp(0, 1)
    y = F.interpolate(y[None], size=clean.shape[-2:], mode="nearest")[0]
    return torch.stack([clean, y.expand_as(clean), result.samples[0]])


def cmd_restore(args) -> int:
    from engine.core.jobs import Request, run_job
    from engine.core.operators import Degradation

    if (args.image is None) == (args.sample is None):
        raise EngineError("give exactly one of --image PATH or --sample INDEX")
    _check_arguments(args)
    if args.image is not None:
        from engine.io.imageio import load_image
        image, source = load_image(args.image), args.image
    else:
        from engine.io.data import demo_images
        images, _ = demo_images()
        if not 0 <= args.sample < len(images):
            raise EngineError(f"--sample must lie in [0, {len(images) - 1}], got {args.sample}")
        image, source = images[args.sample], f"demo:{args.sample}"
    spec = _method_spec(args.method, args.model)
    image = _fit_image(image, spec, args.device)
    _maybe_compile(args, spec)
    request = Request(method=spec, image=image, degradation=Degradation.parse(args.degrade),
                      params=_request_params(args), seed=args.seed, n=args.n,
                      measurement_seed=args.measurement_seed, device=args.device, source=source)
    result = run_job(request, _progress_bar())
    _write_outputs(args, result, {"method": spec, "degradation": args.degrade,
                                  "seed": args.seed, "n": args.n})
    return 0


def _check_arguments(args) -> None:
    """What can be refused before loading anything: device, outputs, the method's name."""
    from engine.core import registry
    from engine.core.jobs import check_device

    check_device(args.device)
    _check_outputs(args)
    registry.split_spec(_method_spec(args.method, args.model))


def _refuse_point_prior(spec: str, device: str) -> None:
    """The CLI writes image grids: a prior over 2-D points (the toy priors) has none."""
    from engine.core import registry
    from engine.core.capabilities import spec_of
    from engine.priors.catalog import load_model

    name, model = registry.split_spec(spec)
    if registry.get(name).needs_prior and model is not None and \
            not spec_of(load_model(model, device)).is_image:
        raise EngineError(f"{model} is a prior over 2-D points, not images; the command line "
                          "writes images (the studio's Playground shows it)")


def _maybe_compile(args, spec: str) -> None:
    """``--compile``: compile the (cached) model's network before the job loads it."""
    from engine.core import registry

    name, model = registry.split_spec(spec)
    if not (args.compile and registry.get(name).needs_prior and model is not None):
        return
    from engine.models.compile import compile_prior
    from engine.priors.catalog import load_model

    if not compile_prior(load_model(model, args.device)):
        print(f"note: {model} has no network to compile; running as is", file=sys.stderr)


def _fit_image(image, spec: str, device: str):
    """Convert an image to the model's shape, saying what was done (never silently)."""
    from engine.core import registry
    from engine.io.imageio import conform
    from engine.core.capabilities import fitted_shape
    from engine.priors.catalog import load_model

    name, model = registry.split_spec(spec)
    if not registry.get(name).needs_prior or model is None:
        return image
    loaded = load_model(model, device)  # cached: the job reuses it
    _refuse_point_prior(spec, device)
    image, note = conform(image, fitted_shape(loaded, image.shape))
    if note:
        print(f"note: {note}", file=sys.stderr)
    return image


def cmd_sample(args) -> int:
    from engine.core.jobs import Request, run_job

    _check_arguments(args)
    spec = _method_spec(args.method, args.model)
    _refuse_point_prior(spec, args.device)
    _maybe_compile(args, spec)
    request = Request(method=spec, params=_request_params(args), seed=args.seed, n=args.n,
                      device=args.device, source="unconditional")
    result = run_job(request, _progress_bar())
    extra = {"method": spec, "seed": args.seed, "n": args.n}
    if args.n > 1:
        from engine.evaluation.metrics import diversity
        from engine.models.features import load_feature_network
        extra["diversity"] = diversity(result.samples, features=load_feature_network().embedding)
    _write_outputs(args, result, extra)
    return 0


def _forward(module: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib
        return importlib.import_module(module).main(argv)
    return run


FORWARDED = {"train": "engine.train", "schedule": "engine.core.wasserstein",
             "eval": "engine.evaluation.evaluate", "claims": "engine.evaluation.claims", "bench": "engine.evaluation.bench",
             "card": "engine.evaluation.card", "playground": "engine.evaluation.playground",
             "rgm-levels": "engine.evaluation.rgm_levels"}


def _integer(text: str) -> int:
    """An integer argument; ``1e9`` and ``2**70`` are read as the numbers they name, so
    the range check that follows says what is wrong with them (not a usage error)."""
    base, power, exponent = text.partition("**")
    try:
        if power:
            value = int(base) ** min(int(exponent), 4096)  # far beyond any range; bounded work
        else:
            value = int(text) if text.strip().lstrip("+-").isdigit() else float(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if isinstance(value, float) and not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    return int(value)


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line (``error: …``) with exit status 2, like every bad input."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m engine",
                           description="Restoration Studio engine (headless).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("list", help="operators, methods, models and priors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    def common(p):
        p.add_argument("--method", required=True, help="NAME or NAME@MODEL")
        p.add_argument("--model", help="model/prior name (default: the method's)")
        p.add_argument("--nfe", type=_integer, help="network evaluations (the method's nfe parameter)")
        p.add_argument("--n", type=_integer, default=1, help="samples")
        p.add_argument("--seed", type=_integer, default=0, help="sample k uses seed + k")
        p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--out", required=True, help="grid image in the format its extension names "
                                                    "(.png, the default, embeds the recipe)")
        p.add_argument("--scale", type=int, default=1, choices=range(1, 9), metavar="1..8",
                       help="nearest-neighbour magnification of the grid")
        p.add_argument("--json", help="metrics as a flat JSON object")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the model's network first (pays off on large photos "
                            "and long runs; see engine.models.compile)")

    p = sub.add_parser("restore", help="degrade an image and restore it")
    p.add_argument("--image", help="PNG/JPEG/TIFF/BMP file")
    p.add_argument("--sample", type=int, help="index into the bundled demo set")
    p.add_argument("--degrade", required=True, help="e.g. blur=2.0,noise=0.05")
    p.add_argument("--measurement-seed", type=_integer, default=0)
    p.add_argument("--trajectory", help="GIF or MP4 of the reverse trajectory")
    p.add_argument("--strip", help="image of clean | degraded | the first restoration side by side "
                                   "(a smaller y drawn at the clean size, nearest)")
    common(p)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("sample", help="unconditional generation")
    common(p)
    p.set_defaults(func=cmd_sample)

    for name in FORWARDED:
        sub.add_parser(name, help=f"see `python -m engine {name} --help`", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in FORWARDED:
        return _forward(FORWARDED[argv[0]])(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
