#!/usr/bin/env bash
# Install reppo with the jax and dev extras into .venv (created if missing) and run the test
# suite. Used verbatim by the README and by CI (.ci/run). pytest's "no tests collected" (exit 5)
# counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet -e '.[jax,dev]'
# The parity suite compares the numpy reference with both frameworks, so CI installs torch too:
# the pinned CPU build (==2.13.0, on the machines' disk), not the full torch extra (mani-skill).
.venv/bin/python -m pip install --quiet 'torch==2.13.0'

set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
