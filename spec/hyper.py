"""Fully resolved, framework-neutral hyperparameters of one REPPO run (stdlib + spec only).

:func:`resolve_hyper` turns a :class:`~spec.config.ReppoConfig` plus the environment's facts
(observation/action sizes, episode length, per-step reward range) into the flat numbers every
backend's update step closes over: γ, the HL-Gauss support and σ, the entropy target, learning
rates and clip norms. Both ports call this one function, so "the same config" means the same
numbers in JAX and in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spec import derived

__all__ = ["Hyper", "resolve_hyper"]


@dataclass(frozen=True)
class Hyper:
    """Static, fully resolved hyperparameters (config + env facts); hashable, so a jitted JAX
    function can close over it."""

    obs_dim: int
    action_dim: int
    num_envs: int
    num_steps: int
    num_minibatches: int
    num_epochs: int
    gamma: float
    lam: float
    v_min: float
    v_max: float
    num_bins: int
    sigma: float
    value_kind: str
    aux_mult: float
    min_std: float
    kl_target: float
    kl_mode: str
    kl_samples: int
    entropy_target: float
    normalize_obs: bool
    actor_lr: float
    critic_lr: float
    multiplier_lr: float
    max_grad_norm: float
    multiplier_max_grad_norm: float
    actor_gradient: str = "pathwise"
    """``actor.gradient``: 'pathwise' (eq. 13), 'score' or 'ppo' (the §4.1 ablations)."""
    score_samples: int = 4
    """``loss.score_samples``: actions per state of the score-function estimator."""
    ppo_clip: float = 0.2
    """``loss.ppo_clip``: ε of PPO's clipped ratio."""


def resolve_hyper(config: Any, *, obs_dim: int, action_dim: int, max_episode_steps: int,
                  reward_range: tuple[float, float]) -> Hyper:
    """Config + env facts → :class:`Hyper`.

    - γ: ``env.gamma``, else 1 − 10 / ``max_episode_steps`` (the env's episode length in agent
      steps, which already reflects ``env.max_episode_steps`` when the adapter was built from it);
    - (v_min, v_max): each explicit ``env.v_min``/``env.v_max`` wins, the rest is
      r / (1 − γ) over ``reward_range``;
    - HL-Gauss σ = ``critic.sigma_ratio`` × bin width; ``num_bins`` is 1 for the MSE critic;
    - entropy target −``loss.entropy_target_mult`` · |A|;
    - learning rates: ``actor.lr``/``critic.lr`` default to ``rollout.lr``; the multipliers'
      to the actor's; their clip norm to ``rollout.max_grad_norm``; the state-value network of
      ``actor.gradient=ppo`` uses the critic's.
    """
    e, r, c, a, l = config.env, config.rollout, config.critic, config.actor, config.loss
    gamma = e.gamma if e.gamma is not None else derived.discount_from_episode_steps(
        max_episode_steps)
    if e.v_min is not None and e.v_max is not None:
        v_min, v_max = e.v_min, e.v_max
    else:
        lo, hi = derived.value_range(reward_range[0], reward_range[1], gamma)
        v_min = e.v_min if e.v_min is not None else lo
        v_max = e.v_max if e.v_max is not None else hi
    actor_lr = a.lr if a.lr is not None else r.lr
    return Hyper(
        obs_dim=int(obs_dim), action_dim=int(action_dim), num_envs=r.num_envs,
        num_steps=r.num_steps, num_minibatches=r.num_minibatches, num_epochs=r.num_epochs,
        gamma=float(gamma), lam=l.lam, v_min=float(v_min), v_max=float(v_max),
        num_bins=c.num_bins if c.loss == "hlgauss" else 1,
        sigma=derived.hlgauss_sigma(v_min, v_max, c.num_bins, c.sigma_ratio),
        value_kind=c.loss, aux_mult=c.aux_loss_mult, min_std=a.min_std,
        kl_target=l.kl_target, kl_mode=l.kl_mode, kl_samples=l.kl_samples,
        entropy_target=derived.entropy_target(action_dim, l.entropy_target_mult),
        normalize_obs=e.normalize_obs, actor_lr=actor_lr,
        critic_lr=c.lr if c.lr is not None else r.lr,
        multiplier_lr=l.multiplier_lr if l.multiplier_lr is not None else actor_lr,
        max_grad_norm=r.max_grad_norm,
        multiplier_max_grad_norm=(l.multiplier_max_grad_norm
                                  if l.multiplier_max_grad_norm is not None else r.max_grad_norm),
        actor_gradient=a.gradient, score_samples=l.score_samples, ppo_clip=l.ppo_clip,
    )
