"""Benchmark runner: REPPO against a baseline on tasks x seeds at per-task budgets, resumable,
then one table, one summary and one figure (docs/benchmark.md describes it in full).

    python -m benchmarks.suite run --tasks dmc/CartpoleBalance dmc/PendulumSwingup \\
        --algos reppo ppo --seeds 0 1 2 --budget 1e6 dmc/PendulumSwingup=3e6 --jobs 2 \\
        --out runs/bench_dmc
    python -m benchmarks.suite run --tasks minatar/Breakout --algos reppo pqn --seeds 0 1 2 \\
        --budget 5e6 --out runs/bench_minatar
    python -m benchmarks.suite report runs/bench_dmc [--at 1e6 5e6] [--norm TASK=LO,HI]
    python -m benchmarks.suite store runs/bench_dmc docs/benchmarks/dmc

``run``: every (algo, task, seed) is one job in its own process (a crash or out-of-memory of one
leaves the others running), at most ``--jobs`` at a time; a failed job is reported with its log
and the run goes on; the exit status is 1 if any job failed. Rerunning the same command resumes:
a job whose curve file exists is skipped, an unfinished REPPO job continues from its run
directory's latest checkpoint (``reppo train --resume``), an unfinished baseline job starts
again (the baselines do not checkpoint). Jobs:

* ``reppo``: the ``reppo train`` command (JAX backend where the env has one) with the task's
  preset, ``--run-dir DIR/runs/reppo/<task>/seed<k>``; its curve is read from the run's
  metrics.jsonl when it finishes.
* ``ppo`` (continuous, ``dmc/`` tasks): Brax PPO with mujoco_playground's own DMC tuning,
  ``benchmarks.compare_ppo.run_ppo``.
* ``pqn`` (discrete, ``minatar/`` tasks): PQN from the ``rejax`` package with PQN's published
  MinAtar settings, :mod:`benchmarks.pqn`.

Each job leaves ``DIR/curves/<algo>/<task>/seed<k>.csv`` (``<task>`` with ``/`` as ``_``):
columns ``env_steps, wall_s, return`` (and ``success`` where the env reports it), one row per
evaluation; ``wall_s`` counts from the start of training (compilation included, interpreter
start-up and imports not). ``DIR/jobs.json`` records every job's command, budget, preset and
status, and per invocation the versions and the machine. ``DIR/logs/`` holds each job's output.

``report`` reads the curves (of a run directory or a ``store``d copy) and writes ``table.md``,
``summary.json`` and ``curves.png`` (:mod:`benchmarks.suite_report`); the same data gives
byte-identical ``table.md`` and ``summary.json``. ``store`` copies just the curves and jobs.json
to a docs directory and reports there, so one command regenerates the docs' numbers.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import fnmatch
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from reppo_common.errors import EXIT_STOPPED, EXIT_USAGE, UserError

ROOT = Path(__file__).resolve().parents[1]

ALGOS = {
    "reppo": "REPPO (reppo train; D-REPPO on discrete tasks)",
    "ppo": "Brax PPO with mujoco_playground's DMC tuning (dmc/ tasks)",
    "pqn": "PQN from rejax with PQN's MinAtar settings (minatar/ tasks)",
}
"""Algorithms ``--algos`` accepts."""

MANIFEST = "jobs.json"
CURVES = "curves"
LOGS = "logs"
RUNS = "runs"
CURVE_COLUMNS = ("env_steps", "wall_s", "return", "success")
SUITE_SET_KEYS = {
    "env.name": "--tasks", "run.seed": "--seeds", "rollout.total_env_steps": "--budget",
    "run.eval_interval": "--eval-interval / --evals", "run.eval_episodes": "--eval-episodes",
}
"""REPPO config fields the suite sets itself (refused in --reppo-set)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line UserErrors."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see `python -m benchmarks.suite {self.prog.split()[-1]} "
                        f"--help`)")


# ----------------------------------------------------------------------------------------------
# parsing of the run options
# ----------------------------------------------------------------------------------------------


def parse_steps(text: str, what: str) -> int:
    """``"1e6"`` / ``"300000"`` -> a positive whole number of env steps, else UserError."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or not v.is_integer() or v < 1:
        raise UserError(f"{what} {text!r} is not a positive whole number of env steps "
                        f"(e.g. 300000 or 1e6)")
    return int(v)


def parse_budgets(items: Sequence[str], tasks: Sequence[str]) -> dict[str, int]:
    """``--budget``: one ``STEPS`` for every task and/or ``TASK=STEPS`` pairs -> {task: steps}.
    A task (or the default) given twice, a task not in ``tasks`` or a task left without a budget
    is a UserError."""
    default: int | None = None
    per: dict[str, int] = {}
    for item in items:
        task, eq, steps = item.rpartition("=")
        if not eq:
            if default is not None:
                raise UserError(f"--budget gives the default budget twice ({default} and "
                                f"{item}); give one STEPS and TASK=STEPS for the exceptions")
            default = parse_steps(item, "--budget")
            continue
        if task not in tasks:
            raise UserError(f"--budget {item}: {task!r} is not one of --tasks "
                            f"({', '.join(tasks)})")
        if task in per:
            raise UserError(f"--budget gives task {task} a budget twice ({per[task]} and "
                            f"{steps}); give each task once")
        per[task] = parse_steps(steps, f"--budget {task}=")
    missing = [t for t in tasks if t not in per and default is None]
    if missing:
        raise UserError(f"no --budget for {', '.join(missing)}: give STEPS for all tasks or "
                        f"TASK=STEPS for each")
    return {t: per.get(t, default) for t in tasks}  # type: ignore[misc]


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"128,128"`` -> (128, 128); positive integers only."""
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise UserError(f"--pqn-hidden {text!r} must be comma-separated positive widths, "
                        f"e.g. 128,128")
    return sizes


