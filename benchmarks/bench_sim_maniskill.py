"""Sim-only throughput of the ways to step several ManiSkill3 CPU envs side by side.

    python -m benchmarks.bench_sim_maniskill --env PushCube-v1 --num-envs 8,16 --steps 200 \
        [--options single,inprocess,sync,async,workers1,workers2,workers4] [--repeats 2]

SAPIEN's ``physx_cpu`` backend holds one scene per env instance, so ``N`` envs mean ``N``
instances. Options (uniform random actions in [-1, 1], auto-reset on, state observations):

* ``single``: one bare ``BaseEnv`` stepped alone (the per-instance ceiling; ``N`` ignored);
* ``inprocess``: ``reppo_torch.envs.maniskill`` with ``vectorization="inprocess"`` (a loop over
  ``N`` unwrapped envs in this process; includes the adapter's bookkeeping);
* ``sync``: gymnasium ``SyncVectorEnv`` of ``CPUGymWrapper``-wrapped envs;
* ``async``: gymnasium ``AsyncVectorEnv(context="spawn")`` of the same (one process per env);
* ``workersK``: the adapter with ``vectorization="workers"``, ``K`` worker processes
  exchanging data through shared memory (one pipe message per worker per step);
* ``hybridK``: the adapter with ``vectorization="hybrid"``: ``K`` worker processes plus this
  process, which steps its own share of the envs while the workers step theirs.

For each option it prints the build time, the env-steps/s (best of ``--repeats`` timed runs of
``--steps`` vector steps after a 10-step warm-up) and the CPU time per env step summed over this
process and its worker processes (user + system). Wall-clock rates need an otherwise idle
machine; the CPU time per env step is much less sensitive to other load and bounds the idle
rate: at most ``1 / cpu`` for one process, ``cores / cpu`` for a pool of workers.

Measured on this project's 2-core CPU machine (mani-skill 3.0.1, sapien 3.0.3, Mesa 25.0
lavapipe, torch 2.13 CPU) while it ran ~15-20 other busy processes (load average 15-25), so
absolute rates are low and noisy; PushCube-v1, env-steps/s (CPU ms per env step):

  ====================  ===========  =============
  option                8 envs       16 envs
  ====================  ===========  =============
  single (1 env)        91-107 (2.7-4.0)
  inprocess             73-116       111 (3.3)
  sync (gymnasium)      74-138       130 (2.9)
  async (spawn)         59, 169 s to start
  workers1              37-136       85 (4.2)
  workers2              51-92        91 (3.8)
  hybrid1               102          93 (2.9)
  ====================  ===========  =============

Interleaved in one process to cancel load drift (16 envs, 6 rounds of 20 vector steps; log
not kept): median inprocess 162, workers2 153, hybrid1 134.
Hence ``inprocess`` is the adapter's default on CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


import numpy as np
import torch

OPTIONS = ("single", "inprocess", "sync", "async", "workers1", "workers2", "workers4", "hybrid1",
           "hybrid3")


def _make_gym_env(env_id: str):
    """A gymnasium-API single env (CPUGymWrapper over the physx_cpu backend)."""
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    env = gym.make(env_id, obs_mode="state", reward_mode="normalized_dense", render_mode=None,
                   render_backend="none", sim_backend="physx_cpu", num_envs=1,
                   control_mode="pd_joint_delta_pos")
    return CPUGymWrapper(env)


class _GymFactory:
    """Picklable env factory for AsyncVectorEnv(context='spawn')."""

    def __init__(self, env_id: str):
        self.env_id = env_id

    def __call__(self):
        torch.set_num_threads(1)
        return _make_gym_env(self.env_id)


def _cpu_seconds() -> float:
    """User+system CPU seconds of this process and all its live descendants."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def _time(step_fn, steps: int, repeats: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) for ``steps`` calls after a warm-up."""
    for _ in range(10):
        step_fn()
    best, best_cpu = float("inf"), float("nan")
    for _ in range(repeats):
        c0, t0 = _cpu_seconds(), time.perf_counter()
        for _ in range(steps):
            step_fn()
        dt, dc = time.perf_counter() - t0, _cpu_seconds() - c0
        if dt < best:
            best, best_cpu = dt, dc
    return best, best_cpu


