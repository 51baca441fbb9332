"""Benchmark the JAX env adapter against the raw playground env, side by side.

    python -m benchmarks.bench_sim --env dmc/CartpoleBalance --num-envs 128 --steps 200 --impl jax \
        --repeats 3 [--strategies fresh,cached] [--reset-cost]

For every variant it prints the compile time of a jitted ``lax.scan`` of ``--steps`` steps with
random actions, then the steady-state env-steps/s (median over ``--repeats`` runs, each
``num_envs * steps`` env steps). Variants:

* ``wrapper[<strategy>]``: ``reppo_jax.envs.dmc`` adapter (auto-reset, bookkeeping, final_obs);
* ``raw``: ``vmap(env.step)`` of the bare playground env, no auto-reset, no time limit;
* ``raw_reset`` (``--reset-cost``): ``vmap(env.reset)`` of all envs per scan iteration, i.e. the
  cost an unconditional per-step fresh reset would add.

and the ratio wrapper/raw. Numbers are for whatever device JAX picks (``JAX_PLATFORMS=cpu`` to
force CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


import jax
import jax.numpy as jnp

from reppo_jax.envs.base import cast_like
from reppo_jax.envs.dmc import make_dmc_env


def random_action_scan(env, num_steps):
    """``run(state, key) -> (state, key, reward_sum)``: ``num_steps`` vectorised steps of ``env``
    with uniform random actions (the pure-simulation workload both benchmarks time): in [-1, 1]
    per dimension for a continuous env, a uniform int32 index in [0, |A|) for a discrete one
    (``env.discrete``)."""
    n, a_dim = env.num_envs, env.action_dim
    discrete = bool(getattr(env, "discrete", False))

    def run(state, key):
        def body(s, k):
            if discrete:
                act = jax.random.randint(k, (n,), 0, a_dim, dtype=jnp.int32)
            else:
                act = jax.random.uniform(k, (n, a_dim), minval=-1.0, maxval=1.0)
            s, out = env.step(s, act)
            return s, out.reward.sum()

        key, k = jax.random.split(key)
        state, r = jax.lax.scan(body, state, jax.random.split(k, num_steps))
        return state, key, r.sum()

    return run


def _time_scan(fn, args, repeats):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="dmc/CartpoleBalance")
    p.add_argument("--num-envs", type=int, default=128)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--impl", default="jax")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--strategies", default="fresh", help="comma list of fresh,cached")
    p.add_argument("--reset-cost", action="store_true", help="also time a raw vmapped reset")
    p.add_argument("--no-raw", action="store_true")
    a = p.parse_args(argv)
    suite, _, task = a.env.rpartition("/")
    if suite not in ("", "dmc"):
        raise SystemExit(f"only dmc/ envs are supported, got {a.env}")
    n, T = a.num_envs, a.steps
    print(f"device={jax.devices()[0]} env={a.env} impl={a.impl} num_envs={n} steps={T} "
          f"repeats={a.repeats}")
    key = jax.random.PRNGKey(0)
    results = {}

    for strategy in [s for s in a.strategies.split(",") if s]:
        env = make_dmc_env(task, n, impl=a.impl, reset_strategy=strategy)
        state, _ = jax.jit(env.reset)(key)

        c, t = _time_scan(random_action_scan(env, T), (state, key), a.repeats)
        results[f"wrapper[{strategy}]"] = (c, t)
        raw_env = env.env

    if not a.strategies:
        from reppo_jax.envs.dmc import load_playground_env
        raw_env = load_playground_env(task, impl=a.impl)

    def raw_reset(key):
        return jax.vmap(raw_env.reset)(jax.random.split(key, n))

    if not a.no_raw or a.reset_cost:
        sim = jax.jit(raw_reset)(key)
        act0 = jax.ShapeDtypeStruct((n, raw_env.action_size), jnp.float32)
        sim = cast_like(sim, jax.eval_shape(jax.vmap(raw_env.step), sim, act0))

    if not a.no_raw:
        def run_raw(sim, key):
            def body(s, k):
                act = jax.random.uniform(k, (n, raw_env.action_size), minval=-1.0, maxval=1.0)
                s2 = cast_like(jax.vmap(raw_env.step)(s, act), s)
                return s2, s2.reward.sum()
            s, r = jax.lax.scan(body, sim, jax.random.split(key, T))
            return s, r.sum()

        results["raw"] = _time_scan(run_raw, (sim, key), a.repeats)

    if a.reset_cost:
        def run_reset(sim, key):
            def body(s, k):
                s2 = cast_like(raw_reset(k), s)
                return s2, s2.obs.sum()
            s, r = jax.lax.scan(body, sim, jax.random.split(key, T))
            return s, r.sum()

        results["raw_reset"] = _time_scan(run_reset, (sim, key), a.repeats)

    for name, (c, t) in results.items():
        print(f"{name:18s} compile {c:7.2f} s   steady {n * T / t:12.0f} env-steps/s "
              f"({t * 1e3:.1f} ms / {T} steps)")
    if "raw" in results:
        raw_t = results["raw"][1]
        for name, (_, t) in results.items():
            if name.startswith("wrapper"):
                print(f"ratio {name}/raw throughput = {raw_t / t:.3f}")


if __name__ == "__main__":
    main()
