"""Framework-neutral full-state checkpoints: files, checksums, manifests, validation, pruning.

A checkpoint at ``env_steps = S`` is three files in ``<run>/checkpoints/``::

    params_<S:012d>.npz   canonical parameters (spec.params; read by `reppo eval` and every
                          backend's import_params), unchanged format
    state_<S:012d>.npz    everything else a backend needs to continue exactly (optimiser states,
                          RNG keys, simulator state, ...) as flat named numpy arrays
    state_<S:012d>.json   the manifest: counters, wall clock, eval returns, config, backend,
                          package versions and the SHA-256 of both .npz files

Every file is written atomically (temp file in the same directory, fsync, ``os.replace``), in
that order; the manifest is written last and is the commit marker: a checkpoint without a
manifest (a kill during writing) does not exist for resuming and is cleaned up later. Loading
verifies the manifest's own checksum and both file checksums before anything is used.

Backends only convert their state to/from flat arrays (see ``reppo_jax.checkpoint``); writing,
listing, pruning (last ``run.keep_checkpoints`` plus the best by eval return) and refusing
mismatched checkpoints with a one-line :class:`UserError` live here so every backend behaves
the same. Nothing here imports jax or torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping

import numpy as np

from reppo_common.errors import UserError

__all__ = [
    "FORMAT", "FORMAT_VERSION", "RESUME_CHANGEABLE", "CheckpointInfo", "sha256_file",
    "atomic_write", "package_versions", "write_checkpoint", "read_manifest", "list_checkpoints",
    "latest_checkpoint", "latest_params_file", "verify_files", "load_state_arrays",
    "check_compatible", "version_notes",
    "find_resume_checkpoint", "prune", "rewind_metrics", "remove_temp_files",
]

FORMAT = "reppo-checkpoint"
FORMAT_VERSION = 1
"""Layout version of the state file + manifest; a different one is refused on load."""

RESUME_CHANGEABLE = frozenset({
    "rollout.total_env_steps", "run.eval_interval", "run.eval_episodes",
    "run.checkpoint_interval", "run.keep_checkpoints", "run.device", "run.devices", "run.log",
    "run.torch_compile",
})
"""Config fields that may differ between a checkpoint and the run resuming it; every other field
must match (it shapes the networks, the data or the update)."""

_MANIFEST_RE = re.compile(r"^state_(\d{12})\.json$")
_FILE_RE = re.compile(r"^(params|state)_(\d{12})\.(npz|json)$")
_TMP_PREFIX = ".tmp-"
_SELF_SUM = "manifest_sha256"


def _file_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give (mkstemp's temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def params_name(env_steps: int) -> str:
    return f"params_{env_steps:012d}.npz"


def state_name(env_steps: int) -> str:
    return f"state_{env_steps:012d}.npz"


def manifest_name(env_steps: int) -> str:
    return f"state_{env_steps:012d}.json"


@dataclass(frozen=True)
class CheckpointInfo:
    """One committed checkpoint: where its manifest is and what the manifest says."""

    manifest_path: Path
    manifest: Mapping[str, Any]

    @property
    def directory(self) -> Path:
        return self.manifest_path.parent

    @property
    def env_steps(self) -> int:
        return int(self.manifest["env_steps"])

    @property
    def iteration(self) -> int:
        return int(self.manifest["iteration"])

    @property
    def wall_s(self) -> float:
        return float(self.manifest.get("wall_s") or 0.0)

    @property
    def eval_return(self) -> float | None:
        v = self.manifest.get("eval_return")
        return None if v is None else float(v)

    @property
    def best_eval_return(self) -> float | None:
        v = self.manifest.get("best_eval_return")
        return None if v is None else float(v)

    @property
    def params_path(self) -> Path:
        return self.directory / self.manifest["files"]["params"]["name"]

    @property
    def state_path(self) -> Path:
        return self.directory / self.manifest["files"]["state"]["name"]

    def __str__(self) -> str:
        return str(self.manifest_path)


# --------------------------------------------------------------------------------------------
# Low-level file helpers
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync it and ``os.replace`` it
    onto ``path``: readers see the old file or the complete new one, never a partial file. The
    temp file is removed on any failure (including KeyboardInterrupt)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=os.path.basename(path), dir=directory)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None where not installed) plus python, the platform
    and reppo itself; stored in every manifest so a resumed run can say what changed."""
    from importlib import metadata

    from reppo_common import __version__

    out: dict[str, str | None] = {"python": platform.python_version(),
                                  "platform": f"{platform.system()}-{platform.machine()}",
                                  "reppo": __version__}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != _SELF_SUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _json_safe(value: Any) -> Any:
    """Floats that are not finite become None so the manifest stays strict JSON."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_manifest(path: str | os.PathLike, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Atomically write ``manifest`` with its own checksum (``manifest_sha256``); returns what
    was written."""
    out = _json_safe(dict(manifest))
    out.pop(_SELF_SUM, None)
    out[_SELF_SUM] = _manifest_digest(out)
    data = (json.dumps(out, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_checkpoint(
    ckpt_dir: str | os.PathLike,
    *,
    backend: str,
    env_steps: int,
    iteration: int,
    config: Mapping[str, Any],
    params: Mapping[str, np.ndarray],
    state: Mapping[str, np.ndarray],
    wall_s: float,
    eval_return: float | None = None,
    best_eval_return: float | None = None,
    last_eval: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """Write params, state and manifest for ``env_steps`` (in that order, each atomically).

    ``params`` is the canonical layout (``spec.params``), ``state`` the backend's flat arrays.
    ``eval_return`` is the eval return of exactly these parameters (None if no evaluation ran
    at this iteration); it ranks checkpoints for "keep the best". An OSError (disk full,
    read-only or vanished directory) becomes a one-line UserError naming the last complete
    checkpoint, which stays intact."""
    from spec import params as P

    d = Path(ckpt_dir)
    ppath, spath, mpath = d / params_name(env_steps), d / state_name(env_steps), \
        d / manifest_name(env_steps)
    try:
        d.mkdir(parents=True, exist_ok=True)
        P.save_params(ppath, params, {"backend": backend, "env_steps": int(env_steps),
                                      "iteration": int(iteration), "config": dict(config)})
        os.chmod(ppath, _file_mode())  # save_params' temp file is 0600
        arrays = {k: np.asarray(v) for k, v in state.items()}
        atomic_write(spath, lambda f: np.savez(f, **arrays))
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "backend": backend,
            "env_steps": int(env_steps), "iteration": int(iteration), "wall_s": float(wall_s),
            "eval_return": eval_return, "best_eval_return": best_eval_return,
            "last_eval": dict(last_eval or {}), "config": dict(config),
            "config_schema_version": config.get("schema_version"),
            "params_schema_version": P.SCHEMA_VERSION,
            "versions": dict(versions or package_versions(())),
            "files": {
                "params": {"name": ppath.name, "sha256": sha256_file(ppath),
                           "bytes": ppath.stat().st_size},
                "state": {"name": spath.name, "sha256": sha256_file(spath),
                          "bytes": spath.stat().st_size},
            },
            "extra": dict(extra or {}),
            "created": datetime.now().isoformat(timespec="seconds"),
        }
        written = write_manifest(mpath, manifest)
        _fsync_dir(d)
    except OSError as e:
        last = latest_checkpoint(d, required=False, strict=False)
        raise UserError(
            f"cannot write checkpoint {mpath}: {e.strerror or e} (disk full or run directory "
            f"not writable?); last complete checkpoint: {last or 'none'}"
        ) from None
    return CheckpointInfo(mpath, written)


# --------------------------------------------------------------------------------------------
# Reading and validation
# --------------------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike) -> CheckpointInfo:
    """Parse and self-verify one manifest; UserError if unreadable, corrupt or of another
    checkpoint format version."""
    p = Path(path)
    try:
        manifest = json.loads(p.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except OSError as e:
        raise UserError(f"cannot read checkpoint manifest {p}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"checkpoint manifest {p} is corrupt or truncated ({e}); delete "
                        f"{p.name} to resume from the previous checkpoint") from None
    if manifest.get("format") != FORMAT:
        raise UserError(f"{p} is not a reppo checkpoint manifest (format "
                        f"{manifest.get('format')!r})")
    stored = manifest.get(_SELF_SUM)
    if stored != _manifest_digest(manifest):
        raise UserError(f"checkpoint manifest {p} fails its checksum (edited or corrupt); delete "
                        f"{p.name} to resume from the previous checkpoint")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(f"checkpoint {p} has checkpoint format version {version!r}, this reppo "
                        f"reads version {FORMAT_VERSION}")
    for key in ("env_steps", "iteration", "files", "backend", "config"):
        if key not in manifest:
            raise UserError(f"checkpoint manifest {p} lacks {key!r}")
    return CheckpointInfo(p, manifest)


def list_checkpoints(ckpt_dir: str | os.PathLike, *, strict: bool = False) -> list[CheckpointInfo]:
    """Committed checkpoints in ``ckpt_dir`` by ascending env_steps. A manifest that does not
    read raises with ``strict``, else it is skipped."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir()):
        if not _MANIFEST_RE.match(p.name):
            continue
        try:
            out.append(read_manifest(p))
        except UserError:
            if strict:
                raise
    return sorted(out, key=lambda c: c.env_steps)


def latest_checkpoint(ckpt_dir: str | os.PathLike, *, required: bool = True,
                      strict: bool = True) -> CheckpointInfo | None:
    """The committed checkpoint with the most env steps. ``strict``: a corrupt *latest* manifest
    raises (a resume must not silently go back further than the user expects)."""
    d = Path(ckpt_dir)
    names = sorted(p.name for p in d.iterdir() if _MANIFEST_RE.match(p.name)) if d.is_dir() else []
    if not names:
        if required:
            hint = (" (only parameter files from an older reppo: start a new run)"
                    if d.is_dir() and any(d.glob("params_*.npz")) else
                    ": the run stopped before its first checkpoint (run.checkpoint_interval); "
                    "start it again")
            raise UserError(f"no resumable checkpoint in {d}{hint}")
        return None
    if strict:
        return read_manifest(d / names[-1])
    found = list_checkpoints(d)
    return found[-1] if found else None


def latest_params_file(ckpt_dir: str | os.PathLike, *, required: bool = True) -> Path | None:
    """The newest ``params_*.npz`` in ``ckpt_dir``: what ``reppo eval`` reads by default (the
    parameters of the latest checkpoint, also of a run from an older reppo without manifests).
    ``required``: FileNotFoundError if there is none, else None."""
    d = Path(ckpt_dir)
    found = sorted(d.glob("params_*.npz")) if d.is_dir() else []
    if found:
        return found[-1]
    if required:
        raise FileNotFoundError(f"no checkpoints in {d}: train first, or pass the run directory "
                                "of a trained run")
    return None


def verify_files(info: CheckpointInfo) -> None:
    """Both files exist and match their SHA-256 in the manifest; else a one-line UserError."""
    for role in ("params", "state"):
        entry = info.manifest["files"].get(role) or {}
        path = info.directory / str(entry.get("name", ""))
        if not entry.get("name") or not path.is_file():
            raise UserError(f"checkpoint {info} is incomplete: {role} file "
                            f"{entry.get('name')!r} is missing")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            raise UserError(f"checkpoint {role} file {path} is truncated or corrupt: {size} bytes, "
                            f"the manifest says {entry['bytes']}")
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            raise UserError(f"checkpoint {role} file {path} is corrupt: sha256 {digest[:12]}... "
                            f"does not match the manifest's {str(entry.get('sha256'))[:12]}...")


def load_state_arrays(info: CheckpointInfo, *, verify: bool = True) -> dict[str, np.ndarray]:
    """The state file's arrays (checksums verified first unless ``verify=False``)."""
    if verify:
        verify_files(info)
    try:
        raw = info.state_path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise UserError(f"checkpoint state file {info.state_path} does not read "
                        f"({type(e).__name__}: {e})") from None


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _default_config() -> dict[str, Any]:
    """The flat default config: a field a checkpoint's config lacks (added to the schema after
    the checkpoint was written, without changing its meaning) matches when the run uses its
    default."""
    from spec.config import ReppoConfig

    return _flat(ReppoConfig().to_dict())


def check_compatible(info: CheckpointInfo, *, backend: str, config: Mapping[str, Any],
                     changeable: Iterable[str] = RESUME_CHANGEABLE) -> None:
    """Refuse (UserError) a checkpoint of another backend, config schema version, params schema
    version, or whose config differs from ``config`` in a field outside ``changeable`` (network
    sizes, env, rollout shape, losses...). The message names the first difference. A field the
    checkpoint's config lacks matches the run's value if that is the field's default."""
    from spec import params as P

    m = info.manifest
    if m.get("backend") != backend:
        raise UserError(f"checkpoint {info} was written by backend {m.get('backend')!r}, not "
                        f"{backend!r}: resume it with --backend {m.get('backend')}")
    ck_cfg = m.get("config") or {}
    want_schema = config.get("schema_version")
    got_schema = m.get("config_schema_version", ck_cfg.get("schema_version"))
    if got_schema != want_schema:
        raise UserError(f"checkpoint {info} has config schema_version {got_schema!r}, this reppo "
                        f"reads schema_version {want_schema!r}")
    if m.get("params_schema_version") != P.SCHEMA_VERSION:
        raise UserError(f"checkpoint {info} has params schema version "
                        f"{m.get('params_schema_version')!r}, this reppo reads "
                        f"{P.SCHEMA_VERSION}")
    a, b = _flat(ck_cfg), _flat(config)
    allowed = set(changeable) | {"schema_version"}
    defaults = _default_config()
    for key in sorted(set(a) | set(b)):
        if key in allowed:
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va == "<absent>" and key in defaults and vb == defaults[key]:
            continue  # a field added later (same schema version), at its default: same run
        if isinstance(va, tuple):
            va = list(va)
        if isinstance(vb, tuple):
            vb = list(vb)
        if va != vb:
            raise UserError(f"checkpoint {info} does not match the run config: {key}={va!r} in "
                            f"the checkpoint, {key}={vb!r} in config.json")


def version_notes(info: CheckpointInfo, current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between the checkpoint's recorded versions and ``current``
    (resuming still works; only bit-exact continuation is not guaranteed)."""
    old = info.manifest.get("versions") or {}
    return [f"{k} {old.get(k)} -> {current.get(k)}" for k in sorted(set(old) | set(current))
            if old.get(k) != current.get(k)]


def find_resume_checkpoint(ckpt_dir: str | os.PathLike, *, backend: str,
                           config: Mapping[str, Any]) -> CheckpointInfo:
    """The latest checkpoint, checked against ``backend`` and ``config`` and checksum-verified;
    every failure is a one-line UserError and nothing is modified."""
    info = latest_checkpoint(ckpt_dir)
    assert info is not None
    check_compatible(info, backend=backend, config=config)
    verify_files(info)
    return info


# --------------------------------------------------------------------------------------------
# Housekeeping
# --------------------------------------------------------------------------------------------


def prune(ckpt_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Keep the ``keep`` most recent committed checkpoints plus the one with the best
    ``eval_return``; delete the others' files (manifest first, so a half-deleted checkpoint is
    never resumable) and any params/state file without a kept manifest. Returns what was
    deleted."""
    d = Path(ckpt_dir)
    infos = list_checkpoints(d)
    kept = {c.env_steps for c in infos[-max(1, keep):]}
    rated = [c for c in infos if c.eval_return is not None]
    if rated:
        kept.add(max(rated, key=lambda c: (c.eval_return, c.env_steps)).env_steps)
    removed: list[Path] = []
    files = [p for p in d.iterdir() if _FILE_RE.match(p.name)] if d.is_dir() else []
    # manifests first: an interrupted prune leaves no manifest pointing at a deleted file
    files.sort(key=lambda p: (p.suffix != ".json", p.name))
    for p in files:
        steps = int(_FILE_RE.match(p.name).group(2))
        if steps not in kept:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def remove_temp_files(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Delete temp files left by a write that was killed (``.tmp-*``)."""
    d = Path(ckpt_dir)
    out = []
    for p in (d.glob(".tmp-*") if d.is_dir() else []):
        p.unlink(missing_ok=True)
        out.append(p)
    return out


def rewind_metrics(path: str | os.PathLike, env_steps: int) -> int:
    """Drop every metrics.jsonl record with ``env_steps`` greater than ``env_steps`` (written
    by the killed run after the checkpoint being resumed, and written again by the resumed run),
    plus a truncated last line. Rewrites the file atomically; returns the number of lines
    dropped. Records without ``env_steps`` are kept."""
    p = Path(path)
    if not p.exists():
        return 0
    try:
        lines = p.read_text().splitlines(keepends=True)
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    kept, dropped = [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # cut off by the kill
                dropped += 1
                continue
            raise UserError(f"{p}: line {i + 1} is not a JSON object") from None
        steps = rec.get("env_steps") if isinstance(rec, dict) else None
        if isinstance(steps, (int, float)) and steps > env_steps:
            dropped += 1
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        data = "".join(kept).encode()
        try:
            atomic_write(p, lambda f: f.write(data))
        except OSError as e:
            raise UserError(f"cannot rewrite {p}: {e.strerror or e}") from None
    return dropped
