"""Run directory layout and the metrics file.

A run directory holds::

    config.json       the full ReppoConfig (spec.config JSON, with schema_version)
    meta.json         backend, env, reppo version, creation time, command line
    metrics.jsonl     one JSON object per line: env_steps, wall_s, and train/* or eval/* keys
    checkpoints/      written by the backend (latest ``keep_checkpoints`` kept)
    .lock             held (``fcntl.flock``) by the one process training the run; it names
                      that process (PID and host) for a second one that is refused

One writer per run directory: ``reppo train`` (fresh or ``--resume``) holds an exclusive
``flock`` on ``.lock`` for its whole life; the OS drops it when the process ends however it
ends (SIGKILL included), so a lock is never stale. ``reppo eval`` only reads and takes no lock.

The default location is ``runs/<suite>_<Name>/<backend>-seed<seed>-<YYYYmmdd-HHMMSS>``.
"""

import errno
import fcntl
import json
import math
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from spec.config import ConfigError, ReppoConfig

from reppo_common.errors import UserError

__all__ = ["RunDir", "RunLock", "MetricsWriter", "MetricsRecords", "read_metrics",
           "default_run_dir"]

CONFIG_FILE = "config.json"
META_FILE = "meta.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
LOCK_FILE = ".lock"


class RunLock:
    """The exclusive writer lock of one run directory: ``fcntl.flock`` on ``<run>/.lock``.

    The lock file is never deleted (deleting it would let two processes lock two different
    files); the kernel releases the lock when the holder closes it or dies, so a SIGKILLed run
    leaves nothing to clean up. The holder writes ``<pid> <host>`` into the file so that a
    refused process can name it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fh: Any = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> None:
        """Take the lock or raise UserError naming the holder (never waits)."""
        if self._fh is not None:
            return
        try:
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot lock run directory {str(self.path.parent)!r}: "
                            f"{e.strerror or e}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.seek(0)
            holder = fh.read().split()
            fh.close()
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(f"cannot lock {self.path}: {e.strerror or e}") from None
            who = (f"PID {holder[0]} on host {holder[1]}" if len(holder) >= 2
                   else "a process that is starting")
            raise UserError(
                f"run directory {str(self.path.parent)!r} is in use by another reppo process "
                f"({who}); wait for it to end or stop it (kill -TERM {holder[0] if holder else 'PID'}"
                f" writes a checkpoint first), or choose another --run-dir") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} {socket.gethostname()}\n")
            fh.flush()
        except OSError:
            pass  # the lock itself is held; the holder note is only informative
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None


def default_run_dir(env_name: str, backend: str, seed: int, root: str | Path = "runs") -> Path:
    """``runs/<env with / as _>/<backend>-seed<seed>-<timestamp>`` (not created)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / env_name.replace("/", "_") / f"{backend}-seed{seed}-{stamp}"


