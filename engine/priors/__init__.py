"""Priors: anything that answers ``x0_hat = E[x0 | x_t]`` for its schedule.

`base.Prior` is the protocol. `exact` holds closed-form priors (Gaussian, Gaussian
mixture, the empirical prior of a finite image set); `learned` wraps the networks
shipped in ``assets/models/``. `catalog` maps model names to models of any kind
(dispatching on the ``kind`` of a model's config) and caches loaded ones.
"""

from engine.priors.base import Prior

__all__ = ["Prior"]
