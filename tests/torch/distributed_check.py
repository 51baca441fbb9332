"""Two-process gloo checks of ``reppo_torch.distributed``, run by
``tests/torch/test_distributed.py`` in a subprocess (the process group and its port stay out of
the pytest process).

    python tests/torch/distributed_check.py update OUT_DIR     # 2 ranks vs the 1-process reference
    python tests/torch/distributed_check.py train OUT_DIR      # 2 ranks through Trainer and train()
    torchrun --standalone --nproc-per-node=2 tests/torch/distributed_check.py cli train ...
                                                               # the reppo CLI with toy/Bandit

``update`` and ``train`` start the two ranks with ``torch.multiprocessing.spawn`` on a free
port; every rank saves its results to ``OUT_DIR/rank<r>.pt``, and ``update`` also saves the
single-process reference to ``OUT_DIR/reference.pt``.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reppo_torch import agent as A
from reppo_torch import distributed as Dist
from reppo_torch.normalization import running_stats_init, running_stats_update
from reppo_torch.train import Trainer, canonical_init, state_from_canonical, state_to_canonical, \
    train
from spec.backend import TrainHooks
from spec.config import apply_overrides
from spec import hyper
from spec.presets import preset_config

WORLD = 2
NUM_ENVS = 8
NUM_STEPS = 4
RELATIVE_TOLERANCE = 1e-4
"""|a − b| ≤ tol · (|b| + max|b| of the leaf) between the 2-rank result and the 1-process
reference: the same float32 math except that each minibatch's loss is a mean of two half-means
(then an all-reduce) instead of one mean, and the observation moments are merged in float64;
measured ≤ 1e-6, while a gradient left un-averaged moves Adam's moments by O(1)."""


def toy_config(devices: int | None = WORLD, **extra):
    """8 envs × 4 steps, 2 minibatches (16 samples, 8 per rank) × 2 epochs, width 32."""
    overrides = {
        "env.name": "toy/Bandit", "env.v_min": 0.0, "env.v_max": 10.0,
        "rollout.num_envs": NUM_ENVS, "rollout.num_steps": NUM_STEPS,
        "rollout.num_minibatches": 2, "rollout.num_epochs": 2,
        "rollout.total_env_steps": NUM_ENVS * NUM_STEPS * 3, "run.devices": devices,
        "run.device": "cpu", "run.eval_interval": NUM_ENVS * NUM_STEPS * 2,
        "run.eval_episodes": 2, "run.checkpoint_interval": NUM_ENVS * NUM_STEPS,
    }
    overrides.update(extra)
    return apply_overrides(preset_config("tiny"), overrides)


def global_batch(h, seed: int = 0) -> tuple[A.Transition, torch.Tensor, torch.Tensor]:
    """A synthetic rollout (T, N) of the global batch, its targets, and a (N, obs) observation
    batch for the statistics; identical in every process (numpy, fixed seed)."""
    rng = np.random.default_rng(seed)
    t, n = NUM_STEPS, NUM_ENVS

    def f(*shape, lo=None, hi=None):
        x = rng.uniform(lo, hi, shape) if lo is not None else rng.normal(size=shape)
        return torch.as_tensor(x, dtype=torch.float32)

    batch = A.Transition(
        obs=f(t, n, h.obs_dim), action=f(t, n, h.action_dim, lo=-0.99, hi=0.99),
        reward=f(t, n, lo=0.0, hi=1.0), terminated=torch.as_tensor(rng.random((t, n)) < 0.1),
        truncated=torch.zeros((t, n), dtype=torch.bool), next_value=f(t, n),
        next_log_prob=f(t, n), next_emb=f(t, n, 32))
    targets = f(t, n, lo=0.0, hi=5.0)
    obs = 3.0 * f(n, h.obs_dim) + 1.0
    return batch, targets, obs


def _hyper(cfg):
    return hyper.resolve(cfg, hyper.Facts(obs_dim=2, action_dim=2, max_episode_steps=50,
                                          reward_range=(0.0, 1.0)))


def _state_arrays(state: A.AgentState) -> dict[str, np.ndarray]:
    """Canonical params, log α/β, obs statistics and every Adam moment, as numpy arrays."""
    out = dict(state_to_canonical(state))
    for name, opt in (("actor_opt", state.actor_opt), ("critic_opt", state.critic_opt),
                      ("mult_opt", state.mult_opt)):
        for i, st in enumerate(opt.state.values()):
            for k in ("exp_avg", "exp_avg_sq"):
                out[f"{name}/{i}/{k}"] = st[k].detach().cpu().numpy().copy()
    return out


