"""Where a torch training iteration spends its time: phases, then the top operators.

    python -m benchmarks.profile_torch --env dmc/CartpoleBalance --preset cpu --iterations 3 \
        [--section.field=value ...] [--top 15] [--json]

Builds the torch ``Trainer`` for the config, runs one warm-up iteration, then:

* **phases**: process CPU seconds per iteration of the iteration's parts, run as
  ``reppo_torch.agent.make_iteration`` runs them — ``rollout`` (θ' snapshot and the
  ``num_steps`` env steps with the behaviour policy and the bootstrap), ``targets`` (soft
  TD(λ) targets; the ppo estimator's advantages), ``update`` (``num_epochs ×
  num_minibatches`` minibatch steps) and the iteration's one host read of the metrics —
  median over ``--iterations`` iterations, without a profiler attached;
* **operators**: ``torch.profiler`` over ``--iterations`` more iterations: top-level aten
  operator calls (made by Python or the autograd engine, not by another operator) per
  iteration and per minibatch step, and the ``--top`` operators by self CPU time (the
  profiler's own per-call cost inflates the small ops; read the ranking and the counts, not
  the absolute times).

Process CPU time counts every thread (the JAX simulator behind the DMC bridge too) and is robust
to other load on a shared machine; wall time is not reported.
"""

from __future__ import annotations

import json
import statistics
import time

from benchmarks.cli_args import config_parser, parse_with_overrides


def parse_args(argv=None):
    p = config_parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=3,
                   help="iterations per measurement (phases, then profiled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=15, help="operators listed")
    p.add_argument("--json", action="store_true", help="also print one JSON line of results")
    args = parse_with_overrides(p, argv)
    if args.iterations < 1 or args.top < 1:
        p.error("--iterations and --top must be >= 1")
    args.authors_config = False  # bench_throughput.build_config's flag: the plain preset here
    return args


def phase_times(trainer, carry, iterations: int):
    """Process CPU seconds of each phase of ``iterations`` iterations (same calls, same order
    as ``make_iteration``'s iteration)."""
    from reppo_torch import agent as A
    from reppo_torch import estimators as E
    from reppo_torch.train import _scalarize

    h, env = trainer.h, trainer.env
    rows = []
    for _ in range(iterations):
        c0 = time.process_time()
        A.snapshot(carry.agent, carry.behaviour)
        carry, batch, episodes = A.rollout(h, env, carry)
        c1 = time.process_time()
        targets = A.compute_targets(h, carry.agent, batch)
        extras = E.compute_advantages(h, carry.agent, batch) if h.actor_gradient == "ppo" \
            else None
        c2 = time.process_time()
        carry.agent, info = A.update(h, carry.agent, carry.behaviour, batch, targets,
                                     carry.streams, carry.shard, extras)
        c3 = time.process_time()
        _scalarize(info)
        c4 = time.process_time()
        rows.append((c1 - c0, c2 - c1, c3 - c2, c4 - c3))
    return carry, {name: statistics.median(col)
                   for name, col in zip(("rollout", "targets", "update", "host_read"),
                                        zip(*rows))}


def main(argv=None):
    args = parse_args(argv)
    from benchmarks.bench_throughput import build_config

    cfg = build_config(args)

    from torch.profiler import ProfilerActivity, profile

    from reppo_torch.train import Trainer, _scalarize

    trainer = Trainer(cfg)
    carry = trainer.init(args.seed)
    carry, info = trainer.iteration(carry)  # warm-up
    _scalarize(info)
    r = cfg.rollout
    print(f"env={cfg.env.name} preset={args.preset} num_envs={r.num_envs} "
          f"num_steps={r.num_steps} minibatches={r.num_minibatches} epochs={r.num_epochs} "
          f"actor={cfg.actor.hidden_dim} critic={cfg.critic.hidden_dim} "
          f"iterations={args.iterations}", flush=True)

    carry, phases = phase_times(trainer, carry, args.iterations)
    total = sum(phases.values())
    print(f"process CPU s per iteration (median of {args.iterations}): {total:.3f} = "
          + ", ".join(f"{k} {v:.3f} ({100 * v / total:.0f}%)" for k, v in phases.items()))

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.iterations):
            carry, info = trainer.iteration(carry)
            _scalarize(info)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    # calls made by Python or the autograd engine, not by another aten operator
    calls = sum(1 for e in prof.events() if e.name.startswith("aten::") and not (
        e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::"))) / args.iterations
    steps = r.num_epochs * r.num_minibatches
    self_total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]
    print(f"top-level aten operator calls per iteration (not made by another operator): "
          f"{calls:.0f}, {calls / steps:.0f} per minibatch step ({steps} steps; rollout "
          f"included)")
    print(f"top {len(top)} aten operators by self CPU time (under the profiler):")
    print(f"{'operator':32s} {'share':>6s} {'calls/iter':>10s}  (calls include nested ones)")
    for e in top:
        print(f"{e.key:32s} {100 * e.self_cpu_time_total / self_total:5.1f}% "
              f"{e.count / args.iterations:10.0f}")
    res = {"env": cfg.env.name, "preset": args.preset, "overrides": args.overrides,
           "iterations": args.iterations, "phase_cpu_s": phases, "iteration_cpu_s": total,
           "aten_calls_per_iteration": calls, "minibatch_steps": steps,
           "top_ops": [{"op": e.key, "self_share": e.self_cpu_time_total / self_total,
                        "calls_per_iteration": e.count / args.iterations} for e in top]}
    if args.json:
        print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
