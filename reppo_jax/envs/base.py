"""Vectorised, purely functional environment interface used by the JAX trainer.

Every environment adapter (``reppo_jax.envs.dmc``, ``reppo_jax.envs.toy``) exposes

    env.obs_dim, env.action_dim, env.num_envs, env.max_episode_steps, env.reward_range
    env.reset(key)                    -> (VecEnvState, obs)
    env.step(state, action, key=None) -> (VecEnvState, StepOutput)

Both functions are pure and jit/vmap/scan friendly; ``step`` keeps the pytree type of the state
exactly (same structure, shapes, dtypes, no weak types), so a ``lax.scan`` that carries it compiles
once.

Conventions
-----------
* Actions live in ``[-1, 1]^action_dim`` (tanh-squashed policy). Adapters clip actions to the
  environment's bounds (``[-1, 1]`` for every playground DMC task), so ``a = 2`` behaves like ``a = 1``.
* Observations are float32 ``(num_envs, obs_dim)``.
* Auto-reset: where an episode ended at this step (``terminated | truncated``), ``StepOutput.obs``
  is already the first observation of the next episode, while ``StepOutput.final_obs`` holds the
  true next observation x' of the transition (terminal or time-limit observation). Where the
  episode did not end, ``final_obs == obs``. Bootstrapping should use ``final_obs`` and mask with
  ``terminated`` only (truncation is a time limit, not an absorbing state).
* ``terminated`` comes from the environment itself; ``truncated`` is the time limit
  (``step_count >= max_episode_steps``) and is reported as False where ``terminated`` is True.
* ``info['episode_return']`` / ``info['episode_length']`` hold the return (sum of rewards) and
  length (adapter steps) of the episode including this step; they are meaningful where
  ``terminated | truncated`` (elsewhere they are the running partial values).
* Randomness for resets is carried in ``VecEnvState.key``; pass ``key`` to ``step`` to override.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp


class VecEnvState(NamedTuple):
    """Pytree state of ``num_envs`` parallel environments plus episode bookkeeping.

    sim: simulator state for all envs (batched along axis 0; adapter specific).
    key: PRNG key used for auto-resets (split every step).
    step_count: (N,) int32, time-limit counter of the current episode. With random episode
        offsets it starts at a random value, so it may exceed ``episode_length``.
    episode_return: (N,) float32, sum of rewards of the current episode so far.
    episode_length: (N,) int32, number of steps taken in the current episode so far.
    extra: adapter-specific pytree (e.g. cached reset states), or None.
    """

    sim: Any
    key: jax.Array
    step_count: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    extra: Any = None


class StepOutput(NamedTuple):
    """Result of one vectorised step; see the module docstring for the auto-reset convention."""

    obs: jax.Array  # (N, obs_dim) float32, after auto-reset
    reward: jax.Array  # (N,) float32
    terminated: jax.Array  # (N,) bool
    truncated: jax.Array  # (N,) bool
    final_obs: jax.Array  # (N, obs_dim) float32, true next observation
    info: dict  # 'episode_return' (N,) float32, 'episode_length' (N,) int32


@runtime_checkable
class VecEnv(Protocol):
    obs_dim: int
    action_dim: int
    num_envs: int
    max_episode_steps: int
    reward_range: tuple[float, float]

    def reset(self, key: jax.Array) -> tuple[VecEnvState, jax.Array]: ...

    def step(
        self, state: VecEnvState, action: jax.Array, key: jax.Array | None = None
    ) -> tuple[VecEnvState, StepOutput]: ...


def select_where(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Per-env select between two batched pytrees (leading axis = env axis)."""

    def sel(a, b):
        m = jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(b) - mask.ndim))
        return jnp.where(m, a, b)

    return jax.tree.map(sel, on_true, on_false)


def cast_like(tree: Any, like: Any) -> Any:
    """Cast every leaf of ``tree`` to the dtype of the matching leaf in ``like`` (arrays or
    ShapeDtypeStructs), stripping weak types, so pytrees are type-identical."""

    def cast(x, ref):
        # convert_element_type always yields a non-weak result; a no-op cast is free under jit.
        return jax.lax.convert_element_type(x, ref.dtype)

    return jax.tree.map(cast, tree, like)


def strong(tree: Any) -> Any:
    """Strip weak types from every leaf (keeps dtypes)."""
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.asarray(x).dtype), tree)


def initial_counters(
    key: jax.Array, num_envs: int, max_episode_steps: int, random_offsets: bool
) -> jax.Array:
    """Initial ``step_count``: zeros, or U{0..max_episode_steps-1} to desynchronise truncations
    (this shortens every env's first episode to ``max_episode_steps - offset`` steps)."""
    if random_offsets:
        return jax.random.randint(key, (num_envs,), 0, max_episode_steps, dtype=jnp.int32)
    return jnp.zeros((num_envs,), jnp.int32)


def initial_state(sim: Any, key: jax.Array, offset_key: jax.Array, num_envs: int,
                  max_episode_steps: int, random_offsets: bool, extra: Any = None) -> VecEnvState:
    """The state every adapter's ``reset`` returns: fresh episode counters (with random offsets
    from ``offset_key`` if asked) around the adapter's simulator state ``sim``."""
    return VecEnvState(
        sim=sim,
        key=key,
        step_count=initial_counters(offset_key, num_envs, max_episode_steps, random_offsets),
        episode_return=jnp.zeros((num_envs,), jnp.float32),
        episode_length=jnp.zeros((num_envs,), jnp.int32),
        extra=extra,
    )


def step_keys(state: VecEnvState, key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(key to carry in the next state, key for this step): split the carried key, or use the
    caller's ``key`` and carry the state's key unchanged."""
    if key is None:
        return tuple(jax.random.split(state.key))
    return state.key, key


def episode_bookkeeping(
    state: VecEnvState, reward: jax.Array, terminated: jax.Array, max_episode_steps: int
):
    """Advance counters for one step. Returns (terminated, truncated, done, step_count,
    episode_return, episode_length, info), counters already reset to 0 where done."""
    step_count = state.step_count + 1
    ep_ret = state.episode_return + reward
    ep_len = state.episode_length + 1
    truncated = (step_count >= max_episode_steps) & ~terminated
    done = terminated | truncated
    info = {"episode_return": ep_ret, "episode_length": ep_len}
    zero_i = jnp.zeros_like(step_count)
    step_count = jnp.where(done, zero_i, step_count)
    ep_ret = jnp.where(done, jnp.zeros_like(ep_ret), ep_ret)
    ep_len = jnp.where(done, zero_i, ep_len)
    return terminated, truncated, done, step_count, ep_ret, ep_len, info
