"""Aggregate scores of reppo runs across tasks and seeds, with stratified bootstrap CIs.

Each run directory contributes one score (default: its final eval return; ``--score last:K``
averages the last K evals, ``--score max`` takes the best). Scores are normalised per task
(``--normalize auto``: DMC returns divided by 1000, the maximum of a 1000-step episode with
rewards in [0, 1]; ManiSkill's ``eval/success_rate`` is already in [0, 1]; other suites are
left raw unless ``--norm TASK=LO:HI`` gives their range). Runs are grouped into rows by
``--group-by`` (default: backend) and tasks are the environments. Per row it prints:

* mean, median and IQM (rliable's definitions, see :mod:`reppo_common.stats`) with stratified
  percentile-bootstrap confidence intervals (runs resampled within each task);
* reliable success: the fraction of runs that reached tau (``--tau``, on the normalised scale,
  default 0.9 as in the paper) and never dropped below it afterwards, evaluated on each run's
  whole eval curve, averaged per task then across tasks, with the same bootstrap CI.

The statistics are our own numpy implementation (``rliable`` 1.2.0 did not import in this
environment: its dependency ``arch`` 7.2.0 fails with pandas 3); they follow rliable's
conventions and are tested against hand-computed values and scipy.

    reppo aggregate docs/results/cartpole_balance_cpu --csv agg.csv --json agg.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence


import numpy as np

from reppo_common.curves import DEFAULT_METRIC, RunCurve, load_runs, run_label
from reppo_common.errors import UserError
from reppo_common.stats import (
    normalize_scores,
    reliable_success,
    stratified_bootstrap_ci,
)

__all__ = ["run_score", "task_range", "parse_norms", "aggregate_runs", "format_table", "main"]

STATISTICS = ("mean", "median", "iqm")


def run_score(run: RunCurve, how: str = "final") -> float:
    """One number per run: ``final`` (last finite eval), ``max`` or ``last:K`` (mean of the
    last K finite evals)."""
    v = run.values[np.isfinite(run.values)]
    if v.size == 0:
        raise UserError(f"{run.path}: every {run.metric!r} value is null")
    if how == "final":
        return float(v[-1])
    if how == "max":
        return float(v.max())
    if how.startswith("last:"):
        try:
            k = int(how[5:])
        except ValueError:
            k = 0
        if k < 1:
            raise UserError(f"--score {how!r}: K must be a positive integer (e.g. last:5)")
        return float(v[-k:].mean())
    raise UserError(f"unknown --score {how!r}; choose final, max or last:K")


def parse_norms(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``["dmc/CheetahRun=0:1000", "minatar=0:100"]`` -> ``{name: (lo, hi)}``; a key without a
    slash applies to the whole suite."""
    out: dict[str, tuple[float, float]] = {}
    for item in items:
        key, sep, rng = item.partition("=")
        lo_s, sep2, hi_s = rng.partition(":")
        try:
            if not (sep and sep2 and key):
                raise ValueError
            lo, hi = float(lo_s), float(hi_s)
        except ValueError:
            raise UserError(f"--norm {item!r} is malformed; use TASK=LO:HI, e.g. "
                            f"dmc/CheetahRun=0:1000 or dmc=0:1000") from None
        if not hi > lo:
            raise UserError(f"--norm {item!r}: HI must be greater than LO")
        out[key] = (lo, hi)
    return out


def task_range(env: str, metric: str, mode: str,
               norms: Mapping[str, tuple[float, float]]) -> tuple[float, float] | None:
    """Normalisation range (lo, hi) of a task, or None to keep raw scores. Explicit ``norms``
    (exact env name, then suite) win; ``auto`` knows DMC returns (0..1000) and success rates."""
    if env in norms:
        return norms[env]
    suite = env.split("/", 1)[0]
    if suite in norms:
        return norms[suite]
    if mode == "none":
        return None
    if metric.endswith("success_rate"):
        return (0.0, 1.0)
    if suite == "dmc" and metric.startswith("eval/return"):
        from reppo_common.registry import REGISTRY

        spec = REGISTRY.get(env)
        steps = spec.max_episode_steps if spec else 1000
        return (0.0, float(steps))
    return None


