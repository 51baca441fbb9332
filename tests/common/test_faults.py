"""Fault injection for ``reppo train|eval``: signals at any point, concurrent writers, disk full,
immutable files, failed starts, corrupt or mismatched inputs, missing extras.

Most cases drive ``reppo_common.cli.main`` in this process with a fake backend (so no framework
compiles and each case takes milliseconds) whose training loop follows the shared driver's
contract: iterations of 64 env steps, ``hooks.should_stop`` checked after each, a checkpoint
file written at a stop and at the end. The real JAX backend goes through the same CLI code; its
SIGTERM/SIGKILL exactness is tested in tests/jax/test_jax_resume.py. Every failure must be one
``error:`` line with the documented exit status (reppo_common.errors), and nothing in the run
directory may be lost or duplicated.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

from reppo_common import cli
from reppo_common import runs as R
from reppo_common.curves import load_run
from reppo_common.errors import (EXIT_ABORTED, EXIT_DIVERGED, EXIT_STOPPED, EXIT_USAGE,
                                 TrainingDiverged, UserError)
from reppo_common.runs import RunDir, RunLock
from spec.backend import TrainResult
from spec.presets import preset_config

ROOT = Path(__file__).resolve().parents[2]
PER_ITER = 64  # tiny preset: 8 envs x 8 steps


class FaultBackend:
    """A backend whose training loop calls ``fault(iteration)`` after each iteration's metrics
    (send a signal, raise an error, ...)."""

    name = "jax"

    def __init__(self) -> None:
        self.fault = lambda it: None
        self.calls: list[tuple] = []
        self.resume_info: object | None = None

    def supports_env(self, env_name: str) -> bool:
        return True

    def check_resume(self, config, run_dir):
        return self.resume_info

    def train(self, config, run_dir, hooks, resume=False):
        self.calls.append(("train", config, resume))
        total = config.rollout.total_env_steps // PER_ITER
        start = self.resume_info.iteration if resume and self.resume_info else 0
        it = start
        for it in range(start + 1, total + 1):
            hooks.on_train_metrics({"env_steps": it * PER_ITER, "iteration": it})
            self.fault(it)
            if hooks.should_stop() or it == total:
                (Path(run_dir) / "checkpoints" / f"state_{it * PER_ITER:012d}.json").write_text("{}")
                break
        return TrainResult(env_steps=it * PER_ITER, iterations=it)

    def evaluate(self, config, run_dir, episodes, checkpoint=None):
        self.calls.append(("eval", episodes))
        return {"eval/return_mean": 1.0}


@pytest.fixture
def fb(monkeypatch):
    backend = FaultBackend()
    monkeypatch.setattr(cli, "load_backend", lambda name: backend)
    return backend


def train(run_dir: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "tiny", "--run-dir", str(run_dir), "--no-progress", *extra]


def one_error(capsys, *needles: str) -> str:
    err = [l for l in capsys.readouterr().err.strip().splitlines()
           if l.startswith("error:") or "Traceback" in l]
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def metrics_steps(run_dir: Path) -> list[int]:
    return [json.loads(l)["env_steps"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1],
                         ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize("at", [1, 3, 31])
def test_stop_signal_checkpoints_flushes_and_exits_75(fb, tmp_path, capsys, sig, at):
    fb.fault = lambda it: os.kill(os.getpid(), sig) if it == at else None
    before = signal.getsignal(sig)
    rc = cli.main(train(tmp_path / "r"))
    out = capsys.readouterr()
    assert rc == EXIT_STOPPED == 75, out.err
    name = signal.Signals(sig).name
    assert f"stopped: {name} after {at * PER_ITER:,} env steps" in out.out
    assert f"reppo train --resume {tmp_path / 'r'}" in out.out
    # the iteration that was running finished, its metrics are on disk, its checkpoint written
    assert metrics_steps(tmp_path / "r") == [PER_ITER * i for i in range(1, at + 1)]
    assert (tmp_path / "r" / "checkpoints" / f"state_{at * PER_ITER:012d}.json").is_file()
    assert signal.getsignal(sig) == before  # handlers restored
    # the lock went with the process' run: a resume can start at once
    RunLock(tmp_path / "r").acquire()


def test_signal_in_last_iteration_counts_as_finished(fb, tmp_path, capsys):
    fb.fault = lambda it: os.kill(os.getpid(), signal.SIGTERM) if it == 32 else None
    assert cli.main(train(tmp_path / "r")) == 0
    assert "done: 2,048 env steps" in capsys.readouterr().out


def test_repeated_sigterm_is_one_stop(fb, tmp_path, capfd):
    def fault(it):
        if it == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
    fb.fault = fault
    assert cli.main(train(tmp_path / "r")) == EXIT_STOPPED
    assert capfd.readouterr().err.count("reppo: SIGTERM: stopping after this iteration") == 1


def test_second_ctrl_c_aborts_with_130(fb, tmp_path, capsys):
    def fault(it):
        if it == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    fb.fault = fault
    assert cli.main(train(tmp_path / "r")) == EXIT_ABORTED == 130
    assert "interrupted" in capsys.readouterr().err


def test_signal_during_setup_stops_before_training(fb, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fb, "supports_env",
                        lambda name: os.kill(os.getpid(), signal.SIGTERM) or True)
    assert cli.main(train(tmp_path / "r")) == EXIT_STOPPED
    assert "before training started" in capsys.readouterr().out
    assert not [c for c in fb.calls if c[0] == "train"]
    # nothing was trained: the same command starts the run
    monkeypatch.setattr(fb, "supports_env", lambda name: True)
    assert cli.main(train(tmp_path / "r")) == 0


# ---- exit statuses ------------------------------------------------------------------------


def test_non_finite_guard_exits_3(fb, tmp_path, capsys):
    def fault(it):
        if it == 2:
            raise TrainingDiverged("non-finite train/critic_loss at iteration 2")
    fb.fault = fault
    assert cli.main(train(tmp_path / "r")) == EXIT_DIVERGED == 3
    one_error(capsys, "non-finite train/critic_loss")


# ---- one writer per run directory ---------------------------------------------------------


def test_second_writer_refused_naming_holder(fb, tmp_path, capsys):
    assert cli.main(train(tmp_path / "r", "--steps", "128")) == 0
    capsys.readouterr()
    holder = RunLock(tmp_path / "r")
    holder.acquire()  # another process (a second open file description) holds the run
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert cli.main(["train", "--resume", str(tmp_path / "r"), "--no-progress",
                     "--steps", "256"]) == EXIT_USAGE
    one_error(capsys, "in use by another reppo process", f"PID {os.getpid()} on host")
    assert cli.main(train(tmp_path / "r")) == EXIT_USAGE
    one_error(capsys, "in use by another reppo process")
    after = {p.name: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert after == before  # nothing written by the refused writers
    # reppo eval only reads: no lock needed
    assert cli.main(["eval", "--run-dir", str(tmp_path / "r")]) == 0
    holder.release()
    assert cli.main(["train", "--resume", str(tmp_path / "r"), "--no-progress",
                     "--steps", "256"]) == 0


def test_lock_across_processes_and_released_by_sigkill(tmp_path):
    """A real second process is refused with the holder's PID; SIGKILL leaves no stale lock."""
    (tmp_path / "r").mkdir()
    code = ("import sys, time; from reppo_common.runs import RunLock; "
            "l = RunLock(sys.argv[1]); l.acquire(); print('locked', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "r")], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"PID {proc.pid} on host"):
            RunLock(tmp_path / "r").acquire()
        proc.kill()
        proc.wait(timeout=30)
        lock = RunLock(tmp_path / "r")
        lock.acquire()  # the kernel dropped the dead holder's lock
        lock.release()
    finally:
        if proc.poll() is None:
            proc.kill()


# ---- failed starts ------------------------------------------------------------------------


def test_failed_start_can_be_started_again(fb, tmp_path, capsys):
    def fault(it):
        if it == 2:
            raise UserError("simulated failure before the first checkpoint")
    fb.fault = fault
    run_dir = tmp_path / "r"
    assert cli.main(train(run_dir, "--seed", "3")) == EXIT_USAGE
    one_error(capsys, "simulated failure")
    assert not any((run_dir / "checkpoints").iterdir()) and metrics_steps(run_dir) == [64, 128]
    fb.fault = lambda it: None
    # another config is still refused
    assert cli.main(train(run_dir, "--seed", "4")) == EXIT_USAGE
    one_error(capsys, "stopped before its first checkpoint with a different config")
    # the same command starts it again; the old metrics are not kept twice
    assert cli.main(train(run_dir, "--seed", "3")) == 0
    assert "starting it again" in capsys.readouterr().err
    assert metrics_steps(run_dir) == [PER_ITER * i for i in range(1, 33)]


def test_resume_of_failed_start_starts_from_the_beginning(fb, tmp_path, capsys):
    fb.fault = lambda it: (_ for _ in ()).throw(UserError("boom")) if it == 1 else None
    run_dir = tmp_path / "r"
    assert cli.main(train(run_dir)) == EXIT_USAGE
    fb.fault = lambda it: None
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert "starting it from the beginning" in capsys.readouterr().err
    assert fb.calls[-1][2] is False  # trained from iteration 0
    assert metrics_steps(run_dir) == [PER_ITER * i for i in range(1, 33)]


# ---- disk full, immutable and unwritable files --------------------------------------------


def test_metrics_disk_full_is_one_line(fb, tmp_path, capsys, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    init = R.MetricsWriter.__init__

    def on_full_disk(self, path, wall_offset=None):
        init(self, path, wall_offset)
        self._fh.close()
        self._fh = open("/dev/full", "ab", buffering=0)  # every write: ENOSPC

    monkeypatch.setattr(R.MetricsWriter, "__init__", on_full_disk)
    assert cli.main(train(tmp_path / "r")) == EXIT_USAGE
    one_error(capsys, "cannot write", "metrics.jsonl", "No space left on device")


def test_checkpoint_disk_full_is_one_line(fb, tmp_path, capsys):
    def fault(it):
        if it == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "ckpt.npz"))
    fb.fault = fault
    assert cli.main(train(tmp_path / "r")) == EXIT_USAGE
    one_error(capsys, "ckpt.npz", "No space left on device")