def task_dir(task: str) -> str:
    """The directory name of a task: ``dmc/CartpoleBalance`` -> ``dmc_CartpoleBalance`` (a
    ``module:`` prefix of a user env is left out)."""
    return task.rpartition(":")[2].replace("/", "_")


@dataclass
class TaskPlan:
    """What the suite decided for one task."""

    name: str
    spec: Any
    budget: int
    preset: str
    preset_source: str
    backend: str


@dataclass
class Job:
    """One (algo, task, seed) job: what it trains (``spec``, compared on resume) and where."""

    algo: str
    task: str
    seed: int
    spec: dict[str, Any]
    out: Path

    @property
    def key(self) -> str:
        return f"{self.algo}/{task_dir(self.task)}/seed{self.seed}"

    def rel(self, kind: str, suffix: str) -> str:
        return f"{kind}/{self.algo}/{task_dir(self.task)}/seed{self.seed}{suffix}"

    @property
    def curve(self) -> Path:
        return self.out / self.rel(CURVES, ".csv")

    @property
    def log(self) -> Path:
        return self.out / self.rel(LOGS, ".log")

    @property
    def run_dir(self) -> Path:
        """REPPO: the run directory; baselines: the stem of their facts file."""
        return self.out / self.rel(RUNS, "")

    def command(self, resume: bool) -> list[str]:
        """argv run with cwd = the suite directory (paths relative to it); argv[0] is the
        interpreter running the suite."""
        s = self.spec
        if self.algo == "reppo":
            run = self.rel(RUNS, "")
            if resume:
                return [sys.executable, "-m", "reppo_common.cli", "train", "--resume", run,
                        "--no-progress"]
            return [sys.executable, "-m", "reppo_common.cli", "train", "--backend", s["backend"],
                    "--env", self.task, "--preset", s["preset"], "--seed", str(self.seed),
                    "--steps", str(s["budget"]), "--run-dir", run, "--no-progress",
                    f"--run.eval_interval={s['eval_interval']}",
                    f"--run.eval_episodes={s['eval_episodes']}",
                    *(f"--{kv}" for kv in s["reppo_set"])]
        cmd = [sys.executable, "-m", "benchmarks.suite", "job", "--algo", self.algo,
               "--task", self.task, "--seed", str(self.seed), "--budget", str(s["budget"]),
               "--eval-interval", str(s["eval_interval"]),
               "--eval-episodes", str(s["eval_episodes"]),
               "--curve", self.rel(CURVES, ".csv"), "--facts", self.rel(RUNS, ".json")]
        if self.algo == "pqn":
            cmd += ["--pqn-hidden", ",".join(map(str, s["hidden"]))]
        if self.algo == "ppo":
            cmd += ["--ppo-num-envs", str(s["num_envs"])]
            for kv in s["ppo_set"]:
                cmd += ["--ppo-set", kv]
        return cmd


def _resolve_tasks(tasks: Sequence[str]) -> dict[str, Any]:
    from reppo_common.registry import resolve_env

    if not tasks:
        raise UserError("--tasks is empty; name at least one task, e.g. dmc/CartpoleBalance")
    seen: dict[str, str] = {}
    specs = {}
    for t in tasks:
        if t in specs:
            raise UserError(f"--tasks names {t} twice")
        specs[t] = resolve_env(t)
        d = task_dir(t)
        if d in seen:
            raise UserError(f"--tasks {seen[d]} and {t} would share the directory {d}")
        seen[d] = t
    return specs


def _check_algo_task(algo: str, task: str, spec: Any) -> None:
    """One-line UserError if ``algo`` cannot run ``task``."""
    if algo == "ppo" and spec.action_space != "continuous":
        raise UserError(f"ppo is a continuous-action baseline; {task} has discrete actions "
                        f"(use --algos reppo pqn)")
    if algo == "ppo" and spec.suite != "dmc":
        raise UserError(f"ppo uses mujoco_playground's DMC tuning and runs dmc/ tasks only, "
                        f"not {task}")
    if algo == "pqn" and spec.action_space != "discrete":
        raise UserError(f"pqn is a discrete-action baseline; {task} has continuous actions "
                        f"(use --algos reppo ppo)")
    if algo == "pqn" and spec.suite != "minatar":
        raise UserError(f"pqn (rejax, gymnax) runs minatar/ tasks only, not {task}")