class RunDir:
    """Paths of one run directory plus creating/opening it with clear errors."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = RunLock(self.path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def create(
        cls, path: str | Path, config: ReppoConfig, meta: Mapping[str, Any] | None = None
    ) -> "RunDir":
        """Make a fresh run directory, take its writer lock and write config.json and meta.json.

        Refuses an existing non-empty directory (resume it with ``open_existing`` instead),
        except a failed start: a run directory without any checkpoint whose config.json equals
        ``config`` is started again (its metrics are cleared); with a different config it is
        refused. An unwritable location raises UserError naming the path and the OS reason.
        The lock stays held until :meth:`RunLock.release` or the process ends."""
        run = cls(path)
        if not str(path).strip():
            raise UserError("--run-dir is empty; give a directory path")
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"run directory {str(run.path)!r} exists and is not a directory")
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(
                f"cannot write run directory {str(run.path)!r}: {e.strerror or e}"
            ) from None
        run.lock.acquire()
        try:
            retry = run._check_fresh(config)
            if retry:
                from reppo_common.checkpoints import remove_temp_files, rewind_metrics

                rewind_metrics(run.metrics_path, 0)
                remove_temp_files(run.checkpoints_dir)
                print(f"note: {run.path} holds a start that stopped before its first "
                      f"checkpoint with the same config; starting it again", file=sys.stderr)
            run.checkpoints_dir.mkdir(exist_ok=True)
            _atomic_write(run.config_path, config.to_json() + "\n")
            meta_all = {"created": datetime.now().isoformat(timespec="seconds"),
                        "argv": sys.argv, **(dict(meta) if meta else {})}
            _atomic_write(run.meta_path, json.dumps(meta_all, indent=2, default=str) + "\n")
        except OSError as e:
            run.lock.release()
            raise UserError(
                f"cannot write run directory {str(run.path)!r}: {e.strerror or e}"
            ) from None
        except BaseException:
            run.lock.release()
            raise
        return run

    def has_checkpoint(self) -> bool:
        """Whether checkpoints/ holds any checkpoint file (committed or not; temp files of a
        killed write do not count)."""
        d = self.checkpoints_dir
        return d.is_dir() and any(not p.name.startswith(".") for p in d.iterdir())

    def _check_fresh(self, config: ReppoConfig) -> bool:
        """For :meth:`create` (lock held): False for an empty directory, True for a failed
        start with this config that may be started again; UserError otherwise."""
        entries = [p for p in self.path.iterdir() if p.name != LOCK_FILE]
        if not entries:
            return False
        resume_hint = (f"continue it with --resume {self.path} or choose another --run-dir")
        if not self.config_path.is_file() or self.has_checkpoint():
            raise UserError(f"run directory {str(self.path)!r} already exists and is not "
                            f"empty; {resume_hint if self.config_path.is_file() else 'choose another --run-dir'}")
        try:
            old = ReppoConfig.from_json(self.config_path.read_text())
        except (OSError, ConfigError, ValueError):
            old = None
        if old != config:
            raise UserError(
                f"run directory {str(self.path)!r} holds a run that stopped before its first "
                f"checkpoint with a different config; start it with the same flags, delete "
                f"it, or choose another --run-dir")
        return True

    @classmethod
    def open_existing(cls, path: str | Path) -> "RunDir":
        """An existing run directory (for --resume and eval); it must hold config.json."""
        run = cls(path)
        if not str(path).strip():
            raise UserError("the run directory path is empty; give a directory path")
        if not run.path.exists():
            raise UserError(f"run directory {str(run.path)!r} does not exist")
        if not run.path.is_dir():
            raise UserError(f"{str(run.path)!r} is a file, not a run directory; pass the "
                            f"directory that holds config.json")
        if not run.config_path.is_file():
            raise UserError(f"{str(run.path)!r} is not a reppo run directory (no {CONFIG_FILE})")
        return run

    def load_config(self) -> ReppoConfig:
        """The run's config; unreadable or invalid -> UserError naming the file."""
        try:
            text = self.config_path.read_text()
        except OSError as e:
            raise UserError(f"cannot read {self.config_path}: {e.strerror or e}") from None
        try:
            return ReppoConfig.from_json(text)
        except ConfigError as e:
            raise UserError(f"{self.config_path}: {e}") from None

    def load_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / jax / torch scalars and arrays
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


class MetricsRecords(list):
    """A list of metric dicts; ``truncated_line`` holds an unparsable last line, if any."""

    truncated_line: str | None = None


def read_metrics(path: str | Path) -> MetricsRecords:
    """Read metrics.jsonl. A truncated/garbled *last* line (a crash mid-write) is skipped and
    reported in ``.truncated_line``; a bad line elsewhere raises UserError with its number."""
    records = MetricsRecords()
    p = Path(path)
    if not p.exists():
        return records
    if not p.is_file():
        raise UserError(f"{p} is not a file")
    try:
        lines = p.read_bytes().decode("utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{p} is not UTF-8 text (byte {e.start}); is it a metrics.jsonl?") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError:
            if i == len(lines) - 1:
                records.truncated_line = line
                break
            raise UserError(f"{p}: line {i + 1} is not a JSON object") from None
        records.append(rec)
    return records


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl; each line goes to the OS at once.

    Every record gets ``wall_s``: seconds since the run started. On resume the clock continues
    from the last ``wall_s`` already in the file, and a truncated last line is cut off first so
    the file stays one object per line. Writes are unbuffered, so a failed write (disk full,
    read-only or immutable file) is one UserError and nothing is left to fail again at close.
    """

    def __init__(self, path: str | Path, wall_offset: float | None = None) -> None:
        self.path = Path(path)
        offset = 0.0
        if self.path.exists() and not self.path.is_file():
            raise UserError(f"{self.path} is not a regular file (a directory, device or pipe); "
                            f"move it away so the run can write its metrics")
        try:
            if self.path.exists():
                self._repair_tail()
                for rec in reversed(read_metrics(self.path)):
                    if isinstance(rec.get("wall_s"), (int, float)):
                        offset = float(rec["wall_s"])
                        break
            self._fh = open(self.path, "ab", buffering=0)
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror or e}") from None
        if wall_offset is not None:  # resume: continue from the checkpoint's wall time
            offset = float(wall_offset)
        self._offset = offset
        self._t0 = time.monotonic()

    def _repair_tail(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)

    @property
    def wall_s(self) -> float:
        return self._offset + (time.monotonic() - self._t0)

    def write(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``record`` plus ``wall_s``; returns what was written."""
        out = dict(record)
        out["wall_s"] = round(self.wall_s, 3)
        for k, v in out.items():  # non-finite floats -> null keeps the file strict JSON
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        data = memoryview((json.dumps(out, default=_json_default, allow_nan=False)
                           + "\n").encode("utf-8"))
        try:
            while data:
                n = self._fh.write(data)
                if not n:
                    raise OSError(errno.EIO, "the write made no progress")
                data = data[n:]
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror or e} (disk full or run "
                            f"directory not writable?)") from None
        return out

    def close(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:
                pass  # unbuffered: nothing unwritten is lost here

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
