"""Actor and critic networks (flax.linen) over the canonical parameter layout.

Parameter trees mirror ``spec.params`` exactly: a flax path ``critic/encoder/0/kernel`` is the
canonical name ``critic/encoder/0/kernel``, so conversion is a split/join of path strings.
Initial values come from ``spec.params.init_params`` (same numbers in every backend).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_unused_init = nn.initializers.zeros  # never used: weights always come from the canonical layout


class Norm(nn.Module):
    """RMSNorm (learnable scale) or LayerNorm (scale and bias), ε = 1e-6."""

    kind: str
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), x.dtype)
        if self.kind == "rms":
            return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * scale
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), x.dtype)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias


class Layer(nn.Module):
    """Linear, optionally followed by Norm → SiLU (the normalised block)."""

    features: int
    norm: str
    block: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _unused_init, (x.shape[-1], self.features), x.dtype)
        bias = self.param("bias", _unused_init, (self.features,), x.dtype)
        y = jnp.dot(x, kernel, precision=jax.lax.Precision.HIGHEST) + bias
        if not self.block:
            return y
        if self.norm != "none":
            y = Norm(self.norm, name="norm")(y)
        return nn.silu(y)


class MLP(nn.Module):
    """A stack of n layers: n−1 normalised blocks then a plain Linear."""

    features: Sequence[int]
    norm: str
    activate_input: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.activate_input:
            x = nn.silu(x)
        last = len(self.features) - 1
        for i, f in enumerate(self.features):
            x = Layer(f, self.norm, block=i < last, name=str(i))(x)
        return x


def stack_features(num_layers: int, hidden: int, out: int) -> tuple[int, ...]:
    return (hidden,) * (num_layers - 1) + (out,)


class Actor(nn.Module):
    """obs → (μ, ρ); σ = exp(ρ) + min_std is applied by the caller."""

    action_dim: int
    hidden_dim: int
    num_layers: int
    norm: str

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(stack_features(self.num_layers, self.hidden_dim, 2 * self.action_dim),
                  self.norm, name="layers")(obs)
        return out[..., : self.action_dim], out[..., self.action_dim :]


class Critic(nn.Module):
    """(obs, action) → (Q-head output, embedding z); ``predict`` gives the auxiliary head."""

    hidden_dim: int
    num_encoder_layers: int
    num_head_layers: int
    num_pred_layers: int
    q_out: int
    norm: str

    def setup(self) -> None:
        self.encoder = MLP(stack_features(self.num_encoder_layers, self.hidden_dim, self.hidden_dim),
                           self.norm)
        self.q_head = MLP(stack_features(self.num_head_layers, self.hidden_dim, self.q_out),
                          self.norm, activate_input=True)
        self.predictor = MLP(
            stack_features(self.num_pred_layers, self.hidden_dim, self.hidden_dim + 1),
            self.norm, activate_input=True)

    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        z = self.encoder(jnp.concatenate([obs, action], axis=-1))
        return self.q_head(z), z

    def predict(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = self.predictor(z)
        return out[..., :-1], out[..., -1]


class Value(nn.Module):
    """obs → V(x), the state-value network of ``actor.gradient=ppo`` (``value/layers``): n − 1
    normalised blocks of width ``hidden_dim`` and a Linear to one output."""

    hidden_dim: int
    num_layers: int
    norm: str

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        out = MLP(stack_features(self.num_layers, self.hidden_dim, 1), self.norm,
                  name="layers")(obs)
        return out[..., 0]


def nest(flat: Mapping[str, Any], prefix: str) -> dict:
    """Canonical flat names under ``prefix/`` → nested flax param dict (as jnp arrays)."""
    tree: dict = {}
    for name, value in flat.items():
        if not name.startswith(prefix + "/"):
            continue
        node = tree
        parts = name[len(prefix) + 1 :].split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = jnp.asarray(value)
    return tree


def flatten(tree: Mapping[str, Any], prefix: str) -> dict[str, np.ndarray]:
    """Nested flax param dict → canonical flat names (numpy arrays)."""
    out: dict[str, np.ndarray] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = "/".join(str(k.key) for k in path)
        out[f"{prefix}/{keys}"] = np.asarray(leaf)
    return out