def _choose_preset(task: str, spec: Any, preset: str | None, rule: str | None
                   ) -> tuple[str, str]:
    """(preset, why) for ``task``: the rule's preset where its pattern matches, else ``preset``,
    else the env's default preset."""
    if rule is not None:
        pattern, _, rule_preset = rule.partition("=")
        if fnmatch.fnmatchcase(task, pattern):
            return rule_preset, f"--preset-rule {rule}"
    if preset is not None:
        return preset, "--preset"
    return spec.default_preset, "env default"


def _check_preset_name(name: str, flag: str) -> None:
    import difflib

    from spec.presets import PRESETS

    if name not in PRESETS:
        hint = difflib.get_close_matches(name, list(PRESETS), n=1)
        raise UserError(f"{flag}: unknown preset {name!r}"
                        + (f"; did you mean {hint[0]!r}?" if hint else "")
                        + f" (presets: {', '.join(PRESETS)})")


def _reppo_config(plan: TaskPlan, seed: int, eval_interval: int, eval_episodes: int,
                  reppo_set: Sequence[str]) -> Any:
    """The REPPO config ``reppo train`` will build for this job (validated here so that a bad
    --reppo-set is one error before any job starts)."""
    from spec.config import ConfigError
    from spec.presets import preset_config

    from reppo_common.registry import check_value_range, config_flags

    flags = config_flags(plan.spec, plan.name) + [
        f"run.seed={seed}", f"rollout.total_env_steps={plan.budget}",
        f"run.eval_interval={eval_interval}", f"run.eval_episodes={eval_episodes}"]
    try:
        cfg = preset_config(plan.preset, flags + list(reppo_set))
    except ConfigError as e:
        raise UserError(f"{plan.name} (preset {plan.preset}): {e}") from None
    check_value_range(cfg, plan.spec.reward_range, plan.spec.full_name)
    return cfg


