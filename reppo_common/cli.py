"""The ``reppo`` command: ``train``, ``eval``, ``envs``, ``presets``, and the analysis tools
``plot``, ``aggregate``, ``ablate`` (modules ``reppo_common.<name>`` with their own options).

Config overrides are given as ``--section.field=value`` (see ``reppo presets`` and
spec/README.md for the fields). Mistakes (unknown env, invalid value, missing extra) print one
line ``error: ...`` to stderr and exit with status 2; ``--debug`` shows the traceback instead.
Backends are imported lazily by name (``reppo_<name>.backend``), so only the chosen framework
needs to be installed.

``reppo train`` holds the run directory's writer lock (:class:`reppo_common.runs.RunLock`) and
stops cleanly on SIGTERM, SIGUSR1 (SLURM ``--signal``) and Ctrl-C: it finishes the current
iteration, writes a checkpoint, flushes the metrics and exits with status 75. The exit statuses
are listed in :mod:`reppo_common.errors` and docs/operations.md.
"""

import argparse
import errno
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from spec.config import (EVAL_POLICIES, ConfigError, ReppoConfig, apply_overrides,
                         override_pairs)
from spec.presets import DEFAULT_PRESET, PRESETS, preset_config

from reppo_common.checkpoints import RESUME_CHANGEABLE, latest_params_file
from reppo_common.errors import (EXIT_ABORTED, EXIT_DIVERGED, EXIT_OK, EXIT_STOPPED,
                                 EXIT_USAGE, TrainingDiverged, UserError)
from reppo_common.registry import SUITES, check_value_range, config_flags, list_envs, resolve_env
from reppo_common.seeding import VIDEO_SEED_OFFSET

BACKENDS = ("jax", "torch")
"""Backend names ``--backend`` accepts (package ``reppo_<name>``)."""

FRAMEWORK_EXTRA = {"jax": "jax", "torch": "torch"}
FRAMEWORK_MODULE = {"jax": "jax", "torch": "torch"}
"""The framework each backend imports (lazily, inside its functions): imported up front by
:func:`load_backend` so that a missing one is a one-line error before any run dir is touched."""

EXIT_BROKEN_PIPE = 128 + 13
"""Exit status when the output's reader closed the pipe early (as for a process killed by SIGPIPE)."""

MAX_STEPS = 10**13
"""Upper bound of ``--steps`` (far above any real run; larger is a typo)."""

MAX_EVAL_EPISODES = 10_000
"""Upper bound of ``reppo eval --episodes``: the episodes run as parallel envs."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
"""Signals after which ``reppo train`` finishes the iteration, checkpoints and exits 75."""

TOOLS = {
    "plot": "learning curves of run directories to a PNG (mean and CI over seeds)",
    "aggregate": "one score per run, aggregated over seeds and tasks (IQM, CIs; CSV/JSON)",
    "ablate": "run and aggregate the paper's ablations (spec.ablations) over tasks and seeds",
}
"""Subcommands implemented by ``reppo_common.<name>.main(argv)``, which parses its own options."""

# --------------------------------------------------------------------------------------------
# Backend loading
# --------------------------------------------------------------------------------------------


def load_backend(name: str) -> Any:
    """Import ``reppo_<name>.backend`` and return its ``get_backend()``; one-line UserError if the
    name is unknown, the backend package is not there yet, or its framework is not installed."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    module_name = f"reppo_{name}.backend"
    try:
        importlib.import_module(FRAMEWORK_MODULE[name])
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name in (module_name, f"reppo_{name}"):
            raise UserError(
                f"backend {name!r} is not available yet ({module_name} is missing in this "
                f"checkout); choose another --backend"
            ) from None
        raise UserError(
            f"backend {name!r} needs the {FRAMEWORK_EXTRA[name]} extra (missing module "
            f"{e.name!r}): pip install -e '.[{FRAMEWORK_EXTRA[name]}]'"
        ) from None
    except ImportError as e:
        raise UserError(
            f"backend {name!r} could not import its framework ({e}); reinstall with "
            f"pip install -e '.[{FRAMEWORK_EXTRA[name]}]'"
        ) from None
    if not hasattr(module, "get_backend"):
        raise UserError(f"{module_name} has no get_backend(); the backend is incomplete")
    return module.get_backend()


