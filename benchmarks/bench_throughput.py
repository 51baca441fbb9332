"""Measure REPPO training throughput against pure simulation of the same env and batch.

    python -m benchmarks.bench_throughput --env dmc/CartpoleBalance --preset cpu \
        [--section.field=value ...] [--authors-config] --iterations 10 --repeats 3 \
        [--baseline-sps 2000] [--backend jax|torch] [--torch-threads N] [--torch-compile] \
        [--flops] [--json]

In one process it builds the JAX ``Trainer`` for the config and reports, side by side:

* ``compile``: trace + XLA compile of the jitted training iteration as training runs it (with
  the in-jit NaN/inf guard), ``lower().compile()``, as wall and as process CPU seconds, and the
  first execution separately; likewise for the simulation scan (wall);
* ``train``: steady-state training env-steps/s, the median over ``--repeats`` repeats of
  ``--iterations`` timed iterations (each repeat blocks on its result);
* ``sim``: env-steps/s of a jitted ``lax.scan`` of the *same* VecEnv's ``step`` (same
  ``num_envs``, ``num_steps`` steps per call, random actions in [-1, 1]), run for the same number
  of env steps per repeat;
* ``train/sim``: training time per env step divided by simulation time per env step (how much
  the learner costs on top of the simulator; 1.0 would be "free" learning).
* ``--flops``: the update's FLOPs per iteration (XLA cost analysis of one minibatch step ×
  epochs × minibatches), the FLOP rate the timed training reached, and a matmul peak at the
  update's shapes measured here; their ratio is the FLOP-bound ceiling on training
  env-steps/s for the config (the update alone; simulation adds to it).

``--authors-config`` applies the configuration of the authors' public REPPO code as measured in
our issue (128 envs x 32 steps, 4 minibatches, 4 epochs, 512-wide actor and critic); explicit
``--section.field=value`` overrides still win. ``--baseline-sps`` (default 2000: a *recorded
figure, not measured by this run* — the authors' public JAX code at that config on dmc/
CartpoleBalance, train-only timer, quiet 2-core CPU machine: 1,959 / 2,057 env-steps/s in two
runs after a 27–29 s compile) gives the ratio ours/theirs; for a like-for-like comparison run
both on the same quiet machine.

``--backend torch`` additionally builds the torch ``Trainer`` for the *same* config in the same
process, after the JAX measurement, and reports its training env-steps/s (median over the same
repeats; the first iteration is warm-up), its pure-simulation env-steps/s (random actions through
the torch env, i.e. the JAX simulator behind DLPack) and the torch/JAX training throughput
ratio measured in this run. The ratio is *paired*: each torch repeat runs right next to one
more repeat of the compiled JAX iteration (JAX first on even repeats, torch first on odd ones),
and the ratio is the median over repeats of JAX time / torch time for the same env steps — by
wall clock and by process CPU time — so that both sides see the same load on a shared machine
(JAX's own repeats above ran minutes earlier). ``--torch-threads`` sets torch's intra-op
threads (default: the torch backend's ``DEFAULT_THREADS``). ``--torch-compile`` runs the torch
side with ``run.torch_compile=true`` (the update's losses under ``torch.compile``; the JAX side
is unchanged): its first iteration then includes the compile, printed as the torch compile time
with the state of inductor's cache — cold (a fresh empty folder) unless ``--use-cache``, which
keeps the persistent cache (``REPPO_TORCH_CACHE``; warm when an earlier run filled it).

The persistent XLA compilation cache (and inductor's, with ``--torch-compile``) is disabled
unless ``--use-cache`` (a warm cache would hide the compile time). Numbers are for whatever
device JAX picks (``JAX_PLATFORMS=cpu`` forces CPU); on a shared machine, run nothing else
meanwhile.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.cli_args import config_parser, parse_with_overrides


AUTHORS_CONFIG = {
    "rollout.num_envs": 128,
    "rollout.num_steps": 32,
    "rollout.num_minibatches": 4,
    "rollout.num_epochs": 4,
    "critic.hidden_dim": 512,
    "actor.hidden_dim": 512,
}
"""The authors' public-code run measured in the issue (their throughput: ``--baseline-sps``)."""

