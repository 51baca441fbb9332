"""The ``reppo`` command: ``train``, ``eval``, ``envs``, ``presets``.

Config overrides are given as ``--section.field=value`` (see ``reppo presets`` and
spec/README.md for the fields). Mistakes (unknown env, invalid value, missing extra) print one
line ``error: ...`` to stderr and exit with status 2; ``--debug`` shows the traceback instead.
Backends are imported lazily by name (``reppo_<name>.backend``), so only the chosen framework
needs to be installed.
"""

import argparse
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from spec.config import ConfigError, ReppoConfig, apply_overrides, override_pairs
from spec.presets import DEFAULT_PRESET, PRESETS, preset_config

from reppo_common.checkpoints import RESUME_CHANGEABLE  # fields a resume may change
from reppo_common.errors import EXIT_USAGE, UserError
from reppo_common.registry import SUITES, list_envs, resolve_env

BACKENDS = ("jax", "torch")
"""Backend names ``--backend`` accepts (package ``reppo_<name>``)."""

FRAMEWORK_EXTRA = {"jax": "jax", "torch": "torch"}

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
    t.add_argument("--env", default=None, help="suite/Name (default dmc/CartpoleBalance)")
    t.add_argument("--preset", default=None,
                   help="config preset (default: the env's, e.g. 'cpu' for dmc)")
    t.add_argument("--seed", type=int, default=None, help="run.seed")
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
                       description="Evaluate the deterministic policy of a run's checkpoint "
                                   "and print the results (metrics.jsonl is not modified).")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--backend", default=None, help="default: the backend that trained the run")
    e.add_argument("--episodes", type=int, default=None, help="default: run.eval_episodes")
    e.add_argument("--checkpoint", default=None, help="checkpoint path (default: latest)")
    e.add_argument("--video", metavar="OUT.mp4", default=None,
                   help="also write an MP4 of one deterministic-policy episode (dmc/ tasks; "
                        "renders on CPU with MUJOCO_GL=egl)")

    s = sub.add_parser("envs", parents=[common], help="list environments")
    s.add_argument("--suite", default=None, help=f"one of: {', '.join(SUITES)}")

    sub.add_parser("presets", parents=[common], help="list config presets")
    return p


