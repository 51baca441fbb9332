"""DM Control Suite (mujoco_playground) envs for the torch backend: the same ``dmc/<Task>``
envs as the JAX port, so both backends can be compared on the same environment.

The simulator is the JAX adapter ``reppo_jax.envs.dmc.PlaygroundVecEnv`` (MJX physics, vmapped,
auto-reset with the true final observation, random episode offsets, "fresh"/"cached" reset
strategies) driven through :class:`reppo_torch.envs.jax_bridge.JaxBridgeEnv`: jitted reset and
step, tensors handed over with DLPack in both directions. Reusing the JAX adapter, rather than a
second implementation of the auto-reset, is deliberate: the environment is then identical in
both backends, down to the initial states for a given seed. (This is the one place where
``reppo_torch`` imports ``reppo_jax``: playground is a JAX simulator, so DMC in torch needs jax
installed; the toy env and ManiSkill do not.)
"""

from __future__ import annotations

import torch

from reppo_torch.envs.jax_bridge import JaxBridgeEnv


def dmc_task_names() -> tuple[str, ...]:
    from reppo_jax.envs.dmc import dmc_task_names as names

    return names()


def make_dmc_env(task: str, num_envs: int, *, impl: str = "jax",
                 max_episode_steps: int | None = None, action_repeat: int = 1,
                 random_episode_offsets: bool = True, reset_strategy: str = "fresh",
                 reset_subset_size: int | None = None, config_overrides: dict | None = None,
                 device: str | torch.device | None = None) -> JaxBridgeEnv:
    """A torch VecEnv over ``reppo_jax.envs.dmc.make_dmc_env(task, num_envs, ...)`` (same
    arguments); ``device`` is the torch device of the tensors (default: JAX's device)."""
    from reppo_jax.envs.dmc import make_dmc_env as make_jax

    env = make_jax(task, num_envs, impl=impl, max_episode_steps=max_episode_steps,
                   action_repeat=action_repeat, random_episode_offsets=random_episode_offsets,
                   reset_strategy=reset_strategy, reset_subset_size=reset_subset_size,
                   config_overrides=config_overrides)
    return JaxBridgeEnv(env, device=device)
