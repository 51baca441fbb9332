"""numpy reference math for REPPO (float64 capable; never imports jax or torch)."""

from spec.reference import (  # noqa: F401
    discrete,
    distributions,
    hlgauss,
    losses,
    networks,
    normalization,
    rollout,
    targets,
)
