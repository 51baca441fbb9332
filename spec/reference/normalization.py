"""Running observation normalisation (paper D.4; docs/design.md).

Statistics are merged with the parallel-variance formula of Chan, Golub & LeVeque (1979) over
every batch of env steps; observations are normalised as (x − μ)/√(σ² + 1e-2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spec.reference._common import as_float, float_dtype

COUNT_INIT = 1e-4
"""Initial pseudo-count. The prior (mean 0, var 1) carries this tiny weight so that the first
update needs no special case and never divides by zero; after n real samples its influence on the
mean/variance is O(1e-4 / n)."""


@dataclass(frozen=True)
class RunningStats:
    """Population statistics: ``mean`` and ``var`` (ddof = 0) of shape ``shape`` in the
    observation dtype; ``count`` is a float64 scalar (exact integer counts up to 2**53)."""

    mean: np.ndarray
    var: np.ndarray
    count: float


def running_stats_init(shape: tuple[int, ...] | int, dtype=np.float64) -> RunningStats:
    """Mean 0, variance 1, count ``COUNT_INIT`` (= 1e-4)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.floating):
        raise ValueError(f"running stats dtype must be floating, got {dt}")
    return RunningStats(np.zeros(shape, dt), np.ones(shape, dt), float(COUNT_INIT))


def running_stats_update(stats: RunningStats, batch: np.ndarray) -> RunningStats:
    """Merge a batch of shape (B, *shape) into the stats (Chan et al. parallel update):

        δ = x̄_B − μ,  n' = n + B,  μ' = μ + δ·B/n',
        σ'² = (n·σ² + B·σ_B² + δ²·n·B/n') / n'.
    """
    dt = stats.mean.dtype
    x = as_float(batch, dt)
    if x.shape[1:] != stats.mean.shape or x.ndim != stats.mean.ndim + 1:
        raise ValueError(
            f"batch must have shape (B, *{stats.mean.shape}), got {x.shape}"
        )
    b = x.shape[0]
    if b == 0:
        return stats
    b_mean = np.mean(x, axis=0)
    b_var = np.var(x, axis=0)
    n = float(stats.count)
    tot = n + b
    delta = b_mean - stats.mean
    mean = stats.mean + delta * dt.type(b / tot)
    m2 = stats.var * dt.type(n) + b_var * dt.type(b) + delta * delta * dt.type(n * b / tot)
    var = m2 / dt.type(tot)
    return RunningStats(mean.astype(dt), var.astype(dt), tot)


def normalize(x: np.ndarray, stats: RunningStats, eps: float = 1e-2) -> np.ndarray:
    """(x − μ) / √(σ² + eps), eps = 1e-2 as in the paper code. A zero-variance feature maps to
    (x − μ)/0.1, i.e. 0 for x = μ, never nan."""
    dt = float_dtype(x, stats.mean)
    x = as_float(x, dt)
    nd = stats.mean.ndim
    if x.ndim < nd or x.shape[x.ndim - nd:] != stats.mean.shape:
        raise ValueError(f"x {x.shape} must end with the stats shape {stats.mean.shape}")
    return (x - stats.mean.astype(dt)) / np.sqrt(stats.var.astype(dt) + dt.type(eps))
