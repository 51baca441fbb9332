"""The JAX backend object the CLI loads by name (``reppo_jax.backend.get_backend``): the shared
:class:`spec.backend.PortBackend` plus what only this port has (MP4 videos)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from spec.backend import PortBackend
from spec.config import ReppoConfig


class JaxBackend(PortBackend):
    name = "jax"
    package = "reppo_jax"

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

    def import_params(self, config: ReppoConfig, params: Mapping[str, Any]) -> Any:
        """Canonical parameter layout → JAX agent state ready to act/evaluate."""
        from reppo_jax.train import state_from_canonical

        return state_from_canonical(self.make_trainer(config).h, params)


def get_backend() -> JaxBackend:
    return JaxBackend()
