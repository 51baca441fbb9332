"""Canonical parameter layout, numpy initialisation and ``.npz`` checkpoints (spec/README.md).

Parameters are a flat ``dict[str, np.ndarray]``; kernels are (in, out). Every backend converts
to/from this dict, so one file format and one initialisation serve all of them.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np

from spec.reference.hlgauss import hlgauss_target
from spec.reference.normalization import running_stats_init

SCHEMA_VERSION = 1
_SCHEMA_KEY = "__schema_version__"
_META_KEY = "__metadata__"

_NORMS = ("rms", "layer", "none")
_VALUE_KINDS = ("hlgauss", "mse")


def _stack(layout: dict, prefix: str, d_in: int, hidden: int, d_out: int, n: int, norm: str) -> None:
    if n < 1:
        raise ValueError(f"stack '{prefix}' needs at least one layer, got {n}")
    dims = [d_in] + [hidden] * (n - 1) + [d_out]
    for i in range(n):
        layout[f"{prefix}/{i}/kernel"] = (dims[i], dims[i + 1])
        layout[f"{prefix}/{i}/bias"] = (dims[i + 1],)
        if i < n - 1 and norm != "none":
            layout[f"{prefix}/{i}/norm/scale"] = (dims[i + 1],)
            if norm == "layer":
                layout[f"{prefix}/{i}/norm/bias"] = (dims[i + 1],)


def param_layout(
    obs_dim: int,
    action_dim: int,
    *,
    critic_hidden: int,
    actor_hidden: int,
    num_encoder_layers: int,
    num_head_layers: int,
    num_pred_layers: int,
    actor_layers: int,
    num_bins: int,
    critic_norm: str,
    actor_norm: str,
    value_kind: str = "hlgauss",
    action_space: str = "continuous",
    torso: str = "none",
    value_layers: int = 0,
) -> dict[str, tuple[int, ...]]:
    """Names → shapes, in a fixed order (actor, encoder, q head, predictor, [value],
    obs_norm, multipliers).

    Stacks: ``actor/layers`` obs_dim → … → 2·|A|; ``critic/encoder`` obs_dim+|A| → … → H;
    ``critic/q_head`` H → … → num_bins (1 for value_kind "mse"); ``critic/predictor``
    H → … → H + 1. Hidden widths equal the stack's hidden dim; n layers = n − 1 normalised blocks
    plus a final plain Linear.

    ``value_layers`` > 0 (``actor.gradient=ppo`` only, see :func:`value_layers_for`): a separate
    state-value network ``value/layers`` obs_dim → H → … → 1 with the critic's width and norm,
    V(x) for the GAE advantages of PPO's clipped objective. It cannot share the critic's encoder,
    which is action-conditioned; it is trained on its own λ-returns by squared error with its own
    optimiser, and is absent from every other layout (so other checkpoints are unchanged).

    ``action_space="discrete"`` (D-REPPO, ``action_dim`` = number of actions |A|): the actor
    ends in |A| logits; the encoder sees the observation only (obs_dim → … → H) and the Q head
    returns every action's histogram at once, H → … → |A|·num_bins (action-major: row j of the
    reshaped (|A|, num_bins) output is Q(x, a_j)); the predictor's first layer takes
    SiLU(z) ⊕ onehot(a), H + |A| → … → H + 1.

    ``torso="nature_cnn"`` (Atari pixels, discrete only): the observation is C stacked 84×84
    frames (obs_dim = C·84·84, uint8 scaled by 1/255) and actor and critic each get their own
    Nature-CNN torso ``<net>/torso/{0,1,2}`` — conv kernels (kh, kw, in, out) 8×8/4 → 32,
    4×4/2 → 64, 3×3/1 → 64, ReLU after each, flattened to 3136 features, which replace the
    observation as the input of ``actor/layers`` and ``critic/encoder``.
    """
    for name, v in (("obs_dim", obs_dim), ("action_dim", action_dim),
                    ("critic_hidden", critic_hidden), ("actor_hidden", actor_hidden),
                    ("num_bins", num_bins)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    for name, v in (("critic_norm", critic_norm), ("actor_norm", actor_norm)):
        if v not in _NORMS:
            raise ValueError(f"{name} must be one of {_NORMS}, got {v!r}")
    if value_kind not in _VALUE_KINDS:
        raise ValueError(f"value_kind must be one of {_VALUE_KINDS}, got {value_kind!r}")
    if value_kind == "hlgauss" and num_bins < 2:
        raise ValueError("an HL-Gauss critic needs num_bins >= 2")
    if action_space not in ("continuous", "discrete"):
        raise ValueError(f"action_space must be 'continuous' or 'discrete', got {action_space!r}")
    discrete = action_space == "discrete"
    if discrete and action_dim < 2:
        raise ValueError(f"a discrete action space needs >= 2 actions, got {action_dim}")
    out_q = int(num_bins) if value_kind == "hlgauss" else 1
    layout: dict[str, tuple[int, ...]] = {}
    features = obs_dim
    if torso == "nature_cnn":
        if not discrete or obs_dim % (84 * 84):
            raise ValueError("the nature_cnn torso needs a discrete action space and "
                             f"obs_dim = C·84·84, got obs_dim={obs_dim}")
        for net in ("actor", "critic"):
            for i, shape in enumerate(nature_cnn_kernels(obs_dim // (84 * 84))):
                layout[f"{net}/torso/{i}/kernel"] = shape
                layout[f"{net}/torso/{i}/bias"] = (shape[-1],)
        features = NATURE_CNN_FEATURES
    elif torso != "none":
        raise ValueError(f"torso must be 'none' or 'nature_cnn', got {torso!r}")
    obs_in = features
    _stack(layout, "actor/layers", obs_in, actor_hidden,
           action_dim if discrete else 2 * action_dim, actor_layers, actor_norm)
    _stack(layout, "critic/encoder", obs_in if discrete else obs_dim + action_dim, critic_hidden,
           critic_hidden, num_encoder_layers, critic_norm)
    _stack(layout, "critic/q_head", critic_hidden, critic_hidden,
           action_dim * out_q if discrete else out_q, num_head_layers, critic_norm)
    _stack(layout, "critic/predictor", critic_hidden + (action_dim if discrete else 0),
           critic_hidden, critic_hidden + 1, num_pred_layers, critic_norm)
    if value_layers:
        if discrete:
            raise ValueError("the state-value network (actor.gradient=ppo) exists for continuous "
                             "actions only")
        _stack(layout, "value/layers", obs_dim, critic_hidden, 1, int(value_layers), critic_norm)
    layout["obs_norm/mean"] = (obs_dim,)
    layout["obs_norm/var"] = (obs_dim,)
    layout["obs_norm/count"] = ()
    layout["multipliers/log_alpha"] = ()
    layout["multipliers/log_beta"] = ()
    return layout


NATURE_CNN_FEATURES = 7 * 7 * 64
"""Flattened output of the Nature-CNN torso on 84×84 frames."""


def nature_cnn_kernels(channels: int) -> tuple[tuple[int, int, int, int], ...]:
    """Conv kernel shapes (kh, kw, in, out) of the Nature-CNN torso (strides 4, 2, 1)."""
    return ((8, 8, channels, 32), (4, 4, 32, 64), (3, 3, 64, 64))


def value_layers_for(cfg: Any) -> int:
    """Layers of the state-value network for a config: ``critic.num_encoder_layers +
    critic.num_head_layers`` (the depth of the Q path, whose state-only counterpart it is) when
    ``actor.gradient`` is "ppo", else 0 (no value network)."""
    if getattr(getattr(cfg, "actor"), "gradient", "pathwise") != "ppo":
        return 0
    critic = getattr(cfg, "critic")
    return int(getattr(critic, "num_encoder_layers")) + int(getattr(critic, "num_head_layers"))


def layout_from_config(cfg: Any, obs_dim: int, action_dim: int,
                       action_space: str = "continuous",
                       torso: str = "none") -> dict[str, tuple[int, ...]]:
    """``param_layout`` from a config duck-typed as ``cfg.critic.{hidden_dim, num_encoder_layers,
    num_head_layers, num_pred_layers, num_bins, norm, loss}`` and
    ``cfg.actor.{hidden_dim, num_layers, norm, gradient}`` (see spec/README.md)."""
    critic, actor = getattr(cfg, "critic"), getattr(cfg, "actor")
    return param_layout(
        obs_dim, action_dim,
        critic_hidden=getattr(critic, "hidden_dim"),
        actor_hidden=getattr(actor, "hidden_dim"),
        num_encoder_layers=getattr(critic, "num_encoder_layers"),
        num_head_layers=getattr(critic, "num_head_layers"),
        num_pred_layers=getattr(critic, "num_pred_layers"),
        actor_layers=getattr(actor, "num_layers"),
        num_bins=getattr(critic, "num_bins"),
        critic_norm=getattr(critic, "norm"),
        actor_norm=getattr(actor, "norm"),
        value_kind=getattr(critic, "loss", "hlgauss"),
        action_space=action_space,
        torso=torso,
        value_layers=value_layers_for(cfg),
    )


def _last_layer(layout: Mapping[str, tuple[int, ...]], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"/(\d+)/kernel$")
    idx = [int(m.group(1)) for k in layout if (m := pat.match(k))]
    if not idx:
        raise ValueError(f"layout has no '{prefix}' stack")
    return max(idx)


def init_params(
    rng: np.random.Generator,
    layout: Mapping[str, tuple[int, ...]],
    *,
    v_min: float,
    v_max: float,
    sigma: float,
    logit_prior_scale: float,
    alpha_init: float,
    beta_init: float,
    dtype=np.float32,
    num_bins: int | None = None,
) -> dict[str, np.ndarray]:
    """Initial parameters for ``layout`` (keys in layout order, draws in that order).

    ``num_bins``: the histogram size when the Q head's output holds several histograms (the
    discrete layout's |A|·num_bins); the logit prior is then repeated per action. None = the
    whole output is one histogram.

    - kernels U(−1/√fan_in, +1/√fan_in), drawn in float64 then cast (PyTorch-style, as in the
      paper commit; fan_in = product of all but the last dim, i.e. kh·kw·in for a conv);
      biases 0; norm scales 1, norm biases 0.
    - HL-Gauss Q head: the last bias is ``logit_prior_scale · hist(clip(0, v_min, v_max))``.
      This folds the paper code's learnable logit offset (40 × the histogram of 0, added to the
      head output) into the bias, so the initial head predicts ≈ 0 (the small random kernel only
      perturbs the peaked prior). An MSE head (last out dim 1) keeps a zero bias.
    - ``obs_norm``: mean 0, var 1, count as ``normalization.running_stats_init`` (1e-4);
      count is stored as a float64 scalar.
    - ``multipliers/log_alpha`` = log(alpha_init), ``multipliers/log_beta`` = log(beta_init).
    """
    if alpha_init <= 0 or beta_init <= 0:
        raise ValueError(f"alpha_init and beta_init must be > 0, got {alpha_init}, {beta_init}")
    dt = np.dtype(dtype)
    q_last = _last_layer(layout, "critic/q_head")
    params: dict[str, np.ndarray] = {}
    obs_shape = layout["obs_norm/mean"]
    stats = running_stats_init(obs_shape, dt)
    for name, shape in layout.items():
        shape = tuple(shape)
        if name.endswith("/kernel"):
            bound = 1.0 / math.sqrt(math.prod(shape[:-1]))
            params[name] = rng.uniform(-bound, bound, size=shape).astype(dt)
        elif (name == f"critic/q_head/{q_last}/bias" and shape[0] > 1
              and (num_bins is None or num_bins > 1)):
            y0 = np.clip(0.0, v_min, v_max)
            bins = int(num_bins) if num_bins is not None else shape[0]
            if shape[0] % bins:
                raise ValueError(f"'{name}' has {shape[0]} outputs, not a multiple of "
                                 f"num_bins={bins}")
            hist = hlgauss_target(np.float64(y0), v_min, v_max, bins, sigma)
            params[name] = np.tile(logit_prior_scale * hist, shape[0] // bins).astype(dt)
        elif name.endswith("/norm/scale"):
            params[name] = np.ones(shape, dt)
        elif name.endswith("/bias"):
            params[name] = np.zeros(shape, dt)
        elif name == "obs_norm/mean":
            params[name] = stats.mean.copy()
        elif name == "obs_norm/var":
            params[name] = stats.var.copy()
        elif name == "obs_norm/count":
            params[name] = np.asarray(stats.count, np.float64)
        elif name == "multipliers/log_alpha":
            params[name] = np.asarray(math.log(alpha_init), dt)
        elif name == "multipliers/log_beta":
            params[name] = np.asarray(math.log(beta_init), dt)
        else:
            raise ValueError(f"init_params does not know how to initialise '{name}'")
    return params


def init_params_from_config(
    rng: np.random.Generator,
    cfg: Any,
    obs_dim: int,
    action_dim: int,
    *,
    v_min: float,
    v_max: float,
    dtype=np.float32,
) -> dict[str, np.ndarray]:
    """``init_params(layout_from_config(...))`` with σ = cfg.critic.sigma_ratio × bin width,
    cfg.critic.logit_prior_scale and cfg.loss.{alpha_init, beta_init}; v_min/v_max are the
    resolved value range (the config may leave them None)."""
    from spec.derived import hlgauss_sigma

    layout = layout_from_config(cfg, obs_dim, action_dim)
    critic, loss = getattr(cfg, "critic"), getattr(cfg, "loss")
    return init_params(
        rng, layout,
        v_min=v_min, v_max=v_max,
        sigma=hlgauss_sigma(v_min, v_max, getattr(critic, "num_bins"),
                            getattr(critic, "sigma_ratio", 0.75)),
        logit_prior_scale=getattr(critic, "logit_prior_scale", 40.0),
        alpha_init=getattr(loss, "alpha_init", 0.01),
        beta_init=getattr(loss, "beta_init", 0.01),
        dtype=dtype,
    )


def check_params(params: Mapping[str, np.ndarray], layout: Mapping[str, tuple[int, ...]]) -> None:
    """Raise ValueError naming the first missing key, extra key or wrong shape."""
    for name, shape in layout.items():
        if name not in params:
            raise ValueError(f"parameter '{name}' (shape {tuple(shape)}) is missing")
        got = np.shape(params[name])
        if got != tuple(shape):
            raise ValueError(f"parameter '{name}' has shape {got}, expected {tuple(shape)}")
    for name in params:
        if name not in layout:
            raise ValueError(f"unexpected parameter '{name}' not in the layout")


def save_params(path: str | os.PathLike, params: Mapping[str, np.ndarray],
                metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``params`` and JSON ``metadata`` to one ``.npz`` at exactly ``path``, atomically
    (temp file in the same directory, fsync, os.replace). Stores ``__schema_version__``."""
    path = os.fspath(path)
    for name in params:
        if name.startswith("__"):
            raise ValueError(f"parameter names may not start with '__': {name!r}")
    try:
        meta_json = json.dumps(dict(metadata or {}), sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metadata is not JSON-serialisable: {e}") from None
    arrays = {name: np.asarray(v) for name, v in params.items()}
    for name, a in arrays.items():
        if a.dtype == object:
            raise ValueError(f"parameter '{name}' is an object array")
    arrays[_SCHEMA_KEY] = np.asarray(SCHEMA_VERSION, np.int64)
    arrays[_META_KEY] = np.asarray(meta_json)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-params-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_params(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a file written by ``save_params`` → (params, metadata).

    FileNotFoundError if absent; ValueError if it is not a readable ``.npz`` (truncated or corrupt),
    lacks the schema version, or has a different schema version than ``SCHEMA_VERSION``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ValueError(
            f"{path} is not a readable reppo params .npz (truncated or corrupt?): "
            f"{type(e).__name__}: {e}"
        ) from None
    except Exception as e:  # zlib.error and friends from a damaged member
        raise ValueError(
            f"{path} is not a readable reppo params .npz (truncated or corrupt?): "
            f"{type(e).__name__}: {e}"
        ) from None
    if _SCHEMA_KEY not in data:
        raise ValueError(f"{path} has no '{_SCHEMA_KEY}': not a reppo params file")
    version = int(data.pop(_SCHEMA_KEY))
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has params schema version {version}, this code reads version "
            f"{SCHEMA_VERSION}"
        )
    meta_raw = data.pop(_META_KEY, None)
    try:
        metadata = json.loads(str(meta_raw)) if meta_raw is not None else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} has corrupt metadata JSON: {e}") from None
    return data, metadata
