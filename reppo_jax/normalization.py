"""Running observation statistics (Chan et al. parallel update); mirrors
``spec.reference.normalization``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

INIT_COUNT = 1e-4
NORM_EPS = 1e-2


class RunningStats(NamedTuple):
    mean: jax.Array
    var: jax.Array
    count: jax.Array


def running_stats_init(shape: tuple[int, ...], dtype=jnp.float32) -> RunningStats:
    """Mean 0, variance 1, a tiny prior count so the first update dominates."""
    return RunningStats(
        jnp.zeros(shape, dtype), jnp.ones(shape, dtype), jnp.asarray(INIT_COUNT, dtype)
    )


def running_stats_update(stats: RunningStats, batch: jax.Array) -> RunningStats:
    """Merge a batch (B, *shape) into the statistics with the parallel-variance formula."""
    b_count = jnp.asarray(batch.shape[0], stats.count.dtype)
    b_mean = jnp.mean(batch, axis=0)
    b_var = jnp.var(batch, axis=0)
    delta = b_mean - stats.mean
    total = stats.count + b_count
    mean = stats.mean + delta * (b_count / total)
    m2 = stats.var * stats.count + b_var * b_count + delta * delta * stats.count * b_count / total
    return RunningStats(mean, m2 / total, total)


def normalize(x: jax.Array, stats: RunningStats, eps: float = NORM_EPS) -> jax.Array:
    """(x − μ)/√(σ² + eps); zero-variance features map to 0, never NaN."""
    return (x - stats.mean) / jnp.sqrt(stats.var + eps)
