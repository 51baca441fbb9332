"""Soft TD(λ) targets in JAX; mirrors ``spec.reference.targets``."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_rewards(
    rewards: jax.Array,
    next_log_probs: jax.Array,
    terminated: jax.Array,
    alpha: jax.Array | float,
    gamma: float,
) -> jax.Array:
    """r̃_t = r_t − (1 − term_t)·γ·α·log π(a′|x_{t+1}); no entropy bonus after a termination."""
    not_term = 1.0 - terminated.astype(rewards.dtype)
    return rewards - not_term * gamma * alpha * next_log_probs


def soft_td_lambda(
    soft_rewards: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    lam: float,
) -> jax.Array:
    """λ-returns (eq. 5–6) by the backward pass, time-major (T, N).

    G_t = r̃_t + γ(1 − term_t)[λ·Ĝ_{t+1} + (1 − λ)·V_{t+1}], with Ĝ_{t+1} = V_{t+1} at a
    truncation or at the end of the rollout, else G_{t+1}.
    """
    dtype = soft_rewards.dtype
    not_term = 1.0 - terminated.astype(dtype)
    trunc = truncated.astype(dtype)

    def step(g_next, xs):
        r, v, nt, tr = xs
        g_hat = tr * v + (1.0 - tr) * g_next
        g = r + gamma * nt * (lam * g_hat + (1.0 - lam) * v)
        return g, g

    _, returns = jax.lax.scan(
        step, next_values[-1], (soft_rewards, next_values, not_term, trunc), reverse=True
    )
    return returns


def gae_advantages(
    soft_rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    lam: float,
) -> jax.Array:
    """GAE of the state-value network (``actor.gradient=ppo``), time-major (T, N):

        δ_t = r̃_t + γ(1 − term_t)·V(x_{t+1}) − V(x_t),
        A_t = δ_t + γλ(1 − term_t)(1 − trunc_t)·A_{t+1},   A_T = 0.
    """
    dtype = soft_rewards.dtype
    live = 1.0 - terminated.astype(dtype)
    chain = live * (1.0 - truncated.astype(dtype))

    def step(a_next, xs):
        r, v, vn, lv, ch = xs
        a = r + gamma * lv * vn - v + gamma * lam * ch * a_next
        return a, a

    _, adv = jax.lax.scan(step, jnp.zeros_like(soft_rewards[-1]),
                          (soft_rewards, values, next_values, live, chain), reverse=True)
    return adv
