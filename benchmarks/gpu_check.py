"""GPU check: one script that records what this project does on whatever accelerator is present.

Run from the repository root (``benchmarks`` is a namespace package, no install needed)::

    python -m benchmarks.gpu_check --out gpu_check.json            # full if a GPU is found
    python -m benchmarks.gpu_check --dry-run --out dry.json         # tiny sizes on CPU, seconds

Sections, each in its own subprocess with its own time limit, so that one that fails (a missing
package, ManiSkill without a GPU renderer, a crash, a hang) records an error entry and the others
still run:

========================= ======= ===================== ======================================
section                   backend env                   full budget (dry: tiny preset, CPU)
========================= ======= ===================== ======================================
``probe``                 both    -                     devices and package versions
``jax_dmc``               jax     dmc/CheetahRun        ``dmc`` preset, 32 iterations (1.05M)
``torch_dmc``             torch   dmc/CheetahRun        ``dmc`` preset through the JAX bridge,
                                                        8 iterations (262k)
``torch_maniskill``       torch   maniskill/PushCube-v1 ``maniskill`` preset on physx_cuda,
                                                        8 iterations (1.05M)
``atari_pong``            jax     atari/Pong            ``atari`` preset via envpool, 16
                                                        iterations (65k)
``atari_breakout``        jax     atari/Breakout        as Pong (episodes capped at 4,500
                                                        agent steps in both)
========================= ======= ===================== ======================================

Every training section records env-steps/s (the shared loop's ``train/sps``: iterations after
the first), ``compile_s`` (the first iteration: compile and warm-up), ``setup_s`` (building envs
and networks), the evaluation at the end of the fixed budget (return, success rate where the
suite has one), the mean return of training episodes that finished, and ``wall_s``.

Time limits. Full mode: each section has a hard limit (its subprocess is killed, keeping the
numbers it had written so far, status ``timeout``) and a softer training-time allowance,
counted from the end of the first (compiling) iteration (the loop stops cleanly after the
iteration that crosses it, status ``ok`` with ``stopped_early: true`` and no final
evaluation); all limits together fit
:data:`TOTAL_BUDGET_S` (8 minutes), and a section that would start with too little of that
left is skipped. Dry mode (``--dry-run``, the default without an accelerator): the same code
paths at the ``tiny`` preset for a few iterations on CPU, to prove the script and its JSON
schema in CI.

Status per section: ``ok``; ``skipped`` (an optional package is missing, or the machine lacks
what the simulator needs, e.g. a Vulkan device for SAPIEN; the reason is recorded); ``error``
(the exception's last line and the output's tail); ``timeout``. The exit status is 0 unless a
section is ``error`` or ``timeout``. See docs/gpu.md for running it on a lent device.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
"""Layout version of the JSON file written by :func:`main`."""

TOTAL_BUDGET_S = 470.0
"""All sections of a full run together (probe included) stay under this many seconds, i.e.
under 8 minutes with the interpreter start and the JSON write."""

REPO_ROOT = Path(__file__).resolve().parents[1]

STATUSES = ("ok", "skipped", "error", "timeout")


@dataclass(frozen=True)
class Section:
    """One measured training run: what to train, at which sizes, within which limits.

    ``full`` / ``dry``: config overrides (``section.field`` -> value) applied after ``preset``
    (full) or after the ``tiny`` preset (dry). ``requires``: importable modules the section
    needs; one missing makes it ``skipped``. ``timeout_s``: the hard limit of its subprocess in
    full mode; ``train_budget_s``: the training-time allowance after which the loop stops.
    ``dry_env``: the env of the dry run where the real one is too slow for CI (MJX compiles
    DMC tasks for minutes on a CPU); ``dry_bridge``: build the dry run's torch envs as
    :class:`reppo_torch.envs.jax_bridge.JaxBridgeEnv` over the JAX adapter, the same bridge
    ``dmc/`` tasks go through in torch."""

    name: str
    backend: str
    env: str
    preset: str
    full: dict[str, Any]
    timeout_s: float
    train_budget_s: float
    requires: tuple[str, ...]
    dry: dict[str, Any] = field(default_factory=dict)
    dry_env: str | None = None
    dry_bridge: bool = False


DRY_SIZES: dict[str, Any] = {"rollout.total_env_steps": 3 * 64, "run.eval_interval": 10**9,
                             "run.eval_episodes": 2, "env.max_episode_steps": 16,
                             "run.checkpoint_interval": 0}
"""Dry mode on top of the ``tiny`` preset (8 envs x 8 steps): 3 iterations, then one
evaluation of two 16-step episodes."""

DRY_TIMEOUT_S = 240.0
"""Hard limit of one dry section (CPU, shared CI machine); they take seconds when idle."""

ATARI_CHECK_EPISODE_STEPS = 4500
"""Episode cap of the Atari sections (18k frames, 5 minutes of play): a greedy evaluation of a
barely trained agent can idle (Breakout without FIRE) until the ALE protocol's 27,000 agent
steps, longer than the section's time; real runs keep 27,000."""

