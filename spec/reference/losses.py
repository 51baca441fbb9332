"""Critic, actor and multiplier losses (paper eq. 7, 11–13, 17; docs/design.md).

Per-sample helpers return arrays over the batch; the top-level losses return
(scalar, info dict of scalars). Multipliers α = e^{log α}, β = e^{log β} enter the actor loss as
positive constants (stop-gradient); their own losses take the log-parameters.
"""

from __future__ import annotations

import numpy as np

from spec.reference._common import as_float, float_dtype
from spec.reference.hlgauss import hlgauss_decode, hlgauss_loss, hlgauss_target
from spec.config import KL_MODES

VALUE_KINDS = ("hlgauss", "mse")


def _check_kind(kind: str) -> None:
    if kind not in VALUE_KINDS:
        raise ValueError(f"value kind must be one of {VALUE_KINDS}, got {kind!r}")


def mse_value_loss(q: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-sample squared error (Q − G)² for the MSE-critic ablation (no ½ factor)."""
    dt = float_dtype(q, targets)
    q, targets = as_float(q, dt), as_float(targets, dt)
    if q.shape != targets.shape:
        raise ValueError(f"q {q.shape} and targets {targets.shape} must have the same shape")
    return (q - targets) ** 2


def value_loss(
    q_out: np.ndarray,
    targets: np.ndarray,
    kind: str,
    v_min: float,
    v_max: float,
    num_bins: int,
    sigma: float,
) -> np.ndarray:
    """Per-sample value loss of eq. 7: "hlgauss" → CE(q_out, hist(G^λ)) (D.2);
    "mse" → (q_out[..., 0] − G)² with a one-output head (the ½ is omitted on purpose)."""
    _check_kind(kind)
    q_out = np.asarray(q_out)
    if kind == "hlgauss":
        if q_out.shape != np.shape(targets) + (num_bins,):
            raise ValueError(
                f"hlgauss q_out must have shape targets.shape + ({num_bins},) = "
                f"{np.shape(targets) + (num_bins,)}, got {q_out.shape}"
            )
        dt = float_dtype(q_out, targets)
        probs = hlgauss_target(as_float(targets, dt), v_min, v_max, num_bins, sigma)
        return hlgauss_loss(q_out, probs)
    if q_out.shape != np.shape(targets) + (1,):
        raise ValueError(f"mse q_out must have shape targets.shape + (1,), got {q_out.shape}")
    return mse_value_loss(q_out[..., 0], targets)


def q_value(q_out: np.ndarray, kind: str, v_min: float, v_max: float, num_bins: int) -> np.ndarray:
    """Scalar Q from the head output: HL-Gauss expectation (D.2) or q_out[..., 0] for "mse"."""
    _check_kind(kind)
    if kind == "hlgauss":
        return hlgauss_decode(q_out, v_min, v_max, num_bins)
    q_out = np.asarray(q_out)
    if q_out.ndim == 0 or q_out.shape[-1] != 1:
        raise ValueError(f"mse q_out must have a trailing dim of size 1, got {q_out.shape}")
    return as_float(q_out, float_dtype(q_out))[..., 0]


def aux_loss(
    pred_next_emb: np.ndarray,
    next_emb: np.ndarray,
    pred_reward: np.ndarray,
    rewards: np.ndarray,
) -> np.ndarray:
    """Per-sample latent self-prediction loss (eq. 17, D.3) plus reward prediction:
    mean_features (f_p(z_t) − z_{t+1})² + (r̂_t − r_t)²; z_{t+1} = φ(x_{t+1}, a′) stored at rollout."""
    dt = float_dtype(pred_next_emb, next_emb, pred_reward, rewards)
    p, n = as_float(pred_next_emb, dt), as_float(next_emb, dt)
    pr, r = as_float(pred_reward, dt), as_float(rewards, dt)
    if p.ndim == 0 or p.shape != n.shape:
        raise ValueError(f"pred_next_emb {p.shape} and next_emb {n.shape} must match (..., H)")
    if pr.shape != r.shape or pr.shape != p.shape[:-1]:
        raise ValueError(
            f"pred_reward {pr.shape} and rewards {r.shape} must have the batch shape {p.shape[:-1]}"
        )
    return np.mean((p - n) ** 2, axis=-1) + (pr - r) ** 2


def critic_loss(
    q_out: np.ndarray,
    targets: np.ndarray,
    pred_next_emb: np.ndarray,
    next_emb: np.ndarray,
    pred_reward: np.ndarray,
    rewards: np.ndarray,
    *,
    kind: str,
    v_min: float,
    v_max: float,
    num_bins: int,
    sigma: float,
    aux_mult: float,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Eq. 7: mean_i value_loss_i + aux_mult · mean_i aux_loss_i.
    Returns (scalar, {"value_loss", "aux_loss"}) with the two unweighted means."""
    vl = value_loss(q_out, targets, kind, v_min, v_max, num_bins, sigma)
    al = aux_loss(pred_next_emb, next_emb, pred_reward, rewards)
    if vl.shape != al.shape:
        raise ValueError(f"value loss batch {vl.shape} and aux loss batch {al.shape} differ")
    dt = float_dtype(vl, al)
    v_mean, a_mean = np.mean(vl).astype(dt), np.mean(al).astype(dt)
    total = v_mean + dt.type(aux_mult) * a_mean
    return total, {"value_loss": v_mean, "aux_loss": a_mean}


def kl_switch(objective, kl, beta, violated, mode: str):
    """Eq. 13's per-state KL treatment for ``loss.kl_mode`` (one of ``spec.config.KL_MODES``),
    shared by every continuous and the discrete actor loss: "clipped" β·kl where violated else
    the objective; "full" objective + β·kl; "none" the objective alone. The mode is validated
    by the config; an unknown one here is a programming error."""
    if mode == "clipped":
        return np.where(violated, beta * kl, objective)
    if mode == "full":
        return objective + beta * kl
    if mode == "none":
        return objective
    raise ValueError(f"unknown kl mode {mode!r}: expected one of {KL_MODES}")


def kl_stats(kl: np.ndarray, violated: np.ndarray) -> dict[str, np.ndarray]:
    """The per-minibatch statistics of the per-state KL estimates ``kl`` (any shape, at least
    one element) that every actor loss (continuous and discrete) reports, in every
    ``loss.kl_mode``, in ``kl``'s dtype:

    - ``kl_violation_frac``: fraction of states with kl_i ≥ kl_target (``violated``);
    - ``kl_mean``: mean_i kl_i, the quantity β's update (eq. 12) sees;
    - ``kl_max``: max_i kl_i, the tail the mean hides: one state far beyond kl_target moves the
      mean of a large minibatch by little. An element of ``kl`` itself, so no rounding enters
      (the ports agree with the reference exactly on the same ``kl``); unlike a quantile it has
      one definition in every framework, and the maximum over an iteration's minibatches is
      again the maximum over every estimate of the iteration."""
    dt = float_dtype(kl)
    kl = as_float(kl, dt)
    violated = np.asarray(violated)
    if violated.shape != kl.shape:
        raise ValueError(f"violated {violated.shape} and kl {kl.shape} must have the same shape")
    return {"kl_violation_frac": np.mean(violated.astype(dt)).astype(dt),
            "kl_mean": np.mean(kl).astype(dt),
            "kl_max": np.max(kl).astype(dt)}


def _switched(objective: np.ndarray, kl: np.ndarray, beta, kl_target: float, mode: str,
              dt: np.dtype) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Eq. 13's KL treatment of a per-state ``objective`` shared by every continuous actor loss
    (pathwise, score, ppo): the batch mean of :func:`kl_switch` and the KL statistics
    (:func:`kl_stats`)."""
    violated = kl >= dt.type(kl_target)
    per_state = kl_switch(objective, kl, dt.type(beta), violated, mode)
    info = kl_stats(kl, violated)
    return np.mean(per_state).astype(dt), info


def actor_loss(
    q_values: np.ndarray,
    log_probs: np.ndarray,
    kl: np.ndarray,
    alpha: float,
    beta: float,
    kl_target: float,
    mode: str,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Eq. 13 per state i, then the batch mean. With Q_i = Q(x_i, ã_i), ã_i ~ π_θ
    reparameterised, logπ_i = log π_θ(ã_i|x_i), kl_i the k-sample forward KL estimate:

    - "clipped": ℓ_i = α·logπ_i − Q_i if kl_i < kl_target else β·kl_i   (eq. 13)
    - "full":    ℓ_i = α·logπ_i − Q_i + β·kl_i                         (Lagrangian, no switch)
    - "none":    ℓ_i = α·logπ_i − Q_i                                  (no KL term)

    Info: kl_violation_frac (fraction with kl_i ≥ kl_target, reported in every mode), kl_mean,
    kl_max (:func:`kl_stats`), entropy_mean (= −mean logπ), q_mean.
    """
    dt = float_dtype(q_values, log_probs, kl)
    q, lp, k = (as_float(v, dt) for v in (q_values, log_probs, kl))
    if not (q.shape == lp.shape == k.shape):
        raise ValueError(
            f"q_values {q.shape}, log_probs {lp.shape} and kl {k.shape} must have the same shape"
        )
    objective = dt.type(alpha) * lp - q
    loss, info = _switched(objective, k, beta, kl_target, mode, dt)
    info["entropy_mean"] = (-np.mean(lp)).astype(dt)
    info["q_mean"] = np.mean(q).astype(dt)
    return loss, info


def _leave_one_out_mean(q: np.ndarray) -> np.ndarray:
    """b_j = mean_{l≠j} q_l over the leading (sample) axis; 0 for a single sample."""
    k = q.shape[0]
    if k == 1:
        return np.zeros_like(q)
    return (np.sum(q, axis=0, keepdims=True) - q) / q.dtype.type(k - 1)


def score_actor_loss(
    q_values: np.ndarray,
    log_probs: np.ndarray,
    score_log_probs: np.ndarray,
    kl: np.ndarray,
    alpha: float,
    beta: float,
    kl_target: float,
    mode: str,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``actor.gradient=score``: eq. 13 with its pathwise term −Q(x, ã) replaced by the score
    function −log π_θ(a|x)·[Q(x, a) − b]_sg ("REPPO (score-based, Q)", paper §4.1).

    For each state i, k actions a_ij ~ π_θ(·|x_i) (j = 1…k, ``loss.score_samples``):

        objective_i = (1/k) Σ_j [ α·logπ_ij − (Q_ij − b_ij)·slogπ_ij ],
        b_ij = (1/(k−1)) Σ_{l≠j} Q_il   (leave-one-out baseline; b = 0 when k = 1),

    then the KL switch of eq. 13 per state and the batch mean (as :func:`actor_loss`).

    - ``q_values`` (k, *B): Q(x_i, a_ij) from the current critic; constants (no gradient flows
      into Q or through the action into Q: that is what makes this a score-function estimator).
    - ``log_probs`` (k, *B): log π_θ(a_ij|x_i) along the reparameterised path a_ij = tanh(μ + σξ),
      the entropy term of eq. 13 unchanged (its gradient needs no critic).
    - ``score_log_probs`` (k, *B): the same log-density with the sampled action held fixed
      (pre-squash sample stop-gradient), so ∂/∂θ is the score ∇_θ log π_θ(a|x). Values equal
      ``log_probs``; the two inputs differ only in what a port differentiates.

    In expectation the gradient is ∇_θ E_{a~π_θ}[α log π_θ(a|x) − Q(x, a)], the objective of
    eq. 13: the baseline is independent of a_ij, so it only lowers the variance. The paper's
    text states the estimator without a baseline (k = 1 here); the authors' code for Figure 3
    draws 4 actions with this leave-one-out baseline, hence the default ``loss.score_samples=4``.
    Info: as :func:`actor_loss` (entropy_mean = −mean logπ, q_mean = mean Q over all samples).
    """
    dt = float_dtype(q_values, log_probs, score_log_probs, kl)
    q, lp, slp, k = (as_float(v, dt) for v in (q_values, log_probs, score_log_probs, kl))
    if q.ndim < 1 or not (q.shape == lp.shape == slp.shape) or q.shape[1:] != k.shape:
        raise ValueError(
            f"q_values {q.shape}, log_probs {lp.shape} and score_log_probs {slp.shape} must "
            f"share one shape (samples, *batch) and kl {k.shape} must be the batch shape"
        )
    advantage = q - _leave_one_out_mean(q)
    objective = np.mean(dt.type(alpha) * lp - advantage * slp, axis=0)
    loss, info = _switched(objective, k, beta, kl_target, mode, dt)
    info["entropy_mean"] = (-np.mean(lp)).astype(dt)
    info["q_mean"] = np.mean(q).astype(dt)
    return loss, info


ADVANTAGE_EPS = 1e-8
"""Added to the advantages' standard deviation when they are normalised per minibatch."""


def ppo_actor_loss(
    log_probs: np.ndarray,
    old_log_probs: np.ndarray,
    advantages: np.ndarray,
    entropy_log_probs: np.ndarray,
    kl: np.ndarray,
    alpha: float,
    beta: float,
    kl_target: float,
    mode: str,
    clip_eps: float,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``actor.gradient=ppo``: eq. 13 with its pathwise term −Q(x, ã) replaced by PPO's clipped
    surrogate on GAE advantages ("REPPO (score-based, GAE)", paper §4.1; Schulman et al. 2017).

    For each state i of the minibatch, with a_i the action executed at rollout time:

        ρ_i = exp(logπ_i − logπ'_i),   Â_i = (A_i − mean A) / (std A + 1e-8),
        objective_i = α·elogπ_i − min(ρ_i Â_i, clip(ρ_i, 1 − ε, 1 + ε) Â_i),

    then the KL switch of eq. 13 per state and the batch mean (as :func:`actor_loss`).

    - ``log_probs`` (*B): log π_θ(a_i|x_i) of the executed action (evaluated at its stored
      pre-squash sample, so no atanh); the only input the surrogate differentiates.
    - ``old_log_probs`` (*B): log π_θ'(a_i|x_i) under the behaviour policy (constant).
    - ``advantages`` (*B): GAE advantages A_i (``targets.gae_advantages``, constants), normalised
      over the minibatch (mean and population std) as PPO implementations do.
    - ``entropy_log_probs`` (*B): log π_θ(ã_i|x_i) of a fresh reparameterised sample: the entropy
      term of eq. 13, unchanged, as are α, β and the KL switch.
    - ``clip_eps``: ε (``loss.ppo_clip``, 0.2).

    Info: kl_violation_frac, kl_mean, kl_max, entropy_mean (= −mean elogπ), clip_frac
    (fraction of states with |ρ − 1| > ε) and ratio_mean.
    """
    dt = float_dtype(log_probs, old_log_probs, advantages, entropy_log_probs, kl)
    lp, old, adv, elp, k = (as_float(v, dt) for v in
                            (log_probs, old_log_probs, advantages, entropy_log_probs, kl))
    if not (lp.shape == old.shape == adv.shape == elp.shape == k.shape):
        raise ValueError(
            f"log_probs {lp.shape}, old_log_probs {old.shape}, advantages {adv.shape}, "
            f"entropy_log_probs {elp.shape} and kl {k.shape} must have the same shape"
        )
    if not 0.0 < clip_eps < 1.0:
        raise ValueError(f"clip_eps must lie in (0, 1), got {clip_eps}")
    adv = (adv - np.mean(adv)) / (np.std(adv) + dt.type(ADVANTAGE_EPS))
    ratio = np.exp(lp - old)
    eps = dt.type(clip_eps)
    surrogate = np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv)
    objective = dt.type(alpha) * elp - surrogate
    loss, info = _switched(objective, k, beta, kl_target, mode, dt)
    info["entropy_mean"] = (-np.mean(elp)).astype(dt)
    info["clip_frac"] = np.mean((np.abs(ratio - 1) > eps).astype(dt)).astype(dt)
    info["ratio_mean"] = np.mean(ratio).astype(dt)
    return loss, info


def alpha_loss(log_alpha: float | np.ndarray, entropy: np.ndarray, entropy_target: float) -> np.ndarray:
    """Eq. 11: L_α = e^{log α} · mean(Ĥ − ε_H), Ĥ treated as a constant.
    ∂L/∂log α = α·mean(Ĥ − ε_H): entropy above target ⇒ gradient descent lowers α."""
    dt = float_dtype(log_alpha, entropy)
    h = as_float(entropy, dt)
    return (np.exp(as_float(log_alpha, dt)) * np.mean(h - dt.type(entropy_target))).astype(dt)


def beta_loss(log_beta: float | np.ndarray, kl: np.ndarray, kl_target: float) -> np.ndarray:
    """Eq. 12 (with the sign the authors' code runs): L_β = −e^{log β} · mean(KL̂ − ε_KL), KL̂ constant.
    KL above target ⇒ ∂L/∂log β < 0 ⇒ gradient descent raises β."""
    dt = float_dtype(log_beta, kl)
    k = as_float(kl, dt)
    return (-np.exp(as_float(log_beta, dt)) * np.mean(k - dt.type(kl_target))).astype(dt)


def faded_log_floor(log_floor: float, iteration: int, fade_iterations: float) -> np.float32:
    """The floor of log α in iteration ``iteration`` (0-based) when ``loss.alpha_min_fade_steps``
    fades it: log(α_min · (1 − i / F)) with F = ``fade_iterations``, −inf from i ≥ F on, and
    ``log_floor`` itself (as float32) when F = 0 (no fade). Float32 arithmetic as the ports run
    it: frac = 1 − float32(i) / float32(F), then float32(log_floor) + log(frac). The ports
    read i from the multiplier optimiser's step count k (multiplier steps before this one):
    i = k // (num_epochs · num_minibatches), so the floor is constant within an iteration."""
    f32 = np.float32
    if fade_iterations <= 0:
        return f32(log_floor)
    frac = f32(1.0) - f32(iteration) / f32(fade_iterations)
    if not frac > 0:
        return f32(-np.inf)
    return f32(log_floor) + np.log(frac)


def project_log_multiplier(log_value: float | np.ndarray, log_floor: float) -> np.ndarray:
    """The projection after each multiplier step, applied to log α (``loss.alpha_min``) and
    to log β (``loss.beta_min``) with each one's floor: log m ← max(log m, log m_min), i.e.
    projected gradient descent on the Lagrange multiplier over m ≥ m_min.

    ``log_floor`` = −inf (m_min = 0) is the identity (the paper's unbounded rule); the bound
    is cast to the log's dtype, so the floor of a float32 run is float32(log m_min). A NaN log
    stays NaN (so the run's non-finite guard still sees it). Adam's moments are not touched:
    only the parameter is projected."""
    dt = float_dtype(log_value)
    return np.maximum(as_float(log_value, dt), dt.type(log_floor)).astype(dt)
