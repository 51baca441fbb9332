"""The training loop every backend shares, framework-neutral: iteration cadence, per-iteration
metrics and NaN/inf guard, evaluation and checkpoint cadence, the run's wall clock and clean
stops. A backend supplies a :class:`Port` (how to run one iteration, evaluate, write a
checkpoint) and the starting point (fresh or from a validated checkpoint, :class:`Start`);
:func:`run_loop` does the rest, so the cadence and the bookkeeping are the same in JAX and torch.

Cadence (``config.run``): ``total_env_steps // steps_per_iteration`` iterations (at least one);
an evaluation every ``eval_interval // steps_per_iteration`` iterations and after the last one;
a full-state checkpoint every ``checkpoint_interval // steps_per_iteration`` iterations
(``checkpoint_interval = 0``: only at the end), after the last iteration and when
``hooks.should_stop()`` turns True. ``train/sps`` is steady-state throughput: it excludes every
compiling iteration — the process's first one (compile / warm-up) and any during which the port's
optional ``compile_count()`` grew — whose summed wall time is ``compile_s`` (in every train
record and in the :class:`TrainResult`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reppo_common.errors import TrainingDiverged
from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig

__all__ = ["Start", "Port", "Schedule", "run_loop", "TIMING_KEYS"]

TIMING_KEYS = ("wall_s", "train/sps", "compile_s")
"""The metrics that depend on the wall clock: every other value of a CPU run is reproducible bit
for bit (a resumed run, a refactor), these are not; comparisons of runs leave them out."""


@dataclass
class Start:
    """Where a run starts: iteration 0, or the state a resumed checkpoint recorded."""

    iteration: int = 0
    best_eval_return: float | None = None
    wall_s: float = 0.0
    last_eval: dict[str, Any] = field(default_factory=dict)
    evals_done: int = 0
    checkpoint: Any = None
    """The :class:`~reppo_common.checkpoints.CheckpointInfo` resumed from (named in errors)."""

    @classmethod
    def from_checkpoint(cls, info: Any) -> "Start":
        """The starting point a checkpoint's manifest records."""
        extra = info.manifest.get("extra") or {}
        return cls(iteration=info.iteration, best_eval_return=info.best_eval_return,
                   wall_s=info.wall_s, last_eval=dict(info.manifest.get("last_eval") or {}),
                   evals_done=int(extra.get("evals_done", 0)), checkpoint=info)


class Port(Protocol):
    """What :func:`run_loop` needs from a backend for one run."""

    steps_per_iteration: int

    def iterate(self, carry: Any) -> tuple[Any, dict[str, float], str | None]:
        """One training iteration: the new carry, its metrics as host floats (one device sync),
        and the name of the first non-finite quantity (``reppo_common.guard``), or None when
        every guarded quantity is finite (agreed by every process of a multi-process run)."""

    def evaluate(self, carry: Any, index: int) -> dict[str, float] | None:
        """The ``index``-th evaluation of the run (0-based; it selects the evaluation episodes'
        randomness): ``eval/*`` metrics, or None in a process that does not evaluate."""

    def save(self, carry: Any, run_dir: Path, **meta: Any) -> Any:
        """Write a full-state checkpoint with ``meta`` (iteration, env_steps, wall_s,
        eval_return, best_eval_return, last_eval, evals_done); return its CheckpointInfo, or
        None in a process that does not write."""

    def any_process(self, flag: bool) -> bool:
        """``flag`` or-ed over the processes of the run (one process: ``flag``)."""

    # optional: ``compile_count() -> int``, the programs the backend has compiled so far in this
    # process; an iteration during which it grew is timed as compilation, not throughput