# --------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------


class _ArgParser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line UserErrors (printed by main like any other)."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _build_parser() -> argparse.ArgumentParser:
    common = _ArgParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors")

    p = _ArgParser(
        prog="reppo",
        description="REPPO: Relative Entropy Pathwise Policy Optimization.",
        epilog="Config overrides: --section.field=value, e.g. --rollout.num_envs=32 "
               "--loss.kl_target=0.05 (fields: spec/README.md).",
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", parents=[common], help="train an agent",
                       description="Train REPPO. Extra --section.field=value args override the "
                                   "config (applied after the preset).")
    t.add_argument("--backend", default=None,
                   help="jax (default) or torch; with --resume: the backend that trained the run")
    t.add_argument("--env", default=None,
                   help="suite/Name (default dmc/CartpoleBalance), or module:suite/Name for an "
                        "env registered by your module (docs/envs.md)")
    t.add_argument("--preset", default=None,
                   help="config preset (default: the env's, e.g. 'cpu' for dmc)")
    t.add_argument("--seed", type=_int_seed, default=None, help="run.seed (0 .. 2**31-1)")
    t.add_argument("--steps", type=_int_steps, default=None,
                   help="rollout.total_env_steps (accepts 1e6)")
    t.add_argument("--devices", type=int, default=None,
                   help="run.devices: data-parallel device count (JAX: default all devices; "
                        "torch: the torchrun world size)")
    t.add_argument("--run-dir", default=None, help="where to write the run (default runs/...)")
    t.add_argument("--resume", metavar="RUN_DIR", default=None,
                   help="continue the run in RUN_DIR from its latest checkpoint")
    t.add_argument("--log", default=None,
                   help="extra metric sinks, comma separated: tensorboard,wandb "
                        "(metrics.jsonl is always written)")
    t.add_argument("--no-progress", action="store_true", help="disable the progress bar")

    e = sub.add_parser("eval", parents=[common], help="evaluate a saved run",
                       description="Evaluate the policy of a run's checkpoint and print the "
                                   "results (metrics.jsonl is not modified).")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--backend", default=None, help="default: the backend that trained the run")
    e.add_argument("--episodes", type=_int_episodes, default=None,
                   help=f"default: run.eval_episodes (1 .. {MAX_EVAL_EPISODES:,})")
    e.add_argument("--checkpoint", default=None, help="checkpoint path (default: latest)")
    e.add_argument("--policy", choices=EVAL_POLICIES, default=None,
                   help="mode: tanh(μ) / argmax π; sample: actions drawn from π (default: the "
                        "run's run.eval_policy)")
    e.add_argument("--video", metavar="OUT.mp4", default=None,
                   help="also write an MP4 of one deterministic-policy episode (dmc/ tasks; "
                        "renders on CPU with MUJOCO_GL=egl)")

    s = sub.add_parser("envs", parents=[common], help="list environments")
    s.add_argument("--suite", default=None, help=f"one of: {', '.join(SUITES)}")

    sub.add_parser("presets", parents=[common], help="list config presets")
    for name, text in TOOLS.items():  # listed here; main() hands their arguments to the tool
        sub.add_parser(name, add_help=False, help=text)
    return p


def _int_steps(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid step count {text!r}") from None
    if not v.is_integer() or v < 1:
        raise argparse.ArgumentTypeError(f"step count must be a positive integer, got {text!r}")
    if v > MAX_STEPS:
        raise argparse.ArgumentTypeError(f"step count {text!r} is above the limit {MAX_STEPS:.0e}")
    return int(v)


def _int_seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: an integer 0 .. 2**31-1") \
            from None
    if not 0 <= v <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"seed {text} is out of range 0 .. 2**31-1")
    return v


