"""The report of a benchmark suite directory (``python -m benchmarks.suite report DIR``):
``table.md``, ``summary.json`` and ``curves.png`` from the curve files alone (numpy, and
matplotlib for the figure; no deep-learning framework).

Definitions (docs/benchmark.md has them with examples). For every task, ``best`` is the highest
evaluation return any algorithm reached on it in any seed, and ``level = lo + threshold x
(best - lo)`` (``threshold`` 0.9; ``lo`` = 0 unless ``--norm TASK=LO:HI``), i.e. 90% of the best
return seen by either algorithm. Per task and algorithm:

* final return: the last evaluation of each seed; mean and 95% Student-t interval over seeds;
* best: the highest evaluation of the algorithm in any seed;
* steps / wall to level: per seed the env steps and wall-clock seconds of the first evaluation
  at or above ``level`` ("never" if none); the column is the median over seeds with "never"
  counted as longer than any run (:func:`reppo_common.stats.censored_median`), so it is
  "never" when at least half the seeds never got there; ``reached`` counts the seeds that did;
* reliable success: seeds that reached ``level`` and never evaluated below it afterwards
  (:func:`reppo_common.stats.reliable_success` at the last evaluation);
* return at ``--at`` steps: the last evaluation at or before that many env steps (no
  interpolation), mean over seeds ("n/a" if a seed's first evaluation came later).

Across tasks, per algorithm: final returns normalised per task to ``[lo, hi]`` (default
``[0, best]``, or ``--norm``'s range for the task or its suite), mean over tasks and IQM over all runs, each with a stratified bootstrap 95%
interval (2,000 replicates, seed 0, so the report is reproducible byte for byte). Where a task
has REPPO and one baseline, the ratios REPPO / baseline of the median env steps and median
wall-clock to ``level``, and their median over tasks; where only one of the two reached the
level, a bound from the other's longest run instead (``< x`` / ``> x``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reppo_common.errors import UserError
from reppo_common.stats import (
    censored_median,
    first_reach,
    normalize_scores,
    reliable_success,
    stratified_bootstrap_ci,
    t_interval,
    value_at_or_before,
)

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
TABLE = "table.md"
SUMMARY = "summary.json"
FIGURE = "curves.png"


@dataclass
class Curve:
    """One job's evaluation curve."""

    algo: str
    task: str
    seed: int
    steps: np.ndarray
    wall: np.ndarray
    ret: np.ndarray


