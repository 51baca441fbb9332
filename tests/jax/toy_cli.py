"""``reppo`` with the analytic toy envs registered: lets subprocess tests exercise the real CLI
(train, --resume, SIGINT, SIGKILL) without MJX compile times.

Usage: ``PYTHONPATH=<repo> python tests/jax/toy_cli.py train --env toy/Bandit ...``
"""

from __future__ import annotations

import sys

from reppo_common import cli
from reppo_common.registry import REGISTRY, EnvSpec


TOY_SPEC = EnvSpec("toy", "Bandit", "toy/Bandit", "continuous", ("jax", "torch"), (0.0, 1.0), 50, False,
                   "tiny")
"""``toy/Bandit`` (both backends): rewards in [0, 1], 50-step episodes."""


def register_toy() -> None:
    """Add ``toy/Bandit`` to the registry of this process."""
    REGISTRY.setdefault(TOY_SPEC.full_name, TOY_SPEC)


if __name__ == "__main__":
    register_toy()
    sys.exit(cli.main())
