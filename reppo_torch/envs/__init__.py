"""Vectorised torch environments (:class:`~reppo_torch.envs.base.VecEnv`): DMC and the
playground locomotion/manipulation suites through the JAX adapter, ManiSkill3, any gymnasium
vector env (``gym/<id>``, :class:`~reppo_torch.envs.gym.GymVecEnv`), user envs registered with
``reppo_common.registry.register`` (``reppo_torch.envs.registered``), and an analytic toy env.

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

__all__ = ["StepOutput", "VecEnv", "GymVecEnv", "make_env", "supports_env"]


def __getattr__(name: str):
    if name == "GymVecEnv":  # lazy: gymnasium is only needed for gym/ and user envs
        from reppo_torch.envs.gym import GymVecEnv

        return GymVecEnv
    raise AttributeError(name)

TOY_TASKS = ("Bandit", "BanditTerminate")
_BUILTIN = ("dmc", "toy", "maniskill")


def _split(name: str) -> tuple[str, str]:
    suite, _, task = name.rpartition("/")
    return suite or "dmc", task


def supports_env(name: str) -> bool:
    """True if ``suite/Task`` has a torch adapter whose simulator is installed."""
    suite, task = _split(name)
    try:
        if ":" in name or suite not in _BUILTIN:  # gym/, playground/ and user suites
            from reppo_common.errors import UserError
            from reppo_common.registry import resolve_env

            try:
                spec = resolve_env(name)
            except UserError:
                return False
            return "torch" in spec.backends
        if suite == "toy":
            return task in TOY_TASKS
        if suite == "dmc":
            from reppo_torch.envs.dmc import dmc_task_names

            return task in dmc_task_names()
        if suite == "maniskill":
            import mani_skill  # noqa: F401  (the simulator must be installed)
            from reppo_common.errors import UserError
            from reppo_common.registry import resolve_env

            try:
                return resolve_env(name).suite == "maniskill"  # listed or registered ids
            except UserError:
                return False
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
    if ":" in name or suite not in (*_BUILTIN, "playground", "gym"):
        from reppo_common.registry import resolve_env
        from reppo_torch.envs.registered import make_registered_env

        if action_repeat != 1:
            raise ValueError("registered envs do not support action_repeat")
        return make_registered_env(resolve_env(name), num_envs,
                                   max_episode_steps=max_episode_steps,
                                   random_episode_offsets=random_episode_offsets, device=device)
    if suite == "gym":
        from reppo_common.registry import resolve_env
        from reppo_torch.envs.gym import make_gym_env

        if action_repeat != 1:
            raise ValueError("gym envs do not support action_repeat")
        spec = resolve_env(name)
        return make_gym_env(task, num_envs,
                            max_episode_steps=max_episode_steps or spec.max_episode_steps,
                            reward_range=spec.reward_range,
                            random_episode_offsets=random_episode_offsets, device=device)
    if suite == "playground":
        from reppo_jax.envs.playground import make_playground_env
        from reppo_torch.envs.jax_bridge import JaxBridgeEnv

        return JaxBridgeEnv(make_playground_env(
            task, num_envs, impl=physics_impl, max_episode_steps=max_episode_steps,
            action_repeat=action_repeat, random_episode_offsets=random_episode_offsets,
            **kwargs), device=device)
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