SECTIONS: tuple[Section, ...] = (
    Section("jax_dmc", "jax", "dmc/CheetahRun", "dmc",
            {"rollout.total_env_steps": 32 * 32_768, "run.eval_interval": 10**9,
             "run.eval_episodes": 16, "run.checkpoint_interval": 0},
            timeout_s=180, train_budget_s=70,
            requires=("jax", "flax", "optax", "mujoco_playground"), dry_env="toy/Bandit"),
    Section("torch_dmc", "torch", "dmc/CheetahRun", "dmc",
            {"rollout.total_env_steps": 8 * 32_768, "run.eval_interval": 10**9,
             "run.eval_episodes": 16, "run.checkpoint_interval": 0},
            timeout_s=70, train_budget_s=30, requires=("torch", "jax", "mujoco_playground"),
            dry_env="toy/Bandit", dry_bridge=True),
    Section("torch_maniskill", "torch", "maniskill/PushCube-v1", "maniskill",
            {"rollout.total_env_steps": 8 * 131_072, "run.eval_interval": 10**9,
             "run.eval_episodes": 16, "run.checkpoint_interval": 0,
             "env.physics_impl": "physx_cuda"},
            timeout_s=100, train_budget_s=50, requires=("torch", "mani_skill"),
            dry={"env.physics_impl": "physx_cpu", "rollout.num_envs": 2,
                 "rollout.total_env_steps": 3 * 16}),
    Section("atari_pong", "jax", "atari/Pong", "atari",
            {"rollout.total_env_steps": 16 * 4096, "run.eval_interval": 10**9,
             "run.eval_episodes": 8, "run.checkpoint_interval": 0,
             "env.max_episode_steps": ATARI_CHECK_EPISODE_STEPS},
            timeout_s=75, train_budget_s=20, requires=("jax", "envpool")),
    Section("atari_breakout", "jax", "atari/Breakout", "atari",
            {"rollout.total_env_steps": 16 * 4096, "run.eval_interval": 10**9,
             "run.eval_episodes": 8, "run.checkpoint_interval": 0,
             "env.max_episode_steps": ATARI_CHECK_EPISODE_STEPS},
            timeout_s=75, train_budget_s=20, requires=("jax", "envpool")),
)
"""In run order: the most important first, so a short budget loses the least."""

PROBE_TIMEOUT_S = 60.0

VERSION_PACKAGES = ("numpy", "jax", "jaxlib", "flax", "optax", "mujoco", "mujoco_mjx",
                    "playground", "torch", "mani_skill", "sapien", "envpool", "gymnasium")


# --------------------------------------------------------------------------------------------
# Child side: one section in this process
# --------------------------------------------------------------------------------------------


