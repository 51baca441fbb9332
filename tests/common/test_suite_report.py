"""benchmarks.suite without training: the report's statistics on hand-made curves with answers
worked out by hand, byte-identical regeneration, ``store``, and the one-line errors of bad
input (framework-free: no job is started)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import suite
from benchmarks.suite_report import Curve, compute, load_suite, parse_norms, report, versus
from reppo_common.errors import UserError
from reppo_common.stats import censored_median, first_reach, value_at_or_before

ROOT = Path(__file__).resolve().parents[2]

# Task dmc/A, best 100 (reppo seed 0) -> level 90. Steps 100..400, wall 1..4 s (reppo) and
# 10..40 s (ppo).
CURVES_A = {
    ("reppo", 0): [10, 50, 95, 100],  # reaches 90 at 300 (3 s), stays: reliable
    ("reppo", 1): [10, 92, 80, 96],   # reaches at 200 (2 s), drops to 80: not reliable
    ("reppo", 2): [5, 20, 40, 60],    # never
    ("ppo", 0): [20, 40, 91, 90],     # reaches at 300 (30 s), stays at 90 = level: reliable
    ("ppo", 1): [0, 0, 0, 0],         # never
    ("ppo", 2): [30, 60, 90, 92],     # reaches at 300 exactly at the level: reliable
}


def make_suite(path: Path) -> Path:
    """A suite directory with the curves above plus dmc/B (reppo, one seed: 2 then 4)."""
    for (algo, seed), ret in CURVES_A.items():
        scale = 1 if algo == "reppo" else 10
        suite.write_curve(path / f"curves/{algo}/dmc_A/seed{seed}.csv", [
            {"env_steps": 100 * (i + 1), "wall_s": scale * (i + 1.0), "return": float(r)}
            for i, r in enumerate(ret)])
    suite.write_curve(path / "curves/reppo/dmc_B/seed0.csv",
                      [{"env_steps": 10, "wall_s": 1.0, "return": 2.0},
                       {"env_steps": 20, "wall_s": 2.0, "return": 4.0}])
    manifest = {"format": 1, "algos": ["reppo", "ppo"],
                "tasks": {"dmc/A": {"dir": "dmc_A", "budget": 400, "preset": "cpu",
                                    "preset_source": "env default"},
                          "dmc/B": {"dir": "dmc_B", "budget": 20, "preset": "cpu",
                                    "preset_source": "env default"}},
                "jobs": {"reppo/dmc_A/seed0": {"curve": "curves/reppo/dmc_A/seed0.csv"},
                         "ppo/dmc_B/seed0": {"curve": "curves/ppo/dmc_B/seed0.csv"}}}
    (path / suite.MANIFEST).write_text(json.dumps(manifest))
    return path


def test_stats_helpers_known_answers():
    assert first_reach([1, 5, np.nan, 9], 5) == 1
    assert first_reach([1, np.nan, 2], 3) is None
    assert value_at_or_before([100, 200, 300], [1.0, 2.0, 3.0], 250) == 2.0
    assert value_at_or_before([100, 200, 300], [1.0, 2.0, 3.0], 300) == 3.0
    assert math.isnan(value_at_or_before([100, 200], [1.0, 2.0], 99))
    assert censored_median([3, 1, 2]) == 2
    assert censored_median([3, None, 1]) == 3      # never counts as longest
    assert censored_median([1, None, None]) is None
    assert censored_median([1, 3]) == 2
    assert censored_median([1, None]) is None       # the upper middle one never reached
    assert censored_median([1, 2, 4, None]) == 3


def test_table_statistics_on_hand_made_curves(tmp_path):
    curves, manifest = load_suite(make_suite(tmp_path))
    s = compute(curves, manifest, 0.9, parse_norms(["dmc/B=0,10"]), [50, 250])
    a = s["tasks"]["dmc/A"]
    assert a["best"] == 100 and a["level"] == pytest.approx(90) and a["norm"] == [0, 100]
    r, p = a["algos"]["reppo"], a["algos"]["ppo"]
    assert [x["steps_to_level"] for x in r["per_seed"]] == [300, 200, None]
    assert [x["wall_to_level"] for x in r["per_seed"]] == [3.0, 2.0, None]
    assert (r["median_steps_to_level"], r["median_wall_to_level"]) == (300, 3.0)
    assert (r["reached"], r["reliable"]) == (2, 1)
    assert (p["median_steps_to_level"], p["median_wall_to_level"]) == (300, 30.0)
    assert (p["reached"], p["reliable"]) == (2, 2)
    assert r["final_mean"] == pytest.approx((100 + 96 + 60) / 3)
    assert r["final_ci"][0] < r["final_mean"] < r["final_ci"][1]
    assert r["best"] == 100 and p["best"] == 92
    # --at: last evaluation at or before; before the first evaluation there is none
    assert r["at"]["250"] == pytest.approx((50 + 92 + 20) / 3) and r["at"]["50"] is None
    assert a["ratio"] == {"baseline": "ppo", "steps": 1.0, "wall": 0.1, "steps_bound": None,
                          "wall_bound": None}
    b = s["tasks"]["dmc/B"]  # --norm: level = lo + 0.9 (best - lo) = 3.6, reached at 20
    assert b["norm"] == [0.0, 10.0] and b["level"] == pytest.approx(3.6)
    assert b["algos"]["reppo"]["median_steps_to_level"] == 20
    assert "ratio" not in b
    # normalised finals: reppo A [1, .96, .6], B [.4]; ppo A [.9, 0, .92]
    g = s["aggregate"]
    assert g["reppo"]["mean"]["point"] == pytest.approx(((1 + .96 + .6) / 3 + .4) / 2)
    assert g["reppo"]["iqm"]["point"] == pytest.approx((.96 + .6) / 2)
    assert g["ppo"]["mean"]["point"] == pytest.approx(1.82 / 3)
    for algo in ("reppo", "ppo"):
        for k in ("mean", "iqm"):
            assert g[algo][k]["lo"] <= g[algo][k]["point"] <= g[algo][k]["hi"]
    assert (g["reppo"]["tasks"], g["reppo"]["runs"], g["ppo"]["runs"]) == (2, 4, 3)
    assert s["ratios"]["median_steps"] == 1.0 and s["ratios"]["steps_tasks"] == 1
    # a suite-wide range applies to each of its tasks
    s = compute(curves, manifest, 0.9, parse_norms(["dmc=0:200"]))
    assert s["tasks"]["dmc/A"]["norm"] == [0, 200] and s["tasks"]["dmc/B"]["norm"] == [0, 200]
    assert s["tasks"]["dmc/A"]["level"] == pytest.approx(90)  # still 0.9 x best (lo = 0)


def test_ratio_bound_where_only_one_reached(tmp_path):
    """REPPO reaches the level at 200 env steps (median of 100, 200, 300), the baseline never
    in its 400 steps: the ratio is below 200 / 400."""
    for seed, first in enumerate((100, 200, 300)):
        suite.write_curve(tmp_path / f"curves/reppo/dmc_C/seed{seed}.csv", [
            {"env_steps": s, "wall_s": s / 10, "return": 10.0 if s >= first else 0.0}
            for s in (100, 200, 300)])
        suite.write_curve(tmp_path / f"curves/ppo/dmc_C/seed{seed}.csv", [
            {"env_steps": s, "wall_s": s / 100, "return": 1.0} for s in (200, 400)])
    s = compute(*load_suite(tmp_path))
    r = s["tasks"]["dmc/C"]["ratio"]
    assert r["steps"] is None and r["steps_bound"] == ["<", 0.5]
    assert r["wall"] is None and r["wall_bound"] == ["<", pytest.approx(20 / 4)]
    assert s["ratios"]["median_steps"] is None and s["ratios"]["steps_tasks"] == 0


def test_report_regenerates_byte_identical(tmp_path, capsys):
    src = make_suite(tmp_path / "src")
    report(src, tmp_path / "r1", at=[250])
    report(src, tmp_path / "r2", at=[250])
    for name in ("table.md", "summary.json"):
        assert (tmp_path / "r1" / name).read_bytes() == (tmp_path / "r2" / name).read_bytes()
    table = (tmp_path / "r1" / "table.md").read_text()
    assert "| dmc/A | reppo | 3 | 85.3 [" in table and "| 300 | 3.0 s | 2/3 | 1/3 |" in table
    assert "never" in table
    # a job of the manifest without a curve is named, not silently dropped
    assert "ppo/dmc_B/seed0" in table
    assert json.loads((tmp_path / "r1" / "summary.json").read_text())["missing_jobs"] == [
        "ppo/dmc_B/seed0"]
    assert (tmp_path / "r1" / "curves.png").stat().st_size > 0


def test_store_copies_curves_and_manifest_and_reports(tmp_path, capsys):
    src = make_suite(tmp_path / "src")
    (src / "logs").mkdir()
    (src / "logs" / "x.log").write_text("not stored")
    dest = tmp_path / "docs" / "bench"
    assert suite.main(["store", str(src), str(dest)]) == 0
    stored = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert stored == sorted(["jobs.json", "table.md", "summary.json", "curves.png",
                             *(f"curves/{a}/dmc_A/seed{s}.csv" for a, s in CURVES_A),
                             "curves/reppo/dmc_B/seed0.csv"])
    first = (dest / "summary.json").read_bytes()
    assert suite.main(["report", str(dest)]) == 0
    assert (dest / "summary.json").read_bytes() == first
    assert suite.main(["store", str(src), str(dest)]) == 2  # not silently overwritten
    assert "--replace" in capsys.readouterr().err
    # report options given to store are the stored copy's defaults: `report DEST` alone
    # regenerates the stored table
    assert suite.main(["store", str(src), str(dest), "--replace", "--at", "250",
                       "--norm", "dmc/B=0:10"]) == 0
    table = (dest / "table.md").read_bytes()
    assert b"return @ 250" in table and b"[0.00, 10.00]" in table
    assert suite.main(["report", str(dest)]) == 0
    assert (dest / "table.md").read_bytes() == table
    assert suite.main(["report", str(dest), "--at", "300"]) == 0  # the command line wins
    assert b"return @ 300" in (dest / "table.md").read_bytes()


def test_versus_at_the_baselines_level_on_hand_made_curves(tmp_path, capsys):
    """Level = ppo's mean at 200 steps = (40 + 0 + 60) / 3; dmc/B has no ppo curve: left out."""
    src = make_suite(tmp_path / "src")
    assert suite.main(["versus", str(src), "--baseline", "ppo", "--level-at", "200",
                       "--at", "200", "400", "--out", str(tmp_path / "v.md")]) == 0
    text = capsys.readouterr().out
    assert (tmp_path / "v.md").read_text() == text
    v = versus(*load_suite(src), "ppo", 200, [200, 400])
    assert list(v["tasks"]) == ["dmc/A"]
    e = v["tasks"]["dmc/A"]
    assert e["level"] == pytest.approx(100 / 3)
    r, b = e["algos"]["reppo"], e["algos"]["ppo"]
    assert [p["steps_to_level"] for p in r["per_seed"]] == [200, 200, 300]
    assert [p["steps_to_level"] for p in b["per_seed"]] == [200, None, 200]
    assert (r["reached"], b["reached"]) == (3, 2)
    assert (r["median_wall_to_level"], b["median_wall_to_level"]) == (2.0, 20.0)
    assert e["wall_ratio"] == pytest.approx(0.1)
    assert r["at"]["200"] == pytest.approx(54.0) and b["at"]["400"] == pytest.approx(182 / 3)
    assert e["ahead"] == {"200": True, "400": True} and v["ahead_at_all"] == 1
    assert "| dmc/A | 33.3 | reppo | 3/3 | 200 | 2.0 s | 0 | **54.0** | **85.3** |" in text
    assert "| dmc/A | ppo | 1 | never | – |" in text


