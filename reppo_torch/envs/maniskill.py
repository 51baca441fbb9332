"""ManiSkill3 adapter (``maniskill/<EnvId>``, state observations) implementing
:class:`reppo_torch.envs.base.VecEnv`.

Two simulators, one bookkeeping:

* **GPU** (``physics_impl="physx_cuda"``, the default when CUDA is available): one ManiSkill
  env with ``num_envs`` parallel scenes on the GPU; tensors never leave the device. Done envs
  are reset together with ManiSkill's partial reset (``options={"env_idx": ...}``).
* **CPU** (``physics_impl="physx_cpu"``): SAPIEN's CPU backend allows one scene per env
  instance, so ``num_envs`` single-scene instances are stepped side by side (``vectorization``):

  - ``"inprocess"`` (the default): a plain loop over the instances in this process;
  - ``"workers"``: ``num_workers`` subprocesses (default: one per core) each step a slice of the
    envs, exchanging actions and observations through one shared-memory block (one small pipe
    message per worker and step);
  - ``"hybrid"``: ``num_workers`` subprocesses (default: cores - 1) plus this process, which steps
    its own slice while the workers step theirs.

  Env ``i``'s trajectory depends only on ``(seed, i)``, so all three give bit-identical
  results (tested). The default comes from measurement (``benchmarks/bench_sim_maniskill.py``,
  PushCube-v1, 16 envs, this project's 2-core machine shared with ~15 other busy processes,
  options interleaved in one process: median env-steps/s inprocess 162, workers(2) 153,
  hybrid(1) 134; gymnasium ``SyncVectorEnv`` of ``CPUGymWrapper`` envs was on par with
  inprocess, ``AsyncVectorEnv(context="spawn")`` slower and ~170 s to start with 8 envs).
  Every option costs 2.6-4 ms of CPU per env step; on an *idle* multi-core machine the worker
  options can use more than one core (up to ~cores x the loop's rate), which the shared machine
  could not show. Choose another option with ``vectorization=...`` or, through the CLI, with
  the environment variables ``REPPO_MANISKILL_VECTORIZATION=inprocess|workers|hybrid`` and
  ``REPPO_MANISKILL_WORKERS=<k>``. gymnasium's vector envs are not used.

Conventions (those of ``reppo_torch.envs.base``):

* actions in ``[-1, 1]^action_dim`` are clipped and mapped affinely onto the controller's action
  bounds (the identity for ManiSkill's normalised controllers, e.g. ``pd_joint_delta_pos``);
* auto-reset per env: ``StepOutput.obs`` is the next episode's first observation where an
  episode ended and ``final_obs`` the true observation reached by the step;
* time limit = ``max_episode_steps`` agent steps (default: the task's registered limit, 50 for
  PushCube/PickCube/StackCube), reported as ``truncated``; random initial episode offsets
  (``random_episode_offsets``) shorten each env's *first* episode, as in the JAX port;
* task terminations (``success | fail``) end the episode. ``bootstrap_at_done`` says how they
  are reported. ``"always"`` (default) follows ManiSkill's PPO baseline, which resets an env on
  success (``partial_reset=True``) and still bootstraps from ``V(final_observation)`` at every
  done, termination or truncation: success-terminations are reported as ``truncated`` so the
  trainer bootstraps through them. ``"truncated"`` reports them as ``terminated`` (no
  bootstrap, the textbook MDP reading). ``ignore_terminations=True`` does not end episodes on
  success at all (ManiSkill's ``ignore_terminations``): every episode runs to the time limit;
* ``info['success']`` (bool): the episode succeeded at some step (ManiSkill's
  ``success_once``), meaningful where it ended; ``info['episode_return']`` (float32) and
  ``info['episode_length']`` (int64) as in the base protocol;
* observations are float32 on ``env.device``; every env's episodes are reproducible from
  ``reset(seed)``: env ``i`` draws its episode seeds from ``SeedSequence([seed, i])``, so the
  CPU options (in-process or workers, any worker count) produce identical trajectories.

SAPIEN needs a Vulkan device even without rendering; on a machine without GPU run
``scripts/setup_vulkan.sh`` (Mesa >= 23 lavapipe). A missing or too-old driver raises
:class:`reppo_common.errors.UserError` saying so. PushCube/PickCube/StackCube need no downloaded
assets (the Panda robot ships with mani-skill); a task whose assets are missing raises a
UserError instead of ManiSkill's interactive download prompt.
"""