def _whole(interval: int, per_iter: int) -> int:
    """``interval`` rounded down to whole iterations of ``per_iter`` env steps (at least one)."""
    return max(1, interval // per_iter) * per_iter


def plan_jobs(a: argparse.Namespace) -> tuple[dict[str, TaskPlan], list[Job]]:
    """Validate the run options and return the per-task plan and the jobs (in run order: seed,
    then task, then algo, so that the first results cover every task and algo)."""
    from spec.derived import env_steps_per_iteration

    specs = _resolve_tasks(a.tasks)
    unknown = [x for x in a.algos if x not in ALGOS]
    if unknown:
        raise UserError(f"unknown algo {unknown[0]!r}; choose from {', '.join(ALGOS)}")
    if len(set(a.algos)) != len(a.algos):
        raise UserError("--algos names an algorithm twice")
    if len(set(a.seeds)) != len(a.seeds):
        raise UserError("--seeds names a seed twice")
    if any(s < 0 or s > 2**31 - 1 for s in a.seeds):
        raise UserError("--seeds must lie in 0 .. 2**31-1")
    if a.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {a.jobs}")
    if a.eval_episodes < 1:
        raise UserError(f"--eval-episodes must be >= 1, got {a.eval_episodes}")
    if a.evals < 1:
        raise UserError(f"--evals must be >= 1, got {a.evals}")
    if a.ppo_num_envs < 1:
        raise UserError(f"--ppo-num-envs must be >= 1, got {a.ppo_num_envs}")
    for algo in a.algos:
        for t, spec in specs.items():
            _check_algo_task(algo, t, spec)
    budgets = parse_budgets(a.budget, a.tasks)
    interval = parse_steps(a.eval_interval, "--eval-interval") if a.eval_interval else None
    if a.preset is not None:
        _check_preset_name(a.preset, "--preset")
    rules = a.preset_rule or []
    if len(rules) > 1:
        raise UserError("give at most one --preset-rule: a benchmark picks between the shipped "
                        "presets by one rule (e.g. '*Swingup*=cpu-repeat4')")
    rule = rules[0] if rules else None
    if rule is not None:
        pattern, eq, name = rule.partition("=")
        if not (eq and pattern and name):
            raise UserError(f"--preset-rule {rule!r} must look like PATTERN=PRESET, e.g. "
                            f"'*Swingup*=cpu-repeat4'")
        _check_preset_name(name, "--preset-rule")
        if "reppo" in a.algos and not any(fnmatch.fnmatchcase(t, pattern) for t in a.tasks):
            raise UserError(f"--preset-rule pattern {pattern!r} matches none of the tasks "
                            f"({', '.join(a.tasks)})")
    for kv in a.reppo_set:
        key = kv.partition("=")[0]
        if key in SUITE_SET_KEYS:
            raise UserError(f"--reppo-set {kv}: {key} is set by the suite ({SUITE_SET_KEYS[key]})")
    hidden = parse_hidden(a.pqn_hidden)
    ppo_set = list(a.ppo_set)
    for kv in ppo_set:
        if "=" not in kv or not kv.partition("=")[0]:
            raise UserError(f"--ppo-set {kv!r} must look like key=value (a brax ppo.train "
                            f"argument)")
    for algo, module, extra in (("ppo", "brax", "jax"), ("pqn", "rejax", "baselines")):
        if algo in a.algos and importlib.util.find_spec(module) is None:
            raise UserError(f"--algos {algo} needs the {module} package: pip install -e "
                            f"'.[{extra}]'")

    plans: dict[str, TaskPlan] = {}
    for t, spec in specs.items():
        preset, why = _choose_preset(t, spec, a.preset, rule)
        backend = "jax" if "jax" in spec.backends else spec.backends[0]
        plans[t] = TaskPlan(t, spec, budgets[t], preset, why, backend)
    jobs: list[Job] = []
    for seed in a.seeds:
        for t, plan in plans.items():
            want = interval or max(1, plan.budget // a.evals)
            for algo in a.algos:
                common = {"algo": algo, "task": t, "seed": seed, "budget": plan.budget,
                          "eval_episodes": a.eval_episodes}
                if algo == "reppo":
                    cfg = _reppo_config(plan, seed, 1, a.eval_episodes, a.reppo_set)
                    per_iter = env_steps_per_iteration(cfg.rollout.num_envs, cfg.rollout.num_steps,
                                                       cfg.env.action_repeat)
                    every = _whole(want, per_iter)
                    _reppo_config(plan, seed, every, a.eval_episodes, a.reppo_set)
                    spec_ = {**common, "preset": plan.preset, "backend": plan.backend,
                             "reppo_set": list(a.reppo_set), "eval_interval": every}
                elif algo == "pqn":
                    from benchmarks.pqn import PQN_MINATAR

                    per_iter = PQN_MINATAR["num_envs"] * PQN_MINATAR["num_steps"]
                    spec_ = {**common, "hidden": list(hidden),
                             "eval_interval": _whole(want, per_iter)}
                else:
                    spec_ = {**common, "num_envs": a.ppo_num_envs, "ppo_set": ppo_set,
                             "eval_interval": want}
                jobs.append(Job(algo, t, seed, spec_, a.out))
    return plans, jobs


# ----------------------------------------------------------------------------------------------
# manifest
# ----------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("reppo", "numpy", "jax", "jaxlib", "flax", "optax", "brax", "playground",
                "mujoco", "gymnax", "rejax", "torch"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
        if head.returncode == 0:
            out["reppo_commit"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _machine() -> dict[str, Any]:
    """The machine's CPU, cores, memory, NVIDIA GPUs and its load when the invocation started
    (other processes slow every job's wall-clock; no host name, no paths)."""
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "load_average_1min_at_start": round(os.getloadavg()[0], 2)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            if r.returncode == 0 and r.stdout.strip():
                info["gpus"] = r.stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def read_manifest(out: Path) -> dict[str, Any]:
    """``DIR/jobs.json`` (an empty manifest if there is none)."""
    path = out / MANIFEST
    if not path.exists():
        return {"format": 1, "tasks": {}, "jobs": {}, "invocations": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e}); it is the suite's record of the jobs: "
                        f"restore it or use another --out") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
        raise UserError(f"{path} is not a benchmark suite manifest (no 'jobs' object)")
    data.setdefault("tasks", {})
    data.setdefault("invocations", [])
    return data


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, out / MANIFEST)


def _command_text(a: argparse.Namespace) -> list[str]:
    """The run command as given, with the output directory as DIR (no machine paths)."""
    cmd = ["python", "-m", "benchmarks.suite", "run", "--tasks", *a.tasks, "--algos", *a.algos,
           "--seeds", *map(str, a.seeds), "--budget", *a.budget, "--jobs", str(a.jobs),
           "--eval-episodes", str(a.eval_episodes)]
    cmd += ["--eval-interval", a.eval_interval] if a.eval_interval else ["--evals", str(a.evals)]
    if a.preset:
        cmd += ["--preset", a.preset]
    for r in a.preset_rule or []:
        cmd += ["--preset-rule", r]
    for kv in a.reppo_set:
        cmd += ["--reppo-set", kv]
    if "pqn" in a.algos:
        cmd += ["--pqn-hidden", a.pqn_hidden]
    if "ppo" in a.algos:
        cmd += ["--ppo-num-envs", str(a.ppo_num_envs)]
        for kv in a.ppo_set:
            cmd += ["--ppo-set", kv]
    return cmd + ["--out", "DIR"]


# ----------------------------------------------------------------------------------------------
# curves
# ----------------------------------------------------------------------------------------------


