"""The torch backend object the CLI loads by name (``reppo_torch.backend.get_backend``): the
shared :class:`spec.backend.PortBackend` plus what only this port has (torchrun ranks)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from spec.backend import PortBackend
from spec.config import ReppoConfig


class TorchBackend(PortBackend):
    name = "torch"
    package = "reppo_torch"

    def is_main_process(self) -> bool:
        """False on torchrun ranks other than 0: the CLI then trains without a run directory,
        metrics or progress bar (rank 0 writes them; see reppo_torch.distributed)."""
        from reppo_torch.distributed import launched_world

        return launched_world().is_main

    def import_params(self, config: ReppoConfig, params: Mapping[str, Any]) -> Any:
        """Canonical parameter layout → torch agent state (on the run's device)."""
        from reppo_torch.train import state_from_canonical

        trainer = self.make_trainer(replace(config, run=replace(config.run, devices=None,
                                                                torch_compile=False)))
        return state_from_canonical(config, trainer.h, params, trainer.device)


def get_backend() -> TorchBackend:
    return TorchBackend()
