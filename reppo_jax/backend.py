"""The JAX backend object the CLI loads by name (``reppo_jax.backend.get_backend``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from spec.backend import TrainHooks, TrainResult
from spec.config import ReppoConfig

class JaxBackend:
    name = "jax"

    def __init__(self) -> None:
        self._prepared: tuple | None = None

    def supports_env(self, env_name: str) -> bool:
        from reppo_jax.envs import supports_env

        return supports_env(env_name)

    def check_resume(self, config: ReppoConfig, run_dir: Path) -> Any:
        """Validate the latest full checkpoint of ``run_dir`` against ``config`` (backend,
        config, checksums, every state array) without writing anything; UserError on any
        mismatch. Returns its :class:`reppo_common.checkpoints.CheckpointInfo`. The CLI calls
        this before it touches the run directory; the built trainer is reused by ``train``."""
        from reppo_jax.checkpoint import check_resume
        from reppo_jax.train import Trainer

        trainer = Trainer(config)
        info, _tree = check_resume(run_dir, config, trainer)
        self._prepared = (config, Path(run_dir), trainer)
        return info

    def train(self, config: ReppoConfig, run_dir: Path, hooks: TrainHooks,
              resume: bool = False) -> TrainResult:
        """Train (or with ``resume`` continue the run in ``run_dir`` from its latest full
        checkpoint, see reppo_jax.train.train)."""
        from reppo_jax.train import train

        trainer = None
        if self._prepared is not None and self._prepared[0] == config \
                and self._prepared[1] == Path(run_dir):
            trainer = self._prepared[2]
        self._prepared = None
        return train(config, Path(run_dir), hooks, resume=resume, trainer=trainer)

    def evaluate(self, config: ReppoConfig, run_dir: Path, episodes: int,
                 checkpoint: Path | None = None) -> Mapping[str, float]:
        from reppo_jax.train import evaluate_run

        return evaluate_run(config, Path(run_dir), episodes, checkpoint)

    def check_video(self) -> None:
        """UserError (one line) unless this machine can render frames and encode an MP4."""
        from reppo_jax.video import check_rendering, find_ffmpeg

        check_rendering()
        find_ffmpeg()

    def record_video(self, config: ReppoConfig, params_file: Path, out: str, seed: int
                     ) -> dict[str, Any]:
        """One deterministic-policy episode of ``params_file`` rendered to the MP4 ``out``."""
        from reppo_jax.video import record_video

        return record_video(config, params_file, out, seed=seed)

    def export_params(self, state: Any) -> dict[str, Any]:
        from reppo_jax.train import state_to_canonical

        return state_to_canonical(state)

    def import_params(self, config: ReppoConfig, params: Mapping[str, Any]) -> Any:
        from reppo_jax.train import Trainer, state_from_canonical

        trainer = Trainer(config)
        return state_from_canonical(trainer.h, params)


def get_backend() -> JaxBackend:
    return JaxBackend()
