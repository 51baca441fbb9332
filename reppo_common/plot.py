"""Learning curves from reppo run directories to a PNG.

For every environment one row with two panels: the metric (default ``eval/return_mean``; a
``train/*`` or ``rollout/*`` key such as ``train/kl_max`` is read from the per-iteration train
lines) against env steps and against wall-clock time. Runs are grouped by a label (default:
backend; ``--group-by loss.kl_target`` or ``--group-by backend,rollout.num_envs`` for sweeps)
and each group is drawn as the mean over its runs (seeds) with a 95% confidence band (Student t
by default, ``--ci bootstrap`` for a percentile bootstrap of the mean).

Seeds rarely evaluate at identical steps or times (different eval intervals, resumed or killed
runs, and wall-clock always differs), so each run is linearly interpolated onto a common grid:
the union of all x values of the group, restricted to where at least ``--min-seeds`` runs
(default: all of the group) have data. Nothing is extrapolated.

    reppo plot docs/results/cartpole_balance_cpu --out cartpole.png
    reppo plot runs/dmc_CartpoleBalance --group-by loss.kl_target --out kl.png
    reppo plot runs/dmc_CartpoleBalance --metric train/kl_max --out kl_tail.png

Importable: :func:`plot_runs` draws a list of :class:`reppo_common.curves.RunCurve`;
:func:`curve_band` computes one band.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


import numpy as np

from reppo_common.curves import DEFAULT_METRIC, RunCurve, group_runs, load_runs
from reppo_common.errors import UserError
from reppo_common.stats import (
    bootstrap_mean_interval,
    common_grid,
    interpolate_curves,
    reliable_success_fraction,
    t_interval,
)

__all__ = ["NoOverlap", "curve_band", "plot_runs", "main"]


class NoOverlap(UserError):
    """The runs of a group share no x range (e.g. wall-clock of seeds with very different
    compile times); :func:`plot_runs` then draws them individually."""


def curve_band(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], ci: str = "t",
               confidence: float = 0.95, min_seeds: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Mean and CI band of several runs on a common grid.

    Returns ``(grid, mean, lo, hi, interpolated)``; ``interpolated`` is False when all runs
    share the same x values (nothing had to be interpolated). Runs with non-finite x (e.g. no
    wall-clock) drop those points first.
    """
    clean_x, clean_y = [], []
    for x, y in zip(xs, ys):
        ok = np.isfinite(x)
        order = np.argsort(x[ok], kind="stable")
        clean_x.append(x[ok][order])
        clean_y.append(y[ok][order])
    if any(x.size == 0 for x in clean_x):
        raise UserError("a run has no usable x values to plot")
    same = all(x.shape == clean_x[0].shape and np.array_equal(x, clean_x[0]) for x in clean_x)
    need = len(clean_x) if min_seeds is None else min(min_seeds, len(clean_x))
    grid = common_grid(clean_x, need)
    if grid.size == 0:
        raise NoOverlap(f"the runs' x ranges do not overlap in at least {need} runs; lower "
                        f"--min-seeds")
    mat = interpolate_curves(clean_x, clean_y, grid)
    enough = np.sum(np.isfinite(mat), axis=0) >= need
    grid, mat = grid[enough], mat[:, enough]
    if ci == "t":
        mean, lo, hi = t_interval(mat, confidence)
    elif ci == "bootstrap":
        mean, lo, hi = bootstrap_mean_interval(mat, confidence)
    else:
        raise UserError(f"unknown --ci {ci!r}; choose t or bootstrap")
    return grid, mean, lo, hi, not same