@dataclass(frozen=True)
class Schedule:
    """The loop's cadence in iterations, from the config and the iteration size."""

    iterations: int
    eval_every: int
    checkpoint_every: int | None  # None: only at the end (and on a stop)

    @classmethod
    def of(cls, config: ReppoConfig, steps_per_iteration: int) -> "Schedule":
        per_iter = steps_per_iteration
        ckpt = config.run.checkpoint_interval
        return cls(iterations=max(1, config.rollout.total_env_steps // per_iter),
                   eval_every=max(1, config.run.eval_interval // per_iter),
                   checkpoint_every=max(1, ckpt // per_iter) if ckpt > 0 else None)


def run_loop(config: ReppoConfig, run_dir: Path | None, hooks: TrainHooks | None, port: Port,
             carry: Any, start: Start | None = None) -> TrainResult:
    """Run iterations ``start.iteration + 1 … Schedule.iterations`` of ``port`` from ``carry``
    (see the module docstring for the cadence); returns the :class:`TrainResult`.

    A non-finite quantity stops the run with :class:`TrainingDiverged` after the iteration's
    metrics were emitted and before anything of the bad state is evaluated or written."""
    hooks = hooks or TrainHooks()
    start = start or Start()
    per_iter = port.steps_per_iteration
    plan = Schedule.of(config, per_iter)
    t_start = time.monotonic()
    clock = getattr(hooks, "wall_clock", None) or (lambda: start.wall_s + time.monotonic()
                                                   - t_start)
    best, final_eval, n_evals = start.best_eval_return, dict(start.last_eval), start.evals_done
    last_ckpt = start.checkpoint
    compiles = getattr(port, "compile_count", None)
    compile_s = None
    t_train, timed_iters = 0.0, 0
    it = start.iteration
    env_steps = it * per_iter
    for it in range(start.iteration + 1, plan.iterations + 1):
        n_compiled = compiles() if compiles else 0
        t0 = time.perf_counter()
        carry, values, bad = port.iterate(carry)
        dt = time.perf_counter() - t0
        if compile_s is None or (compiles and compiles() != n_compiled):
            compile_s = (compile_s or 0.0) + dt  # first iteration of a process, or a compile
        else:
            t_train, timed_iters = t_train + dt, timed_iters + 1
        env_steps = it * per_iter
        sps = timed_iters * per_iter / t_train if t_train > 0 else float("nan")
        metrics = {"env_steps": env_steps, "iteration": it, "train/sps": sps,
                   "compile_s": compile_s, **values}
        if hooks.on_train_metrics:
            hooks.on_train_metrics(metrics)
        if bad is not None:
            raise TrainingDiverged(
                f"non-finite {bad} at iteration {it} (env_steps {env_steps:,}); last good "
                f"checkpoint: {last_ckpt or 'none'}")
        eval_return = None
        if it % plan.eval_every == 0 or it == plan.iterations:
            result = port.evaluate(carry, n_evals)
            if result is not None:
                final_eval, n_evals = result, n_evals + 1
                eval_return = final_eval["eval/return_mean"]
                best = eval_return if best is None else max(best, eval_return)
                if hooks.on_eval_metrics:
                    hooks.on_eval_metrics({"env_steps": env_steps, "iteration": it,
                                           **final_eval})
        # every process leaves after the same iteration (collectives would wait for the others)
        stop = port.any_process(bool(hooks.should_stop and hooks.should_stop()))
        periodic = plan.checkpoint_every is not None and it % plan.checkpoint_every == 0
        if run_dir is not None and (periodic or it == plan.iterations or stop):
            last_ckpt = port.save(carry, Path(run_dir), iteration=it, env_steps=env_steps,
                                  wall_s=clock(), eval_return=eval_return,
                                  best_eval_return=best, last_eval=final_eval,
                                  evals_done=n_evals) or last_ckpt
        if hooks.on_progress:
            hooks.on_progress(env_steps, {**metrics, **final_eval})
        if stop:
            break
    return TrainResult(env_steps=env_steps, iterations=it, final_eval=final_eval,
                       best_eval_return=best, compile_s=compile_s)
