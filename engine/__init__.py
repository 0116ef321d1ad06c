"""Restoration Studio engine: operators, schedules, priors, methods and jobs.

Everything the program does is one of four words (see DESIGN.md):

* **operator** (`engine.core.operators`): a linear corruption ``A`` with forward, adjoint,
  pseudo-inverse and proximal map;
* **prior** (`engine.priors`): anything that answers ``E[x0 | x_t]`` for its schedule
  (`engine.core.schedules`);
* **method** (`engine.samplers`, `engine.solvers`): a generator of `Step` events,
  registered by name in `engine.core.registry`;
* **job** (`engine.core.jobs`): runs a method for a request and returns a `Result`.

This package never imports Qt (an import-linter contract in pyproject.toml, checked by
the test suite) so that it runs headless, in notebooks and in the CLI.
"""

__version__ = "0.1.0"