@pytest.fixture
def immutable(tmp_path):
    """``chattr +i`` a file (undone at the end); skips where the filesystem cannot."""
    done: list[Path] = []

    def make(path: Path) -> None:
        r = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"chattr +i not supported here: {r.stderr.decode().strip()}")
        done.append(path)

    yield make
    for p in done:
        subprocess.run(["chattr", "-i", str(p)], capture_output=True)


def test_immutable_metrics_and_config(fb, tmp_path, capsys, immutable):
    run_dir = tmp_path / "r"
    assert cli.main(train(run_dir, "--steps", "128")) == 0
    capsys.readouterr()
    immutable(run_dir / "metrics.jsonl")
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress", "--steps", "256"]) == 2
    one_error(capsys, "metrics.jsonl")
    subprocess.run(["chattr", "-i", str(run_dir / "metrics.jsonl")], check=True)
    assert json.loads((run_dir / "config.json").read_text())["rollout"]["total_env_steps"] == 128
    immutable(run_dir / "config.json")
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress", "--steps", "256"]) == 2
    one_error(capsys, "config.json")
    assert metrics_steps(run_dir) == [64, 128]  # nothing changed by the refused resumes


# ---- resume inputs ------------------------------------------------------------------------


def _resume_info(steps: int) -> object:
    return types.SimpleNamespace(env_steps=steps, iteration=steps // PER_ITER, wall_s=1.0,
                                 manifest_path=Path(f"state_{steps:012d}.json"))


