"""Fully resolved, framework-neutral hyperparameters of one REPPO run (stdlib + spec only).

:func:`resolve` is the one place where a :class:`~spec.config.ReppoConfig` plus the environment's
facts (:class:`EnvFacts`: observation/action sizes, episode length, per-step reward range and,
for a discrete action space, the number of actions) become the flat numbers every backend's
update step closes over: γ, the HL-Gauss support and σ, the entropy target, learning rates and
clip norms. Every port and every action space calls this one function, so "the same config" means
the same numbers in JAX and in PyTorch. Values the config leaves ``None`` are derived here; an
explicit value always wins. A config that cannot be resolved for the env is a one-line
:class:`~spec.config.ConfigError` naming the field to set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from spec import derived
from spec.config import ConfigError, ReppoConfig

__all__ = ["EnvFacts", "Facts", "Hyper", "resolve"]


class EnvFacts(Protocol):
    """What :func:`resolve` reads from an environment; every env adapter provides it, and a test
    can pass a :class:`Facts`. Optional attributes: ``num_actions`` (set only by discrete action
    spaces: selects the categorical entropy target) and ``pixels`` (image observations: no
    running observation normalisation)."""

    obs_dim: int
    action_dim: int
    max_episode_steps: int
    """Episode length in agent steps (already reflecting ``env.max_episode_steps``)."""
    reward_range: tuple[float, float] | None
    """Per-step reward range (r_min, r_max)."""


@dataclass(frozen=True)
class Facts:
    """A plain :class:`EnvFacts` (for callers that have no env adapter at hand)."""

    obs_dim: int
    action_dim: int
    max_episode_steps: int
    reward_range: tuple[float, float] | None
    num_actions: int | None = None
    pixels: bool = False


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
    log_beta_min: float = -math.inf
    """log of ``loss.beta_min``: the floor log β is projected onto after each multiplier step
    (−inf for beta_min = 0: no bound, the paper's rule)."""
    log_alpha_min: float = -math.inf
    """log of ``loss.alpha_min``: the floor log α is projected onto after each multiplier step
    (−inf for alpha_min = 0: no bound, the paper's rule)."""
    alpha_min_fade_iterations: float = 0.0
    """``loss.alpha_min_fade_steps`` in iterations (env steps / env steps per iteration, not
    rounded): the floor of log α fades over them (``spec.reference.losses.faded_log_floor``);
    0 = a constant floor."""


def _log_floor(bound: float) -> float:
    """log of a multiplier's lower bound; −inf for 0 (no bound)."""
    return math.log(bound) if bound > 0 else -math.inf


def require_value_support(config: ReppoConfig, reward_range: tuple[float, float] | None,
                          name: str) -> None:
    """One-line :class:`~spec.config.ConfigError` if the HL-Gauss value support cannot be
    resolved: the env declares no reward range and the config does not give both
    ``env.v_min`` and ``env.v_max``."""
    if reward_range is None and (config.env.v_min is None or config.env.v_max is None):
        raise ConfigError(f"{name} declares no reward range, so the value support cannot be "
                          f"derived: pass --env.v_min=LO --env.v_max=HI (or register the env "
                          f"with reward_range=(r_min, r_max))")


def resolve(config: ReppoConfig, env: EnvFacts) -> Hyper:
    """Config + env facts → :class:`Hyper` (the one resolver of every backend).

    - γ: ``env.gamma``, else 1 − 10 / ``env.max_episode_steps`` (the env's episode length in
      agent steps, which already reflects the config's ``env.max_episode_steps`` when the
      adapter was built from it);
    - (v_min, v_max): each explicit ``env.v_min``/``env.v_max`` wins, the rest is
      r / (1 − γ) over ``env.reward_range``; v_min < v_max is required;
    - HL-Gauss σ = ``critic.sigma_ratio`` × bin width; ``num_bins`` is 1 for the MSE critic;
    - entropy target: −``loss.entropy_target_mult`` · |A| for a continuous action space,
      +``loss.entropy_target_mult`` · log(num_actions) for a discrete one (``env.num_actions``
      set), where the actor gradient must be ``pathwise``;
    - observation normalisation: ``env.normalize_obs``, off for pixel observations;
    - learning rates: ``actor.lr``/``critic.lr`` default to ``rollout.lr``; the multipliers'
      to the actor's; their clip norm to ``rollout.max_grad_norm``; the state-value network of
      ``actor.gradient=ppo`` uses the critic's;
    - the floors of log α and log β: log(``loss.alpha_min``), log(``loss.beta_min``), −inf
      where it is 0 (unbounded); the fade of α's floor in iterations
      (``loss.alpha_min_fade_steps`` / env steps per iteration).

    Raises :class:`~spec.config.ConfigError` (one line) when the config cannot be resolved
    for this env.
    """
    e, r, c, a, l = config.env, config.rollout, config.critic, config.actor, config.loss
    num_actions = getattr(env, "num_actions", None)
    if num_actions is not None and a.gradient != "pathwise":
        raise ConfigError(
            f"actor.gradient={a.gradient!r} does not apply to a discrete action space: "
            "D-REPPO's actor loss is a closed-form expectation over the actions (no sampled "
            "gradient estimator); use actor.gradient=pathwise")
    if e.gamma is not None:
        gamma = e.gamma
    else:
        try:
            gamma = derived.discount_from_episode_steps(env.max_episode_steps)
        except ValueError as err:
            raise ConfigError(f"cannot derive env.gamma from the episode length: {err}; "
                              "set env.gamma explicitly") from None
    require_value_support(config, env.reward_range, e.name)
    if e.v_min is not None and e.v_max is not None:
        v_min, v_max = e.v_min, e.v_max
    else:
        lo, hi = derived.value_range(env.reward_range[0], env.reward_range[1], gamma)
        v_min = e.v_min if e.v_min is not None else lo
        v_max = e.v_max if e.v_max is not None else hi
    if not v_min < v_max:
        raise ConfigError(
            f"env.v_min={v_min!r} is invalid: must be < env.v_max={v_max!r} (derived from the "
            f"reward range {tuple(env.reward_range)} and gamma={gamma}); set both explicitly")
    if num_actions is None:
        entropy_target = derived.entropy_target(env.action_dim, l.entropy_target_mult)
    else:
        if not 0.0 <= l.entropy_target_mult <= 1.0:
            raise ConfigError(
                f"loss.entropy_target_mult={l.entropy_target_mult!r} is invalid for a discrete "
                "action space: must lie in [0, 1] (a fraction of the maximum entropy log|A|)")
        entropy_target = float(l.entropy_target_mult) * math.log(int(num_actions))
    actor_lr = a.lr if a.lr is not None else r.lr
    return Hyper(
        obs_dim=int(env.obs_dim), action_dim=int(env.action_dim), num_envs=r.num_envs,
        num_steps=r.num_steps, num_minibatches=r.num_minibatches, num_epochs=r.num_epochs,
        gamma=float(gamma), lam=l.lam, v_min=float(v_min), v_max=float(v_max),
        num_bins=c.num_bins if c.loss == "hlgauss" else 1,
        sigma=derived.hlgauss_sigma(v_min, v_max, c.num_bins, c.sigma_ratio),
        value_kind=c.loss, aux_mult=c.aux_loss_mult, min_std=a.min_std,
        kl_target=l.kl_target, kl_mode=l.kl_mode, kl_samples=l.kl_samples,
        entropy_target=entropy_target,
        normalize_obs=e.normalize_obs and not getattr(env, "pixels", False), actor_lr=actor_lr,
        critic_lr=c.lr if c.lr is not None else r.lr,
        multiplier_lr=l.multiplier_lr if l.multiplier_lr is not None else actor_lr,
        max_grad_norm=r.max_grad_norm,
        multiplier_max_grad_norm=(l.multiplier_max_grad_norm
                                  if l.multiplier_max_grad_norm is not None else r.max_grad_norm),
        actor_gradient=a.gradient, score_samples=l.score_samples, ppo_clip=l.ppo_clip,
        log_beta_min=_log_floor(l.beta_min), log_alpha_min=_log_floor(l.alpha_min),
        alpha_min_fade_iterations=(l.alpha_min_fade_steps / derived.env_steps_per_iteration(
            r.num_envs, r.num_steps, e.action_repeat) if l.alpha_min_fade_steps else 0.0),
    )
