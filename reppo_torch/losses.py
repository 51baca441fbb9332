"""Critic, actor and multiplier losses in PyTorch; mirrors ``spec.reference.losses``.

Per-sample helpers return tensors over the batch; the top-level losses return (scalar, info dict
of 0-dim tensors). α and β enter the actor loss as plain values (detached if tensors); the
multiplier losses take the log-parameters and detach the entropy / KL statistics.
"""

from __future__ import annotations

import torch

from reppo_torch.hlgauss import hlgauss_decode, hlgauss_loss, hlgauss_target
from spec.config import KL_MODES

VALUE_KINDS = ("hlgauss", "mse")


def _check_kind(kind: str) -> None:
    if kind not in VALUE_KINDS:
        raise ValueError(f"value kind must be one of {VALUE_KINDS}, got {kind!r}")


def _const(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def mse_value_loss(q: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error (Q − G)² (no ½ factor)."""
    if q.shape != targets.shape:
        raise ValueError(f"q {tuple(q.shape)} and targets {tuple(targets.shape)} must match")
    return (q - targets) ** 2


def value_loss(
    q_out: torch.Tensor,
    targets: torch.Tensor,
    kind: str,
    v_min: float,
    v_max: float,
    num_bins: int,
    sigma: float,
    target_probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample value loss of eq. 7: "hlgauss" → CE(q_out, hist(G)); "mse" → (q_out[..., 0] − G)².
    The targets are computed without gradient by the caller (as in every backend).
    ``target_probs``: hist(G) already computed (the trainer builds it once per iteration for
    the whole batch, the targets being fixed for the iteration; elementwise, so the same
    numbers); None computes it here."""
    _check_kind(kind)
    if kind == "hlgauss":
        if tuple(q_out.shape) != tuple(targets.shape) + (num_bins,):
            raise ValueError(f"hlgauss q_out must have shape targets.shape + ({num_bins},), "
                             f"got {tuple(q_out.shape)}")
        if target_probs is None:
            target_probs = hlgauss_target(targets, v_min, v_max, num_bins, sigma)
        return hlgauss_loss(q_out, target_probs)
    if tuple(q_out.shape) != tuple(targets.shape) + (1,):
        raise ValueError(f"mse q_out must have shape targets.shape + (1,), got {tuple(q_out.shape)}")
    return mse_value_loss(q_out[..., 0], targets)


def q_value(q_out: torch.Tensor, kind: str, v_min: float, v_max: float,
            num_bins: int) -> torch.Tensor:
    """Scalar Q: HL-Gauss expectation, or q_out[..., 0] for "mse"."""
    _check_kind(kind)
    if kind == "hlgauss":
        return hlgauss_decode(q_out, v_min, v_max, num_bins)
    if q_out.dim() == 0 or q_out.shape[-1] != 1:
        raise ValueError(f"mse q_out must have a trailing dim of size 1, got {tuple(q_out.shape)}")
    return q_out[..., 0]


def aux_loss(
    pred_next_emb: torch.Tensor,
    next_emb: torch.Tensor,
    pred_reward: torch.Tensor,
    rewards: torch.Tensor,
) -> torch.Tensor:
    """Per-sample mean_features (f_p(z_t) − z_{t+1})² + (r̂_t − r_t)² (eq. 17 + reward head)."""
    if pred_next_emb.dim() == 0 or pred_next_emb.shape != next_emb.shape:
        raise ValueError(f"pred_next_emb {tuple(pred_next_emb.shape)} and next_emb "
                         f"{tuple(next_emb.shape)} must match (..., H)")
    if pred_reward.shape != rewards.shape or pred_reward.shape != pred_next_emb.shape[:-1]:
        raise ValueError(f"pred_reward {tuple(pred_reward.shape)} and rewards "
                         f"{tuple(rewards.shape)} must have the batch shape "
                         f"{tuple(pred_next_emb.shape[:-1])}")
    return torch.mean((pred_next_emb - next_emb) ** 2, dim=-1) + (pred_reward - rewards) ** 2


def critic_loss(
    q_out: torch.Tensor,
    targets: torch.Tensor,
    pred_next_emb: torch.Tensor,
    next_emb: torch.Tensor,
    pred_reward: torch.Tensor,
    rewards: torch.Tensor,
    *,
    kind: str,
    v_min: float,
    v_max: float,
    num_bins: int,
    sigma: float,
    aux_mult: float,
    target_probs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 7: mean value loss + aux_mult · mean aux loss; info has both unweighted means.
    ``target_probs``: see :func:`value_loss`."""
    vl = value_loss(q_out, targets, kind, v_min, v_max, num_bins, sigma, target_probs)
    al = aux_loss(pred_next_emb, next_emb, pred_reward, rewards)
    if vl.shape != al.shape:
        raise ValueError(f"value loss batch {tuple(vl.shape)} and aux loss batch "
                         f"{tuple(al.shape)} differ")
    v_mean, a_mean = torch.mean(vl), torch.mean(al)
    return v_mean + aux_mult * a_mean, {"value_loss": v_mean, "aux_loss": a_mean}


def kl_switch(objective, kl, beta, violated, mode: str):
    """Eq. 13's per-state KL treatment for ``loss.kl_mode`` (one of ``spec.config.KL_MODES``),
    shared by every continuous and the discrete actor loss: "clipped" β·kl where violated else
    the objective; "full" objective + β·kl; "none" the objective alone. The mode is validated
    by the config; an unknown one here is a programming error."""
    if mode == "clipped":
        return torch.where(violated, beta * kl, objective)
    if mode == "full":
        return objective + beta * kl
    if mode == "none":
        return objective
    raise ValueError(f"unknown kl mode {mode!r}: expected one of {KL_MODES}")


def kl_stats(kl: torch.Tensor, violated: torch.Tensor) -> dict[str, torch.Tensor]:
    """The KL statistics every actor loss reports (``spec.reference.losses.kl_stats``), no
    gradient: kl_violation_frac, kl_mean and kl_max (the per-state tail the mean hides)."""
    if violated.shape != kl.shape:
        raise ValueError(f"violated {tuple(violated.shape)} and kl {tuple(kl.shape)} must have "
                         "the same shape")
    with torch.no_grad():
        return {"kl_violation_frac": torch.mean(violated.to(kl.dtype)),
                "kl_mean": torch.mean(kl), "kl_max": torch.max(kl)}


def _switched(objective: torch.Tensor, kl: torch.Tensor, beta: torch.Tensor | float,
              kl_target: float, mode: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 13's KL treatment shared by every continuous actor loss: batch mean of the switched
    per-state objective, and the KL statistics (no gradient)."""
    violated = kl >= kl_target  # the float scalar is compared in kl's dtype
    per_state = kl_switch(objective, kl, _const(beta), violated, mode)
    return torch.mean(per_state), kl_stats(kl, violated)


def actor_loss(
    q_values: torch.Tensor,
    log_probs: torch.Tensor,
    kl: torch.Tensor,
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
    kl_target: float,
    mode: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 13 per state, batch mean: "clipped" ℓ = α logπ − Q if kl < kl_target else β·kl;
    "full" ℓ = α logπ − Q + β·kl; "none" ℓ = α logπ − Q. α, β are constants."""
    if not (q_values.shape == log_probs.shape == kl.shape):
        raise ValueError(f"q_values {tuple(q_values.shape)}, log_probs {tuple(log_probs.shape)} "
                         f"and kl {tuple(kl.shape)} must have the same shape")
    objective = _const(alpha) * log_probs - q_values
    loss, info = _switched(objective, kl, beta, kl_target, mode)
    with torch.no_grad():
        info["entropy_mean"] = -torch.mean(log_probs)
        info["q_mean"] = torch.mean(q_values)
    return loss, info


def _leave_one_out_mean(q: torch.Tensor) -> torch.Tensor:
    """b_j = mean of the other samples' q over the leading axis; 0 for a single sample."""
    k = q.shape[0]
    if k == 1:
        return torch.zeros_like(q)
    return (torch.sum(q, dim=0, keepdim=True) - q) / (k - 1)


def score_actor_loss(
    q_values: torch.Tensor,
    log_probs: torch.Tensor,
    score_log_probs: torch.Tensor,
    kl: torch.Tensor,
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
    kl_target: float,
    mode: str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``actor.gradient=score``: eq. 13 with −Q replaced by −logπ(a|x)·[Q − b]_sg over k samples,
    b the leave-one-out mean (``spec.reference.losses.score_actor_loss``). ``q_values`` are
    detached; ``score_log_probs`` must be evaluated at the detached sample by the caller."""
    if q_values.dim() < 1 or not (q_values.shape == log_probs.shape == score_log_probs.shape) \
            or q_values.shape[1:] != kl.shape:
        raise ValueError(f"q_values {tuple(q_values.shape)}, log_probs {tuple(log_probs.shape)} "
                         f"and score_log_probs {tuple(score_log_probs.shape)} must share one "
                         f"shape (samples, *batch) and kl {tuple(kl.shape)} the batch shape")
    q = q_values.detach()
    advantage = q - _leave_one_out_mean(q)
    objective = torch.mean(_const(alpha) * log_probs - advantage * score_log_probs, dim=0)
    loss, info = _switched(objective, kl, beta, kl_target, mode)
    with torch.no_grad():
        info["entropy_mean"] = -torch.mean(log_probs)
        info["q_mean"] = torch.mean(q)
    return loss, info


ADVANTAGE_EPS = 1e-8


def ppo_actor_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    entropy_log_probs: torch.Tensor,
    kl: torch.Tensor,
    alpha: torch.Tensor | float,
    beta: torch.Tensor | float,
    kl_target: float,
    mode: str,
    clip_eps: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``actor.gradient=ppo``: eq. 13 with −Q replaced by PPO's clipped surrogate on the
    minibatch-normalised GAE advantages (``spec.reference.losses.ppo_actor_loss``); old log-probs
    and advantages are detached."""
    if not (log_probs.shape == old_log_probs.shape == advantages.shape
            == entropy_log_probs.shape == kl.shape):
        raise ValueError(f"log_probs {tuple(log_probs.shape)}, old_log_probs "
                         f"{tuple(old_log_probs.shape)}, advantages {tuple(advantages.shape)}, "
                         f"entropy_log_probs {tuple(entropy_log_probs.shape)} and kl "
                         f"{tuple(kl.shape)} must have the same shape")
    if not 0.0 < clip_eps < 1.0:
        raise ValueError(f"clip_eps must lie in (0, 1), got {clip_eps}")
    adv = advantages.detach()
    adv = (adv - torch.mean(adv)) / (torch.std(adv, correction=0) + ADVANTAGE_EPS)
    ratio = torch.exp(log_probs - old_log_probs.detach())
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    objective = _const(alpha) * entropy_log_probs - surrogate
    loss, info = _switched(objective, kl, beta, kl_target, mode)
    with torch.no_grad():
        info["entropy_mean"] = -torch.mean(entropy_log_probs)
        info["clip_frac"] = torch.mean((torch.abs(ratio - 1.0) > clip_eps).to(ratio.dtype))
        info["ratio_mean"] = torch.mean(ratio)
    return loss, info


def alpha_loss(log_alpha: torch.Tensor, entropy: torch.Tensor,
               entropy_target: float) -> torch.Tensor:
    """Eq. 11: L_α = e^{log α} · mean(Ĥ − ε_H), Ĥ detached."""
    return torch.exp(log_alpha) * torch.mean(entropy.detach() - entropy_target)


def beta_loss(log_beta: torch.Tensor, kl: torch.Tensor, kl_target: float) -> torch.Tensor:
    """Eq. 12: L_β = −e^{log β} · mean(KL̂ − ε_KL), KL̂ detached."""
    return -torch.exp(log_beta) * torch.mean(kl.detach() - kl_target)


def project_log_multiplier(log_value: torch.Tensor,
                           log_floor: float | torch.Tensor) -> torch.Tensor:
    """``loss.alpha_min`` / ``loss.beta_min``: log m ← max(log m, log m_min) after each
    multiplier step (projected gradient descent on the Lagrange multiplier); −inf is the
    identity, a NaN stays NaN. ``log_floor``: a constant (passed to the kernel as an argument:
    no copy), or the floor of :func:`faded_log_floor` as a tensor of the log's dtype."""
    return torch.clamp(log_value, min=log_floor)


def faded_log_floor(log_floor: float, iteration: torch.Tensor,
                    fade_iterations: float) -> torch.Tensor:
    """``loss.alpha_min_fade_steps``: the floor of log α in iteration ``iteration`` (0-based, a
    float32 tensor holding a whole number), log(α_min · (1 − i / F)), −inf from i ≥ F on;
    float32 as ``spec.reference.losses.faded_log_floor``, on the tensor's device (no host
    sync). Only called with F > 0."""
    f32 = torch.float32
    frac = 1.0 - iteration.to(f32) / torch.tensor(fade_iterations, dtype=f32,
                                                   device=iteration.device)
    floor = torch.tensor(log_floor, dtype=f32, device=iteration.device) + torch.log(
        frac.clamp(min=1e-30))
    return torch.where(frac > 0, floor, torch.tensor(-torch.inf, dtype=f32,
                                                     device=iteration.device))


def multiplier_grad(alpha: torch.Tensor, beta: torch.Tensor, entropy: torch.Tensor,
                    kl: torch.Tensor, entropy_target: float, kl_target: float,
                    kl_mode: str) -> torch.Tensor:
    """∂ :func:`multiplier_loss` / ∂[log α, log β] in closed form, α = e^{log α} and
    β = e^{log β} given: [α·mean(Ĥ − ε_H), −β·mean(KL̂ − ε_KL)] (second entry 0 for
    kl_mode='none'). Both losses are linear in e^{log ·}, and this is evaluated by the same
    floating-point operations autograd runs on :func:`multiplier_loss` — the product order of
    each backward node and the ``+ 0`` of the two index-scattered partial gradients being
    summed — so it equals that gradient bit for bit (``tests/torch/test_torch_train.py``). The
    torch update uses it instead of a loss graph and an autograd pass (~30 tiny ops per
    minibatch)."""
    ga = torch.mean(entropy.detach() - entropy_target) * alpha
    gb = (-torch.mean(kl.detach() - kl_target) * beta if kl_mode != "none"
          else torch.zeros_like(beta))
    return torch.stack([ga, gb]) + 0.0


def multiplier_loss(logs: torch.Tensor, entropy: torch.Tensor, kl: torch.Tensor,
                    entropy_target: float, kl_target: float, kl_mode: str) -> torch.Tensor:
    """Eq. 11 + eq. 12 on ``logs`` = [log α, log β]. With ``kl_mode='none'`` the actor loss has
    no KL term, so β is frozen: its loss is 0·log β, a zero gradient that Adam turns into a zero
    step (log β keeps its initial value)."""
    alpha_term = alpha_loss(logs[0], entropy, entropy_target)
    beta_term = beta_loss(logs[1], kl, kl_target) if kl_mode != "none" else 0.0 * logs[1]
    return alpha_term + beta_term
