"""D-REPPO loss primitives (paper Appendix C, eq. 14–16) in PyTorch; mirrors
``spec.reference.discrete``.

Only the primitives are ported (no discrete trainer in this backend): they keep the parity suite
honest about the closed-form losses. The critic's values Q(x, ·) enter the actor loss as a
constant (detached), α and β as plain values.
"""

from __future__ import annotations

import math

import torch

from reppo_torch.losses import kl_stats, kl_switch


def _const(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def categorical_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log π(a_j|x) = log_softmax(logits)_j over the last (action) axis."""
    if logits.dim() == 0:
        raise ValueError("logits need a trailing action dim")
    return torch.log_softmax(logits, dim=-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H[π] = −Σ_j π_j log π_j (exact), shape (...,)."""
    lp = categorical_log_probs(logits)
    return -torch.sum(torch.exp(lp) * lp, dim=-1)


def categorical_kl(old_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Exact forward KL(π_old ‖ π) = Σ_j π_old,j (log π_old,j − log π_j), shape (...,)."""
    if old_logits.shape != logits.shape:
        raise ValueError(f"old_logits {tuple(old_logits.shape)} and logits "
                         f"{tuple(logits.shape)} differ")
    lo, ln = categorical_log_probs(old_logits), categorical_log_probs(logits)
    return torch.sum(torch.exp(lo) * (lo - ln), dim=-1)


def discrete_actor_loss(
    q_values_all: torch.Tensor,
    logits: torch.Tensor,
    old_logits: torch.Tensor,
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
    kl_target: float,
    mode: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 14–16 per state, batch mean: "clipped" ℓ_i = Σ_j π_j(α log π_j − Q_ij) if
    kl_i < kl_target else β·kl_i; "full" adds β·kl_i always; "none" drops it."""
    if q_values_all.shape != logits.shape or q_values_all.dim() == 0:
        raise ValueError(f"q_values_all {tuple(q_values_all.shape)} and logits "
                         f"{tuple(logits.shape)} must be (..., |A|)")
    q = q_values_all.detach()
    a, b = _const(alpha), _const(beta)
    lp = categorical_log_probs(logits)
    p = torch.exp(lp)
    kl = categorical_kl(old_logits, logits)
    objective = torch.sum(p * (a * lp - q), dim=-1)
    violated = kl >= kl_target
    per_state = kl_switch(objective, kl, b, violated, mode)
    with torch.no_grad():
        info = {
            **kl_stats(kl, violated),
            "entropy_mean": torch.mean(-torch.sum(p * lp, dim=-1)),
            "q_mean": torch.mean(torch.sum(p * q, dim=-1)),
        }
    return torch.mean(per_state), info


def discrete_soft_value(q_values_all: torch.Tensor, logits: torch.Tensor,
                        alpha: torch.Tensor | float) -> torch.Tensor:
    """Closed-form soft value V(x) = Σ_j π_j (Q_j − α log π_j), shape (...,)."""
    if q_values_all.shape != logits.shape or q_values_all.dim() == 0:
        raise ValueError(f"q_values_all {tuple(q_values_all.shape)} and logits "
                         f"{tuple(logits.shape)} must be (..., |A|)")
    lp = categorical_log_probs(logits)
    return torch.sum(torch.exp(lp) * (q_values_all - alpha * lp), dim=-1)


def discrete_entropy_target(num_actions: int, mult: float = 0.5) -> float:
    """Entropy target ε_H = mult · log|A| for a categorical policy (see the reference)."""
    if int(num_actions) != num_actions or num_actions < 2:
        raise ValueError(f"num_actions must be an integer >= 2, got {num_actions!r}")
    if not 0.0 <= mult <= 1.0:
        raise ValueError(f"discrete entropy target mult must lie in [0, 1], got {mult}")
    return float(mult) * math.log(int(num_actions))
