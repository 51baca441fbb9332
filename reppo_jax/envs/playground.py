"""mujoco_playground's locomotion and manipulation suites (``playground/<Name>``) and
:func:`wrap_env`, which vectorises any single functional env — a playground ``MjxEnv``, including
one a user defines — with reppo's auto-reset and episode bookkeeping.

Both go through :class:`reppo_jax.envs.dmc.PlaygroundVecEnv`, the adapter of the DMC suite, so
truncation (agent-step time limit with random first-episode offsets), termination (the env's
``done``), auto-reset with the true final observation and action clipping to ``[-1, 1]`` are
exactly those of ``dmc/``. Dict observations (locomotion: ``{"state", "privileged_state"}``) feed
the ``obs_key`` entry (default ``"state"``, what the deployed policy sees) to actor and critic.
"""

from __future__ import annotations

import subprocess
from typing import Any

from reppo_common.errors import UserError
from reppo_jax.envs.dmc import PlaygroundVecEnv, load_playground_env


def playground_task_names() -> tuple[str, ...]:
    """The locomotion and manipulation task names of the installed mujoco_playground."""
    from mujoco_playground import registry

    return tuple(registry.locomotion.ALL_ENVS) + tuple(registry.manipulation.ALL_ENVS)


def wrap_env(env: Any, num_envs: int, *, max_episode_steps: int | None = None,
             reward_range: tuple[float, float] | None = None, obs_key: str | None = None,
             action_repeat: int = 1, random_episode_offsets: bool = True,
             reset_strategy: str = "fresh") -> PlaygroundVecEnv:
    """A :class:`reppo_jax.envs.VecEnv` over ``num_envs`` copies of the single functional env
    ``env`` (a mujoco_playground ``MjxEnv`` or anything with its duck type: ``observation_size``,
    ``action_size``, pure ``reset(key)`` / ``step(state, action)`` returning a state with ``obs``,
    ``reward``, ``done``). ``max_episode_steps`` defaults to ``env._config.episode_length``;
    ``reward_range`` is the per-step reward bound (None: declare v_min/v_max instead)."""
    return PlaygroundVecEnv(env, num_envs, max_episode_steps=max_episode_steps,
                            action_repeat=action_repeat,
                            random_episode_offsets=random_episode_offsets,
                            reset_strategy=reset_strategy, obs_key=obs_key,
                            reward_range=reward_range)


def make_playground_env(task: str, num_envs: int, *, impl: str = "jax",
                        max_episode_steps: int | None = None, action_repeat: int = 1,
                        random_episode_offsets: bool = True, reset_strategy: str = "fresh",
                        reset_subset_size: int | None = None, obs_key: str | None = None,
                        config_overrides: dict | None = None) -> PlaygroundVecEnv:
    """``playground/<task>`` (locomotion or manipulation) with MJX ``impl`` (default the pure-JAX
    one, which runs on CPU). The value support of these tasks is declared in the registry, so
    the adapter's ``reward_range`` is None."""
    if task.startswith("playground/"):
        task = task[len("playground/"):]
    try:
        env = load_playground_env(task, impl=impl, config_overrides=config_overrides)
    except subprocess.CalledProcessError:
        from mujoco_playground._src.mjx_env import MENAGERIE_PATH

        raise UserError(f"playground/{task} needs the robot models of mujoco_menagerie, which "
                        f"mujoco_playground could not download (git clone failed; offline?); "
                        f"put a checkout of google-deepmind/mujoco_menagerie at "
                        f"{MENAGERIE_PATH}") from None
    return PlaygroundVecEnv(env, num_envs, max_episode_steps=max_episode_steps,
                            action_repeat=action_repeat,
                            random_episode_offsets=random_episode_offsets,
                            reset_strategy=reset_strategy, reset_subset_size=reset_subset_size,
                            obs_key=obs_key, reward_range=None)
