"""Discrete REPPO (D-REPPO, paper Appendix C, eq. 14–16) with a categorical policy.

Expectations over actions are computed in closed form (Christodoulou 2019). Eq. 14/15 as printed
carry sign typos (minimising them would *lower* entropy and *raise* KL); the functions below use
the signs of the continuous objective (eq. 13): ℓ = Σ_j π_j (α log π_j − Q_j), KL term +β·KL.
"""

from __future__ import annotations

import math

import numpy as np

from spec.reference._common import as_float, float_dtype, log_softmax
from spec.reference.losses import kl_stats, kl_switch


def categorical_log_probs(logits: np.ndarray) -> np.ndarray:
    """log π(a_j|x) = log_softmax(logits)_j over the last (action) axis."""
    dt = float_dtype(logits)
    logits = as_float(logits, dt)
    if logits.ndim == 0:
        raise ValueError("logits need a trailing action dim")
    return log_softmax(logits)


def categorical_entropy(logits: np.ndarray) -> np.ndarray:
    """H[π] = −Σ_j π_j log π_j (exact), shape (...,)."""
    lp = categorical_log_probs(logits)
    return -np.sum(np.exp(lp) * lp, axis=-1)


def categorical_kl(old_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Exact forward KL(π_old ‖ π) = Σ_j π_old,j (log π_old,j − log π_j) (eq. 15), shape (...,)."""
    dt = float_dtype(old_logits, logits)
    old_logits, logits = as_float(old_logits, dt), as_float(logits, dt)
    if old_logits.shape != logits.shape:
        raise ValueError(f"old_logits {old_logits.shape} and logits {logits.shape} differ")
    lo, ln = categorical_log_probs(old_logits), categorical_log_probs(logits)
    return np.sum(np.exp(lo) * (lo - ln), axis=-1)


def discrete_actor_loss(
    q_values_all: np.ndarray,
    logits: np.ndarray,
    old_logits: np.ndarray,
    alpha: float,
    beta: float,
    kl_target: float,
    mode: str,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Eq. 14–16 per state, batch mean. q_values_all (B, |A|) = Q(x_i, a_j) (a constant),
    kl_i the exact KL(π_old‖π):

    - "clipped": ℓ_i = Σ_j π_j(α log π_j − Q_ij) if kl_i < kl_target else β·kl_i
    - "full":    ℓ_i = Σ_j π_j(α log π_j − Q_ij) + β·kl_i
    - "none":    ℓ_i = Σ_j π_j(α log π_j − Q_ij)

    Info keys as ``losses.actor_loss`` (the KL statistics of ``losses.kl_stats``, entropy_mean
    exact, q_mean = mean Σ_j π_j Q_ij).
    """
    dt = float_dtype(q_values_all, logits, old_logits)
    q = as_float(q_values_all, dt)
    logits = as_float(logits, dt)
    if q.shape != logits.shape or q.ndim == 0:
        raise ValueError(f"q_values_all {q.shape} and logits {logits.shape} must be (..., |A|)")
    lp = categorical_log_probs(logits)
    p = np.exp(lp)
    kl = categorical_kl(old_logits, logits)
    a, b = dt.type(alpha), dt.type(beta)
    objective = np.sum(p * (a * lp - q), axis=-1)
    violated = kl >= dt.type(kl_target)
    per_state = kl_switch(objective, kl, b, violated, mode)
    info = {
        **kl_stats(kl, violated),
        "entropy_mean": np.mean(-np.sum(p * lp, axis=-1)).astype(dt),
        "q_mean": np.mean(np.sum(p * q, axis=-1)).astype(dt),
    }
    return np.mean(per_state).astype(dt), info


def discrete_soft_value(q_values_all: np.ndarray, logits: np.ndarray, alpha: float) -> np.ndarray:
    """Closed-form soft state value V(x) = Σ_j π_j (Q_j − α log π_j).

    For TD(λ) targets use α = 0 (V_{t+1} = Σ_j π_j Q_j) together with the soft reward
    r̃_t = r_t + (1 − term_t)·γ·α·H[π(·|x_{t+1})], i.e. ``targets.soft_rewards`` with
    next_log_probs = −H: the entropy bonus of x_{t+1} then enters both branches of the λ-return.
    Plain rewards with the soft V would weight it by (1 − λ) only (exact for λ = 0)."""
    dt = float_dtype(q_values_all, logits)
    q, logits = as_float(q_values_all, dt), as_float(logits, dt)
    if q.shape != logits.shape or q.ndim == 0:
        raise ValueError(f"q_values_all {q.shape} and logits {logits.shape} must be (..., |A|)")
    lp = categorical_log_probs(logits)
    return np.sum(np.exp(lp) * (q - dt.type(alpha) * lp), axis=-1)


def discrete_entropy_target(num_actions: int, mult: float = 0.5) -> float:
    """Entropy target for a categorical policy: ε_H = mult · log|A|, mult ∈ [0, 1].

    The continuous rule −mult·|A| is negative and can never bind for a categorical (H ≥ 0), so α
    would decay to 0. log|A| is the maximum (uniform) entropy; mult = 0.5 asks for half of it.
    """
    if int(num_actions) != num_actions or num_actions < 2:
        raise ValueError(f"num_actions must be an integer >= 2, got {num_actions!r}")
    if not 0.0 <= mult <= 1.0:
        raise ValueError(f"discrete entropy target mult must lie in [0, 1], got {mult}")
    return float(mult) * math.log(int(num_actions))
