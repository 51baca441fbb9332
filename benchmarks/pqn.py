"""PQN (Gallici et al., 2024, "Simplifying Deep Temporal Difference Learning") on MinAtar through
the maintained ``rejax`` package: the discrete-action baseline of ``benchmarks.suite``.

The algorithm is ``rejax.PQN`` (0.1.3, installed by the ``baselines`` extra) with PQN's
published MinAtar settings (:data:`PQN_MINATAR`): 128 envs x 32 steps, 32 minibatches, 2 epochs,
TD(λ = 0.65), Adam 5e-4, γ = 0.99, ε-greedy from 1 to 0.05 over the first 10% of the budget, no
observation normalisation. Two things are ours, in a few lines each:

* :class:`SizedPQN` overrides ``PQN.create_agent`` to set the width of the Q-network, which
  rejax hard-codes to (64, 64): default (128, 128), the size of PQN's own gymnax MLP; the network
  is otherwise rejax's (Dense + LayerNorm + ReLU layers, a linear head).
* :class:`DoneStep` adapts gymnax 1.0's ``step`` (obs, state, reward, terminated, truncated,
  info) to the ``done`` tuple rejax 0.1.3 unpacks, ``done = terminated or truncated`` (what
  gymnax returned before 1.0, so PQN treats the 1000-step time limit as an episode end, as it
  did in its own MinAtar runs).

Rejax's ``max_grad_norm`` is an element-wise clip of the gradient (``optax.clip``), not a global
norm clip; we keep its behaviour.

Training and evaluation: :func:`run_pqn` drives the loop of rejax's ``OnPolicyMixin.train``
(``train_iteration`` k times, then an evaluation) from Python, one call of a jitted loop over k
iterations per evaluation interval (k is traced: one compiled program), so that every evaluation gets its own measured wall-clock time
(``wall_s`` is measured per chunk, not interpolated; it includes the compilation of the first
chunk, as REPPO's ``wall_s`` includes its first compiled iteration). The algorithm object keeps
``total_timesteps`` = the budget, so the ε schedule is rejax's own. ``env_steps`` is rejax's
``global_step`` (agent steps of all envs; MinAtar has no frame skip). Every evaluation runs the
greedy policy (ε = 0; rejax's default evaluation uses ε = 0.005) for one episode on each of
``eval_episodes`` fresh envs, capped at the game's time limit: the protocol REPPO's evaluation
follows. Budgets are rounded down to whole iterations (4,096 env steps), eval intervals to whole
iterations (at least one).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

PQN_MINATAR: dict[str, Any] = {
    "num_envs": 128, "num_steps": 32, "num_minibatches": 32, "num_epochs": 2,
    "td_lambda": 0.65, "learning_rate": 5e-4, "max_grad_norm": 10.0, "gamma": 0.99,
    "eps_start": 1.0, "eps_end": 0.05, "exploration_fraction": 0.1,
    "normalize_observations": False,
}
"""PQN's published MinAtar hyperparameters, as ``rejax.PQN.create`` keywords."""

DEFAULT_HIDDEN = (128, 128)
"""Q-network hidden widths (PQN's gymnax MLP); rejax's own default is (64, 64)."""


class DoneStep:
    """A gymnax 1.0 environment whose ``step`` returns rejax 0.1.3's 5-tuple
    ``(obs, state, reward, done, info)`` with ``done = terminated | truncated``; everything else
    is the wrapped environment's."""

    def __init__(self, env: Any) -> None:
        self._env = env

    def __getattr__(self, name: str) -> Any:
        if name == "_env":  # not set yet (copy.deepcopy builds the object without __init__)
            raise AttributeError(name)
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        import jax.numpy as jnp

        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action,
                                                                          params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), info

    def reset(self, key, params=None):
        return self._env.reset(key, params)