from __future__ import annotations

import os
from multiprocessing import shared_memory
from typing import Any, Sequence

import numpy as np
import torch

from reppo_common.errors import UserError
from reppo_torch.envs.base import StepOutput

__all__ = [
    "ManiSkillVecEnv",
    "make_maniskill_env",
    "maniskill_task_names",
    "vulkan_available",
    "VECTORIZATIONS",
]

VECTORIZATIONS = ("auto", "inprocess", "workers", "hybrid")
BOOTSTRAP_MODES = ("always", "truncated")
_MJX_IMPLS = ("jax",)  # the config default for DMC; means "the adapter's default" here

_VULKAN_HINTS = ("rendering device", "physical device", "vulkan", "vk::", "vkcreate")
_VULKAN_FIX = (
    "SAPIEN (ManiSkill's simulator) needs a Vulkan device even with rendering off and found no "
    "supported one; run `sudo bash scripts/setup_vulkan.sh` (installs mesa-vulkan-drivers >= 23, "
    "from bookworm-backports on Debian 12) or install a GPU driver with Vulkan"
)


def maniskill_task_names() -> tuple[str, ...]:
    """ManiSkill tasks registered in ``reppo_common.registry`` (``maniskill/<EnvId>``)."""
    from reppo_common.registry import list_envs

    return tuple(e.name for e in list_envs("maniskill"))


def _vulkan_error(exc: BaseException | str) -> UserError | None:
    """A :class:`UserError` with the fix if ``exc`` is SAPIEN's "no usable Vulkan device"."""
    msg = str(exc)
    if any(h in msg.lower() for h in _VULKAN_HINTS):
        return UserError(f"{_VULKAN_FIX} (SAPIEN said: {msg.strip().splitlines()[-1][:200]})")
    return None


def _import_maniskill():
    """Import gymnasium + mani_skill (registers the tasks); UserError if missing."""
    try:
        import gymnasium as gym
        import mani_skill.envs  # noqa: F401  (registers the tasks)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise UserError(
            f"maniskill envs need mani-skill ({exc}); install it with "
            "`pip install 'mani-skill==3.0.1' 'torch==2.13.0'` (or `pip install -e '.[torch]'`)"
        ) from exc
    return gym


def _check_assets(env_id: str) -> None:
    """Refuse (UserError) rather than let ManiSkill prompt for or start an asset download:
    training must never block on ``input()`` or fetch data behind the user's back. The
    registered tasks of this project (PushCube, PickCube, StackCube, ...) need none."""
    from mani_skill.utils import assets
    from mani_skill.utils.registration import REGISTERED_ENVS

    spec = REGISTERED_ENVS.get(env_id)
    if spec is None:
        return  # gym.make reports the unknown id
    missing = []
    for asset_id in spec.asset_download_ids or []:
        ids = (assets.expand_data_group_into_individual_data_source_ids(asset_id)
               if asset_id in assets.DATA_GROUPS else [asset_id])
        missing += [i for i in ids if not assets.is_data_source_downloaded(i)]
    if missing:
        raise UserError(
            f"ManiSkill task {env_id!r} needs downloaded assets ({', '.join(missing[:5])}); "
            f"fetch them first with `python -m mani_skill.utils.download_asset {env_id}`"
        )


