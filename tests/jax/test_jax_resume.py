"""Full-state checkpoints and ``reppo train --resume`` for the JAX backend (the properties both
ports share, run for each backend, are in tests/ports/test_resume.py).

The required property: on CPU, a run killed (SIGKILL) and resumed from its last checkpoint writes
exactly the same subsequent train/eval metrics as the uninterrupted run (timing fields aside).
The subprocess tests drive the real CLI through tests/jax/toy_cli.py (the analytic toy env, so
compile times stay small; the persistent compilation cache is shared between the processes).
Also: truncated/edited/mismatched checkpoints are refused with one line and nothing is
modified, the NaN guard's quantity names, SIGTERM checkpoints and flushes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest

jax = pytest.importorskip("jax")

from reppo_common import checkpoints as C  # noqa: E402
from reppo_common import cli  # noqa: E402
from reppo_common.errors import UserError  # noqa: E402
from reppo_common.registry import REGISTRY  # noqa: E402
from reppo_common.runs import RunDir  # noqa: E402
from reppo_jax import checkpoint as CK  # noqa: E402
from reppo_jax.envs.toy import make_toy_env  # noqa: E402
from reppo_jax.train import make_trainer  # noqa: E402
from spec.config import ReppoConfig, apply_overrides  # noqa: E402
from spec.presets import preset_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy_cli import TOY_SPEC  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parent / "toy_cli.py"
STEPS_PER_ITER = 64  # tiny preset: 8 envs x 8 steps
from reppo_common.driver import TIMING_KEYS as TIMING  # noqa: E402

# CLI run: 400 iterations, eval every 100, checkpoint every 40 (long enough to kill mid-run)
CLI_ARGS = ["--env", "toy/Bandit", "--preset", "tiny", "--steps", str(400 * STEPS_PER_ITER),
            "--no-progress", f"--run.eval_interval={100 * STEPS_PER_ITER}",
            f"--run.checkpoint_interval={40 * STEPS_PER_ITER}"]


def toy_config(iters: int = 12, **extra) -> ReppoConfig:
    """The CLI's config (same iteration program, so the compile cache is shared)."""
    over = {"env.name": "toy/Bandit", "rollout.total_env_steps": iters * STEPS_PER_ITER,
            "run.eval_interval": 4 * STEPS_PER_ITER, "run.checkpoint_interval": 2 * STEPS_PER_ITER,
            "run.keep_checkpoints": 100}
    over.update(extra)
    return apply_overrides(preset_config("tiny"), over)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def reppo_toy(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DRIVER), *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl records without the timing fields."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if k not in TIMING})
    return out


