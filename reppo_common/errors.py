"""User-facing errors: one line, no traceback, and the command's exit statuses.

The CLI prints ``error: <message>`` to stderr and exits with :data:`EXIT_USAGE` (2) for a
:class:`UserError` or a :class:`spec.config.ConfigError`; ``--debug`` re-raises to show the
traceback. Anything else is a bug and keeps its traceback.

Exit statuses of ``reppo`` (docs/operations.md lists them for schedulers and scripts):

===================  =====================================================================
0                    finished (``train``: every iteration done; other commands: success)
2  (EXIT_USAGE)      user error or fault: bad flag/config/input, busy or unusable run dir
3  (EXIT_DIVERGED)   training stopped by the non-finite guard (NaN/inf); last good checkpoint
                     kept
75 (EXIT_STOPPED)    training stopped early by SIGTERM, SIGUSR1 or Ctrl-C after finishing the
                     iteration, writing a checkpoint and flushing the metrics: resume it
130                  a second Ctrl-C aborted at once (no checkpoint of the current iteration)
===================  =====================================================================
"""

EXIT_OK = 0
"""Finished."""

EXIT_USAGE = 2
"""Exit status for user errors (bad flag, unknown env, invalid config, missing extra)."""

EXIT_DIVERGED = 3
"""Training produced NaN/inf (:class:`TrainingDiverged`)."""

EXIT_STOPPED = 75
"""Training was stopped by a signal after a checkpoint was written (BSD ``EX_TEMPFAIL``: try
again, i.e. ``reppo train --resume``)."""

EXIT_ABORTED = 130
"""A second Ctrl-C interrupted the current iteration (128 + SIGINT)."""


class UserError(Exception):
    """A mistake the user can fix; the message is one line and says how."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class TrainingDiverged(UserError):
    """Training produced NaN/inf; the message names the first non-finite quantity, the
    iteration and the last good checkpoint (which is left intact). Exit status
    :data:`EXIT_DIVERGED`."""
