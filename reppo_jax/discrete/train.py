"""The D-REPPO trainer: ``reppo_jax.train.Trainer``'s interface for a discrete action space.

``reppo_jax.train.make_trainer`` builds one of these when the env (or, without one, the env
registry) says the action space is discrete; ``reppo_jax.train.train`` then runs it unchanged.
Networks: ``reppo_jax.discrete.networks``; rollout, update and iteration:
``reppo_jax.discrete.agent``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reppo_common.errors import UserError
from reppo_jax import agent as A
from reppo_jax.checkpoint import guard_iteration
from reppo_jax.discrete import agent as DA
from reppo_jax.discrete.networks import canonical_init, make_nets, torso_of
from reppo_jax.normalization import running_stats_update
from reppo_jax.train import Trainer, enable_compilation_cache, make_env, state_from_canonical
from spec import derived, hyper


class DiscreteTrainer(Trainer):
    """``reppo_jax.train.Trainer`` for a discrete action space: the same interface (``init``,
    ``iteration``, ``guarded_iteration``, ``evaluate``, ``steps_per_iteration``), built here
    from the config: hyperparameters, networks (with a Nature-CNN torso for pixel envs), the
    jitted iteration (plain and NaN-guarded) and the jitted evaluation; host-stepped
    envs (``env.host``, e.g. Atari) get the host-loop versions instead."""

    def __post_init__(self) -> None:
        enable_compilation_cache()
        cfg = self.config
        if (cfg.run.devices or 1) > 1:
            raise UserError(f"run.devices={cfg.run.devices}: multi-device training is "
                            f"implemented for continuous actions only, not D-REPPO "
                            f"({cfg.env.name}); use --devices 1")
        if self.env is None:
            self.env = make_env(cfg, cfg.rollout.num_envs)
        if self.eval_env is None:
            self.eval_env = make_env(cfg, cfg.run.eval_episodes, evaluation=True)
        self.h = hyper.resolve(cfg, self.env)
        self.torso = torso_of(self.env)
        self.nets = make_nets(cfg, self.h, self.torso)
        max_steps = self.eval_env.max_episode_steps
        if getattr(self.env, "host", False):
            self.iteration = DA.make_host_iteration(self.nets, self.h, self.env)
            self.guarded_iteration = guard_iteration(self.iteration)
            self._evaluate = DA.make_host_evaluate(self.nets, self.h, self.eval_env, max_steps,
                                                   eval_policy=cfg.run.eval_policy)
        else:
            self.iteration = jax.jit(DA.make_iteration(self.nets, self.h, self.env),
                                     donate_argnums=0)
            self.guarded_iteration = jax.jit(
                guard_iteration(DA.make_iteration(self.nets, self.h, self.env)),
                donate_argnums=0)
            self._evaluate = jax.jit(DA.make_evaluate(self.nets, self.h, self.eval_env,
                                                      max_steps, eval_policy=cfg.run.eval_policy))
        self.steps_per_iteration = derived.env_steps_per_iteration(
            cfg.rollout.num_envs, cfg.rollout.num_steps, cfg.env.action_repeat)

    def _fresh_carry(self, seed: int) -> A.Carry:
        """Initial carry (same key derivation as the continuous trainer, the discrete layout)."""
        key = jax.random.PRNGKey(seed)
        k_env, k_run = jax.random.split(key)
        state = state_from_canonical(self.h, canonical_init(self.config, self.h, seed,
                                                            self.torso))
        env_state, obs = self.env.reset(k_env)
        obs = jnp.asarray(obs)
        if self.h.normalize_obs:
            state = state._replace(obs_stats=running_stats_update(state.obs_stats, obs))
        return jax.tree.map(jnp.copy, A.Carry(state, env_state, obs, k_run))
