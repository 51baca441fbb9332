"""Statistics (reppo_common.stats), run-curve loading and the plot/aggregate tools.

Aggregates are checked against hand-computed values and scipy; the bootstrap against its
basic properties; reliable success on constructed curves; the tools on synthetic run
directories written into tmp_path (no framework needed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reppo_common import aggregate as agg_tool
from reppo_common import plot as plot_tool
from reppo_common import stats as S
from reppo_common.curves import load_run, load_runs
from reppo_common.errors import UserError

hyp = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]




def make_run(root: Path, name: str, steps, returns, env="dmc/CartpoleBalance", backend="jax",
             seed=0, wall=None, extra_config=None, train_lines=True) -> Path:
    """A minimal run directory with config.json, meta.json and metrics.jsonl."""
    d = root / name
    d.mkdir(parents=True)
    cfg = {"schema_version": 1, "env": {"name": env}, "run": {"seed": seed},
           "loss": {"kl_target": 0.1}}
    for k, v in (extra_config or {}).items():
        sec, fld = k.split(".")
        cfg.setdefault(sec, {})[fld] = v
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "meta.json").write_text(json.dumps({"backend": backend, "env": env}))
    wall = wall if wall is not None else [10.0 + 0.01 * s for s in steps]
    lines = []
    for s, r, w in zip(steps, returns, wall):
        if train_lines:
            lines.append({"kind": "train", "env_steps": s, "train/kl": 0.01, "wall_s": w - 1})
        lines.append({"kind": "eval", "env_steps": s, "eval/return_mean": r, "wall_s": w})
    (d / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    return d


# ---- aggregates --------------------------------------------------------------------------


def test_aggregates_hand_computed():
    # two tasks (columns) x four runs
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, 40.0]])
    assert S.aggregate_mean(x) == pytest.approx((106 / 4 + 100 / 4) / 2)
    # median over tasks of task means; with two tasks it is their average
    assert S.aggregate_median(x) == pytest.approx((26.5 + 25.0) / 2)
    # pooled 8 scores sorted: 1 2 3 10 20 30 40 100 -> drop 2 each end -> mean(3,10,20,30)
    assert S.aggregate_iqm(x) == pytest.approx(15.75)
    assert S.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert S.iqm([5, 1, 9]) == pytest.approx(5.0)  # n=3: nothing trimmed
    three = [np.array([1.0]), np.array([5.0, 7.0]), np.array([100.0])]  # ragged tasks
    assert S.aggregate_median(three) == pytest.approx(6.0)
    assert S.aggregate_mean(three) == pytest.approx((1 + 6 + 100) / 3)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=40))
def test_iqm_matches_scipy_trim_mean(values):
    scipy_stats = pytest.importorskip("scipy.stats")
    assert S.iqm(values) == pytest.approx(scipy_stats.trim_mean(values, 0.25), abs=1e-9)


@given(st.integers(1, 200), st.floats(0.55, 0.999))
def test_student_t_ppf_matches_scipy(df, q):
    scipy_stats = pytest.importorskip("scipy.stats")
    assert S.student_t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-7, abs=1e-9)


@given(st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=8), min_size=1, max_size=4),
       st.sampled_from(["mean", "median", "iqm"]))
def test_bootstrap_ci_contains_point(tasks, stat):
    ci = S.stratified_bootstrap_ci(tasks, stat, reps=200, seed=1)
    assert ci.lo <= ci.point <= ci.hi
    assert ci.point == pytest.approx({"mean": S.aggregate_mean, "median": S.aggregate_median,
                                      "iqm": S.aggregate_iqm}[stat](tasks))


def test_bootstrap_ci_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)
    widths = []
    for n in (5, 20, 80):
        x = rng.normal(0.5, 0.2, size=(n, 3))
        ci = S.stratified_bootstrap_ci(x, "iqm", reps=1000, seed=0)
        widths.append(ci.hi - ci.lo)
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_is_stratified_and_deterministic():
    # a task with constant scores contributes no variance: resampling stays within tasks
    x = [np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.0])]
    ci = S.stratified_bootstrap_ci(x, "mean", reps=300)
    assert ci.lo == ci.hi == ci.point == pytest.approx(0.5)
    a = S.stratified_bootstrap_ci([[0.1, 0.5, 0.9]], "mean", reps=300, seed=3)
    assert a == S.stratified_bootstrap_ci([[0.1, 0.5, 0.9]], "mean", reps=300, seed=3)


def test_stats_reject_bad_input():
    with pytest.raises(ValueError, match="no scores"):
        S.aggregate_mean([[1.0], []])
    with pytest.raises(ValueError, match="non-finite"):
        S.aggregate_iqm([[1.0, float("nan")]])
    with pytest.raises(ValueError, match="confidence"):
        S.stratified_bootstrap_ci([[1.0]], "mean", confidence=1.5)
    with pytest.raises(ValueError, match="hi > lo"):
        S.normalize_scores(1.0, 5.0, 5.0)


def test_t_interval_known_values():
    v = np.array([[1.0, 0.0], [3.0, 0.0]])  # column 0: mean 2, sd sqrt(2), n 2
    mean, lo, hi = S.t_interval(v, 0.95)
    half = 12.706204736174694 * np.sqrt(2) / np.sqrt(2)
    assert mean[0] == 2 and hi[0] - mean[0] == pytest.approx(half, rel=1e-9)
    assert lo[1] == hi[1] == 0.0
    mean, lo, hi = S.t_interval(np.array([[1.0], [np.nan]]))  # one finite value: zero width
    assert mean[0] == lo[0] == hi[0] == 1.0


# ---- ragged curves, reliable success ----------------------------------------------------


def test_interpolation_onto_common_grid():
    xs = [np.array([0.0, 10.0, 20.0]), np.array([0.0, 5.0, 15.0, 30.0])]
    ys = [np.array([0.0, 10.0, 20.0]), np.array([0.0, 50.0, 150.0, 300.0])]
    grid = S.common_grid(xs)
    assert list(grid) == [0, 5, 10, 15, 20]  # 30 is covered by one run only
    m = S.interpolate_curves(xs, ys, grid)
    assert np.allclose(m[0], [0, 5, 10, 15, 20]) and np.allclose(m[1], [0, 50, 100, 150, 200])
    assert list(S.common_grid(xs, min_runs=1)) == [0, 5, 10, 15, 20, 30]
    m = S.interpolate_curves(xs, ys, np.array([25.0, 30.0]))
    assert np.isnan(m[0]).all() and np.allclose(m[1], [250, 300])  # no extrapolation


def test_reliable_success_constructed_curves():
    tau = 0.9
    assert S.reliable_success([0.1, 0.5, 0.8], tau).tolist() == [False] * 3  # never reaches
    steady = [0.2, 0.95, 0.9, 1.0]  # reaches at 1, stays >= tau (equality counts)
    assert S.reliable_success(steady, tau).tolist() == [False, True, True, True]
    assert S.reliable_success(steady, tau, "whole").tolist() == [False, True, True, True]
    dips = [0.95, 0.5, 0.99, 0.99]  # reaches, drops, recovers: never reliable afterwards
    assert S.reliable_success(dips, tau).tolist() == [True, False, False, False]
    assert S.reliable_success(dips, tau, "whole").tolist() == [False] * 4
    frac = S.reliable_success_fraction(np.array([steady, dips, [0.0, 0.0, 0.91, 0.92]]), tau)
    assert np.allclose(frac, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert S.reliable_success([np.nan, 1.0], tau).tolist() == [False, True]
    with pytest.raises(ValueError, match="mode"):
        S.reliable_success([1.0], tau, "sometimes")


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(0.05, 0.95))
def test_reliable_success_properties(curve, tau):
    p = S.reliable_success(curve, tau)
    w = S.reliable_success(curve, tau, "whole")
    assert p[-1] == w[-1]  # both definitions agree at the end
    assert np.all(np.diff(w.astype(int)) >= 0)  # 'whole' never decreases
    assert np.all(w <= p)  # 'whole' is the stricter one
    # once prefix-success is lost it never comes back
    lost = np.flatnonzero(np.diff(p.astype(int)) < 0)
    if lost.size:
        assert not p[lost[0] + 1:].any()


# ---- loading run directories ------------------------------------------------------------


def test_load_run_and_grouping(tmp_path):
    d = make_run(tmp_path, "r0", [100, 200], [1.0, 2.0], seed=7)
    r = load_run(d)
    assert r.env == "dmc/CartpoleBalance" and r.backend == "jax" and r.seed == 7
    assert r.steps.tolist() == [100, 200] and r.final == 2.0
    from reppo_common.curves import group_runs

    make_run(tmp_path, "r1", [100], [3.0], extra_config={"loss.kl_target": 0.2})
    runs = load_runs([tmp_path])  # a folder of runs is expanded
    g = group_runs(runs, ["loss.kl_target"])
    assert set(g["dmc/CartpoleBalance"]) == {"loss.kl_target=0.1", "loss.kl_target=0.2"}
    with pytest.raises(UserError, match="not a field"):
        group_runs(runs, ["loss.nope"])


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no metrics.jsonl"):
        load_run(tmp_path / "empty")
    d = make_run(tmp_path, "train_only", [], [])
    (d / "metrics.jsonl").write_text(json.dumps({"kind": "train", "env_steps": 5}) + "\n")
    with pytest.raises(UserError, match="no eval lines"):
        load_run(d)
    with pytest.raises(UserError, match="no run directories given"):
        load_runs([])


def test_train_metric_curves_come_from_the_train_lines(tmp_path):
    """``train/*`` and ``rollout/*`` keys are read from the per-iteration train lines (e.g.
    ``train/kl_max``, which eval lines never carry); eval keys still from the eval lines; a
    run that lacks the key, or a repeated train line, is a UserError naming it."""
    d = make_run(tmp_path, "r0", [200], [5.0])  # one eval line; train lines written below
    lines = [{"kind": "train", "env_steps": s, "train/kl_max": 0.1 * s / 64, "wall_s": s / 10}
             for s in (64, 128, 192)]
    lines.append({"kind": "eval", "env_steps": 200, "eval/return_mean": 5.0, "wall_s": 20.0})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    r = load_run(d, "train/kl_max")
    assert r.steps.tolist() == [64, 128, 192] and r.values == pytest.approx([0.1, 0.2, 0.3])
    assert r.wall_s.tolist() == [6.4, 12.8, 19.2]
    assert load_run(d).steps.tolist() == [200]
    with pytest.raises(UserError, match="no train lines with 'train/kl'"):
        load_run(d, "train/kl")
    out = tmp_path / "kl.png"
    assert plot_tool.main([str(d), "--metric", "train/kl_max", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines + lines[2:3]))
    with pytest.raises(UserError, match="duplicate train line"):
        load_run(d, "train/kl_max")


# ---- tools -----------------------------------------------------------------------------


def _seed_runs(root: Path, n=3, ragged=True, env="dmc/CartpoleBalance", backend="jax"):
    rng = np.random.default_rng(0)
    dirs = []
    for s in range(n):
        step = 1000 + (37 * s if ragged else 0)
        steps = np.arange(1, 20) * step
        ret = np.clip(1000 * (1 - np.exp(-steps / 8000)) + rng.normal(0, 30, steps.size), 0,
                      1000)
        dirs.append(make_run(root, f"{backend}_{env.replace('/', '_')}_s{s}", steps.tolist(),
                             ret.tolist(), env=env, backend=backend, seed=s,
                             wall=(5 + steps / 500 + s).tolist()))
    return dirs


def test_plot_writes_png(tmp_path):
    dirs = _seed_runs(tmp_path / "a") + _seed_runs(tmp_path / "b", backend="torch")
    dirs += _seed_runs(tmp_path / "c", n=2, env="dmc/PendulumSwingup")
    out = tmp_path / "fig" / "curves.png"
    rc = plot_tool.main([*map(str, dirs), "--out", str(out)])
    assert rc == 0
    data = out.read_bytes()
    assert len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    summary = plot_tool.plot_runs(load_runs(dirs), tmp_path / "b.png", ci="bootstrap")
    assert summary["interpolated"] == ["env steps", "wall-clock"]
    assert set(summary["envs"]["dmc/CartpoleBalance"]) == {"jax", "torch"}
    summary = plot_tool.plot_runs(load_runs(dirs), tmp_path / "c.png", tau=900.0)
    frac = summary["envs"]["dmc/CartpoleBalance"]["jax"]["reliable_final"]
    assert 0.0 <= frac <= 1.0 and (tmp_path / "c.png").stat().st_size > 5000


def test_curve_band_identical_steps_not_interpolated():
    xs = [np.array([1.0, 2.0, 3.0])] * 3
    ys = [np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]), np.array([3.0, 4.0, 5.0])]
    grid, mean, lo, hi, interp = plot_tool.curve_band(xs, ys)
    assert not interp and grid.tolist() == [1, 2, 3] and np.allclose(mean, [2, 3, 4])
    assert np.all(lo < mean) and np.all(hi > mean)


def test_aggregate_table_and_files(tmp_path, capsys):
    dirs = _seed_runs(tmp_path, n=4)
    rows = agg_tool.aggregate_runs(load_runs(dirs), reps=300)
    assert len(rows) == 1 and rows[0]["runs"] == 4 and rows[0]["tasks"] == 1
    finals = [load_run(d).final / 1000 for d in dirs]
    assert rows[0]["mean"] == pytest.approx(np.mean(finals))
    assert rows[0]["iqm"] == pytest.approx(S.iqm(finals))
    for k in ("mean", "median", "iqm", "reliable"):
        assert rows[0][k + "_lo"] <= rows[0][k] <= rows[0][k + "_hi"]
    csv_p, json_p = tmp_path / "o.csv", tmp_path / "o.json"
    rc = agg_tool.main([*map(str, dirs), "--csv", str(csv_p), "--json", str(json_p),
                        "--reps", "200", "--score", "last:3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "iqm" in out and "reliable(tau=0.9)" in out and "jax" in out
    assert json.loads(json_p.read_text())[0]["runs"] == 4
    assert csv_p.read_text().startswith("group,")


def test_aggregate_reliable_success_and_norms(tmp_path):
    make_run(tmp_path, "good", [1, 2, 3], [500, 950, 990], seed=0)
    make_run(tmp_path, "dips", [1, 2, 3], [950, 100, 990], seed=1)
    make_run(tmp_path, "raw", [1, 2, 3], [5, 9, 10], env="minatar/Breakout", seed=0)
    runs = load_runs([tmp_path])
    row = agg_tool.aggregate_runs(runs, group_by=["env"], reps=100)
    by = {r["group"]: r for r in row}
    assert by["dmc/CartpoleBalance"]["reliable"] == pytest.approx(0.5)
    assert by["minatar/Breakout"]["raw_tasks"] == ["minatar/Breakout"]
    row = agg_tool.aggregate_runs(runs, group_by=["env"], reps=100,
                                  norms=agg_tool.parse_norms(["minatar=0:20"]))
    by = {r["group"]: r for r in row}
    assert by["minatar/Breakout"]["mean"] == pytest.approx(0.5)
    assert by["minatar/Breakout"]["reliable"] == 0.0  # 0.5 < tau
    assert by["minatar/Breakout"]["raw_tasks"] == []


@pytest.mark.parametrize("tool", ["plot", "aggregate"])
def test_tool_errors_are_one_line(tool, tmp_path):
    (tmp_path / "empty").mkdir()
    d = make_run(tmp_path, "noeval", [], [])
    (d / "metrics.jsonl").write_text(json.dumps({"kind": "train", "env_steps": 5}) + "\n")
    extra = ["--out", str(tmp_path / "x.png")] if tool == "plot" else []
    for args, needle in (([str(tmp_path / "missing")], "does not exist"),
                         ([str(tmp_path / "empty")], "holds no metrics.jsonl"),
                         ([str(d)], "no eval lines")):
        p = subprocess.run([sys.executable, "-m", "reppo_common.cli", tool, *args, *extra],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert not (tmp_path / "x.png").exists()


def test_stray_files_from_globs_are_skipped_with_a_note(tmp_path, capsys):
    d = make_run(tmp_path, "cp_s0", [10, 20], [1.0, 2.0])
    log = tmp_path / "cp_s0.log"
    log.write_text("training log")
    runs = load_runs([d, log])
    assert [r.path for r in runs] == [d]
    assert "skipped 1 path(s)" in capsys.readouterr().err
    with pytest.raises(UserError, match="no run directories"):
        load_runs([log])


def test_plot_runs_without_common_wall_clock_range_drawn_individually(tmp_path):
    a = make_run(tmp_path, "a", [10, 20, 30], [1.0, 2.0, 3.0], wall=[1.0, 2.0, 3.0])
    b = make_run(tmp_path, "b", [10, 20, 30], [2.0, 3.0, 4.0], wall=[50.0, 60.0, 70.0], seed=1)
    summary = plot_tool.plot_runs(load_runs([a, b]), tmp_path / "p.png", tau=2.5)
    info = summary["envs"]["dmc/CartpoleBalance"]["jax"]
    assert info["steps_grid"] == 3 and info["wall_s_grid"] == 0
    assert summary["individual"] == ["dmc/CartpoleBalance jax wall-clock"]
    assert info["reliable_final"] == pytest.approx(1.0)
    with pytest.raises(plot_tool.NoOverlap):
        plot_tool.curve_band([np.array([1.0, 2.0]), np.array([5.0, 6.0])],
                             [np.array([1.0, 1.0])] * 2)