def test_resume_steps_below_done_refused_and_config_kept(fb, tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert cli.main(train(run_dir, "--steps", "1024")) == 0
    cfg_before = (run_dir / "config.json").read_text()
    fb.resume_info = _resume_info(1024)
    assert cli.main(["train", "--resume", str(run_dir), "--steps", "512"]) == EXIT_USAGE
    one_error(capsys, "below the 1,024 env steps")
    assert (run_dir / "config.json").read_text() == cfg_before
    # the same total is "nothing left to do", a larger one continues; --log jsonl is accepted
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress", "--log", "jsonl",
                     "--steps", "2048"]) == 0
    assert metrics_steps(run_dir) == [PER_ITER * i for i in range(1, 33)]


@pytest.mark.parametrize("content,needle", [
    ('{"kind": "train", "env_steps": 64}\n{oops\n{"kind": "train", "env_steps": 128}\n',
     "line 2 is not a JSON object"),
    ('{"kind": "train", "env_steps": 64}\n\udcff\n{"kind": "train", "env_steps": 128}\n',
     "not UTF-8"),
])
def test_resume_with_malformed_metrics(fb, tmp_path, capsys, content, needle):
    run_dir = tmp_path / "r"
    assert cli.main(train(run_dir, "--steps", "128")) == 0
    capsys.readouterr()
    (run_dir / "metrics.jsonl").write_bytes(content.encode("utf-8", "surrogateescape"))
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress",
                     "--steps", "256"]) == EXIT_USAGE
    one_error(capsys, needle)