def sized_pqn_class() -> type:
    """``rejax.PQN`` with a ``hidden`` field (the Q-network widths) read by ``create_agent``."""
    from flax import struct
    from rejax import PQN

    class SizedPQN(PQN):
        """rejax's PQN whose Q-network has ``hidden`` widths instead of the fixed (64, 64)."""

        hidden: tuple = struct.field(pytree_node=False, default=DEFAULT_HIDDEN)

        @classmethod
        def create_agent(cls, config, env, env_params):
            agent = super().create_agent(config, env, env_params)["agent"]
            return {"agent": agent.clone(hidden_layer_sizes=tuple(config.get(
                "hidden", DEFAULT_HIDDEN)))}

    return SizedPQN


def make_pqn(game: str, budget: int, hidden: Sequence[int] = DEFAULT_HIDDEN,
             **overrides: Any) -> Any:
    """The rejax PQN algorithm object for MinAtar ``game`` ("Breakout") with
    ``total_timesteps = budget`` and :data:`PQN_MINATAR` (plus ``overrides``)."""
    import gymnax

    env, env_params = gymnax.make(f"{game}-MinAtar")
    cfg = {**PQN_MINATAR, **overrides}
    return sized_pqn_class().create(env=DoneStep(env), env_params=env_params,
                                    total_timesteps=int(budget), eval_freq=int(budget),
                                    hidden=tuple(int(h) for h in hidden), **cfg)


def run_pqn(game: str, seed: int, budget: int, eval_interval: int, eval_episodes: int,
            hidden: Sequence[int] = DEFAULT_HIDDEN,
            on_eval: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train PQN on MinAtar ``game`` for the whole iterations within ``budget`` env steps,
    evaluating every ``eval_interval`` (rounded to whole iterations) and after the last
    iteration; ``on_eval({"env_steps", "wall_s", "return"})`` per evaluation. Returns the points
    and the run's facts (iteration size, steps trained, config)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from rejax.evaluate import evaluate

    from reppo_common.seeding import EVAL_SEED_OFFSET

    algo = make_pqn(game, budget, hidden)
    per_iter = algo.num_envs * algo.num_steps
    n_iter = max(1, int(budget) // per_iter)
    every = max(1, int(eval_interval) // per_iter)
    max_steps = int(algo.env_params.max_steps_in_episode)

    @jax.jit
    def iterations(ts, k):  # k traced: one compiled program for every chunk length
        return jax.lax.fori_loop(0, k, lambda _, t: algo.train_iteration(t), ts)

    @jax.jit
    def greedy_returns(params, key):
        def act(obs, rng):
            return jnp.argmax(algo.agent.apply(params, obs[None]), axis=-1)[0]

        _, returns = evaluate(act, key, algo.env, algo.env_params, eval_episodes, max_steps)
        return returns

    points: list[dict[str, float]] = []
    eval_key = jax.random.PRNGKey(seed + EVAL_SEED_OFFSET)
    t0 = time.perf_counter()
    ts = jax.jit(algo.init_state)(jax.random.PRNGKey(seed))
    done = 0
    while done < n_iter:
        k = min(every, n_iter - done)
        ts = iterations(ts, k)
        done += k
        eval_key, key = jax.random.split(eval_key)
        ret = float(np.mean(np.asarray(greedy_returns(ts.q_ts.params, key))))
        point = {"env_steps": int(ts.global_step), "wall_s": time.perf_counter() - t0,
                 "return": ret}
        points.append(point)
        print(f"  pqn  seed {seed} step {point['env_steps']:>9d} return {ret:8.2f}  "
              f"({point['wall_s']:.0f} s)", flush=True)
        if on_eval is not None:
            on_eval(point)
    return {"points": points, "wall_s": time.perf_counter() - t0, "env_steps_per_iteration":
            per_iter, "total_env_steps": n_iter * per_iter, "eval_every_iterations": every,
            "config": {**PQN_MINATAR, "hidden": list(hidden), "total_timesteps": int(budget)}}
