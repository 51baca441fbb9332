"""Soft TD(λ) targets in PyTorch; mirrors ``spec.reference.targets``. Time-major (T, N, ...)."""

from __future__ import annotations

import torch


def soft_rewards(
    rewards: torch.Tensor,
    next_log_probs: torch.Tensor,
    terminated: torch.Tensor,
    alpha: torch.Tensor | float,
    gamma: float,
) -> torch.Tensor:
    """r̃_t = r_t − (1 − term_t)·γ·α·log π(a′|x_{t+1}); α is a constant (detached if a tensor)."""
    if not (rewards.shape == next_log_probs.shape == terminated.shape):
        raise ValueError(f"rewards {tuple(rewards.shape)}, next_log_probs "
                         f"{tuple(next_log_probs.shape)} and terminated {tuple(terminated.shape)} "
                         f"must have the same shape")
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.detach()
    not_term = 1.0 - terminated.to(rewards.dtype)
    return rewards - not_term * gamma * alpha * next_log_probs


def soft_td_lambda(
    soft_rewards: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Soft λ-returns by the backward pass over T (a Python loop: T is small; vectorised over N):

        G_t = r̃_t + γ (1 − term_t) [λ Ĝ_{t+1} + (1 − λ) V_{t+1}],
        Ĝ_{t+1} = V_{t+1} if truncated_t or t = T − 1, else G_{t+1}.

    Termination wins over truncation. Returns (T, N…).
    """
    r, v = soft_rewards, next_values
    if r.dim() < 1 or not (r.shape == v.shape == terminated.shape == truncated.shape):
        raise ValueError("soft_rewards, next_values, terminated and truncated must share one "
                         f"time-major shape (T, N); got {tuple(r.shape)}, {tuple(v.shape)}, "
                         f"{tuple(terminated.shape)}, {tuple(truncated.shape)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    not_term = 1.0 - terminated.to(r.dtype)
    trunc = truncated.to(torch.bool)
    out: list[torch.Tensor] = [None] * r.shape[0]  # type: ignore[list-item]
    g_next = v[-1]
    for t in range(r.shape[0] - 1, -1, -1):
        g_hat = v[t] if t == r.shape[0] - 1 else torch.where(trunc[t], v[t], g_next)
        g_next = r[t] + gamma * not_term[t] * (lam * g_hat + (1.0 - lam) * v[t])
        out[t] = g_next
    return torch.stack(out, dim=0)


def gae_advantages(
    soft_rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """GAE of the state-value network (``actor.gradient=ppo``), time-major (T, N…):

        δ_t = r̃_t + γ(1 − term_t)·V(x_{t+1}) − V(x_t),
        A_t = δ_t + γλ(1 − term_t)(1 − trunc_t)·A_{t+1},   A_T = 0.
    """
    r = soft_rewards
    if r.dim() < 1 or not (r.shape == values.shape == next_values.shape == terminated.shape
                           == truncated.shape):
        raise ValueError("soft_rewards, values, next_values, terminated and truncated must share "
                         f"one time-major shape (T, N); got {tuple(r.shape)}, "
                         f"{tuple(values.shape)}, {tuple(next_values.shape)}, "
                         f"{tuple(terminated.shape)}, {tuple(truncated.shape)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    live = 1.0 - terminated.to(r.dtype)
    chain = live * (1.0 - truncated.to(r.dtype))
    out: list[torch.Tensor] = [None] * r.shape[0]  # type: ignore[list-item]
    a = torch.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        a = r[t] + gamma * live[t] * next_values[t] - values[t] + gamma * lam * chain[t] * a
        out[t] = a
    return torch.stack(out, dim=0)