def test_resume_with_metrics_not_a_regular_file(fb, tmp_path, capsys):
    """A metrics.jsonl replaced by a device (reads never end) or a directory is refused."""
    run_dir = tmp_path / "r"
    assert cli.main(train(run_dir, "--steps", "128")) == 0
    capsys.readouterr()
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "metrics.jsonl").symlink_to("/dev/zero")
    assert cli.main(["train", "--resume", str(run_dir), "--no-progress"]) == EXIT_USAGE
    one_error(capsys, "metrics.jsonl is not a regular file")


def test_resume_with_malformed_config(fb, tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert cli.main(train(run_dir, "--steps", "128")) == 0
    capsys.readouterr()
    (run_dir / "config.json").write_text('{"rollout": {"num_envs": "many"}}')
    assert cli.main(["train", "--resume", str(run_dir)]) == EXIT_USAGE
    one_error(capsys, "config.json")


def test_resume_target_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert cli.main(["train", "--resume", str(tmp_path / "f")]) == EXIT_USAGE
    one_error(capsys, "is a file, not a run directory")


def test_steps_not_a_multiple_is_said(fb, tmp_path, capsys):
    assert cli.main(train(tmp_path / "r", "--steps", "12000")) == 0
    err = capsys.readouterr().err
    assert "not a multiple of the 64 env steps" in err and "training 11,968 (187 iterations)" in err


# ---- missing extras -----------------------------------------------------------------------


def test_missing_torch_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" now fails
    assert cli.main(train(tmp_path / "r", "--backend", "torch")) == EXIT_USAGE
    one_error(capsys, "needs the torch extra", "pip install")
    assert not (tmp_path / "r").exists()  # checked before the run directory is made
    run = RunDir.create(tmp_path / "e", preset_config("tiny"), {"backend": "torch"})
    run.lock.release()
    assert cli.main(["eval", "--run-dir", str(run.path)]) == EXIT_USAGE
    one_error(capsys, "needs the torch extra")


# ---- the shared metrics reader (plot / aggregate) -----------------------------------------


@pytest.mark.parametrize("steps,needle", [([64, 128, 128], "duplicate eval line"),
                                          ([64, 192, 128], "out-of-order eval line")])
def test_curves_refuse_duplicate_and_unordered_eval_lines(tmp_path, steps, needle):
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "eval", "env_steps": s, "eval/return_mean": 5000.0 if i == 2 else 1.0})
        + "\n" for i, s in enumerate(steps)))
    with pytest.raises(UserError, match=needle):
        load_run(tmp_path)
    p = subprocess.run([sys.executable, "-m", "reppo_common.cli", "aggregate", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr


# ---- --env.name is --env by another spelling ----------------------------------------------


@pytest.mark.parametrize("flags", [["--env.name=dmc/CheetahRun"],
                                   ["--env", "dmc/CheetahRun", "--env.name=dmc/cheetahrun"]])
def test_env_name_override_is_the_env(fb, tmp_path, capsys, flags):
    assert cli.main(train(tmp_path / "r", "--steps", "64", *flags)) == 0
    assert "training dmc/CheetahRun" in capsys.readouterr().err
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["env"] == "dmc/CheetahRun"
    assert RunDir(tmp_path / "r").load_config().env.name == "dmc/CheetahRun"
    assert fb.calls[-1][1].env.name == "dmc/CheetahRun"


def test_closed_output_pipe_is_a_quiet_exit():
    """`reppo envs | head -1`: the reader has gone when reppo writes (here: the read end is
    closed before the process starts, so the first write fails); reppo stops with the SIGPIPE
    status and prints no traceback (also none while Python flushes stdout at exit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        p = subprocess.run([sys.executable, "-m", "reppo_common.cli", "envs"], cwd=ROOT,
                           stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    err = p.stderr.decode()
    assert p.returncode == cli.EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