def test_versus_counts_collapses_after_the_level():
    """Level 10 reached at the 2nd evaluation; then 4 < 10/2, 12 raises the best, 5.9 < 6,
    6 is not below, NaN counts: 3 collapses."""
    steps = np.arange(1, 8) * 100
    mk = lambda algo, ret: Curve(algo, "t/x", 0, steps, steps / 100.0, np.array(ret, float))
    v = versus([mk("reppo", [0, 10, 4, 12, 5.9, 6, np.nan]), mk("pqn", [0, 10, 10, 10, 10, 10,
                                                                        10])],
               {}, "pqn", 200, [])
    e = v["tasks"]["t/x"]
    assert e["level"] == 10.0
    assert e["algos"]["reppo"]["collapses"] == 3 and e["algos"]["pqn"]["collapses"] == 0
    with pytest.raises(UserError, match="no task has curves of both reppo and ppo"):
        versus([mk("reppo", [1] * 7)], {}, "ppo", 200, [])


def _one_line_error(capsys, argv, *needles):
    rc = suite.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


RUN = ["run", "--seeds", "0"]


@pytest.mark.parametrize("argv,needles", [
    (["--tasks", "dmc/CartpoleBalanc", "--budget", "1000"], ["unknown environment",
                                                              "dmc/CartpoleBalance"]),
    (["--tasks", "dmc/CartpoleBalance", "--algos", "reppo", "sac", "--budget", "1000"],
     ["unknown algo 'sac'"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "1e6x"], ["'1e6x'", "positive whole"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "2.5"], ["'2.5'"]),
    (["--tasks", "dmc/CartpoleBalance", "dmc/CheetahRun", "--budget",
      "dmc/CheetahRun=1000", "dmc/CheetahRun=2000", "1000"], ["budget twice"]),
    (["--tasks", "dmc/CartpoleBalance", "dmc/CheetahRun", "--budget",
      "dmc/CheetahRun=1000"], ["no --budget for dmc/CartpoleBalance"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "dmc/CheetahRun=1000"],
     ["not one of --tasks"]),
    (["--tasks", "dmc/CartpoleBalance", "--algos", "reppo", "pqn", "--budget", "1000"],
     ["pqn is a discrete-action baseline", "continuous"]),
    (["--tasks", "minatar/Breakout", "--algos", "reppo", "ppo", "--budget", "1000"],
     ["ppo is a continuous-action baseline", "discrete"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "1000", "--preset-rule", "*=cpu",
      "--preset-rule", "*Cart*=tiny"], ["at most one --preset-rule"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "1000", "--preset-rule", "*Swing*=cpu"],
     ["matches none of the tasks"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "1000", "--preset", "cpu-repeat5"],
     ["unknown preset 'cpu-repeat5'"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "1000", "--reppo-set",
      "rollout.total_env_steps=5"], ["set by the suite", "--budget"]),
    (["--tasks", "dmc/CartpoleBalance", "--budget", "1000", "--reppo-set",
      "rollout.num_minibatches=7"], ["dmc/CartpoleBalance (preset cpu)"]),
    (["--tasks", "minatar/Breakout", "--algos", "pqn", "--budget", "1000", "--pqn-hidden",
      "128,x"], ["--pqn-hidden"]),
])
def test_bad_run_input_is_one_line(tmp_path, capsys, argv, needles):
    out = tmp_path / "out"
    _one_line_error(capsys, [*RUN, *argv, "--out", str(out)], *needles)
    assert not out.exists()  # nothing is created before the options are valid