def parse_norms(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``--norm``: ``TASK=LO:HI`` or ``SUITE=LO:HI`` as ``reppo aggregate`` takes it
    (:func:`reppo_common.aggregate.parse_norms`); ``LO,HI`` is accepted too. A name given twice
    is a UserError."""
    from reppo_common.aggregate import parse_norms as parse

    keys = [item.partition("=")[0] for item in items]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise UserError(f"--norm gives {twice[0]} twice")
    return parse([k + eq + (r if ":" in r else r.replace(",", ":", 1))
                  for k, eq, r in (item.partition("=") for item in items)])


def _norm_for(task: str, norms: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The ``--norm`` range of ``task``: its own, else its suite's (``dmc``), else None."""
    name = task.rpartition(":")[2]
    return norms.get(task) or norms.get(name) or norms.get(name.split("/", 1)[0])


def load_suite(path: Path) -> tuple[list[Curve], dict[str, Any]]:
    """The finished curves under ``path/curves`` and the manifest (``{}`` if none)."""
    from benchmarks.suite import CURVES, MANIFEST, read_curve

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory (give a suite directory or a stored copy)")
    manifest: dict[str, Any] = {}
    if (path / MANIFEST).is_file():
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except ValueError as e:
            raise UserError(f"{path / MANIFEST} is not valid JSON ({e})") from None
    names = {v.get("dir"): t for t, v in manifest.get("tasks", {}).items()}
    curves = []
    files = sorted((path / CURVES).glob("*/*/seed*.csv")) if (path / CURVES).is_dir() else []
    for f in files:
        algo, tdir = f.parent.parent.name, f.parent.name
        try:
            seed = int(f.stem[4:])
        except ValueError:
            raise UserError(f"{f}: curve files are named seed<k>.csv") from None
        rows = read_curve(f)
        if not rows:
            raise UserError(f"{f} has no evaluations")
        steps = np.array([r["env_steps"] for r in rows])
        if np.any(np.diff(steps) <= 0):
            raise UserError(f"{f}: env_steps must increase from row to row")
        curves.append(Curve(algo, names.get(tdir, tdir.replace("_", "/", 1)), seed, steps,
                            np.array([r["wall_s"] for r in rows]),
                            np.array([r["return"] for r in rows])))
    if not curves:
        raise UserError(f"{path} holds no finished curves ({CURVES}/<algo>/<task>/seed<k>.csv); "
                        f"run `python -m benchmarks.suite run --out {path}` first")
    return curves, manifest


def _order(items: Sequence[str], preferred: Sequence[str]) -> list[str]:
    first = [x for x in preferred if x in items]
    return first + sorted(set(items) - set(first))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _at_values(c: Curve, at: Sequence[int]) -> dict[str, float | None]:
    """A run's return at each of ``at`` env steps: the last evaluation at or before it (None
    if the first evaluation came later)."""
    return {str(s): _finite(value_at_or_before(c.steps, c.ret, s)) for s in at}


def _at_means(per_seed: Sequence[dict[str, Any]], at: Sequence[int]) -> dict[str, float | None]:
    """The mean over seeds of :func:`_at_values` (None where any seed has no value)."""
    out = {}
    for s in at:
        vals = [p["at"][str(s)] for p in per_seed]
        out[str(s)] = None if any(v is None for v in vals) else float(np.mean(vals))
    return out


def compute(curves: Sequence[Curve], manifest: dict[str, Any], threshold: float = 0.9,
            norms: dict[str, tuple[float, float]] | None = None,
            at: Sequence[int] = ()) -> dict[str, Any]:
    """Every number of the report as a JSON-ready dict (see the module docstring)."""
    norms = norms or {}
    tasks = _order({c.task for c in curves}, list(manifest.get("tasks", {})))
    names = {n for t in tasks for n in (t, t.rpartition(":")[2],
                                        t.rpartition(":")[2].split("/", 1)[0])}
    unknown = sorted(set(norms) - names)
    if unknown:
        raise UserError(f"--norm names {', '.join(unknown)}, which has no curves here "
                        f"(tasks: {', '.join(tasks)})")
    algo_order = list(manifest.get("algos", [])) or ["reppo"]
    out: dict[str, Any] = {"threshold": threshold, "at": list(at), "tasks": {},
                           "aggregate": {}, "ratios": {}}
    scores: dict[str, dict[str, list[float]]] = {}
    for task in tasks:
        mine = [c for c in curves if c.task == task]
        best = float(max(np.nanmax(c.ret) for c in mine))
        lo, hi = _norm_for(task, norms) or (0.0, best)
        level = lo + threshold * (best - lo) if best > lo else None
        entry: dict[str, Any] = {"best": best, "norm": [lo, hi], "level": level, "algos": {}}
        for algo in _order({c.algo for c in mine}, algo_order):
            runs = sorted((c for c in mine if c.algo == algo), key=lambda c: c.seed)
            per_seed = []
            for c in runs:
                finite = c.ret[np.isfinite(c.ret)]
                final = float(finite[-1]) if finite.size else float("nan")
                i = first_reach(c.ret, level) if level is not None else None
                per_seed.append({
                    "seed": c.seed, "final": _finite(final), "best": _finite(float(np.nanmax(c.ret))),
                    "env_steps": int(c.steps[-1]), "wall_s": _finite(float(c.wall[-1])),
                    "steps_to_level": None if i is None else int(c.steps[i]),
                    "wall_to_level": None if i is None else _finite(float(c.wall[i])),
                    "reliable": bool(level is not None and reliable_success(c.ret, level)[-1]),
                    "at": _at_values(c, at),
                })
                if math.isfinite(final) and hi > lo:
                    scores.setdefault(algo, {}).setdefault(task, []).append(
                        float(normalize_scores(final, lo, hi)))
            finals = np.array([p["final"] if p["final"] is not None else np.nan
                               for p in per_seed])
            mean, ci_lo, ci_hi = t_interval(finals[:, None])
            n = len(per_seed)
            reached = [p for p in per_seed if p["steps_to_level"] is not None]
            entry["algos"][algo] = {
                "seeds": n,
                "final_mean": _finite(float(mean[0])),
                "final_ci": ([_finite(float(ci_lo[0])), _finite(float(ci_hi[0]))] if n > 1
                             else None),
                "best": max((p["best"] for p in per_seed if p["best"] is not None),
                            default=None),
                "median_steps_to_level": censored_median(
                    [p["steps_to_level"] for p in per_seed]) if level is not None else None,
                "median_wall_to_level": censored_median(
                    [p["wall_to_level"] for p in per_seed]) if level is not None else None,
                "reached": len(reached),
                "reliable": sum(p["reliable"] for p in per_seed),
                "at": _at_means(per_seed, at),
                "per_seed": per_seed,
            }
        others = [x for x in entry["algos"] if x != "reppo"]
        if "reppo" in entry["algos"] and len(others) == 1:
            r, b = entry["algos"]["reppo"], entry["algos"][others[0]]
            entry["ratio"] = {"baseline": others[0]}
            for key, last in (("steps", "env_steps"), ("wall", "wall_s")):
                entry["ratio"][key], entry["ratio"][f"{key}_bound"] = _ratio(
                    r[f"median_{key}_to_level"], b[f"median_{key}_to_level"],
                    max(p[last] or 0 for p in r["per_seed"]),
                    max(p[last] or 0 for p in b["per_seed"]))
        out["tasks"][task] = entry
    for algo in _order(list(scores), algo_order):
        per_task = [np.array(v) for v in scores[algo].values()]
        agg = {"tasks": len(per_task), "runs": int(sum(v.size for v in per_task))}
        for stat in ("mean", "iqm"):
            ci = stratified_bootstrap_ci(per_task, stat, reps=BOOTSTRAP_REPS,
                                         seed=BOOTSTRAP_SEED)
            agg[stat] = {"point": ci.point, "lo": ci.lo, "hi": ci.hi}
        out["aggregate"][algo] = agg
    for key in ("steps", "wall"):
        vals = [e["ratio"][key] for e in out["tasks"].values()
                if "ratio" in e and e["ratio"][key] is not None]
        out["ratios"][f"median_{key}"] = float(np.median(vals)) if vals else None
        out["ratios"][f"{key}_tasks"] = len(vals)
    return out


def _ratio(a: float | None, b: float | None, a_max: float, b_max: float
           ) -> tuple[float | None, list | None]:
    """(a / b, None) when both medians exist; when only one does, (None, a bound): REPPO's
    median over the baseline's longest run (``["<", x]``: the baseline would need longer than
    it ran) or REPPO's longest run over the baseline's median (``[">", x]``); (None, None) if
    neither reached the level."""
    if a is not None and b is not None:
        return (a / b if b > 0 else None), None
    if a is not None and b_max > 0:
        return None, ["<", a / b_max]
    if b is not None and b > 0:
        return None, [">", a_max / b]
    return None, None


# ----------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def _steps(x: float | None) -> str:
    return "never" if x is None else f"{x:,.0f}"


def _wall(x: float | None) -> str:
    if x is None:
        return "never"
    return f"{x:.1f} s" if x < 600 else f"{x / 60:.1f} min"


def _bounded(r: dict[str, Any], key: str) -> str:
    """A ratio cell: the value, a bound (``< 0.81`` where only REPPO reached the level), or
    n/a (neither did)."""
    if r[key] is not None:
        return _num(r[key], 2)
    bound = r[f"{key}_bound"]
    return "n/a" if bound is None else f"{bound[0]} {bound[1]:.2f}"


def format_table(s: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The markdown report of :func:`compute`'s result."""
    pct = f"{s['threshold']:.0%}"
    at = s["at"]
    lines = ["# Benchmark report", ""]
    settings = manifest.get("tasks", {})
    if settings:
        lines += ["| task | budget (env steps) | REPPO preset |", "|---|---|---|"]
        for t in s["tasks"]:
            m = settings.get(t, {})
            preset = (f"{m['preset']} ({m.get('preset_source', '')})" if "preset" in m
                      else "–")
            lines.append(f"| {t} | {_steps(m.get('budget'))} | {preset} |")
        lines.append("")
    head = ["task", "algo", "seeds", "final return: mean [95% CI]", "best",
            f"env steps to {pct} (median)", f"wall-clock to {pct} (median)", "reached",
            "reliable success"] + [f"return @ {x:,}" for x in at]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t, e in s["tasks"].items():
        for algo, r in e["algos"].items():
            ci = (f" [{_num(r['final_ci'][0])}, {_num(r['final_ci'][1])}]" if r["final_ci"]
                  else "")
            row = [t, algo, str(r["seeds"]), _num(r["final_mean"]) + ci, _num(r["best"]),
                   _steps(r["median_steps_to_level"]), _wall(r["median_wall_to_level"]),
                   f"{r['reached']}/{r['seeds']}", f"{r['reliable']}/{r['seeds']}"]
            row += [_num(r["at"][str(x)]) for x in at]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Level per task: {pct} of the best return any algorithm reached "
                  f"(lo + {s['threshold']} x (best - lo)):", ""]
    lines += ["| task | best | level | normalisation [lo, hi] |", "|---|---|---|---|"]
    for t, e in s["tasks"].items():
        lines.append(f"| {t} | {_num(e['best'], 2)} | {_num(e['level'], 2)} | "
                     f"[{_num(e['norm'][0], 2)}, {_num(e['norm'][1], 2)}] |")
    lines += ["", "Per seed:", "",
              "| task | algo | seed | env steps | final | best | env steps to level | "
              "wall-clock to level | reliable |", "|---|---|---|---|---|---|---|---|---|"]
    for t, e in s["tasks"].items():
        for algo, r in e["algos"].items():
            for p in r["per_seed"]:
                lines.append(f"| {t} | {algo} | {p['seed']} | {p['env_steps']:,} | "
                             f"{_num(p['final'])} | {_num(p['best'])} | "
                             f"{_steps(p['steps_to_level'])} | {_wall(p['wall_to_level'])} | "
                             f"{'yes' if p['reliable'] else 'no'} |")
    lines += ["", "Normalised final return across tasks (stratified bootstrap 95% CI):", "",
              "| algo | tasks | runs | mean | IQM |", "|---|---|---|---|---|"]
    for algo, g in s["aggregate"].items():
        cells = [f"{g[k]['point']:.3f} [{g[k]['lo']:.3f}, {g[k]['hi']:.3f}]"
                 for k in ("mean", "iqm")]
        lines.append(f"| {algo} | {g['tasks']} | {g['runs']} | {cells[0]} | {cells[1]} |")
    ratios = [(t, e["ratio"]) for t, e in s["tasks"].items() if "ratio" in e]
    if ratios:
        lines += ["", f"REPPO / baseline, median env steps and wall-clock to {pct} "
                      f"(< 1: REPPO faster; '< x' / '> x': only one of them got there, x is a "
                  f"bound from the other's longest run):", "",
                  "| task | baseline | env steps ratio | wall-clock ratio |", "|---|---|---|---|"]
        for t, r in ratios:
            lines.append(f"| {t} | {r['baseline']} | {_bounded(r, 'steps')} | "
                         f"{_bounded(r, 'wall')} |")
        g = s["ratios"]
        lines.append(f"| median over tasks | | {_num(g['median_steps'], 2)} "
                     f"({g['steps_tasks']} tasks) | {_num(g['median_wall'], 2)} "
                     f"({g['wall_tasks']} tasks) |")
    lines += ["", "Definitions: docs/benchmark.md. Regenerate: `python -m benchmarks.suite "
                  "report <this directory>`.", ""]
    return "\n".join(lines)


def plot(curves: Sequence[Curve], s: dict[str, Any], path: Path) -> bool:
    """One panel per task: per algorithm the mean eval return over seeds with a 95% t band
    (seeds interpolated onto their common env steps), the level as a dashed line. False if
    matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reppo_common.plot import NoOverlap, curve_band

    tasks = list(s["tasks"])
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = {"reppo": "tab:red", "ppo": "tab:blue", "pqn": "tab:green"}
    for ax, task in zip(axes.flat, tasks):
        for algo in s["tasks"][task]["algos"]:
            runs = [c for c in curves if c.task == task and c.algo == algo]
            color = colors.get(algo)
            n = len(runs)
            try:
                grid, mean, lo, hi, _ = curve_band([c.steps for c in runs],
                                                   [c.ret for c in runs])
                ax.plot(grid, mean, color=color, marker="o", ms=2.5,
                        label=f"{algo} ({n} seed{'s' * (n > 1)})")
                if n > 1:
                    ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
            except NoOverlap:
                for i, c in enumerate(runs):
                    ax.plot(c.steps, c.ret, color=color, alpha=0.7,
                            label=f"{algo} ({n} seeds, no common steps)" if i == 0 else None)
        level = s["tasks"][task]["level"]
        if level is not None:
            ax.axhline(level, color="grey", ls="--", lw=0.8)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(src: Path, dest: Path, threshold: float = 0.9,
           norms: dict[str, tuple[float, float]] | None = None, at: Sequence[int] = ()
           ) -> dict[str, Any]:
    """Read ``src``, write table.md, summary.json and curves.png to ``dest``, print the table;
    returns the summary."""
    curves, manifest = load_suite(Path(src))
    s = compute(curves, manifest, threshold, norms, at)
    missing = sorted(k for k, v in manifest.get("jobs", {}).items()
                     if not (Path(src) / v.get("curve", "")).is_file())
    s["missing_jobs"] = missing
    s["tasks_settings"] = manifest.get("tasks", {})
    table = format_table(s, manifest)
    if missing:
        table += (f"\nNot in the table ({len(missing)} jobs without a finished curve: failed, "
                  f"stopped or not run yet): {', '.join(missing)}\n")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / TABLE).write_text(table)
    (dest / SUMMARY).write_text(json.dumps(s, indent=1, sort_keys=True) + "\n")
    drew = plot(curves, s, dest / FIGURE)
    print(table)
    print(f"wrote {dest / TABLE}, {dest / SUMMARY}"
          + (f", {dest / FIGURE}" if drew else " (no figure: matplotlib is not installed)"))
    return s


# ----------------------------------------------------------------------------------------------
# REPPO against one baseline at the baseline's own level (``suite versus``)
# ----------------------------------------------------------------------------------------------


def versus(curves: Sequence[Curve], manifest: dict[str, Any], baseline: str, level_at: int,
           at: Sequence[int]) -> dict[str, Any]:
    """Per task, REPPO against ``baseline`` measured at the baseline's own level: ``level`` is
    the baseline's mean return (over seeds) at ``level_at`` env steps (last evaluation at or
    before it). Per run (both algorithms): the first evaluation ≥ level (env steps and
    wall-clock), and how many later evaluations fall below half of the run's running best
    (which starts at that first evaluation): a collapse after learning. Per task and algorithm:
    runs reaching the level, censored medians of both times, collapses, and the mean return at
    each of ``at``; REPPO's median wall-clock to the level over the baseline's (None unless both
    medians exist). ``ahead``: per ``at``, REPPO's mean ≥ the baseline's. A task without curves
    of both algorithms is left out; none at all is a UserError."""
    if level_at <= 0:
        raise UserError(f"--level-at must be > 0 env steps, got {level_at}")
    tasks = _order({c.task for c in curves}, list(manifest.get("tasks", {})))
    out: dict[str, Any] = {"baseline": baseline, "level_at": int(level_at), "at": list(at),
                           "tasks": {}}
    for task in tasks:
        runs = {a: sorted((c for c in curves if c.task == task and c.algo == a),
                          key=lambda c: c.seed) for a in ("reppo", baseline)}
        if not runs["reppo"] or not runs[baseline]:
            continue
        level = float(np.mean([value_at_or_before(c.steps, c.ret, level_at)
                               for c in runs[baseline]]))
        entry: dict[str, Any] = {"level": _finite(level), "algos": {}}
        for algo, rs in runs.items():
            per_seed = []
            for c in rs:
                i = first_reach(c.ret, level) if math.isfinite(level) else None
                drops = 0
                if i is not None:
                    best = -math.inf
                    for j, y in enumerate(c.ret[i:]):
                        best = max(best, float(y)) if math.isfinite(y) else best
                        drops += bool(j > 0 and not y >= 0.5 * best)
                per_seed.append({
                    "seed": c.seed,
                    "steps_to_level": None if i is None else int(c.steps[i]),
                    "wall_to_level": None if i is None else _finite(float(c.wall[i])),
                    "collapses": drops if i is not None else None,
                    "at": _at_values(c, at)})
            entry["algos"][algo] = {
                "seeds": len(per_seed),
                "reached": sum(p["steps_to_level"] is not None for p in per_seed),
                "median_steps_to_level": censored_median([p["steps_to_level"] for p in per_seed]),
                "median_wall_to_level": censored_median([p["wall_to_level"] for p in per_seed]),
                "collapses": sum(p["collapses"] or 0 for p in per_seed),
                "at": _at_means(per_seed, at), "per_seed": per_seed}
        r, b = entry["algos"]["reppo"], entry["algos"][baseline]
        rw, bw = r["median_wall_to_level"], b["median_wall_to_level"]
        entry["wall_ratio"] = rw / bw if rw is not None and bw else None
        entry["ahead"] = {str(s): (None if r["at"][str(s)] is None or b["at"][str(s)] is None
                                   else bool(r["at"][str(s)] >= b["at"][str(s)])) for s in at}
        out["tasks"][task] = entry
    if not out["tasks"]:
        have = sorted({c.algo for c in curves})
        raise UserError(f"no task has curves of both reppo and {baseline} (algos here: "
                        f"{', '.join(have)})")
    out["ahead_at_all"] = sum(all(v for v in e["ahead"].values()) for e in out["tasks"].values())
    return out


def format_versus(v: dict[str, Any]) -> str:
    """The markdown of :func:`versus`: a per-task summary, then every run."""
    b, at = v["baseline"], v["at"]
    lines = [f"# REPPO against {b} at {b}'s level",
             "",
             f"Level: {b}'s mean return at {v['level_at']:,} env steps. Collapses: evaluations "
             f"below half of the run's running best after it first reached the level.",
             "",
             "| task | level | algo | reached | median env steps to level | median wall-clock "
             "to level | collapses | " + " | ".join(f"mean @ {s:,}" for s in at) + " |",
             "|---|---|---|---|---|---|---|" + "---|" * len(at)]
    for task, e in v["tasks"].items():
        for algo, r in e["algos"].items():
            cells = [_num(r["at"][str(s)]) for s in at]
            if algo == "reppo":
                cells = [f"**{c}**" if e["ahead"][str(s)] else c for c, s in zip(cells, at)]
            lines.append(f"| {task} | {_num(e['level'])} | {algo} | {r['reached']}/{r['seeds']} "
                         f"| {_steps(r['median_steps_to_level'])} | "
                         f"{_wall(r['median_wall_to_level'])} | {r['collapses']} | "
                         + " | ".join(cells) + " |")
    n = len(v["tasks"])
    lines += ["",
              "Bold: REPPO's mean at least the baseline's. " + (
                  f"Tasks where REPPO is at least {b}'s mean at every one of "
                  f"{', '.join(f'{s:,}' for s in at)} env steps: {v['ahead_at_all']} of {n}."
                  if at else ""),
              "",
              f"REPPO's median wall-clock to the level over {b}'s: " + "; ".join(
                  f"{t} {_num(e['wall_ratio'], 2) if e['wall_ratio'] is not None else 'n/a'}"
                  for t, e in v["tasks"].items()) + ".",
              "",
              "| task | algo | seed | first eval ≥ level: env steps (wall-clock) | collapses |",
              "|---|---|---|---|---|"]
    for task, e in v["tasks"].items():
        for algo, r in e["algos"].items():
            for p in r["per_seed"]:
                hit = ("never" if p["steps_to_level"] is None else
                       f"{p['steps_to_level']:,} ({_wall(p['wall_to_level'])})")
                lines.append(f"| {task} | {algo} | {p['seed']} | {hit} | "
                             f"{'–' if p['collapses'] is None else p['collapses']} |")
    return "\n".join(lines) + "\n"
