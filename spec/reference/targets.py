"""Soft TD(λ) targets (paper §3.1, eq. 4–6; Algorithm 1 step 2; docs/design.md).

Arrays are time-major (T, N, ...); ``terminated``/``truncated`` are bool or 0/1.
"""

from __future__ import annotations

import numpy as np

from spec.reference._common import as_float, float_dtype


def soft_rewards(
    rewards: np.ndarray,
    next_log_probs: np.ndarray,
    terminated: np.ndarray,
    alpha: float,
    gamma: float,
) -> np.ndarray:
    """r̃_t = r_t − (1 − term_t)·γ·α·log π_old(a′_{t+1} | x_{t+1}) (eq. 5, Algorithm 1).

    a′ is the bootstrap action sampled from the behaviour policy at the true next observation.
    After a termination there is no next state, hence no entropy bonus (and no bootstrap).
    α is a positive value (already exponentiated) treated as a constant.
    """
    dt = float_dtype(rewards, next_log_probs)
    r, lp = as_float(rewards, dt), as_float(next_log_probs, dt)
    term = as_float(terminated, dt)
    if not (r.shape == lp.shape == term.shape):
        raise ValueError(
            f"rewards {r.shape}, next_log_probs {lp.shape} and terminated {term.shape} "
            f"must have the same shape"
        )
    return r - (1 - term) * dt.type(gamma) * dt.type(alpha) * lp


def soft_td_lambda(
    soft_rewards: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Soft λ-returns G^λ (eq. 5–6) by the backward pass of Daley & Amato (2019).

    ``next_values[t]`` = Q(x_{t+1}, a′_{t+1}) at the TRUE next observation (for a truncated step,
    the final observation the env adapter kept before auto-reset). For t = T−1 … 0:

        G_t = r̃_t + γ (1 − term_t) [λ Ĝ_{t+1} + (1 − λ) V_{t+1}],
        Ĝ_{t+1} = V_{t+1} if truncated_t or t = T − 1, else G_{t+1}.

    Termination wins when a step is both terminated and truncated (no bootstrap). This equals
    the λ-weighted average of n-step returns (eq. 6) over the remaining episode segment inside
    the rollout, the leftover weight λ^{L−1} going to the longest return. Returns shape (T, N…).
    """
    dt = float_dtype(soft_rewards, next_values)
    r, v = as_float(soft_rewards, dt), as_float(next_values, dt)
    term, trunc = as_float(terminated, dt), np.asarray(truncated).astype(bool)
    if r.ndim < 1 or not (r.shape == v.shape == term.shape == trunc.shape):
        raise ValueError(
            "soft_rewards, next_values, terminated and truncated must share one time-major "
            f"shape (T, N); got {r.shape}, {v.shape}, {term.shape}, {trunc.shape}"
        )
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    g, lam_ = dt.type(gamma), dt.type(lam)
    out = np.empty_like(r)
    T = r.shape[0]
    for t in range(T - 1, -1, -1):
        g_next = v[t] if t == T - 1 else np.where(trunc[t], v[t], out[t + 1])
        out[t] = r[t] + g * (1 - term[t]) * (lam_ * g_next + (1 - lam_) * v[t])
    return out


def gae_advantages(
    soft_rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016) of the state-value network, for
    ``actor.gradient=ppo``; time-major (T, N…), on the same soft rewards as the critic's targets.

    ``values[t]`` = V(x_t); ``next_values[t]`` = V(x_{t+1}) at the TRUE next observation (the
    final observation of a truncated episode, kept by the env adapter). For t = T−1 … 0:

        δ_t = r̃_t + γ (1 − term_t) V(x_{t+1}) − V(x_t),
        A_t = δ_t + γ λ (1 − term_t)(1 − trunc_t) A_{t+1},   A_T = 0,

    i.e. termination and truncation are handled as in :func:`soft_td_lambda`: a termination
    neither bootstraps nor continues the chain, a truncation bootstraps from the final observation
    and cuts the chain, and the rollout's end bootstraps from V(x_T). A_t + V(x_t) is then the
    λ-return of V (the same recursion as :func:`soft_td_lambda` with V in place of Q), the target
    the value network is regressed on.
    """
    dt = float_dtype(soft_rewards, values, next_values)
    r, v, v_next = (as_float(a, dt) for a in (soft_rewards, values, next_values))
    term, trunc = as_float(terminated, dt), as_float(truncated, dt)
    if r.ndim < 1 or not (r.shape == v.shape == v_next.shape == term.shape == trunc.shape):
        raise ValueError(
            "soft_rewards, values, next_values, terminated and truncated must share one "
            f"time-major shape (T, N); got {r.shape}, {v.shape}, {v_next.shape}, {term.shape}, "
            f"{trunc.shape}"
        )
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    g, lam_ = dt.type(gamma), dt.type(lam)
    out = np.empty_like(r)
    carry = np.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        delta = r[t] + g * (1 - term[t]) * v_next[t] - v[t]
        carry = delta + g * lam_ * (1 - term[t]) * (1 - trunc[t]) * carry
        out[t] = carry
    return out