def _int_steps(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid step count {text!r}") from None
    if not v.is_integer() or v < 1:
        raise argparse.ArgumentTypeError(f"step count must be a positive integer, got {text!r}")
    return int(v)


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
    env = resolve_env(env_name)
    preset = args.preset or env.default_preset or DEFAULT_PRESET
    flags = [f"env.name={env.full_name}"]
    if args.seed is not None:
        flags.append(f"run.seed={args.seed}")
    if args.steps is not None:
        flags.append(f"rollout.total_env_steps={args.steps}")
    if args.devices is not None:
        flags.append(f"run.devices={args.devices}")
    if args.log:
        sinks = [s.strip() for s in args.log.split(",") if s.strip() and s.strip() != "jsonl"]
        flags.append("run.log=" + ",".join(["jsonl", *sinks]))
    cfg = preset_config(preset, flags + overrides)
    return cfg, env


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
    if args.log:
        flags.append("run.log=jsonl," + args.log)
    pairs = override_pairs(flags + overrides)
    for key, _ in pairs:
        if key not in RESUME_CHANGEABLE:
            raise UserError(f"{key} cannot be changed when resuming; allowed: "
                            f"{', '.join(sorted(RESUME_CHANGEABLE))}")
    new = apply_overrides(cfg, dict(pairs)) if pairs else cfg
    return new, resolve_env(new.env.name)


def cmd_train(args: argparse.Namespace, overrides: list[str]) -> int:
    from reppo_common.progress import Progress
    from reppo_common.runs import MetricsWriter, RunDir, default_run_dir
    from reppo_common.sinks import open_sinks

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
        return _train_worker(backend, cfg, run.path if args.resume else None, bool(args.resume))

    resumed = None
    if args.resume:
        # validate the checkpoint completely before anything in the run dir is modified
        check = getattr(backend, "check_resume", None)
        resumed = check(cfg, run.path) if check is not None else None
        if cfg != run.load_config():
            try:
                run.config_path.write_text(cfg.to_json() + "\n")
            except OSError as e:
                raise UserError(f"cannot write {run.config_path}: {e.strerror or e}") from None
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

        run = RunDir.create(path, cfg, {"backend": args.backend, "env": env.full_name,
                                        "reppo_version": __version__})

    from spec.backend import TrainHooks

    writer = MetricsWriter(run.metrics_path,
                           wall_offset=resumed.wall_s if resumed is not None else None)
    sinks = open_sinks(tuple(cfg.run.log), run.path, cfg.to_dict())
    stop = {"flag": False}
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

    def on_sigint(signum: int, frame: Any) -> None:
        if stop["flag"]:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop["flag"] = True
        print("\nstopping after this iteration (Ctrl-C again to abort)", file=sys.stderr)

    hooks = TrainHooks(
        on_train_metrics=lambda m: emit("train", m),
        on_eval_metrics=on_eval,
        on_progress=on_progress,
        should_stop=lambda: stop["flag"],
        wall_clock=lambda: writer.wall_s,
    )
    old_handler = signal.signal(signal.SIGINT, on_sigint)
    t0 = time.monotonic()
    print(f"reppo: training {env.full_name} with backend {args.backend} -> {run.path}",
          file=sys.stderr)
    result = None
    try:
        with Progress(cfg.rollout.total_env_steps, enabled=not args.no_progress) as progress:
            result = backend.train(cfg, run.path, hooks, resume=bool(args.resume))
    finally:
        signal.signal(signal.SIGINT, old_handler)
        writer.close()
        for s in sinks:
            s.close()
    wall = time.monotonic() - t0
    steps = result.env_steps if result is not None else last_steps["n"]
    best_ret = result.best_eval_return if result and result.best_eval_return is not None \
        else best["eval"]
    best_txt = f"{best_ret:.1f}" if best_ret is not None else "n/a"
    status = "stopped" if stop["flag"] else "done"
    compile_txt = (f" (compile {result.compile_s:.1f}s)"
                   if result is not None and result.compile_s is not None else "")
    print(f"{status}: {steps:,} env steps, best eval return {best_txt}, wall {wall:.0f}s"
          f"{compile_txt}, run dir {run.path}")
    if stop["flag"]:
        print(f"continue with: reppo train --resume {run.path}")
    return 0


def _train_worker(backend: Any, cfg: ReppoConfig, run_path: Path | None, resume: bool) -> int:
    """A data-parallel training process other than the main one (e.g. torchrun rank > 0): it
    trains in step with the others but writes nothing — no run directory, metrics, progress or
    summary (the main process does). ``run_path`` is the run being resumed (read only), else
    None. Ctrl-C stops it after the current iteration, as the main process."""
    from spec.backend import TrainHooks

    stop = {"flag": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if stop["flag"]:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop["flag"] = True

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    try:
        backend.train(cfg, run_path, TrainHooks(should_stop=lambda: stop["flag"]), resume=resume)
    finally:
        signal.signal(signal.SIGINT, old_handler)
    return 0


# --------------------------------------------------------------------------------------------
# eval / envs / presets
# --------------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from reppo_common.runs import RunDir

    run = RunDir.open_existing(args.run_dir)
    cfg = run.load_config()
    name = args.backend or run.load_meta().get("backend") or "jax"
    if args.episodes is not None and args.episodes < 1:
        raise UserError(f"--episodes={args.episodes} is invalid: must be an integer >= 1")
    episodes = args.episodes or cfg.run.eval_episodes
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt is not None and not ckpt.exists():
        raise UserError(f"checkpoint {str(ckpt)!r} does not exist")
    params_file = _check_eval_params(run, ckpt)
    if args.video:
        if name != "jax":
            raise UserError(f"--video is implemented by the jax backend only (run backend "
                            f"{name!r}); pass --backend jax")
        if not args.video.lower().endswith(".mp4"):
            raise UserError(f"--video must name an .mp4 file, got {args.video!r}")
        if params_file is None:
            raise UserError(f"no checkpoints in {run.checkpoints_dir} to record a video from")
        # MUJOCO_GL is read at mujoco's first import (by the backend's envs): headless EGL
        os.environ.setdefault("MUJOCO_GL", "egl")
    backend = load_backend(name)
    if args.video:  # fail fast, before evaluating, if this machine cannot render
        from reppo_jax.video import check_rendering, find_ffmpeg

        check_rendering()
        find_ffmpeg()
    try:
        results = backend.evaluate(cfg, run.path, episodes, ckpt)
    except FileNotFoundError as e:
        raise UserError(f"cannot evaluate {run.path}: {e}") from None
    print(f"eval {cfg.env.name} ({name}, {episodes} episodes) from {run.path}")
    for k, v in results.items():
        print(f"  {k:<24} {v:.4g}" if isinstance(v, float) else f"  {k:<24} {v}")
    if args.video:
        from reppo_jax.video import record_video

        v = record_video(cfg, params_file, args.video, seed=cfg.run.seed + 3_000_017)
        print(f"video {v['path']}: {v['frames']} frames at {v['fps']:.0f} fps, episode return "
              f"{v['return']:.1f}")
    return 0


def _check_eval_params(run: Any, ckpt: Path | None) -> Path | None:
    """The params file ``reppo eval`` reads (``ckpt`` or the latest ``params_*.npz``), checked
    to be a readable reppo params file so a missing, corrupt or truncated checkpoint is a
    one-line error before any framework loads. None if the run has no checkpoint (the backend
    then reports it)."""
    from spec.params import load_params

    if ckpt is None:
        if not run.checkpoints_dir.is_dir():
            raise UserError(f"{run.path} has no checkpoints/ directory; train the run first or "
                            f"pass --checkpoint")
        found = sorted(run.checkpoints_dir.glob("params_*.npz"))
        if not found:
            return None
        ckpt = found[-1]
    if ckpt.is_dir():
        raise UserError(f"checkpoint {str(ckpt)!r} is a directory; pass a params_*.npz file")
    try:
        load_params(ckpt)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read checkpoint: {e}") from None
    return ckpt


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_envs(args: argparse.Namespace) -> int:
    rows = [["ENV", "ACTIONS", "BACKENDS", "EPISODE", "REWARD", "SUCCESS", "PRESET"]]
    for e in list_envs(args.suite):
        rows.append([e.full_name, e.action_space, ",".join(e.backends), str(e.max_episode_steps),
                     f"[{e.reward_range[0]:g}, {e.reward_range[1]:g}]",
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
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
