"""Run the paper's ablations (Appendix E.1, Section 4.1) over tasks and seeds and aggregate them.

    reppo ablate --tasks dmc/CartpoleBalance,dmc/PendulumSwingup --seeds 3 \\
        [--steps N | --steps TASK=N,...] [--backend jax] [--out DIR] [--variants reppo,score,...] [--jobs J] [--dry-run]

Every (task, variant, seed) is one ``reppo train`` subprocess in its own run directory
``OUT/runs/<suite>_<Task>/<variant>/seed<S>``, with the task's default preset and the variant's
overrides from :data:`spec.ablations.ABLATIONS` (the one table of variants; ``--variants`` picks
from it, default :data:`spec.ablations.DEFAULT_ABLATIONS`). The tool is resumable: a run whose
metrics already hold the final evaluation of its budget is skipped; an interrupted JAX run with a
checkpoint continues with ``reppo train --resume``; any other partial run directory is started
afresh. ``--jobs`` runs that many trainings at once (each JAX process uses the cores XLA gives it;
on 2 cores keep 1–2).

Afterwards (and with ``--aggregate-only``) the complete runs are aggregated with the project's
statistics (``reppo_common.aggregate`` over ``reppo_common.stats``): per variant the mean, median and
IQM of the final evaluation return, normalised per task (DMC returns / 1000), with 95% stratified
bootstrap confidence intervals, plus the normalised area under the eval curve (AUC: the mean of
the normalised eval returns over the run, evaluations being equally spaced) and each task's raw
final return. Written to ``OUT/ablation.md``, ``OUT/ablation.json`` and a learning-curve figure
``OUT/ablation.png`` (``reppo_common.plot``, one row per task, one curve per variant).

``--dry-run`` prints each run's status and command and runs nothing. ``--reppo-cmd`` replaces the
command prefix (default: this Python with ``-m reppo_common.cli``), e.g. for the tests' toy CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
"""The directory holding this package (the repository root of a checkout): the training
subprocesses run there, with it on PYTHONPATH."""

import numpy as np

from reppo_common.curves import DEFAULT_METRIC, RunCurve, load_run
from reppo_common.errors import UserError
from reppo_common.stats import normalize_scores, stratified_bootstrap_ci
from spec.ablations import ABLATIONS, DEFAULT_ABLATIONS, ablation_overrides
from spec.config import ConfigError, ReppoConfig

__all__ = ["Run", "parse_steps", "steps_for", "plan_runs", "run_status", "build_command", "run_all", "aggregate",
           "format_markdown", "main"]

DONE, RESUME, FRESH, RESTART = "done", "resume", "new", "restart"
"""Statuses of a planned run: complete (skipped); continue a JAX checkpoint; start in a new
directory; start afresh in a partial directory (its contents are removed first)."""


@dataclass
class Run:
    """One (task, variant, seed) training."""

    task: str
    variant: str
    seed: int
    run_dir: Path
    config: ReppoConfig
    """The config ``reppo train`` builds for it (task preset + budget + variant overrides)."""
    status: str = FRESH
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.task} {self.variant} seed {self.seed}"


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → [0, 1, 2]; ``"0,4,7"`` → [0, 4, 7]."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            seeds = list(range(n))
    except ValueError:
        raise UserError(f"--seeds {text!r}: give a count (3 → seeds 0, 1, 2) or a comma list "
                        f"of non-negative seeds (0,4,7)") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds) or not seeds:
        raise UserError(f"--seeds {text!r}: seeds must be distinct and non-negative")
    return seeds


def parse_variants(text: str | None) -> list[str]:
    """Comma list of names from :data:`spec.ablations.ABLATIONS` (default: the paper's set)."""
    if not text:
        return list(DEFAULT_ABLATIONS)
    names = [v.strip() for v in text.split(",") if v.strip()]
    if "all" in names:
        return list(ABLATIONS)
    for v in names:
        if v not in ABLATIONS:
            from spec.config import _suggest

            raise UserError(f"unknown variant {v!r}{_suggest(v, list(ABLATIONS))}; available: "
                            f"{', '.join(ABLATIONS)}")
    if len(set(names)) != len(names):
        raise UserError(f"--variants {text!r} names a variant twice")
    return names


def steps_for(steps: "int | Mapping[str, int] | None", task: str) -> int | None:
    """The ``rollout.total_env_steps`` of ``task`` under the budget ``steps``: one int for every
    task, ``{task: N}`` per task (absent tasks: the preset's), or None (every preset's)."""
    if steps is None or isinstance(steps, int):
        return steps
    return steps.get(task)


def parse_steps(text: str, tasks: Sequence[str]) -> "int | dict[str, int]":
    """``--steps``: ``N`` for every task, or ``TASK=N,...`` per task (a bare ``N`` among them is
    the budget of the tasks not named)."""
    def positive(v: str, what: str) -> int:
        try:
            f = float(v)
        except ValueError:
            f = -1.0
        if not f.is_integer() or f < 1:
            raise UserError(f"--steps: {what} must be a positive integer, got {v!r}")
        return int(f)

    if "=" not in text:
        return positive(text, "the budget")
    out: dict[str, int] = {}
    default = None
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "=" not in part:
            default = positive(part, "the default budget")
            continue
        task, value = (x.strip() for x in part.split("=", 1))
        if task not in tasks:
            raise UserError(f"--steps names {task!r}, which is not in --tasks "
                            f"({', '.join(tasks)})")
        out[task] = positive(value, f"the budget of {task}")
    if default is not None:
        for t in tasks:
            out.setdefault(t, default)
    return out


def requested_config(task: str, variant: str, seed: int, steps: int | None,
                     extra: Sequence[str] = ()) -> ReppoConfig:
    """The config ``reppo train --env TASK --seed S [--steps N] <variant overrides> <extra>``
    builds (the CLI's precedence: preset < env/seed/steps < overrides)."""
    from reppo_common.registry import resolve_env
    from spec.presets import DEFAULT_PRESET, preset_config

    env = resolve_env(task)
    flags = [f"env.name={env.full_name}", f"run.seed={seed}"]
    if steps is not None:
        flags.append(f"rollout.total_env_steps={steps}")
    try:
        return preset_config(env.default_preset or DEFAULT_PRESET,
                             flags + ablation_overrides(variant) + list(extra))
    except ConfigError as e:
        raise UserError(f"{task} {variant}: {e}") from None


def final_env_steps(config: ReppoConfig) -> int:
    """Env steps at the end of a run of ``config``: the training loop's own iteration count
    (``reppo_common.driver.Schedule``) times the iteration size."""
    from reppo_common.driver import Schedule
    from spec import derived

    r = config.rollout
    per_iter = derived.env_steps_per_iteration(r.num_envs, r.num_steps, config.env.action_repeat)
    return Schedule.of(config, per_iter).iterations * per_iter


def _final_eval_step(run_dir: Path) -> int | None:
    """The largest env_steps of an eval line in the run's metrics (None if none)."""
    from reppo_common.runs import METRICS_FILE, read_metrics

    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    steps = [r.get("env_steps") for r in read_metrics(path) if r.get("kind") == "eval"]
    steps = [s for s in steps if isinstance(s, (int, float))]
    return int(max(steps)) if steps else None


def _reuse_key(cfg: ReppoConfig, total: int) -> ReppoConfig:
    """What must match for a run directory to be reused: everything but the budget and the
    ``run`` bookkeeping (eval interval, checkpoints, sinks), the seed included."""
    from spec.config import RunConfig

    return dataclasses.replace(
        cfg, rollout=dataclasses.replace(cfg.rollout, total_env_steps=total),
        run=RunConfig(seed=cfg.run.seed))


def run_status(run: Run, backend: str) -> str:
    """FRESH if the run directory does not exist (or is empty); DONE if it holds this run with
    the final evaluation of its budget written; RESUME for a shorter or interrupted JAX run with a
    checkpoint (``reppo train --resume``); RESTART for any other partial run of this config. A
    directory holding another config (other than budget and bookkeeping) or a longer run is a
    UserError: the tool never overwrites another experiment."""
    d = run.run_dir
    if not d.exists() or (d.is_dir() and not any(d.iterdir())):
        return FRESH
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        return RESTART  # killed before reppo train wrote anything useful
    try:
        have = ReppoConfig.from_json(cfg_path.read_text())
    except (OSError, ConfigError) as e:
        raise UserError(f"{cfg_path}: unreadable ({e}); remove {d} to rerun it") from None
    want_total, have_total = run.config.rollout.total_env_steps, have.rollout.total_env_steps
    if _reuse_key(have, want_total) != _reuse_key(run.config, want_total):
        raise UserError(f"{d} holds another config than {run.label} asks for (changed variant "
                        f"table, task preset or overrides?); remove it or use another --out")
    if have_total > want_total:
        raise UserError(f"{d} holds a longer run ({have_total:,} env steps) than asked for "
                        f"({want_total:,}); pass --steps {have_total} or use another --out")
    final = _final_eval_step(d)
    if have_total == want_total and final is not None and final >= final_env_steps(run.config):
        return DONE
    if backend == "jax" and any((d / "checkpoints").glob("state_*.json")):
        return RESUME
    return RESTART


def plan_runs(tasks: Sequence[str], variants: Sequence[str], seeds: Sequence[int], out: Path,
              backend: str, steps: "int | Mapping[str, int] | None", extra: Sequence[str] = ()) -> list[Run]:
    """Every (task, variant, seed) with its run directory, config and status, in the order
    seed-major (all variants of seed 0 first), so partial results cover every variant early."""
    runs = []
    for seed in seeds:
        for task in tasks:
            for variant in variants:
                cfg = requested_config(task, variant, seed, steps_for(steps, task), extra)
                d = out / "runs" / task.replace("/", "_") / variant / f"seed{seed}"
                run = Run(task, variant, seed, d, cfg)
                run.status = run_status(run, backend)
                runs.append(run)
    return runs


def default_prefix() -> list[str]:
    """``python -m reppo_common.cli`` with this interpreter (the checkout's code via PYTHONPATH)."""
    return [sys.executable, "-m", "reppo_common.cli"]


def build_command(run: Run, backend: str, steps: "int | Mapping[str, int] | None",
                  extra: Sequence[str] = (), prefix: Sequence[str] | None = None) -> list[str]:
    """The ``reppo train`` argv of ``run`` for its status."""
    steps = steps_for(steps, run.task)
    cmd = list(prefix or default_prefix()) + ["train", "--backend", backend]
    if run.status == RESUME:
        cmd += ["--resume", str(run.run_dir)]
        if steps is not None:
            cmd += ["--steps", str(steps)]
        return cmd + ["--no-progress"]
    cmd += ["--env", run.task, "--seed", str(run.seed), "--run-dir", str(run.run_dir)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    cmd += [f"--{o}" for o in ablation_overrides(run.variant)] + [f"--{o}" for o in extra]
    return cmd + ["--no-progress"]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]]
                                                       if env.get("PYTHONPATH") else []))
    return env