def plot_runs(runs: Sequence[RunCurve], out: str | Path, group_by: Sequence[str] = ("backend",),
              ci: str = "t", confidence: float = 0.95, min_seeds: int | None = None,
              title: str | None = None, dpi: int = 120,
              tau: float | None = None) -> dict[str, object]:
    """Draw the runs to ``out`` (PNG); returns a summary dict (groups, seeds, grid sizes,
    which axes needed interpolation) that the CLI prints.

    With ``tau`` (in the metric's own units) a third panel shows the fraction of runs that are
    reliably successful (reached tau and stayed >= tau since, see
    :func:`reppo_common.stats.reliable_success`) against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs(runs, group_by)
    n_env = len(groups)
    ncol = 2 if tau is None else 3
    fig, axes = plt.subplots(n_env, ncol, figsize=(5.5 * ncol, 3.6 * n_env), squeeze=False)
    summary: dict[str, object] = {"out": str(out), "envs": {}}
    interpolated: set[str] = set()
    individual: list[str] = []
    metric = runs[0].metric
    for row, (env, by_label) in enumerate(groups.items()):
        env_info = {}
        observed = np.concatenate([np.asarray(r.values, float) for m in by_label.values()
                                   for r in m])
        observed = observed[np.isfinite(observed)]
        for j, (label, members) in enumerate(by_label.items()):
            color = f"C{j % 10}"
            n = len(members)
            info = {"seeds": n}
            for col, (xattr, scale) in enumerate((("steps", 1.0), ("wall_s", 60.0))):
                xs = [getattr(r, xattr) / scale for r in members]
                ys = [r.values for r in members]
                ax = axes[row, col]
                try:
                    grid, mean, lo, hi, interp = curve_band(xs, ys, ci, confidence, min_seeds)
                except NoOverlap:
                    for k, (x, y) in enumerate(zip(xs, ys)):
                        ax.plot(x, y, color=color, lw=1.0, alpha=0.8, ls="--",
                                label=f"{label} (n={n}, no common range: each run)"
                                if k == 0 else None)
                    individual.append(f"{env} {label} "
                                      f"{'env steps' if xattr == 'steps' else 'wall-clock'}")
                    info[f"{xattr}_grid"] = 0
                    if col == 0:
                        info["final_mean"] = float(np.nanmean([r.final for r in members]))
                    continue
                if interp:
                    interpolated.add("env steps" if xattr == "steps" else "wall-clock")
                ax.plot(grid, mean, color=color, lw=1.8, label=f"{label} (n={n})",
                        marker="o" if grid.size <= 3 else None)  # visible with 1-3 points
                if n > 1:
                    ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
                info[f"{xattr}_grid"] = int(grid.size)
                if col == 0:
                    info["final_mean"] = float(mean[-1])
            if tau is not None:
                grid = common_grid([r.steps for r in members], min_seeds and min(min_seeds, n))
                mat = interpolate_curves([r.steps for r in members],
                                         [r.values for r in members], grid)
                if grid.size:
                    frac = reliable_success_fraction(mat, tau)
                    axes[row, 2].step(grid, frac, where="post", color=color, label=f"{label}")
                    info["reliable_final"] = float(frac[-1])
            env_info[label] = info
        summary["envs"][env] = env_info
        if observed.size:
            # y range of the observed returns: a t band over 2 runs (t = 12.7) would otherwise
            # squash every curve into a sliver; bands beyond it are cut off, not the data
            lo_y, hi_y = float(observed.min()), float(observed.max())
            pad = 0.05 * (hi_y - lo_y) or 1.0
            for ax in axes[row, :2]:
                ax.set_ylim(lo_y - pad, hi_y + pad)
        axes[row, 0].set_xlabel("env steps")
        axes[row, 1].set_xlabel("wall-clock (minutes)")
        for ax in axes[row]:
            ax.set_ylabel(metric)
            ax.set_title(env, fontsize=10)
            ax.grid(alpha=0.3)
        if tau is not None:
            axes[row, 2].set_xlabel("env steps")
            axes[row, 2].set_ylabel(f"fraction reliably >= {tau:g}")
            axes[row, 2].set_ylim(-0.03, 1.03)
        axes[row, 0].legend(fontsize=8, loc="lower right")
    band = "Student-t" if ci == "t" else "bootstrap"
    order = [a for a in ("env steps", "wall-clock") if a in interpolated]
    axes_txt = " and ".join(order)
    note = (f"mean ± {confidence:.0%} CI ({band}) over seeds"
            + (f"; runs linearly interpolated onto a common {axes_txt} grid" if interpolated
               else ""))
    if individual:
        note += "; dashed: runs without a common range, drawn individually"
    fig.suptitle((title + "\n" if title else "") + note, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=dpi)
    except OSError as e:
        raise UserError(f"cannot write {str(out)!r}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    summary["interpolated"] = order
    summary["individual"] = individual
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reppo plot",
        description="Plot learning curves (vs env steps and wall-clock) of reppo run "
                    "directories: mean ± CI over seeds, one row per env.")
    p.add_argument("runs", nargs="+", help="run directories (or folders containing them)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--metric", default=DEFAULT_METRIC,
                   help="an eval/* key, or a train/* or rollout/* key read from the train lines "
                        "(e.g. train/kl_max); default %(default)s")
    p.add_argument("--group-by", default="backend",
                   help="comma-separated label keys: backend, seed, dir, meta.<key> or a config "
                        "field such as loss.kl_target (default %(default)s)")
    p.add_argument("--ci", default="t", choices=("t", "bootstrap"), help="band type")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--min-seeds", type=int, default=None,
                   help="draw grid points covered by at least this many runs (default: all)")
    p.add_argument("--title", default=None)
    p.add_argument("--tau", type=float, default=None,
                   help="add a panel with the fraction of runs reliably >= TAU (metric units, "
                        "e.g. 900 for 90%% of a DMC return)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``reppo plot``: 0 on success; a user error raises :class:`UserError`, which
    ``reppo_common.cli.main`` (the one error handler of every subcommand) prints as one line
    and turns into exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.min_seeds is not None and args.min_seeds < 1:
        raise UserError(f"--min-seeds must be >= 1, got {args.min_seeds}")
    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must be a .png path, got {args.out!r}")
    runs = load_runs(args.runs, args.metric)
    keys = [k.strip() for k in args.group_by.split(",") if k.strip()]
    summary = plot_runs(runs, args.out, keys, args.ci, args.confidence, args.min_seeds,
                        args.title, tau=args.tau)
    for env, labels in summary["envs"].items():
        for label, info in labels.items():
            rel = (f", reliable at end {info['reliable_final']:.2f}"
                   if "reliable_final" in info else "")
            print(f"{env}  {label}: {info['seeds']} run(s), final mean {info['final_mean']:.1f}, "
                  f"{info['steps_grid']} step points, {info['wall_s_grid']} wall points{rel}")
    for what in summary["individual"]:
        print(f"note: {what}: the runs share no common range; drawn individually (dashed)")
    if summary["interpolated"]:
        print(f"note: the {' and '.join(summary['interpolated'])} differed across runs; those "
              f"curves were linearly interpolated onto a common grid (no extrapolation)")
    print(f"wrote {summary['out']}")
    return 0