def write_curve(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """Write a curve CSV atomically (a complete file or none): the columns of
    :data:`CURVE_COLUMNS` present in ``rows`` (``success`` only where some row has it)."""
    cols = [c for c in CURVE_COLUMNS if c != "success" or any("success" in r for r in rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(c, r.get(c)) for c in cols])
    os.replace(tmp, path)


def _cell(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if col == "env_steps":
        return str(int(v))
    if col == "wall_s":
        return f"{float(v):.3f}"
    return repr(float(v))


def reppo_curve_rows(run_dir: Path) -> list[dict[str, float]]:
    """The eval points of a REPPO run directory's metrics.jsonl (``eval/return_mean``, and
    ``eval/success_rate`` where present)."""
    from reppo_common.curves import load_run

    ret = load_run(run_dir)
    rows = [{"env_steps": s, "wall_s": w, "return": v}
            for s, w, v in zip(ret.steps, ret.wall_s, ret.values)]
    try:
        suc = load_run(run_dir, "eval/success_rate")
    except UserError:
        return rows
    by_step = dict(zip(suc.steps, suc.values))
    for r in rows:
        r["success"] = by_step.get(r["env_steps"], float("nan"))
    return rows


# ----------------------------------------------------------------------------------------------
# running the jobs
# ----------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a job process (Linux): receive SIGTERM when the suite process dies, however it dies, so
    no job outlives it (a REPPO job then checkpoints and exits)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _job_config(job: Job) -> dict[str, Any]:
    """What a finished job actually trained with, for the manifest: the REPPO run's
    config.json, or the baseline's facts file (its full config and the env steps trained)."""
    path = job.run_dir / "config.json" if job.algo == "reppo" else job.out / job.rel(RUNS, ".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    log: Any
    t0: float
    resumed: bool


@dataclass
class Runner:
    """Runs the jobs, at most ``jobs`` at a time, keeping the manifest up to date."""

    out: Path
    manifest: dict[str, Any]
    jobs: int
    env: dict[str, str]
    running: list[_Running] = field(default_factory=list)
    stop_signal: str | None = None
    failed: list[Job] = field(default_factory=list)
    interrupted: list[Job] = field(default_factory=list)
    done: int = 0

    def _entry(self, job: Job) -> dict[str, Any]:
        return self.manifest["jobs"].setdefault(job.key, {})

    def start(self, job: Job) -> None:
        resume = job.algo == "reppo" and (job.run_dir / "config.json").is_file()
        cmd = job.command(resume)
        job.log.parent.mkdir(parents=True, exist_ok=True)
        if job.algo != "reppo":
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(job.log, "a")
        entry = self._entry(job)
        entry["attempts"] = entry.get("attempts", 0) + 1
        log.write(f"=== {datetime.now().isoformat(timespec='seconds')} attempt "
                  f"{entry['attempts']}{' (resume)' if resume else ''}: "
                  f"{shlex.join(['python', *cmd[1:]])}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=self.out, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
        entry.update(status="running", command=shlex.join(["python", *cmd[1:]]))
        write_manifest(self.out, self.manifest)
        self.running.append(_Running(job, proc, log, time.monotonic(), resume))
        print(f"start  {job.key}{' (resuming its checkpoint)' if resume else ''}", flush=True)

    def finish(self, r: _Running, rc: int) -> None:
        r.log.close()
        job, entry = r.job, self._entry(r.job)
        wall = time.monotonic() - r.t0
        entry["wall_s_last_attempt"] = round(wall, 1)
        entry["returncode"] = rc
        if rc == 0:
            try:
                if job.algo == "reppo":
                    write_curve(job.curve, reppo_curve_rows(job.run_dir))
                if not job.curve.is_file():
                    raise UserError("it exited 0 but wrote no curve file")
            except UserError as e:
                rc = -1
                with open(job.log, "a") as f:
                    f.write(f"suite: {e}\n")
        if rc == 0:
            self.done += 1
            entry["config"] = _job_config(job)
            rows = read_curve(job.curve)
            entry.update(status="done", evals=len(rows),
                         env_steps=int(rows[-1]["env_steps"]) if rows else 0)
            last = rows[-1]["return"] if rows else float("nan")
            print(f"done   {job.key}: {len(rows)} evals, final return {last:.4g} at "
                  f"{entry['env_steps']:,} env steps ({wall:.0f} s)", flush=True)
        elif self.stop_signal is not None:
            entry["status"] = "interrupted"
            self.interrupted.append(job)
            print(f"stopped {job.key} (exit {rc}); rerun the command to "
                  f"{'resume' if job.algo == 'reppo' else 'restart'} it", flush=True)
        else:
            entry["status"] = "failed"
            self.failed.append(job)
            print(f"FAILED {job.key} (exit {rc}); log: {job.log}", flush=True)
        write_manifest(self.out, self.manifest)

    def poll(self) -> None:
        for r in list(self.running):
            rc = r.proc.poll()
            if rc is not None:
                self.running.remove(r)
                self.finish(r, rc)

    def request_stop(self, signum: int, _frame: Any = None) -> None:
        """First SIGINT/SIGTERM: SIGTERM to every running job (a REPPO job finishes its
        iteration and checkpoints), no new job starts. A second one: SIGKILL (a REPPO job then
        resumes from its last periodic checkpoint)."""
        again = self.stop_signal is not None
        if not again:
            self.stop_signal = signal.Signals(signum).name
            print(f"\nsuite: {self.stop_signal}: stopping the running jobs (REPPO jobs write a "
                  f"checkpoint first; signal again to kill them); rerun the same command to "
                  f"resume", flush=True)
        for r in self.running:
            try:
                r.proc.send_signal(signal.SIGKILL if again else signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self, todo: Sequence[Job]) -> None:
        queue = list(todo)
        while (queue and self.stop_signal is None) or self.running:
            while queue and self.stop_signal is None and len(self.running) < self.jobs:
                self.start(queue.pop(0))
            time.sleep(0.2)
            self.poll()


def cmd_run(a: argparse.Namespace) -> int:
    out: Path = a.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory (new or a previous run's, to "
                        f"resume it)")
    plans, jobs = plan_jobs(a)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {out}: {e.strerror or e}") from None
    from reppo_common.runs import RunLock

    lock = RunLock(out)
    try:
        lock.acquire()
    except UserError:
        holder = (out / ".lock").read_text().strip() or "a process that is starting"
        raise UserError(f"--out {out} is in use by another suite run ({holder}: PID, host); "
                        f"wait for it or use another --out") from None
    try:
        return _run_locked(a, out, plans, jobs)
    finally:
        lock.release()


def _run_locked(a: argparse.Namespace, out: Path, plans: dict[str, TaskPlan],
                jobs: list[Job]) -> int:
    manifest = read_manifest(out)
    for job in jobs:
        old = manifest["jobs"].get(job.key, {}).get("spec")
        if old is not None and old != job.spec:
            diff = sorted(k for k in set(old) | set(job.spec) if old.get(k) != job.spec.get(k))
            raise UserError(
                f"{out} already holds job {job.key} with other settings ({', '.join(diff)}: "
                f"{', '.join(f'{old.get(k)!r} -> {job.spec.get(k)!r}' for k in diff)}); rerun "
                f"with the same settings to resume, or use another --out")
    for t, p in plans.items():
        manifest["tasks"][t] = {"dir": task_dir(t), "budget": p.budget,
                                "action_space": p.spec.action_space,
                                **({"preset": p.preset, "preset_source": p.preset_source,
                                    "backend": p.backend} if "reppo" in a.algos else {})}
    manifest["algos"] = list(dict.fromkeys([*manifest.get("algos", []), *a.algos]))
    manifest["invocations"].append({
        "started": datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(_command_text(a)),
        "versions": _versions(), "machine": _machine()})
    todo = []
    for job in jobs:
        entry = manifest["jobs"].setdefault(job.key, {})
        entry.update(spec=job.spec, curve=job.rel(CURVES, ".csv"), log=job.rel(LOGS, ".log"))
        if job.algo == "reppo":
            entry["run_dir"] = job.rel(RUNS, "")
        if job.curve.is_file():
            print(f"skip   {job.key} (finished: {job.rel(CURVES, '.csv')})")
            entry.setdefault("status", "done")
        else:
            todo.append(job)
    write_manifest(out, manifest)
    print(f"{len(jobs)} jobs in {out}: {len(jobs) - len(todo)} finished, {len(todo)} to run, "
          f"{min(a.jobs, max(1, len(todo)))} at a time")
    for t, p in plans.items():
        extra = f", preset {p.preset} ({p.preset_source})" if "reppo" in a.algos else ""
        print(f"  {t}: budget {p.budget:,} env steps{extra}")

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(Path.cwd())] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONUNBUFFERED", "1")
    runner = Runner(out, manifest, a.jobs, env)
    old = {s: signal.signal(s, runner.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        runner.run(todo)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    ok = len(jobs) - len(todo) + runner.done
    print(f"{ok} of {len(jobs)} jobs finished"
          + (f"; {len(runner.failed)} failed: " + ", ".join(
              f"{j.key} (log {j.log})" for j in runner.failed) if runner.failed else "")
          + (f"; {len(runner.interrupted)} stopped (rerun to resume)" if runner.interrupted
             else ""))
    if runner.failed:
        return 1
    if runner.stop_signal is not None:
        return EXIT_STOPPED
    return 0


# ----------------------------------------------------------------------------------------------
# one baseline job (a process started by `run`)
# ----------------------------------------------------------------------------------------------


def read_curve(path: Path) -> list[dict[str, float]]:
    """The rows of a curve CSV as floats (empty cells -> NaN); UserError naming the file if
    it is not one."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if not rows or rows[0][:3] != list(CURVE_COLUMNS[:3]):
        raise UserError(f"{path} is not a suite curve file (header must start with "
                        f"{','.join(CURVE_COLUMNS[:3])})")
    head = rows[0]
    out = []
    for i, r in enumerate(rows[1:], 2):
        if len(r) != len(head):
            raise UserError(f"{path}:{i} has {len(r)} cells, the header {len(head)}")
        try:
            out.append({k: float(v) if v != "" else float("nan") for k, v in zip(head, r)})
        except ValueError:
            raise UserError(f"{path}:{i} holds a value that is not a number") from None
    return out


def cmd_job(a: argparse.Namespace) -> int:
    """Train one baseline job, appending each evaluation to ``<curve>.partial`` as it comes and
    renaming it to the curve file at the end; the facts (config, steps trained) go to
    ``--facts``."""
    curve = Path(a.curve)
    curve.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, float]] = []
    partial = curve.with_name(curve.name + ".partial")
    partial.unlink(missing_ok=True)

    def on_eval(p: dict[str, float]) -> None:
        rows.append({"env_steps": p["env_steps"], "wall_s": p["wall_s"], "return": p["return"]})
        new = not partial.exists()
        with open(partial, "a") as f:
            if new:
                f.write(",".join(CURVE_COLUMNS[:3]) + "\n")
            f.write(",".join(_cell(c, rows[-1][c]) for c in CURVE_COLUMNS[:3]) + "\n")

    from reppo_jax.train import enable_compilation_cache

    enable_compilation_cache()  # the persistent compile cache REPPO jobs use, same policy
    if a.algo == "pqn":
        from benchmarks.pqn import run_pqn

        facts = run_pqn(a.task.rpartition("/")[2], a.seed, a.budget, a.eval_interval,
                        a.eval_episodes, parse_hidden(a.pqn_hidden), on_eval)
    elif a.algo == "ppo":
        from benchmarks import compare_ppo

        num_evals = max(1, a.budget // a.eval_interval) + 1  # brax also evaluates at step 0
        argv = ["--env", a.task, "--seeds", str(a.seed), "--steps", str(a.budget),
                "--num-envs", str(a.ppo_num_envs), "--out", str(curve.parent),
                "--num-evals", str(num_evals), "--eval-episodes", str(a.eval_episodes),
                "--algos", "ppo"]
        for kv in a.ppo_set:
            argv += ["--ppo-set", kv]
        pa = compare_ppo.parse_args(argv)
        facts = compare_ppo.run_ppo(pa, a.seed, on_eval)
    else:
        raise UserError(f"job --algo must be ppo or pqn, got {a.algo!r}")
    facts = {k: v for k, v in facts.items() if k != "points"}
    Path(a.facts).write_text(json.dumps(facts, indent=1, default=str) + "\n")
    write_curve(curve, rows)
    partial.unlink(missing_ok=True)
    return 0


# ----------------------------------------------------------------------------------------------
# store
# ----------------------------------------------------------------------------------------------


def cmd_store(a: argparse.Namespace) -> int:
    """Copy DIR's curve files and jobs.json to DEST, then report there."""
    src, dest = Path(a.dir), Path(a.dest)
    _report_options(a, {})  # invalid report options: an error before anything is copied
    curves = sorted((src / CURVES).rglob("*.csv")) if (src / CURVES).is_dir() else []
    if not curves:
        raise UserError(f"{src} holds no finished curves ({CURVES}/<algo>/<task>/seed<k>.csv); "
                        f"is it a `suite run --out` directory?")
    if not (src / MANIFEST).is_file():
        raise UserError(f"{src} has no {MANIFEST}; store needs the record of the jobs")
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} is a file; give a directory")
    if dest.exists() and any(dest.iterdir()):
        if not a.replace:
            raise UserError(f"{dest} is not empty; pass --replace to replace its stored data")
        shutil.rmtree(dest / CURVES, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)
    for c in curves:
        target = dest / c.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(c, target)
    manifest = read_manifest(src)
    # the report options given here become the stored copy's defaults, so that a plain
    # `report DEST` regenerates exactly what is stored
    manifest["report"] = {k: v for k, v in (("threshold", a.threshold), ("norm", a.norm),
                                            ("at", a.at)) if v is not None}
    write_manifest(dest, manifest)
    print(f"stored {len(curves)} curves and {MANIFEST} in {dest}")
    return _report(a, dest, dest)


def cmd_versus(a: argparse.Namespace) -> int:
    """``versus``: :func:`benchmarks.suite_report.versus` of a suite directory, as markdown on
    stdout (and in ``--out``)."""
    from benchmarks.suite_report import format_versus, load_suite, versus

    if a.baseline == "reppo":
        raise UserError("--baseline must name the other algorithm (e.g. pqn or ppo), not reppo")
    curves, manifest = load_suite(Path(a.dir))
    text = format_versus(versus(curves, manifest, a.baseline,
                                parse_steps(a.level_at, "--level-at"),
                                [parse_steps(x, "--at") for x in a.at]))
    if a.out is not None:
        Path(a.out).write_text(text)
    print(text, end="")
    return 0


def _report_options(a: argparse.Namespace, stored: dict[str, Any]
                    ) -> tuple[float, dict[str, tuple[float, float]], list[int]]:
    """(threshold, norms, at) of a report: the command line's, else the stored copy's
    (``store`` records them), else threshold 0.9, no --norm, no --at. UserError if invalid."""
    from benchmarks.suite_report import parse_norms

    threshold = a.threshold if a.threshold is not None else stored.get("threshold", 0.9)
    norm = parse_norms(a.norm if a.norm is not None else stored.get("norm", []))
    at = [parse_steps(str(x), "--at") for x in (a.at if a.at is not None
                                                 else stored.get("at", []))]
    if not 0.0 < threshold <= 1.0:
        raise UserError(f"--threshold must lie in (0, 1], got {threshold}")
    return threshold, norm, at


def _report(a: argparse.Namespace, src: Path, dest: Path) -> int:
    from benchmarks.suite_report import report

    if not Path(src).is_dir():
        raise UserError(f"{src} is not a directory (give a suite directory or a stored copy)")
    stored = read_manifest(src).get("report", {}) if (src / MANIFEST).is_file() else {}
    report(src, dest, *_report_options(a, stored))
    return 0


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


def _add_report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threshold", type=float, default=None,
                   help="fraction of a task's best return for the steps-to and reliable-success "
                        "columns (default 0.9, or what `store` recorded)")
    p.add_argument("--norm", nargs="+", default=None, metavar="TASK=LO:HI",
                   help="normalise TASK's (or a SUITE's) returns with [LO, HI] instead of "
                        "[0, best seen]")
    p.add_argument("--at", nargs="+", default=None, metavar="STEPS",
                   help="also report each algo's return at these env steps (last eval at or "
                        "before)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m benchmarks.suite", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    r = sub.add_parser("run", help="run (or resume) the jobs of a benchmark",
                       description="Run every (algo, task, seed) job; rerun to resume.")
    r.add_argument("--tasks", nargs="+", required=True, metavar="TASK")
    r.add_argument("--algos", nargs="+", default=["reppo"], metavar="ALGO",
                   help=f"from {', '.join(ALGOS)} (default reppo)")
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--budget", nargs="+", required=True, metavar="STEPS|TASK=STEPS",
                   help="env steps per job: one number for every task and/or TASK=STEPS")
    r.add_argument("--preset", default=None,
                   help="REPPO preset for every task (default: each env's default preset)")
    r.add_argument("--preset-rule", action="append", metavar="PATTERN=PRESET",
                   help="tasks matching the glob PATTERN get PRESET (at most one rule)")
    r.add_argument("--reppo-set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="REPPO config override for every REPPO job (repeatable)")
    r.add_argument("--evals", type=int, default=20,
                   help="evaluations per job (budget / evals, whole iterations; default 20)")
    r.add_argument("--eval-interval", default=None, metavar="STEPS",
                   help="evaluate every STEPS env steps instead (whole iterations)")
    r.add_argument("--eval-episodes", type=int, default=16,
                   help="episodes per evaluation, every algorithm (default 16)")
    r.add_argument("--jobs", type=int, default=1, help="jobs running at once (default 1)")
    r.add_argument("--out", type=Path, required=True, help="the suite directory")
    r.add_argument("--pqn-hidden", default="128,128", help="PQN Q-network widths")
    r.add_argument("--ppo-num-envs", type=int, default=128, help="Brax PPO parallel envs")
    r.add_argument("--ppo-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a brax ppo.train argument (benchmarks.compare_ppo)")

    rep = sub.add_parser("report", help="table, summary and figure of a suite directory")
    rep.add_argument("dir", type=Path, help="a suite directory or a stored copy")
    rep.add_argument("--out", type=Path, default=None,
                     help="where to write table.md, summary.json, curves.png (default: DIR)")
    _add_report_options(rep)

    st = sub.add_parser("store", help="copy the curves and jobs.json to DEST and report there")
    st.add_argument("dir", type=Path)
    st.add_argument("dest", type=Path, help="e.g. docs/benchmarks/<name>")
    st.add_argument("--replace", action="store_true", help="replace data already in DEST")
    _add_report_options(st)

    v = sub.add_parser("versus", help="REPPO against one baseline at the baseline's level",
                       description="Per task: the baseline's mean return at --level-at env "
                                   "steps is the level; when each run first reaches it "
                                   "(env steps, wall-clock), collapses after it, and the mean "
                                   "returns at --at.")
    v.add_argument("dir", type=Path, help="a suite directory or a stored copy")
    v.add_argument("--baseline", required=True, help="the baseline algo (e.g. pqn, ppo)")
    v.add_argument("--level-at", required=True, metavar="STEPS",
                   help="env steps at which the baseline's mean return sets the level")
    v.add_argument("--at", nargs="+", default=[], metavar="STEPS",
                   help="also compare the mean returns at these env steps")
    v.add_argument("--out", type=Path, default=None, help="also write the markdown here")

    j = sub.add_parser("job", help="(internal) one baseline job; `run` starts these")
    j.add_argument("--algo", required=True)
    j.add_argument("--task", required=True)
    j.add_argument("--seed", type=int, required=True)
    j.add_argument("--budget", type=int, required=True)
    j.add_argument("--eval-interval", type=int, required=True)
    j.add_argument("--eval-episodes", type=int, required=True)
    j.add_argument("--curve", required=True)
    j.add_argument("--facts", required=True)
    j.add_argument("--pqn-hidden", default="128,128")
    j.add_argument("--ppo-num-envs", type=int, default=128)
    j.add_argument("--ppo-set", action="append", default=[])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        a = build_parser().parse_args(argv)
        if a.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        if a.command == "run":
            return cmd_run(a)
        if a.command == "job":
            return cmd_job(a)
        if a.command == "store":
            return cmd_store(a)
        if a.command == "versus":
            return cmd_versus(a)
        return _report(a, a.dir, a.out or a.dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
