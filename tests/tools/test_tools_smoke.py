"""Subprocess smoke tests of the benchmarking tools (tiny sizes; marked slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[2]


def _run(args, timeout):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_bench_throughput_toy_reports_train_and_sim():
    p = _run(["-m", "benchmarks.bench_throughput", "--env", "toy/Bandit", "--preset", "tiny",
              "--iterations", "2", "--repeats", "2", "--rollout.num_epochs=2", "--flops",
              "--backend", "torch", "--json"], timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["env"] == "toy/Bandit" and res["num_epochs"] == 2
    assert res["env_steps_per_repeat"] == 2 * 8 * 8
    for k in ("train_compile_s", "train_sps", "sim_sps", "train_over_sim_time_per_step",
              "train_sps_over_baseline"):
        assert res[k] > 0, k
    assert res["train_metrics_finite"]
    assert "RECORDED" in p.stdout and "train/sim" in p.stdout
    # --flops: 2 epochs x 2 minibatches of the minibatch step's FLOPs, and a ceiling from them
    assert res["update_gflop_per_minibatch"] > 0 and res["matmul_peak_gflops"] > 0
    assert abs(res["update_gflop_per_iteration"] - 4 * res["update_gflop_per_minibatch"]) < 1e-9
    assert res["flop_bound_sps"] > 0 and "FLOP-bound ceiling" in p.stdout
    # --backend torch: two paired repeats (JAX first, then torch first), ratios from the pairs
    assert len(res["paired_repeats_s"]) == 2 and all(len(r) == 4 for r in res["paired_repeats_s"])
    assert res["torch_train_metrics_finite"] and res["torch_train_sps"] > 0
    assert res["torch_over_jax_train_sps"] == pytest.approx(
        sorted(j / t for j, t, _, _ in res["paired_repeats_s"])[0] / 2
        + sorted(j / t for j, t, _, _ in res["paired_repeats_s"])[1] / 2)
    assert res["torch_over_jax_cpu_time_ratio"] > 0 and "paired repeats" in p.stdout


@pytest.mark.slow
def test_bench_throughput_discrete_env_simulates_with_action_indices():
    """D-REPPO's env: the simulation scan steps it with int32 action indices (a float action
    array used to fail inside the env's step); ``--flops`` costs D-REPPO's minibatch step."""
    p = _run(["-m", "benchmarks.bench_throughput", "--env", "toy/DiscreteBandit", "--preset",
              "tiny", "--iterations", "2", "--repeats", "2", "--flops", "--json"], timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["env"] == "toy/DiscreteBandit"
    assert res["train_sps"] > 0 and res["sim_sps"] > 0 and res["train_metrics_finite"]
    # --flops of D-REPPO's minibatch step (critic, closed-form actor, α/β)
    assert res["update_gflop_per_minibatch"] > 0 and res["flop_bound_sps"] > 0


@pytest.mark.slow
def test_compare_ppo_rejects_unknown_env(tmp_path):
    p = _run(["-m", "benchmarks.compare_ppo", "--env", "dmc/CartpoleBalanc", "--steps", "1000",
              "--out", str(tmp_path)], timeout=300)
    assert p.returncode == 2
    assert "unknown DMC task 'dmc/CartpoleBalanc'" in p.stderr
    assert "dmc/CartpoleBalance" in p.stderr  # suggestion
    assert not (tmp_path / "curves.json").exists()


@pytest.mark.slow
def test_bench_devices_toy_reports_one_and_two_devices():
    p = _run(["-m", "benchmarks.bench_devices", "--env", "toy/Bandit", "--preset", "tiny", "--devices",
              "2", "--iterations", "2", "--repeats", "1", "--env.v_min=0", "--env.v_max=10",
              "--json"], timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(res["results"]) == {"1", "2"}
    assert all(r["train_sps"] > 0 and r["finite"] for r in res["results"].values())
    assert res["ratio"]["train_sps"] > 0
    assert "2 devices" in p.stdout and "ratio" in p.stdout