def _make_raw_env(env_id: str, num_envs: int, sim_backend: str, control_mode: str | None,
                  reward_mode: str, env_kwargs: dict | None) -> Any:
    """``gym.make`` one ManiSkill env (state obs, no rendering) and return the *unwrapped*
    ``BaseEnv``: time limits and auto-reset are ours, so gymnasium's wrappers are skipped."""
    gym = _import_maniskill()
    kwargs = dict(obs_mode="state", reward_mode=reward_mode, render_mode=None,
                  sim_backend=sim_backend, num_envs=num_envs)
    if sim_backend == "physx_cpu":
        kwargs["render_backend"] = "none"
    if control_mode is not None:
        kwargs["control_mode"] = control_mode
    kwargs.update(env_kwargs or {})
    _check_assets(env_id)
    try:
        env = gym.make(env_id, **kwargs)
    except RuntimeError as exc:
        err = _vulkan_error(exc)
        if err is not None:
            raise err from exc
        raise
    except gym.error.Error as exc:
        raise UserError(f"ManiSkill could not make {env_id!r}: {exc}") from exc
    return env.unwrapped


def _registered_time_limit(env_id: str) -> int | None:
    gym = _import_maniskill()
    try:
        return gym.spec(env_id).max_episode_steps
    except Exception:  # pragma: no cover - unknown id is reported by gym.make
        return None


def vulkan_available() -> tuple[bool, str]:
    """(True, '') if a SAPIEN CPU scene can be built here, else (False, reason). Runs in a
    subprocess so a driver crash cannot take the caller down; used by tests to skip."""
    import subprocess
    import sys

    code = (
        "import gymnasium as gym, mani_skill.envs;"
        "gym.make('PushCube-v1', obs_mode='state', sim_backend='physx_cpu', render_mode=None,"
        " render_backend='none', num_envs=1).unwrapped.reset(seed=0)"
    )
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600)
    except subprocess.TimeoutExpired:
        return False, "building a SAPIEN scene timed out"
    if res.returncode == 0:
        return True, ""
    tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
    return False, tail


def _episode_seed_streams(seed: int, env_ids: Sequence[int]) -> list[np.random.Generator]:
    """One independent generator per env, a function of (seed, global env index) only."""
    return [np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(i)]))
            for i in env_ids]


# ----------------------------------------------------------------------------------------------
# CPU: a group of single-scene envs stepped in a loop (in-process, or inside one worker)
# ----------------------------------------------------------------------------------------------
class _CpuEnvGroup:
    """``k`` single-scene ``physx_cpu`` envs with global indices ``env_ids``, stepped in a loop.

    Does the per-env time limit and auto-reset (it must know which envs to reset before the
    next step) and writes into caller-provided numpy views, so the same code serves the
    in-process option and each worker of the pool (whose views are shared memory)."""

    def __init__(self, env_id: str, env_ids: Sequence[int], *, max_episode_steps: int,
                 ignore_terminations: bool, control_mode: str | None, reward_mode: str,
                 env_kwargs: dict | None):
        self.env_ids = list(env_ids)
        self.envs = [_make_raw_env(env_id, 1, "physx_cpu", control_mode, reward_mode, env_kwargs)
                     for _ in self.env_ids]
        self.max_episode_steps = int(max_episode_steps)
        self.ignore_terminations = bool(ignore_terminations)
        self.step_count = np.zeros(len(self.env_ids), np.int64)
        self.success_once = np.zeros(len(self.env_ids), bool)
        self._rngs: list[np.random.Generator] = []
        space = self.envs[0].single_action_space
        self.obs_dim = int(np.prod(self.envs[0].single_observation_space.shape))
        self.action_dim = int(np.prod(space.shape))
        self.action_low = np.asarray(space.low, np.float32).reshape(-1)
        self.action_high = np.asarray(space.high, np.float32).reshape(-1)

    def _reset_one(self, j: int) -> np.ndarray:
        seed = int(self._rngs[j].integers(2**31 - 1))
        obs, _ = self.envs[j].reset(seed=seed)
        return obs.reshape(-1).numpy()

    def reset(self, seed: int, offsets: np.ndarray, obs_out: np.ndarray) -> None:
        self._rngs = _episode_seed_streams(seed, self.env_ids)
        self.step_count[:] = offsets
        self.success_once[:] = False
        for j in range(len(self.envs)):
            obs_out[j] = self._reset_one(j)

    def step(self, actions: np.ndarray, obs_out: np.ndarray, final_obs_out: np.ndarray,
             reward_out: np.ndarray, term_out: np.ndarray, trunc_out: np.ndarray,
             success_out: np.ndarray) -> None:
        for j, env in enumerate(self.envs):
            obs, reward, terminated, _, info = env.step(actions[j:j + 1])
            obs = obs.reshape(-1).numpy()
            term = False if self.ignore_terminations else bool(terminated[0])
            succ = bool(self.success_once[j] or ("success" in info and bool(info["success"][0])))
            self.step_count[j] += 1
            trunc = (not term) and self.step_count[j] >= self.max_episode_steps
            final_obs_out[j] = obs
            reward_out[j] = float(reward[0])
            term_out[j] = term
            trunc_out[j] = trunc
            success_out[j] = succ
            if term or trunc:
                obs = self._reset_one(j)
                self.step_count[j] = 0
                succ = False
            self.success_once[j] = succ
            obs_out[j] = obs

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


