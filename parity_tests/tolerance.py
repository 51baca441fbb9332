"""Tolerance policy (see README.md) and the comparison / gradient helpers the tests share.

A backend result y agrees with the reference x when, elementwise,

    |y − x| ≤ ULPS[layer] · ε(dtype) · (|x| + scale)

ε is the dtype's machine epsilon (2⁻²³ for float32, 2⁻⁵² for float64) and ``scale`` is the
magnitude of the intermediate terms the result was summed/cancelled from (computed by each test
from its inputs, in float64). Rounding-error analysis bounds a sum's error by n·ε·Σ|terms| and
an elementwise libm call's by a few ulps of its output; ``scale`` carries the Σ|terms| part, so
cancellation (log π = log N − log|J| in the tanh tails, a histogram bin of two erf values near 1)
is allowed for exactly as much as the arithmetic produces and no more.
"""

from __future__ import annotations

import numpy as np

ULPS = {
    "value": 64,          # layer-1 primitives: elementwise maths and short reductions
    "grad": 256,          # layer-1 gradients: one more pass of the same operations
    "network": 1024,      # layer-2 forward: chained matmuls (K ≤ 64) and norms
    "network_grad": 4096, # layer-2 parameter gradients: backprop through the whole stack
    "rollout": 1024,      # layer-4 batch fields: ≤ 2 network forwards after a normalisation
}
FD_RTOL = 1e-6            # float64 central finite differences of the reference, h ≈ 1e-6·|x|


WORST: dict[tuple[str, str], dict[str, float]] = {}
"""(layer, dtype) → the largest ``|diff| / tol`` and ``|diff|`` seen by :func:`assert_close`
(and :func:`note_worst`) in this process; printed at the end of the session by conftest.py, so
each run states how close the ports came to the tolerance, not only that they stayed within."""


def note_worst(layer: str, dtype, ratio: float, diff: float) -> None:
    """Record one comparison's largest |diff|/tol and |diff| under (layer, dtype)."""
    entry = WORST.setdefault((layer, np.dtype(dtype).name), {"ratio": 0.0, "diff": 0.0,
                                                             "checks": 0})
    entry["ratio"] = max(entry["ratio"], float(ratio))
    entry["diff"] = max(entry["diff"], float(diff))
    entry["checks"] += 1


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def assert_close(actual, expected, dtype, layer: str = "value", scale=0.0, what: str = "",
                 check_dtype: bool = True) -> None:
    """Assert the policy above; reports the worst element, its inputs-free indices and margin."""
    a = np.asarray(actual)
    x = np.asarray(expected)
    assert a.shape == x.shape, f"{what}: shape {a.shape} != reference {x.shape}"
    if check_dtype and np.issubdtype(x.dtype, np.floating):
        assert a.dtype == x.dtype, f"{what}: dtype {a.dtype} != reference {x.dtype}"
    if x.dtype == bool or not np.issubdtype(x.dtype, np.floating):
        np.testing.assert_array_equal(a, x, err_msg=what)
        return
    a64, x64 = a.astype(np.float64), x.astype(np.float64)
    assert np.array_equal(np.isfinite(a64), np.isfinite(x64)), \
        f"{what}: non-finite pattern differs\n backend {a64}\n reference {x64}"
    fin = np.isfinite(x64)
    # floor: XLA on CPU flushes subnormals to zero, so results below the smallest normal number
    # are compared as 0 (no tolerance is loosened above it).
    tol = ULPS[layer] * eps(dtype) * (np.abs(x64) + np.asarray(scale, np.float64)) \
        + float(np.finfo(np.dtype(dtype)).tiny)
    tol = np.broadcast_to(tol, x64.shape)
    err = np.abs(a64 - x64)
    if fin.any():
        note_worst(layer, dtype, np.max(err[fin] / tol[fin]), np.max(err[fin]))
    bad = fin & (err > tol)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(fin, err / np.maximum(tol, 1e-300), 0)), x64.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{x64.size} elements beyond {ULPS[layer]} ulps·(|ref|+scale)"
            f" ({np.dtype(dtype).name}); worst at {i}: backend {a64[i]!r} reference {x64[i]!r} "
            f"|diff| {err[i]:.3e} tol {tol[i]:.3e} (max |diff| {err.max():.3e})")


