"""REPPO losses in JAX; mirrors ``spec.reference.losses``.

α and β enter the actor loss as values (already exponentiated, no gradient); the multiplier
losses take their log-parameters and treat the entropy / KL statistics as constants.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reppo_jax.hlgauss import hlgauss_decode, hlgauss_loss, hlgauss_target
from spec.config import KL_MODES


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


def kl_switch(objective, kl, beta, violated, mode: str):
    """Eq. 13's per-state KL treatment for ``loss.kl_mode`` (one of ``spec.config.KL_MODES``),
    shared by every continuous and the discrete actor loss: "clipped" β·kl where violated else
    the objective; "full" objective + β·kl; "none" the objective alone. The mode is validated
    by the config; an unknown one here is a programming error."""
    if mode == "clipped":
        return jnp.where(violated, beta * kl, objective)
    if mode == "full":
        return objective + beta * kl
    if mode == "none":
        return objective
    raise ValueError(f"unknown kl mode {mode!r}: expected one of {KL_MODES}")


def kl_stats(kl, violated) -> dict[str, jax.Array]:
    """The KL statistics every actor loss reports (``spec.reference.losses.kl_stats``):
    kl_violation_frac, kl_mean and kl_max (the per-state tail the mean hides)."""
    if violated.shape != kl.shape:
        raise ValueError(f"violated {violated.shape} and kl {kl.shape} must have the same shape")
    return {"kl_violation_frac": jnp.mean(violated.astype(kl.dtype)), "kl_mean": jnp.mean(kl),
            "kl_max": jnp.max(kl)}


def _switched(objective, kl, beta, kl_target: float, mode: str):
    """Eq. 13's KL treatment shared by every continuous actor loss: batch mean of the switched
    per-state objective, and the KL statistics."""
    violated = kl >= kl_target
    per_state = kl_switch(objective, kl, beta, violated, mode)
    return jnp.mean(per_state), kl_stats(kl, violated)


def actor_loss(q_values, log_probs, kl, alpha, beta, kl_target: float, mode: str):
    """Eq. 13 with its per-state switch ("clipped"), or the "full"/"none" variants."""
    objective = alpha * log_probs - q_values
    loss, info = _switched(objective, kl, beta, kl_target, mode)
    info["entropy_mean"] = -jnp.mean(log_probs)
    info["q_mean"] = jnp.mean(q_values)
    return loss, info


def _leave_one_out_mean(q):
    """b_j = mean of the other samples' q over the leading axis; 0 for a single sample."""
    k = q.shape[0]
    if k == 1:
        return jnp.zeros_like(q)
    return (jnp.sum(q, axis=0, keepdims=True) - q) / (k - 1)


def score_actor_loss(q_values, log_probs, score_log_probs, kl, alpha, beta, kl_target: float,
                     mode: str):
    """``actor.gradient=score``: eq. 13 with −Q replaced by −logπ(a|x)·[Q − b]_sg, b the
    leave-one-out mean over the k samples (see ``spec.reference.losses.score_actor_loss``).
    ``q_values`` get no gradient; ``score_log_probs`` must be evaluated at the stop-gradient
    sample by the caller."""
    q = jax.lax.stop_gradient(q_values)
    advantage = q - _leave_one_out_mean(q)
    objective = jnp.mean(alpha * log_probs - advantage * score_log_probs, axis=0)
    loss, info = _switched(objective, kl, beta, kl_target, mode)
    info["entropy_mean"] = -jnp.mean(log_probs)
    info["q_mean"] = jnp.mean(q)
    return loss, info


ADVANTAGE_EPS = 1e-8


def ppo_actor_loss(log_probs, old_log_probs, advantages, entropy_log_probs, kl, alpha, beta,
                   kl_target: float, mode: str, clip_eps: float):
    """``actor.gradient=ppo``: eq. 13 with −Q replaced by PPO's clipped surrogate on the
    minibatch-normalised GAE advantages (see ``spec.reference.losses.ppo_actor_loss``); old
    log-probs and advantages get no gradient."""
    old = jax.lax.stop_gradient(old_log_probs)
    adv = jax.lax.stop_gradient(advantages)
    adv = (adv - jnp.mean(adv)) / (jnp.std(adv) + ADVANTAGE_EPS)
    ratio = jnp.exp(log_probs - old)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    objective = alpha * entropy_log_probs - surrogate
    loss, info = _switched(objective, kl, beta, kl_target, mode)
    info["entropy_mean"] = -jnp.mean(entropy_log_probs)
    info["clip_frac"] = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(ratio.dtype))
    info["ratio_mean"] = jnp.mean(ratio)
    return loss, info


def alpha_loss(log_alpha, entropy, entropy_target: float):
    """Eq. 11: e^{log α}·mean(H − H_target), statistics held constant."""
    return jnp.exp(log_alpha) * jax.lax.stop_gradient(jnp.mean(entropy) - entropy_target)


def beta_loss(log_beta, kl, kl_target: float):
    """Eq. 12: −e^{log β}·mean(KL − ε_KL), statistics held constant."""
    return -jnp.exp(log_beta) * jax.lax.stop_gradient(jnp.mean(kl) - kl_target)


def project_log_multiplier(log_value, log_floor: float | jax.Array):
    """``loss.alpha_min`` / ``loss.beta_min``: log m ← max(log m, log m_min) after each
    multiplier step (projected gradient descent on the Lagrange multiplier); −inf is the
    identity, a NaN stays NaN. ``log_floor``: a constant, or the traced floor of
    :func:`faded_log_floor`; either is cast to the log's dtype."""
    return jnp.maximum(log_value, jnp.asarray(log_floor, jnp.result_type(log_value)))


def faded_log_floor(log_floor: float, iteration, fade_iterations: float) -> jax.Array:
    """``loss.alpha_min_fade_steps``: the floor of log α in iteration ``iteration`` (0-based, an
    int array), log(α_min · (1 − i / F)), −inf from i ≥ F on; float32 as
    ``spec.reference.losses.faded_log_floor``. Only called with F > 0."""
    frac = jnp.float32(1.0) - iteration.astype(jnp.float32) / jnp.float32(fade_iterations)
    return jnp.where(frac > 0, jnp.float32(log_floor) + jnp.log(jnp.maximum(frac, 1e-30)),
                     jnp.float32(-jnp.inf))


def multiplier_loss(logs, entropy, kl, entropy_target: float, kl_target: float, kl_mode: str):
    """Eq. 11 + eq. 12 on ``logs`` = [log α, log β]. With ``kl_mode='none'`` the actor loss has
    no KL term, so β is frozen: its loss is 0·log β, a zero gradient that Adam turns into a zero
    step (log β keeps its initial value)."""
    alpha_term = alpha_loss(logs[0], entropy, entropy_target)
    beta_term = beta_loss(logs[1], kl, kl_target) if kl_mode != "none" else 0.0 * logs[1]
    return alpha_term + beta_term
