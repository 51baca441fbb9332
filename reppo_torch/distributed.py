"""Data-parallel REPPO with ``torch.distributed``: one process per device, launched by torchrun.

    torchrun --nproc-per-node=2 -m reppo_common.cli train --backend torch --env dmc/CartpoleBalance

Every rank steps ``rollout.num_envs / world_size`` environments of its own and holds the same
agent. What keeps the ranks one algorithm:

* **Gradients** are averaged over the ranks (one flattened all-reduce per optimiser step, in
  ``agent._clip_and_step`` through :func:`average_gradients_`) *before* the global-norm clip, so
  the clip and the Adam step see the same global-minibatch gradient on every rank — for the
  critic, the actor and [log α, log β] alike. Averaging per-rank means equals the global mean
  because every rank's part of a minibatch has the same size (``run.devices`` must divide the
  envs and every minibatch; checked by ``spec.config``).
* **Observation statistics** are updated from the global batch: each rank's batch count, mean and
  variance are all-gathered and merged in rank order (:meth:`Shard.running_stats_update`), so
  every rank normalises with the same statistics.
* **Randomness** comes from streams seeded identically on every rank; each draw is made at the
  global shape and a rank keeps its slice (:meth:`Shard.randn`, :meth:`Shard.take`). Only the
  environments' reset seeds differ per rank (:func:`rank_stream`), since every rank simulates
  different envs.
* **Minibatches**: all ranks draw the same permutation of the global batch; a rank's part of
  minibatch i is the i-th block of its own samples in that order (:meth:`Shard.permutation`). The
  global minibatch is the union of the ranks' parts — a minibatch stratified by rank (equal
  numbers of samples from every rank's envs), with no data moved between ranks. With one rank it
  is the single-process permutation, unchanged.

Evaluation, checkpoints, metrics and the progress bar are rank 0's (metrics are averaged over the
ranks first, maxima maximised, :func:`mean_over_ranks`). The process group uses ``nccl`` on CUDA
(device ``cuda:LOCAL_RANK``) and ``gloo`` on CPU.

A :class:`Shard` can also hold *every* rank's part in one process (``Shard(groups, all ranks)``):
that is the single-process reference of a multi-rank run, with the same minibatch grouping and
the same noise, which ``tests/torch/test_distributed.py`` compares against two gloo processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.distributed as dist

from reppo_common.errors import UserError
from reppo_torch.normalization import RunningStats, running_stats_merge, running_stats_update
from spec.backend import ITERATION_MAX_METRICS


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates, checkpoints and logs."""
        return self.rank == 0


def launched_world() -> World:
    """The world torchrun describes in this process's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``); one process without them. Reads only the environment."""
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                 int(os.environ.get("LOCAL_RANK", "0")))


def is_active() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes (once; ``nccl`` for CUDA, ``gloo`` otherwise)
    and return this rank's world and device (``cuda:LOCAL_RANK`` on CUDA). Without torchrun
    (``WORLD_SIZE`` unset or 1) nothing is initialised and ``device`` is returned unchanged."""
    world = launched_world()
    if world.size == 1 and not is_active():
        return World(), device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), world.local_rank), device


def check_devices(requested: int | None, world: World, num_envs: int) -> int:
    """``run.devices`` against the launched world; returns the number of envs this rank steps.
    A mismatch is a one-line UserError naming the torchrun flag."""
    if requested is not None and requested != world.size:
        raise UserError(f"run.devices={requested} but {world.size} process(es) were launched; "
                        f"start with torchrun --nproc-per-node={requested} (torch runs one "
                        f"process per device)")
    if num_envs % world.size:
        raise UserError(f"rollout.num_envs={num_envs} does not split over {world.size} "
                        f"processes; use a multiple of {world.size}")
    return num_envs // world.size


def rank_stream(name: str, rank: int) -> str:
    """Name of a per-rank random stream (rank 0 keeps the single-process name)."""
    return name if rank == 0 else f"{name}/rank{rank}"


def average_gradients_(grads: Sequence[torch.Tensor]) -> None:
    """Replace every gradient in ``grads`` (in place) by its mean over the ranks (one
    all-reduce of the flattened gradients); a no-op in a single process. Every rank must call
    it with the same parameters' gradients (they run the same update code)."""
    if not is_active() or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(dist.get_world_size())
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank if ``flag`` is True on any rank (e.g. a stop request: all ranks must
    leave the training loop after the same iteration)."""
    if not is_active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


_COUNT_WEIGHTED = {"rollout/episode_return": "rollout/episodes",
                   "rollout/success_rate": "rollout/episodes"}
"""Per-episode means: averaged over ranks weighted by each rank's number of ended episodes."""
_SUMMED = ("rollout/episodes",)