DEFAULT_BASELINE_SPS = 2000.0
"""A recorded figure, not re-measured: the authors' public JAX code at ``AUTHORS_CONFIG`` on
dmc/CartpoleBalance, train-only env-steps/s on a quiet 2-core CPU machine (1,959 / 2,057 in two
runs)."""


def parse_args(argv=None):
    p = config_parser(__doc__.splitlines()[0])
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
    p.add_argument("--flops", action="store_true",
                   help="also count the update's FLOPs (XLA cost analysis of one minibatch "
                        "step), the FLOP rate the training run achieved, a matmul peak "
                        "measured here and the FLOP-bound throughput ceiling it implies")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads (default: reppo_torch.train.DEFAULT_THREADS)")
    p.add_argument("--torch-compile", action="store_true",
                   help="with --backend torch: run the torch side with run.torch_compile=true "
                        "and print its compile time (cold inductor cache unless --use-cache)")
    args = parse_with_overrides(p, argv)
    if args.iterations < 1 or args.repeats < 1:
        p.error("--iterations and --repeats must be >= 1")
    if args.torch_compile and args.backend != "torch":
        p.error("--torch-compile needs --backend torch")
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
    """Compile (trace+compile, first run) and steady-state seconds per repeat of the iteration
    that training runs: ``trainer.guarded_iteration`` (the iteration plus its in-jit NaN/inf
    flags, ``reppo_jax.checkpoint.guard_iteration``). Also sets ``bench_training.compile_cpu_s``
    (process CPU seconds of the trace + compile: robust to other load, unlike the wall time)."""
    import jax

    from reppo_jax.checkpoint import GUARD_KEY

    carry = trainer.init(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = trainer.guarded_iteration.lower(carry).compile()
    compile_s = time.perf_counter() - t0
    bench_training.compile_cpu_s = time.process_time() - c0
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
    bench_training.state = (compiled, carry)  # the torch comparison's paired JAX repeats
    info = jax.device_get(dict(info))
    finite = bool(np.all(info.pop(GUARD_KEY))) and all(bool(np.isfinite(v))
                                                       for v in info.values())
    return compile_s, first_s, times, finite


def _cost_flops(compiled) -> float | None:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) and ca else ca
    flops = (ca or {}).get("flops")
    return float(flops) if flops else None


