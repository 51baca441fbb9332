"""Learning curves of Brax PPO (playground's DMC tuning) and REPPO on the same env and budget.

    python -m benchmarks.compare_ppo --env dmc/CartpoleBalance --seeds 0 1 2 --steps 1000000 \
        --num-envs 128 --out runs/compare_ppo [--preset cpu] [--num-evals 10] \
        [--eval-episodes 16] [--ppo-num-minibatches 32] [--ppo-set key=value ...] \
        [--reppo-set section.field=value ...]

PPO: ``brax.training.agents.ppo.train`` on the playground env (``impl='jax'``: playground's
default ``'warp'`` is 10-90x slower on CPU), wrapped with playground's
``wrap_for_brax_training``, with playground's own hyperparameters
``dm_control_suite_params.brax_ppo_config(task)`` except for the sizes, which are scaled to this
comparison: ``num_envs`` = ``--num-envs`` (128), ``batch_size`` = ``num_envs`` and
``num_minibatches`` = 32 (the configuration the issue measured: batch 128, 32 minibatches, 16
updates per batch, unroll 30), ``num_timesteps`` = ``--steps``, ``num_eval_envs`` =
``--eval-episodes``. One PPO training step is then ``batch_size * num_minibatches * unroll_length
* action_repeat`` env steps (122,880 by default). brax runs ``num_evals - 1`` eval periods of
``num_resets_per_eval`` epochs (env states are re-reset after every epoch) of whole training
steps, so the number of evaluations (at most ``--num-evals``) and of resets per eval (at most
playground's 10) are chosen to divide the number of training steps ``steps // per step``
(at least 1), so PPO, like REPPO, runs whole training steps within ``--steps`` (unless the
budget is below one training step).
Evaluation is brax's ``Evaluator`` with the deterministic policy (as REPPO's evaluation;
``--ppo-stochastic-eval`` for brax's default), one episode per eval env.

Playground's tuning looks for ``'PendulumSwingUp'`` while the registry names the task
``'PendulumSwingup'``, so its intended tuning (action_repeat 4, 4 updates per batch) is silently
skipped. This tool looks the tuning up under the peer's spelling and applies it explicitly
(printed; ``--no-peer-fix`` to reproduce playground's behaviour).

REPPO: ``reppo_jax.train.train(config, run_dir=None, hooks)`` with ``--preset`` (default: the env's)
plus ``--reppo-set`` overrides, ``rollout.total_env_steps`` = ``--steps``, an evaluation every
``--steps / --num-evals`` env steps on ``--eval-episodes`` episodes.

Env steps are simulator steps for both (agent steps x action_repeat). For every seed the tool
finds the best eval return seen by either algorithm, and for each algorithm the env steps at
which it first reached 90% of it (``--threshold``); it prints per-seed and median values and the
ratio REPPO steps / PPO steps, and writes ``OUT/curves.json`` and ``OUT/curves.png``.

brax 0.14.2 calls ``jax.device_put_replicated``, which jax 0.10 removed; a compatibility shim is
installed (only while PPO trains, only in this process); see :func:`device_put_replicated_shim`.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import statistics
import sys
import time
from pathlib import Path


PEER_SPELLINGS = {"PendulumSwingup": "PendulumSwingUp"}
"""Registry name -> the spelling playground's ``brax_ppo_config`` tests for its tuning."""

