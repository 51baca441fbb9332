"""Run directory layout and the metrics file.

A run directory holds::

    config.json       the full ReppoConfig (spec.config JSON, with schema_version)
    meta.json         backend, env, reppo version, creation time, command line
    metrics.jsonl     one JSON object per line: env_steps, wall_s, and train/* or eval/* keys
    checkpoints/      written by the backend (latest ``keep_checkpoints`` kept)

The default location is ``runs/<suite>_<Name>/<backend>-seed<seed>-<YYYYmmdd-HHMMSS>``.
"""

import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from spec.config import ConfigError, ReppoConfig

from reppo_common.errors import UserError

__all__ = ["RunDir", "MetricsWriter", "MetricsRecords", "read_metrics", "default_run_dir"]

CONFIG_FILE = "config.json"
META_FILE = "meta.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"


def default_run_dir(env_name: str, backend: str, seed: int, root: str | Path = "runs") -> Path:
    """``runs/<env with / as _>/<backend>-seed<seed>-<timestamp>`` (not created)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / env_name.replace("/", "_") / f"{backend}-seed{seed}-{stamp}"


class RunDir:
    """Paths of one run directory plus creating/opening it with clear errors."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

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
        """Make a fresh run directory and write config.json and meta.json.

        Refuses an existing non-empty directory (resume it with ``open_existing`` instead);
        an unwritable location raises UserError naming the path and the OS reason."""
        run = cls(path)
        if run.path.exists():
            if not run.path.is_dir():
                raise UserError(f"run directory {str(run.path)!r} exists and is not a directory")
            if any(run.path.iterdir()):
                raise UserError(
                    f"run directory {str(run.path)!r} already exists and is not empty; continue "
                    f"it with --resume {run.path} or choose another --run-dir"
                )
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            run.checkpoints_dir.mkdir(exist_ok=True)
            _atomic_write(run.config_path, config.to_json() + "\n")
            meta_all = {"created": datetime.now().isoformat(timespec="seconds"),
                        "argv": sys.argv, **(dict(meta) if meta else {})}
            _atomic_write(run.meta_path, json.dumps(meta_all, indent=2, default=str) + "\n")
        except OSError as e:
            raise UserError(
                f"cannot write run directory {str(run.path)!r}: {e.strerror or e}"
            ) from None
        return run

    @classmethod
    def open_existing(cls, path: str | Path) -> "RunDir":
        """An existing run directory (for --resume and eval); it must hold config.json."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"run directory {str(run.path)!r} does not exist")
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
    lines = p.read_text().splitlines()
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
    """Appends one JSON object per line to metrics.jsonl, flushing each line.

    Every record gets ``wall_s``: seconds since the run started. On resume the clock continues
    from the last ``wall_s`` already in the file, and a truncated last line is cut off first so
    the file stays one object per line.
    """

    def __init__(self, path: str | Path, wall_offset: float | None = None) -> None:
        self.path = Path(path)
        offset = 0.0
        if self.path.exists():
            self._repair_tail()
            for rec in reversed(read_metrics(self.path)):
                if isinstance(rec.get("wall_s"), (int, float)):
                    offset = float(rec["wall_s"])
                    break
        if wall_offset is not None:  # resume: continue from the checkpoint's wall time
            offset = float(wall_offset)
        self._offset = offset
        self._t0 = time.monotonic()
        try:
            self._fh = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror or e}") from None

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
        try:
            self._fh.write(json.dumps(out, default=_json_default, allow_nan=False) + "\n")
            self._fh.flush()
        except OSError as e:
            raise UserError(f"cannot write {self.path}: {e.strerror or e} (disk full or run "
                            f"directory not writable?)") from None
        return out

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