def _median_seconds(fn, repeats: int = 15) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_update_flops(trainer, seed):
    """FLOPs of one jitted minibatch step (critic, [value,] actor, α/β; D-REPPO's for a discrete
    env) at the config's minibatch size, by XLA's cost analysis; and the FLOP rate of a chain of (minibatch × width) @
    (width × width) matmuls on the same device (the dense-layer peak the update can hope for).

    The whole iteration's cost analysis counts a scan body once, not once per trip, which is
    why the minibatch step is compiled on its own here. Returns (GFLOP per minibatch step,
    matmul GFLOP/s) — the first None where the backend reports no cost."""
    import jax
    import jax.numpy as jnp

    from reppo_jax import agent as A

    h, nets = trainer.h, trainer.nets
    if getattr(trainer, "parallel", None) is not None:
        raise SystemExit("error: --flops measures one device; pass --run.devices=1")
    from reppo_jax.discrete import agent as DA
    from reppo_jax.discrete.train import DiscreteTrainer

    carry = trainer.init(seed)
    agent = carry.agent
    b = h.num_envs * h.num_steps // h.num_minibatches
    ks = jax.random.split(jax.random.PRNGKey(seed), 8)
    obs = jax.random.normal(ks[0], (b, h.obs_dim))
    opts = A.optimizers(h)
    if isinstance(trainer, DiscreteTrainer):  # D-REPPO: int actions, no actor noise
        action = jax.random.randint(ks[1], (b,), 0, h.action_dim, dtype=jnp.int32)
        _, emb = jax.eval_shape(lambda: DA.q_all_of(nets, h, agent.critic, obs))
        mb = {"obs": obs, "action": action, "reward": jax.random.uniform(ks[2], (b,)),
              "target": jax.random.uniform(ks[3], (b,)),
              "next_emb": jnp.zeros(emb.shape, emb.dtype)}

        def step(agent, mb, key):
            del key
            return DA.minibatch_step(nets, h, opts, agent, agent.actor, mb)
    else:
        action = jnp.tanh(jax.random.normal(ks[1], (b, h.action_dim)))
        _, emb = jax.eval_shape(lambda: A.q_of(nets, h, agent.critic, obs, action))
        mb = {"obs": obs, "action": action, "reward": jax.random.uniform(ks[2], (b,)),
              "target": jax.random.uniform(ks[3], (b,)),
              "next_emb": jnp.zeros(emb.shape, emb.dtype)}
        if h.actor_gradient == "ppo":
            mb.update(pre_action=jax.random.normal(ks[4], (b, h.action_dim)),
                      advantage=jax.random.normal(ks[5], (b,)), value_target=jnp.zeros((b,)))

        def step(agent, mb, key):
            noise, kl_noise = A.actor_noise(h, key, b)
            return A.minibatch_step(nets, h, opts, agent, agent.actor, mb, noise, kl_noise)

    flops = _cost_flops(jax.jit(step).lower(agent, mb, ks[6]).compile())
    width = max(trainer.config.critic.hidden_dim, trainer.config.actor.hidden_dim)
    x = jnp.ones((b, width), jnp.float32)
    w = jnp.full((width, width), 1.0 / width, jnp.float32)
    chain = jax.jit(lambda x, w: jax.lax.fori_loop(0, 8, lambda i, y: y @ w, x))
    sec = _median_seconds(lambda: jax.block_until_ready(chain(x, w)))
    peak = 8 * 2 * b * width * width / sec / 1e9
    return (flops / 1e9 if flops else None), peak


def bench_simulation(env, num_steps, seed, iterations, repeats):
    """Same measurement for a jitted scan of ``num_steps`` random-action steps of ``env``."""
    import jax

    from benchmarks.bench_sim import random_action_scan

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


