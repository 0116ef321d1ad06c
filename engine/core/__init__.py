"""The core nouns: operators (A), schedules (C_t, σ_t), the method registry, jobs.

`step` defines the event every method yields and the engine's error types; `rng` the
explicit per-sample randomness; `wasserstein` selects schedules by W2 shortest paths.
Nothing here knows about a particular paper's algorithm or network.
"""
