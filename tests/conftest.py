"""Shared pytest setup: hypothesis profiles sized for 2-core CI and a repo-root fixture."""

import os
from pathlib import Path

import pytest

try:
    from hypothesis import HealthCheck, settings

    # the same profiles as parity_tests/conftest.py: whichever conftest loads last, "ci" means
    # the same thing (pytest's collection order decides which one registers it last)
    _common = dict(deadline=None, print_blob=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.function_scoped_fixture])
    settings.register_profile("ci", max_examples=25, **_common)
    settings.register_profile("dev", max_examples=50, **_common)
    settings.register_profile("thorough", max_examples=500, **_common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a dev extra; tests that need it import it themselves
    pass

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where pyproject.toml lives)."""
    return REPO_ROOT


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` (minutes of real training; too slow for 2-core CI) run only with
    ``REPPO_LONG_TESTS=1``; the README's test command and CI skip them with that reason."""
    if os.environ.get("REPPO_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="long test: set REPPO_LONG_TESTS=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
