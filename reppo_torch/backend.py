"""The torch backend object the CLI loads by name (``reppo_torch.backend.get_backend``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig


class TorchBackend:
    name = "torch"

    def supports_env(self, env_name: str) -> bool:
        from reppo_torch.envs import supports_env

        return supports_env(env_name)

    def __init__(self) -> None:
        self._prepared: tuple | None = None

    def is_main_process(self) -> bool:
        """False on torchrun ranks other than 0: the CLI then trains without a run directory,
        metrics or progress bar (rank 0 writes them; see reppo_torch.distributed)."""
        from reppo_torch.distributed import launched_world

        return launched_world().is_main

    def check_resume(self, config: ReppoConfig, run_dir: Path) -> Any:
        """Validate the latest full checkpoint of ``run_dir`` against ``config`` (backend,
        config, checksums, parameter layout, every state array) without writing anything;
        UserError on any mismatch. Returns its :class:`reppo_common.checkpoints.CheckpointInfo`.
        The CLI calls this before it touches the run directory; the built trainer is reused."""
        from reppo_torch.train import Trainer, check_resume

        trainer = Trainer(config)
        info, _flat, _arrays = check_resume(Path(run_dir), config, trainer)
        self._prepared = (config, Path(run_dir), trainer)
        return info

    def train(self, config: ReppoConfig, run_dir: Path | None, hooks: TrainHooks,
              resume: bool = False) -> TrainResult:
        """Train (or with ``resume`` continue the run in ``run_dir`` from its latest full
        checkpoint, see reppo_torch.train.train); ``run_dir`` is None on torchrun ranks other
        than 0 (nothing written)."""
        from reppo_torch.train import train

        run_dir = Path(run_dir) if run_dir is not None else None
        trainer = None
        if self._prepared is not None and self._prepared[0] == config \
                and self._prepared[1] == run_dir:
            trainer = self._prepared[2]
        self._prepared = None
        return train(config, run_dir, hooks, resume=resume, trainer=trainer)

    def evaluate(self, config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> Mapping[str, float]:
        from reppo_torch.train import evaluate_run

        return evaluate_run(config, Path(run_dir), episodes, checkpoint)

    def export_params(self, state: Any) -> dict[str, Any]:
        from reppo_torch.train import state_to_canonical

        return state_to_canonical(state)

    def import_params(self, config: ReppoConfig, params: Mapping[str, Any]) -> Any:
        from dataclasses import replace

        from reppo_torch.train import Trainer, state_from_canonical

        trainer = Trainer(replace(config, run=replace(config.run, devices=None)))
        return state_from_canonical(config, trainer.h, params, trainer.device)


def get_backend() -> TorchBackend:
    return TorchBackend()
