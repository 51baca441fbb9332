"""JAX training throughput of one config on 1 device and on N devices, side by side, in one run.

    python -m benchmarks.bench_devices --env dmc/CartpoleBalance --preset cpu --devices 2 \
        [--section.field=value ...] --iterations 5 --repeats 3 [--use-cache] [--json]

Works for either JAX trainer ``reppo_jax.train.make_trainer`` builds (e.g. ``--env
minatar/Breakout --preset cpu-discrete`` for D-REPPO; not a host-stepped Atari env). The
1-device and the N-device trainer run the same config (same total envs, minibatches and epochs —
strong scaling); the N-device one splits envs and minibatches over a device mesh
(``run.devices=N``, ``reppo_jax.distributed``). For each it reports the compile time of the
jitted iteration, steady-state training env-steps/s (median over ``--repeats`` of
``--iterations`` iterations) and process CPU seconds per iteration, then the N-device/1-device
ratios.

Without accelerators, N virtual CPU devices are created (``XLA_FLAGS=
--xla_force_host_platform_device_count=N``, set here before jax is imported). They share the
machine's cores, so on a CPU the ratio measures what the sharded program costs (collectives, the
once-per-iteration gather of the batch, the partitioned program), not a speed-up; on GPUs pass
N up to the number of GPUs. The persistent compilation cache is off unless ``--use-cache``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.cli_args import config_parser, parse_with_overrides



def parse_args(argv=None):
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=2, help="N, compared against 1 device")
    p.add_argument("--iterations", type=int, default=5, help="timed iterations per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--use-cache", action="store_true",
                   help="keep the persistent XLA compilation cache (hides compile time)")
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")
    args = parse_with_overrides(p, argv)
    if args.devices < 2 or args.iterations < 1 or args.repeats < 1:
        p.error("--devices must be >= 2, --iterations and --repeats >= 1")
    args.authors_config = False
    return args


def virtual_cpu_devices(n: int) -> None:
    """Ask XLA for ``n`` host (CPU) devices unless XLA_FLAGS already sets a count; only affects
    the CPU platform, and only before jax is imported."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


def main(argv=None):
    args = parse_args(argv)
    if "jax" in sys.modules:
        raise SystemExit("error: jax was imported before bench_devices could set XLA_FLAGS")
    virtual_cpu_devices(args.devices)
    if not args.use_cache:
        os.environ["REPPO_JAX_CACHE"] = ""  # read by reppo_jax.train.enable_compilation_cache

    import dataclasses

    import jax

    from reppo_jax.train import make_trainer
    from benchmarks.bench_throughput import bench_training, build_config

    base = build_config(args)
    r = base.rollout
    per_repeat = r.num_envs * r.num_steps * args.iterations
    print(f"devices: {len(jax.devices())} x {jax.devices()[0].platform} "
          f"({jax.devices()[0].device_kind}); env={base.env.name} preset={args.preset} "
          f"num_envs={r.num_envs} num_steps={r.num_steps} minibatches={r.num_minibatches} "
          f"epochs={r.num_epochs} actor={base.actor.hidden_dim} critic={base.critic.hidden_dim} "
          f"iterations={args.iterations} repeats={args.repeats} ({per_repeat} env steps per "
          f"repeat)", flush=True)
    results = {}
    for n in (1, args.devices):
        cfg = dataclasses.replace(base, run=dataclasses.replace(base.run, devices=n))
        trainer = make_trainer(cfg)
        compile_s, first_s, times, finite = bench_training(trainer, args.seed, args.iterations,
                                                           args.repeats)
        med = statistics.median(times)
        results[n] = {"devices": n, "compile_s": compile_s, "first_call_s": first_s,
                      "repeat_s": times, "train_sps": per_repeat / med,
                      "cpu_s_per_iteration": bench_training.cpu_s_per_iteration,
                      "finite": finite}
        print(f"  {n} device(s): compile {compile_s:.1f} s, {per_repeat / med:,.0f} env-steps/s, "
              f"{bench_training.cpu_s_per_iteration:.2f} CPU-s/iteration", flush=True)
        del trainer
    one, many = results[1], results[args.devices]
    ratio = {"train_sps": many["train_sps"] / one["train_sps"],
             "cpu_s_per_iteration": many["cpu_s_per_iteration"] / one["cpu_s_per_iteration"],
             "compile_s": many["compile_s"] / one["compile_s"]}
    n = args.devices
    print(f"\n{'':22s} {'1 device':>12s} {f'{n} devices':>12s} {'ratio':>8s}")
    for key, label, fmt in (("train_sps", "training env-steps/s", "{:12,.0f}"),
                            ("cpu_s_per_iteration", "CPU-s per iteration", "{:12.2f}"),
                            ("compile_s", "compile s", "{:12.1f}")):
        print(f"{label:22s} {fmt.format(one[key])} {fmt.format(many[key])} "
              f"{ratio[key]:8.2f}")
    if jax.devices()[0].platform == "cpu":
        print(f"note: {n} virtual CPU devices share this machine's {os.cpu_count()} cores; the "
              f"ratio is the sharded program's overhead, not a multi-device speed-up")
    if not (one["finite"] and many["finite"]):
        print("warning: non-finite training metrics after the timed iterations")
    if args.json:
        print(json.dumps({"config": base.to_dict(), "results": results, "ratio": ratio}))
    return results


if __name__ == "__main__":
    main()
