"""reppo_common is framework-free: importing every module of it loads neither JAX nor PyTorch
(the backends are reached lazily by name, so a torch-only or jax-only install works)."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import reppo_common

ROOT = Path(__file__).resolve().parents[2]


def test_importing_reppo_common_loads_no_framework():
    names = sorted(m.name for m in pkgutil.iter_modules(reppo_common.__path__))
    assert {"cli", "plot", "aggregate", "ablate", "driver"} <= set(names)
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module('reppo_common.' + n)\n"
            "bad = sorted(m for m in ('jax', 'torch', 'flax', 'optax', 'matplotlib') "
            "if m in sys.modules)\n"
            "print(','.join(bad))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "", f"reppo_common imports {p.stdout.strip()} at module level"