def run_update(shard: Dist.Shard) -> dict:
    """The update phase (2 epochs × 2 minibatches) on the part of the global batch ``shard``
    holds, plus one observation-statistics update with that part of the observations."""
    cfg = toy_config()
    h = _hyper(cfg)
    held = len(shard.members) * NUM_ENVS // shard.groups
    h = replace(h, num_envs=held)
    batch, targets, obs = global_batch(h)
    cols = [Dist.Shard(shard.groups, (m,)) for m in shard.members]

    def part(x: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.cat([c.take(x, dim) for c in cols], dim)

    batch = A.Transition(*(None if x is None else part(x, 1) for x in batch))  # None: ppo-only
    targets = part(targets, 1)
    state = state_from_canonical(cfg, h, canonical_init(cfg, h, 0))
    behaviour = A.snapshot(state)
    with torch.no_grad():  # a behaviour policy that differs from the actor: KL̂ > 0
        for p in behaviour.parameters():
            p.add_(0.05 * torch.sin(torch.arange(p.numel(), dtype=p.dtype)).view_as(p))
    streams = A.Streams.from_seed(0, torch.device("cpu"))
    state, info = A.update(h, state, behaviour, batch, targets, streams, shard)
    stats = shard.running_stats_update(running_stats_init(h.obs_dim, torch.float32),
                                       part(obs, 0))
    out = _state_arrays(state)
    out.update({f"info/{k}": v.detach().numpy().copy() for k, v in info.items()})
    if Dist.is_active():  # the metrics as rank 0 logs them: reduced over the ranks
        out.update({f"reduced/{k}": v.numpy().copy()
                    for k, v in Dist.mean_over_ranks(info).items()})
    out.update({"stats/mean": stats.mean.numpy(), "stats/var": stats.var.numpy(),
                "stats/count": stats.count.numpy()})
    return out


def run_train(rank: int, out_dir: Path) -> dict:
    """Two iterations through ``Trainer`` (rank-local envs, synchronised statistics and
    gradients), then ``train()`` for 3 iterations with evaluation and checkpoints."""
    cfg = toy_config()
    trainer = Trainer(cfg)
    carry = trainer.init(0)
    infos = []
    for _ in range(2):
        carry, info = trainer.iteration(carry)
        infos.append({k: float(v) for k, v in Dist.mean_over_ranks(info).items()})
    seen: dict[str, list] = {"train": [], "eval": []}
    run_dir = out_dir / "run" if rank == 0 else None
    res = train(cfg, run_dir, TrainHooks(on_train_metrics=seen["train"].append,
                                         on_eval_metrics=seen["eval"].append))
    return {"state": _state_arrays(carry.agent), "infos": infos,
            "local_envs": trainer.env.num_envs, "has_eval_env": trainer.eval_env is not None,
            "train_iterations": res.iterations, "evals": [m["env_steps"] for m in seen["eval"]],
            "train_lines": len(seen["train"]),
            "episodes": [m["rollout/episodes"] for m in seen["train"]]}


def _worker(rank: int, port: int, out_dir: str, check: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        if check == "update":
            world, _ = Dist.init_from_env(torch.device("cpu"))
            result = run_update(Dist.Shard.of(world))
        else:
            result = run_train(rank, Path(out_dir))
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def register_toy_for_torch() -> None:
    """``toy/Bandit`` in this process's env registry for both backends (CLI runs)."""
    from reppo_common.registry import REGISTRY, EnvSpec

    REGISTRY["toy/Bandit"] = EnvSpec("toy", "Bandit", "toy/Bandit", "continuous",
                                     ("jax", "torch"), (0.0, 1.0), 50, False, "tiny")


if __name__ == "__main__":
    if sys.argv[1] == "cli":  # under torchrun: the real CLI with the toy env registered
        from reppo_common import cli

        register_toy_for_torch()
        torch.set_num_threads(1)
        sys.exit(cli.main(sys.argv[2:]))
    check, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(free_port(), str(out), check), nprocs=WORLD, join=True)
    if check == "update":
        torch.save(run_update(Dist.Shard(WORLD, tuple(range(WORLD)))), out / "reference.pt")
    print("ok")
