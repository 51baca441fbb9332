"""Learning curves read from run directories (framework-free; used by reppo plot and
reppo aggregate).

A run directory (see :mod:`reppo_common.runs`) holds ``config.json``, ``meta.json`` and
``metrics.jsonl``; this module turns the lines of ``metrics.jsonl`` that carry a metric (the eval
lines for ``eval/*``, the per-iteration train lines for ``train/*`` and ``rollout/*``, see
:func:`record_kind`) into arrays and groups
runs by environment and by any label (backend, seed or a config field such as
``loss.kl_target``). Every problem with the input is a one-line :class:`UserError`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from reppo_common.errors import UserError
from reppo_common.runs import CONFIG_FILE, META_FILE, METRICS_FILE, read_metrics

__all__ = ["RunCurve", "expand_run_dirs", "load_run", "load_runs", "record_kind", "run_label",
           "group_runs", "DEFAULT_METRIC"]

DEFAULT_METRIC = "eval/return_mean"
"""The metric the tools read by default (mean deterministic-policy episode return)."""


def record_kind(metric: str) -> str:
    """The ``kind`` of the metrics.jsonl lines that carry ``metric``: "eval" for ``eval/*``,
    "train" for every other key (``train/*``, ``rollout/*``: one line per iteration)."""
    return "eval" if metric.startswith("eval/") else "train"


@dataclass
class RunCurve:
    """One run's curve of one metric (eval lines, or train lines for a train metric, see
    :func:`record_kind`) plus the facts used to group it."""

    path: Path
    env: str
    backend: str
    seed: int | None
    metric: str
    steps: np.ndarray
    """Env steps of the lines (sorted, float)."""
    wall_s: np.ndarray
    """Wall-clock seconds since the run started at each line (NaN where missing)."""
    values: np.ndarray
    """The metric at each line (NaN where it was written as null)."""
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> float:
        """The last finite value of the curve (NaN if none)."""
        finite = self.values[np.isfinite(self.values)]
        return float(finite[-1]) if finite.size else float("nan")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return data


def _check_order(lines: Sequence[dict[str, Any]], path: Path, kind: str) -> None:
    """The lines of one kind must come in strictly increasing ``env_steps`` (a resumed run
    rewinds the file to its checkpoint first): a repeated or earlier step means the file was
    edited, concatenated or written by two processes at once, and a curve (or a "max" score)
    built from it would be wrong. UserError naming the first offender."""
    what_one = "evaluation" if kind == "eval" else "iteration"
    for prev, cur in zip(lines, lines[1:]):
        a, b = prev["env_steps"], cur["env_steps"]
        if b <= a:
            what = f"a duplicate {kind} line" if b == a else f"an out-of-order {kind} line"
            raise UserError(f"{path} has {what} (env_steps {b:,} after {a:,}); each "
                            f"{what_one} must appear once, in order: remove the extra lines")


def load_run(path: str | Path, metric: str = DEFAULT_METRIC) -> RunCurve:
    """Read one run directory's curve for ``metric`` from the lines of its
    :func:`record_kind` (e.g. ``train/kl_max`` from the train lines, one per iteration).

    Raises UserError if the directory or its metrics.jsonl is missing, has no line of that kind
    carrying ``metric``, or has duplicate or out-of-order lines of that kind. config.json and
    meta.json are optional (env/backend then come from whichever exists; 'unknown' otherwise).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"run directory {str(p)!r} does not exist")
    if not p.is_dir():
        raise UserError(f"{str(p)!r} is not a directory")
    mpath = p / METRICS_FILE
    if not mpath.is_file():
        raise UserError(f"{str(p)!r} has no {METRICS_FILE}; is it a reppo run directory?")
    config = _read_json(p / CONFIG_FILE) if (p / CONFIG_FILE).is_file() else {}
    meta = _read_json(p / META_FILE) if (p / META_FILE).is_file() else {}
    records = read_metrics(mpath)
    kind = record_kind(metric)
    lines = [r for r in records if r.get("kind") == kind and metric in r
             and isinstance(r.get("env_steps"), (int, float))]
    if not lines:
        kinds = sorted({str(r.get("kind")) for r in records})
        what = f"lines of kind {', '.join(kinds)}" if records else "no lines"
        hint = ("evaluation runs every run.eval_interval env steps" if kind == "eval" else
                "train lines carry the train/* and rollout/* keys of docs/metrics.md; an older "
                "run may lack a newer key")
        raise UserError(f"{mpath} has no {kind} lines with {metric!r} ({what}); {hint}")
    _check_order(lines, mpath, kind)

    def col(key: str) -> np.ndarray:
        return np.array([float(r[key]) if isinstance(r.get(key), (int, float)) else np.nan
                         for r in lines])

    env = meta.get("env") or config.get("env", {}).get("name") or "unknown"
    seed = config.get("run", {}).get("seed")
    return RunCurve(path=p, env=str(env), backend=str(meta.get("backend", "unknown")),
                    seed=int(seed) if isinstance(seed, int) else None, metric=metric,
                    steps=col("env_steps"), wall_s=col("wall_s"), values=col(metric),
                    config=config, meta=meta)


def expand_run_dirs(paths: Iterable[str | Path], skipped: list[Path] | None = None) -> list[Path]:
    """Run directories named by ``paths``: a path holding metrics.jsonl is a run; an existing
    directory without one stands for the run directories below it (searched recursively, sorted),
    e.g. ``runs/dmc_CartpoleBalance``. Plain files (``results/cp_s*`` also matching
    ``cp_s0.log``) are skipped and appended to ``skipped``. Missing paths, directories with no
    run below and an empty result are UserErrors."""
    out: list[Path] = []
    paths = list(paths)
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"run directory {str(p)!r} does not exist")
        if not p.is_dir():
            if skipped is not None:
                skipped.append(p)
            continue
        if not (p / METRICS_FILE).is_file():
            found = sorted(m.parent for m in p.rglob(METRICS_FILE))
            if not found:
                raise UserError(f"{str(p)!r} holds no {METRICS_FILE} (not a run directory and "
                                f"no run directories below it)")
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise UserError(f"no run directories among {', '.join(map(str, paths))} (only files)")
    return out


def load_runs(paths: Iterable[str | Path], metric: str = DEFAULT_METRIC) -> list[RunCurve]:
    """:func:`load_run` for every run directory named by ``paths`` (see
    :func:`expand_run_dirs`; at least one), in the given order."""
    paths = list(paths)
    if not paths:
        raise UserError("no run directories given")
    skipped: list[Path] = []
    dirs = expand_run_dirs(paths, skipped)
    if skipped:
        print(f"note: skipped {len(skipped)} path(s) that are files, not run directories: "
              f"{', '.join(map(str, skipped[:3]))}{' ...' if len(skipped) > 3 else ''}",
              file=sys.stderr)
    return [load_run(p, metric) for p in dirs]


def _lookup(run: RunCurve, key: str) -> Any:
    """Value of a grouping key: env, backend, seed, dir, meta.<k> or a config field a.b."""
    if key in ("env", "backend", "seed"):
        return getattr(run, key)
    if key == "dir":
        return run.path.parent.name or str(run.path.parent)
    if key.startswith("meta."):
        return run.meta.get(key[5:], "unknown")
    node: Any = run.config
    for part in key.removeprefix("config.").split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"group key {key!r} is not a field of {run.path / CONFIG_FILE} "
                            f"(use env, backend, seed, dir, meta.<key> or section.field)")
        node = node[part]
    return node


def run_label(run: RunCurve, keys: Sequence[str]) -> str:
    """``k=v`` pairs for ``keys`` (just the value for backend/env), joined by ', '."""
    parts = []
    for k in keys:
        v = _lookup(run, k)
        parts.append(str(v) if k in ("backend", "env") else f"{k.removeprefix('config.')}={v}")
    return ", ".join(parts)


def group_runs(runs: Sequence[RunCurve], keys: Sequence[str]) -> dict[str, dict[str, list[RunCurve]]]:
    """``{env: {label: [runs]}}`` where label is :func:`run_label` of ``keys`` (insertion
    order preserved: envs and labels in the order first seen)."""
    out: dict[str, dict[str, list[RunCurve]]] = {}
    for r in runs:
        out.setdefault(r.env, {}).setdefault(run_label(r, keys), []).append(r)
    return out
