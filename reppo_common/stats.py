"""Statistics for learning curves and benchmark scores (numpy + stdlib only).

Used by ``reppo plot`` and ``reppo aggregate`` and importable by anyone analysing reppo
runs without a deep-learning framework installed.

Aggregates follow the conventions of Agarwal et al. (2021, "Deep RL at the edge of the
statistical precipice", the ``rliable`` library), so numbers are comparable with papers that
use it:

* ``mean``   -- mean over tasks of the per-task mean over runs,
* ``median`` -- median over tasks of the per-task mean over runs,
* ``iqm``    -- interquartile mean of *all* run scores pooled across tasks: the lowest and the
  highest ``floor(n / 4)`` of the ``n`` scores are dropped and the rest averaged (what
  ``scipy.stats.trim_mean(x, 0.25)`` computes).

Scores are given per task as a sequence of 1-D arrays (one score per run; tasks may have
different numbers of runs) or as a 2-D array ``(runs, tasks)``. Confidence intervals over
runs use the *stratified* percentile bootstrap: each replicate resamples runs with replacement
independently within every task, so every task keeps its weight.

"Reliable success" (Chan et al., 2020, as used by the REPPO paper, Fig. 7): a run is reliably
successful at time t once its score has reached the threshold tau and has not dropped below it
since it first reached it. See :func:`reliable_success`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "Interval",
    "AGGREGATES",
    "as_task_list",
    "aggregate_mean",
    "aggregate_median",
    "aggregate_iqm",
    "iqm",
    "stratified_bootstrap_ci",
    "student_t_ppf",
    "t_interval",
    "bootstrap_mean_interval",
    "common_grid",
    "interpolate_curves",
    "reliable_success",
    "reliable_success_fraction",
    "normalize_scores",
    "first_reach",
    "value_at_or_before",
    "censored_median",
]



@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval ``[lo, hi]``."""

    point: float
    lo: float
    hi: float

    def contains(self, x: float) -> bool:
        """True if ``lo <= x <= hi``."""
        return self.lo <= x <= self.hi


# --------------------------------------------------------------------------------------------
# Aggregates over tasks and runs
# --------------------------------------------------------------------------------------------


def as_task_list(scores: Sequence[Sequence[float]] | np.ndarray) -> list[np.ndarray]:
    """Normalise the score container to a list of 1-D float arrays, one per task.

    A 2-D array is read as ``(runs, tasks)`` (rliable's layout). Empty tasks and non-finite
    scores are rejected with ValueError because every aggregate would silently change meaning.
    """
    if isinstance(scores, np.ndarray) and scores.ndim == 2:
        tasks = [np.asarray(scores[:, j], dtype=float) for j in range(scores.shape[1])]
    elif isinstance(scores, np.ndarray) and scores.ndim == 1:
        tasks = [np.asarray(scores, dtype=float)]
    else:
        tasks = [np.asarray(t, dtype=float).reshape(-1) for t in scores]
    if not tasks:
        raise ValueError("no tasks given")
    for i, t in enumerate(tasks):
        if t.size == 0:
            raise ValueError(f"task {i} has no scores")
        if not np.all(np.isfinite(t)):
            raise ValueError(f"task {i} has non-finite scores")
    return tasks


def _trimmed_mean_sorted(x: np.ndarray) -> np.ndarray:
    """IQM along the last axis of an already sorted array."""
    n = x.shape[-1]
    k = n // 4
    return x[..., k:n - k].mean(axis=-1)


# Vectorised statistics: take a list of arrays shaped (..., n_task) and return shape (...).
def _stat_mean(tasks: list[np.ndarray]) -> np.ndarray:
    return np.mean(np.stack([t.mean(axis=-1) for t in tasks], axis=-1), axis=-1)


def _stat_median(tasks: list[np.ndarray]) -> np.ndarray:
    return np.median(np.stack([t.mean(axis=-1) for t in tasks], axis=-1), axis=-1)


def _stat_iqm(tasks: list[np.ndarray]) -> np.ndarray:
    return _trimmed_mean_sorted(np.sort(np.concatenate(tasks, axis=-1), axis=-1))


def _point(stat: Callable[[list[np.ndarray]], np.ndarray], scores) -> float:
    return float(stat([t[None, :] for t in as_task_list(scores)])[0])