class _SharedArrays:
    """Named numpy arrays over one shared-memory block (created by the parent, attached by
    the workers), so workers write their slices and the parent reads without copies."""

    def __init__(self, num_envs: int, obs_dim: int, action_dim: int, name: str | None = None):
        n = int(num_envs)
        self.layout = [("act", (n, action_dim), np.float32), ("obs", (n, obs_dim), np.float32),
                       ("final_obs", (n, obs_dim), np.float32), ("reward", (n,), np.float32),
                       ("term", (n,), np.bool_), ("trunc", (n,), np.bool_),
                       ("success", (n,), np.bool_)]
        sizes = [int(np.prod(s)) * np.dtype(d).itemsize for _, s, d in self.layout]
        offsets = np.cumsum([0] + [-(-sz // 64) * 64 for sz in sizes])
        if name is None:
            self.shm = shared_memory.SharedMemory(create=True, size=int(offsets[-1]))
            self.owner = True
        else:
            self.shm = shared_memory.SharedMemory(name=name)
            self.owner = False
            # Python < 3.13 registers attached blocks with this process's resource tracker,
            # which would unlink the parent's block when the worker exits.
            try:
                from multiprocessing import resource_tracker

                resource_tracker.unregister(self.shm._name, "shared_memory")
            except Exception:  # noqa: BLE001 - best effort; harmless if absent
                pass
        self.arrays = {k: np.ndarray(s, d, buffer=self.shm.buf, offset=int(o))
                       for (k, s, d), o in zip(self.layout, offsets[:-1])}

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def close(self) -> None:
        self.arrays = {}
        try:
            self.shm.close()
            if self.owner:
                self.shm.unlink()
        except (FileNotFoundError, BufferError):  # pragma: no cover - already gone
            pass


def _worker_main(conn, lo: int, hi: int, env_id: str, group_kwargs: dict, dims: tuple) -> None:
    """Worker process: builds envs ``lo..hi-1`` and serves reset/step commands over ``conn``;
    data moves through the shared arrays. Errors are sent back as ("error", message)."""
    torch.set_num_threads(1)
    shm = None
    try:
        group = _CpuEnvGroup(env_id, range(lo, hi), **group_kwargs)
        conn.send(("ok", group.obs_dim, group.action_dim, group.action_low.tolist(),
                   group.action_high.tolist()))
        num_envs, = dims
        shm = _SharedArrays(num_envs, group.obs_dim, group.action_dim, name=conn.recv())
        a = {k: shm[k][lo:hi] for k, _, _ in shm.layout}
        conn.send(("ok",))
        while True:
            cmd = conn.recv()
            if cmd[0] == "step":
                group.step(a["act"], a["obs"], a["final_obs"], a["reward"], a["term"],
                           a["trunc"], a["success"])
            elif cmd[0] == "reset":
                group.reset(cmd[1], cmd[2][lo:hi], a["obs"])
            elif cmd[0] == "close":
                group.close()
                conn.send(("ok",))
                break
            conn.send(("ok",))
    except (KeyboardInterrupt, EOFError):  # parent went away
        pass
    except BaseException as exc:  # noqa: BLE001 - forwarded to the parent
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except (BrokenPipeError, EOFError, OSError):
            pass
    finally:
        if shm is not None:
            shm.close()
        conn.close()


def _worker_entry(fd: int) -> None:
    """Entry point of a worker subprocess: wraps the inherited socket ``fd`` as a connection,
    receives its arguments and runs :func:`_worker_main`."""
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    args = conn.recv()
    _worker_main(conn, *args)


class _WorkerPool:
    """Worker subprocesses, worker ``w`` stepping envs ``slices[w] = (lo, hi)``; one
    ("step",) message per worker per step, data in one shared-memory block over all
    ``num_envs`` envs (envs outside the slices are the caller's, see ``hybrid``).

    Workers are plain ``python -c`` subprocesses talking over a socketpair (not
    ``multiprocessing``'s ``spawn``, which re-imports the caller's ``__main__`` and so fails in
    scripts without a ``__main__`` guard; not ``fork``, which can hang once torch/SAPIEN
    threads exist). Each worker runs torch with one thread."""

    def __init__(self, env_id: str, num_envs: int, slices: Sequence[tuple[int, int]],
                 group_kwargs: dict):
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        self.conns, self.procs, self.shm = [], [], None
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        env["OMP_NUM_THREADS"] = "1"
        code = ("import sys; from reppo_torch.envs.maniskill import _worker_entry; "
                "_worker_entry(int(sys.argv[1]))")
        try:
            for lo, hi in slices:
                mine, theirs = socket.socketpair()
                proc = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())],
                                        pass_fds=(theirs.fileno(),), env=env,
                                        stdin=subprocess.DEVNULL)
                theirs.close()
                conn = Connection(mine.detach())
                conn.send((int(lo), int(hi), env_id, group_kwargs, (int(num_envs),)))
                self.conns.append(conn)
                self.procs.append(proc)
            infos = [self._recv(c) for c in self.conns]
            _, self.obs_dim, self.action_dim, low, high = infos[0]
            self.action_low = np.asarray(low, np.float32)
            self.action_high = np.asarray(high, np.float32)
            self.shm = _SharedArrays(num_envs, self.obs_dim, self.action_dim)
            for c in self.conns:
                c.send(self.shm.shm.name)
            for c in self.conns:
                self._recv(c)
        except BaseException:
            self.close()
            raise

    def _recv(self, conn):
        try:
            msg = conn.recv()
        except EOFError:
            raise RuntimeError("a ManiSkill worker process died (see its stderr)") from None
        if msg[0] == "error":
            err = _vulkan_error(msg[1])
            if err is not None:
                raise err
            raise RuntimeError(f"ManiSkill worker failed: {msg[1]}")
        return msg

    def send(self, cmd: tuple) -> None:
        """Start ``cmd`` (("step",) or ("reset", seed, offsets)) on every worker."""
        for c in self.conns:
            c.send(cmd)

    def wait(self) -> None:
        """Wait until every worker finished the last command."""
        for c in self.conns:
            self._recv(c)

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(("close",))
            except (BrokenPipeError, OSError):
                pass
        for c, p in zip(self.conns, self.procs):
            try:
                if c.poll(30):
                    c.recv()
            except (EOFError, OSError):
                pass
            try:
                p.wait(timeout=10)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                p.terminate()
                p.wait(timeout=5)
            c.close()
        self.conns, self.procs = [], []
        if self.shm is not None:
            self.shm.close()
            self.shm = None


