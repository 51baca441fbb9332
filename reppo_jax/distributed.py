"""Data-parallel REPPO over several devices with JAX's own machinery (a device mesh and GSPMD).

What is split, and how
----------------------
The jitted iteration (``reppo_jax.agent.make_iteration``, or D-REPPO's
``reppo_jax.discrete.agent.make_iteration``; ``reppo_jax.train.Trainer`` builds both) is the
*same function* on one device and on many; only the layout of its arrays changes:

* the environment axis of the simulator state and of the current observations is sharded over a
  one-axis :class:`jax.sharding.Mesh` (``ENV_AXIS``): device d steps envs
  ``[d·N/D, (d+1)·N/D)`` and runs the policy on them;
* every update minibatch is sharded over the same axis (a ``with_sharding_constraint`` that
  either agent's ``update`` applies through its ``shard_minibatches`` hook): each device
  computes the loss and gradients of its part of the minibatch;
* agent parameters, optimiser states, log α/β, the observation statistics and the PRNG key are
  replicated.

XLA's SPMD partitioner (GSPMD) then inserts the collectives the program's math needs: the
gradient of a mean over a sharded minibatch becomes a per-device partial sum plus an all-reduce,
so every device applies the global-minibatch gradient (clip included, on the reduced gradient);
the observation-statistics update reduces over all envs (global-batch statistics); α/β are
updated from global means. Every replicated value is therefore identical on every device by
construction, and the result equals the single-device run up to the order of float32
reductions (``tests/jax/test_multidevice.py``).

Minibatches are drawn exactly as on one device — one permutation of the flattened global batch
— so the algorithm does not change with the device count. The price is data movement: the
rollout batch is gathered onto every device once per iteration (one all-gather of the batch;
``python -m benchmarks.bench_devices`` measures the cost), and each device then picks its part of
every minibatch locally. A per-device shuffle (no movement, but minibatches stratified by device)
would change which samples share a minibatch; we chose the unchanged algorithm.

One device (``run.devices`` 1, or None with one visible device) builds no mesh at all: the
iteration is jitted exactly as before this module existed.

Multi-host
----------
Set ``REPPO_JAX_DISTRIBUTED=1`` and :func:`initialize_multihost` calls
``jax.distributed.initialize()`` before any device is touched; the coordinator comes from
``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), the process count and index from
``REPPO_JAX_NUM_PROCESSES`` / ``REPPO_JAX_PROCESS_ID`` where set, otherwise from JAX's cluster
auto-detection (SLURM, Open MPI, ...). The mesh then spans every process's devices
(``jax.devices()``). Not tested here (one machine, no GPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from reppo_common.errors import UserError

ENV_AXIS = "envs"
"""Name of the mesh axis the environments and minibatch samples are split over."""

MULTIHOST_ENV = "REPPO_JAX_DISTRIBUTED"
"""Environment variable that turns on :func:`initialize_multihost` (value ``1``)."""


def initialize_multihost() -> bool:
    """Call ``jax.distributed.initialize()`` once if ``REPPO_JAX_DISTRIBUTED=1`` (see the module
    docstring for the variables it reads). Returns True if this process is part of a multi-process
    run. Must run before the first JAX computation."""
    if os.environ.get(MULTIHOST_ENV, "") != "1":
        return False
    if not jax.distributed.is_initialized():
        kwargs: dict[str, int] = {}
        for key, var in (("num_processes", "REPPO_JAX_NUM_PROCESSES"),
                         ("process_id", "REPPO_JAX_PROCESS_ID")):
            if os.environ.get(var):
                kwargs[key] = int(os.environ[var])
        jax.distributed.initialize(**kwargs)
    return True


def select_devices(requested: int | None) -> list[jax.Device]:
    """The devices to train on: the first ``requested`` of ``jax.devices()`` (all processes'
    devices of the default platform), or all of them for None. More than are visible is a
    one-line UserError (with the CPU virtual-device hint)."""
    initialize_multihost()
    devices = jax.devices()
    if requested is None:
        return list(devices)
    if requested > len(devices):
        platform = devices[0].platform
        hint = (" (on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N before starting "
                "makes N virtual devices)" if platform == "cpu" else "")
        raise UserError(f"run.devices={requested} but JAX sees only {len(devices)} {platform} "
                        f"device(s){hint}")
    return list(devices[:requested])


def check_divisible(devices: int, num_envs: int, num_steps: int, num_minibatches: int) -> None:
    """The batch must split evenly: envs over devices and every minibatch over devices (the
    config checks this for an explicit ``run.devices``; this covers the default, all devices)."""
    minibatch = num_envs * num_steps // num_minibatches
    if num_envs % devices or minibatch % devices:
        raise UserError(f"{devices} devices cannot split rollout.num_envs={num_envs} and "
                        f"minibatches of {minibatch} samples evenly; pass --devices N with N "
                        f"dividing both (e.g. --devices 1)")


@dataclass(frozen=True)
class DataParallel:
    """A one-axis device mesh and the shardings of the training carry (see module docstring)."""

    mesh: Mesh
    num_envs: int

    @classmethod
    def over(cls, devices: Sequence[jax.Device], num_envs: int) -> "DataParallel":
        return cls(Mesh(np.asarray(devices), (ENV_AXIS,)), num_envs)

    @property
    def size(self) -> int:
        """Number of devices."""
        return int(self.mesh.size)

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def env_sharded(self, axis: int = 0) -> NamedSharding:
        """Split array axis ``axis`` over the devices."""
        return NamedSharding(self.mesh, PartitionSpec(*([None] * axis), ENV_AXIS))

    def carry_shardings(self, carry: Any) -> Any:
        """Shardings for a :class:`reppo_jax.agent.Carry` (arrays or ShapeDtypeStructs): leaves of
        the simulator state and the observations whose leading axis is the env axis are split,
        everything else (agent, keys, scalars) is replicated."""

        def by_leaf(x: Any) -> NamedSharding:
            shape = getattr(x, "shape", ())
            if len(shape) >= 1 and shape[0] == self.num_envs:
                return self.env_sharded(0)
            return self.replicated

        env_state = jax.tree.map(by_leaf, carry.env_state)
        if hasattr(env_state, "key"):  # the VecEnvState's reset key is one key for all envs
            env_state = env_state._replace(key=jax.tree.map(lambda _: self.replicated,
                                                            carry.env_state.key))
        rep = jax.tree.map(lambda _: self.replicated, carry)
        return rep._replace(env_state=env_state, obs=jax.tree.map(by_leaf, carry.obs))

    def shard_minibatches(self, mbs: Any) -> Any:
        """Layout hint for the ``(num_minibatches, minibatch, ...)`` arrays of one epoch: split
        each minibatch's sample axis over the devices (data-parallel gradients)."""
        return jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(x, self.env_sharded(1)), mbs)

    def jit_iteration(self, iteration: Callable, carry_template: Any) -> Callable:
        """``jax.jit`` of a ``carry -> (carry, info)`` function with the carry laid out by
        :meth:`carry_shardings`, the metrics replicated, and the carry donated."""
        shardings = self.carry_shardings(carry_template)
        return jax.jit(iteration, in_shardings=(shardings,),
                       out_shardings=(shardings, self.replicated), donate_argnums=0)

    def place(self, carry: Any) -> Any:
        """Move a carry (fresh, or restored from a checkpoint) into the training layout. With
        several processes the (identical) host values are handed over, each process placing the
        shards its own devices hold."""
        if jax.process_count() > 1:
            carry = jax.device_get(carry)
        return jax.device_put(carry, self.carry_shardings(carry))

    def local(self, tree: Any) -> Any:
        """``tree`` on this process's first device (evaluation runs there, not on every
        device)."""
        return jax.device_put(tree, jax.local_devices()[0])


def data_parallel(requested: int | None, num_envs: int, num_steps: int,
                  num_minibatches: int) -> DataParallel | None:
    """The :class:`DataParallel` layout for ``run.devices = requested`` (None: all devices), or
    None when that is one device — the single-device code path, unchanged."""
    devices = select_devices(requested)
    if len(devices) == 1:
        return None
    check_divisible(len(devices), num_envs, num_steps, num_minibatches)
    return DataParallel.over(devices, num_envs)
