"""The paper's §4.1 alternatives to the pathwise actor gradient, in PyTorch; mirrors
``reppo_jax.estimators`` (math in ``spec.reference.losses``): the score-function estimator
through the learned Q and the PPO-clip estimator on GAE advantages of a state-value network V,
with everything only they need — V's forward pass and regression step, its rollout fields and
the advantages. ``reppo_torch.agent`` (Algorithm 1, the pathwise estimator) dispatches here on
``h.actor_gradient``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from reppo_torch import distributions as D
from reppo_torch.losses import mse_value_loss, ppo_actor_loss, score_actor_loss
from reppo_torch.networks import Value
from reppo_torch.targets import gae_advantages, soft_rewards
from spec.hyper import Hyper


def score_objective(h: Hyper, q_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    mean: torch.Tensor, std: torch.Tensor, obs: torch.Tensor,
                    noise: torch.Tensor, action: torch.Tensor, pre: torch.Tensor,
                    log_prob: torch.Tensor, kl: torch.Tensor, alpha: torch.Tensor,
                    beta: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """actor.gradient=score: the likelihood-ratio actor loss with ``h.score_samples`` actions
    per state (``noise`` (k, B, A)); ``q_fn(obs, action)`` is Q of the current critic.
    Returns (loss, info)."""
    # k actions per state; Q gets no gradient (the action it sees is detached), and the score
    # log π_θ(a|x) is taken at the detached pre-squash sample
    score_log_prob = D.tanh_gaussian_log_prob(mean, std, pre.detach())
    with torch.no_grad():
        q = q_fn(obs.expand((noise.shape[0],) + tuple(obs.shape)), action.detach())
    return score_actor_loss(q, log_prob, score_log_prob, kl, alpha, beta,
                            h.kl_target, h.kl_mode)


def ppo_objective(h: Hyper, mean: torch.Tensor, std: torch.Tensor, old_mean: torch.Tensor,
                  old_std: torch.Tensor, mb: dict, log_prob: torch.Tensor, kl: torch.Tensor,
                  alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """actor.gradient=ppo: the clipped importance-ratio loss at the executed pre-squash actions
    ``mb["pre_action"]`` on the GAE advantages ``mb["advantage"]``. Returns (loss, info)."""
    new_lp = D.tanh_gaussian_log_prob(mean, std, mb["pre_action"])
    old_lp = D.tanh_gaussian_log_prob(old_mean, old_std, mb["pre_action"])
    return ppo_actor_loss(new_lp, old_lp, mb["advantage"], log_prob, kl, alpha, beta,
                          h.kl_target, h.kl_mode, h.ppo_clip)


def v_of(value: Value, obs: torch.Tensor) -> torch.Tensor:
    """V(x) of the state-value network (actor.gradient=ppo)."""
    return value(obs)


def value_update(h: Hyper, state: Any, mb: dict) -> tuple[Any, dict]:
    """actor.gradient=ppo: one step of the state-value network on mean (V(x_t) − R_t)², R_t the
    λ-return A_t + V_old(x_t) of the GAE pass."""
    # imported at call time: reppo_torch.agent imports this module for its dispatch
    from reppo_torch.agent import _clip_and_step

    value = state.value
    loss = torch.mean(mse_value_loss(v_of(value, mb["obs"]), mb["value_target"]))
    grad_norm = _clip_and_step(loss, state.value_params, state.value_opt, h.max_grad_norm)
    return state, {"train/v_loss": loss.detach(), "train/v_grad_norm": grad_norm}


def ppo_transition_fields(agent: Any, x: torch.Tensor, x_next: torch.Tensor,
                          pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """actor.gradient=ppo: the ``Transition`` fields one rollout step adds — the executed
    pre-squash sample u_t, V(x_t) and V(x_{t+1}) at the true next observation."""
    return pre, v_of(agent.value, x), v_of(agent.value, x_next)


@torch.no_grad()
def compute_advantages(h: Hyper, agent: Any, batch: Any) -> dict[str, torch.Tensor]:
    """actor.gradient=ppo: GAE advantages of V on the soft rewards (α at rollout time) and the
    value network's λ-return targets A + V, once per iteration."""
    alpha = torch.exp(agent.log_alpha)
    r = soft_rewards(batch.reward, batch.next_log_prob, batch.terminated, alpha, h.gamma)
    adv = gae_advantages(r, batch.state_value, batch.next_state_value, batch.terminated,
                         batch.truncated, h.gamma, h.lam)
    return {"pre_action": batch.pre_action, "advantage": adv,
            "value_target": adv + batch.state_value}
