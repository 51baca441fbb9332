"""Torch side of full-state checkpoints (mirrors ``reppo_jax.checkpoint``): training state ↔
flat named numpy arrays, ``save_state``/``check_resume``/``restore_carry``, and the NaN/inf
guard.

The canonical parameter file (``params_*.npz``) already holds the networks, log α/β and the
observation statistics. The state file adds what a continuation needs beyond them:

    opt/<actor|critic|mult|value>/<i>/<step|exp_avg|exp_avg_sq>  Adam state of parameter i
    streams/<action|bootstrap|actor|kl|shuffle>             torch.Generator states (uint8)
    obs                                                      the current raw observations
    env/...                                                  the simulator state, where the env
                                                             offers ``get_state``/``set_state``

Envs with ``get_state``/``set_state`` (the toy env; DMC through the JAX bridge) resume exactly.
Envs without (ManiSkill: SAPIEN's physx state is not exported) restart from a fresh reset seeded
by ``(run.seed, iteration)``: the agent, optimisers and random streams continue exactly, the
episodes in flight at the checkpoint are lost (their partial returns never reach the metrics).
Files, checksums, manifests and refusals are ``reppo_common.checkpoints``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from reppo_common import checkpoints as C
from reppo_common.errors import UserError
from reppo_common.guard import STATE_GROUPS, guard_names

if TYPE_CHECKING:  # train.py imports this module
    from reppo_torch.agent import Carry
    from reppo_torch.train import Trainer
    from spec.config import ReppoConfig

TORCH_PACKAGES = ("torch", "numpy", "mani-skill", "sapien", "jax", "playground", "mujoco")
"""Packages whose versions every torch checkpoint records."""

ADAM_FIELDS = ("step", "exp_avg", "exp_avg_sq")


def _opts(agent) -> dict[str, torch.optim.Optimizer]:
    """The agent's optimisers by name (``value``: the state-value network of
    ``actor.gradient=ppo``, absent otherwise)."""
    opts = {"actor": agent.actor_opt, "critic": agent.critic_opt, "mult": agent.mult_opt}
    if getattr(agent, "value_opt", None) is not None:
        opts["value"] = agent.value_opt
    return opts


def _params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def expected_shapes(carry, env) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name → (shape, dtype) of every state array this run's checkpoint must hold."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for name, opt in _opts(carry.agent).items():
        for i, p in enumerate(_params(opt)):
            out[f"opt/{name}/{i}/step"] = ((), np.dtype(np.float32))
            for f in ADAM_FIELDS[1:]:
                out[f"opt/{name}/{i}/{f}"] = (tuple(p.shape), np.dtype(np.float32))
    for name, g in zip(carry.streams._fields, carry.streams):
        out[f"streams/{name}"] = (tuple(g.get_state().shape), np.dtype(np.uint8))
    out["obs"] = (tuple(carry.obs.shape), np.dtype(np.float32))
    if hasattr(env, "get_state"):
        for k, v in env.get_state().items():
            out[f"env/{k}"] = (tuple(np.shape(v)), np.asarray(v).dtype)
    return out


def state_to_arrays(carry, env) -> dict[str, np.ndarray]:
    """The carry's non-parameter state (+ the env's, if it can export it) as flat arrays."""
    out: dict[str, np.ndarray] = {}
    for name, opt in _opts(carry.agent).items():
        state = opt.state
        for i, p in enumerate(_params(opt)):
            s = state.get(p)
            if not s:  # before the first step: Adam's state is empty, store its initial value
                s = {"step": torch.zeros(()), "exp_avg": torch.zeros_like(p),
                     "exp_avg_sq": torch.zeros_like(p)}
            for f in ADAM_FIELDS:
                out[f"opt/{name}/{i}/{f}"] = s[f].detach().to(torch.float32).cpu().numpy()
    for name, g in zip(carry.streams._fields, carry.streams):
        out[f"streams/{name}"] = g.get_state().cpu().numpy()
    out["obs"] = carry.obs.detach().cpu().numpy().astype(np.float32, copy=False)
    if hasattr(env, "get_state"):
        out.update({f"env/{k}": np.asarray(v) for k, v in env.get_state().items()})
    return out


def check_arrays(arrays: Mapping[str, np.ndarray], expected: Mapping[str, tuple], *,
                 source: str) -> None:
    """Every expected name present with its shape and dtype, nothing extra; else a one-line
    UserError naming the first mismatch."""
    for name, (shape, dtype) in expected.items():
        if name not in arrays:
            raise UserError(f"{source} lacks state array {name!r} (written by another version "
                            f"of the agent, another optimiser or another env?)")
        value = arrays[name]
        if tuple(value.shape) != tuple(shape):
            raise UserError(f"{source} has {name} with shape {tuple(value.shape)}, this run "
                            f"expects {tuple(shape)} (other observation shape, number of envs "
                            f"or network sizes?)")
        if np.dtype(value.dtype) != np.dtype(dtype):
            raise UserError(f"{source} has {name} with dtype {value.dtype}, this run expects "
                            f"{np.dtype(dtype)}")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise UserError(f"{source} has state array {extra[0]!r} this run does not have "
                        f"({len(extra)} unexpected in all; another optimiser, agent or env?)")


def restore_arrays(carry, env, arrays: Mapping[str, np.ndarray]) -> None:
    """Load validated ``arrays`` into ``carry`` (optimisers, streams, obs) and ``env`` in place.
    The carry's networks must already hold the checkpoint's parameters."""
    for name, opt in _opts(carry.agent).items():
        params = _params(opt)
        sd = opt.state_dict()
        sd["state"] = {}
        for i, p in enumerate(params):
            step = float(arrays[f"opt/{name}/{i}/step"])
            if step == 0.0:
                continue  # never stepped: leave Adam's state empty, as a fresh optimiser's
            sd["state"][i] = {
                "step": torch.tensor(step, dtype=torch.float32),
                "exp_avg": torch.as_tensor(arrays[f"opt/{name}/{i}/exp_avg"]).to(p.device),
                "exp_avg_sq": torch.as_tensor(arrays[f"opt/{name}/{i}/exp_avg_sq"]).to(p.device),
            }
        opt.load_state_dict(sd)
    for name, g in zip(carry.streams._fields, carry.streams):
        g.set_state(torch.as_tensor(np.asarray(arrays[f"streams/{name}"], np.uint8)))
    device = carry.obs.device
    carry.obs = torch.as_tensor(np.asarray(arrays["obs"])).to(device)
    if hasattr(env, "set_state"):
        env.set_state({k[len("env/"):]: v for k, v in arrays.items() if k.startswith("env/")})


# --------------------------------------------------------------------------------------------
# NaN / inf guard (names and order: reppo_common.guard)
# --------------------------------------------------------------------------------------------


def _finite(tensors) -> torch.Tensor:
    flags = [torch.isfinite(t.detach()).all() for t in tensors if t.is_floating_point()]
    return torch.stack(flags).all() if flags else torch.tensor(True)


@torch.no_grad()
def finite_flags(agent, info: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One bool per :func:`reppo_common.guard.guard_names` entry (True = finite), on the
    agent's device, so the trainer reads them in the iteration's one host sync."""
    names = guard_names(tuple(info))
    n_info = len(names) - len(STATE_GROUPS)
    device = agent.logs.device
    flags = [torch.isfinite(info[k].detach()).all() for k in names[:n_info]]
    opt_state = [v for opt in _opts(agent).values() for s in opt.state.values()
                 for v in s.values() if torch.is_tensor(v)]
    value = getattr(agent, "value", None)
    flags += [_finite(agent.critic.parameters()), _finite(agent.actor.parameters()),
              torch.isfinite(agent.logs[0]), torch.isfinite(agent.logs[1]),
              _finite(agent.obs_stats),
              _finite(value.parameters()) if value is not None else torch.tensor(True),
              _finite(opt_state)]
    return torch.stack([f.to(device) for f in flags])


