"""Network forward passes on the canonical flat parameter dict (spec/README.md; docs/design.md
"Networks"). Kernels are (in, out); a stack of n layers is n − 1 blocks
Linear → Norm → SiLU followed by one plain Linear."""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from spec.reference._common import as_float, float_dtype

NORMS = ("rms", "layer", "none")


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU(x) = x·sigmoid(x); sigmoid(x) = exp(−softplus(−x)) so exp never overflows."""
    dt = float_dtype(x)
    x = as_float(x, dt)
    return x * np.exp(-np.logaddexp(np.zeros((), dt), -x))


def rms_norm(x: np.ndarray, scale: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """RMSNorm: x / √(mean(x², −1) + eps) · scale (learnable scale, no bias)."""
    dt = float_dtype(x, scale)
    x, scale = as_float(x, dt), as_float(scale, dt)
    if x.ndim == 0 or scale.shape != x.shape[-1:]:
        raise ValueError(f"scale {scale.shape} must equal the feature dim of x {x.shape}")
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + dt.type(eps)) * scale


def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """LayerNorm: (x − mean) / √(var + eps) · scale + bias (population variance, last axis)."""
    dt = float_dtype(x, scale, bias)
    x, scale, bias = as_float(x, dt), as_float(scale, dt), as_float(bias, dt)
    if x.ndim == 0 or scale.shape != x.shape[-1:] or bias.shape != x.shape[-1:]:
        raise ValueError(
            f"scale {scale.shape} and bias {bias.shape} must equal the feature dim of x {x.shape}"
        )
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + dt.type(eps)) * scale + bias


def num_layers(params: Mapping[str, np.ndarray], prefix: str) -> int:
    """Number of Dense layers of a stack = count of ``<prefix>/<i>/kernel`` (must be 0..n−1)."""
    pat = re.compile(re.escape(prefix) + r"/(\d+)/kernel$")
    idx = sorted(int(m.group(1)) for k in params if (m := pat.match(k)))
    if not idx:
        raise ValueError(f"no layers '{prefix}/<i>/kernel' in params")
    if idx != list(range(len(idx))):
        raise ValueError(f"layers of '{prefix}' are not numbered 0..n-1: {idx}")
    return len(idx)


def _get(params: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return params[key]
    except KeyError:
        raise ValueError(f"missing parameter '{key}'") from None


def mlp_forward(
    params: Mapping[str, np.ndarray],
    prefix: str,
    x: np.ndarray,
    norm: str,
    activate_input: bool = False,
) -> np.ndarray:
    """Stack forward: [SiLU(x) if activate_input]; layers 0..n−2: x = SiLU(Norm(x@K + b));
    last layer: x@K + b. Norm "rms" uses ``<prefix>/<i>/norm/scale``, "layer" also
    ``/norm/bias``, "none" skips it."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    n = num_layers(params, prefix)
    dt = float_dtype(x, *[_get(params, f"{prefix}/{i}/kernel") for i in range(n)])
    h = as_float(x, dt)
    if activate_input:
        h = silu(h)
    for i in range(n):
        k = as_float(_get(params, f"{prefix}/{i}/kernel"), dt)
        b = as_float(_get(params, f"{prefix}/{i}/bias"), dt)
        if h.ndim == 0 or k.ndim != 2 or h.shape[-1] != k.shape[0] or b.shape != k.shape[1:]:
            raise ValueError(
                f"layer '{prefix}/{i}': input {h.shape}, kernel {k.shape}, bias {b.shape} "
                f"do not fit"
            )
        h = h @ k + b
        if i < n - 1:
            if norm == "rms":
                h = rms_norm(h, _get(params, f"{prefix}/{i}/norm/scale"))
            elif norm == "layer":
                h = layer_norm(h, _get(params, f"{prefix}/{i}/norm/scale"),
                               _get(params, f"{prefix}/{i}/norm/bias"))
            h = silu(h)
    return h


def actor_forward(
    params: Mapping[str, np.ndarray], obs: np.ndarray, norm: str
) -> tuple[np.ndarray, np.ndarray]:
    """Actor stack ``actor/layers`` on (already normalised) obs → (mean μ, raw std ρ), the two
    halves of the last dim (2·|A|). σ = ``distributions.policy_std(ρ, min_std)``."""
    out = mlp_forward(params, "actor/layers", obs, norm)
    if out.shape[-1] % 2:
        raise ValueError(f"actor output dim must be 2*action_dim, got {out.shape[-1]}")
    a = out.shape[-1] // 2
    return out[..., :a], out[..., a:]


def critic_forward(
    params: Mapping[str, np.ndarray], obs: np.ndarray, action: np.ndarray, norm: str
) -> tuple[np.ndarray, np.ndarray]:
    """z = encoder(obs ⊕ action) (``critic/encoder``, plain Linear last: the embedding of D.3);
    q_out = ``critic/q_head``(SiLU(z)). Returns (q_out, z)."""
    dt = float_dtype(obs, action)
    obs, action = as_float(obs, dt), as_float(action, dt)
    if obs.ndim == 0 or action.ndim == 0 or obs.shape[:-1] != action.shape[:-1]:
        raise ValueError(f"obs {obs.shape} and action {action.shape} need equal batch dims")
    z = mlp_forward(params, "critic/encoder", np.concatenate([obs, action], axis=-1), norm)
    q_out = mlp_forward(params, "critic/q_head", z, norm, activate_input=True)
    return q_out, z


def predictor_forward(
    params: Mapping[str, np.ndarray], z: np.ndarray, norm: str
) -> tuple[np.ndarray, np.ndarray]:
    """``critic/predictor``(SiLU(z)) → (predicted next embedding (…, H), predicted reward (…,))."""
    out = mlp_forward(params, "critic/predictor", z, norm, activate_input=True)
    return out[..., :-1], out[..., -1]
