"""HL-Gauss histogram regression (Appendix D.2) in PyTorch; mirrors ``spec.reference.hlgauss``.

Bin centres are linspace(v_min, v_max, num_bins); the bin edges run from v_min − w/2 to
v_max + w/2. Constants are built on the input's device (float64, then cast, like the reference).
"""

from __future__ import annotations

import functools
import math

import torch


def _check_support(v_min: float, v_max: float, num_bins: int) -> float:
    if int(num_bins) != num_bins or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    if not v_min < v_max:
        raise ValueError(f"v_min ({v_min}) must be < v_max ({v_max})")
    return (float(v_max) - float(v_min)) / (int(num_bins) - 1)


@functools.lru_cache(maxsize=64)
def _support(v_min: float, v_max: float, num_bins: int, dtype: torch.dtype,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(bin centres, bin edges) in ``dtype`` on ``device``, built in float64 and cast; cached,
    since every minibatch needs them and the update is dispatch-bound (never written to)."""
    w = (float(v_max) - float(v_min)) / (int(num_bins) - 1)
    with torch.inference_mode(False):  # plain tensors even on a first call in inference mode
        centres = torch.linspace(float(v_min), float(v_max), int(num_bins), dtype=torch.float64,
                                 device=device)
        last = torch.full((1,), float(v_max) + 0.5 * w, dtype=torch.float64, device=device)
        edges = torch.cat([centres - 0.5 * w, last])
        return centres.to(dtype), edges.to(dtype)


def _centres(v_min: float, v_max: float, num_bins: int, like: torch.Tensor) -> torch.Tensor:
    # torch.compile traces the constants into its graph (once): the cache is for eager calls
    support = _support.__wrapped__ if torch.compiler.is_compiling() else _support
    return support(float(v_min), float(v_max), int(num_bins), like.dtype, like.device)[0]


def hlgauss_target(
    y: torch.Tensor, v_min: float, v_max: float, num_bins: int, sigma: float
) -> torch.Tensor:
    """hist(y)_i = Φ((e_{i+1} − y)/σ) − Φ((e_i − y)/σ), renormalised; y clipped to the support.
    Shape (...,) → (..., num_bins). Not differentiated (targets are constants)."""
    _check_support(v_min, v_max, num_bins)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    edges = _support(float(v_min), float(v_max), int(num_bins), y.dtype, y.device)[1]
    yc = torch.clamp(y, float(v_min), float(v_max))
    cdf = torch.erf((edges - yc[..., None]) / (sigma * math.sqrt(2.0)))
    probs = 0.5 * (cdf[..., 1:] - cdf[..., :-1])
    total = 0.5 * (cdf[..., -1:] - cdf[..., :1])
    return probs / total


def hlgauss_loss(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy −Σ_i p_i · log softmax(logits)_i, shape (...,)."""
    if logits.dim() == 0 or logits.shape != target_probs.shape:
        raise ValueError(f"logits and target_probs must have the same shape (..., num_bins); "
                         f"got {tuple(logits.shape)} and {tuple(target_probs.shape)}")
    return -torch.sum(target_probs * torch.log_softmax(logits, dim=-1), dim=-1)


def hlgauss_decode(logits: torch.Tensor, v_min: float, v_max: float, num_bins: int) -> torch.Tensor:
    """ŷ = ⟨softmax(logits), centres⟩, shape (...,)."""
    _check_support(v_min, v_max, num_bins)
    if logits.dim() == 0 or logits.shape[-1] != num_bins:
        raise ValueError(f"logits must have shape (..., {num_bins}), got {tuple(logits.shape)}")
    return torch.sum(torch.softmax(logits, dim=-1) * _centres(v_min, v_max, num_bins, logits),
                     dim=-1)
