"""Memoised tensors that every job may share, whatever its grad mode.

Jobs of methods that take no gradients run under ``torch.inference_mode()``
(`engine.core.jobs`), and a tensor made there is an *inference tensor*: autograd may not
save it for backward. A cache filled by such a job and read later by a gradient-taking
method (DPS blurring its x̂0 with a cached kernel) would fail, so `tensor_cache` builds
its values with inference mode switched off: they are ordinary tensors for every reader.
"""

from __future__ import annotations

from functools import lru_cache, wraps

import torch


def tensor_cache(maxsize: int):
    """``functools.lru_cache(maxsize)`` whose values are made outside inference mode."""
    def decorate(build):
        @lru_cache(maxsize=maxsize)
        @wraps(build)
        def cached(*args, **kwargs):
            with torch.inference_mode(False):
                return build(*args, **kwargs)
        return cached
    return decorate