def aggregate_mean(scores: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean over tasks of the per-task mean score."""
    return _point(_stat_mean, scores)


def aggregate_median(scores: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Median over tasks of the per-task mean score (with one task: that task's mean)."""
    return _point(_stat_median, scores)


def aggregate_iqm(scores: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Interquartile mean of all run scores pooled across tasks."""
    return _point(_stat_iqm, scores)


def iqm(values: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean of a flat set of values (drops floor(n/4) at each end)."""
    x = np.sort(np.asarray(values, dtype=float).reshape(-1))
    if x.size == 0:
        raise ValueError("iqm of an empty set")
    return float(_trimmed_mean_sorted(x))


AGGREGATES: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {
    "mean": _stat_mean,
    "median": _stat_median,
    "iqm": _stat_iqm,
}
"""Name -> vectorised statistic (list of ``(..., n_task)`` arrays -> ``(...)``)."""


def stratified_bootstrap_ci(
    scores: Sequence[Sequence[float]] | np.ndarray,
    statistic: str | Callable[[list[np.ndarray]], np.ndarray] = "iqm",
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Point estimate and stratified percentile-bootstrap CI of an aggregate.

    ``statistic`` is a name from :data:`AGGREGATES` or a vectorised callable with the same
    signature. Each of the ``reps`` replicates draws, for every task separately, as many runs
    as the task has, with replacement. Deterministic for a given ``seed``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    stat = AGGREGATES[statistic] if isinstance(statistic, str) else statistic
    tasks = as_task_list(scores)
    rng = np.random.default_rng(seed)
    resampled = [t[rng.integers(0, t.size, size=(reps, t.size))] for t in tasks]
    boot = np.asarray(stat(resampled), dtype=float)
    point = float(stat([t[None, :] for t in tasks])[0])
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(boot, [a, 1.0 - a])
    # Percentile intervals of skewed statistics can exclude the point estimate by float
    # rounding when all replicates coincide; widen to include it.
    return Interval(point, float(min(lo, point)), float(max(hi, point)))


# --------------------------------------------------------------------------------------------
# Intervals over seeds (per point of a learning curve)
# --------------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) \
        + b * math.log1p(-x)
    front = math.exp(ln)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t distribution (bisection on the exact CDF; |error| < 1e-10)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -student_t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """Mean and Student-t CI over axis 0 of ``values`` (runs x points), ignoring NaNs.

    Columns with one finite value get a zero-width interval; columns with none give NaN.
    Returns ``(mean, lo, hi)``, each of shape ``values.shape[1:]``.
    """
    v = np.asarray(values, dtype=float)
    n = np.sum(np.isfinite(v), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(v, axis=0) / n
        var = np.nansum((v - mean) ** 2, axis=0) / np.maximum(n - 1, 1)
    half = np.zeros_like(mean)
    for k in np.unique(n):
        if k >= 2:
            tq = student_t_ppf(0.5 + confidence / 2.0, float(k - 1))
            sel = n == k
            half[sel] = tq * np.sqrt(var[sel] / k)
    mean = np.where(n > 0, mean, np.nan)
    return mean, mean - half, mean + half


def bootstrap_mean_interval(values: np.ndarray, confidence: float = 0.95, reps: int = 2000,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile-bootstrap CI of the mean over axis 0 (runs x points), NaNs ignored."""
    v = np.asarray(values, dtype=float)
    v2 = v.reshape(v.shape[0], -1)
    rng = np.random.default_rng(seed)
    mean = np.full(v2.shape[1], np.nan)
    lo, hi = mean.copy(), mean.copy()
    a = (1.0 - confidence) / 2.0
    for j in range(v2.shape[1]):
        col = v2[:, j][np.isfinite(v2[:, j])]
        if col.size == 0:
            continue
        mean[j] = col.mean()
        boot = col[rng.integers(0, col.size, size=(reps, col.size))].mean(axis=1)
        lo[j], hi[j] = np.quantile(boot, [a, 1.0 - a])
    shape = v.shape[1:]
    return mean.reshape(shape), lo.reshape(shape), hi.reshape(shape)


# --------------------------------------------------------------------------------------------
# Ragged curves
# --------------------------------------------------------------------------------------------


def common_grid(xs: Sequence[np.ndarray], min_runs: int | None = None) -> np.ndarray:
    """Sorted union of all runs' x values at which at least ``min_runs`` runs (default: all)
    have data, i.e. lie within ``[first x, last x]`` of that many runs."""
    if not xs:
        raise ValueError("no curves")
    need = len(xs) if min_runs is None else int(min_runs)
    if not 1 <= need <= len(xs):
        raise ValueError(f"min_runs must be in [1, {len(xs)}], got {min_runs}")
    grid = np.unique(np.concatenate([np.asarray(x, dtype=float) for x in xs]))
    cover = np.zeros(grid.shape, dtype=int)
    for x in xs:
        x = np.asarray(x, dtype=float)
        cover += (grid >= x.min()) & (grid <= x.max())
    return grid[cover >= need]


def interpolate_curves(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                       grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of every run onto ``grid`` -> ``(runs, len(grid))``.

    No extrapolation: grid points outside a run's own x range are NaN. x values must be
    non-decreasing within a run (duplicates keep the last y, as a resumed run re-evaluates).
    """
    out = np.full((len(xs), len(grid)), np.nan)
    for i, (x, y) in enumerate(zip(xs, ys)):
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.size == 0:
            continue
        if np.any(np.diff(x) < 0):
            raise ValueError(f"run {i}: x values are not sorted")
        keep = np.append(np.diff(x) > 0, True)  # last of each duplicate group
        x, y = x[keep], y[keep]
        inside = (grid >= x[0]) & (grid <= x[-1])
        out[i, inside] = np.interp(grid[inside], x, y)
    return out


# --------------------------------------------------------------------------------------------
# Reliable success
# --------------------------------------------------------------------------------------------


def reliable_success(y: Sequence[float] | np.ndarray, tau: float,
                     mode: str = "prefix") -> np.ndarray:
    """Per time step, whether one run is *reliably successful* (REPPO paper, Sec. 5, Fig. 7).

    A run first reaches ``tau`` at index f (the first ``y >= tau``). With ``mode="prefix"``
    (default, causal: what was known at time t) the run counts at t if ``f <= t`` and
    ``y[f..t] >= tau``; a later drop below tau ends its success for good, even if it recovers.
    With ``mode="whole"`` it counts at every ``t >= f`` provided it never drops below tau
    anywhere after f in the whole run (monotone in t). Both agree at the last step. NaN
    (no data) counts as below tau.
    """
    v = np.asarray(y, dtype=float)
    f = first_reach(v, tau)
    if f is None:
        return np.zeros(v.shape, dtype=bool)
    above = np.where(np.isfinite(v), v >= tau, False)
    t = np.arange(v.size)
    if mode == "prefix":
        # cumulative AND of `above` from f onwards
        ok = np.cumprod(above[f:]).astype(bool)
        out = np.zeros(v.shape, dtype=bool)
        out[f:] = ok
        return out
    if mode == "whole":
        return (t >= f) & bool(above[f:].all())
    raise ValueError(f"mode must be 'prefix' or 'whole', got {mode!r}")


def reliable_success_fraction(curves: np.ndarray, tau: float, mode: str = "prefix") -> np.ndarray:
    """Fraction of runs (rows of ``curves``, on a common grid) reliably successful at each
    column; see :func:`reliable_success`."""
    c = np.atleast_2d(np.asarray(curves, dtype=float))
    if c.shape[0] == 0:
        raise ValueError("no runs")
    return np.mean([reliable_success(row, tau, mode) for row in c], axis=0)


def normalize_scores(x: np.ndarray | float, lo: float, hi: float) -> np.ndarray:
    """``(x - lo) / (hi - lo)``: 0 at the task's minimum (or random) score, 1 at its maximum."""
    if not hi > lo:
        raise ValueError(f"normalisation needs hi > lo, got lo={lo}, hi={hi}")
    return (np.asarray(x, dtype=float) - lo) / (hi - lo)


# --------------------------------------------------------------------------------------------
# Sample efficiency of one curve
# --------------------------------------------------------------------------------------------


def first_reach(values: Sequence[float] | np.ndarray, level: float) -> int | None:
    """Index of the first point of a curve whose value is ``>= level`` (NaN never reaches), or
    None if no point does; the caller reads the env steps or wall-clock at that index."""
    v = np.asarray(values, dtype=float)
    above = np.where(np.isfinite(v), v >= level, False)
    return int(np.argmax(above)) if above.any() else None


def value_at_or_before(steps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray,
                       at: float) -> float:
    """The value of the last point with ``step <= at`` (what the run had measured by then;
    nothing is interpolated), NaN if the curve's first point comes after ``at``. ``steps`` must
    be sorted."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"steps {x.shape} and values {y.shape} differ in shape")
    i = int(np.searchsorted(x, at, side="right")) - 1
    return float(y[i]) if i >= 0 else float("nan")


def censored_median(values: Sequence[float | None]) -> float | None:
    """Median of per-run times where None means "never" (not reached within the run: a time
    larger than any measured one). None if the median falls on, or averages with, a never —
    i.e. if at least half the runs (the upper middle one for an even count) never reached it."""
    if not len(values):
        raise ValueError("median of no values")
    x = np.sort(np.array([np.inf if v is None else float(v) for v in values]))
    n = x.size
    m = x[n // 2] if n % 2 else 0.5 * (x[n // 2 - 1] + x[n // 2])
    return None if not np.isfinite(m) else float(m)