def mean_over_ranks(info: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An iteration's metrics over all ranks (one all-reduce, a second one with MAX for the
    ``spec.backend.ITERATION_MAX_METRICS`` present): minibatch means are averaged (equal parts
    per rank), episode counts summed, per-episode means weighted by episodes, per-minibatch
    maxima maximised (the global minibatch is the union of the ranks' parts)."""
    if not is_active():
        return dict(info)
    maxed = [k for k in info if k in ITERATION_MAX_METRICS]
    if maxed:
        top = torch.stack([info[k].detach().to(torch.float32) for k in maxed])
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        info = {**info, **dict(zip(maxed, top.unbind()))}
    keys = [k for k in info if k not in ITERATION_MAX_METRICS]
    vec = torch.stack([info[k].detach().to(torch.float32) for k in keys])
    for i, k in enumerate(keys):
        if k in _COUNT_WEIGHTED and _COUNT_WEIGHTED[k] in info:
            vec[i] = vec[i] * info[_COUNT_WEIGHTED[k]].to(torch.float32)
    dist.all_reduce(vec, op=dist.ReduceOp.SUM)
    total = dict(zip(keys, vec.unbind()))
    world = float(dist.get_world_size())
    out = {}
    for k in keys:
        if k in _SUMMED:
            out[k] = total[k]
        elif k in _COUNT_WEIGHTED and _COUNT_WEIGHTED[k] in total:
            out[k] = total[k] / torch.clamp(total[_COUNT_WEIGHTED[k]], min=1.0)
        else:
            out[k] = total[k] / world
    return {k: out[k] if k in out else info[k] for k in info}


@dataclass(frozen=True)
class Shard:
    """Which parts of the global batch this process holds: the envs are split into ``groups``
    equal parts (one per rank, in rank order) and this process holds the parts ``members``.

    ``Shard()`` is the single process (1 group); ``Shard(W, (rank,))`` a torchrun rank;
    ``Shard(W, tuple(range(W)))`` all ranks' parts in one process (the reference of a W-rank
    run). Every method is the identity / the plain single-process operation for one group."""

    groups: int = 1
    members: tuple[int, ...] = (0,)

    @classmethod
    def of(cls, world: World) -> "Shard":
        return cls(world.size, (world.rank,))

    @property
    def partial(self) -> bool:
        """True when other processes hold the rest of the batch (collectives needed)."""
        return len(self.members) < self.groups

    def global_count(self, held: int) -> int:
        """Size of the global axis of which this process holds ``held`` entries."""
        return held * self.groups // len(self.members)

    def take(self, x: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """This process's parts of a tensor drawn at the global shape along ``dim``."""
        if self.groups == 1:
            return x
        chunks = x.chunk(self.groups, dim)
        return torch.cat([chunks[m] for m in self.members], dim)

    def randn(self, shape: Sequence[int], generator: torch.Generator, device: torch.device,
              dim: int = 0) -> torch.Tensor:
        """Standard normals of the held ``shape``: drawn at the global shape along ``dim`` (the
        same draw on every rank, from a shared stream) and sliced."""
        if self.groups == 1:
            return torch.randn(tuple(shape), generator=generator, device=device)
        full = list(shape)
        full[dim] = self.global_count(full[dim])
        return self.take(torch.randn(full, generator=generator, device=device), dim)

    def flatten(self, x: torch.Tensor) -> torch.Tensor:
        """(T, N_held, ...) → (T·N_held, ...), each held part's samples contiguous (part-major),
        so that sample positions line up with :meth:`permutation`."""
        k = len(self.members)
        if k == 1:
            return x.reshape((-1,) + tuple(x.shape[2:]))
        t, n = x.shape[:2]
        x = x.reshape((t, k, n // k) + tuple(x.shape[2:])).transpose(0, 1)
        return x.reshape((-1,) + tuple(x.shape[3:]))

    def permutation(self, n_held: int, num_minibatches: int, generator: torch.Generator,
                    device: torch.device) -> torch.Tensor:
        """Indices into the :meth:`flatten`-ed held samples whose consecutive blocks of
        ``n_held / num_minibatches`` are the held parts of the minibatches.

        One permutation of all ``groups`` parts' samples is drawn (the same on every rank); each
        part's samples are taken in that order (a stable partition by part) and cut into
        ``num_minibatches`` equal blocks; minibatch i holds block i of every held part. One
        group: exactly ``torch.randperm(n_held)``."""
        k = len(self.members)
        per_part = n_held // k
        perm = torch.randperm(per_part * self.groups, generator=generator, device=device)
        if self.groups == 1:
            return perm
        by_part = perm[torch.argsort(perm // per_part, stable=True)].reshape(self.groups, -1)
        blocks = [(by_part[m] - m * per_part + j * per_part).reshape(num_minibatches, -1)
                  for j, m in enumerate(self.members)]
        return torch.cat(blocks, dim=1).reshape(-1)

    def running_stats_update(self, stats: RunningStats, batch: torch.Tensor) -> RunningStats:
        """The observation-statistics update with the *global* batch: when other ranks hold the
        rest of it, every rank's (count, mean, variance) is all-gathered and merged in rank
        order (identical result on every rank); otherwise the plain update."""
        if not self.partial:
            return running_stats_update(stats, batch)
        x = batch.to(torch.float64)
        local = torch.cat([torch.tensor([float(x.shape[0])], dtype=torch.float64,
                                        device=x.device),
                           x.mean(dim=0).reshape(-1), x.var(dim=0, correction=0).reshape(-1)])
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local)
        d = stats.mean.numel()
        counts = torch.stack([p[0] for p in parts])
        means = torch.stack([p[1:1 + d] for p in parts])
        varis = torch.stack([p[1 + d:] for p in parts])
        w = (counts / counts.sum())[:, None]
        mean = (w * means).sum(0)
        var = (w * (varis + (means - mean) ** 2)).sum(0)
        shape = stats.mean.shape
        # every rank steps the same number of envs: the global count needs no host sync
        total = x.shape[0] * len(parts)
        return running_stats_merge(stats, total, mean.reshape(shape), var.reshape(shape))


SINGLE = Shard()
"""The single-process shard (the default everywhere)."""
