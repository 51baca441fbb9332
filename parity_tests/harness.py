"""Run one reference primitive and its backend counterparts on the same inputs and compare
values (and gradients) under the tolerance policy of ``tolerance.py``."""

from __future__ import annotations

import numpy as np
import pytest

from parity_tests.backends import BACKENDS, MissingCounterpart, counterpart, jitted, reference
from parity_tests.tolerance import (
    FD_RTOL, ULPS, assert_close, backend_vjp, eps, reference_fd_vjp,
)
from spec.reference.normalization import RunningStats as RefStats


def available_backends():
    bes = [be for be in BACKENDS.values() if be.available()]
    if not bes:
        pytest.skip("no backend installed: pip install -e '.[jax]' and/or -e '.[torch]'")
    return bes


def cast(args, dtype):
    """Floating numpy arrays → ``dtype``; bool arrays, Python scalars and strings unchanged."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype)
        elif isinstance(a, RefStats):
            a = RefStats(a.mean.astype(dtype), a.var.astype(dtype), a.count)
        out.append(a)
    return tuple(out)


def _fn(be, qualname, jit=True):
    try:
        fn = counterpart(be.name, qualname)
    except MissingCounterpart as e:
        pytest.fail(f"{be.name}: {e} (see test_coverage)")
    return jitted(fn) if (jit and be.name == "jax") else fn


def compare_tree(actual, expected, dtype, layer, scale, what):
    if isinstance(expected, RefStats):
        assert isinstance(actual, RefStats), f"{what}: expected RunningStats, got {type(actual)}"
        assert_close(actual.mean, expected.mean, dtype, layer, scale, what + ".mean")
        assert_close(actual.var, expected.var, dtype, layer, scale * scale, what + ".var")
        assert_close(np.float64(actual.count), np.float64(expected.count), dtype, layer, 0.0,
                     what + ".count", check_dtype=False)
    elif isinstance(expected, dict):
        assert set(actual) == set(expected), f"{what}: keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            compare_tree(actual[k], expected[k], dtype, layer, scale, f"{what}[{k!r}]")
    elif isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), \
            f"{what}: expected a {len(expected)}-tuple, got {type(actual).__name__}"
        for i, (a, x) in enumerate(zip(actual, expected)):
            compare_tree(a, x, dtype, layer, scale, f"{what}[{i}]")
    else:
        assert_close(actual, expected, dtype, layer, scale, what)


def check_values(qualname, args, kwargs=None, *, dtype, scale=0.0, layer="value"):
    """Reference vs every installed backend on identical (cast) inputs; returns the reference."""
    kwargs = kwargs or {}
    args = cast(args, dtype)
    ref = reference(qualname)(*args, **kwargs)
    for be in available_backends():
        fn = _fn(be, qualname)
        with be.precision(dtype):
            out = be.numpy(fn(*be.array(args), **kwargs))
        compare_tree(out, ref, dtype, layer, scale, f"{be.name} {qualname}")
    return ref


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def check_grads(qualname, args, kwargs=None, *, dtype, wrt, select=_first, scale=0.0,
                fd=True, layer="grad"):
    """∂/∂args[wrt] of Σ c·select(f(args)) for a fixed random cotangent c: jax vs torch
    (ULPS[layer]·ε), and in float64 each backend vs central finite differences of the reference
    (FD_RTOL). A detached input must get an exactly-zero gradient in every backend alike."""
    kwargs = kwargs or {}
    args = cast(args, dtype)
    out = np.asarray(select(reference(qualname)(*args, **kwargs)))
    ct = np.random.default_rng(0).standard_normal(out.shape).astype(dtype)
    grads = {}
    for be in available_backends():
        fn = _fn(be, qualname, jit=False)  # backend_vjp jits the whole VJP
        with be.precision(dtype):
            grads[be.name] = backend_vjp(be, fn, args, kwargs, wrt, ct, select)
    names = sorted(grads)
    for i, arg_i in enumerate(wrt):
        for name in names:
            assert grads[name][i].dtype == np.dtype(dtype), \
                f"{name} grad of arg {arg_i} has dtype {grads[name][i].dtype}"
        if len(names) == 2:
            a, b = grads[names[0]][i], grads[names[1]][i]
            # ``scale``: magnitude of the chain-rule terms per unit cotangent
            g_scale = scale * float(np.max(np.abs(ct), initial=0.0)) + float(
                np.max(np.abs(b), initial=0.0))
            assert_close(a, b, dtype, layer, g_scale,
                         f"grad {qualname} wrt arg {arg_i}: {names[0]} vs {names[1]}")
    if fd and np.dtype(dtype) == np.float64:
        fd_g = reference_fd_vjp(reference(qualname), args, kwargs, wrt, ct, select)
        f_mag = float(np.sum(np.abs(ct * out)))
        for i, arg_i in enumerate(wrt):
            g = fd_g[i]
            m = ~np.isnan(g)
            atol = FD_RTOL * (float(np.max(np.abs(g[m]), initial=0.0)) + 1e-3 * f_mag + 1.0)
            for name in names:
                np.testing.assert_allclose(
                    grads[name][i][m], g[m], rtol=FD_RTOL, atol=atol,
                    err_msg=f"{name} grad of {qualname} wrt arg {arg_i} vs reference FD")
    return grads


__all__ = ["available_backends", "cast", "check_values", "check_grads", "ULPS", "eps"]
