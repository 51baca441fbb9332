"""Hypothesis strategies for the parity suite: shapes, values and the edge cases that matter.

Shapes come from small fixed menus (batch 1 included) so that eager JAX reuses its compiled
kernels across examples; values are drawn in float64 and cast to the tested dtype, and each
family mixes generic values with its edge cases (tanh tails ±20, targets on/outside the support
edges, two-bin supports, degenerate rollouts, zero-variance features, KL exactly at the bound,
multipliers from 1e-6 to 1e4).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spec.config import KL_MODES

BATCH_SHAPES = ((1,), (2, 3))
ACTION_DIMS = (1, 6)
POLICY_SHAPES = ((1, 1), (2, 3, 6))  # batch size 1 with one action dim; two leading dims
KL_SAMPLES = (1, 4)
NUM_BINS = (2, 51)
# (batch shape, num_bins) pairs: each distinct shape costs an XLA compilation, so the two-bin
# support is exercised at batch size 1 and the realistic support on a 2-D batch.
HIST_CASES = (((1,), 2), ((2, 3), 51))
KL_CASES = (((1, 1), 1), ((1, 1), 4), ((2, 3, 6), 4))
ROLLOUT_SHAPES = ((1, 1), (6, 3))


TINY = 1e-30


def _finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Finite floats in [lo, hi]; magnitudes below 1e-30 become 0. Products of such values
    underflow to subnormals, which XLA on CPU flushes to zero (FTZ) while numpy keeps them:
    a platform property, not a port defect, and no REPPO quantity lives there."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False).map(_flush)


def log_multipliers(lo: float, hi: float) -> st.SearchStrategy[float]:
    """log α / log β drawn for multipliers in [lo, hi], flushed like every drawn float: a log
    value such as 2e-311 (a subnormal) is 0 on XLA's CPU but not in numpy or torch, so the
    ports would start from different multipliers (seen in CI: "log beta moved" under
    kl_mode=none with log β = 2.2e-311)."""
    return _finite(math.log(lo), math.log(hi))


def _flush(v):
    if isinstance(v, np.ndarray):
        return np.where(np.abs(v) < TINY, 0.0, v)
    return 0.0 if abs(v) < TINY else v


def arrays(shape, lo: float, hi: float, edges=()) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays in [lo, hi] with the given edge values mixed in elementwise (tests cast
    them to the tested dtype once, and every implementation sees the cast array)."""
    # plain (reusable) element strategies let hypothesis fill large arrays cheaply
    elems = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if edges:
        elems = st.one_of(elems, st.sampled_from(tuple(float(e) for e in edges)))
    return hnp.arrays(np.float64, shape, elements=elems).map(_flush)


def log_uniform(lo_exp: float, hi_exp: float) -> st.SearchStrategy[float]:
    """10**U(lo, hi) plus both ends exactly (α, β from 1e-6 to 1e4)."""
    return st.one_of(st.sampled_from((10.0 ** lo_exp, 10.0 ** hi_exp, 1.0)),
                     st.floats(lo_exp, hi_exp).map(lambda e: float(10.0 ** e)))


batch_shapes = st.sampled_from(BATCH_SHAPES)
action_dims = st.sampled_from(ACTION_DIMS)
multipliers = log_uniform(-6.0, 4.0)


@st.composite
def policy_batch(draw, with_pre=True, with_noise=False):
    """(mean, std, pre_tanh | None, noise | None); pre-squash values reach ±20 (tanh tails)."""
    shape = draw(st.sampled_from(POLICY_SHAPES))
    mean = draw(arrays(shape, -5.0, 5.0, edges=(0.0,)))
    raw = draw(arrays(shape, -5.0, 2.0))
    std = np.exp(raw) + 0.1
    pre = draw(arrays(shape, -20.0, 20.0, edges=(-20.0, 20.0, 0.0))) if with_pre else None
    noise = None
    if with_noise:
        shape, k = draw(st.sampled_from(KL_CASES))
        mean, std = (np.broadcast_to(v.reshape(-1)[:1], shape).copy() if v.shape != shape
                     else v for v in (mean, std))
        noise = draw(arrays((k,) + shape, -4.0, 4.0, edges=(0.0,)))
    return mean, std, pre, noise


