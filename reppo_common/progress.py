"""Progress display over env steps: steps/s, last eval return, KL, α, β.

Uses rich when stderr is a terminal; otherwise (CI, pipes, ``--no-progress``) it is silent and
costs nothing. Metric keys read: ``eval/return_mean``, ``train/kl``, ``train/alpha``,
``train/beta`` (missing ones are shown as '-').
"""

import sys
import time
from typing import Any, Mapping

__all__ = ["Progress"]


def _fmt(v: Any, spec: str) -> str:
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return "-"


class Progress:
    """``with Progress(total, enabled) as p: p.update(env_steps, metrics)``."""

    def __init__(self, total_steps: int, enabled: bool = True, start_steps: int = 0) -> None:
        self.total = int(total_steps)
        self.enabled = bool(enabled) and sys.stderr.isatty()
        self._last: dict[str, Any] = {}
        self._steps = int(start_steps)
        self._t0 = time.monotonic()
        self._s0 = int(start_steps)
        self._bar = None
        self._task = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            try:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                           TextColumn, TimeElapsedColumn)
            except ImportError:  # rich is a core dependency; degrade silently anyway
                self.enabled = False
                return self
            self._bar = RichProgress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.total, completed=self._steps,
                                            info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def info(self) -> str:
        dt = time.monotonic() - self._t0
        sps = (self._steps - self._s0) / dt if dt > 0 else 0.0
        m = self._last
        return (f"{sps:,.0f} steps/s  return {_fmt(m.get('eval/return_mean'), '.1f')}  "
                f"kl {_fmt(m.get('train/kl'), '.3f')}  α {_fmt(m.get('train/alpha'), '.3g')}  "
                f"β {_fmt(m.get('train/beta'), '.3g')}")

    def update(self, env_steps: int, metrics: Mapping[str, Any] | None = None) -> None:
        self._steps = int(env_steps)
        if metrics:
            self._last.update(metrics)
        if self._bar is not None:
            self._bar.update(self._task, completed=min(self._steps, self.total), info=self.info())
