"""Vectorised torch environments (:class:`~reppo_torch.envs.base.VecEnv`): DMC through the
JAX playground adapter, ManiSkill3, and an analytic toy env.

``make_env("dmc/CartpoleBalance", num_envs, ...)``, ``make_env("maniskill/PushCube-v1", ...)``,
``make_env("toy/Bandit", ...)`` dispatch on the ``suite/`` prefix (a bare name means ``dmc``),
as ``reppo_jax.envs.make_env`` does. Suite modules are imported lazily, so a missing simulator
only matters for its own suite.

ManiSkill lives in ``reppo_torch.envs.maniskill``, which provides
``make_maniskill_env(task, num_envs, *, max_episode_steps, physics_impl,
random_episode_offsets, device, **kwargs)`` and ``maniskill_task_names()``.
"""

from __future__ import annotations

import torch

from reppo_torch.envs.base import StepOutput, VecEnv

__all__ = ["StepOutput", "VecEnv", "make_env", "supports_env"]

TOY_TASKS = ("Bandit", "BanditTerminate")


def _split(name: str) -> tuple[str, str]:
    suite, _, task = name.rpartition("/")
    return suite or "dmc", task


def supports_env(name: str) -> bool:
    """True if ``suite/Task`` has a torch adapter whose simulator is installed."""
    suite, task = _split(name)
    try:
        if suite == "toy":
            return task in TOY_TASKS
        if suite == "dmc":
            from reppo_torch.envs.dmc import dmc_task_names

            return task in dmc_task_names()
        if suite == "maniskill":
            from reppo_torch.envs.maniskill import maniskill_task_names

            return task in maniskill_task_names()
    except ImportError:
        return False
    return False


def make_env(name: str, num_envs: int, *, max_episode_steps: int | None = None,
             action_repeat: int = 1, physics_impl: str = "jax",
             random_episode_offsets: bool = True, device: str | torch.device | None = None,
             **kwargs) -> VecEnv:
    """Build a torch VecEnv from ``suite/Task``; its tensors live on ``device`` (default: the
    simulator's own device)."""
    suite, task = _split(name)
    if suite == "dmc":
        from reppo_torch.envs.dmc import make_dmc_env

        return make_dmc_env(task, num_envs, impl=physics_impl,
                            max_episode_steps=max_episode_steps, action_repeat=action_repeat,
                            random_episode_offsets=random_episode_offsets, device=device,
                            **kwargs)
    if suite == "toy":
        from reppo_torch.envs.toy import make_toy_env

        if action_repeat != 1:
            raise ValueError("toy envs do not support action_repeat")
        if task not in TOY_TASKS:
            raise ValueError(f"unknown toy task {task!r}")
        kwargs.setdefault("terminate_prob", 0.1 if task == "BanditTerminate" else 0.0)
        kwargs.pop("reset_strategy", None)
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = max_episode_steps
        return make_toy_env(num_envs, random_episode_offsets=random_episode_offsets,
                            device=device or "cpu", **kwargs)
    if suite == "maniskill":
        from reppo_torch.envs.maniskill import make_maniskill_env

        if action_repeat != 1:
            raise ValueError("maniskill envs do not support action_repeat")
        return make_maniskill_env(task, num_envs, max_episode_steps=max_episode_steps,
                                  physics_impl=physics_impl,
                                  random_episode_offsets=random_episode_offsets, device=device,
                                  **kwargs)
    raise ValueError(f"unsupported env suite {suite!r} in {name!r}")
