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

    def train(self, config: ReppoConfig, run_dir: Path, hooks: TrainHooks,
              resume: bool = False) -> TrainResult:
        from reppo_torch.train import train

        if resume:
            from reppo_common.errors import UserError

            raise UserError("--resume is not implemented yet for the torch backend; start a new "
                            "run (checkpoints hold the policy for `reppo eval`)")
        return train(config, Path(run_dir), hooks)

    def evaluate(self, config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> Mapping[str, float]:
        from reppo_torch.train import evaluate_run

        return evaluate_run(config, Path(run_dir), episodes, checkpoint)

    def export_params(self, state: Any) -> dict[str, Any]:
        from reppo_torch.train import state_to_canonical

        return state_to_canonical(state)

    def import_params(self, config: ReppoConfig, params: Mapping[str, Any]) -> Any:
        from reppo_torch.train import Trainer, state_from_canonical

        trainer = Trainer(config)
        return state_from_canonical(config, trainer.h, params, trainer.device)


def get_backend() -> TorchBackend:
    return TorchBackend()