def bench(option: str, env_id: str, n: int, steps: int,
          repeats: int) -> tuple[float, float, float, int]:
    """(build seconds, env-steps/s, CPU ms per env-step, envs per vector step) for one option."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    if option == "single":
        from reppo_torch.envs.maniskill import _make_raw_env

        env = _make_raw_env(env_id, 1, "physx_cpu", "pd_joint_delta_pos", "normalized_dense", None)
        env.reset(seed=0)
        a_dim = env.single_action_space.shape[0]
        build = time.perf_counter() - t0

        def step():
            env.step(rng.uniform(-1, 1, (1, a_dim)).astype(np.float32))
            if int(env.elapsed_steps[0]) >= 50:
                env.reset()

        dt, cpu = _time(step, steps, repeats)
        env.close()
        return build, steps / dt, 1e3 * cpu / steps, 1
    if option in ("sync", "async"):
        import gymnasium as gym

        if option == "sync":
            envs = gym.vector.SyncVectorEnv([_GymFactory(env_id) for _ in range(n)])
        else:
            envs = gym.vector.AsyncVectorEnv([_GymFactory(env_id) for _ in range(n)],
                                             context="spawn")
        envs.reset(seed=0)
        build = time.perf_counter() - t0
        shape = envs.action_space.shape

        def step():
            envs.step(rng.uniform(-1, 1, shape).astype(np.float32))

        dt, cpu = _time(step, steps, repeats)
        envs.close()
        return build, n * steps / dt, 1e3 * cpu / (n * steps), n
    from reppo_torch.envs.maniskill import make_maniskill_env

    if option == "inprocess":
        env = make_maniskill_env(env_id, n, physics_impl="physx_cpu", vectorization="inprocess")
    elif option.startswith(("workers", "hybrid")):
        kind = "workers" if option.startswith("workers") else "hybrid"
        env = make_maniskill_env(env_id, n, physics_impl="physx_cpu", vectorization=kind,
                                 num_workers=int(option[len(kind):]))
    else:
        raise ValueError(f"unknown option {option!r}; choose from {OPTIONS}")
    env.reset(0)
    build = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)

    def step():
        env.step(torch.rand(n, env.action_dim, generator=gen) * 2 - 1)

    dt, cpu = _time(step, steps, repeats)
    env.close()
    return build, n * steps / dt, 1e3 * cpu / (n * steps), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="PushCube-v1")
    ap.add_argument("--num-envs", default="8,16", help="comma-separated list")
    ap.add_argument("--steps", type=int, default=200, help="vector steps per timed run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--options", default=",".join(OPTIONS),
                    help="comma-separated; workersK / hybridK take any K")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="intra-op threads of this process (workers always use 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    env_id = args.env.split("/", 1)[-1]
    options = [o for o in args.options.split(",") if o]
    for o in options:
        k = o.rstrip("0123456789")
        if o not in OPTIONS and not (k in ("workers", "hybrid") and o != k):
            ap.error(f"unknown option {o!r}; choose from {', '.join(OPTIONS)}")
    print(f"# {env_id}, sim-only env-steps/s, {args.steps} vector steps x best of {args.repeats}")
    print(f"{'option':<10} {'num_envs':>8} {'build_s':>8} {'env_steps_per_s':>16} "
          f"{'cpu_ms_per_env_step':>20}")
    sizes = [int(x) for x in args.num_envs.split(",")]
    done_single = False
    for n in sizes:
        for o in options:
            if o == "single":
                if done_single:
                    continue
                done_single = True
            build, sps, cpu_ms, used = bench(o, env_id, n, args.steps, args.repeats)
            print(f"{o:<10} {used:>8} {build:>8.1f} {sps:>16.0f} {cpu_ms:>20.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
