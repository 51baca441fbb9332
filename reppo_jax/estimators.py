"""The paper's §4.1 alternatives to the pathwise actor gradient, in JAX (math in
``spec.reference.losses``): the score-function estimator through the learned Q and the PPO-clip
estimator on GAE advantages of a state-value network V, with everything only they need — V's
forward pass and regression step, its rollout fields and the advantages. ``reppo_jax.agent``
(Algorithm 1, the pathwise estimator) dispatches here on ``h.actor_gradient``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from reppo_jax import distributions as D
from reppo_jax.losses import mse_value_loss, ppo_actor_loss, score_actor_loss
from reppo_jax.targets import gae_advantages, soft_rewards
from spec.hyper import Hyper


def score_objective(h: Hyper, q_fn: Callable[[jax.Array, jax.Array], jax.Array], mean, std,
                    obs, noise, action, pre, log_prob, kl, alpha, beta):
    """actor.gradient=score: the likelihood-ratio actor loss with ``h.score_samples`` actions
    per state (``noise`` (k, B, A)); ``q_fn(obs, action)`` is Q of the current critic.
    Returns (loss, info)."""
    # k actions per state; Q and the action it is evaluated at carry no gradient, and the
    # score log π_θ(a|x) is taken at the stop-gradient pre-squash sample
    pre_sg = jax.lax.stop_gradient(pre)
    score_log_prob = D.tanh_gaussian_log_prob(mean, std, pre_sg)
    obs_k = jnp.broadcast_to(obs, (noise.shape[0],) + obs.shape)
    q = q_fn(obs_k, jax.lax.stop_gradient(action))
    return score_actor_loss(q, log_prob, score_log_prob, kl, alpha, beta,
                            h.kl_target, h.kl_mode)


def ppo_objective(h: Hyper, mean, std, old_mean, old_std, mb: dict, log_prob, kl, alpha, beta):
    """actor.gradient=ppo: the clipped importance-ratio loss at the executed pre-squash actions
    ``mb["pre_action"]`` on the GAE advantages ``mb["advantage"]``. Returns (loss, info)."""
    new_lp = D.tanh_gaussian_log_prob(mean, std, mb["pre_action"])
    old_lp = D.tanh_gaussian_log_prob(old_mean, old_std, mb["pre_action"])
    return ppo_actor_loss(new_lp, old_lp, mb["advantage"], log_prob, kl, alpha, beta,
                          h.kl_target, h.kl_mode, h.ppo_clip)


def v_of(nets: Any, value_params, obs):
    """V(x) of the state-value network (actor.gradient=ppo)."""
    return nets.value.apply({"params": value_params}, obs)


def value_update(nets: Any, h: Hyper, opt, state: Any, mb: dict):
    """actor.gradient=ppo: one step of the state-value network on mean (V(x_t) − R_t)², R_t the
    λ-return A_t + V_old(x_t) of the GAE pass (``spec.reference.targets.gae_advantages``)."""

    def loss_fn(params):
        return jnp.mean(mse_value_loss(v_of(nets, params, mb["obs"]), mb["value_target"]))

    loss, grads = jax.value_and_grad(loss_fn)(state.value)
    updates, opt_state = opt.update(grads, state.value_opt, state.value)
    params = optax.apply_updates(state.value, updates)
    info = {"train/v_loss": loss, "train/v_grad_norm": optax.tree.norm(grads)}
    return state._replace(value=params, value_opt=opt_state), info


def ppo_transition_fields(nets: Any, agent: Any, x, x_next, pre) -> dict[str, jax.Array]:
    """actor.gradient=ppo: the ``Transition`` fields one rollout step adds — the executed
    pre-squash sample u_t, V(x_t) and V(x_{t+1}) at the true next observation."""
    return {"pre_action": pre, "state_value": v_of(nets, agent.value, x),
            "next_state_value": v_of(nets, agent.value, x_next)}


def compute_advantages(h: Hyper, agent: Any, batch: Any) -> dict[str, jax.Array]:
    """actor.gradient=ppo: GAE advantages of V on the soft rewards (α at rollout time) and the
    value network's λ-return targets A + V, once per iteration."""
    alpha = jnp.exp(agent.log_alpha)
    r = soft_rewards(batch.reward, batch.next_log_prob, batch.terminated, alpha, h.gamma)
    adv = gae_advantages(r, batch.state_value, batch.next_state_value, batch.terminated,
                         batch.truncated, h.gamma, h.lam)
    return {"pre_action": batch.pre_action, "advantage": adv,
            "value_target": adv + batch.state_value}