class _Recorder:
    """Collects one section's numbers and rewrites its result file after every change, so a
    section killed at its time limit still leaves what it had measured."""

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = path
        self.record = record
        self.write()

    def update(self, **values: Any) -> None:
        self.record.update(values)
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, default=_jsonable))
        tmp.replace(self.path)


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def _finite(x: Any) -> float | None:
    """float(x), or None for NaN/inf/missing (JSON has no NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v and abs(v) != float("inf") else None


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def section_config(section: Section, dry: bool):
    """The :class:`spec.config.ReppoConfig` a section trains with (preset + overrides)."""
    from spec.presets import preset_config

    env = (section.dry_env or section.env) if dry else section.env
    if dry:
        overrides = {**DRY_SIZES, **section.dry, "env.name": env, "run.device": "cpu"}
        # the preset's env values (support, gamma, lambda) with the tiny preset's sizes
        from spec.presets import get_preset

        base = {f"{s}.{k}": v for s, vals in get_preset(section.preset)["overrides"].items()
                for k, v in vals.items() if s in ("env", "loss")}
        return preset_config("tiny", {**base, **overrides})
    return preset_config(section.preset, {**section.full, "env.name": env})


def _device_record(backend: str, trainer: Any) -> dict[str, Any]:
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return {"platform": d.platform, "device_kind": d.device_kind,
                "device_count": jax.device_count()}
    import torch

    dev = trainer.device
    out: dict[str, Any] = {"platform": dev.type}
    if dev.type == "cuda":
        out["device_name"] = torch.cuda.get_device_name(dev)
    physics = getattr(trainer.env, "physics_impl", None)
    if physics is not None:
        out["physics_impl"] = physics
    return out


def run_section(section: Section, dry: bool, result_path: Path) -> None:
    """Train one section and write its record to ``result_path`` (see the module docstring)."""
    t0 = time.monotonic()
    cfg = section_config(section, dry)
    rec = _Recorder(result_path, {
        "status": "running", "backend": section.backend, "env": cfg.env.name,
        "bridge": section.backend == "torch" and (cfg.env.name.startswith("dmc/")
                                                  or (dry and section.dry_bridge)),
        "preset": "tiny" if dry else section.preset,
        "num_envs": cfg.rollout.num_envs, "num_steps": cfg.rollout.num_steps,
        "budget_env_steps": cfg.rollout.total_env_steps,
        "eval_episodes": cfg.run.eval_episodes})
    missing = _missing(section.requires)
    if missing:
        rec.update(status="skipped",
                   reason=f"not installed: {', '.join(missing)} (see docs/gpu.md)",
                   wall_s=time.monotonic() - t0)
        return

    from spec.backend import TrainHooks

    if section.backend == "jax":
        from reppo_jax.train import make_trainer, train
    else:
        from reppo_torch.train import make_trainer, train
    from reppo_common.errors import UserError

    from reppo_common.registry import resolve_env

    if not cfg.env.name.startswith("toy/"):  # toy envs are test fixtures, not registered
        resolve_env(cfg.env.name)  # an unknown name is a one-line UserError, not a fallback
    try:
        if dry and section.dry_bridge:
            from reppo_jax.train import make_env as make_jax_env
            from reppo_torch.envs.jax_bridge import JaxBridgeEnv

            trainer = make_trainer(cfg, JaxBridgeEnv(make_jax_env(cfg, cfg.rollout.num_envs)),
                                   JaxBridgeEnv(make_jax_env(cfg, cfg.run.eval_episodes,
                                                             evaluation=True)))
        else:
            trainer = make_trainer(cfg)
    except UserError as e:
        if "Vulkan" in str(e):  # SAPIEN without a usable render device: a machine fact
            rec.update(status="skipped", reason=str(e), wall_s=time.monotonic() - t0)
            return
        raise
    setup_s = time.monotonic() - t0
    rec.update(setup_s=setup_s, device=_device_record(section.backend, trainer))

    budget = None if dry else section.train_budget_s
    t_train = time.monotonic()
    sps: list[float] = []
    episodes = {"n": 0.0, "sum": 0.0}
    state: dict[str, Any] = {"stopped_early": False}

    def on_train(m: dict[str, Any]) -> None:
        if state.get("compile_s") is None:
            state["t_first"] = time.monotonic()
            state["compile_s"] = state["t_first"] - t_train
        s = _finite(m.get("train/sps"))
        if s is not None:
            sps.append(s)
        n = _finite(m.get("rollout/episodes")) or 0.0
        r = _finite(m.get("rollout/episode_return"))
        if n > 0 and r is not None:
            episodes["n"] += n
            episodes["sum"] += n * r
        rec.update(env_steps=int(m["env_steps"]), iterations=int(m["iteration"]),
                   compile_s=state["compile_s"], env_steps_per_s=sps[-1] if sps else None,
                   train_episodes=int(episodes["n"]),
                   train_episode_return=(episodes["sum"] / episodes["n"]
                                         if episodes["n"] else None),
                   train_s=time.monotonic() - t_train)

    def on_eval(m: dict[str, Any]) -> None:
        rec.update(eval_return=_finite(m.get("eval/return_mean")),
                   eval_success=_finite(m.get("eval/success_rate")),
                   eval_length=_finite(m.get("eval/length_mean")),
                   eval_env_steps=int(m["env_steps"]))

    def should_stop() -> bool:
        # the allowance counts from the end of the first (compiling) iteration
        t_first = state.get("t_first")
        if budget is not None and t_first is not None and time.monotonic() - t_first > budget:
            state["stopped_early"] = True
        return state["stopped_early"]

    hooks = TrainHooks(on_train_metrics=on_train, on_eval_metrics=on_eval,
                       should_stop=should_stop)
    result = train(cfg, None, hooks, trainer=trainer)
    rec.update(status="ok", stopped_early=state["stopped_early"],
               compile_s=_finite(result.compile_s) if result.compile_s is not None
               else rec.record.get("compile_s"),
               env_steps=int(result.env_steps), iterations=int(result.iterations),
               wall_s=time.monotonic() - t0)


def run_probe(result_path: Path) -> None:
    """Record the host, the accelerators JAX and torch see, and the package versions."""
    from importlib import metadata

    out: dict[str, Any] = {"status": "ok", "python": platform.python_version(),
                           "platform": platform.platform(), "cpu_count": os.cpu_count()}
    versions = {}
    for name in VERSION_PACKAGES:
        dist = {"mani_skill": "mani-skill", "mujoco_mjx": "mujoco-mjx"}.get(name, name)
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    out["versions"] = versions
    errors = {}
    try:
        import jax

        devs = jax.devices()
        out["jax"] = {"backend": jax.default_backend(), "device_count": len(devs),
                      "device_kind": devs[0].device_kind, "platform": devs[0].platform}
    except Exception as e:  # noqa: BLE001 - recorded, the other framework is still probed
        errors["jax"] = f"{type(e).__name__}: {e}"
    try:
        import torch

        cuda = torch.cuda.is_available()
        out["torch"] = {"cuda": cuda, "cuda_version": torch.version.cuda,
                        "device_count": torch.cuda.device_count() if cuda else 0,
                        "device_name": torch.cuda.get_device_name(0) if cuda else None}
    except Exception as e:  # noqa: BLE001
        errors["torch"] = f"{type(e).__name__}: {e}"
    if errors:
        out["errors"] = errors
    result_path.write_text(json.dumps(out))


# --------------------------------------------------------------------------------------------
# Parent side: run the sections, write the JSON, print the table
# --------------------------------------------------------------------------------------------


def _child_env(dry: bool, section: Section | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if dry:
        env["JAX_PLATFORMS"] = "cpu"  # dry mode is the CPU code path everywhere
    elif section is not None and section.backend == "torch":
        # torch shares the GPU with JAX (the DMC bridge): no 75 % pre-allocation by XLA
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def _run_child(args: list[str], timeout: float, env: dict[str, str],
               result_path: Path) -> tuple[dict[str, Any], str]:
    """Run ``python -m benchmarks.gpu_check <args>`` from the repo root in its own process
    group; kill the group at ``timeout``. Returns (its result record, its output's tail)."""
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", *args]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    tail = (output or "")[-3000:]
    try:
        record = json.loads(result_path.read_text())
    except (OSError, ValueError):
        record = {}
    if timed_out:
        record["status"] = "timeout"
        record["error"] = f"killed after {timeout:.0f} s"
    elif proc.returncode != 0 or record.get("status") in (None, "running"):
        record["status"] = "error"
        record["error"] = _error_line(output or "") or f"exit status {proc.returncode}"
    if record["status"] in ("error", "timeout"):
        record["output_tail"] = tail
    return record, tail


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Diverged)\b.*")


