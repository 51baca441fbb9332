"""Measure REPPO training throughput against pure simulation of the same env and batch.

    python tools/bench_throughput.py --env dmc/CartpoleBalance --preset cpu \
        [--section.field=value ...] [--authors-config] --iterations 10 --repeats 3 \
        [--baseline-sps 2300] [--backend jax|torch] [--torch-threads N] [--json]

In one process it builds the JAX ``Trainer`` for the config and reports, side by side:

* ``compile``: trace + XLA compile of the jitted training iteration (``lower().compile()``),
  and the first execution separately; likewise for the simulation scan;
* ``train``: steady-state training env-steps/s, the median over ``--repeats`` repeats of
  ``--iterations`` timed iterations (each repeat blocks on its result);
* ``sim``: env-steps/s of a jitted ``lax.scan`` of the *same* VecEnv's ``step`` (same
  ``num_envs``, ``num_steps`` steps per call, random actions in [-1, 1]), run for the same number
  of env steps per repeat;
* ``train/sim``: training time per env step divided by simulation time per env step (how much
  the learner costs on top of the simulator; 1.0 would be "free" learning).

``--authors-config`` applies the configuration of the authors' public REPPO code as measured in
our issue (128 envs x 32 steps, 4 minibatches, 4 epochs, 512-wide actor and critic); explicit
``--section.field=value`` overrides still win. ``--baseline-sps`` (default 2300: the authors' code
on this machine, ~2.3k training env-steps/s after ~25 s compile, *recorded in the issue text, not
measured by this run*) gives the ratio ours/theirs.

``--backend torch`` additionally builds the torch ``Trainer`` for the *same* config in the same
process, after the JAX measurement, and reports its training env-steps/s (median over the same
repeats; the first iteration is warm-up), its pure-simulation env-steps/s (random actions through
the torch env, i.e. the JAX simulator behind DLPack) and the torch/JAX training throughput
ratio measured in this run. ``--torch-threads`` sets torch's intra-op threads (default: the
torch backend's ``DEFAULT_THREADS``).

The persistent XLA compilation cache is disabled unless ``--use-cache`` (a warm cache would hide
the compile time). Numbers are for whatever device JAX picks (``JAX_PLATFORMS=cpu`` forces CPU);
on a shared machine, run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AUTHORS_CONFIG = {
    "rollout.num_envs": 128,
    "rollout.num_steps": 32,
    "rollout.num_minibatches": 4,
    "rollout.num_epochs": 4,
    "critic.hidden_dim": 512,
    "actor.hidden_dim": 512,
}
"""The authors' public-code run measured in the issue (their throughput: ``--baseline-sps``)."""

