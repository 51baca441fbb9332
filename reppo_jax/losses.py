"""REPPO losses in JAX; mirrors ``spec.reference.losses``.

α and β enter the actor loss as values (already exponentiated, no gradient); the multiplier
losses take their log-parameters and treat the entropy / KL statistics as constants.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reppo_jax.hlgauss import hlgauss_decode, hlgauss_loss, hlgauss_target


def mse_value_loss(q, targets):
    """Per-sample squared error (Q − G)² for the MSE-critic ablation (no ½ factor)."""
    return jnp.square(q - targets)


def value_loss(q_out, targets, kind: str, v_min: float, v_max: float, num_bins: int, sigma: float):
    """Per-sample critic regression loss: HL-Gauss cross-entropy, or squared error (MSE ablation)."""
    if kind == "hlgauss":
        return hlgauss_loss(q_out, hlgauss_target(targets, v_min, v_max, num_bins, sigma))
    return mse_value_loss(q_out[..., 0], targets)


def q_value(q_out, kind: str, v_min: float, v_max: float, num_bins: int):
    """Scalar Q from the head output (decoded histogram, or the scalar head)."""
    if kind == "hlgauss":
        return hlgauss_decode(q_out, v_min, v_max, num_bins)
    return q_out[..., 0]


def aux_loss(pred_next_emb, next_emb, pred_reward, rewards):
    """Per-sample self-predictive loss (eq. 17): mean squared embedding error + reward error."""
    return jnp.mean(jnp.square(pred_next_emb - next_emb), axis=-1) + jnp.square(pred_reward - rewards)


def critic_loss(q_out, targets, pred_next_emb, next_emb, pred_reward, rewards, *, kind, v_min,
                v_max, num_bins, sigma, aux_mult):
    """Eq. 7: mean value loss + aux_mult · mean auxiliary loss."""
    vl = jnp.mean(value_loss(q_out, targets, kind, v_min, v_max, num_bins, sigma))
    al = jnp.mean(aux_loss(pred_next_emb, next_emb, pred_reward, rewards))
    return vl + aux_mult * al, {"value_loss": vl, "aux_loss": al}


def _kl_switch(objective, kl, beta, violated, mode: str):
    """Eq. 13's per-state choice, shared by the continuous and the discrete actor loss:
    "clipped" β·kl where violated else the objective; "full" objective + β·kl; "none" objective."""
    if mode == "clipped":
        return jnp.where(violated, beta * kl, objective)
    if mode == "full":
        return objective + beta * kl
    return objective


def actor_loss(q_values, log_probs, kl, alpha, beta, kl_target: float, mode: str):
    """Eq. 13 with its per-state switch ("clipped"), or the "full"/"none" variants."""
    objective = alpha * log_probs - q_values
    violated = kl >= kl_target
    if mode not in ("clipped", "full", "none"):
        raise ValueError(f"unknown kl mode {mode!r}: expected clipped, full or none")
    per_state = _kl_switch(objective, kl, beta, violated, mode)
    info = {
        "kl_violation_frac": jnp.mean(violated.astype(q_values.dtype)),
        "kl_mean": jnp.mean(kl),
        "entropy_mean": -jnp.mean(log_probs),
        "q_mean": jnp.mean(q_values),
    }
    return jnp.mean(per_state), info


def alpha_loss(log_alpha, entropy, entropy_target: float):
    """Eq. 11: e^{log α}·mean(H − H_target), statistics held constant."""
    return jnp.exp(log_alpha) * jax.lax.stop_gradient(jnp.mean(entropy) - entropy_target)


def beta_loss(log_beta, kl, kl_target: float):
    """Eq. 12: −e^{log β}·mean(KL − ε_KL), statistics held constant."""
    return -jnp.exp(log_beta) * jax.lax.stop_gradient(jnp.mean(kl) - kl_target)
