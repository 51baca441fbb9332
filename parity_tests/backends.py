"""Which backend function answers for which reference primitive, and array converters.

``REGISTRY[backend]["module.name"]`` names the counterpart of ``spec.reference.<module>.<name>``:
either a string ``"package.module:attr"`` (imported lazily, so a missing backend or a missing
function is reported by the test that needs it, never at collection) or an adapter callable with
the reference's signature (the network forward passes, which backends express as modules).
``PENDING`` lists reference functions a backend does not implement yet, each with the reason; the
coverage test fails when one of them appears, so the set can only shrink.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
from typing import Any, Callable

import numpy as np

REFERENCE_MODULES = (
    "distributions", "hlgauss", "targets", "losses", "normalization", "networks", "discrete",
    "rollout",
)


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    package: str
    requires: tuple[str, ...]
    extra: str

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def skip_reason(self) -> str:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        return (f"{self.name} backend not installed (missing {', '.join(missing)}): "
                f"pip install -e '.[{self.extra}]'")

    # -- precision ---------------------------------------------------------------------------
    def precision(self, dtype) -> contextlib.AbstractContextManager:
        """Context in which ``dtype`` arrays keep their dtype (jax: x64 for float64 only)."""
        if self.name == "jax" and np.dtype(dtype) == np.float64:
            import jax
            return jax.enable_x64(True)
        return contextlib.nullcontext()

    # -- conversion --------------------------------------------------------------------------
    def dtype(self, np_dtype):
        if self.name == "jax":
            import jax.numpy as jnp
            return jnp.dtype(np.dtype(np_dtype))
        import torch
        return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                np.dtype(bool): torch.bool}[np.dtype(np_dtype)]

    def array(self, x):
        """numpy (or nested tuples/lists/dicts, reference RunningStats) → framework."""
        from spec.reference.normalization import RunningStats as RefStats

        if isinstance(x, RefStats):
            mod = importlib.import_module(f"{self.package}.normalization")
            mean, var = self.array(x.mean), self.array(x.var)
            if self.name == "jax":  # the JAX port keeps the count in the statistics' dtype
                import jax.numpy as jnp
                count = jnp.asarray(x.count, mean.dtype)
            else:
                import torch
                count = torch.tensor(float(x.count), dtype=torch.float64)
            return mod.RunningStats(mean, var, count)
        if isinstance(x, dict):
            return {k: self.array(v) for k, v in x.items()}
        if isinstance(x, (tuple, list)):
            return type(x)(self.array(v) for v in x)
        if isinstance(x, np.ndarray) or isinstance(x, np.generic):
            if self.name == "jax":
                import jax.numpy as jnp
                return jnp.asarray(x)
            import torch
            return torch.from_numpy(np.array(x, order="C", copy=True))
        return x  # python scalars, strings: passed as they are

    def numpy(self, y):
        """framework → numpy (recursively; a backend RunningStats → the reference dataclass)."""
        from spec.reference.normalization import RunningStats as RefStats

        if type(y).__name__ == "RunningStats" and hasattr(y, "count"):
            return RefStats(self.numpy(y.mean), self.numpy(y.var), float(self.numpy(y.count)))
        if isinstance(y, dict):
            return {k: self.numpy(v) for k, v in y.items()}
        if isinstance(y, (tuple, list)):
            return type(y)(self.numpy(v) for v in y)
        if self.name == "torch":
            import torch
            if isinstance(y, torch.Tensor):
                return y.detach().cpu().numpy()
            return y
        return np.asarray(y)


BACKENDS = {
    "jax": Backend("jax", "reppo_jax", ("jax", "flax"), "jax"),
    "torch": Backend("torch", "reppo_torch", ("torch",), "torch"),
}


# ---- network adapters (reference signatures over the canonical flat dict) ---------------------

def _np_params(params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
            for k, v in params.items()}


def _stack_features(params, prefix) -> tuple[int, ...]:
    from spec.reference.networks import num_layers
    n = num_layers(params, prefix)
    return tuple(int(np.shape(params[f"{prefix}/{i}/kernel"])[1]) for i in range(n))


def _jax_cast(params, dtype):
    import jax.numpy as jnp
    return {k: jnp.asarray(v).astype(dtype) for k, v in params.items()}


def _jax_rms_norm(x, scale, eps=1e-6):
    from reppo_jax.networks import Norm
    return Norm("rms", eps).apply({"params": {"scale": scale}}, x)


def _jax_layer_norm(x, scale, bias, eps=1e-6):
    from reppo_jax.networks import Norm
    return Norm("layer", eps).apply({"params": {"scale": scale, "bias": bias}}, x)


def _jax_num_layers(params, prefix):
    from reppo_jax.networks import nest
    return len(nest({k: v for k, v in params.items() if k.endswith("/kernel")}, prefix))


def _jax_mlp_forward(params, prefix, x, norm, activate_input=False):
    from reppo_jax.networks import MLP, nest
    p = _jax_cast(params, x.dtype)
    return MLP(_stack_features(p, prefix), norm, activate_input).apply(
        {"params": nest(p, prefix)}, x)


def _jax_critic(params, norm):
    from reppo_jax.networks import Critic
    f = {s: _stack_features(params, f"critic/{s}") for s in ("encoder", "q_head", "predictor")}
    return Critic(f["encoder"][-1], len(f["encoder"]), len(f["q_head"]), len(f["predictor"]),
                  f["q_head"][-1], norm)


def _jax_actor_forward(params, obs, norm):
    from reppo_jax.networks import Actor, nest
    p = _jax_cast(params, obs.dtype)
    f = _stack_features(p, "actor/layers")
    return Actor(f[-1] // 2, f[0], len(f), norm).apply({"params": nest(p, "actor")}, obs)


def _jax_critic_forward(params, obs, action, norm):
    from reppo_jax.networks import nest
    p = _jax_cast(params, obs.dtype)
    return _jax_critic(p, norm).apply({"params": nest(p, "critic")}, obs, action)


def _jax_predictor_forward(params, z, norm):
    from reppo_jax.networks import Critic, nest
    p = _jax_cast(params, z.dtype)
    return _jax_critic(p, norm).apply({"params": nest(p, "critic")}, z, method=Critic.predict)


def _torch_mlp_forward(params, prefix, x, norm, activate_input=False):
    from reppo_torch.networks import MLP, load_canonical
    p = _np_params(params)
    feats = _stack_features(p, prefix)
    mlp = MLP(np.shape(p[f"{prefix}/0/kernel"])[0], feats, norm, activate_input, dtype=x.dtype)
    load_canonical({prefix: mlp}, p)
    return mlp(x)


def _torch_actor_forward(params, obs, norm):
    from reppo_torch.networks import Actor
    return Actor.from_canonical(_np_params(params), norm, dtype=obs.dtype)(obs)


def _torch_critic_forward(params, obs, action, norm):
    from reppo_torch.networks import Critic
    return Critic.from_canonical(_np_params(params), norm, obs.shape[-1], dtype=obs.dtype)(
        obs, action)


def _torch_predictor_forward(params, z, norm):
    from reppo_torch.networks import Critic
    p = _np_params(params)
    d_in = np.shape(p["critic/encoder/0/kernel"])[0]  # the obs/action split is irrelevant here
    return Critic.from_canonical(p, norm, d_in - 1, dtype=z.dtype).predict(z)


# ---- the registry ------------------------------------------------------------------------------

_SAME_NAME = {
    "distributions": ("policy_std", "tanh_gaussian_sample", "tanh_log_det_jacobian",
                      "gaussian_log_prob", "tanh_gaussian_log_prob", "entropy_estimate",
                      "deterministic_action", "kl_estimate"),
    "hlgauss": ("hlgauss_target", "hlgauss_loss", "hlgauss_decode"),
    "targets": ("soft_rewards", "soft_td_lambda", "gae_advantages"),
    "losses": ("mse_value_loss", "value_loss", "q_value", "aux_loss", "critic_loss",
               "kl_switch", "kl_stats", "actor_loss", "score_actor_loss", "ppo_actor_loss",
               "alpha_loss", "beta_loss", "project_log_multiplier", "faded_log_floor"),
    "normalization": ("running_stats_init", "running_stats_update", "normalize"),
    "discrete": ("categorical_log_probs", "categorical_entropy", "categorical_kl",
                 "discrete_actor_loss", "discrete_soft_value", "discrete_entropy_target"),
}


_PORT_MODULE = {"discrete": "discrete.losses"}
"""Reference modules whose port counterpart has another module name (the D-REPPO primitives
live in each port's ``discrete`` subpackage)."""


def _same_name(package: str) -> dict[str, str]:
    return {f"{m}.{f}": f"{package}.{_PORT_MODULE.get(m, m)}:{f}"
            for m, fs in _SAME_NAME.items() for f in fs}


def _iteration(package: str) -> dict[str, str]:
    """``spec.reference.rollout``: the agent's rollout, its targets and the iteration that
    computes the rollout metrics (compared in ``test_layer4_iteration.py``)."""
    return {"rollout.collect_rollout": f"{package}.agent:rollout",
            "rollout.iteration_targets": f"{package}.agent:compute_targets",
            "rollout.iteration_advantages": f"{package}.estimators:compute_advantages",
            "rollout.rollout_metrics": f"{package}.agent:make_iteration"}


REGISTRY: dict[str, dict[str, str | Callable]] = {
    "jax": {
        **_same_name("reppo_jax"),
        **_iteration("reppo_jax"),
        "rollout.collect_discrete_rollout": "reppo_jax.discrete.agent:rollout",
        "networks.silu": "flax.linen:silu",
        "networks.rms_norm": _jax_rms_norm,
        "networks.layer_norm": _jax_layer_norm,
        "networks.num_layers": _jax_num_layers,
        "networks.mlp_forward": _jax_mlp_forward,
        "networks.actor_forward": _jax_actor_forward,
        "networks.critic_forward": _jax_critic_forward,
        "networks.predictor_forward": _jax_predictor_forward,
    },
    "torch": {
        **_same_name("reppo_torch"),
        **_iteration("reppo_torch"),
        "networks.silu": "reppo_torch.networks:silu",
        "networks.rms_norm": "reppo_torch.networks:rms_norm",
        "networks.layer_norm": "reppo_torch.networks:layer_norm",
        "networks.num_layers": "reppo_torch.networks:num_layers",
        "networks.mlp_forward": _torch_mlp_forward,
        "networks.actor_forward": _torch_actor_forward,
        "networks.critic_forward": _torch_critic_forward,
        "networks.predictor_forward": _torch_predictor_forward,
    },
}

PENDING: dict[str, dict[str, str]] = {"jax": {}, "torch": {
    "rollout.collect_discrete_rollout": "the torch port has no discrete (D-REPPO) trainer, only "
                                        "the loss primitives (reppo_torch/discrete/losses.py)",
}}


class MissingCounterpart(LookupError):
    pass


def pending_target(backend: str, qualname: str) -> str:
    """Where a pending function would live once ported: ``<package>.<module>:<name>``."""
    module, name = qualname.split(".")
    return f"{BACKENDS[backend].package}.{module}:{name}"


def resolve_target(target: str) -> Any:
    module, attr = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingCounterpart(f"module {module} not found ({e})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise MissingCounterpart(f"{module} has no attribute {attr!r}") from None


def counterpart(backend: str, qualname: str) -> Callable:
    """The backend's callable for ``spec.reference.<qualname>`` (MissingCounterpart if absent)."""
    entry = REGISTRY[backend].get(qualname)
    if entry is None:
        raise MissingCounterpart(f"no {backend} counterpart registered for {qualname}")
    return resolve_target(entry) if isinstance(entry, str) else entry


_JIT_CACHE: dict = {}
import os as _os
JIT = _os.environ.get("PARITY_JIT", "1") == "1"


def jitted(fn: Callable) -> Callable:
    """``fn`` under ``jax.jit`` as the backend runs it: strings, ints and bools are static (they
    pick code paths and shapes), floats and arrays are traced (weakly typed Python floats keep
    the arrays' dtype), so one compilation serves every drawn hyperparameter of a shape."""
    import jax

    def is_static(v):
        return isinstance(v, (str, bool, int)) and not isinstance(v, np.generic)

    if not JIT:
        return fn

    def call(*args, **kwargs):
        static = tuple(i for i, a in enumerate(args) if is_static(a))
        static_kw = tuple(sorted(k for k, v in kwargs.items() if is_static(v)))
        key = (fn, static, static_kw)
        if key not in _JIT_CACHE:
            _JIT_CACHE[key] = jax.jit(fn, static_argnums=static, static_argnames=static_kw)
        return _JIT_CACHE[key](*args, **kwargs)

    return call


def reference(qualname: str) -> Callable:
    module, name = qualname.split(".")
    return getattr(importlib.import_module(f"spec.reference.{module}"), name)
