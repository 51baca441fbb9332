"""D-REPPO primitives (paper Appendix C, eq. 14–16) in JAX; mirrors ``spec.reference.discrete``.

A categorical policy lets every expectation over actions be computed exactly: the policy value
Σ_j π_j Q_j, the entropy and the KL to the behaviour policy. There is no sampling and no
reparameterisation in the actor loss (Christodoulou 2019). The signs are those of the continuous
objective (eq. 13); eq. 14/15 as printed carry sign typos, see the reference module.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from reppo_jax.losses import kl_stats, kl_switch


def categorical_log_probs(logits: jax.Array) -> jax.Array:
    """log π(a_j|x) = log_softmax(logits)_j over the last (action) axis."""
    if logits.ndim == 0:
        raise ValueError("logits need a trailing action dim")
    return jax.nn.log_softmax(logits, axis=-1)


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """H[π] = −Σ_j π_j log π_j (exact), shape (...,)."""
    lp = categorical_log_probs(logits)
    return -jnp.sum(jnp.exp(lp) * lp, axis=-1)


def categorical_kl(old_logits: jax.Array, logits: jax.Array) -> jax.Array:
    """Exact forward KL(π_old ‖ π) = Σ_j π_old,j (log π_old,j − log π_j) (eq. 15), shape (...,)."""
    if old_logits.shape != logits.shape:
        raise ValueError(f"old_logits {old_logits.shape} and logits {logits.shape} differ")
    lo, ln = categorical_log_probs(old_logits), categorical_log_probs(logits)
    return jnp.sum(jnp.exp(lo) * (lo - ln), axis=-1)


def discrete_actor_loss(q_values_all: jax.Array, logits: jax.Array, old_logits: jax.Array,
                        alpha, beta, kl_target: float, mode: str
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 14–16 per state, batch mean; ``q_values_all`` (B, |A|) is a constant (no gradient
    flows into the critic), ``kl_i`` the exact KL(π_old‖π):

    - "clipped": ℓ_i = Σ_j π_j(α log π_j − Q_ij) if kl_i < kl_target else β·kl_i
    - "full":    ℓ_i = Σ_j π_j(α log π_j − Q_ij) + β·kl_i
    - "none":    ℓ_i = Σ_j π_j(α log π_j − Q_ij)

    Returns (loss, info) with info keys kl_violation_frac, kl_mean, kl_max, entropy_mean (exact)
    and q_mean (mean Σ_j π_j Q_ij), as the continuous ``losses.actor_loss``.
    """
    if q_values_all.shape != logits.shape or q_values_all.ndim == 0:
        raise ValueError(f"q_values_all {q_values_all.shape} and logits {logits.shape} must be "
                         "(..., |A|)")
    q = jax.lax.stop_gradient(q_values_all)
    lp = categorical_log_probs(logits)
    p = jnp.exp(lp)
    kl = categorical_kl(old_logits, logits)
    objective = jnp.sum(p * (alpha * lp - q), axis=-1)
    violated = kl >= kl_target
    per_state = kl_switch(objective, kl, beta, violated, mode)
    info = {
        **kl_stats(kl, violated),
        "entropy_mean": jnp.mean(-jnp.sum(p * lp, axis=-1)),
        "q_mean": jnp.mean(jnp.sum(p * q, axis=-1)),
    }
    return jnp.mean(per_state), info


def discrete_soft_value(q_values_all: jax.Array, logits: jax.Array, alpha) -> jax.Array:
    """Closed-form soft state value V(x) = Σ_j π_j (Q_j − α log π_j), shape (...,).

    With α = 0 this is the expected next value Σ_j π_j Q_j used as the TD(λ) bootstrap; the
    entropy bonus then enters through the soft reward r̃ = r + γ·α·H(x′) (see
    ``reppo_jax.discrete.agent``), so both branches of the λ-return carry it.
    """
    if q_values_all.shape != logits.shape or q_values_all.ndim == 0:
        raise ValueError(f"q_values_all {q_values_all.shape} and logits {logits.shape} must be "
                         "(..., |A|)")
    lp = categorical_log_probs(logits)
    return jnp.sum(jnp.exp(lp) * (q_values_all - alpha * lp), axis=-1)


def discrete_entropy_target(num_actions: int, mult: float = 0.5) -> float:
    """Entropy target for a categorical policy: ε_H = mult · log|A|, mult ∈ [0, 1].

    The continuous rule −mult·|A| is negative and never binds for a categorical (H ≥ 0), so α
    would decay to 0; log|A| is the maximum (uniform) entropy, and mult = 0.5 asks for half of it.
    A Python float (static under jit), as in the reference.
    """
    if int(num_actions) != num_actions or num_actions < 2:
        raise ValueError(f"num_actions must be an integer >= 2, got {num_actions!r}")
    if not 0.0 <= mult <= 1.0:
        raise ValueError(f"discrete entropy target mult must lie in [0, 1], got {mult}")
    return float(mult) * math.log(int(num_actions))


def sample_actions(key: jax.Array, logits: jax.Array) -> jax.Array:
    """a ~ Categorical(softmax(logits)) per row, int32 (the rollout's behaviour action)."""
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def greedy_actions(logits: jax.Array) -> jax.Array:
    """The evaluation action argmax_j π_j (mode of the policy), int32."""
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