@st.composite
def support(draw, num_bins=None):
    """(v_min, v_max, num_bins, sigma): two-bin supports included, σ from 0.1 to 2 bin widths."""
    v_min = draw(st.sampled_from((-100.0, -10.0, -1.0, 0.0)) | _finite(-200.0, 50.0))
    width = draw(st.sampled_from((1.0, 20.0, 200.0)) | _finite(0.5, 400.0))
    n = num_bins if num_bins is not None else draw(st.sampled_from(NUM_BINS))
    v_max = v_min + width
    ratio = draw(st.sampled_from((0.75,)) | _finite(0.1, 2.0))
    return v_min, v_max, n, ratio * (v_max - v_min) / (n - 1)


@st.composite
def hl_targets(draw, shape, v_min, v_max, num_bins):
    """Targets inside, outside and exactly on the support edges and bin centres."""
    centres = np.linspace(v_min, v_max, num_bins)
    span = v_max - v_min
    edges = (v_min, v_max, float(centres[len(centres) // 2]), v_min - span, v_max + span)
    return draw(arrays(shape, v_min - 2 * span, v_max + 2 * span, edges=edges))


FLAG_PATTERNS = ("mixed", "all_terminal", "all_truncated", "both", "none")


@st.composite
def rollout(draw):
    """Time-major (T, N) rewards, next log-probs, next values and flags (bool)."""
    shape = draw(st.sampled_from(ROLLOUT_SHAPES))
    pattern = draw(st.sampled_from(FLAG_PATTERNS))
    rewards = draw(arrays(shape, -10.0, 10.0, edges=(0.0,)))
    next_lp = draw(arrays(shape, -30.0, 10.0))
    next_v = draw(arrays(shape, -100.0, 100.0))
    if pattern == "mixed":
        term = draw(hnp.arrays(bool, shape))
        trunc = draw(hnp.arrays(bool, shape))
    else:
        term = np.full(shape, pattern in ("all_terminal", "both"))
        trunc = np.full(shape, pattern in ("all_truncated", "both"))
    gamma = draw(st.sampled_from((0.0, 0.99, 0.999)) | _finite(0.0, 0.999))
    lam = draw(st.sampled_from((0.0, 0.95, 1.0)) | _finite(0.0, 1.0))
    return rewards, next_lp, next_v, term, trunc, gamma, lam


@st.composite
def actor_inputs(draw, dtype):
    """(q, log_probs, kl, α, β, kl_target, mode); some kl entries equal kl_target in ``dtype``."""
    shape = draw(batch_shapes)
    kl_target = draw(st.sampled_from((0.1, 0.7)) | _finite(1e-3, 1.0))
    q = draw(arrays(shape, -1e3, 1e3, edges=(0.0,)))
    lp = draw(arrays(shape, -30.0, 30.0))
    at_bound = float(np.asarray(kl_target, dtype))  # exactly the bound once cast to dtype
    kl = draw(arrays(shape, 0.0, 5.0 * kl_target, edges=(0.0, at_bound)))
    if draw(st.booleans()):
        kl.flat[0] = at_bound
    return q, lp, kl, draw(multipliers), draw(multipliers), kl_target, draw(st.sampled_from(KL_MODES))


@st.composite
def observation_batches(draw):
    """A list of (B, D) batches with some zero-variance features (a constant column)."""
    d = draw(st.sampled_from((1, 3, 5)))
    n_batches = draw(st.integers(1, 3))
    const_cols = draw(hnp.arrays(bool, (d,)))
    batches = []
    for _ in range(n_batches):
        b = draw(st.sampled_from((1, 2, 16)))
        loc = draw(_finite(-100.0, 100.0))
        x = draw(arrays((b, d), -10.0, 10.0)) + loc
        const = draw(_finite(-50.0, 50.0))
        x[:, const_cols] = const
        batches.append(x)
    return batches


def log_param(value: float) -> float:
    return math.log(value)
