"""Vectorised JAX environments: the :class:`~reppo_jax.envs.base.VecEnv` interface (the
functional protocol user envs implement), the mujoco_playground adapter (``dmc/`` and
``playground/`` suites; :func:`wrap_env` for any single ``MjxEnv``-like env), MinAtar, Atari,
user envs registered with ``reppo_common.registry.register`` and analytic toy envs.

``make_env("dmc/CartpoleBalance", num_envs, ...)`` / ``make_env("toy/Bandit", num_envs, ...)``
dispatch on the ``suite/`` prefix (a bare name means ``dmc``); ``module:suite/Name`` and
unknown suites go through the registry. See docs/envs.md.
"""

from __future__ import annotations

from reppo_jax.envs.base import StepOutput, VecEnv, VecEnvState

__all__ = ["StepOutput", "VecEnv", "VecEnvState", "make_env", "make_dmc_env", "make_toy_env",
           "make_minatar_env", "supports_env", "wrap_env"]

_BUILTIN = ("dmc", "toy", "minatar", "atari")


def wrap_env(*args, **kwargs):
    """See :func:`reppo_jax.envs.playground.wrap_env`."""
    from reppo_jax.envs.playground import wrap_env as _wrap

    return _wrap(*args, **kwargs)


def make_dmc_env(*args, **kwargs):
    from reppo_jax.envs.dmc import make_dmc_env as _make

    return _make(*args, **kwargs)


def make_toy_env(*args, **kwargs):
    from reppo_jax.envs.toy import make_toy_env as _make

    return _make(*args, **kwargs)


def make_minatar_env(*args, **kwargs):
    from reppo_jax.envs.minatar import make_minatar_env as _make

    return _make(*args, **kwargs)


def supports_env(name: str) -> bool:
    suite, _, task = name.rpartition("/")
    suite = suite or "dmc"
    if ":" in name or suite not in _BUILTIN:
        from reppo_common.errors import UserError
        from reppo_common.registry import resolve_env

        try:
            return "jax" in resolve_env(name).backends
        except (UserError, ImportError):
            return False
    if suite == "toy":
        return task in ("Bandit", "BanditTerminate", "DiscreteBandit")
    if suite == "dmc":
        try:
            from reppo_jax.envs.dmc import dmc_task_names

            return task in dmc_task_names()
        except ImportError:
            return False
    if suite == "minatar":
        from reppo_jax.envs.minatar import GAMES

        return task in GAMES
    if suite == "atari":
        from reppo_jax.envs.atari import atari_available

        return atari_available()
    return False


def make_env(name: str, num_envs: int, *, max_episode_steps: int | None = None,
             action_repeat: int = 1, physics_impl: str = "jax",
             random_episode_offsets: bool = True, **kwargs) -> VecEnv:
    """Build a VecEnv from ``suite/Task`` ("dmc/CartpoleBalance", "toy/Bandit",
    "toy/BanditTerminate")."""
    suite, _, task = name.rpartition("/")
    suite = suite or "dmc"
    if suite == "playground":
        from reppo_jax.envs.playground import make_playground_env

        return make_playground_env(task, num_envs, impl=physics_impl,
                                   max_episode_steps=max_episode_steps,
                                   action_repeat=action_repeat,
                                   random_episode_offsets=random_episode_offsets, **kwargs)
    if ":" in name or suite not in _BUILTIN:
        from reppo_common.registry import resolve_env
        from reppo_jax.envs.registered import make_registered_env

        return make_registered_env(resolve_env(name), num_envs,
                                   max_episode_steps=max_episode_steps,
                                   random_episode_offsets=random_episode_offsets,
                                   action_repeat=action_repeat)
    if suite == "dmc":
        return make_dmc_env(task, num_envs, impl=physics_impl, max_episode_steps=max_episode_steps,
                            action_repeat=action_repeat,
                            random_episode_offsets=random_episode_offsets, **kwargs)
    if suite == "toy":
        if action_repeat != 1:
            raise ValueError("toy envs do not support action_repeat")
        if task == "DiscreteBandit":
            from reppo_jax.envs.toy_discrete import make_discrete_bandit

            if max_episode_steps is not None:
                kwargs["max_episode_steps"] = max_episode_steps
            return make_discrete_bandit(num_envs, random_episode_offsets=random_episode_offsets,
                                        **kwargs)
        if task == "Bandit":
            kwargs.setdefault("terminate_prob", 0.0)
        elif task == "BanditTerminate":
            kwargs.setdefault("terminate_prob", 0.1)
        else:
            raise ValueError(f"unknown toy task {task!r}")
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = max_episode_steps
        return make_toy_env(num_envs, random_episode_offsets=random_episode_offsets, **kwargs)
    if suite == "minatar":
        if action_repeat != 1:
            raise ValueError("minatar envs do not support action_repeat")
        return make_minatar_env(task, num_envs, max_episode_steps=max_episode_steps,
                                random_episode_offsets=random_episode_offsets)
    if suite == "atari":
        from reppo_jax.envs.atari import make_atari_env

        if action_repeat != 1:
            raise ValueError("atari envs use the ALE v5 frame skip of 4; action_repeat must be 1")
        # training envs (random offsets requested) clip rewards; evaluation envs score raw
        return make_atari_env(task, num_envs, max_episode_steps=max_episode_steps,
                              clip_rewards=random_episode_offsets, seed=kwargs.get("seed", 0))
    raise ValueError(f"unsupported env suite {suite!r} in {name!r}")