ISSUE_PPO_NUM_MINIBATCHES = 32
"""Minibatches per PPO training step as measured in the issue (with batch_size = num_envs)."""


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="dmc/CartpoleBalance", help="dmc/Task")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, required=True, help="env-step budget per run")
    p.add_argument("--num-envs", type=int, default=128, help="PPO parallel envs")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--preset", default=None,
                   help="REPPO preset (default: the env's default preset, e.g. cpu-repeat4 for "
                        "dmc/PendulumSwingup)")
    p.add_argument("--reppo-set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="REPPO config override (repeatable)")
    p.add_argument("--num-evals", type=int, default=10, help="evaluations per run (about)")
    p.add_argument("--eval-episodes", type=int, default=16,
                   help="episodes per evaluation (both algorithms)")
    p.add_argument("--ppo-batch-size", type=int, default=None, help="default: --num-envs")
    p.add_argument("--ppo-num-minibatches", type=int, default=ISSUE_PPO_NUM_MINIBATCHES)
    p.add_argument("--ppo-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any brax ppo.train argument (value parsed as JSON if possible)")
    p.add_argument("--ppo-stochastic-eval", action="store_true",
                   help="evaluate PPO's stochastic policy (brax default) instead of its mean")
    p.add_argument("--no-peer-fix", action="store_true",
                   help="do not apply playground's intended tuning under its alternate spelling")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="fraction of the best return that counts as reached")
    p.add_argument("--algos", default="ppo,reppo", help="comma list of ppo,reppo")
    a = p.parse_args(argv)

    suite, _, task = a.env.rpartition("/")
    if suite not in ("", "dmc"):
        p.error(f"--env must be a dmc/ task, got {a.env!r}")
    from reppo_jax.envs.dmc import dmc_task_names

    names = dmc_task_names()
    if task not in names:
        close = difflib.get_close_matches(task, names, n=3)
        hint = f" (did you mean {', '.join('dmc/' + c for c in close)}?)" if close else ""
        p.error(f"unknown DMC task {a.env!r}{hint}; available: "
                f"{', '.join('dmc/' + n for n in names)}")
    a.task = task
    a.env = f"dmc/{task}"
    if a.preset is None:
        from reppo_common.registry import REGISTRY

        a.preset = REGISTRY[a.env].default_preset if a.env in REGISTRY else "cpu"
    if a.steps < 1 or a.num_envs < 1 or a.num_evals < 1 or a.eval_episodes < 1:
        p.error("--steps, --num-envs, --num-evals and --eval-episodes must be >= 1")
    a.algos = [x for x in a.algos.split(",") if x]
    if not a.algos or set(a.algos) - {"ppo", "reppo"}:
        p.error("--algos must be a comma list of ppo,reppo")
    a.ppo_batch_size = a.ppo_batch_size or a.num_envs
    if (a.ppo_batch_size * a.ppo_num_minibatches) % a.num_envs:
        p.error("--ppo-batch-size * --ppo-num-minibatches must be divisible by --num-envs")
    try:
        a.ppo_set = dict(_parse_kv(s) for s in a.ppo_set)
        a.reppo_config = reppo_config(a, a.seeds[0])  # validates --preset / --reppo-set
    except ValueError as e:
        p.error(str(e))
    return a


def _parse_kv(item: str):
    key, eq, raw = item.partition("=")
    if not eq or not key:
        raise ValueError(f"--ppo-set {item!r} must look like key=value")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