def _int_episodes(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid episode count {text!r}") from None
    if not 1 <= v <= MAX_EVAL_EPISODES:
        raise argparse.ArgumentTypeError(
            f"episode count must be 1 .. {MAX_EVAL_EPISODES:,} (they run as parallel envs), "
            f"got {text}")
    return v


def _nonempty(args: argparse.Namespace, *names: str) -> None:
    """``--env ""`` etc. is a mistake (a shell variable that was not set), not the default."""
    for name in names:
        value = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if value is not None and not value.strip():
            raise UserError(f"{name} is empty; give a value or leave the flag out for the "
                            f"default")


def _collect_overrides(extras: Sequence[str]) -> list[str]:
    """Turn leftover args into ``section.field=value`` strings; anything else is an error."""
    out: list[str] = []
    i = 0
    extras = list(extras)
    while i < len(extras):
        tok = extras[i]
        if tok.startswith("--") and "." in tok.split("=", 1)[0]:
            if "=" in tok:
                out.append(tok[2:])
            elif i + 1 < len(extras) and not extras[i + 1].startswith("--"):
                out.append(f"{tok[2:]}={extras[i + 1]}")
                i += 1
            else:
                raise UserError(f"override {tok} needs a value: {tok}=VALUE")
        else:
            raise UserError(
                f"unrecognised argument {tok!r}; config overrides look like "
                f"--section.field=value (see `reppo train --help`)"
            )
        i += 1
    return out


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _build_train_config(args: argparse.Namespace, overrides: list[str]) -> tuple[ReppoConfig, Any]:
    env_name = args.env or "dmc/CartpoleBalance"
    over_env = [v for k, v in override_pairs(overrides) if k == "env.name"]
    if over_env:  # --env.name=... is --env by another spelling: same check, no conflict
        named = resolve_env(str(over_env[-1]))
        if args.env is not None and resolve_env(args.env).full_name != named.full_name:
            raise UserError(f"--env {args.env} and --env.name={over_env[-1]} disagree; "
                            f"give the environment once")
        env_name = str(over_env[-1])  # as typed: a module: prefix is kept
        overrides = [o for o in overrides if o.split("=", 1)[0] != "env.name"]
    env = resolve_env(env_name)
    preset = args.preset or env.default_preset or DEFAULT_PRESET
    flags = config_flags(env, env_name)  # env.name and the env's declared γ / value support
    if args.seed is not None:
        flags.append(f"run.seed={args.seed}")
    if args.steps is not None:
        flags.append(f"rollout.total_env_steps={args.steps}")
    if args.devices is not None:
        flags.append(f"run.devices={args.devices}")
    if args.log is not None:
        flags.append("run.log=" + _log_value(args.log))
    cfg = preset_config(preset, flags + overrides)
    check_value_range(cfg, env.reward_range, env.full_name)
    return cfg, env


def _log_value(text: str) -> str:
    """``--log`` → the ``run.log`` override: jsonl first (always written), each sink once."""
    sinks = [s.strip() for s in text.split(",") if s.strip()]
    return ",".join(dict.fromkeys(["jsonl", *sinks]))


def _resume_config(args: argparse.Namespace, overrides: list[str], run: Any) -> tuple[ReppoConfig, Any]:
    cfg = run.load_config()
    for flag, value in (("--env", args.env), ("--preset", args.preset), ("--seed", args.seed),
                        ("--run-dir", args.run_dir)):
        if value is not None:
            raise UserError(f"{flag} cannot be combined with --resume (the run's config.json "
                            f"fixes it)")
    flags: list[str] = []
    if args.steps is not None:
        flags.append(f"rollout.total_env_steps={args.steps}")
    if args.devices is not None:
        flags.append(f"run.devices={args.devices}")
    if args.log is not None:
        flags.append("run.log=" + _log_value(args.log))
    pairs = override_pairs(flags + overrides)
    for key, _ in pairs:
        if key not in RESUME_CHANGEABLE:
            raise UserError(f"{key} cannot be changed when resuming; allowed: "
                            f"{', '.join(sorted(RESUME_CHANGEABLE))}")
    new = apply_overrides(cfg, dict(pairs)) if pairs else cfg
    return new, resolve_env(new.env.name)


class _StopRequest:
    """Turns SIGTERM, SIGUSR1 and Ctrl-C into a request to stop after the current iteration
    (``hooks.should_stop``); a second Ctrl-C aborts at once (KeyboardInterrupt, exit 130)."""

    def __init__(self, announce: bool) -> None:
        self.signame: str | None = None
        self._announce = announce
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signame is not None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signame is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return  # already stopping; the checkpoint is on its way
        self.signame = signal.Signals(signum).name
        if self._announce:
            again = " (Ctrl-C again to abort)" if signum == signal.SIGINT else ""
            # os.write: a handler may interrupt a print to stderr (progress bar)
            os.write(2, f"\nreppo: {self.signame}: stopping after this iteration and writing a "
                        f"checkpoint{again}\n".encode())


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    """``reppo train``: the stop signals are caught from the start, so a SIGTERM during setup
    still ends in a clean exit 75."""
    _nonempty(args, "--env", "--preset", "--run-dir", "--resume", "--backend")
    stop = _StopRequest(announce=True)
    stop.install()
    try:
        return _train(args, overrides, stop)
    finally:
        stop.restore()


def _steps_per_iteration(cfg: ReppoConfig) -> int:
    from spec.derived import env_steps_per_iteration

    return env_steps_per_iteration(cfg.rollout.num_envs, cfg.rollout.num_steps,
                                   cfg.env.action_repeat)


def _note_rounding(cfg: ReppoConfig) -> None:
    """Say so when total_env_steps is not a whole number of iterations (the run trains the
    whole iterations below it)."""
    per_iter = _steps_per_iteration(cfg)
    total = cfg.rollout.total_env_steps
    if total % per_iter:
        n = max(1, total // per_iter)
        print(f"note: rollout.total_env_steps={total:,} is not a multiple of the {per_iter:,} env "
              f"steps of one iteration (num_envs x num_steps x action_repeat); training "
              f"{n * per_iter:,} ({n:,} iterations)", file=sys.stderr)


def _train(args: argparse.Namespace, overrides: list[str], stop: _StopRequest) -> int:
    from reppo_common.runs import RunDir, default_run_dir

    if args.backend is not None and args.backend not in BACKENDS:
        raise UserError(f"unknown backend {args.backend!r}; choose one of: {', '.join(BACKENDS)}")
    if args.resume:
        run = RunDir.open_existing(args.resume)
        cfg, env = _resume_config(args, overrides, run)
        meta_backend = run.load_meta().get("backend")
        if args.backend is None:
            args.backend = meta_backend if meta_backend in BACKENDS else "jax"
        elif meta_backend and meta_backend != args.backend:
            print(f"note: run was trained with backend {meta_backend!r}, resuming with "
                  f"{args.backend!r}", file=sys.stderr)
    else:
        args.backend = args.backend or "jax"
        cfg, env = _build_train_config(args, overrides)
    if args.backend not in env.backends:
        raise UserError(
            f"backend {args.backend!r} has no adapter for {env.full_name}; use --backend "
            f"{' or '.join(env.backends)}"
        )
    backend = load_backend(args.backend)
    if not backend.supports_env(env.full_name):
        raise UserError(f"backend {args.backend!r} does not support {env.full_name} yet")
    if not getattr(backend, "is_main_process", lambda: True)():
        resume = bool(args.resume) and run.has_checkpoint()
        return _train_worker(backend, cfg, run.path if args.resume else None, resume, stop)
    _note_rounding(cfg)

    resumed = None
    resume = bool(args.resume)
    if args.resume:
        run.lock.acquire()  # one writer: nothing below runs while another process trains
    else:
        run = None
    try:
        if args.resume:
            _check_writable(run)
        if args.resume and not run.has_checkpoint():
            # a start that failed before its first checkpoint: begin it again, same directory
            from reppo_common.checkpoints import remove_temp_files, rewind_metrics

            resume = False
            rewind_metrics(run.metrics_path, 0)
            remove_temp_files(run.checkpoints_dir)
            _write_config(run, cfg)
            print(f"note: {run.path} has no checkpoint yet (it stopped before the first one); "
                  f"starting it from the beginning", file=sys.stderr)
        elif args.resume:
            # validate the checkpoint completely before anything in the run dir is modified
            check = getattr(backend, "check_resume", None)
            resumed = check(cfg, run.path) if check is not None else None
            if resumed is not None:
                per_iter = _steps_per_iteration(cfg)
                planned = max(1, cfg.rollout.total_env_steps // per_iter) * per_iter
                if planned < resumed.env_steps:
                    raise UserError(
                        f"--steps {cfg.rollout.total_env_steps:,} is below the "
                        f"{resumed.env_steps:,} env steps {run.path} has already trained; "
                        f"pass --steps >= {resumed.env_steps} (or leave it out)")
            _write_config(run, cfg)
            if resumed is not None:
                from reppo_common.checkpoints import rewind_metrics

                # records after the checkpoint were written by the killed process; the resumed
                # run writes them again
                rewind_metrics(run.metrics_path, resumed.env_steps)
                print(f"reppo: resuming from {resumed.manifest_path.name} (iteration "
                      f"{resumed.iteration}, {resumed.env_steps:,} env steps)", file=sys.stderr)
        else:
            path = Path(args.run_dir) if args.run_dir else default_run_dir(
                env.full_name, args.backend, cfg.run.seed)
            from reppo_common import __version__

            prepare = getattr(backend, "prepare", None)
            if prepare is not None:  # refuse a setup the trainer rejects before writing
                prepare(cfg, RunDir(path).path)
            run = RunDir.create(path, cfg, {"backend": args.backend, "env": env.full_name,
                                            "reppo_version": __version__})
        return _train_locked(args, cfg, env, backend, run, resumed, resume, stop)
    finally:
        if run is not None:
            run.lock.release()


def _check_writable(run: Any) -> None:
    """config.json and metrics.jsonl of a run to resume can be written (not read-only, not
    immutable): checked before either is modified, so a refusal changes nothing."""
    for path, mode in ((run.config_path, "r+b"), (run.metrics_path, "ab")):
        if path.exists() and not path.is_file():
            raise UserError(f"{path} is not a regular file (a directory, device or pipe)")
        try:
            open(path, mode).close()
        except OSError as e:
            raise UserError(f"cannot write {path}: {e.strerror or e}; the run directory must "
                            f"be writable to continue it") from None


def _write_config(run: Any, cfg: ReppoConfig) -> None:
    """Rewrite config.json if a resume changed it (e.g. --steps)."""
    if cfg != run.load_config():
        try:
            run.config_path.write_text(cfg.to_json() + "\n")
        except OSError as e:
            raise UserError(f"cannot write {run.config_path}: {e.strerror or e}") from None


def _train_locked(args: argparse.Namespace, cfg: ReppoConfig, env: Any, backend: Any, run: Any,
                  resumed: Any, resume: bool, stop: _StopRequest) -> int:
    """Train with the run directory's lock held; returns the exit status."""
    from spec.backend import TrainHooks

    from reppo_common.progress import Progress
    from reppo_common.runs import MetricsWriter
    from reppo_common.sinks import open_sinks

    if stop.requested:
        print(f"stopped: {stop.signame} before training started; nothing trained, run dir "
              f"{run.path}")
        return EXIT_STOPPED
    writer = MetricsWriter(run.metrics_path,
                           wall_offset=resumed.wall_s if resumed is not None else None)
    sinks: list[Any] = []
    best: dict[str, float | None] = {"eval": None}
    last_steps = {"n": 0}

    def emit(kind: str, metrics: Mapping[str, Any]) -> None:
        rec = writer.write({"kind": kind, **metrics})
        last_steps["n"] = int(rec.get("env_steps", last_steps["n"]) or 0)
        for s in sinks:
            s.write(rec)

    def on_eval(metrics: Mapping[str, Any]) -> None:
        emit("eval", metrics)
        r = metrics.get("eval/return_mean")
        if isinstance(r, (int, float)) and (best["eval"] is None or r > best["eval"]):
            best["eval"] = float(r)
        progress.update(int(metrics.get("env_steps", last_steps["n"])), metrics)

    def on_progress(env_steps: int, metrics: Mapping[str, Any]) -> None:
        last_steps["n"] = int(env_steps)
        progress.update(env_steps, metrics)

    hooks = TrainHooks(
        on_train_metrics=lambda m: emit("train", m),
        on_eval_metrics=on_eval,
        on_progress=on_progress,
        should_stop=lambda: stop.requested,
        wall_clock=lambda: writer.wall_s,
    )
    t0 = time.monotonic()
    print(f"reppo: training {env.full_name} with backend {args.backend} -> {run.path}",
          file=sys.stderr)
    try:
        sinks.extend(open_sinks(tuple(cfg.run.log), run.path, cfg.to_dict()))
        with Progress(cfg.rollout.total_env_steps, enabled=not args.no_progress) as progress:
            result = backend.train(cfg, run.path, hooks, resume=resume)
    finally:
        writer.close()
        for s in sinks:
            s.close()
    wall = time.monotonic() - t0
    steps = result.env_steps
    best_ret = result.best_eval_return if result.best_eval_return is not None else best["eval"]
    best_txt = f"{best_ret:.1f}" if best_ret is not None else "n/a"
    compile_txt = f" (compile {result.compile_s:.1f}s)" if result.compile_s is not None else ""
    if _finished(cfg, result) or not stop.requested:
        print(f"done: {steps:,} env steps, best eval return {best_txt}, wall {wall:.0f}s"
              f"{compile_txt}, run dir {run.path}")
        return EXIT_OK
    print(f"stopped: {stop.signame} after {steps:,} env steps (checkpoint written), best eval "
          f"return {best_txt}, wall {wall:.0f}s{compile_txt}, run dir {run.path}")
    print(f"continue with: reppo train --resume {run.path}")
    return EXIT_STOPPED


def _train_worker(backend: Any, cfg: ReppoConfig, run_path: Path | None, resume: bool,
                  stop: _StopRequest) -> int:
    """A data-parallel training process other than the main one (e.g. torchrun rank > 0): it
    trains in step with the others but writes nothing — no run directory, metrics, progress or
    summary (the main process does). ``run_path`` is the run being resumed (read only), else
    None. A stop signal stops it after the current iteration, as the main process."""
    from spec.backend import TrainHooks

    result = backend.train(cfg, run_path, TrainHooks(should_stop=lambda: stop.requested),
                           resume=resume)
    return EXIT_STOPPED if stop.requested and not _finished(cfg, result) else EXIT_OK


def _finished(cfg: ReppoConfig, result: Any) -> bool:
    """Whether ``result`` reached the run's last iteration (a stop requested during the last
    iteration still counts as finished)."""
    from reppo_common.driver import Schedule

    per_iter = _steps_per_iteration(cfg)
    planned = Schedule.of(cfg, per_iter).iterations * per_iter
    return result is not None and result.env_steps >= planned


# --------------------------------------------------------------------------------------------
# eval / envs / presets
# --------------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from reppo_common.runs import RunDir

    _nonempty(args, "--run-dir", "--backend", "--checkpoint", "--video")
    run = RunDir.open_existing(args.run_dir)
    cfg = run.load_config()
    name = args.backend or run.load_meta().get("backend") or "jax"
    episodes = args.episodes or cfg.run.eval_episodes
    if args.policy is not None:
        cfg = apply_overrides(cfg, {"run.eval_policy": args.policy})
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt is not None and not ckpt.exists():
        raise UserError(f"checkpoint {str(ckpt)!r} does not exist")
    params_file = _check_eval_params(run, ckpt, cfg)
    if args.video:
        if name != "jax":
            raise UserError(f"--video is implemented by the jax backend only (run backend "
                            f"{name!r}); pass --backend jax")
        if not args.video.lower().endswith(".mp4"):
            raise UserError(f"--video must name an .mp4 file, got {args.video!r}")
        if not cfg.env.name.startswith("dmc/"):
            raise UserError(f"--video supports MuJoCo (dmc/) tasks only, not {cfg.env.name}")
        _check_writable_file(Path(args.video))
        if params_file is None:
            raise UserError(f"no checkpoints in {run.checkpoints_dir} to record a video from")
        # MUJOCO_GL is read at mujoco's first import (by the backend's envs): headless EGL
        os.environ.setdefault("MUJOCO_GL", "egl")
    backend = load_backend(name)
    if args.video:  # fail fast, before evaluating, if this machine cannot render
        backend.check_video()
    try:
        results = backend.evaluate(cfg, run.path, episodes, ckpt)
    except FileNotFoundError as e:
        raise UserError(f"cannot evaluate {run.path}: {e}") from None
    print(f"eval {cfg.env.name} ({name}, {episodes} episodes) from {run.path}, policy "
          f"{cfg.run.eval_policy}")
    for k, v in results.items():
        print(f"  {k:<24} {v:.4g}" if isinstance(v, float) else f"  {k:<24} {v}")
    if args.video:
        v = backend.record_video(cfg, params_file, args.video,
                                 seed=cfg.run.seed + VIDEO_SEED_OFFSET)
        print(f"video {v['path']}: {v['frames']} frames at {v['fps']:.0f} fps, episode return "
              f"{v['return']:.1f}")
    return 0


def _check_writable_file(path: Path) -> None:
    """``path`` can be created or overwritten (checked before a long evaluation, not after)."""
    if path.is_dir():
        raise UserError(f"--video {str(path)!r} is a directory; name an .mp4 file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"--video {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists()
                                                     and not os.access(path, os.W_OK)):
        raise UserError(f"--video {str(path)!r} is not writable (permissions)")


ARCH_SECTIONS = ("actor", "critic")
"""Config sections that fix the shapes of the parameters (with the env's obs/action sizes)."""


def _check_eval_params(run: Any, ckpt: Path | None, cfg: ReppoConfig) -> Path | None:
    """The params file ``reppo eval`` reads (``ckpt`` or the latest ``params_*.npz``), checked
    to be a readable reppo params file so a missing, corrupt or truncated checkpoint is a
    one-line error before any framework loads, and — where the file records the config it was
    trained with — to belong to this run's env and network (another run's checkpoint is
    refused, as ``--resume`` refuses it). None if the run has no checkpoint (the backend then
    reports it)."""
    from spec.params import load_params

    if ckpt is None:
        if not run.checkpoints_dir.is_dir():
            raise UserError(f"{run.path} has no checkpoints/ directory; train the run first or "
                            f"pass --checkpoint")
        ckpt = latest_params_file(run.checkpoints_dir, required=False)
        if ckpt is None:
            return None
    if ckpt.is_dir():
        raise UserError(f"checkpoint {str(ckpt)!r} is a directory; pass a params_*.npz file")
    try:
        _params, meta = load_params(ckpt)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read checkpoint: {e}") from None
    trained = meta.get("config") if isinstance(meta, dict) else None
    if isinstance(trained, dict):
        mine = cfg.to_dict()
        other_env = (trained.get("env") or {}).get("name")
        if other_env is not None and other_env != cfg.env.name:
            raise UserError(f"checkpoint {str(ckpt)!r} was trained on {other_env}, this run "
                            f"({run.path}) is {cfg.env.name}; pass a checkpoint of this run "
                            f"or --run-dir of the run it belongs to")
        for section in ARCH_SECTIONS:
            theirs = trained.get(section)
            if isinstance(theirs, dict):
                diff = sorted(k for k, v in mine[section].items() if k in theirs
                              and theirs[k] != v)
                if diff:
                    raise UserError(
                        f"checkpoint {str(ckpt)!r} has another network than this run "
                        f"({', '.join(f'{section}.{k}' for k in diff)} differ); pass a "
                        f"checkpoint of this run")
    return ckpt


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_envs(args: argparse.Namespace) -> int:
    rows = [["ENV", "ACTIONS", "BACKENDS", "EPISODE", "REWARD", "SUCCESS", "PRESET"]]
    for e in list_envs(args.suite):
        reward = (f"[{e.reward_range[0]:g}, {e.reward_range[1]:g}]" if e.reward_range else
                  f"v [{e.v_min:g}, {e.v_max:g}]" if e.v_min is not None and e.v_max is not None
                  else "give v_min/v_max")
        rows.append([e.full_name, e.action_space, ",".join(e.backends), str(e.max_episode_steps),
                     reward,
                     "yes" if e.success_metric else "-", e.default_preset])
    print(_table(rows))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    rows = [["PRESET", "ENVS x STEPS", "MINIBATCHES", "EPOCHS", "HIDDEN a/c", "TOTAL STEPS",
             "DESCRIPTION"]]
    for name, entry in PRESETS.items():
        c = preset_config(name)
        r = c.rollout
        rows.append([name + (" (default)" if name == DEFAULT_PRESET else ""),
                     f"{r.num_envs} x {r.num_steps}", str(r.num_minibatches), str(r.num_epochs),
                     f"{c.actor.hidden_dim}/{c.critic.hidden_dim}", f"{r.total_env_steps:,}",
                     entry["description"]])
    print(_table(rows))
    return 0


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = _build_parser()
    try:
        if argv and argv[0] in TOOLS:
            return importlib.import_module(f"reppo_common.{argv[0]}").main(argv[1:])
        args, extras = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "train":
            return cmd_train(args, _collect_overrides(extras))
        if extras:
            raise UserError(f"unrecognised arguments: {' '.join(extras)}")
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "envs":
            return cmd_envs(args)
        if args.command == "presets":
            return cmd_presets(args)
        raise UserError(f"unknown command {args.command!r}")  # pragma: no cover
    except (UserError, ConfigError) as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED if isinstance(e, TrainingDiverged) else EXIT_USAGE
    except BrokenPipeError:
        # the reader of the output went away (`reppo envs | head`): stop quietly, as a program
        # killed by SIGPIPE would, without a second error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as e:
        # a fault of the machine, not a bug: disk full, quota, read-only or immutable files
        if debug or e.errno not in _IO_FAULTS:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot write{where}: {e.strerror or e} (disk full, quota, or files not "
              f"writable?)", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        if debug:
            raise
        print("error: out of memory building the run; reduce rollout.num_envs, "
              "run.eval_episodes or the network sizes (actor/critic.hidden_dim)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_ABORTED


_IO_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO,
              errno.EFBIG}
"""OS errors that are faults of the machine (reported in one line), not bugs."""


if __name__ == "__main__":
    sys.exit(main())
