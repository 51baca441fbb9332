"""HL-Gauss histogram regression (paper §3.3 and Appendix D.2; Farebrother et al. 2024).

Bin centres are linspace(v_min, v_max, num_bins) (``spec.derived.hlgauss_support``); bin i covers
[c_i − w/2, c_i + w/2], so the edges run from v_min − w/2 to v_max + w/2.
"""

from __future__ import annotations

import math

import numpy as np

from spec.derived import hlgauss_bin_width, hlgauss_support
from spec.reference._common import as_float, erf, float_dtype, log_softmax


def hlgauss_target(
    y: np.ndarray, v_min: float, v_max: float, num_bins: int, sigma: float
) -> np.ndarray:
    """hist(y)_i = Φ((e_{i+1} − y)/σ) − Φ((e_i − y)/σ), renormalised to sum to 1 (D.2).

    Shape (..., ) → (..., num_bins). The target y is first clipped to [v_min, v_max]: the value
    range is part of the algorithm (v = r/(1−γ) bounds, Table 2) and the histogram can only
    represent values on its support, so clipping is the defined behaviour, not silent data loss.
    Φ differences are computed as ½[erf(b_{i+1}) − erf(b_i)] with b = (e − y)/(σ√2).
    """
    dt = float_dtype(y)
    y = as_float(y, dt)
    w = hlgauss_bin_width(v_min, v_max, num_bins)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    edges = (hlgauss_support(v_min, v_max, num_bins) - 0.5 * w)
    edges = np.append(edges, float(v_max) + 0.5 * w).astype(dt)
    yc = np.clip(y, dt.type(v_min), dt.type(v_max))
    b = (edges - yc[..., None]) / dt.type(sigma * math.sqrt(2.0))
    cdf = erf(b)
    probs = 0.5 * (cdf[..., 1:] - cdf[..., :-1])
    total = 0.5 * (cdf[..., -1:] - cdf[..., :1])
    return probs / total


def hlgauss_loss(logits: np.ndarray, target_probs: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy −Σ_i hist_i · log softmax(logits)_i, shape (...,) (D.2)."""
    dt = float_dtype(logits, target_probs)
    logits, target_probs = as_float(logits, dt), as_float(target_probs, dt)
    if logits.ndim == 0 or logits.shape != target_probs.shape:
        raise ValueError(
            f"logits and target_probs must have the same shape (..., num_bins); "
            f"got {logits.shape} and {target_probs.shape}"
        )
    return -np.sum(target_probs * log_softmax(logits), axis=-1)


def hlgauss_decode(logits: np.ndarray, v_min: float, v_max: float, num_bins: int) -> np.ndarray:
    """ŷ = ⟨softmax(logits), centres⟩ (D.2), shape (...,)."""
    dt = float_dtype(logits)
    logits = as_float(logits, dt)
    if logits.ndim == 0 or logits.shape[-1] != num_bins:
        raise ValueError(f"logits must have shape (..., {num_bins}), got {logits.shape}")
    centres = hlgauss_support(v_min, v_max, num_bins).astype(dt)
    p = np.exp(log_softmax(logits))
    return np.sum(p * centres, axis=-1)
