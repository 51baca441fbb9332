"""D-REPPO networks (paper Appendix C): the categorical actor, the all-actions critic with its
action-conditioned predictor head, the Nature-CNN torso for pixel observations, and their
initial weights from the spec's numpy init (layout ``spec.params.param_layout(action_space=
"discrete")``)."""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from reppo_jax.networks import MLP, stack_features


class NatureCNN(nn.Module):
    """Nature-DQN torso on stacked 84×84 frames: uint8 (..., C·84·84) or (..., C, 84, 84)
    scaled by 1/255 → conv 8×8/4 (32) → 4×4/2 (64) → 3×3/1 (64), ReLU after each → 3136
    features. Params ``{0,1,2}/{kernel (kh, kw, in, out), bias}`` (``spec.params``)."""

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        if obs.shape[-1] == 84:
            lead, channels = obs.shape[:-3], obs.shape[-3]
        else:
            lead, channels = obs.shape[:-1], obs.shape[-1] // (84 * 84)
        x = obs.reshape((-1, channels, 84, 84))
        x = jnp.transpose(x.astype(jnp.float32) / 255.0, (0, 2, 3, 1))
        for i, (f, k, st) in enumerate(((32, 8, 4), (64, 4, 2), (64, 3, 1))):
            x = nn.relu(nn.Conv(f, (k, k), (st, st), padding="VALID", name=str(i))(x))
        return x.reshape(lead + (-1,))


class CategoricalActor(nn.Module):
    """obs → |A| logits (canonical ``actor/layers``, after ``actor/torso`` for pixels)."""

    num_actions: int
    hidden_dim: int
    num_layers: int
    norm: str
    torso: str = "none"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        if self.torso == "nature_cnn":
            obs = NatureCNN(name="torso")(obs)
        return MLP(stack_features(self.num_layers, self.hidden_dim, self.num_actions), self.norm,
                   name="layers")(obs)


class DiscreteCritic(nn.Module):
    """obs → (Q-head output (..., |A|, q_out), embedding z); ``predict(z, onehot)`` → the
    auxiliary head's (next embedding, reward)."""

    hidden_dim: int
    num_encoder_layers: int
    num_head_layers: int
    num_pred_layers: int
    num_actions: int
    q_out: int
    norm: str
    torso: str = "none"

    def setup(self) -> None:
        if self.torso == "nature_cnn":
            self.cnn = NatureCNN(name="torso")
        self.encoder = MLP(stack_features(self.num_encoder_layers, self.hidden_dim, self.hidden_dim),
                           self.norm)
        self.q_head = MLP(stack_features(self.num_head_layers, self.hidden_dim,
                                         self.num_actions * self.q_out),
                          self.norm, activate_input=True)
        self.predictor = MLP(
            stack_features(self.num_pred_layers, self.hidden_dim, self.hidden_dim + 1), self.norm)

    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.torso == "nature_cnn":
            obs = self.cnn(obs)
        z = self.encoder(obs)
        out = self.q_head(z)
        return out.reshape(out.shape[:-1] + (self.num_actions, self.q_out)), z

    def predict(self, z: jax.Array, action_onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = self.predictor(jnp.concatenate([nn.silu(z), action_onehot], axis=-1))
        return out[..., :-1], out[..., -1]


class Nets(NamedTuple):
    actor: CategoricalActor
    critic: DiscreteCritic


def make_nets(config, h, torso: str = "none") -> Nets:
    c, a = config.critic, config.actor
    return Nets(
        CategoricalActor(h.action_dim, a.hidden_dim, a.num_layers, a.norm, torso),
        DiscreteCritic(c.hidden_dim, c.num_encoder_layers, c.num_head_layers, c.num_pred_layers,
                       h.action_dim, h.num_bins, c.norm, torso),
    )


def torso_of(env) -> str:
    """'nature_cnn' for pixel envs (``env.pixels``), else 'none' (flat observations)."""
    return "nature_cnn" if getattr(env, "pixels", False) else "none"


def canonical_init(config, h, seed: int, torso: str = "none") -> dict[str, np.ndarray]:
    """Initial weights of the discrete layout from the spec's numpy init."""
    from spec import params as P

    layout = P.layout_from_config(config, h.obs_dim, h.action_dim, action_space="discrete",
                                  torso=torso)
    return P.init_params(np.random.default_rng(seed), layout, v_min=h.v_min, v_max=h.v_max,
                         sigma=h.sigma, logit_prior_scale=config.critic.logit_prior_scale,
                         alpha_init=config.loss.alpha_init, beta_init=config.loss.beta_init,
                         num_bins=h.num_bins)
