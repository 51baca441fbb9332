"""reppo ablate (reppo_common.ablate): planning, commands, resumability and aggregation with a fake runner (no
framework needed), and one real `reppo train` subprocess through the tool on the toy env."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from reppo_common import ablate, cli
from reppo_common.errors import UserError
from spec.ablations import ABLATIONS, DEFAULT_ABLATIONS

ROOT = Path(__file__).resolve().parents[2]



FINALS = {"reppo": 900.0, "score": 600.0, "no-kl": 300.0}
"""Final eval return the fake runner writes per variant (seed adds 10 per seed)."""


def fake_executor(calls: list):
    """An executor that writes what `reppo train` would leave behind: config.json, meta.json
    and metrics.jsonl with eval lines up to the run's final env step (return ramping linearly to
    FINALS[variant] + 10·seed)."""

    def run(run, cmd, log_path):
        calls.append((run.label, list(cmd)))
        d = run.run_dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(run.config.to_json() + "\n")
        (d / "meta.json").write_text(json.dumps({"backend": "jax", "env": run.task}))
        final = ablate.final_env_steps(run.config)
        steps = np.linspace(final / 4, final, 4).astype(int)
        target = FINALS[run.variant] + 10.0 * run.seed
        lines = [{"kind": "eval", "env_steps": int(s), "wall_s": float(i + 1),
                  "eval/return_mean": target * (i + 1) / 4} for i, s in enumerate(steps)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        return {"rc": 0, "wall_s": 0.0, "log": str(log_path)}

    return run


def test_variant_table_builds_valid_configs():
    """Every variant applies on the default preset of both DMC tasks and sets what it says."""
    assert set(DEFAULT_ABLATIONS) <= set(ABLATIONS)
    for task in ("dmc/CartpoleBalance", "dmc/PendulumSwingup"):
        base = ablate.requested_config(task, "reppo", 0, None)
        for name in ABLATIONS:
            cfg = ablate.requested_config(task, name, 1, 12_288)
            assert cfg.run.seed == 1 and cfg.rollout.total_env_steps == 12_288
            assert cfg.env.action_repeat == base.env.action_repeat  # the task's preset
            for key, value in ABLATIONS[name]["overrides"].items():
                section, fname = key.split(".")
                assert getattr(getattr(cfg, section), fname) == value, (name, key)
    # the paper's E.1 "no normalisation" is the network's layer normalisation
    cfg = ablate.requested_config("dmc/CartpoleBalance", "no-norm", 0, None)
    assert cfg.critic.norm == cfg.actor.norm == "none" and cfg.env.normalize_obs


def test_dry_run_prints_every_command_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "abl"
    rc = ablate.main(["--tasks", "dmc/CartpoleBalance,dmc/PendulumSwingup", "--seeds", "2",
                      "--out", str(out), "--steps", "5e4", "--dry-run"])
    assert rc == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[new] ")]
    assert len(lines) == 2 * len(DEFAULT_ABLATIONS) * 2
    assert not out.exists()
    score = [l for l in lines if "/score/seed1" in l and "PendulumSwingup" in l]
    assert len(score) == 1
    for part in ("-m reppo_common.cli train --backend jax", "--env dmc/PendulumSwingup",
                 "--seed 1", "--steps 50000", "--actor.gradient=score", "--no-progress"):
        assert part in score[0]
    nonorm = next(l for l in lines if "/no-norm/" in l)
    assert "--critic.norm=none" in nonorm and "--actor.norm=none" in nonorm


def test_per_task_step_budgets(tmp_path, capsys):
    tasks = ["dmc/CartpoleBalance", "dmc/PendulumSwingup"]
    assert ablate.parse_steps("5e4", tasks) == 50_000
    per = ablate.parse_steps("dmc/PendulumSwingup=1e5", tasks)
    assert per == {"dmc/PendulumSwingup": 100_000}
    assert ablate.steps_for(per, "dmc/CartpoleBalance") is None  # the preset's budget
    assert ablate.parse_steps("dmc/PendulumSwingup=100000,20000", tasks) == {
        "dmc/PendulumSwingup": 100_000, "dmc/CartpoleBalance": 20_000}
    rc = ablate.main(["--tasks", ",".join(tasks), "--seeds", "1", "--variants", "reppo",
                      "--out", str(tmp_path / "abl"), "--dry-run",
                      "--steps", "dmc/CartpoleBalance=30000,dmc/PendulumSwingup=40000"])
    assert rc == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[new] ")]
    assert len(lines) == 2
    assert "--steps 30000" in next(l for l in lines if "CartpoleBalance" in l)
    assert "--steps 40000" in next(l for l in lines if "PendulumSwingup" in l)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    for argv, word in ((["--variants", "reppo,nokl"], "no-kl"), (["--seeds", "0"], "--seeds"),
                       (["--tasks", "dmc/Nope"], "unknown environment"),
                       (["--backend", "tf"], "--backend"), (["--steps", "1.5"], "--steps"),
                       (["--steps", "dmc/Other=10"], "not in --tasks"),
                       (["--steps", "dmc/CartpoleBalance=0"], "positive integer")):
        assert cli.main(["ablate", *argv, "--out", str(tmp_path), "--dry-run"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and word in err and "\n" not in err


def test_runs_resumes_and_aggregates_with_a_fake_runner(tmp_path, monkeypatch, capsys):
    calls: list = []
    monkeypatch.setattr(ablate, "execute", fake_executor(calls))
    out = tmp_path / "abl"
    argv = ["--tasks", "dmc/CartpoleBalance", "--seeds", "2", "--variants", "reppo,score,no-kl",
            "--steps", "20480", "--out", str(out), "--reps", "200"]
    assert ablate.main(argv) == 0
    assert len(calls) == 6
    data = json.loads((out / "ablation.json").read_text())
    rows = {r["variant"]: r for r in data["variants"]}
    assert list(rows) == ["reppo", "score", "no-kl"]
    for v, final in FINALS.items():
        r = rows[v]
        assert r["runs"] == 2
        # normalised by 1000 (DMC); seeds 0 and 1 end at final and final + 10
        assert r["mean"] == pytest.approx((final + 5.0) / 1000)
        assert r["mean_lo"] <= r["mean"] <= r["mean_hi"]
        assert r["iqm"] == pytest.approx((final + 5.0) / 1000)
        # AUC: the mean of the ramp 1/4 .. 4/4 of the final value = 5/8 of it
        assert r["auc"] == pytest.approx(0.625 * (final + 5.0) / 1000)
        assert r["tasks"]["dmc/CartpoleBalance"]["final_mean"] == pytest.approx(final + 5.0)
    md = (out / "ablation.md").read_text()
    assert md.startswith("| variant | runs | mean | median | IQM | AUC |")
    assert "actor.gradient=score" in md and "0.905 [" in md
    assert (out / "ablation.png").stat().st_size > 1000

    # a second invocation finds every run complete and runs nothing
    calls.clear()
    assert ablate.main(argv) == 0 and calls == []
    assert "6 done" in capsys.readouterr().out

    # an interrupted run: a JAX checkpoint is resumed, without one the run restarts
    d = out / "runs" / "dmc_CartpoleBalance" / "score" / "seed1"
    lines = (d / "metrics.jsonl").read_text().splitlines()
    (d / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")
    runs = ablate.plan_runs(["dmc/CartpoleBalance"], ["score"], [1], out, "jax", 20480)
    assert runs[0].status == ablate.RESTART
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "state_000000010240.json").write_text("{}")
    runs = ablate.plan_runs(["dmc/CartpoleBalance"], ["score"], [1], out, "jax", 20480)
    assert runs[0].status == ablate.RESUME
    cmd = ablate.build_command(runs[0], "jax", 20480)
    i = cmd.index("--resume")
    assert cmd[i + 1] == str(d) and "--env" not in cmd and "--actor.gradient=score" not in cmd
    assert cmd[cmd.index("--steps") + 1] == "20480"
    assert ablate.plan_runs(["dmc/CartpoleBalance"], ["score"], [1], out, "torch",
                            20480)[0].status == ablate.RESTART
    # a larger budget continues the JAX run; another config in the directory is refused
    assert ablate.plan_runs(["dmc/CartpoleBalance"], ["reppo"], [0], out, "jax",
                            40960)[0].status == ablate.RESTART  # no checkpoint written
    with pytest.raises(UserError, match="another config"):
        ablate.plan_runs(["dmc/CartpoleBalance"], ["reppo"], [0], out, "jax", 20480,
                         extra=["loss.kl_target=0.2"])
    with pytest.raises(UserError, match="longer run"):
        ablate.plan_runs(["dmc/CartpoleBalance"], ["reppo"], [0], out, "jax", 10240)


def test_failed_run_is_reported_and_the_rest_aggregated(tmp_path, monkeypatch, capsys):
    calls: list = []
    ok = fake_executor(calls)

    def flaky(run, cmd, log_path):
        if run.variant == "no-kl":
            return {"rc": 1, "wall_s": 0.0, "log": str(log_path)}
        return ok(run, cmd, log_path)

    monkeypatch.setattr(ablate, "execute", flaky)
    out = tmp_path / "abl"
    rc = ablate.main(["--tasks", "dmc/CartpoleBalance", "--seeds", "1", "--variants",
                      "reppo,no-kl", "--steps", "20480", "--out", str(out), "--no-plot",
                      "--reps", "50"])
    assert rc == 1
    assert "1 run(s) failed: dmc/CartpoleBalance no-kl seed 0" in capsys.readouterr().err
    rows = {r["variant"]: r for r in json.loads((out / "ablation.json").read_text())["variants"]}
    assert rows["reppo"]["runs"] == 1 and rows["no-kl"]["runs"] == 0 and "mean" not in rows["no-kl"]
    assert not (out / "ablation.png").exists()


def test_real_training_subprocess_on_the_toy_env(tmp_path, monkeypatch, capsys):
    """One `reppo train` (actor.gradient=ppo, toy/Bandit, 512 env steps) through the tool."""
    pytest.importorskip("jax")
    sys.path.insert(0, str(ROOT / "tests" / "jax"))
    from reppo_common import registry
    from toy_cli import TOY_SPEC

    monkeypatch.setitem(registry.REGISTRY, TOY_SPEC.full_name, TOY_SPEC)
    out = tmp_path / "abl"
    rc = ablate.main(["--tasks", "toy/Bandit", "--seeds", "1", "--variants", "ppo", "--steps",
                      "512", "--out", str(out), "--no-plot", "--reps", "50", "--reppo-cmd",
                      f"{sys.executable} {ROOT / 'tests' / 'jax' / 'toy_cli.py'}"])
    printed = capsys.readouterr()
    assert rc == 0, printed.err + printed.out
    d = out / "runs" / "toy_Bandit" / "ppo" / "seed0"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["actor"]["gradient"] == "ppo" and cfg["rollout"]["total_env_steps"] == 512
    assert any(p.name.startswith("params_") for p in (d / "checkpoints").iterdir())
    row = json.loads((out / "ablation.json").read_text())["variants"][0]
    assert row["variant"] == "ppo" and row["runs"] == 1
    assert row["raw_tasks"] == ["toy/Bandit"] and np.isfinite(row["mean"])
    assert (out / "logs" / "toy_Bandit_ppo_seed0.log").is_file()
