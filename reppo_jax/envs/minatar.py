"""gymnax MinAtar adapter implementing :class:`reppo_jax.envs.base.VecEnv` for discrete actions.

``make_minatar_env("Breakout", 64)`` (the ``minatar/`` prefix is optional) wraps gymnax's
``<Game>-MinAtar`` environment (Breakout, Asterix, SpaceInvaders, Freeway), pure JAX:

* vmapped ``step_env``/``reset_env`` over ``num_envs`` envs (gymnax's own ``step`` auto-resets
  and reports its own time limit; we call the un-reset transition and do both ourselves, so the
  true next observation is kept in ``StepOutput.final_obs`` and truncation follows the common
  bookkeeping, random first-episode offsets included);
* observations: the (10, 10, C) boolean channel image flattened to float32 ``(N, 100·C)`` for an
  MLP encoder (C = 4 Breakout, 4 Asterix, 6 SpaceInvaders, 7 Freeway);
* actions: int32 indices in ``[0, num_actions)``; ``num_actions`` (= ``action_dim``) is the
  minimal action set gymnax exposes (3 Breakout, 5 Asterix, 4 SpaceInvaders, 3 Freeway);
  ``discrete = True`` tells the trainer to build the D-REPPO agent;
* termination = the game's own terminal flag; truncation = ``max_episode_steps`` (gymnax's
  ``max_steps_in_episode``: 1000, Freeway 2500) counted by the adapter;
* every reset draws a fresh key (gymnax resets are cheap: all envs are reset every step and the
  done ones selected, as gymnax itself does).

Rewards are the game's (0/1 per step for all four games), ``reward_range = (0, 1)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from reppo_jax.envs.base import (
    StepOutput,
    VecEnvState,
    cast_like,
    episode_bookkeeping,
    initial_state,
    select_where,
    step_keys,
    strong,
)

GAMES = ("Breakout", "Asterix", "SpaceInvaders", "Freeway")


def minatar_task_names() -> tuple[str, ...]:
    return GAMES


def _load(game: str):
    try:
        import gymnax
    except ImportError as e:  # pragma: no cover - depends on the installed extras
        raise ImportError(f"minatar/{game} needs gymnax: pip install -e '.[atari]' ({e})") from e
    return gymnax.make(f"{game}-MinAtar")


class MinAtarVecEnv:
    """Vectorised gymnax MinAtar game; see the module docstring."""

    discrete = True
    reward_range = (0.0, 1.0)

    def __init__(self, game: str, num_envs: int, *, max_episode_steps: int | None = None,
                 random_episode_offsets: bool = False):
        if game.startswith("minatar/"):
            game = game[len("minatar/"):]
        if game not in GAMES:
            raise ValueError(f"unknown MinAtar game {game!r}; one of {', '.join(GAMES)}")
        self.game = game
        self.env, self.params = _load(game)
        self.num_envs = int(num_envs)
        self.obs_shape = tuple(self.env.observation_space(self.params).shape)
        self.obs_dim = int(jnp.prod(jnp.asarray(self.obs_shape)))
        self.num_actions = int(self.env.num_actions)
        self.action_dim = self.num_actions
        self.max_episode_steps = int(max_episode_steps if max_episode_steps is not None
                                     else self.params.max_steps_in_episode)
        self.random_episode_offsets = bool(random_episode_offsets)
        self._sim_type = None

    # -- helpers --------------------------------------------------------------------------------
    def _reset_sims(self, key):
        obs, sim = jax.vmap(self.env.reset_env, in_axes=(0, None))(
            jax.random.split(key, self.num_envs), self.params)
        return self._flat(obs), strong(sim)

    def _flat(self, obs):
        return obs.reshape(obs.shape[0], -1).astype(jnp.float32)

    # -- VecEnv API -----------------------------------------------------------------------------
    def reset(self, key: jax.Array) -> tuple[VecEnvState, jax.Array]:
        k_sim, k_off, k_next = jax.random.split(key, 3)
        obs, sim = self._reset_sims(k_sim)
        state = initial_state(sim, k_next, k_off, self.num_envs, self.max_episode_steps,
                              self.random_episode_offsets)
        return state, obs

    def step(self, state: VecEnvState, action: jax.Array, key: jax.Array | None = None
             ) -> tuple[VecEnvState, StepOutput]:
        next_key, key = step_keys(state, key)
        k_step, k_reset = jax.random.split(key)
        action = jnp.asarray(action).astype(jnp.int32)
        obs_st, sim_st, reward, terminated, _ = jax.vmap(
            self.env.step_env, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, self.num_envs), state.sim, action, self.params)
        sim_st = cast_like(sim_st, state.sim)
        final_obs = self._flat(obs_st)
        reward = reward.astype(jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        terminated, truncated, done, step_count, ep_ret, ep_len, info = episode_bookkeeping(
            state, reward, terminated, self.max_episode_steps)
        obs_re, sim_re = self._reset_sims(k_reset)
        sim = select_where(done, cast_like(sim_re, state.sim), sim_st)
        obs = jnp.where(done[:, None], obs_re, final_obs)
        new_state = VecEnvState(sim=sim, key=next_key, step_count=step_count,
                                episode_return=ep_ret, episode_length=ep_len)
        return new_state, StepOutput(obs=obs, reward=reward, terminated=terminated,
                                     truncated=truncated, final_obs=final_obs, info=info)


def make_minatar_env(game: str, num_envs: int, *, max_episode_steps: int | None = None,
                     random_episode_offsets: bool = False) -> MinAtarVecEnv:
    """The vectorised MinAtar game ``game`` ("Breakout", ... or "minatar/Breakout")."""
    return MinAtarVecEnv(game, num_envs, max_episode_steps=max_episode_steps,
                         random_episode_offsets=random_episode_offsets)