def execute(run: Run, cmd: Sequence[str], log_path: Path) -> dict[str, Any]:
    """Run one training subprocess, output to ``log_path``; returns {rc, wall_s, log}."""
    if run.status == RESTART:
        shutil.rmtree(run.run_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        rc = subprocess.call(list(cmd), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                             env=_subprocess_env())
    return {"rc": rc, "wall_s": time.monotonic() - t0, "log": str(log_path)}


def run_all(runs: Sequence[Run], backend: str, steps: "int | Mapping[str, int] | None", out: Path, jobs: int = 1,
            extra: Sequence[str] = (), prefix: Sequence[str] | None = None,
            executor: Callable[[Run, Sequence[str], Path], dict[str, Any]] | None = None,
            echo: Callable[[str], None] = print) -> list[Run]:
    """Run every not-DONE run (``jobs`` at a time) with ``executor`` (default :func:`execute`,
    a subprocess); returns the runs that failed."""
    todo = [r for r in runs if r.status != DONE]
    executor = executor or execute

    def one(run: Run) -> Run:
        cmd = build_command(run, backend, steps, extra, prefix)
        log = out / "logs" / f"{run.task.replace('/', '_')}_{run.variant}_seed{run.seed}.log"
        echo(f"start  {run.label} ({run.status})")
        run.result = executor(run, cmd, log)
        ok = run.result.get("rc") == 0
        echo(f"{'done ' if ok else 'FAIL '}  {run.label} in {run.result.get('wall_s', 0):.0f}s"
             + ("" if ok else f" (exit {run.result.get('rc')}; see {run.result.get('log')})"))
        return run

    if jobs <= 1:
        finished = [one(r) for r in todo]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            finished = list(pool.map(one, todo))
    return [r for r in finished if r.result.get("rc") != 0]


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def _curve_auc(values: np.ndarray) -> float:
    """Mean of the finite (normalised) eval values: the area under the eval curve divided by
    its length when evaluations are equally spaced."""
    v = values[np.isfinite(values)]
    return float(v.mean()) if v.size else float("nan")


def aggregate(runs: Sequence[Run], reps: int = 2000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, Any]:
    """Per variant (in the given order) over the complete runs: mean / median / IQM of the
    normalised final eval return with stratified bootstrap CIs (``reppo_common.aggregate``), the
    normalised AUC with its CI, and per task the raw final returns. Returns
    ``{"variants": [row, ...], "tasks": [...], "curves": [RunCurve labelled by variant]}``."""
    from reppo_common.aggregate import aggregate_runs, task_range

    done = [r for r in runs if r.status == DONE]
    curves: dict[str, list[RunCurve]] = {}
    for r in done:
        c = load_run(r.run_dir, DEFAULT_METRIC)
        # the variant is the curve's label in the plot (carried in the backend slot)
        curves.setdefault(r.variant, []).append(dataclasses.replace(c, backend=r.variant))
    tasks = list(dict.fromkeys(r.task for r in runs))
    rows = []
    for variant in dict.fromkeys(r.variant for r in runs):
        members = curves.get(variant, [])
        row: dict[str, Any] = {"variant": variant,
                               "description": ABLATIONS[variant]["description"],
                               "overrides": ablation_overrides(variant), "runs": len(members)}
        if members:
            agg = aggregate_runs(members, ("backend",), "final", "auto", {}, 0.9, reps,
                                 confidence, seed)[0]
            for k in ("mean", "median", "iqm"):
                row[k], row[f"{k}_lo"], row[f"{k}_hi"] = agg[k], agg[f"{k}_lo"], agg[f"{k}_hi"]
            row["raw_tasks"] = agg["raw_tasks"]
            aucs, per_task = [], {}
            for task in tasks:
                tm = [c for c in members if c.env == task]
                if not tm:
                    continue
                rng = task_range(task, tm[0].metric, "auto", {})
                vals = [normalize_scores(c.values, *rng) if rng else c.values for c in tm]
                aucs.append(np.array([_curve_auc(v) for v in vals]))
                finals = np.array([c.final for c in tm])
                per_task[task] = {"runs": len(tm), "final_mean": float(finals.mean()),
                                  "final_std": float(finals.std()),
                                  "finals": [float(x) for x in finals]}
            ci = stratified_bootstrap_ci(aucs, "mean", reps, confidence, seed)
            row["auc"], row["auc_lo"], row["auc_hi"] = ci.point, ci.lo, ci.hi
            row["tasks"] = per_task
        rows.append(row)
    return {"variants": rows, "tasks": tasks, "confidence": confidence,
            "curves": [c for v in curves.values() for c in v]}


def _ci(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "–"
    return f"{row[key]:.3f} [{row[key + '_lo']:.3f}, {row[key + '_hi']:.3f}]"


def format_markdown(result: dict[str, Any]) -> str:
    """The aggregate as a markdown table plus a note on what the numbers are."""
    tasks = result["tasks"]
    head = ["variant", "runs", "mean", "median", "IQM", "AUC"] + [f"{t} final" for t in tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in result["variants"]:
        cells = [row["variant"], str(row["runs"])] + [_ci(row, k) for k in
                                                      ("mean", "median", "iqm", "auc")]
        for t in tasks:
            pt = row.get("tasks", {}).get(t)
            cells.append(f"{pt['final_mean']:.1f} ± {pt['final_std']:.1f} (n={pt['runs']})"
                         if pt else "–")
        lines.append("| " + " | ".join(cells) + " |")
    raw = sorted({t for r in result["variants"] for t in r.get("raw_tasks", [])})
    lines += ["", f"mean / median / IQM: final eval return normalised per task (DMC: / 1000), "
                  f"[lo, hi] a {result['confidence']:.0%} stratified bootstrap CI over runs; AUC: "
                  f"mean normalised eval return over the run; per-task columns: raw final eval "
                  f"return, mean ± std over seeds."]
    if raw:
        lines.append(f"Not normalised (raw scale): {', '.join(raw)}.")
    lines += ["", "| variant | overrides | what |", "| --- | --- | --- |"]
    for row in result["variants"]:
        lines.append(f"| {row['variant']} | {' '.join(row['overrides']) or '(none)'} | "
                     f"{row['description']} |")
    return "\n".join(lines) + "\n"


def write_outputs(result: dict[str, Any], out: Path, plot: bool = True) -> list[Path]:
    """``ablation.md``, ``ablation.json`` and (with ``plot``) ``ablation.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    md = out / "ablation.md"
    md.write_text(format_markdown(result))
    written.append(md)
    js = out / "ablation.json"
    js.write_text(json.dumps({k: v for k, v in result.items() if k != "curves"}, indent=2) + "\n")
    written.append(js)
    if plot and result["curves"]:
        from reppo_common.plot import plot_runs

        png = out / "ablation.png"
        plot_runs(result["curves"], png, ("backend",),
                  title="ablations: eval return, mean ± 95% CI over seeds")
        written.append(png)
    return written


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reppo ablate",
        description="Run REPPO's ablations (E.1, §4.1) over tasks x variants x seeds as "
                    "`reppo train` subprocesses (resumable) and aggregate them.")
    p.add_argument("--tasks", default="dmc/CartpoleBalance,dmc/PendulumSwingup",
                   help="comma-separated envs (default %(default)s)")
    p.add_argument("--seeds", default="3", help="a count (3 = seeds 0,1,2) or a comma list")
    p.add_argument("--steps", default=None,
                   help="rollout.total_env_steps per run: N for every task, or TASK=N,... per "
                        "task (default: the task preset's)")
    p.add_argument("--backend", default="jax", help="jax (default) or torch")
    p.add_argument("--out", default="runs/ablate", help="output directory (default %(default)s)")
    p.add_argument("--variants", default=None,
                   help=f"comma list from: {', '.join(ABLATIONS)}; 'all' for every one "
                        f"(default: {','.join(DEFAULT_ABLATIONS)})")
    p.add_argument("--jobs", type=int, default=1, help="trainings run at once (default 1)")
    p.add_argument("--override", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="extra config override for every run (repeatable), e.g. "
                        "run.eval_interval=100000")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--aggregate-only", action="store_true",
                   help="only aggregate the complete runs under --out")
    p.add_argument("--no-plot", action="store_true", help="skip ablation.png")
    p.add_argument("--reppo-cmd", default=None,
                   help="command prefix instead of `python -m reppo_common.cli` (shell-split)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``reppo ablate``: 0 when every run finished, 1 if some failed; a user error raises
    :class:`UserError`, which ``reppo_common.cli.main`` (the one error handler of every
    subcommand) prints as one line and turns into exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.backend not in ("jax", "torch"):
        raise UserError(f"unknown --backend {args.backend!r}; choose jax or torch")
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise UserError("--tasks is empty")
    steps = parse_steps(args.steps, tasks) if args.steps is not None else None
    seeds, variants = parse_seeds(args.seeds), parse_variants(args.variants)
    out = Path(args.out).resolve()  # the subprocesses run in the repository root
    prefix = shlex.split(args.reppo_cmd) if args.reppo_cmd else None
    runs = plan_runs(tasks, variants, seeds, out, args.backend, steps, args.override)
    counts = {s: sum(r.status == s for r in runs) for s in (DONE, RESUME, FRESH, RESTART)}
    print(f"ablate: {len(runs)} runs ({len(tasks)} tasks x {len(variants)} variants x "
          f"{len(seeds)} seeds): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if args.dry_run:
        for r in runs:
            cmd = build_command(r, args.backend, steps, args.override, prefix)
            print(f"[{r.status}] {shlex.join(cmd)}")
        return 0
    failed: list[Run] = []
    if not args.aggregate_only:
        failed = run_all(runs, args.backend, steps, out, args.jobs, args.override, prefix)
        for r in runs:
            if r.result.get("rc") == 0:
                r.status = run_status(r, args.backend)
    if not any(r.status == DONE for r in runs):
        raise UserError(f"no complete runs under {out} to aggregate")
    result = aggregate(runs, reps=args.reps)
    for path in write_outputs(result, out, plot=not args.no_plot):
        print(f"wrote {path}")
    print(format_markdown(result))
    if failed:
        print(f"{len(failed)} run(s) failed: " + "; ".join(
            f"{r.label} (log {r.result.get('log')})" for r in failed), file=sys.stderr)
        return 1
    return 0