def digest_tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def wait_for_manifest(run_dir: Path, proc: subprocess.Popen, timeout: float = 900) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if list((run_dir / "checkpoints").glob("state_*.json")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its first checkpoint: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


# --------------------------------------------------------------------------------------------
# The NaN guard's quantity names (the guard stopping a run: tests/ports/test_resume.py)
# --------------------------------------------------------------------------------------------


def test_guard_names_params_and_order():
    names = CK.guard_names(("train/q", "train/critic_loss", "rollout/reward"))
    assert names[:3] == ("rollout/reward", "train/critic_loss", "train/q")
    assert names[3:] == ("params/critic", "params/actor", "params/log_alpha", "params/log_beta",
                         "params/obs_norm", "params/value", "optimizer_state")
    import numpy as np

    flags = np.ones(len(names), bool)
    assert CK.first_nonfinite(["train/q", "train/critic_loss", "rollout/reward"], flags) is None
    flags[4] = False
    assert CK.first_nonfinite(["train/q", "train/critic_loss", "rollout/reward"],
                              flags) == "params/actor"


class _GuardCarry(NamedTuple):
    """A carry for a toy iteration that returns ``info`` unchanged."""

    agent: Any
    info: dict


@pytest.mark.parametrize("value_net", [False, True])
def test_guard_flags_name_each_nonfinite_quantity(value_net):
    """The jitted guard's flags (one isfinite over all groups at once) against a per-array
    check: a NaN or inf planted in any one array of the agent state or the info clears exactly
    the flag of its group; integer arrays and absent groups count as finite."""
    import numpy as np

    from reppo_jax import agent as A
    from reppo_jax.normalization import running_stats_init

    f32 = np.float32
    nets = lambda k: {"w": np.full((3, 2), k, f32), "b": np.zeros(2, f32)}  # noqa: E731
    agent = A.AgentState(
        actor=nets(1), critic={"enc": nets(2), "head": nets(3)}, log_alpha=f32(0.1),
        log_beta=f32(0.2), actor_opt=({"count": np.int32(4)}, {"mu": nets(4)}),
        critic_opt=({"mu": nets(5)},), mult_opt=({"nu": np.ones(2, f32)},),
        obs_stats=running_stats_init((3,)),
        value=nets(6) if value_net else None, value_opt=({"mu": nets(7)},) if value_net else None)
    info = {"train/critic_loss": f32(1.0), "rollout/reward": f32(0.5),
            "rollout/episodes": np.int32(2), "train/vector": np.ones(3, f32)}
    names = CK.guard_names(tuple(info))
    guarded = jax.jit(CK.guard_iteration(lambda c: (c, dict(c.info))))

    def flags_of(agent, info):
        return np.asarray(guarded(_GuardCarry(agent, info))[1][CK.GUARD_KEY])

    assert flags_of(agent, info).tolist() == [True] * len(names)
    leaves, treedef = jax.tree_util.tree_flatten_with_path((agent, info))
    group = {"actor": "params/actor", "critic": "params/critic", "log_alpha": "params/log_alpha",
             "log_beta": "params/log_beta", "obs_stats": "params/obs_norm",
             "value": "params/value", "actor_opt": "optimizer_state",
             "critic_opt": "optimizer_state", "mult_opt": "optimizer_state",
             "value_opt": "optimizer_state"}
    checked = 0
    for i, (path, leaf) in enumerate(leaves):
        if not np.issubdtype(np.asarray(leaf).dtype, np.floating):
            continue
        top = path[1]
        name = getattr(top, "key", None) or group[getattr(top, "name", None)]
        for bad in (np.nan, np.inf):
            planted = np.array(leaf, copy=True)
            planted.reshape(-1)[-1] = bad
            new = [planted if j == i else x for j, (_, x) in enumerate(leaves)]
            flags = flags_of(*jax.tree_util.tree_unflatten(treedef, new))
            assert [n for n, f in zip(names, flags) if not f] == [name], (path, bad)
            checked += 1
    assert checked == 2 * (16 + 3 + (4 if value_net else 0))


# --------------------------------------------------------------------------------------------
# Refusing corrupt / mismatched checkpoints (no iteration is compiled here)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def toy_registered(monkeypatch):
    """toy/Bandit in this process's env registry for the duration of one test."""
    monkeypatch.setitem(REGISTRY, TOY_SPEC.full_name, TOY_SPEC)


@pytest.fixture
def init_ckpt(tmp_path, toy_registered):
    """A run directory (config.json, metrics.jsonl) with one checkpoint of the initial state."""
    cfg = toy_config()
    run = RunDir.create(tmp_path / "run", cfg, {"backend": "jax"})
    (run.path / "metrics.jsonl").write_text('{"kind": "train", "env_steps": 64, "wall_s": 1.0}\n')
    trainer = make_trainer(cfg)
    carry = trainer.init(cfg.run.seed)
    info = CK.save_state(run.path, cfg, carry, CK.eval_key_init(cfg.run.seed), iteration=1,
                         env_steps=STEPS_PER_ITER, wall_s=1.5, eval_return=None,
                         best_eval_return=None, last_eval={})
    return run.path, cfg, info


def _check(run_dir, cfg, env=None):
    trainer = make_trainer(cfg, env, None if env is None else make_toy_env(cfg.run.eval_episodes))
    return CK.check_resume(run_dir, cfg, trainer)


def test_valid_checkpoint_restores_exact_arrays(init_ckpt):
    run_dir, cfg, info = init_ckpt
    got, tree = _check(run_dir, cfg)
    assert got.env_steps == STEPS_PER_ITER and got.wall_s == 1.5
    again = CK.tree_to_arrays(tree)
    for k, v in C.load_state_arrays(info).items():
        assert (again[k] == v).all() and again[k].dtype == v.dtype, k


def test_refuses_truncated_state_and_manifest(init_ckpt):
    run_dir, cfg, info = init_ckpt
    data = info.params_path.read_bytes()
    info.params_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"params file .* is truncated or corrupt"):
        _check(run_dir, cfg)
    text = info.manifest_path.read_text()
    info.manifest_path.write_text(text[: len(text) // 2])
    with pytest.raises(UserError, match="manifest .* is corrupt or truncated"):
        _check(run_dir, cfg)


def _rewrite_manifest(info, **changes):
    m = dict(info.manifest)
    m.update(changes)
    C.write_manifest(info.manifest_path, m)


def test_refuses_other_config_schema_version(init_ckpt):
    run_dir, cfg, info = init_ckpt
    _rewrite_manifest(info, config_schema_version=0)
    with pytest.raises(UserError, match="config schema_version 0"):
        _check(run_dir, cfg)


def test_refuses_edited_manifest(init_ckpt):
    run_dir, cfg, info = init_ckpt
    m = json.loads(info.manifest_path.read_text())
    m["iteration"] = 5  # hand edit without the checksum
    info.manifest_path.write_text(json.dumps(m))
    with pytest.raises(UserError, match="fails its checksum"):
        _check(run_dir, cfg)


def test_refuses_other_obs_shape(init_ckpt):
    run_dir, cfg, _ = init_ckpt
    with pytest.raises(UserError, match=r"carry/agent/.* with shape \(2.*expects.*\(3"):
        _check(run_dir, cfg, env=make_toy_env(8, obs_dim=3))


def test_cli_refusal_modifies_nothing(init_ckpt, capsys):
    run_dir, cfg, info = init_ckpt
    data = bytearray(info.state_path.read_bytes())
    data[100] ^= 0x01
    info.state_path.write_bytes(bytes(data))
    # a metrics line after the checkpoint that a successful resume would drop
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "env_steps": 128, "wall_s": 2.0}\n')
    before = digest_tree(run_dir)
    rc = cli.main(["train", "--resume", str(run_dir), "--no-progress", "--steps", "2048"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: checkpoint state file") and "sha256" in err[-1]
    assert digest_tree(run_dir) == before


def test_cli_refuses_run_without_full_checkpoint(tmp_path, toy_registered, capsys):
    """Parameter files without a full-state checkpoint (an older reppo) are not resumable."""
    run = RunDir.create(tmp_path / "run", toy_config(), {"backend": "jax"})
    run.lock.release()
    (run.checkpoints_dir / "params_000000000064.npz").write_bytes(b"old")
    assert cli.main(["train", "--resume", str(run.path), "--no-progress"]) == 2
    assert "no resumable checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# The real CLI in subprocesses: SIGKILL + resume, SIGINT
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory):
    """The uninterrupted CLI run every interrupted run is compared with."""
    run_dir = tmp_path_factory.mktemp("cli") / "ref"
    p = reppo_toy("train", *CLI_ARGS, "--run-dir", str(run_dir))
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir


def _interrupt(run_dir: Path, sig: int, delay: float = 0.0) -> subprocess.CompletedProcess:
    """Start the CLI run, send ``sig`` ``delay`` seconds after its first checkpoint."""
    proc = subprocess.Popen([sys.executable, str(DRIVER), "train", *CLI_ARGS, "--run-dir",
                             str(run_dir)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_manifest(run_dir, proc)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_sigkill_then_resume_gives_identical_metrics(cli_reference, tmp_path):
    run_dir = tmp_path / "killed"
    killed = _interrupt(run_dir, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    last = C.latest_checkpoint(run_dir / "checkpoints")
    total = 400 * STEPS_PER_ITER
    assert last.env_steps < total, "the run finished before it was killed"
    p = reppo_toy("train", "--resume", str(run_dir), "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"resuming from {last.manifest_path.name}" in p.stderr
    ref, got = metrics(cli_reference), metrics(run_dir)
    assert got == ref  # identical records, in order, no duplicates
    # the clock continues from the checkpoint's wall time
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    after = [r for r in recs if r["env_steps"] > last.env_steps]
    assert after[0]["wall_s"] >= last.wall_s
    assert all(a["wall_s"] <= b["wall_s"] for a, b in zip(recs, recs[1:]))


def test_sigterm_finishes_iteration_checkpoints_and_resumes(cli_reference, tmp_path):
    """SIGTERM (timeout, SLURM, Kubernetes; SIGUSR1 and Ctrl-C take the same path, see
    tests/common/test_faults.py) at a random point after the first checkpoint: the iteration is
    finished, a checkpoint written, the metrics flushed, exit status 75; the resumed run is
    exactly the uninterrupted one."""
    import random

    sig = signal.SIGTERM
    run_dir = tmp_path / "interrupted"
    p = _interrupt(run_dir, sig, delay=random.uniform(0.0, 0.5))
    assert p.returncode == 75, (p.returncode, p.stderr[-3000:])
    name = signal.Signals(sig).name
    assert f"stopped: {name}" in p.stdout and "--resume" in p.stdout
    assert f"reppo: {name}: stopping after this iteration" in p.stderr
    assert "Traceback" not in p.stderr
    recs = metrics(run_dir)
    last = C.latest_checkpoint(run_dir / "checkpoints")
    assert recs[-1]["env_steps"] == last.env_steps < 400 * STEPS_PER_ITER
    C.verify_files(last)
    p = reppo_toy("train", "--resume", str(run_dir), "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    assert metrics(run_dir) == metrics(cli_reference)


@pytest.mark.slow
@pytest.mark.long
def test_sigkill_resume_exact_on_cartpole(tmp_path):
    """The same property with the real simulator (MJX CartpoleBalance) and the real CLI."""
    args = ["--env", "dmc/CartpoleBalance", "--preset", "tiny", "--steps", str(60 * 64),
            "--no-progress", "--run.eval_interval=1280", "--run.checkpoint_interval=640"]
    cmd = [sys.executable, "-m", "reppo_common.cli", "train", *args]
    ref = tmp_path / "ref"
    p = subprocess.run(cmd + ["--run-dir", str(ref)], cwd=ROOT, env=_env(), capture_output=True,
                       text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(cmd + ["--run-dir", str(run_dir)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_manifest(run_dir, proc, timeout=1500)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert C.latest_checkpoint(run_dir / "checkpoints").env_steps < 60 * 64
    p = subprocess.run([sys.executable, "-m", "reppo_common.cli", "train", "--resume",
                        str(run_dir), "--no-progress"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    assert metrics(run_dir) == metrics(ref)