DEFAULT_BASELINE_SPS = 2300.0
"""Authors' code on this machine, training env-steps/s (recorded in the issue, not re-measured)."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Any other argument of the form --section.field=value is a config override.")
    p.add_argument("--env", default="dmc/CartpoleBalance", help="suite/Task (config env.name)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--iterations", type=int, default=10, help="timed iterations per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--authors-config", action="store_true",
                   help="128 envs x 32 steps, 4 minibatches, 4 epochs, actor/critic width 512")
    p.add_argument("--baseline-sps", type=float, default=DEFAULT_BASELINE_SPS,
                   help="recorded training env-steps/s of the authors' code (0 disables)")
    p.add_argument("--use-cache", action="store_true",
                   help="keep the persistent XLA compilation cache (hides compile time)")
    p.add_argument("--no-sim", action="store_true", help="skip the simulation-only measurement")
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")
    p.add_argument("--backend", choices=("jax", "torch"), default="jax",
                   help="torch: also measure the torch backend on the same config and print "
                        "the torch/JAX ratio")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads (default: reppo_torch.train.DEFAULT_THREADS)")
    args, rest = p.parse_known_args(argv)
    bad = [r for r in rest if not (r.startswith("--") and "=" in r and "." in r.split("=")[0])]
    if bad:
        p.error(f"unrecognized arguments (overrides look like --section.field=value): "
                f"{' '.join(bad)}")
    if args.iterations < 1 or args.repeats < 1:
        p.error("--iterations and --repeats must be >= 1")
    args.overrides = [r[2:] for r in rest]
    return args


def build_config(args):
    from spec.config import ConfigError, override_pairs
    from spec.presets import preset_config

    pairs = {"env.name": args.env}
    if args.authors_config:
        pairs.update(AUTHORS_CONFIG)
    try:
        pairs.update(dict(override_pairs(args.overrides)))
        return preset_config(args.preset, pairs)
    except ConfigError as e:
        raise SystemExit(f"error: {e}")


def _block(x):
    import jax

    return jax.block_until_ready(x)


def bench_training(trainer, seed, iterations, repeats):
    """Compile (trace+compile, first run) and steady-state seconds per repeat of the iteration."""
    import jax

    carry = trainer.init(seed)
    t0 = time.perf_counter()
    compiled = trainer.iteration.lower(carry).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    carry, info = _block(compiled(carry))
    first_s = time.perf_counter() - t0
    times = []
    c0 = time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            carry, info = compiled(carry)
        _block((carry, info))
        times.append(time.perf_counter() - t0)
    bench_training.cpu_s_per_iteration = (time.process_time() - c0) / (repeats * iterations)
    finite = all(bool(jax.numpy.isfinite(v)) for v in jax.device_get(dict(info)).values())
    return compile_s, first_s, times, finite


def bench_simulation(env, num_steps, seed, iterations, repeats):
    """Same measurement for a jitted scan of ``num_steps`` random-action steps of ``env``."""
    import jax

    from tools.bench_sim import random_action_scan

    run = random_action_scan(env, num_steps)
    key = jax.random.PRNGKey(seed + 12345)
    state, _ = jax.jit(env.reset)(key)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(state, key).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, key, _ = _block(compiled(state, key))
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            state, key, r = compiled(state, key)
        _block((state, key, r))
        times.append(time.perf_counter() - t0)
    return compile_s, first_s, times


def bench_torch_training(cfg, seed, iterations, repeats, threads=None):
    """The torch backend's trainer on the same config: warm-up (first iteration) and
    steady-state seconds per repeat of ``iterations`` iterations (one host sync per iteration,
    as in training)."""
    import math as _math

    from reppo_torch.train import Trainer as TorchTrainer, _scalarize, configure_torch

    t0 = time.perf_counter()
    trainer = TorchTrainer(cfg)
    configure_torch(threads)
    build_s = time.perf_counter() - t0
    carry = trainer.init(seed)
    t0 = time.perf_counter()
    carry, info = trainer.iteration(carry)
    info = _scalarize(info)
    first_s = time.perf_counter() - t0
    times = []
    c0 = time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            carry, info = trainer.iteration(carry)
            info = _scalarize(info)
        times.append(time.perf_counter() - t0)
    bench_torch_training.cpu_s_per_iteration = (time.process_time() - c0) / (repeats * iterations)
    finite = all(_math.isfinite(v) for v in info.values())
    return trainer, build_s, first_s, times, finite


def bench_torch_simulation(env, num_steps, seed, iterations, repeats):
    """Random-action steps of the torch env (same num_envs and env steps per repeat)."""
    import torch

    gen = torch.Generator(device=env.device).manual_seed(seed + 12345)
    env.reset(seed + 12345)

    def block():
        for _ in range(num_steps):
            a = torch.rand((env.num_envs, env.action_dim), generator=gen, device=env.device)
            out = env.step(2.0 * a - 1.0)
        return float(out.reward.sum())

    t0 = time.perf_counter()
    block()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iterations):
            block()
        times.append(time.perf_counter() - t0)
    return first_s, times


def main(argv=None):
    args = parse_args(argv)
    if not args.use_cache:
        os.environ["REPPO_JAX_CACHE"] = ""  # read by reppo_jax.train.enable_compilation_cache
    cfg = build_config(args)

    import jax

    from reppo_jax.train import Trainer

    r = cfg.rollout
    per_iter = r.num_envs * r.num_steps
    steps_per_repeat = per_iter * args.iterations
    print(f"device={jax.devices()[0]} env={cfg.env.name} preset={args.preset}"
          f"{' +authors-config' if args.authors_config else ''} num_envs={r.num_envs} "
          f"num_steps={r.num_steps} minibatches={r.num_minibatches} epochs={r.num_epochs} "
          f"actor={cfg.actor.hidden_dim} critic={cfg.critic.hidden_dim} "
          f"iterations={args.iterations} repeats={args.repeats} "
          f"({steps_per_repeat} env steps per repeat)", flush=True)

    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    build_s = time.perf_counter() - t0
    t_compile, t_first, t_times, finite = bench_training(trainer, args.seed, args.iterations,
                                                         args.repeats)
    t_med = statistics.median(t_times)
    train_sps = steps_per_repeat / t_med
    res = {
        "env": cfg.env.name, "preset": args.preset, "authors_config": args.authors_config,
        "overrides": args.overrides, "device": str(jax.devices()[0]),
        "num_envs": r.num_envs, "num_steps": r.num_steps, "num_minibatches": r.num_minibatches,
        "num_epochs": r.num_epochs, "actor_hidden_dim": cfg.actor.hidden_dim,
        "critic_hidden_dim": cfg.critic.hidden_dim, "iterations": args.iterations,
        "repeats": args.repeats, "env_steps_per_repeat": steps_per_repeat,
        "build_s": build_s, "train_compile_s": t_compile, "train_first_call_s": t_first,
        "train_repeat_s": t_times, "train_sps": train_sps, "train_metrics_finite": finite,
        "compilation_cache": bool(args.use_cache),
    }
    rows = [("train", t_compile, t_first, t_med, train_sps)]
    if not args.no_sim:
        s_compile, s_first, s_times, = bench_simulation(trainer.env, r.num_steps, args.seed,
                                                        args.iterations, args.repeats)
        s_med = statistics.median(s_times)
        sim_sps = steps_per_repeat / s_med
        res.update({"sim_compile_s": s_compile, "sim_first_call_s": s_first,
                    "sim_repeat_s": s_times, "sim_sps": sim_sps,
                    "train_over_sim_time_per_step": sim_sps / train_sps})
        rows.append(("sim", s_compile, s_first, s_med, sim_sps))
    if args.backend == "torch":
        import torch

        trainer_t, tb_s, tf_s, tt_times, t_finite = bench_torch_training(
            cfg, args.seed, args.iterations, args.repeats, args.torch_threads)
        tt_med = statistics.median(tt_times)
        torch_sps = steps_per_repeat / tt_med
        res.update({"torch_device": str(trainer_t.device), "torch_threads": torch.get_num_threads(),
                    "torch_build_s": tb_s, "torch_first_call_s": tf_s,
                    "torch_train_repeat_s": tt_times, "torch_train_sps": torch_sps,
                    "torch_train_metrics_finite": t_finite,
                    "torch_over_jax_train_sps": torch_sps / train_sps,
                    "jax_cpu_s_per_iteration": bench_training.cpu_s_per_iteration,
                    "torch_cpu_s_per_iteration": bench_torch_training.cpu_s_per_iteration,
                    "torch_over_jax_cpu_time_ratio": bench_training.cpu_s_per_iteration
                    / bench_torch_training.cpu_s_per_iteration})
        rows.append(("torch", tb_s, tf_s, tt_med, torch_sps))
        if not args.no_sim:
            ts_first, ts_times = bench_torch_simulation(trainer_t.env, r.num_steps, args.seed,
                                                        args.iterations, args.repeats)
            ts_med = statistics.median(ts_times)
            res.update({"torch_sim_repeat_s": ts_times, "torch_sim_sps": steps_per_repeat / ts_med,
                        "torch_train_over_sim_time_per_step": (steps_per_repeat / ts_med)
                        / torch_sps})
            rows.append(("t-sim", 0.0, ts_first, ts_med, steps_per_repeat / ts_med))
    if args.baseline_sps > 0:
        res["baseline_sps_recorded"] = args.baseline_sps
        res["train_sps_over_baseline"] = train_sps / args.baseline_sps

    print(f"{'':6s} {'compile s':>10s} {'1st call s':>10s} {'repeat s':>9s} {'env-steps/s':>12s}")
    for name, c, f, m, sps in rows:
        print(f"{name:6s} {c:10.2f} {f:10.2f} {m:9.3f} {sps:12.0f}")
    if "sim_sps" in res:
        print(f"train/sim time per env step = {res['train_over_sim_time_per_step']:.2f}x "
              f"(learning costs {res['train_over_sim_time_per_step'] - 1:.2f}x the simulation)")
    if args.baseline_sps > 0:
        print(f"ours/authors' throughput = {res['train_sps_over_baseline']:.2f}x "
              f"(against the RECORDED {args.baseline_sps:.0f} env-steps/s of the authors' code "
              f"from the issue, not measured in this run)")
        if not (args.authors_config and cfg.env.name == "dmc/CartpoleBalance"):
            print("note: the recorded baseline is the authors' config on dmc/CartpoleBalance; "
                  "this run differs (use --authors-config on that env for like-for-like)")
    if "torch_train_sps" in res:
        print(f"torch/JAX training throughput = {res['torch_over_jax_train_sps']:.2f}x "
              f"(torch {res['torch_train_sps']:.0f} vs JAX {train_sps:.0f} env-steps/s, same "
              f"config, measured in this run; torch on {res['torch_device']} with "
              f"{res['torch_threads']} thread(s); the torch row's 'compile s' is its build time "
              f"and '1st call s' its warm-up iteration)")
        print(f"process CPU seconds per iteration (all threads; robust to other load on "
              f"the machine): JAX {res['jax_cpu_s_per_iteration']:.2f}, torch "
              f"{res['torch_cpu_s_per_iteration']:.2f} -> torch/JAX throughput by CPU time "
              f"{res['torch_over_jax_cpu_time_ratio']:.2f}x")
        if "torch_sim_sps" in res:
            print(f"torch train/sim time per env step = "
                  f"{res['torch_train_over_sim_time_per_step']:.2f}x")
        if not res["torch_train_metrics_finite"]:
            print("warning: non-finite torch training metrics after the timed iterations")
    if not finite:
        print("warning: non-finite training metrics after the timed iterations")
    if args.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
