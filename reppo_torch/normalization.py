"""Running observation statistics (Chan et al. parallel update) in PyTorch; mirrors
``spec.reference.normalization``: mean/var in the observation dtype, count a float64 scalar."""

from __future__ import annotations

from typing import NamedTuple

import torch

COUNT_INIT = 1e-4
"""Initial pseudo-count (prior mean 0, var 1 with negligible weight), as the reference."""
NORM_EPS = 1e-2


class RunningStats(NamedTuple):
    """``mean``/``var`` (ddof 0) of the feature shape; ``count`` a 0-dim float64 tensor."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor


def running_stats_init(
    shape: tuple[int, ...] | int, dtype: torch.dtype = torch.float64, device=None
) -> RunningStats:
    """Mean 0, variance 1, count ``COUNT_INIT``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not dtype.is_floating_point:
        raise ValueError(f"running stats dtype must be floating, got {dtype}")
    return RunningStats(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.ones(shape, dtype=dtype, device=device),
        torch.tensor(COUNT_INIT, dtype=torch.float64, device=device),
    )


def running_stats_update(stats: RunningStats, batch: torch.Tensor) -> RunningStats:
    """Merge a batch (B, *shape): δ = x̄_B − μ, n' = n + B, μ' = μ + δ·B/n',
    σ'² = (n·σ² + B·σ_B² + δ²·n·B/n') / n'. Scalar weights are formed in float64 and cast."""
    dt = stats.mean.dtype
    if batch.dim() != stats.mean.dim() + 1 or tuple(batch.shape[1:]) != tuple(stats.mean.shape):
        raise ValueError(f"batch must have shape (B, *{tuple(stats.mean.shape)}), "
                         f"got {tuple(batch.shape)}")
    b = batch.shape[0]
    if b == 0:
        return stats
    x = batch.to(dt)
    return running_stats_merge(stats, b, torch.mean(x, dim=0), torch.var(x, dim=0, correction=0))


def running_stats_merge(stats: RunningStats, b: int, b_mean: torch.Tensor,
                        b_var: torch.Tensor) -> RunningStats:
    """Merge a batch given by its size ``b``, mean and variance (ddof 0) — the formula of
    :func:`running_stats_update`, which calls it; ``reppo_torch.distributed`` merges the
    global batch's moments gathered from every rank with it."""
    dt = stats.mean.dtype
    b_mean, b_var = b_mean.to(dt), b_var.to(dt)
    n = stats.count.to(torch.float64)
    tot = n + b
    delta = b_mean - stats.mean
    mean = stats.mean + delta * (b / tot).to(dt)
    m2 = stats.var * n.to(dt) + b_var * float(b) + delta * delta * (n * b / tot).to(dt)
    return RunningStats(mean, m2 / tot.to(dt), tot)


def normalize(x: torch.Tensor, stats: RunningStats, eps: float = NORM_EPS) -> torch.Tensor:
    """(x − μ) / √(σ² + eps); a zero-variance feature maps to (x − μ)/√eps, never nan."""
    nd = stats.mean.dim()
    if x.dim() < nd or tuple(x.shape[x.dim() - nd:]) != tuple(stats.mean.shape):
        raise ValueError(f"x {tuple(x.shape)} must end with the stats shape "
                         f"{tuple(stats.mean.shape)}")
    dt = torch.promote_types(x.dtype, stats.mean.dtype)
    return (x.to(dt) - stats.mean.to(dt)) / torch.sqrt(stats.var.to(dt) + eps)
