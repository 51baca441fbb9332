"""Counts the XLA programs this process builds, from JAX's own monitoring events.

Every executable JAX builds — compiled, or loaded from the persistent compilation cache —
records one ``/jax/core/compile/backend_compile_duration`` event. :data:`COMPILES` counts them
per jitted function name, so the training loop can tell a compiling iteration from a
steady-state one (``reppo_common.driver``: ``train/sps`` excludes compiling iterations, whose
time is reported as ``compile_s``) and the tests can assert that a run compiles its iteration
exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter

from jax import monitoring

__all__ = ["COMPILES", "CompileLog"]

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileLog:
    """Running totals of backend compilations in this process: ``total`` (all programs),
    ``by_name`` (per jitted function's ``__name__``) and ``seconds`` (their summed duration)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.seconds = 0.0
        self.by_name: Counter[str] = Counter()

    def record(self, event: str, duration: float, **kwargs: object) -> None:
        """The ``jax.monitoring`` duration listener."""
        if event != _BACKEND_COMPILE_EVENT:
            return
        with self._lock:
            self.total += 1
            self.seconds += float(duration)
            name = str(kwargs.get("fun_name", "?"))  # "jit(guarded)" for ``def guarded``
            if name.startswith("jit(") and name.endswith(")"):
                name = name[4:-1]
            self.by_name[name] += 1

    def count(self, name: str | None = None) -> int:
        """Programs built so far: all of them, or those of the jitted function ``name``."""
        return self.total if name is None else self.by_name[name]


COMPILES = CompileLog()
"""The process-wide log (registered once, at import)."""

monitoring.register_event_duration_secs_listener(COMPILES.record)
