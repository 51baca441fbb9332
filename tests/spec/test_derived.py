import os
import subprocess
import sys

import numpy as np
import pytest

from spec import derived

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_discount():
    assert derived.discount_from_episode_steps(1000) == pytest.approx(0.99)
    assert derived.discount_from_episode_steps(50) == pytest.approx(0.8)
    for bad in (10, 5, 0, -3, 10.5):
        with pytest.raises(ValueError):
            derived.discount_from_episode_steps(bad)


def test_value_range():
    assert derived.value_range(0.0, 1.0, 0.99) == pytest.approx((0.0, 100.0))
    assert derived.value_range(-0.15, 0.15, 0.99) == pytest.approx((-15.0, 15.0))
    with pytest.raises(ValueError):
        derived.value_range(0.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        derived.value_range(2.0, 1.0, 0.9)


def test_hlgauss_support_width_sigma():
    c = derived.hlgauss_support(0.0, 150.0, 151)
    assert c.shape == (151,) and c[0] == 0.0 and c[-1] == 150.0
    assert np.allclose(np.diff(c), 1.0)
    assert derived.hlgauss_bin_width(0.0, 150.0, 151) == pytest.approx(1.0)
    assert derived.hlgauss_sigma(0.0, 150.0, 151) == pytest.approx(0.75)
    assert derived.hlgauss_sigma(-1.0, 1.0, 3, ratio=0.5) == pytest.approx(0.5)
    for args in ((0.0, 1.0, 1), (1.0, 1.0, 5), (2.0, 1.0, 5)):
        with pytest.raises(ValueError):
            derived.hlgauss_support(*args)


def test_entropy_target_and_minibatch():
    assert derived.entropy_target(6) == -3.0
    assert derived.entropy_target(4, mult=1.0) == -4.0
    assert derived.minibatch_size(1024, 128, 64) == 2048
    with pytest.raises(ValueError):
        derived.minibatch_size(10, 3, 4)
    with pytest.raises(ValueError):
        derived.minibatch_size(0, 3, 1)
    with pytest.raises(ValueError):
        derived.entropy_target(0)


def test_imports_do_not_pull_frameworks():
    code = ("import spec, spec.reference, spec.params, spec.derived, sys; "
            "assert not {'jax', 'torch'} & set(sys.modules), sorted({'jax','torch'} & set(sys.modules))")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_spec_reference_sources_do_not_import_frameworks_or_scipy():
    root = os.path.join(REPO, "spec")
    mine = ["__init__.py", "derived.py", "params.py"] + [
        os.path.join("reference", f) for f in os.listdir(os.path.join(root, "reference"))
        if f.endswith(".py")]
    for rel in mine:
        src = open(os.path.join(root, rel)).read()
        for mod in ("jax", "torch", "scipy"):
            assert f"import {mod}" not in src and f"from {mod}" not in src, (rel, mod)
