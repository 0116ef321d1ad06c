"""Opt-in ``torch.compile`` for the long jobs: ``engine eval|train|restore --compile``.

Decisions (issue 14 item 7):

* Opt-in, never in the GUI path: compiling costs tens of seconds to minutes on a
  2-core CPU before the first network evaluation, which a slider or a Run must never
  wait for. The studio does not import this module; the long jobs take ``--compile``.
* What is compiled is the network (``prior.network``, the training loop's model after
  its DDP wrapper), not the samplers: their Python loops call the network once per
  step with one shape, which is what the compiler's graph cache keys on. Weights are
  shared with the uncompiled module (`torch.compile` wraps, it does not copy), so EMA
  updates, checkpoints and ``state_dict`` are unchanged.
* Shapes: ``dynamic=None`` (torch's default): the first shape is compiled static; a
  second distinct shape (another photo size, a last partial batch) recompiles once with
  symbolic sizes. Tiles of the any-size prior are all one square side, so a large photo
  compiles once.
* Cache between runs: inductor's FX-graph cache and AOTAutograd's cache (both on by
  default in torch 2.13) are kept under one folder, ``$RESTORATION_COMPILE_CACHE``
  (else ``~/.cache/restoration-studio/inductor``) instead of the default ``/tmp``
  folder, which a reboot empties. A later process that compiles the same network for
  the same shapes loads the generated kernels instead of generating them again (it
  still traces the Python once).
* Whether it pays off is measured, not assumed: ``python -m engine bench --compile``
  (`engine.evaluation.bench.bench_compile`) times eager against compiled in one run;
  the figures and where it does not pay off are in the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

CACHE_ENV = "RESTORATION_COMPILE_CACHE"


def cache_dir() -> Path:
    """Where compiled graphs are kept between runs (see module doc)."""
    default = Path.home() / ".cache" / "restoration-studio" / "inductor"
    return Path(os.environ.get(CACHE_ENV) or default)


def enable_cache() -> Path:
    """Point inductor's on-disk caches at `cache_dir` (before the first compile)."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return folder


def compile_network(network: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(network)`` with the persistent cache enabled."""
    enable_cache()
    return torch.compile(network)


def compile_prior(prior) -> bool:
    """Compile a loaded model's network in place (a learned prior's ``network``);
    False for a model without one (exact priors, classical methods)."""
    network = getattr(prior, "network", None)
    if not isinstance(network, torch.nn.Module) or hasattr(network, "_orig_mod"):
        return False
    prior.network = compile_network(network)
    return True
