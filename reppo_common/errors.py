"""User-facing errors: one line, no traceback.

The CLI prints ``error: <message>`` to stderr and exits with :data:`EXIT_USAGE` (2) for a
:class:`UserError` or a :class:`spec.config.ConfigError`; ``--debug`` re-raises to show the
traceback. Anything else is a bug and keeps its traceback.
"""

EXIT_USAGE = 2
"""Exit status for user errors (bad flag, unknown env, invalid config, missing extra)."""


class UserError(Exception):
    """A mistake the user can fix; the message is one line and says how."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class TrainingDiverged(UserError):
    """Training produced NaN/inf; the message names the first non-finite quantity, the
    iteration and the last good checkpoint (which is left intact)."""
