"""Private helpers shared by the reference modules (dtype policy, stable primitives)."""

from __future__ import annotations

import math

import numpy as np

_ERF = np.frompyfunc(math.erf, 1, 1)


def float_dtype(*arrays: np.ndarray) -> np.dtype:
    """The floating dtype to compute in: the arrays' result type, float64 for int/bool inputs.

    Python ``int``/``float`` arguments are weak (as in NEP 50) and do not take part; scalar
    hyperparameters (α, γ, ...) are cast to this dtype so a
    float32 input is never silently upcast to float64.
    """
    strong = [a for a in arrays if not isinstance(a, (bool, int, float))]
    if not strong:
        return np.dtype(np.float64)
    dt = np.result_type(*[np.asarray(a).dtype for a in strong])
    if not np.issubdtype(dt, np.floating):
        return np.dtype(np.float64)
    return np.dtype(dt)


def as_float(x, dtype: np.dtype) -> np.ndarray:
    """``np.asarray(x, dtype)`` (a bool/int mask becomes 0/1 in the float dtype)."""
    return np.asarray(x).astype(dtype, copy=False)


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + eˣ) without overflow: np.logaddexp(0, x)."""
    return np.logaddexp(np.zeros((), dtype=x.dtype), x)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Stable log-softmax over the last axis: x − max − log Σ exp(x − max)."""
    m = np.max(logits, axis=-1, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def erf(x: np.ndarray) -> np.ndarray:
    """Elementwise error function via ``math.erf`` (float64 libm, correctly rounded to ~1 ulp),
    cast back to the input dtype. Speed is irrelevant for the reference; accuracy is not."""
    x = np.asarray(x)
    out = _ERF(x.astype(np.float64).ravel()).astype(np.float64)
    return out.reshape(x.shape).astype(x.dtype if np.issubdtype(x.dtype, np.floating)
                                      else np.float64, copy=False)


def check_last_dims_match(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"{name_a} and {name_b} need a trailing (action/feature) dim, "
                         f"got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"last dims differ: {name_a} {a.shape} vs {name_b} {b.shape}")


def broadcast_shape(**arrays: np.ndarray) -> tuple[int, ...]:
    """np.broadcast_shapes with a ValueError naming the arrays."""
    try:
        return np.broadcast_shapes(*[np.shape(a) for a in arrays.values()])
    except ValueError:
        desc = ", ".join(f"{k} {np.shape(v)}" for k, v in arrays.items())
        raise ValueError(f"shapes do not broadcast: {desc}") from None
