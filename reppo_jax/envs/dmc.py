"""mujoco_playground DM Control Suite adapter implementing :class:`reppo_jax.envs.base.VecEnv`.

``make_dmc_env("CartpoleBalance", 128)`` (the ``dmc/`` prefix is optional) loads the playground
task with ``impl`` set explicitly (playground defaults to ``"warp"``, which is 10-90x slower on
CPU than the pure-JAX ``"jax"`` MJX implementation), and wraps it with our own small wrapper:

* vmapped reset/step over ``num_envs`` envs;
* action clipping to ``[-1, 1]`` (playground DMC actuators use ``[-1, 1]`` ctrl ranges);
* ``action_repeat``: the action is applied ``action_repeat`` times and rewards are summed
  (rewards after an in-repeat termination are dropped); the default ``max_episode_steps`` is
  then ``episode_length // action_repeat`` agent steps (time limits count agent steps);
* termination = the env's own ``state.done`` (in DMC only NaN physics), truncation = time limit;
* auto-reset with the true next observation kept in ``StepOutput.final_obs``;
* episode return/length bookkeeping; random initial episode offsets (``random_episode_offsets``)
  which shorten each env's *first* episode to desynchronise the parallel truncations;
* carry-type stability: the playground state is cast to the dtypes ``env.step`` produces and
  stripped of weak types, so a scan carrying :class:`VecEnvState` compiles once.

Reset strategies (``reset_strategy``):

* ``"fresh"`` (default): a done env restarts from a freshly sampled initial state with an
  independent key (exact semantics). A vmapped playground reset costs about as much as a step
  (measured: 192k resets/s vs 197k steps/s, CartpoleBalance, 128 envs, CPU), so resetting all envs
  every step would halve throughput. Instead a ``lax.while_loop`` resets only the done envs, in
  chunks of K (``reset_subset_size``, default ``max(4, 2*ceil(N/max_episode_steps))``): zero
  iterations on most steps, one when up to K envs ended. The reset is traced once, which keeps
  compile time low. (Under an outer ``vmap`` the loop runs until every batch member is done.)
* ``"cached"``: playground/brax behaviour, each env restarts from the initial state it drew at
  ``reset`` (no reset cost, but every episode of an env starts from the same state).

Measured with ``benchmarks/bench_sim.py`` (CartpoleBalance, 128 envs, 200-step scan, CPU): see that
tool's docstring.

Observations: with ``vision=False`` (the default) every playground DMC task returns a flat
array observation; this is asserted, and observations are cast to float32. ``reward_range`` is
``(0.0, 1.0)`` (per-step DMC rewards; with action_repeat k it is ``(0, k)``); other envs pass their
own (``None`` = unknown, the value support is then declared).
NaN physics: final observations and rewards are passed through ``nan_to_num`` so a diverged sim
cannot poison a training batch (the step is reported as ``terminated``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from reppo_common.errors import UserError
from reppo_jax.envs.base import (
    StepOutput,
    VecEnvState,
    cast_like,
    episode_bookkeeping,
    initial_state,
    select_where,
    step_keys,
)

RESET_STRATEGIES = ("fresh", "cached")


def dmc_task_names() -> tuple[str, ...]:
    from mujoco_playground import registry

    return tuple(registry.dm_control_suite.ALL_ENVS)


def load_playground_env(task: str, *, impl: str = "jax", config_overrides: dict | None = None):
    """Load a playground DMC task with ``impl`` selected explicitly (no wrappers)."""
    from mujoco_playground import registry

    if task.startswith("dmc/"):
        task = task[len("dmc/"):]
    overrides = {"impl": impl}
    overrides.update(config_overrides or {})
    return registry.load(task, config_overrides=overrides)


class PlaygroundVecEnv:
    """Vectorised mujoco_playground env (DMC, locomotion, manipulation or any user ``MjxEnv``);
    see module docstring. Construct via :func:`make_dmc_env`,
    ``reppo_jax.envs.playground.make_playground_env`` or ``reppo_jax.envs.wrap_env``.

    Besides playground's ``MjxEnv`` it accepts any single functional env with the same duck
    type: ``observation_size`` (int, or a dict of shapes when ``obs_key`` picks one entry of a
    dict observation), ``action_size``, pure ``reset(key) -> state`` and ``step(state, action) ->
    state`` where ``state`` has ``obs``, ``reward`` and ``done``."""

    reward_range: tuple[float, float]

    def __init__(
        self,
        env: Any,
        num_envs: int,
        *,
        max_episode_steps: int | None = None,
        action_repeat: int = 1,
        random_episode_offsets: bool = True,
        reset_strategy: str = "fresh",
        reset_subset_size: int | None = None,
        obs_key: str | None = None,
        reward_range: tuple[float, float] | None = (0.0, 1.0),
    ):
        if reset_strategy not in RESET_STRATEGIES:
            raise ValueError(f"reset_strategy must be one of {RESET_STRATEGIES}, got {reset_strategy!r}")
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        obs_size = env.observation_size
        if isinstance(obs_size, Mapping):
            if obs_key is None:
                obs_key = "state" if "state" in obs_size else None
            if obs_key not in obs_size:
                raise UserError(f"the env's observation is a dict with keys {sorted(obs_size)}; "
                                f"pick the policy's entry with obs_key=")
            obs_size = obs_size[obs_key]
        elif obs_key is not None:
            raise UserError(f"obs_key={obs_key!r} given but the observation is not a dict")
        self.obs_key = obs_key
        if isinstance(obs_size, (tuple, list)) and len(obs_size) == 1:
            obs_size = obs_size[0]
        if not isinstance(obs_size, int):
            raise ValueError(
                f"expected a flat array observation (vision=False), got observation_size={obs_size!r}"
            )
        self.env = env
        self.num_envs = int(num_envs)
        self.obs_dim = int(obs_size)
        self.action_dim = int(env.action_size)
        self.action_repeat = int(action_repeat)
        if max_episode_steps is None:
            config = getattr(env, "_config", None)
            if config is None or "episode_length" not in config:
                raise UserError(f"{type(env).__name__} has no config.episode_length; pass "
                                f"max_episode_steps")
            max_episode_steps = int(config.episode_length) // self.action_repeat
        self.max_episode_steps = int(max_episode_steps)
        if self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        self.random_episode_offsets = bool(random_episode_offsets)
        self.reset_strategy = reset_strategy
        if reset_subset_size is None:
            # dones per step ~ Binomial(N, 1/T) with random offsets; 2x the mean, at least 4.
            reset_subset_size = max(4, 2 * -(-self.num_envs // self.max_episode_steps))
        self.reset_subset_size = int(min(max(1, reset_subset_size), self.num_envs))
        # per simulator step (DMC: [0, 1]); an agent step sums action_repeat of them
        self.reward_range = None if reward_range is None else (
            float(reward_range[0]) * self.action_repeat, float(reward_range[1]) * self.action_repeat)
        self.action_low = -1.0
        self.action_high = 1.0
        self._sim_types = None

    def _obs(self, sim) -> jax.Array:
        """The policy's observation (the ``obs_key`` entry of a dict observation), float32."""
        obs = sim.obs if self.obs_key is None else sim.obs[self.obs_key]
        return obs.astype(jnp.float32)

    # -- raw batched playground calls -------------------------------------------------------
    def _raw_reset(self, key: jax.Array):
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self.env.reset)(keys)

    def _raw_step(self, sim, action):
        return jax.vmap(self.env.step)(sim, action)

    def _normalise(self, sim):
        """Cast a reset state to the exact pytree type that ``env.step`` returns."""
        if self._sim_types is None:
            act = jax.ShapeDtypeStruct((self.num_envs, self.action_dim), jnp.float32)
            self._sim_types = jax.eval_shape(self._raw_step, sim, act)
        return cast_like(sim, self._sim_types)

    def _reset_sim(self, key):
        return self._normalise(self._raw_reset(key))

    def _fresh_reset_where(self, done, key, sim):
        """Replace the sim state of done envs by fresh, independently keyed reset states.

        A ``lax.while_loop`` resets the done envs in chunks of K (``reset_subset_size``) and
        scatters them into their slots: zero iterations when nothing ended (the common step),
        one when up to K ended, more only when many envs end together. The playground reset is
        traced once (a switch over subset/full branches traced it twice and doubled compile
        time)."""
        n, k_sub = self.num_envs, self.reset_subset_size
        # done slots first, then padding with the out-of-range index n (dropped by the scatter),
        # long enough that every chunk's slice stays in bounds
        slots = jnp.nonzero(done, size=n + k_sub, fill_value=n)[0]
        num_done = jnp.sum(done.astype(jnp.int32))

        def cond(c):
            return c[0] < num_done

        def body(c):
            start, key, sim = c
            key, k = jax.random.split(key)
            idx = jax.lax.dynamic_slice(slots, (start,), (k_sub,))
            fresh = cast_like(jax.vmap(self.env.reset)(jax.random.split(k, k_sub)), sim)
            sim = jax.tree.map(lambda s, f: s.at[idx].set(f, mode="drop"), sim, fresh)
            return start + k_sub, key, sim

        return jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), key, sim))[2]

    # -- VecEnv API -----------------------------------------------------------------------------
    def reset(self, key: jax.Array) -> tuple[VecEnvState, jax.Array]:
        k_reset, k_offset, k_next = jax.random.split(key, 3)
        sim = self._reset_sim(k_reset)
        n = self.num_envs
        state = initial_state(sim, k_next, k_offset, n, self.max_episode_steps,
                              self.random_episode_offsets,
                              extra=sim if self.reset_strategy == "cached" else None)
        return state, self._obs(sim)

    def step(
        self, state: VecEnvState, action: jax.Array, key: jax.Array | None = None
    ) -> tuple[VecEnvState, StepOutput]:
        next_key, key = step_keys(state, key)
        action = jnp.clip(jnp.asarray(action, jnp.float32), self.action_low, self.action_high)
        sim = state.sim

        if self.action_repeat == 1:
            sim = self._raw_step(sim, action)
            reward = sim.reward.astype(jnp.float32)
            terminated = sim.done > 0.5
        else:
            def body(carry, _):
                s, r, d = carry
                s = cast_like(self._raw_step(s, action), s)
                r = r + jnp.where(d, 0.0, s.reward.astype(jnp.float32))
                return (s, r, d | (s.done > 0.5)), None

            zeros = jnp.zeros((self.num_envs,), jnp.float32)
            falses = jnp.zeros((self.num_envs,), bool)
            (sim, reward, terminated), _ = jax.lax.scan(
                body, (sim, zeros, falses), None, length=self.action_repeat
            )
        sim = cast_like(sim, state.sim)
        reward = jnp.nan_to_num(reward)
        final_obs = jnp.nan_to_num(self._obs(sim))

        terminated, truncated, done, step_count, ep_ret, ep_len, info = episode_bookkeeping(
            state, reward, terminated, self.max_episode_steps
        )

        if self.reset_strategy == "cached":
            new_sim = select_where(done, state.extra, sim)
        else:
            new_sim = self._fresh_reset_where(done, key, sim)
        new_sim = cast_like(new_sim, state.sim)
        obs = self._obs(new_sim)
        new_state = VecEnvState(
            sim=new_sim,
            key=next_key,
            step_count=step_count,
            episode_return=ep_ret,
            episode_length=ep_len,
            extra=state.extra,
        )
        out = StepOutput(
            obs=obs,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            info=info,
        )
        return new_state, out


def make_dmc_env(
    task: str,
    num_envs: int,
    *,
    impl: str = "jax",
    max_episode_steps: int | None = None,
    action_repeat: int = 1,
    random_episode_offsets: bool = True,
    reset_strategy: str = "fresh",
    reset_subset_size: int | None = None,
    config_overrides: dict | None = None,
) -> PlaygroundVecEnv:
    """Build a vectorised playground DMC env (``task`` e.g. ``"CartpoleBalance"`` or
    ``"dmc/CartpoleBalance"``). ``max_episode_steps=None`` uses the task config's
    ``episode_length // action_repeat`` (1000 for DMC). Extra playground config keys
    (e.g. ``naconmax``/``njmax``) go in ``config_overrides``; only ``impl`` is overridden by
    default."""
    env = load_playground_env(task, impl=impl, config_overrides=config_overrides)
    return PlaygroundVecEnv(
        env,
        num_envs,
        max_episode_steps=max_episode_steps,
        action_repeat=action_repeat,
        random_episode_offsets=random_episode_offsets,
        reset_strategy=reset_strategy,
        reset_subset_size=reset_subset_size,
    )
