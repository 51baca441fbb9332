"""Optional metric sinks beyond metrics.jsonl: TensorBoard and Weights & Biases.

Enabled by ``run.log`` (``--log tensorboard,wandb``). Each is imported only when enabled; a
missing package is a one-line UserError naming what to install.
"""

from pathlib import Path
from typing import Any, Mapping

from reppo_common.errors import UserError

__all__ = ["open_sinks"]


class _TensorBoard:
    def __init__(self, run_dir: Path) -> None:
        try:
            from tensorboardX import SummaryWriter  # type: ignore
        except ImportError:
            try:
                from torch.utils.tensorboard import SummaryWriter  # type: ignore
            except ImportError:
                raise UserError(
                    "log sink 'tensorboard' needs tensorboardX: pip install tensorboardX"
                ) from None
        self._w = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: Mapping[str, Any]) -> None:
        step = int(record.get("env_steps", 0))
        for k, v in record.items():
            if k != "env_steps" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self._w.add_scalar(k, v, step)

    def close(self) -> None:
        self._w.close()


class _Wandb:
    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        try:
            import wandb  # type: ignore
        except ImportError:
            raise UserError("log sink 'wandb' needs wandb: pip install wandb") from None
        self._wandb = wandb
        self._run = wandb.init(project="reppo", dir=str(run_dir), config=dict(config),
                               name=run_dir.name)

    def write(self, record: Mapping[str, Any]) -> None:
        data = {k: v for k, v in record.items() if isinstance(v, (int, float))}
        self._run.log(data, step=int(record.get("env_steps", 0)))

    def close(self) -> None:
        self._run.finish()


def open_sinks(names: tuple[str, ...], run_dir: Path, config: Mapping[str, Any]) -> list[Any]:
    """Sinks for the names in ``run.log`` other than 'jsonl' (always written by the CLI)."""
    sinks: list[Any] = []
    for name in names:
        if name == "tensorboard":
            sinks.append(_TensorBoard(run_dir))
        elif name == "wandb":
            sinks.append(_Wandb(run_dir, config))
    return sinks
