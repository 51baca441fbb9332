"""The JAX backend object the CLI loads by name (``reppo_jax.backend.get_backend``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig

class JaxBackend:
    name = "jax"

    def supports_env(self, env_name: str) -> bool:
        from reppo_jax.envs import supports_env

        return supports_env(env_name)

    def train(self, config: ReppoConfig, run_dir: Path, hooks: TrainHooks,
              resume: bool = False) -> TrainResult:
        from reppo_jax.train import train

        if resume:
            from reppo_common.errors import UserError

            raise UserError("--resume is not implemented yet for the jax backend; start a new "
                            "run (checkpoints hold the policy for `reppo eval`)")
        return train(config, Path(run_dir), hooks)

    def evaluate(self, config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> Mapping[str, float]:
        from reppo_jax.train import evaluate_run

        return evaluate_run(config, Path(run_dir), episodes, checkpoint)

    def export_params(self, state: Any) -> dict[str, Any]:
        from reppo_jax.train import state_to_canonical

        return state_to_canonical(state)

    def import_params(self, config: ReppoConfig, params: Mapping[str, Any]) -> Any:
        from reppo_jax.train import Trainer, state_from_canonical

        trainer = Trainer(config)
        return state_from_canonical(trainer.h, params)


def get_backend() -> JaxBackend:
    return JaxBackend()
