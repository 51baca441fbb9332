"""The D-REPPO trainer: ``reppo_jax.train.Trainer``'s interface for a discrete action space.

``reppo_jax.train.make_trainer`` builds one of these when the env (or, without one, the env
registry) says the action space is discrete; ``reppo_jax.train.train`` then runs it unchanged.
Networks: ``reppo_jax.discrete.networks``; rollout, update and iteration:
``reppo_jax.discrete.agent``.
"""

from __future__ import annotations

import numpy as np

from reppo_common.errors import UserError
from reppo_jax.checkpoint import guard_iteration
from reppo_jax.discrete import agent as DA
from reppo_jax.discrete.networks import canonical_init, make_nets, torso_of
from reppo_jax.train import Trainer, enable_compilation_cache, make_env, refuse_torch_options
from spec import derived, hyper


class DiscreteTrainer(Trainer):
    """``reppo_jax.train.Trainer`` for a discrete action space: the same interface (``init``,
    ``iteration``, ``guarded_iteration``, ``evaluate``, ``steps_per_iteration``, ``parallel``)
    and the same programs (``Trainer._build_programs``: data-parallel over ``run.devices``
    exactly as the continuous agent, evaluation on one device), built from the D-REPPO agent
    (``reppo_jax.discrete.agent``) with a Nature-CNN torso for pixel envs.

    Host-stepped envs (``env.host``, e.g. Atari via envpool) get the host-loop versions
    instead, on one device: the env is stepped from Python, outside any jitted program, so
    there is no device layout to split it over. An explicit ``run.devices`` > 1 is a UserError
    for them; the default (None: all visible devices) means one device there."""

    def __post_init__(self) -> None:
        refuse_torch_options(self.config)
        enable_compilation_cache()
        cfg = self.config
        if self.env is None:
            self.env = make_env(cfg, cfg.rollout.num_envs)
        host = bool(getattr(self.env, "host", False))
        if host and (cfg.run.devices or 1) > 1:
            raise UserError(f"run.devices={cfg.run.devices}: {cfg.env.name} is stepped on the "
                            f"host (outside the jitted iteration), so it cannot be split over "
                            f"devices; use --devices 1")
        if self.eval_env is None:
            self.eval_env = make_env(cfg, cfg.run.eval_episodes, evaluation=True)
        self.h = hyper.resolve(cfg, self.env)
        self.torso = torso_of(self.env)
        self.nets = make_nets(cfg, self.h, self.torso)
        if host:
            self.iteration = DA.make_host_iteration(self.nets, self.h, self.env)
            self.guarded_iteration = guard_iteration(self.iteration)
            self._evaluate = DA.make_host_evaluate(self.nets, self.h, self.eval_env,
                                                   self.eval_env.max_episode_steps,
                                                   eval_policy=cfg.run.eval_policy)
        else:
            self._build_programs(DA.make_iteration, DA.make_evaluate)
        self.steps_per_iteration = derived.env_steps_per_iteration(
            cfg.rollout.num_envs, cfg.rollout.num_steps, cfg.env.action_repeat)

    def canonical_init(self, seed: int) -> dict[str, np.ndarray]:
        """Initial weights in the discrete canonical layout (with this env's torso)."""
        return canonical_init(self.config, self.h, seed, self.torso)
