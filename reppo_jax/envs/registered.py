"""Build a user env registered with ``reppo_common.registry.register`` (``make_jax``) and check
it against its declared facts (mirrors ``reppo_torch.envs.registered``).

``make_jax(num_envs)`` may return

* a :class:`reppo_jax.envs.base.VecEnv` that keeps the functional contract itself (batched pure
  ``reset(key)`` / ``step(state, action, key=None)``, auto-reset with ``final_obs``); or
* a single functional env (a mujoco_playground ``MjxEnv`` or its duck type), which
  :func:`reppo_jax.envs.playground.wrap_env` vectorises with the declared time limit.

The env's shapes, dtypes, batch size, episode length, reward range and action bounds are checked
against the facts without running it (``jax.eval_shape``); a mismatch is a one-line UserError.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from reppo_common.errors import UserError
from reppo_common.registry import EnvSpec, check_declared_facts


def _shape(name: str, what: str, x: Any, shape: tuple[int, ...], kind: str) -> None:
    dtype = jnp.dtype(x.dtype)
    ok = {"float": jnp.issubdtype(dtype, jnp.floating), "bool": dtype == jnp.bool_,
          "int": jnp.issubdtype(dtype, jnp.integer)}[kind]
    if tuple(x.shape) != shape or not ok:
        raise UserError(f"{name}: {what} is {dtype}{list(x.shape)}, expected {kind}{list(shape)}")


def check_vec_env(env: Any, spec: EnvSpec, num_envs: int, max_episode_steps: int) -> None:
    """Validate a JAX VecEnv against the declared facts: attributes, then the shapes and dtypes
    of ``reset`` and ``step`` (abstractly, with ``jax.eval_shape``)."""
    name = spec.full_name
    check_declared_facts(env, spec, num_envs, max_episode_steps, factory="make_jax",
                         accepted="a reppo_jax VecEnv nor a playground-style env",
                         attrs=("obs_dim", "action_dim", "num_envs", "max_episode_steps",
                                "reset", "step"))
    low, high = getattr(env, "action_low", -1.0), getattr(env, "action_high", 1.0)
    if float(jnp.min(jnp.asarray(low))) != -1.0 or float(jnp.max(jnp.asarray(high))) != 1.0:
        raise UserError(f"{name}: actions must lie in [-1, 1] (the tanh policy's range), the env "
                        f"declares [{low}, {high}]; rescale inside the env")
    n, d, a = num_envs, int(env.obs_dim), int(env.action_dim)
    state, obs = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    _shape(name, "reset's observation", obs, (n, d), "float")
    action = jax.ShapeDtypeStruct((n, a), jnp.float32)
    new_state, out = jax.eval_shape(env.step, state, action)
    for what, x, shape, kind in (("step's obs", out.obs, (n, d), "float"),
                                 ("step's final_obs", out.final_obs, (n, d), "float"),
                                 ("step's reward", out.reward, (n,), "float"),
                                 ("step's terminated", out.terminated, (n,), "bool"),
                                 ("step's truncated", out.truncated, (n,), "bool")):
        _shape(name, what, x, shape, kind)
    for key in ("episode_return", "episode_length"):
        if key not in out.info:
            raise UserError(f"{name}: step's info lacks {key!r} (see reppo_jax.envs.base)")
    if jax.tree.structure(new_state) != jax.tree.structure(state) or any(
            (x.shape, x.dtype) != (y.shape, y.dtype)
            for x, y in zip(jax.tree.leaves(new_state), jax.tree.leaves(state))):
        raise UserError(f"{name}: step must return a state of the same pytree type (structure, "
                        f"shapes, dtypes) as reset's, so the rollout scan compiles once")


def make_registered_env(spec: EnvSpec, num_envs: int, *, max_episode_steps: int | None = None,
                        random_episode_offsets: bool = True, action_repeat: int = 1) -> Any:
    """The JAX VecEnv of the registered env ``spec``, checked against its facts."""
    from reppo_jax.envs.playground import wrap_env

    factory = spec.factories.get("jax")
    if factory is None:
        raise UserError(f"{spec.full_name} has no JAX factory (register it with make_jax=...)")
    steps = int(max_episode_steps or spec.max_episode_steps)
    env = factory(num_envs)
    if hasattr(env, "observation_size") and hasattr(env, "action_size"):  # one functional env
        env = wrap_env(env, num_envs, max_episode_steps=steps, reward_range=spec.reward_range,
                       action_repeat=action_repeat, random_episode_offsets=random_episode_offsets)
    elif action_repeat != 1:
        raise UserError(f"{spec.full_name}: env.action_repeat needs a single env for wrap_env")
    check_vec_env(env, spec, num_envs, steps)
    return env