# ----------------------------------------------------------------------------------------------
# Brax PPO
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def device_put_replicated_shim():
    """Provide ``jax.device_put_replicated`` (removed in jax 0.10) while brax PPO runs.

    Old semantics: ``device_put_replicated(x, devices)`` returns, for every leaf, an array with a
    new leading axis of size ``len(devices)`` whose i-th slice lives on ``devices[i]`` (the
    input layout ``jax.pmap`` expects). brax uses it once, to replicate the initial
    ``TrainingState`` over the local devices before the pmapped training epoch, and reads results
    back with ``x.addressable_shards[0].data.squeeze(0)``. The shim stacks each leaf
    ``len(devices)`` times and shards the stack along axis 0 over a 1-D mesh of ``devices``, which
    reproduces both the shape and the one-slice-per-device placement (on one CPU device: a
    leading axis of 1); jax 0.10 keeps the same construction internally
    (``jax._src.api.device_put_replicated``). The mesh axis gets the name jax's pmap gives its
    outputs' axis (probed with an identity pmap): with any other name the first and the second
    call of brax's pmapped epoch see different input shardings and it compiles twice (measured:
    +~60 s on this 2-core CPU). Installed only if jax lacks the function, removed afterwards."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if hasattr(jax, "device_put_replicated"):
        yield False
        return

    def device_put_replicated(x, devices):
        devices = list(devices)
        # name the mesh axis as pmap names its outputs' axis, so the pmapped epoch sees the
        # same input sharding on every call (another name costs one extra compile)
        probe = jax.pmap(lambda v: v, devices=devices)(np.zeros((len(devices),), np.float32))
        axis = getattr(getattr(probe.sharding, "mesh", None), "axis_names", ("replica",))[0]
        sharding = NamedSharding(Mesh(np.array(devices), (axis,)), PartitionSpec(axis))
        return jax.tree.map(
            lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), sharding), x)

    jax.device_put_replicated = device_put_replicated
    try:
        yield True
    finally:
        del jax.device_put_replicated


def peer_ppo_config(task: str, apply_fix: bool = True):
    """playground's ``brax_ppo_config(task)`` as a dict, plus the tuning it intends for ``task``
    under an alternate spelling (``PEER_SPELLINGS``). Returns (config, {key: (old, new)})."""
    from unittest import mock

    from mujoco_playground.config import dm_control_suite_params as dmp

    base = dmp.brax_ppo_config(task).to_dict()
    alt = PEER_SPELLINGS.get(task)
    if not alt or not apply_fix:
        return base, {}
    real = dmp.dm_control_suite.get_default_config
    with mock.patch.object(dmp.dm_control_suite, "get_default_config",
                           lambda name: real(task if name == alt else name)):
        tuned = dmp.brax_ppo_config(alt).to_dict()
    diff = {k: (base.get(k), v) for k, v in tuned.items() if base.get(k) != v}
    return tuned, diff


def ppo_params(a, task: str, seed: int):
    """brax ``ppo.train`` keyword arguments for this comparison (see module docstring)."""
    cfg, fix = peer_ppo_config(task, apply_fix=not a.no_peer_fix)
    cfg.update(num_envs=a.num_envs, batch_size=a.ppo_batch_size,
               num_minibatches=a.ppo_num_minibatches, num_eval_envs=a.eval_episodes)
    cfg.update(a.ppo_set)
    per_train_step = (cfg["batch_size"] * cfg["num_minibatches"] * cfg["unroll_length"]
                      * cfg["action_repeat"])
    # whole training steps within the budget (REPPO, too, runs whole iterations within it)
    n_train = max(1, a.steps // per_train_step)
    # brax runs (num_evals - 1) eval periods of max(num_resets_per_eval, 1) epochs of
    # ceil(num_timesteps / (periods * resets * per_train_step)) training steps each; pick the
    # periods k and resets r (at most playground's value) to divide n_train, so the run is
    # exactly n_train training steps (else a small budget overshoots by up to k*r steps)
    k = _largest_divisor(n_train, a.num_evals - 1 if a.num_evals > 1 else 1)
    r = _largest_divisor(n_train // k, max(1, cfg.get("num_resets_per_eval", 0)))
    if cfg.get("num_resets_per_eval", 0) > 0:
        cfg["num_resets_per_eval"] = r
    cfg.update(num_timesteps=n_train * per_train_step, num_evals=k + 1, seed=seed,
               deterministic_eval=not a.ppo_stochastic_eval)
    return cfg, fix, per_train_step, n_train * per_train_step


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, max(1, min(at_most, n)) + 1) if n % d == 0)


def run_ppo(a, seed: int, on_eval=None):
    """Train Brax PPO on ``a.task`` with :func:`ppo_params`; returns the eval points
    (``env_steps``, ``return``, ``wall_s`` since the start of training, compilation included)
    and the run's facts. ``on_eval(point)`` is called as each evaluation arrives
    (``benchmarks.suite`` writes its curve file with it)."""
    from brax.training.agents.ppo import train as ppo
    from mujoco_playground import registry, wrapper

    kwargs, fix, per_step, total = ppo_params(a, a.task, seed)
    env = registry.load(a.task, config_overrides={"impl": "jax"})
    eval_env = registry.load(a.task, config_overrides={"impl": "jax"})
    points = []
    t0 = time.perf_counter()

    def progress(step, metrics):
        if "eval/episode_reward" in metrics:
            points.append({"env_steps": int(step),
                           "return": float(metrics["eval/episode_reward"]),
                           "wall_s": time.perf_counter() - t0})
            print(f"  ppo  seed {seed} step {int(step):>9d} return "
                  f"{points[-1]['return']:8.2f}  ({points[-1]['wall_s']:.0f} s)", flush=True)
            if on_eval is not None:
                on_eval(points[-1])

    with device_put_replicated_shim() as shimmed:
        ppo.train(environment=env, eval_env=eval_env, progress_fn=progress,
                  wrap_env_fn=wrapper.wrap_for_brax_training, **kwargs)
    return {"points": points, "wall_s": time.perf_counter() - t0, "config": kwargs,
            "peer_fix": {k: list(v) for k, v in fix.items()}, "env_steps_per_train_step": per_step,
            "total_env_steps": total, "shim_installed": shimmed}


# ----------------------------------------------------------------------------------------------
# REPPO
# ----------------------------------------------------------------------------------------------

def reppo_config(a, seed: int):
    from spec import derived
    from spec.config import ConfigError, override_pairs
    from spec.presets import preset_config

    try:
        pairs = dict(override_pairs(a.reppo_set))
        base = {"env.name": a.env, "run.seed": seed, "rollout.total_env_steps": a.steps,
                "run.eval_episodes": a.eval_episodes}
        cfg = preset_config(a.preset, {**base, **pairs})
        if "run.eval_interval" not in pairs:  # a whole number of iterations between evals
            per_iter = derived.env_steps_per_iteration(
                cfg.rollout.num_envs, cfg.rollout.num_steps, cfg.env.action_repeat)
            every = max(1, (a.steps // per_iter) // a.num_evals) * per_iter
            cfg = preset_config(a.preset, {**base, **pairs, "run.eval_interval": every})
        return cfg
    except ConfigError as e:
        raise ValueError(str(e)) from e


def run_reppo(a, seed: int):
    from reppo_jax.train import train
    from spec.backend import TrainHooks

    cfg = reppo_config(a, seed)
    points = []
    t0 = time.perf_counter()

    def on_eval(m):
        points.append({"env_steps": int(m["env_steps"]),
                       "return": float(m["eval/return_mean"]),
                       "wall_s": time.perf_counter() - t0})
        print(f"  reppo seed {seed} step {points[-1]['env_steps']:>9d} return "
              f"{points[-1]['return']:8.2f}  ({points[-1]['wall_s']:.0f} s)", flush=True)

    res = train(cfg, run_dir=None, hooks=TrainHooks(on_eval_metrics=on_eval))
    return {"points": points, "wall_s": time.perf_counter() - t0, "config": cfg.to_dict(),
            "total_env_steps": res.env_steps, "compile_s": res.compile_s}


# ----------------------------------------------------------------------------------------------
# analysis and output
# ----------------------------------------------------------------------------------------------

def first_reach(points, level):
    """Env steps of the first point whose return is >= ``level`` (None: never)."""
    from reppo_common.stats import first_reach as first_index

    i = first_index([p["return"] for p in points], level)
    return None if i is None else points[i]["env_steps"]


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def analyse(runs, algos, seeds, threshold):
    """Per seed: best return over both algorithms, steps to reach ``threshold`` of it."""
    per_seed = {}
    for s in seeds:
        best = max((p["return"] for al in algos for p in runs[al][s]["points"]), default=None)
        entry = {"best_return": best, "level": None if best is None else threshold * best}
        for al in algos:
            entry[f"{al}_steps"] = (None if best is None
                                    else first_reach(runs[al][s]["points"], threshold * best))
        if "ppo" in algos and "reppo" in algos and entry["ppo_steps"] and entry["reppo_steps"]:
            entry["reppo_over_ppo"] = entry["reppo_steps"] / entry["ppo_steps"]
        per_seed[s] = entry
    summary = {f"{al}_median_steps": _median([per_seed[s][f"{al}_steps"] for s in seeds])
               for al in algos}
    summary["unreached"] = {al: [s for s in seeds if per_seed[s][f"{al}_steps"] is None]
                            for al in algos}
    if "ppo" in algos and "reppo" in algos:
        summary["reppo_over_ppo_median_of_ratios"] = _median(
            [per_seed[s].get("reppo_over_ppo") for s in seeds])
        r, p = summary["reppo_median_steps"], summary["ppo_median_steps"]
        summary["reppo_over_ppo_ratio_of_medians"] = r / p if r and p else None
    return per_seed, summary


def _fmt(x, spec=".0f"):
    return "never" if x is None else format(x, spec)


def print_report(a, runs, per_seed, summary):
    for al in a.algos:
        for s in a.seeds:
            print(f"\n{al} seed {s}: env_steps -> eval return")
            for p in runs[al][s]["points"]:
                print(f"  {p['env_steps']:>10d}  {p['return']:9.2f}")
    print(f"\nenv steps to first reach {a.threshold:.0%} of the best return seen by either "
          "algorithm (per seed):")
    hdr = f"{'seed':>5s} {'best':>8s} " + " ".join(f"{al + '_steps':>12s}" for al in a.algos)
    both = "ppo" in a.algos and "reppo" in a.algos
    print(hdr + (f" {'reppo/ppo':>10s}" if both else ""))
    for s in a.seeds:
        e = per_seed[s]
        row = f"{s:>5d} {_fmt(e['best_return'], '.2f'):>8s} " + " ".join(
            f"{_fmt(e[al + '_steps']):>12s}" for al in a.algos)
        print(row + (f" {_fmt(e.get('reppo_over_ppo'), '.2f'):>10s}" if both else ""))
    med = " ".join(f"{_fmt(summary[al + '_median_steps']):>12s}" for al in a.algos)
    print(f"{'med':>5s} {'':>8s} {med}" + (
        f" {_fmt(summary.get('reppo_over_ppo_ratio_of_medians'), '.2f'):>10s}" if both else ""))
    print("(medians over the seeds that reached the level; never = not reached: "
          f"{summary['unreached']})")


def plot(path: Path, a, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"ppo": "tab:blue", "reppo": "tab:red"}
    for al in a.algos:
        for i, s in enumerate(a.seeds):
            pts = runs[al][s]["points"]
            ax.plot([p["env_steps"] for p in pts], [p["return"] for p in pts], marker="o",
                    ms=3, color=colors[al], alpha=0.8, label=al.upper() if i == 0 else None)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return")
    ax.set_title(f"{a.env}: REPPO ({a.preset}) vs Brax PPO (playground tuning), "
                 f"seeds {' '.join(map(str, a.seeds))}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    a = parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    runs = {al: {} for al in a.algos}
    if "ppo" in a.algos:
        kw, fix, per_step, total = ppo_params(a, a.task, a.seeds[0])
        shown = {k: kw[k] for k in ("num_envs", "batch_size", "num_minibatches", "unroll_length",
                                    "num_updates_per_batch", "action_repeat", "num_evals",
                                    "learning_rate", "discounting", "entropy_cost",
                                    "reward_scaling", "num_resets_per_eval")}
        print(f"PPO (brax, playground brax_ppo_config({a.task!r}) scaled): {shown}; "
              f"{per_step} env steps per training step, {total} in total")
        if fix:
            print(f"NOTE: playground's brax_ppo_config tests for {PEER_SPELLINGS[a.task]!r}, "
                  f"but the registry task is {a.task!r}, so its tuning is silently skipped; "
                  "applied here explicitly: "
                  + ", ".join(f"{k} {o} -> {n}" for k, (o, n) in fix.items()))
        elif a.task in PEER_SPELLINGS:
            print(f"NOTE: --no-peer-fix: playground's intended tuning for "
                  f"{PEER_SPELLINGS[a.task]!r} is NOT applied (as playground itself does)")
        if total > a.steps:
            print(f"NOTE: the budget {a.steps} is below one PPO training step; PPO runs "
                  f"{total} env steps")
    if "reppo" in a.algos:
        r = a.reppo_config.rollout
        print(f"REPPO (preset {a.preset}{' + ' + ' '.join(a.reppo_set) if a.reppo_set else ''}):"
              f" num_envs={r.num_envs} num_steps={r.num_steps} minibatches={r.num_minibatches}"
              f" epochs={r.num_epochs} eval every {a.reppo_config.run.eval_interval} steps")
    for s in a.seeds:
        for al in a.algos:
            print(f"[{al} seed {s}]", flush=True)
            runs[al][s] = run_ppo(a, s) if al == "ppo" else run_reppo(a, s)
            print(f"  done in {runs[al][s]['wall_s']:.0f} s", flush=True)
    per_seed, summary = analyse(runs, a.algos, a.seeds, a.threshold)
    print_report(a, runs, per_seed, summary)
    out = {"env": a.env, "steps": a.steps, "seeds": a.seeds, "threshold": a.threshold,
           "preset": a.preset, "reppo_set": a.reppo_set, "num_envs": a.num_envs,
           "curves": {al: {str(s): runs[al][s] for s in a.seeds} for al in a.algos},
           "per_seed": {str(s): v for s, v in per_seed.items()}, "summary": summary}
    (a.out / "curves.json").write_text(json.dumps(out, indent=1, default=str))
    plot(a.out / "curves.png", a, runs)
    print(f"wrote {a.out / 'curves.json'} and {a.out / 'curves.png'}")
    return out


if __name__ == "__main__":
    main()
