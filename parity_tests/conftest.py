"""Hypothesis profiles and backend fixtures for the parity suite.

Profiles (pick with ``--hypothesis-profile``): ``ci`` (default, 25 examples) and ``thorough``
(500 examples). The example database lives in ``.hypothesis/`` (kept out of git).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from parity_tests.backends import BACKENDS

_COMMON = dict(
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture),
)
settings.register_profile("ci", max_examples=25, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)
settings.load_profile("ci")  # --hypothesis-profile (handled by hypothesis' plugin) overrides

DTYPES = (np.float32, np.float64)


def pytest_terminal_summary(terminalreporter):
    """The largest |diff| / tolerance per layer and dtype seen in this session (1.0 = at the
    tolerance; the README's tolerance policy records these numbers)."""
    from parity_tests.tolerance import WORST

    if not WORST:
        return
    tr = terminalreporter
    tr.section("parity: largest observed error per layer")
    tr.write_line(f"{'layer':<20}{'dtype':<9}{'checks':>8}{'max |diff|/tol':>16}{'max |diff|':>13}")
    for (layer, dt), e in sorted(WORST.items()):
        tr.write_line(f"{layer:<20}{dt:<9}{e['checks']:>8}{e['ratio']:>16.3e}{e['diff']:>13.3e}")


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """Each installed backend; a missing one is skipped with the extra that installs it."""
    be = BACKENDS[request.param]
    if not be.available():
        pytest.skip(be.skip_reason())
    return be


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)
