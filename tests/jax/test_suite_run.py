"""benchmarks.suite run end to end on the toy bandit (``bench/Bandit``, preset tiny, 2,048 env
steps per job): REPPO jobs through the real ``reppo train`` in subprocesses, two at a time; a
failed job is reported with its log while the other finishes; a rerun starts the failed job
again and resumes a job interrupted after its last intermediate checkpoint, which reproduces the
uninterrupted curve; a third run skips both finished jobs; then the report. Plus the few lines of our own around
rejax's PQN (no PQN training: that is a benchmark, not a test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import suite
from reppo_common import registry

HERE = Path(__file__).resolve().parent


@pytest.fixture
def toy_task(monkeypatch):
    """``suite_toy_env:bench/Bandit`` importable here and in the job processes; the registry
    restored afterwards."""
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    yield "suite_toy_env:bench/Bandit"
    sys.modules.pop("suite_toy_env", None)


def _curve_cols(path: Path, cols=("env_steps", "return")) -> list[tuple[float, ...]]:
    return [tuple(r[c] for c in cols) for r in suite.read_curve(path)]


def test_run_fail_resume_and_report(tmp_path, toy_task, capsys):
    out = tmp_path / "suite"
    argv = ["run", "--tasks", toy_task, "--seeds", "0", "1", "--budget", "2048", "--evals", "4",
            "--eval-episodes", "4", "--jobs", "2", "--out", str(out)]
    key = {s: f"reppo/bench_Bandit/seed{s}" for s in (0, 1)}
    curve = {s: out / f"curves/reppo/bench_Bandit/seed{s}.csv" for s in (0, 1)}
    log = {s: out / f"logs/reppo/bench_Bandit/seed{s}.log" for s in (0, 1)}
    run = {s: out / f"runs/reppo/bench_Bandit/seed{s}" for s in (0, 1)}

    # 1. seed 1's run directory is occupied by a stranger's file: that job fails (reppo train
    # refuses the directory), seed 0 finishes, the exit status says so
    run[1].mkdir(parents=True)
    (run[1] / "notes.txt").write_text("not a run")
    assert suite.main(argv) == 1
    printed = capsys.readouterr().out
    assert f"FAILED {key[1]} (exit 2); log: {log[1]}" in printed
    assert "already exists and is not empty" in log[1].read_text()
    assert curve[0].is_file() and not curve[1].exists()
    jobs = json.loads((out / "jobs.json").read_text())["jobs"]
    assert (jobs[key[0]]["status"], jobs[key[1]]["status"]) == ("done", "failed")
    assert jobs[key[0]]["command"].startswith("python -m reppo_common.cli train --backend jax "
                                              f"--env {toy_task} --preset tiny --seed 0")
    assert jobs[key[0]]["config"]["rollout"]["total_env_steps"] == 2048
    full = _curve_cols(curve[0], ("env_steps", "wall_s", "return"))
    assert [r[0] for r in full] == [512, 1024, 1536, 2048]  # --evals 4: every 8 iterations
    assert all(r[1] > 0 for r in full)

    # 2. seed 0 "killed" after its last evaluation but before its final checkpoint (its curve
    # file never written, checkpoints end at 1,024 env steps), seed 1's directory cleared: the
    # rerun resumes seed 0 from its checkpoint and starts seed 1 again
    curve[0].unlink()
    for f in (run[0] / "checkpoints").glob("*000000002048*"):
        f.unlink()
    (run[1] / "notes.txt").unlink()
    assert suite.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"start  {key[0]} (resuming its checkpoint)" in printed
    assert f"done   {key[1]}" in printed
    text = log[0].read_text()
    assert "attempt 2 (resume): python -m reppo_common.cli train --resume" in text
    assert "resuming from state_000000001024.json" in text
    # the same evaluations as uninterrupted (wall-clock aside)
    assert _curve_cols(curve[0]) == [(r[0], r[2]) for r in full]

    # 3. everything finished: a rerun skips both jobs and starts nothing
    stamps = {s: curve[s].stat().st_mtime_ns for s in (0, 1)}
    assert suite.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"skip   {key[0]}" in printed and f"skip   {key[1]}" in printed
    assert "start" not in printed
    assert {s: curve[s].stat().st_mtime_ns for s in (0, 1)} == stamps
    manifest = json.loads((out / "jobs.json").read_text())
    assert [manifest["jobs"][key[s]]["attempts"] for s in (0, 1)] == [2, 2]
    assert len(manifest["invocations"]) == 3

    # 4. report
    assert suite.main(["report", str(out), "--at", "1000"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    task = summary["tasks"][toy_task]
    assert task["algos"]["reppo"]["seeds"] == 2 and summary["missing_jobs"] == []
    assert task["best"] == max(r[1] for s in (0, 1) for r in _curve_cols(curve[s]))
    assert task["algos"]["reppo"]["at"]["1000"] is not None
    assert f"| {toy_task} | reppo | 2 |" in (out / "table.md").read_text()


def test_pqn_network_width_and_done_step():
    """Our lines around rejax: the Q-network gets the requested widths (rejax hard-codes
    (64, 64)), and the gymnax 1.0 step is turned into rejax's done = terminated | truncated."""
    pytest.importorskip("rejax")
    import jax
    import jax.numpy as jnp

    from benchmarks.pqn import DoneStep, make_pqn

    algo = make_pqn("Breakout", 8192, hidden=(32, 16))
    params = algo.agent.init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 4)))["params"]
    assert [params[f"Dense_{i}"]["kernel"].shape for i in range(3)] == [(400, 32), (32, 16),
                                                                         (16, 3)]
    assert "LayerNorm_0" in params  # rejax's own network otherwise
    assert algo.td_lambda == 0.65 and algo.num_envs == 128 and algo.num_epochs == 2
    assert algo.epsilon_schedule(819) == pytest.approx(0.05)  # 10% of 8,192 steps

    class Fake:
        def step(self, key, state, action, params=None):
            return "obs", state, 1.0, jnp.asarray(False), jnp.asarray(action == 1), {}

    env = DoneStep(Fake())
    assert bool(env.step(None, 0, 1)[3]) and not bool(env.step(None, 0, 0)[3])
    assert len(env.step(None, 0, 0)) == 5