def _error_line(output: str) -> str | None:
    """The last ``SomeError: message`` line of a traceback (JAX appends notes after it), else
    the last non-empty line."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if _EXCEPTION_LINE.match(ln):
            return ln
    return lines[-1] if lines else None


def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far (a section's CPU
    time, independent of how busy a shared machine is)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _has_accelerator(probe: dict[str, Any]) -> bool:
    jax_platform = (probe.get("jax") or {}).get("platform")
    return bool((probe.get("torch") or {}).get("cuda")) or jax_platform in ("gpu", "cuda", "tpu")


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def summary_table(report: dict[str, Any]) -> str:
    """One fixed-width table of the sections' main numbers."""
    rows = [["section", "status", "env", "env-steps/s", "compile s", "eval return", "success",
             "wall s", "cpu s"]]
    for name, r in report["sections"].items():
        rows.append([name, r.get("status", "?") + ("*" if r.get("stopped_early") else ""),
                     r.get("env", "-"), _fmt(r.get("env_steps_per_s"), ",.0f"),
                     _fmt(r.get("compile_s"), ".1f"), _fmt(r.get("eval_return"), ".1f"),
                     _fmt(r.get("eval_success"), ".2f"), _fmt(r.get("wall_s"), ".1f"),
                     _fmt(r.get("cpu_s"), ".1f")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    dev = report.get("device_name") or "no accelerator"
    lines.insert(0, f"gpu_check ({report['mode']}) on {dev}, {report['wall_s']:.0f} s")
    if any(r.get("stopped_early") for r in report["sections"].values()):
        lines.append("* stopped at the section's training-time allowance (no final eval)")
    for name, r in report["sections"].items():
        why = r.get("reason") or r.get("error")
        if why:
            lines.append(f"{name}: {why}")
    return "\n".join(lines)


def run_check(out: Path, mode: str, names: list[str] | None,
              budget_s: float = TOTAL_BUDGET_S) -> dict[str, Any]:
    """Probe, run the sections (``mode``: ``dry``, ``full`` or ``auto``), write ``out``."""
    t0 = time.monotonic()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        probe_path = Path(tmp) / "probe.json"
        # the probe always sees the real devices, also in dry mode
        probe, _ = _run_child(["--probe", str(probe_path)], PROBE_TIMEOUT_S,
                              _child_env(False, None), probe_path)
        if mode == "auto":
            mode = "full" if _has_accelerator(probe) else "dry"
        dry = mode == "dry"
        sections: dict[str, Any] = {}
        for s in SECTIONS:
            if names and s.name not in names:
                continue
            left = budget_s - (time.monotonic() - t0)
            limit = DRY_TIMEOUT_S if dry else min(s.timeout_s, left)
            if not dry and limit < 0.5 * s.timeout_s:
                sections[s.name] = {"status": "skipped", "backend": s.backend, "env": s.env,
                                    "reason": f"the {budget_s:.0f} s budget has {left:.0f} s "
                                              f"left, under half this section's limit"}
                continue
            path = Path(tmp) / f"{s.name}.json"
            print(f"gpu_check: {s.name} ({'dry' if dry else 'full'}, limit {limit:.0f} s)",
                  file=sys.stderr, flush=True)
            args = ["--section", s.name, "--result", str(path)] + (["--dry-run"] if dry else [])
            t_s, cpu_s = time.monotonic(), _children_cpu_s()
            record, _ = _run_child(args, limit, _child_env(dry, s), path)
            record.setdefault("backend", s.backend)
            record.setdefault("env", s.env)
            record.setdefault("wall_s", time.monotonic() - t_s)
            record["cpu_s"] = _children_cpu_s() - cpu_s
            record["limit_s"] = limit
            sections[s.name] = record
    torch_info = probe.get("torch") or {}
    jax_info = probe.get("jax") or {}
    device_name = torch_info.get("device_name") or (
        jax_info.get("device_kind") if jax_info.get("platform") not in (None, "cpu") else None)
    report = {"schema_version": SCHEMA_VERSION, "mode": mode, "started": started,
              "budget_s": None if dry else budget_s, "device_name": device_name,
              "probe": probe, "sections": sections,
              "wall_s": time.monotonic() - t0}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="gpu_check.json", help="the JSON file to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dry-run", action="store_true",
                   help="tiny sizes on CPU (the default when no accelerator is found)")
    g.add_argument("--full", action="store_true",
                   help="the full budgets even without an accelerator (slow on a CPU)")
    p.add_argument("--sections", default=None,
                   help=f"comma-separated subset of: {', '.join(s.name for s in SECTIONS)}")
    p.add_argument("--budget-s", type=float, default=TOTAL_BUDGET_S,
                   help="full mode: time for all sections together")
    # internal: one section (or the probe) in this process, called by the parent
    p.add_argument("--section", default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.probe:
        run_probe(Path(a.probe))
        return 0
    by_name = {s.name: s for s in SECTIONS}
    if a.section:
        run_section(by_name[a.section], a.dry_run, Path(a.result))
        return 0
    names = [n.strip() for n in a.sections.split(",")] if a.sections else None
    unknown = sorted(set(names or ()) - set(by_name))
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    mode = "dry" if a.dry_run else "full" if a.full else "auto"
    report = run_check(Path(a.out), mode, names, a.budget_s)
    print(summary_table(report))
    print(f"wrote {a.out}")
    bad = [n for n, r in report["sections"].items() if r["status"] in ("error", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