_GRAD_FNS: dict = {}


def _jax_grad_fn(fn, wrt, select):
    """One function computing the VJP, so that ``jitted`` compiles it once per shape."""
    key = (fn, wrt, select)
    if key not in _GRAD_FNS:
        import jax
        import jax.numpy as jnp

        def grad_fn(*args, **kwargs):
            ct, args = args[-1], list(args[:-1])

            def f(*diff):
                a = list(args)
                for i, d in zip(wrt, diff):
                    a[i] = d
                out = select(fn(*a, **kwargs))
                return jnp.sum(out * ct.astype(out.dtype))

            return jax.grad(f, argnums=tuple(range(len(wrt))))(*[args[i] for i in wrt])

        _GRAD_FNS[key] = grad_fn
    return _GRAD_FNS[key]


def backend_vjp(be, fn, args, kwargs, wrt, cotangent, select=lambda out: out):
    """∂/∂args[wrt] of Σ cotangent · select(fn(*args, **kwargs)) in the backend; numpy grads.
    JAX: the VJP runs under ``jax.jit`` (see ``backends.jitted``), as the training step does."""
    wrt = tuple(wrt)
    xs = list(be.array(tuple(args)))
    if be.name == "jax":
        from parity_tests.backends import JIT, jitted

        if not JIT:
            import jax
            import jax.numpy as jnp

            def f(*diff):
                a = list(xs)
                for i, d in zip(wrt, diff):
                    a[i] = d
                out = select(fn(*a, **kwargs))
                return jnp.sum(out * jnp.asarray(cotangent, out.dtype))

            return [np.asarray(g) for g in jax.grad(f, argnums=tuple(range(len(wrt))))(
                *[xs[i] for i in wrt])]
        grads = jitted(_jax_grad_fn(fn, wrt, select))(*xs, be.array(np.asarray(cotangent)),
                                                      **kwargs)
        return [np.asarray(g) for g in grads]
    import torch

    for i in wrt:
        xs[i] = xs[i].clone().requires_grad_(True)
    out = select(fn(*xs, **kwargs))
    torch.sum(out * torch.as_tensor(np.asarray(cotangent), dtype=out.dtype)).backward()
    return [(xs[i].grad if xs[i].grad is not None else torch.zeros_like(xs[i])).numpy()
            for i in wrt]


def reference_fd_vjp(fn, args, kwargs, wrt, cotangent, select=lambda out: out, rel_h=1e-6,
                     max_coords=6, seed=0):
    """Central finite differences of the float64 reference (the independent third opinion) at
    up to ``max_coords`` randomly chosen coordinates of each differentiated argument (the rest
    are NaN): the backends are already compared with each other on every coordinate."""
    args = [np.array(a, dtype=np.float64) if isinstance(a, np.ndarray) else a for a in args]
    rng = np.random.default_rng(seed)

    def scalar(a):
        return float(np.sum(np.asarray(cotangent) * np.asarray(select(fn(*a, **kwargs)))))

    grads = []
    for i in wrt:
        g = np.full(args[i].shape, np.nan)
        coords = list(np.ndindex(args[i].shape))
        if len(coords) > max_coords:
            coords = [coords[k] for k in rng.choice(len(coords), max_coords, replace=False)]
        for j in coords:
            h = rel_h * max(1.0, abs(float(args[i][j])))
            plus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            minus = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            plus[i][j] += h
            minus[i][j] -= h
            g[j] = (scalar(plus) - scalar(minus)) / (2 * h)
        grads.append(g)
    return grads


def flush_scale(multiplier: float, dtype) -> float:
    """The ``scale`` term covering a subnormal intermediate that XLA flushed to zero before it
    was multiplied by ``multiplier`` (e.g. α · mean(Ĥ − ε_H) with Ĥ ≈ ε_H): the absolute error
    is then up to ``multiplier · tiny``, above the policy's ``tiny`` floor when multiplier > 1."""
    return float(multiplier) * float(np.finfo(np.dtype(dtype)).tiny) / (ULPS["value"] * eps(dtype))