# ----------------------------------------------------------------------------------------------
# The adapter
# ----------------------------------------------------------------------------------------------
class ManiSkillVecEnv:
    """Vectorised ManiSkill3 env; see the module docstring. Build with
    :func:`make_maniskill_env`."""

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        physics_impl: str = "auto",
        vectorization: str = "auto",
        num_workers: int | None = None,
        max_episode_steps: int | None = None,
        random_episode_offsets: bool = True,
        bootstrap_at_done: str = "always",
        ignore_terminations: bool = False,
        control_mode: str | None = "pd_joint_delta_pos",
        reward_mode: str = "normalized_dense",
        device: str | torch.device | None = None,
        env_kwargs: dict | None = None,
    ):
        if env_id.startswith("maniskill/"):
            env_id = env_id[len("maniskill/"):]
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if bootstrap_at_done not in BOOTSTRAP_MODES:
            raise ValueError(f"bootstrap_at_done must be one of {BOOTSTRAP_MODES}, "
                             f"got {bootstrap_at_done!r}")
        if vectorization not in VECTORIZATIONS:
            raise ValueError(f"vectorization must be one of {VECTORIZATIONS}, "
                             f"got {vectorization!r}")
        if physics_impl in ("auto", *_MJX_IMPLS):
            physics_impl = "physx_cuda" if torch.cuda.is_available() else "physx_cpu"
        if physics_impl not in ("physx_cpu", "physx_cuda"):
            raise ValueError("physics_impl for maniskill must be 'auto', 'physx_cpu' or "
                             f"'physx_cuda', got {physics_impl!r}")
        if physics_impl == "physx_cuda" and not torch.cuda.is_available():
            raise UserError("physics_impl='physx_cuda' needs a CUDA GPU; use "
                            "--env.physics_impl=physx_cpu (or auto)")
        self.env_id = env_id
        self.num_envs = int(num_envs)
        self.physics_impl = physics_impl
        self.bootstrap_at_done = bootstrap_at_done
        self.ignore_terminations = bool(ignore_terminations)
        self.random_episode_offsets = bool(random_episode_offsets)
        if max_episode_steps is None:
            max_episode_steps = _registered_time_limit(env_id) or 50
        self.max_episode_steps = int(max_episode_steps)
        if self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        # normalized_dense rewards lie in [0, 1] (what reppo_common.registry assumes)
        self.reward_range = (0.0, 1.0)
        self._group = self._pool = self._gpu = None

        if physics_impl == "physx_cuda":
            self.vectorization = "gpu"
            self._gpu = _make_raw_env(env_id, self.num_envs, "physx_cuda", control_mode,
                                      reward_mode, env_kwargs)
            sim_device = torch.device(self._gpu.device)
            space = self._gpu.single_action_space
            self.obs_dim = int(np.prod(self._gpu.single_observation_space.shape))
        else:
            if vectorization == "auto":
                vectorization = os.environ.get("REPPO_MANISKILL_VECTORIZATION", "inprocess")
                if vectorization not in VECTORIZATIONS[1:]:
                    raise UserError(f"REPPO_MANISKILL_VECTORIZATION={vectorization!r}; use one "
                                    f"of {', '.join(VECTORIZATIONS[1:])}")
                if num_workers is None and os.environ.get("REPPO_MANISKILL_WORKERS"):
                    num_workers = int(os.environ["REPPO_MANISKILL_WORKERS"])
            self.vectorization = vectorization
            group_kwargs = dict(max_episode_steps=self.max_episode_steps,
                                ignore_terminations=self.ignore_terminations,
                                control_mode=control_mode, reward_mode=reward_mode,
                                env_kwargs=env_kwargs)
            sim_device = torch.device("cpu")
            n = self.num_envs
            if vectorization == "inprocess":
                local, slices = n, []
            else:
                if num_workers is None:
                    num_workers = default_num_workers(n) - (vectorization == "hybrid")
                num_workers = max(1, min(int(num_workers), n - (vectorization == "hybrid")))
                parts = num_workers + (vectorization == "hybrid")
                bounds = np.linspace(0, n, parts + 1).round().astype(int)
                local = int(bounds[1]) if vectorization == "hybrid" else 0
                slices = [(int(bounds[i]), int(bounds[i + 1]))
                          for i in range(parts - num_workers, parts)]
            if slices:
                self._pool = _WorkerPool(env_id, n, slices, group_kwargs)
                src = self._pool
                self._buf = self._pool.shm.arrays
            if local:
                # envs 0..local-1 are stepped in this process, into the same (shared) arrays
                self._group = _CpuEnvGroup(env_id, range(local), **group_kwargs)
                src = self._group
                if not slices:
                    self._buf = {
                        "act": np.zeros((n, src.action_dim), np.float32),
                        "obs": np.zeros((n, src.obs_dim), np.float32),
                        "final_obs": np.zeros((n, src.obs_dim), np.float32),
                        "reward": np.zeros(n, np.float32),
                        "term": np.zeros(n, bool),
                        "trunc": np.zeros(n, bool),
                        "success": np.zeros(n, bool),
                    }
                self._local = {k: v[:local] for k, v in self._buf.items()}
            self.num_workers = 0 if self._pool is None else len(self._pool.procs)
            self.obs_dim = src.obs_dim
            space = None
            low, high = src.action_low, src.action_high
        if space is not None:
            low = np.asarray(space.low, np.float32).reshape(-1)
            high = np.asarray(space.high, np.float32).reshape(-1)
        self.action_dim = int(low.shape[0])
        self.device = torch.device(device) if device is not None else sim_device
        self._sim_device = sim_device
        self._act_low = torch.as_tensor(low, device=self.device)
        self._act_high = torch.as_tensor(high, device=self.device)
        n = self.num_envs
        self._ep_return = torch.zeros(n, dtype=torch.float32, device=self.device)
        self._ep_length = torch.zeros(n, dtype=torch.int64, device=self.device)
        # GPU-only episode state (the CPU groups keep their own)
        self._step_count = torch.zeros(n, dtype=torch.int64, device=sim_device)
        self._success_once = torch.zeros(n, dtype=torch.bool, device=sim_device)
        self._did_reset = False

    # -- helpers ---------------------------------------------------------------------------------
    def _to_sim_action(self, action: torch.Tensor) -> torch.Tensor:
        a = torch.as_tensor(action, dtype=torch.float32, device=self.device)
        a = torch.clamp(a.reshape(self.num_envs, self.action_dim), -1.0, 1.0)
        # [-1, 1] -> [low, high]; exact identity for ManiSkill's normalised controllers
        return self._act_low + (a + 1.0) * 0.5 * (self._act_high - self._act_low)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, non_blocking=True)

    def _offsets(self, seed: int) -> np.ndarray:
        if not self.random_episode_offsets:
            return np.zeros(self.num_envs, np.int64)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 2**31]))
        return rng.integers(0, self.max_episode_steps, size=self.num_envs)

    # -- VecEnv API -------------------------------------------------------------------------------
    def reset(self, seed: int) -> torch.Tensor:
        """Reset every env; env ``i``'s episodes are a function of ``(seed, i)``."""
        self._ep_return.zero_()
        self._ep_length.zero_()
        offsets = self._offsets(seed)
        self._did_reset = True
        if self._gpu is not None:
            obs, _ = self._gpu.reset(seed=int(seed))
            self._step_count = torch.as_tensor(offsets, device=self._sim_device)
            self._success_once.zero_()
            return self._out(obs.reshape(self.num_envs, -1).float())
        if self._pool is not None:
            self._pool.send(("reset", int(seed), offsets))
        if self._group is not None:
            self._group.reset(seed, offsets[:len(self._group.envs)], self._local["obs"])
        if self._pool is not None:
            self._pool.wait()
        return self._out(torch.from_numpy(self._buf["obs"].copy()))

    def _step_cpu(self, action: torch.Tensor):
        self._buf["act"][:] = self._to_sim_action(action).cpu().numpy()
        if self._pool is not None:
            self._pool.send(("step",))
        if self._group is not None:  # overlaps with the workers
            b = self._local
            self._group.step(b["act"], b["obs"], b["final_obs"], b["reward"], b["term"],
                             b["trunc"], b["success"])
        if self._pool is not None:
            self._pool.wait()
        b = {k: torch.from_numpy(v.copy()) for k, v in self._buf.items() if k != "act"}
        return b["obs"], b["final_obs"], b["reward"], b["term"], b["trunc"], b["success"]

    def _step_gpu(self, action: torch.Tensor):
        env = self._gpu
        sim_action = self._to_sim_action(action).to(self._sim_device)
        obs, reward, terminated, _, info = env.step(sim_action)
        final_obs = obs.reshape(self.num_envs, -1).float()
        reward = reward.reshape(-1).float()
        term = terminated.reshape(-1).bool()
        if self.ignore_terminations:
            term = torch.zeros_like(term)
        if "success" in info:
            self._success_once |= info["success"].reshape(-1).bool()
        success = self._success_once.clone()
        self._step_count += 1
        trunc = (self._step_count >= self.max_episode_steps) & ~term
        done = term | trunc
        obs = final_obs
        if bool(done.any()):  # one host sync per step, as in ManiSkillVectorEnv
            idx = torch.nonzero(done).reshape(-1)
            new_obs, _ = env.reset(options={"env_idx": idx})
            obs = torch.where(done[:, None], new_obs.reshape(self.num_envs, -1).float(), final_obs)
            self._step_count = torch.where(done, torch.zeros_like(self._step_count),
                                           self._step_count)
            self._success_once &= ~done
        return obs, final_obs.clone(), reward, term, trunc, success

    def step(self, action: torch.Tensor) -> StepOutput:
        if not self._did_reset:
            raise RuntimeError("call reset(seed) before step()")
        if self._gpu is not None:
            obs, final_obs, reward, term, trunc, success = self._step_gpu(action)
        else:
            obs, final_obs, reward, term, trunc, success = self._step_cpu(action)
        obs, final_obs, reward = self._out(obs), self._out(final_obs), self._out(reward)
        term, trunc, success = self._out(term), self._out(trunc), self._out(success)
        if self.bootstrap_at_done == "always":
            # ManiSkill PPO baseline: bootstrap from the final observation at every done
            trunc = trunc | term
            term = torch.zeros_like(term)
        done = term | trunc
        self._ep_return += reward
        self._ep_length += 1
        info = {"episode_return": self._ep_return.clone(),
                "episode_length": self._ep_length.clone(),
                "success": success}
        self._ep_return.masked_fill_(done, 0.0)
        self._ep_length.masked_fill_(done, 0)
        return StepOutput(obs=obs, reward=reward, terminated=term, truncated=trunc,
                          final_obs=final_obs, info=info)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._group is not None:
            self._group.close()
            self._group = None
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None

    def __del__(self):  # best effort: never leave worker processes behind
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def default_num_workers(num_envs: int) -> int:
    """Worker processes for the CPU pool: one per available core, at most one per env."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, min(int(num_envs), cores))


def make_maniskill_env(
    task: str,
    num_envs: int,
    *,
    max_episode_steps: int | None = None,
    physics_impl: str = "auto",
    random_episode_offsets: bool = True,
    device: str | torch.device | None = None,
    vectorization: str = "auto",
    num_workers: int | None = None,
    bootstrap_at_done: str = "always",
    ignore_terminations: bool = False,
    control_mode: str | None = "pd_joint_delta_pos",
    reward_mode: str = "normalized_dense",
    reset_strategy: str | None = None,
    reset_subset_size: int | None = None,
    env_kwargs: dict | None = None,
) -> ManiSkillVecEnv:
    """Build a :class:`ManiSkillVecEnv` for ``task`` (``"PushCube-v1"`` or
    ``"maniskill/PushCube-v1"``). ``physics_impl``: ``"auto"`` (GPU if CUDA is available, else
    CPU), ``"physx_cpu"`` or ``"physx_cuda"``; the DMC default ``"jax"`` also means auto.
    ``reset_strategy`` / ``reset_subset_size`` (DMC options) are accepted and ignored: ManiSkill
    resets are always fresh and per env. ``device``: where the returned tensors live (default:
    the simulator's)."""
    del reset_strategy, reset_subset_size
    return ManiSkillVecEnv(
        task, num_envs, physics_impl=physics_impl, vectorization=vectorization,
        num_workers=num_workers, max_episode_steps=max_episode_steps,
        random_episode_offsets=random_episode_offsets, bootstrap_at_done=bootstrap_at_done,
        ignore_terminations=ignore_terminations, control_mode=control_mode,
        reward_mode=reward_mode, device=device, env_kwargs=env_kwargs,
    )