def aggregate_runs(runs: Sequence[RunCurve], group_by: Sequence[str] = ("backend",),
                   score: str = "final", normalize: str = "auto",
                   norms: Mapping[str, tuple[float, float]] | None = None, tau: float = 0.9,
                   reps: int = 2000, confidence: float = 0.95, seed: int = 0
                   ) -> list[dict[str, Any]]:
    """One row per group label: run/task counts, mean/median/IQM with CIs and reliable success.

    Keys of a row: ``group, tasks, runs, normalized`` (list of tasks left raw under
    ``raw_tasks``), then for each statistic ``S`` in mean, median, iqm and ``reliable``:
    ``S``, ``S_lo``, ``S_hi``.
    """
    if normalize not in ("auto", "none"):
        raise UserError(f"unknown --normalize {normalize!r}; choose auto or none")
    norms = dict(norms or {})
    by_label: dict[str, dict[str, list[RunCurve]]] = {}
    for r in runs:
        by_label.setdefault(run_label(r, group_by), {}).setdefault(r.env, []).append(r)
    rows = []
    for label, tasks in by_label.items():
        scores, success, raw = [], [], []
        for env, members in tasks.items():
            rng = task_range(env, members[0].metric, normalize, norms)
            if rng is None:
                raw.append(env)
            s = np.array([run_score(r, score) for r in members])
            curves = [r.values for r in members]
            if rng is not None:
                s = normalize_scores(s, *rng)
                curves = [normalize_scores(c, *rng) for c in curves]
            scores.append(s)
            success.append(np.array([float(reliable_success(c, tau, "whole")[-1])
                                     for c in curves]))
        row: dict[str, Any] = {"group": label, "tasks": len(tasks),
                               "runs": sum(len(m) for m in tasks.values()),
                               "raw_tasks": raw, "score": score, "tau": tau}
        for stat in STATISTICS:
            ci = stratified_bootstrap_ci(scores, stat, reps, confidence, seed)
            row[stat], row[f"{stat}_lo"], row[f"{stat}_hi"] = ci.point, ci.lo, ci.hi
        ci = stratified_bootstrap_ci(success, "mean", reps, confidence, seed)
        row["reliable"], row["reliable_lo"], row["reliable_hi"] = ci.point, ci.lo, ci.hi
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping[str, Any]], confidence: float = 0.95) -> str:
    """Plain-text table of :func:`aggregate_runs` rows."""
    head = ["group", "tasks", "runs", *STATISTICS, f"reliable(tau={rows[0]['tau']:g})"]
    body = []
    for r in rows:
        cells = [str(r["group"]), str(r["tasks"]), str(r["runs"])]
        for stat in (*STATISTICS, "reliable"):
            cells.append(f"{r[stat]:.3f} [{r[stat + '_lo']:.3f}, {r[stat + '_hi']:.3f}]")
        body.append(cells)
    table = [head, *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    raw = sorted({t for r in rows for t in r["raw_tasks"]})
    lines.append(f"[lo, hi]: {confidence:.0%} stratified bootstrap CI over runs; score = "
                 f"{rows[0]['score']} eval; reliable = reached tau and never dropped below it")
    if raw:
        lines.append(f"not normalised (raw scale, give --norm TASK=LO:HI): {', '.join(raw)}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reppo aggregate",
        description="Mean / median / IQM with stratified bootstrap CIs and reliable success "
                    "across tasks and seeds of reppo run directories.")
    p.add_argument("runs", nargs="+", help="run directories (or folders containing them)")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="eval metric (default %(default)s)")
    p.add_argument("--score", default="final", help="final (default), max or last:K")
    p.add_argument("--group-by", default="backend",
                   help="comma-separated row keys: backend, seed, dir, meta.<key> or a config "
                        "field (default %(default)s)")
    p.add_argument("--normalize", default="auto", choices=("auto", "none"),
                   help="auto: DMC returns / 1000, success rates as is (default)")
    p.add_argument("--norm", action="append", default=[], metavar="TASK=LO:HI",
                   help="normalisation range for a task or suite (repeatable)")
    p.add_argument("--tau", type=float, default=0.9,
                   help="reliable-success threshold on the normalised scale (default 0.9)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0, help="bootstrap RNG seed")
    p.add_argument("--csv", default=None, help="also write the rows as CSV")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def _write(path: str, rows: Sequence[Mapping[str, Any]], kind: str) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            if kind == "json":
                json.dump(list(rows), fh, indent=2)
                fh.write("\n")
            else:
                flat = [{k: (";".join(v) if isinstance(v, list) else v) for k, v in r.items()}
                        for r in rows]
                w = csv.DictWriter(fh, fieldnames=list(flat[0]))
                w.writeheader()
                w.writerows(flat)
    except OSError as e:
        raise UserError(f"cannot write {path!r}: {e.strerror or e}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``reppo aggregate``: 0 on success; a user error raises :class:`UserError`, which
    ``reppo_common.cli.main`` (the one error handler of every subcommand) prints as one line
    and turns into exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.reps < 1:
        raise UserError(f"--reps must be >= 1, got {args.reps}")
    norms = parse_norms(args.norm)
    runs = load_runs(args.runs, args.metric)
    keys = [k.strip() for k in args.group_by.split(",") if k.strip()]
    rows = aggregate_runs(runs, keys, args.score, args.normalize, norms, args.tau,
                          args.reps, args.confidence, args.seed)
    print(format_table(rows, args.confidence))
    if args.csv:
        _write(args.csv, rows, "csv")
    if args.json:
        _write(args.json, rows, "json")
    return 0

