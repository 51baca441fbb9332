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
# the pinned CPU build (==2.13.0, on the machines' disk). mani-skill is installed next to it with
# torch pinned in the same command, so pip keeps the CPU build instead of pulling a CUDA one.
# gymnax (MinAtar, the discrete variant's CPU suite) and six (an undeclared gymnax import) come in
# the same command so one resolver run satisfies every gymnasium pin; envpool (real Atari) is not
# installed in CI: its tests skip with the reason.
.venv/bin/python -m pip install --quiet 'torch==2.13.0' 'mani-skill==3.0.1' 'gymnasium>=1.1,<1.4' \
    'gymnax==1.0.1' 'six'
# ManiSkill's simulator (SAPIEN) needs a Vulkan driver even without a GPU; as root on Debian this
# installs Mesa >= 23 (bookworm-backports). Without it the ManiSkill tests skip with the reason.
bash scripts/setup_vulkan.sh || echo "warning: no usable Vulkan driver; ManiSkill tests will be skipped" >&2

set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
