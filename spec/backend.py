"""The small protocol every backend implements; the CLI and tools call only this.

A backend lives in the package ``reppo_<name>`` and exposes ``reppo_<name>.backend.get_backend()``
returning an object that satisfies :class:`Backend`. The CLI imports it lazily by name, so
installing one backend's extra never requires the other framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from spec.config import ReppoConfig

ITERATION_MAX_METRICS = frozenset({"train/kl_max"})
"""``train/*`` metrics that an iteration reduces over its updates (num_epochs × num_minibatches)
with the maximum; every other ``train/*`` metric is the mean over them. A per-minibatch maximum
is a tail, and the mean of tails would hide the one update where it spiked. Every port reduces
with this set (and so does any reduction over data-parallel ranks)."""

MetricsSink = Callable[[Mapping[str, Any]], None]
"""Receives one flat dict of metrics (``env_steps`` always present); the CLI appends it to
``metrics.jsonl`` (adding ``wall_s``) and to any other enabled sink."""


@dataclass(frozen=True)
class TrainHooks:
    """Callbacks the trainer calls; all optional so tools can run a backend headless.

    - ``on_train_metrics(metrics)``: once per iteration, metrics averaged over the iteration
      (the maximum for :data:`ITERATION_MAX_METRICS`).
    - ``on_eval_metrics(metrics)``: after every evaluation; must contain ``env_steps`` and
      ``eval/return_mean`` (plus ``eval/success_rate`` where the suite has one).
    - ``on_progress(env_steps, metrics)``: lightweight progress-bar update.
    - ``should_stop()``: polled between iterations (SIGINT handling); True ends training cleanly
      (the backend finishes the iteration and writes a checkpoint).
    - ``wall_clock()``: the run's wall time in seconds as written to metrics (``wall_s``); a
      backend stores it in checkpoints so a resumed run's clock continues from there.
    """

    on_train_metrics: MetricsSink | None = None
    on_eval_metrics: MetricsSink | None = None
    on_progress: Callable[[int, Mapping[str, Any]], None] | None = None
    should_stop: Callable[[], bool] | None = None
    wall_clock: Callable[[], float] | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or cleanly stopped) training run reports back to the CLI."""

    env_steps: int
    iterations: int
    final_eval: Mapping[str, float] = field(default_factory=dict)
    best_eval_return: float | None = None
    compile_s: float | None = None


@runtime_checkable
class Backend(Protocol):
    """What ``reppo train|eval`` needs from a framework port."""

    name: str

    def supports_env(self, env_name: str) -> bool:
        """True if this backend has an adapter for ``suite/Name``."""

    def train(
        self,
        config: ReppoConfig,
        run_dir: Path,
        hooks: TrainHooks,
        resume: bool = False,
    ) -> TrainResult:
        """Train per ``config``, writing checkpoints under ``run_dir / 'checkpoints'``."""

    def evaluate(
        self, config: ReppoConfig, run_dir: Path, episodes: int, checkpoint: Path | None = None
    ) -> Mapping[str, float]:
        """Evaluate ``run.eval_policy`` of a saved run (latest checkpoint by default)."""

    def export_params(self, state: Any) -> dict[str, Any]:
        """Backend state → canonical parameter layout (``spec.params``), numpy arrays."""

    def import_params(self, config: ReppoConfig, params: Mapping[str, Any]) -> Any:
        """Canonical parameter layout → backend state ready to act/evaluate."""


class PortBackend:
    """The logic both framework ports share behind :class:`Backend`, written once.

    A port subclasses this with ``name`` (``"jax"``/``"torch"``) and ``package``
    (``"reppo_jax"``/``"reppo_torch"``); every method imports that package's modules lazily by
    the same module names (``envs``, ``train``, ``checkpoint``), so this file stays free of any
    framework. A port overrides only where its concept really differs (e.g. how a trainer is
    built, or the signature of ``state_from_canonical``).
    """

    name: str = ""
    package: str = ""

    def __init__(self) -> None:
        # (config, run_dir, trainer) built by check_resume, reused by the following train()
        self._prepared: tuple | None = None

    def _module(self, module: str) -> Any:
        """The port's module ``<package>.<module>``, imported on first use."""
        import importlib

        return importlib.import_module(f"{self.package}.{module}")

    def make_trainer(self, config: ReppoConfig) -> Any:
        """The port's trainer for ``config`` (``<package>.train.make_trainer``)."""
        return self._module("train").make_trainer(config)

    def supports_env(self, env_name: str) -> bool:
        """True if this port has an adapter for ``suite/Name``."""
        return self._module("envs").supports_env(env_name)

    def check_resume(self, config: ReppoConfig, run_dir: Path) -> Any:
        """Validate the latest full checkpoint of ``run_dir`` against ``config`` (backend,
        config, checksums, parameter layout, every state array) without writing anything;
        UserError on any mismatch. Returns its :class:`reppo_common.checkpoints.CheckpointInfo`.
        The CLI calls this before it touches the run directory; the built trainer is reused by
        the following :meth:`train`."""
        trainer = self.make_trainer(config)
        info = self._module("checkpoint").check_resume(Path(run_dir), config, trainer)[0]
        self._prepared = (config, Path(run_dir), trainer)
        return info

    def prepare(self, config: ReppoConfig, run_dir: Path) -> None:
        """Build the trainer of a new run before its run directory is created, so that a setup
        the trainer refuses (e.g. ``run.devices`` left at all devices, which do not split the
        batch) is a UserError while nothing is written yet; the following :meth:`train` with
        the same config and run directory reuses the trainer."""
        self._prepared = (config, Path(run_dir), self.make_trainer(config))

    def train(self, config: ReppoConfig, run_dir: Path | None, hooks: TrainHooks,
              resume: bool = False) -> TrainResult:
        """Train (or with ``resume`` continue the run in ``run_dir`` from its latest full
        checkpoint, see ``<package>.train.train``); ``run_dir`` is None only on distributed
        ranks other than 0 (nothing written)."""
        run_dir = Path(run_dir) if run_dir is not None else None
        trainer = None
        if self._prepared is not None and self._prepared[0] == config \
                and self._prepared[1] == run_dir:
            trainer = self._prepared[2]
        self._prepared = None
        return self._module("train").train(config, run_dir, hooks, resume=resume,
                                           trainer=trainer)

    def evaluate(self, config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> Mapping[str, float]:
        """Evaluate ``run.eval_policy`` of a saved run (latest checkpoint by default)."""
        return self._module("train").evaluate_run(config, Path(run_dir), episodes, checkpoint)

    def export_params(self, state: Any) -> dict[str, Any]:
        """Port state → canonical parameter layout (``spec.params``), numpy arrays."""
        return self._module("train").state_to_canonical(state)
