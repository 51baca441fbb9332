"""Actor and critic networks (torch.nn) over the canonical parameter layout (``spec.params``).

Module names map 1:1 to canonical names: an ``Actor``'s ``layers.<i>.weight`` is
``actor/layers/<i>/kernel`` (transposed: torch Linear weights are (out, in), canonical kernels
(in, out)); a ``Critic``'s ``encoder.<i>.norm.scale`` is ``critic/encoder/<i>/norm/scale``.
``load_canonical`` / ``to_canonical`` convert; ``from_canonical`` builds modules whose sizes are
read off a flat dict. A stack of n layers is n − 1 blocks Linear → Norm → SiLU and a plain Linear;
Norm is RMSNorm (scale) or LayerNorm (scale, bias) with ε = 1e-6, written out as in the reference.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spec.reference.networks import num_layers  # layout bookkeeping, framework-neutral

NORMS = ("rms", "layer", "none")
NORM_EPS = 1e-6


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU(x) = x·sigmoid(x)."""
    return F.silu(x)


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """x / √(mean(x², −1) + eps) · scale."""
    return x / torch.sqrt(torch.mean(x * x, dim=-1, keepdim=True) + eps) * scale


def layer_norm(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
               eps: float = NORM_EPS) -> torch.Tensor:
    """(x − mean) / √(var + eps) · scale + bias (population variance over the last axis)."""
    mu = torch.mean(x, dim=-1, keepdim=True)
    var = torch.mean((x - mu) ** 2, dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * scale + bias


class Norm(nn.Module):
    """RMSNorm (``scale``) or LayerNorm (``scale``, ``bias``) over the last dim."""

    def __init__(self, kind: str, dim: int, eps: float = NORM_EPS, dtype=None, device=None):
        super().__init__()
        if kind not in ("rms", "layer"):
            raise ValueError(f"Norm kind must be 'rms' or 'layer', got {kind!r}")
        self.kind, self.eps = kind, eps
        self.scale = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))
        if kind == "layer":
            self.bias = nn.Parameter(torch.zeros(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms":
            return rms_norm(x, self.scale, self.eps)
        return layer_norm(x, self.scale, self.bias, self.eps)


class _RmsBlock(torch.autograd.Function):
    """SiLU(rms_norm(x Wᵀ + b, s)) with one autograd node and a hand-derived backward.

    The forward runs the same operations in the same order as :class:`Layer`'s unfused path
    (identical values); the backward replaces the ~25 small ops and ~10 graph nodes autograd
    records for this block by ~12 ops — the update is dispatch-bound at batch 128, width 128.
    With y = x Wᵀ + b, d = √(mean(y²) + eps), n = y / d, u = n·s:

        ∂u = silu'(u)·g,  ∂s = Σ_batch ∂u·n,  ∂y = (∂u·s − n·mean(∂u·s·n)) / d,
        ∂W = ∂yᵀ x,  ∂b = Σ_batch ∂y,  ∂x = ∂y W.

    Gradients are formed only for inputs that require them (the critic seen by the actor step
    is frozen, so only ∂x is computed there). Not twice differentiable."""

    @staticmethod
    def forward(ctx, x, weight, bias, scale, eps):  # noqa: D102 (see the class docstring)
        y = F.linear(x, weight, bias)
        d = torch.sqrt(torch.mean(y * y, dim=-1, keepdim=True) + eps)
        n = y.div_(d)  # in place (y is not needed again): the same kernel, one buffer fewer
        u = n * scale
        ctx.save_for_backward(x, weight, scale, n, d, u)
        return F.silu(u)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, weight, scale, n, d, u = ctx.saved_tensors
        need_x, need_w, need_b, need_s = ctx.needs_input_grad[:4]
        # in-place ops on this function's own temporaries: the same kernels and values as the
        # out-of-place expressions (gy = (gn − n·mean(gn·n)) / d), fewer 64 KB buffers
        gu = torch.ops.aten.silu_backward.default(g, u)
        tmp = gs = None
        if need_s:
            tmp = gu * n
            gs = torch.sum(tmp.reshape(-1, n.shape[-1]), dim=0)
        gn = gu.mul_(scale)
        tmp = gn * n if tmp is None else torch.mul(gn, n, out=tmp)
        m = torch.mean(tmp, dim=-1, keepdim=True)
        gy = gn.sub_(torch.mul(n, m, out=tmp)).div_(d)
        gx = gy @ weight if need_x else None
        gy2 = gy.reshape(-1, gy.shape[-1])
        gw = gy2.T @ x.reshape(-1, x.shape[-1]) if need_w else None
        gb = torch.sum(gy2, dim=0) if need_b else None
        return gx, gw, gb, gs, None


class Layer(nn.Linear):
    """Linear, and for a block Norm → SiLU after it (state: ``weight``, ``bias``, ``norm.*``)."""

    def __init__(self, d_in: int, d_out: int, norm: str, block: bool, dtype=None, device=None):
        super().__init__(d_in, d_out, dtype=dtype, device=device)
        self.block = block
        if block and norm != "none":
            self.norm = Norm(norm, d_out, dtype=dtype, device=device)
        else:
            self.norm = None
        self._rms_block = block and norm == "rms"  # a plain attribute: read on every call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # under torch.compile the unfused ops instead: inductor derives and fuses the backward
        # itself, and AOTAutograd's persistent cache skips graphs with custom autograd functions
        if self._rms_block and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            norm = self.norm
            return _RmsBlock.apply(x, self.weight, self.bias, norm.scale, norm.eps)
        y = F.linear(x, self.weight, self.bias)
        if not self.block:
            return y
        if self.norm is not None:
            y = self.norm(y)
        return F.silu(y)


class MLP(nn.ModuleList):
    """n layers: n − 1 normalised blocks then a plain Linear; optional SiLU on the input."""

    def __init__(self, d_in: int, features: Sequence[int], norm: str,
                 activate_input: bool = False, dtype=None, device=None):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if len(features) < 1:
            raise ValueError("an MLP needs at least one layer")
        dims = [d_in, *features]
        last = len(features) - 1
        super().__init__([Layer(dims[i], dims[i + 1], norm, i < last, dtype=dtype, device=device)
                          for i in range(len(features))])
        self.activate_input = activate_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate_input:
            x = F.silu(x)
        for layer in self:
            x = layer(x)
        return x


def stack_features(num_layers: int, hidden: int, out: int) -> tuple[int, ...]:
    return (hidden,) * (num_layers - 1) + (out,)


class Actor(nn.Module):
    """obs → (μ, ρ); σ = ``distributions.policy_std(ρ, min_std)`` is applied by the caller."""

    canonical_prefix = "actor"

    def __init__(self, obs_dim: int, action_dim: int, hidden_dim: int, num_layers: int,
                 norm: str, dtype=None, device=None):
        super().__init__()
        self.action_dim = action_dim
        self.layers = MLP(obs_dim, stack_features(num_layers, hidden_dim, 2 * action_dim), norm,
                          dtype=dtype, device=device)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.layers(obs)
        return out[..., : self.action_dim], out[..., self.action_dim:]

    @classmethod
    def from_canonical(cls, flat: Mapping[str, np.ndarray], norm: str, dtype=None,
                       device=None) -> "Actor":
        """An Actor sized from ``flat``'s ``actor/layers/*`` entries and loaded with them."""
        n = num_layers(flat, "actor/layers")
        k0 = np.shape(flat["actor/layers/0/kernel"])
        out = np.shape(flat[f"actor/layers/{n - 1}/kernel"])[1]
        m = cls(k0[0], out // 2, k0[1] if n > 1 else out, n, norm, dtype=dtype, device=device)
        load_canonical(m, flat)
        return m


class Critic(nn.Module):
    """(obs, action) → (Q-head output, embedding z); ``predict(z)`` → (next embedding, reward)."""

    canonical_prefix = "critic"

    def __init__(self, obs_dim: int, action_dim: int, hidden_dim: int, num_encoder_layers: int,
                 num_head_layers: int, num_pred_layers: int, q_out: int, norm: str,
                 dtype=None, device=None):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.encoder = MLP(obs_dim + action_dim,
                           stack_features(num_encoder_layers, hidden_dim, hidden_dim), norm, **kw)
        self.q_head = MLP(hidden_dim, stack_features(num_head_layers, hidden_dim, q_out), norm,
                          activate_input=True, **kw)
        self.predictor = MLP(hidden_dim,
                             stack_features(num_pred_layers, hidden_dim, hidden_dim + 1), norm,
                             activate_input=True, **kw)

    def embed(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.encoder(torch.cat([obs, action], dim=-1))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(obs, action)
        return self.q_head(z), z

    def predict(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.predictor(z)
        return out[..., :-1], out[..., -1]

    @classmethod
    def from_canonical(cls, flat: Mapping[str, np.ndarray], norm: str, obs_dim: int,
                       dtype=None, device=None) -> "Critic":
        """A Critic sized from ``flat``'s ``critic/*`` entries (obs_dim splits the encoder input)."""
        ne = num_layers(flat, "critic/encoder")
        nh = num_layers(flat, "critic/q_head")
        npred = num_layers(flat, "critic/predictor")
        d_in, hidden = np.shape(flat["critic/encoder/0/kernel"])[0], \
            np.shape(flat[f"critic/encoder/{ne - 1}/kernel"])[1]
        q_out = np.shape(flat[f"critic/q_head/{nh - 1}/kernel"])[1]
        m = cls(obs_dim, d_in - obs_dim, hidden, ne, nh, npred, q_out, norm,
                dtype=dtype, device=device)
        load_canonical(m, flat)
        return m


class Value(nn.Module):
    """obs → V(x), the state-value network of ``actor.gradient=ppo`` (canonical
    ``value/layers/*``): n − 1 normalised blocks of width ``hidden_dim`` and a Linear to 1."""

    canonical_prefix = "value"

    def __init__(self, obs_dim: int, hidden_dim: int, num_layers: int, norm: str, dtype=None,
                 device=None):
        super().__init__()
        self.layers = MLP(obs_dim, stack_features(num_layers, hidden_dim, 1), norm, dtype=dtype,
                          device=device)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.layers(obs)[..., 0]

    @classmethod
    def from_canonical(cls, flat: Mapping[str, np.ndarray], norm: str, dtype=None,
                       device=None) -> "Value":
        """A Value network sized from ``flat``'s ``value/layers/*`` entries and loaded with them."""
        n = num_layers(flat, "value/layers")
        k0 = np.shape(flat["value/layers/0/kernel"])
        m = cls(k0[0], k0[1] if n > 1 else 1, n, norm, dtype=dtype, device=device)
        load_canonical(m, flat)
        return m


Modules = Union[nn.Module, Mapping[str, nn.Module], Sequence[nn.Module]]


def _with_prefixes(modules: Modules) -> list[tuple[str, nn.Module]]:
    if isinstance(modules, nn.Module):
        modules = [modules]
    if isinstance(modules, Mapping):
        return list(modules.items())
    out = []
    for m in modules:
        prefix = getattr(m, "canonical_prefix", None)
        if prefix is None:
            raise ValueError(f"{type(m).__name__} has no canonical_prefix; pass a "
                             f"{{prefix: module}} mapping")
        out.append((prefix, m))
    return out


def canonical_name(prefix: str, torch_name: str) -> tuple[str, bool]:
    """torch state name → (canonical name, transposed?): ``layers.0.weight`` under ``actor`` is
    (``actor/layers/0/kernel``, True)."""
    parts = torch_name.split(".")
    transposed = parts[-1] == "weight" and len(parts) >= 2 and parts[-2] != "norm"
    if transposed:
        parts[-1] = "kernel"
    return "/".join([prefix, *parts]), transposed


def named_canonical_parameters(modules: Modules) -> Iterator[tuple[str, nn.Parameter, bool]]:
    """Yields (canonical name, parameter, transposed?) for every parameter of ``modules``."""
    for prefix, m in _with_prefixes(modules):
        for name, p in m.named_parameters():
            cname, transposed = canonical_name(prefix, name)
            yield cname, p, transposed


def to_canonical(modules: Modules) -> dict[str, np.ndarray]:
    """Parameters as the canonical flat numpy dict (kernels (in, out)); for checkpoints/export."""
    out: dict[str, np.ndarray] = {}
    for cname, p, transposed in named_canonical_parameters(modules):
        t = p.detach()
        out[cname] = (t.T if transposed else t).cpu().numpy().copy()
    return out


def load_canonical(modules: Modules, flat: Mapping[str, np.ndarray], strict: bool = True) -> None:
    """Copy canonical values into ``modules`` in place (cast to each parameter's dtype/device).

    Entries of other prefixes (``obs_norm/*``, ``multipliers/*``, another network) are ignored;
    with ``strict``, a missing entry, a wrong shape or an unused entry under a module's prefix is
    a ValueError naming it.
    """
    used: set[str] = set()
    with torch.no_grad():
        for cname, p, transposed in named_canonical_parameters(modules):
            if cname not in flat:
                if strict:
                    raise ValueError(f"canonical parameter '{cname}' is missing")
                continue
            src = torch.as_tensor(np.asarray(flat[cname]))
            if transposed:
                src = src.T
            if tuple(src.shape) != tuple(p.shape):
                want = tuple(p.shape[::-1]) if transposed else tuple(p.shape)
                raise ValueError(f"canonical parameter '{cname}' has shape "
                                 f"{tuple(np.shape(flat[cname]))}, expected {want}")
            p.copy_(src.to(dtype=p.dtype, device=p.device))
            used.add(cname)
    if strict:
        prefixes = [pre + "/" for pre, _ in _with_prefixes(modules)]
        extra = sorted(k for k in flat if any(k.startswith(pre) for pre in prefixes)
                       and k not in used)
        if extra:
            raise ValueError(f"canonical parameters not used by the modules: {extra}")