def bench_torch_training(cfg, seed, iterations, repeats, threads=None, jax_repeat=None):
    """The torch backend's trainer on the same config: warm-up (first iteration) and
    steady-state seconds per repeat of ``iterations`` iterations (one host sync per iteration,
    as in training). With ``jax_repeat`` (runs ``iterations`` JAX iterations and blocks) every
    torch repeat is paired with one JAX repeat, alternating which runs first; their wall and
    process CPU seconds are set as ``bench_torch_training.paired`` (lists of
    ``(jax_wall, torch_wall, jax_cpu, torch_cpu)``)."""
    import math as _math

    from reppo_torch.train import Trainer as TorchTrainer, _scalarize, configure_torch

    t0 = time.perf_counter()
    trainer = TorchTrainer(cfg)
    configure_torch(threads)
    build_s = time.perf_counter() - t0
    carry = trainer.init(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    carry, info = trainer.iteration(carry)
    info = _scalarize(info)
    first_s = time.perf_counter() - t0
    bench_torch_training.first_cpu_s = time.process_time() - c0
    state = {"carry": carry, "info": info}

    def torch_repeat():
        for _ in range(iterations):
            state["carry"], info = trainer.iteration(state["carry"])
            state["info"] = _scalarize(info)

    def timed(fn):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t0, time.process_time() - c0

    times, cpu, paired = [], [], []
    for r in range(repeats):
        if jax_repeat is not None and r % 2 == 0:
            jw, jc = timed(jax_repeat)
        tw, tc = timed(torch_repeat)
        if jax_repeat is not None and r % 2 == 1:
            jw, jc = timed(jax_repeat)
        times.append(tw)
        cpu.append(tc)
        if jax_repeat is not None:
            paired.append((jw, tw, jc, tc))
    bench_torch_training.cpu_s_per_iteration = sum(cpu) / (repeats * iterations)
    bench_torch_training.paired = paired
    finite = all(_math.isfinite(v) for v in state["info"].values())
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
    torch_cache = None  # with --torch-compile: (inductor's cache folder, did it hold entries)
    if not args.use_cache:
        os.environ["REPPO_JAX_CACHE"] = ""  # read by reppo_jax.train.enable_compilation_cache
        if args.torch_compile:  # read by reppo_torch.train.enable_compile_cache
            os.environ["REPPO_TORCH_CACHE"] = tempfile.mkdtemp(prefix="reppo-bench-inductor-")
    cfg = build_config(args)
    if cfg.run.torch_compile:
        raise SystemExit("error: pass --torch-compile instead of --run.torch_compile (the JAX "
                         "side refuses the torch-only option)")

    import jax

    from reppo_jax.train import make_trainer

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
    trainer = make_trainer(cfg)
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
        "build_s": build_s, "train_compile_s": t_compile,
        "train_compile_cpu_s": bench_training.compile_cpu_s, "train_first_call_s": t_first,
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

        compiled, jax_carry = bench_training.state
        jax_state = {"carry": jax_carry}

        def jax_repeat():
            for _ in range(args.iterations):
                jax_state["carry"], jax_info = compiled(jax_state["carry"])
            _block((jax_state["carry"], jax_info))

        torch_cfg = cfg
        if args.torch_compile:
            from dataclasses import replace

            from reppo_torch.train import enable_compile_cache

            torch_cfg = replace(cfg, run=replace(cfg.run, torch_compile=True))
            enable_compile_cache()  # the trainer does it too; here to look at the folder first
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir

            folder = Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir())
            torch_cache = (folder, folder.is_dir() and any(folder.iterdir()))
        trainer_t, tb_s, tf_s, tt_times, t_finite = bench_torch_training(
            torch_cfg, args.seed, args.iterations, args.repeats, args.torch_threads, jax_repeat)
        tt_med = statistics.median(tt_times)
        torch_sps = steps_per_repeat / tt_med
        paired = bench_torch_training.paired
        n_it = args.repeats * args.iterations
        res.update({"torch_device": str(trainer_t.device), "torch_threads": torch.get_num_threads(),
                    "torch_build_s": tb_s, "torch_first_call_s": tf_s,
                    "torch_train_repeat_s": tt_times, "torch_train_sps": torch_sps,
                    "torch_train_metrics_finite": t_finite,
                    "torch_compile": args.torch_compile,
                    "torch_first_call_cpu_s": bench_torch_training.first_cpu_s,
                    "paired_repeats_s": [list(p) for p in paired],
                    "paired_jax_train_sps": steps_per_repeat
                    / statistics.median([p[0] for p in paired]),
                    "torch_over_jax_train_sps": statistics.median([p[0] / p[1] for p in paired]),
                    "torch_over_jax_train_sps_unpaired": torch_sps / train_sps,
                    "jax_cpu_s_per_iteration": sum(p[2] for p in paired) / n_it,
                    "torch_cpu_s_per_iteration": bench_torch_training.cpu_s_per_iteration,
                    "torch_over_jax_cpu_time_ratio": statistics.median([p[2] / p[3]
                                                                        for p in paired])})
        rows.append(("torch", tb_s, tf_s, tt_med, torch_sps))
        if not args.no_sim:
            ts_first, ts_times = bench_torch_simulation(trainer_t.env, r.num_steps, args.seed,
                                                        args.iterations, args.repeats)
            ts_med = statistics.median(ts_times)
            res.update({"torch_sim_repeat_s": ts_times, "torch_sim_sps": steps_per_repeat / ts_med,
                        "torch_train_over_sim_time_per_step": (steps_per_repeat / ts_med)
                        / torch_sps})
            rows.append(("t-sim", 0.0, ts_first, ts_med, steps_per_repeat / ts_med))
    if args.flops:
        gflop_mb, peak = bench_update_flops(trainer, args.seed)
        res["matmul_peak_gflops"] = peak
        if gflop_mb is not None:
            updates = r.num_epochs * r.num_minibatches
            gflop_iter = gflop_mb * updates
            res.update({"update_gflop_per_minibatch": gflop_mb,
                        "update_gflop_per_iteration": gflop_iter,
                        "train_achieved_gflops": gflop_iter * args.iterations / t_med,
                        "flop_bound_sps": per_iter / (gflop_iter / peak)})
    if args.baseline_sps > 0:
        res["baseline_sps_recorded"] = args.baseline_sps
        res["train_sps_over_baseline"] = train_sps / args.baseline_sps

    print(f"{'':6s} {'compile s':>10s} {'1st call s':>10s} {'repeat s':>9s} {'env-steps/s':>12s}")
    for name, c, f, m, sps in rows:
        print(f"{name:6s} {c:10.2f} {f:10.2f} {m:9.3f} {sps:12.0f}")
    print(f"train compile: {bench_training.compile_cpu_s:.2f} process CPU seconds "
          f"({'warm' if args.use_cache else 'cold'} persistent compilation cache)")
    if "sim_sps" in res:
        print(f"train/sim time per env step = {res['train_over_sim_time_per_step']:.2f}x "
              f"(learning costs {res['train_over_sim_time_per_step'] - 1:.2f}x the simulation)")
    if args.baseline_sps > 0:
        print(f"ours/authors' throughput = {res['train_sps_over_baseline']:.2f}x "
              f"(against a RECORDED figure, {args.baseline_sps:.0f} train-only env-steps/s of "
              f"the authors' code on a quiet machine; not measured in this run)")
        if not (args.authors_config and cfg.env.name == "dmc/CartpoleBalance"):
            print("note: the recorded baseline is the authors' config on dmc/CartpoleBalance; "
                  "this run differs (use --authors-config on that env for like-for-like)")
    if "update_gflop_per_iteration" in res:
        print(f"update FLOPs (XLA cost analysis): {res['update_gflop_per_minibatch']:.2f} GFLOP "
              f"per minibatch step x {r.num_epochs * r.num_minibatches} steps = "
              f"{res['update_gflop_per_iteration']:.1f} GFLOP per iteration; training achieved "
              f"{res['train_achieved_gflops']:.1f} GFLOP/s")
        print(f"matmul chain at the update's shapes: {res['matmul_peak_gflops']:.1f} GFLOP/s "
              f"-> FLOP-bound ceiling {res['flop_bound_sps']:.0f} env-steps/s for this config "
              f"(update only; {train_sps / res['flop_bound_sps']:.2f}x of it reached)")
    elif "matmul_peak_gflops" in res:
        print(f"matmul chain: {res['matmul_peak_gflops']:.1f} GFLOP/s (this backend reports no "
              f"FLOP count)")
    if "torch_train_sps" in res:
        print(f"torch/JAX training throughput = {res['torch_over_jax_train_sps']:.2f}x "
              f"(median over {args.repeats} paired repeats, each torch repeat next to a JAX "
              f"repeat: torch {res['torch_train_sps']:.0f} vs JAX "
              f"{res['paired_jax_train_sps']:.0f} env-steps/s, same config; torch on "
              f"{res['torch_device']} with {res['torch_threads']} thread(s); the torch row's "
              f"'compile s' is its build time and '1st call s' its warm-up iteration; against "
              f"the JAX row above, measured earlier: "
              f"{res['torch_over_jax_train_sps_unpaired']:.2f}x)")
        print(f"process CPU seconds per iteration in the paired repeats (all threads; robust "
              f"to other load on the machine): JAX {res['jax_cpu_s_per_iteration']:.2f}, torch "
              f"{res['torch_cpu_s_per_iteration']:.2f} -> torch/JAX throughput by CPU time "
              f"{res['torch_over_jax_cpu_time_ratio']:.2f}x (median of the pairs)")
        if torch_cache is not None:
            state = "warm" if torch_cache[1] else "cold"
            res.update({"torch_compile_cache": str(torch_cache[0]),
                        "torch_compile_cache_warm": torch_cache[1]})
            print(f"torch compile (run.torch_compile): first iteration {tf_s:.1f} s wall, "
                  f"{res['torch_first_call_cpu_s']:.1f} s CPU of this process (the C++ "
                  f"compiler runs in child processes, not counted), {state} inductor cache "
                  f"{torch_cache[0]} ({'held entries' if torch_cache[1] else 'empty'} before)")
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
