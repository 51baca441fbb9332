"""Data-parallel torch training (``reppo_torch.distributed``) with two gloo processes on CPU.

The two-rank runs happen in a subprocess (``tests/torch/distributed_check.py``, which starts the
ranks with ``torch.multiprocessing.spawn`` on a free port, or under ``torchrun --standalone``), so
no process group is left in the pytest process. The single-process pieces (``Shard``, input
checks) are tested here directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import numpy as np  # noqa: E402

from reppo_common.errors import UserError  # noqa: E402
from spec.backend import ITERATION_MAX_METRICS  # noqa: E402
from reppo_torch import distributed as Dist  # noqa: E402
from reppo_torch.normalization import running_stats_init, running_stats_update  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name("distributed_check.py")
sys.path.insert(0, str(CHECK.parent))
import distributed_check as DC  # noqa: E402


def _run(args: list[str], timeout: int = 600, launcher: list[str] | None = None
         ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*(launcher or [sys.executable]), str(CHECK), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.abs(b) + np.max(np.abs(b))
    return float(np.max(np.abs(a - b) / np.maximum(scale, 1e-30)))


def test_two_ranks_equal_the_one_process_update(tmp_path):
    """Two gloo ranks, each holding half of the envs, run the update phase (2 epochs × 2
    minibatches, critic, actor and α/β steps) and one observation-statistics update: their
    parameters, Adam moments, log α/β and statistics equal the single-process update on the whole
    batch with the same minibatch grouping and noise (``Shard(2, (0, 1))``), to float32
    reduction-order tolerance; the ranks' states are bit-identical; the mean of the ranks'
    metrics (the maximum for ``train/kl_max``) is the reference's, and so is what
    ``mean_over_ranks`` makes of them."""
    _run(["update", str(tmp_path)])
    r0, r1, ref = (_load(tmp_path / f) for f in ("rank0.pt", "rank1.pt", "reference.pt"))
    for key, want in ref.items():
        if key.startswith("info/"):  # what mean_over_ranks makes of the ranks' metrics
            a, b = np.asarray(r0[key]), np.asarray(r1[key])
            got = np.maximum(a, b) if key[len("info/"):] in ITERATION_MAX_METRICS else (a + b) / 2
        else:
            np.testing.assert_array_equal(r0[key], r1[key], err_msg=key)
            got = r0[key]
        assert _rel(got, want) <= DC.RELATIVE_TOLERANCE, (key, got, want)
        if key.startswith("info/"):  # and mean_over_ranks itself, as rank 0 logs them
            reduced = "reduced/" + key[len("info/"):]
            np.testing.assert_array_equal(r0[reduced], r1[reduced], err_msg=reduced)
            assert _rel(r0[reduced], want) <= DC.RELATIVE_TOLERANCE, (reduced, r0[reduced], want)
    assert float(ref["stats/count"]) == pytest.approx(DC.NUM_ENVS + 1e-4)
    # not vacuous: the update moved the critic far beyond the tolerance
    assert abs(ref["info/train/critic_grad_norm"]) > 0
    assert float(np.max(np.abs(ref["critic_opt/0/exp_avg"]))) > 0


def test_two_ranks_train_in_step_and_only_rank0_writes(tmp_path):
    """``Trainer``/``train()`` under two ranks: 4 envs each, identical parameters and metrics on
    both ranks after two iterations; evaluation, eval metrics and checkpoints on rank 0 only."""
    _run(["train", str(tmp_path)])
    r0, r1 = _load(tmp_path / "rank0.pt"), _load(tmp_path / "rank1.pt")
    assert r0["local_envs"] == r1["local_envs"] == DC.NUM_ENVS // 2
    for key in r0["state"]:
        np.testing.assert_array_equal(r0["state"][key], r1["state"][key], err_msg=key)
    assert r0["infos"] == r1["infos"]
    assert r0["has_eval_env"] and not r1["has_eval_env"]
    assert r0["train_iterations"] == r1["train_iterations"] == 3
    assert r0["evals"] == [64, 96] and r1["evals"] == []
    assert r0["episodes"] == r1["episodes"]  # summed over the ranks
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("params_*.npz"))
    assert ckpts == ["params_000000000032.npz", "params_000000000064.npz",
                     "params_000000000096.npz"]


def test_torchrun_cli_run_writes_one_run_dir(tmp_path):
    """``torchrun --nproc-per-node=2 ... reppo train --backend torch``: rank 0 writes the run
    directory (config, metrics with train and eval lines, checkpoints), rank 1 writes nothing."""
    run_dir = tmp_path / "run"
    _run(["cli", "train", "--backend", "torch", "--env", "toy/Bandit", "--preset", "tiny",
          "--steps", "96", "--run-dir", str(run_dir), "--no-progress", "--devices", "2",
          "--rollout.num_envs=8", "--rollout.num_steps=4", "--run.eval_interval=64",
          "--run.device=cpu", "--env.v_min=0", "--env.v_max=10"],
         launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node=2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["env_steps"] for m in lines if m["kind"] == "train"] == [32, 64, 96]
    assert [m["env_steps"] for m in lines if m["kind"] == "eval"] == [64, 96]
    assert json.loads((run_dir / "config.json").read_text())["run"]["devices"] == 2
    assert list((run_dir / "checkpoints").glob("params_*.npz"))


def test_shard_of_one_group_is_the_single_process_code():
    """``Shard()`` draws, flattens and permutes exactly as the code did before distribution."""
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    one, cpu = Dist.SINGLE, torch.device("cpu")
    assert torch.equal(one.permutation(24, 4, g1, cpu), torch.randperm(24, generator=g2))
    assert torch.equal(one.randn((3, 2), g1, cpu), torch.randn((3, 2), generator=g2))
    x = torch.arange(24.0).reshape(4, 6)
    assert torch.equal(one.flatten(x), x.reshape(-1)) and one.take(x, 1) is x
    stats = running_stats_init(2, torch.float32)
    obs = torch.randn((5, 2), generator=g1)
    a, b = one.running_stats_update(stats, obs), running_stats_update(stats, obs)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_shard_parts_make_up_the_reference_minibatches():
    """Each rank's part of minibatch i, mapped to global positions, is the i-th block of the
    all-ranks reference's minibatch i: the union of the ranks' minibatches is the reference's."""
    cpu = torch.device("cpu")
    t, n, m = 3, 4, 2  # 3 steps x 4 envs, 2 ranks of 2 envs, 2 minibatches of 6
    data = torch.arange(t * n).reshape(t, n)  # sample id = t*N + env
    ref_shard = Dist.Shard(2, (0, 1))
    ref = ref_shard.flatten(data)[ref_shard.permutation(t * n, m, torch.Generator().manual_seed(1),
                                                         cpu)].reshape(m, -1)
    parts = []
    for rank in (0, 1):
        shard = Dist.Shard(2, (rank,))
        local = shard.take(data, 1)
        perm = shard.permutation(t * n // 2, m, torch.Generator().manual_seed(1), cpu)
        parts.append(shard.flatten(local)[perm].reshape(m, -1))
    assert torch.equal(torch.cat(parts, dim=1), ref)
    for i in range(m):  # stratified: every minibatch takes half its samples from each rank's envs
        assert sorted(int(v) % n // 2 for v in ref[i]) == [0] * 3 + [1] * 3
    assert sorted(ref.reshape(-1).tolist()) == list(range(t * n))  # an epoch sees every sample


def test_devices_must_match_the_launched_world():
    assert Dist.check_devices(None, Dist.World(0, 2), 8) == 4
    assert Dist.check_devices(2, Dist.World(1, 2), 8) == 4
    with pytest.raises(UserError, match=r"run.devices=2 but 1 process\(es\) were launched; "
                                        r"start with torchrun --nproc-per-node=2"):
        Dist.check_devices(2, Dist.World(), 8)
    assert Dist.launched_world() == Dist.World() or "RANK" in os.environ
    assert not Dist.is_active()