def test_out_dir_that_is_a_file_and_empty_reports(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    _one_line_error(capsys, [*RUN, "--tasks", "dmc/CartpoleBalance", "--budget", "1000",
                             "--out", str(f)], "is a file")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, ["report", str(empty)], "holds no finished curves")
    _one_line_error(capsys, ["report", str(f)], "is not a directory")
    src = make_suite(tmp_path / "s")
    _one_line_error(capsys, ["report", str(src), "--norm", "dmc/A=1"], "TASK=LO:HI")
    _one_line_error(capsys, ["report", str(src), "--norm", "dmc/Z=0,1"], "no curves here")
    _one_line_error(capsys, ["report", str(src), "--norm", "dmc/A=0:1", "dmc/A=0:2"], "twice")
    _one_line_error(capsys, ["report", str(src), "--at", "soon"], "--at")


def test_rerun_with_other_settings_is_refused(tmp_path, capsys):
    """A suite directory holds one setting per job: asking for another budget is an error
    naming the job and the difference, before anything runs."""
    out = tmp_path / "out"
    out.mkdir()
    job_key = "reppo/dmc_CartpoleBalance/seed0"
    spec = {"algo": "reppo", "task": "dmc/CartpoleBalance", "seed": 0, "budget": 5000,
            "eval_episodes": 16, "preset": "cpu", "backend": "jax", "reppo_set": [],
            "eval_interval": 4096}
    (out / suite.MANIFEST).write_text(json.dumps({"jobs": {job_key: {"spec": spec}}}))
    _one_line_error(capsys, [*RUN, "--tasks", "dmc/CartpoleBalance", "--budget", "9000",
                             "--out", str(out)], job_key, "budget", "5000 -> 9000")


def test_cli_exit_status_and_single_line_in_a_subprocess(tmp_path):
    p = subprocess.run([sys.executable, "-m", "benchmarks.suite", "run", "--tasks",
                        "dmc/CartpoleBalance", "--budget", "lots", "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: --budget 'lots'")


STORED = sorted(p.parent for p in (ROOT / "docs" / "benchmarks").glob("*/jobs.json"))


@pytest.mark.parametrize("stored", STORED, ids=[p.name for p in STORED])
def test_stored_benchmarks_regenerate_byte_identical(stored, tmp_path, capsys):
    """The docs' stored benchmarks: `report` on their curves writes exactly the committed
    table.md and summary.json (a change of the report's code must regenerate them)."""
    assert suite.main(["report", str(stored), "--out", str(tmp_path)]) == 0
    for name in ("table.md", "summary.json"):
        assert (tmp_path / name).read_bytes() == (stored / name).read_bytes(), (
            f"{stored / name} is stale: python -m benchmarks.suite report {stored}")