def check_resume(run_dir: Path, config: ReppoConfig, trainer: "Trainer"
                 ) -> tuple[C.CheckpointInfo, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Find the latest checkpoint of ``run_dir`` and validate it completely against this run
    (backend, config, checksums, canonical parameter layout, every state array's name, shape
    and dtype) without modifying anything. Returns ``(info, params, state arrays)``."""
    import sys

    from spec import params as P

    info = C.find_resume_checkpoint(Path(run_dir) / "checkpoints", backend="torch",
                                    config=config.to_dict())
    notes = C.version_notes(info, C.package_versions(TORCH_PACKAGES))
    if notes:
        print(f"note: resuming with other package versions than the checkpoint's "
              f"({'; '.join(notes)}): the continuation is not guaranteed bit-identical",
              file=sys.stderr)
    world = int((info.manifest.get("extra") or {}).get("world_size", 1))
    if world != 1:
        raise UserError(f"checkpoint {info} was written by a {world}-process torchrun run; "
                        "resuming multi-process torch runs is not supported (start a new run, "
                        "or `reppo eval` its parameters)")
    per_iter = trainer.steps_per_iteration
    if info.env_steps != info.iteration * per_iter:
        raise UserError(f"checkpoint {info} is at env_steps {info.env_steps} after "
                        f"{info.iteration} iterations, this run takes {per_iter} steps per "
                        f"iteration")
    flat, _meta = P.load_params(info.params_path)
    layout = P.layout_from_config(config, trainer.h.obs_dim, trainer.h.action_dim)
    try:
        P.check_params(flat, layout)
    except (KeyError, ValueError) as e:
        raise UserError(f"checkpoint {info}: {e}") from None
    arrays = C.load_state_arrays(info, verify=False)  # verified by find_resume_checkpoint
    template = trainer.init(config.run.seed)
    check_arrays(arrays, expected_shapes(template, trainer.env), source=f"checkpoint {info}")
    return info, flat, arrays


def save_state(run_dir: Path, config: ReppoConfig, carry: "Carry", env, *, iteration: int,
               env_steps: int, wall_s: float, eval_return: float | None,
               best_eval_return: float | None, last_eval: Mapping[str, Any],
               evals_done: int, world_size: int = 1) -> C.CheckpointInfo:
    """Write canonical params + the full training state (``state_to_arrays``) under
    ``run_dir/checkpoints`` and prune to ``run.keep_checkpoints`` + best."""
    from reppo_torch.train import state_to_canonical

    ckpt_dir = Path(run_dir) / "checkpoints"
    info = C.write_checkpoint(
        ckpt_dir, backend="torch", env_steps=env_steps, iteration=iteration,
        config=config.to_dict(), params=state_to_canonical(carry.agent),
        state=state_to_arrays(carry, env), wall_s=wall_s, eval_return=eval_return,
        best_eval_return=best_eval_return, last_eval=last_eval,
        versions=C.package_versions(TORCH_PACKAGES),
        extra={"evals_done": int(evals_done), "env_state": hasattr(env, "get_state"),
               "world_size": int(world_size)})
    try:
        C.prune(ckpt_dir, config.run.keep_checkpoints)
    except OSError as e:
        raise UserError(f"cannot prune old checkpoints in {ckpt_dir}: {e.strerror or e}") from None
    return info


def restore_carry(trainer: "Trainer", config: ReppoConfig, flat: Mapping[str, np.ndarray],
                  arrays: Mapping[str, np.ndarray], iteration: int) -> "Carry":
    """Carry from a validated checkpoint. Envs without ``set_state`` restart from a fresh reset
    seeded by (seed, iteration); the observation statistics are not updated by that reset."""
    from reppo_common.seeding import stream_int
    from reppo_torch.agent import snapshot
    from reppo_torch.train import state_from_canonical

    carry = trainer.init(config.run.seed)  # the structure (streams, shard, behaviour module)
    carry.agent = state_from_canonical(config, trainer.h, flat, trainer.device)
    carry.behaviour = snapshot(carry.agent)
    restore_arrays(carry, trainer.env, arrays)
    if not hasattr(trainer.env, "set_state"):
        obs = trainer.env.reset(stream_int(config.run.seed, f"torch/env_reset/{iteration}"))
        carry.obs = obs.to(trainer.device)
    return carry
