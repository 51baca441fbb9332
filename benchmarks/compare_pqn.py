"""D-REPPO vs a PPO baseline on a discrete env (MinAtar), same env, budget and seeds.

    python -m benchmarks.compare_pqn --env minatar/Breakout --steps 3000000 --seeds 0 1 2 \
        --threshold 10 --out runs/compare_discrete [--preset cpu-discrete] \
        [--reppo-set section.field=value ...] [--ppo-set key=value ...] [--only reppo|ppo]

No maintained package ships a PQN or discrete-action PPO for gymnax envs that installs here
(gymnax-baselines and purejaxrl are not pip packages; brax's PPO is continuous-only), so the
baseline is **a minimal PPO written for this tool** (:func:`run_ppo`, clearly not a reference
implementation): clipped surrogate (0.2), GAE(λ = 0.95), value loss 0.5, entropy bonus 0.01,
Adam 5e-4 with linear decay and global-norm clip 0.5, 4 epochs × 8 minibatches of a
64-env × 128-step batch, separate 2×128 ReLU MLPs for policy and value on the flattened
observation — the usual MinAtar PPO settings.

Both algorithms use the same adapter (``reppo_jax.envs.minatar``, training with random first
episode offsets) and are evaluated the same way: greedy actions, one episode on each of
``--eval-episodes`` fresh envs, every ``--eval-interval`` env steps. For each seed the tool
reports the env steps and wall seconds at which each algorithm's evaluation first reached
``--threshold``, and the ratio REPPO steps / PPO steps (median over seeds; "n/a" where one never
reached it). Curves go to ``OUT/<algo>_seed<k>.jsonl`` and a summary to ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[1]


PPO_DEFAULTS: dict[str, Any] = {
    "num_envs": 64, "num_steps": 128, "num_epochs": 4, "num_minibatches": 8, "lr": 5e-4,
    "anneal_lr": True, "gamma": 0.99, "gae_lambda": 0.95, "clip": 0.2, "ent_coef": 0.01,
    "vf_coef": 0.5, "max_grad_norm": 0.5, "hidden": 128,
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="minatar/Breakout")
    p.add_argument("--steps", type=float, default=3e6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threshold", type=float, default=10.0)
    p.add_argument("--eval-interval", type=int, default=100_000)
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument("--preset", default="cpu-discrete")
    p.add_argument("--reppo-set", nargs="*", default=[])
    p.add_argument("--ppo-set", nargs="*", default=[])
    p.add_argument("--only", choices=("reppo", "ppo"), default=None)
    p.add_argument("--out", default="runs/compare_pqn")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# minimal PPO (this tool's baseline)
# ---------------------------------------------------------------------------------------------


def _ppo_config(sets: list[str]) -> dict[str, Any]:
    cfg = dict(PPO_DEFAULTS)
    for item in sets:
        k, _, v = item.partition("=")
        if k not in cfg:
            raise SystemExit(f"unknown --ppo-set key {k!r}; known: {', '.join(cfg)}")
        cfg[k] = type(cfg[k])(v) if not isinstance(cfg[k], bool) else v.lower() in ("1", "true")
    return cfg


def make_ppo(env, cfg: dict[str, Any], total_steps: int):
    """Build (init, iteration, evaluate) for the minimal PPO on a discrete VecEnv."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class MLP(nn.Module):
        out: int
        hidden: int

        @nn.compact
        def __call__(self, x):
            for _ in range(2):
                x = nn.relu(nn.Dense(self.hidden)(x))
            return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(0.01))(x)

    pi_net, v_net = MLP(env.num_actions, cfg["hidden"]), MLP(1, cfg["hidden"])
    n_envs, n_steps = cfg["num_envs"], cfg["num_steps"]
    batch = n_envs * n_steps
    n_updates = max(1, total_steps // batch)
    mb_count = n_updates * cfg["num_epochs"] * cfg["num_minibatches"]
    lr = optax.linear_schedule(cfg["lr"], 0.0, mb_count) if cfg["anneal_lr"] else cfg["lr"]
    opt = optax.chain(optax.clip_by_global_norm(cfg["max_grad_norm"]), optax.adam(lr, eps=1e-5))

    class Carry(NamedTuple):
        params: Any
        opt_state: Any
        env_state: Any
        obs: Any
        key: Any

    def init(seed: int) -> Carry:
        key = jax.random.PRNGKey(seed)
        k_pi, k_v, k_env, k_run = jax.random.split(key, 4)
        dummy = jnp.zeros((1, env.obs_dim))
        params = {"pi": pi_net.init(k_pi, dummy), "v": v_net.init(k_v, dummy)}
        env_state, obs = env.reset(k_env)
        return Carry(params, opt.init(params), env_state, obs, k_run)

    def values(params, x):
        return v_net.apply(params["v"], x)[..., 0]

    def iteration(c: Carry):
        def step(s, _):
            params, env_state, obs, key = s
            key, k = jax.random.split(key)
            logits = pi_net.apply(params["pi"], obs)
            a = jax.random.categorical(k, logits).astype(jnp.int32)
            lp = jax.nn.log_softmax(logits)[jnp.arange(n_envs), a]
            env_state, out = env.step(env_state, a)
            tr = (obs, a, lp, values(params, obs), out.reward, out.terminated, out.truncated,
                  values(params, out.final_obs))
            ep = (out.terminated | out.truncated, out.info["episode_return"])
            return (params, env_state, out.obs, key), (tr, ep)

        (params, env_state, obs, key), (tr, ep) = jax.lax.scan(
            step, (c.params, c.env_state, c.obs, c.key), None, n_steps)
        obs_b, act_b, lp_b, v_b, r_b, term_b, trunc_b, vnext_b = tr
        # GAE with the true next value at truncations (no bootstrap after termination)
        nt = 1.0 - term_b.astype(jnp.float32)
        done = (term_b | trunc_b).astype(jnp.float32)

        def gae(carry, xs):
            adv_next, v_next_chain = carry
            r, v, vn, n_t, d = xs
            delta = r + cfg["gamma"] * n_t * vn - v
            adv = delta + cfg["gamma"] * cfg["gae_lambda"] * (1.0 - d) * adv_next
            return (adv, v), adv

        _, adv = jax.lax.scan(gae, (jnp.zeros(n_envs), v_b[-1]),
                              (r_b, v_b, vnext_b, nt, done), reverse=True)
        ret = adv + v_b
        data = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]),
                            (obs_b, act_b, lp_b, adv, ret))

        def loss_fn(p, mb):
            o, a, lp_old, adv, ret = mb
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            logits = pi_net.apply(p["pi"], o)
            logp_all = jax.nn.log_softmax(logits)
            lp = jnp.take_along_axis(logp_all, a[:, None], 1)[:, 0]
            ratio = jnp.exp(lp - lp_old)
            pg = -jnp.minimum(ratio * adv,
                              jnp.clip(ratio, 1 - cfg["clip"], 1 + cfg["clip"]) * adv).mean()
            vl = 0.5 * jnp.square(values(p, o) - ret).mean()
            ent = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
            return pg + cfg["vf_coef"] * vl - cfg["ent_coef"] * ent, (pg, vl, ent)

        def epoch(s, k):
            params, opt_state = s
            perm = jax.random.permutation(k, batch)
            mbs = jax.tree.map(lambda x: x[perm].reshape((cfg["num_minibatches"], -1)
                                                         + x.shape[1:]), data)

            def mb_step(s, mb):
                params, opt_state = s
                (l, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params, mb)
                upd, opt_state = opt.update(g, opt_state, params)
                return (optax.apply_updates(params, upd), opt_state), aux

            return jax.lax.scan(mb_step, (params, opt_state), mbs)

        key, k_up = jax.random.split(key)
        (params, opt_state), aux = jax.lax.scan(
            epoch, (params, c.opt_state), jax.random.split(k_up, cfg["num_epochs"]))
        d, er = ep
        n = jnp.maximum(d.sum(), 1)
        info = {"rollout/episode_return": (d * er).sum() / n, "train/entropy": aux[2].mean()}
        return Carry(params, opt_state, env_state, obs, key), info

    def evaluate_fn(eval_env):
        def evaluate(params, key):
            env_state, obs = eval_env.reset(key)

            def step(s, _):
                env_state, obs, ret, alive = s
                a = jnp.argmax(pi_net.apply(params["pi"], obs), -1).astype(jnp.int32)
                env_state, out = eval_env.step(env_state, a)
                ret = ret + alive * out.reward
                alive = alive * (1.0 - (out.terminated | out.truncated).astype(jnp.float32))
                return (env_state, out.obs, ret, alive), None

            z = jnp.zeros((eval_env.num_envs,))
            (_, _, ret, _), _ = jax.lax.scan(step, (env_state, obs, z, jnp.ones_like(z)), None,
                                             eval_env.max_episode_steps)
            return ret

        return jax.jit(evaluate)

    return init, jax.jit(iteration, donate_argnums=0), evaluate_fn, batch


def run_ppo(a, seed: int, log: Callable[[dict], None]) -> list[tuple[int, float, float]]:
    import jax
    import numpy as np

    from reppo_common.seeding import EVAL_SEED_OFFSET
    from reppo_jax.envs import make_env

    cfg = _ppo_config(a.ppo_set)
    env = make_env(a.env, cfg["num_envs"], random_episode_offsets=True)
    eval_env = make_env(a.env, a.eval_episodes, random_episode_offsets=False)
    init, iteration, evaluate_fn, batch = make_ppo(env, cfg, int(a.steps))
    evaluate = evaluate_fn(eval_env)
    carry = init(seed)
    eval_key = jax.random.PRNGKey(seed + EVAL_SEED_OFFSET)  # the key stream REPPO evaluates with
    curve, t0, next_eval = [], time.monotonic(), a.eval_interval
    for it in range(1, max(1, int(a.steps) // batch) + 1):
        carry, info = iteration(carry)
        steps = it * batch
        if steps >= next_eval or steps + batch > a.steps:
            next_eval += a.eval_interval
            eval_key, k = jax.random.split(eval_key)
            ret = float(np.mean(np.asarray(evaluate(carry.params, k))))
            rec = {"env_steps": steps, "wall_s": time.monotonic() - t0, "eval/return_mean": ret,
                   **{k: float(v) for k, v in info.items()}}
            log(rec)
            curve.append((steps, rec["wall_s"], ret))
    return curve


# ---------------------------------------------------------------------------------------------
# REPPO
# ---------------------------------------------------------------------------------------------


def run_reppo(a, seed: int, log: Callable[[dict], None]) -> list[tuple[int, float, float]]:
    from reppo_jax.train import train
    from spec.backend import TrainHooks
    from spec.presets import preset_config

    over = [f"env.name={a.env}", f"run.seed={seed}", f"rollout.total_env_steps={int(a.steps)}",
            f"run.eval_interval={a.eval_interval}", f"run.eval_episodes={a.eval_episodes}",
            *a.reppo_set]
    cfg = preset_config(a.preset, over)
    curve, t0 = [], time.monotonic()

    def on_eval(m):
        rec = {"env_steps": int(m["env_steps"]), "wall_s": time.monotonic() - t0,
               "eval/return_mean": float(m["eval/return_mean"])}
        log(rec)
        curve.append((rec["env_steps"], rec["wall_s"], rec["eval/return_mean"]))

    train(cfg, None, TrainHooks(on_eval_metrics=on_eval))
    return curve


# ---------------------------------------------------------------------------------------------


def first_reach(curve, level: float):
    """(env steps, wall s) of the first evaluation with return >= level, or None."""
    for steps, wall, ret in curve:
        if ret >= level:
            return steps, wall
    return None


def main(argv=None) -> int:
    a = parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    algos = {"reppo": run_reppo, "ppo": run_ppo}
    if a.only:
        algos = {a.only: algos[a.only]}
    results: dict[str, dict[int, Any]] = {name: {} for name in algos}
    for seed in a.seeds:
        for name, fn in algos.items():
            path = out / f"{name}_seed{seed}.jsonl"
            with path.open("w") as f:
                def log(rec, f=f, name=name):
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    print(f"{name} seed {seed}: {rec['env_steps']:>9,} steps "
                          f"{rec['wall_s']:7.0f}s return {rec['eval/return_mean']:.2f}",
                          flush=True)

                curve = fn(a, seed, log)
            results[name][seed] = {"curve": curve, "reach": first_reach(curve, a.threshold),
                                   "final": curve[-1][2] if curve else None}
    ratios = []
    print(f"\n{a.env}: env steps to reach eval return {a.threshold} "
          f"(budget {int(a.steps):,} steps)")
    for seed in a.seeds:
        row = [f"seed {seed}"]
        for name in algos:
            r = results[name][seed]["reach"]
            row.append(f"{name} {r[0]:,} steps / {r[1]:.0f}s" if r else f"{name} never")
        if len(algos) == 2 and all(results[n][seed]["reach"] for n in algos):
            ratio = results["reppo"][seed]["reach"][0] / results["ppo"][seed]["reach"][0]
            ratios.append(ratio)
            row.append(f"ratio reppo/ppo {ratio:.2f}")
        print("  " + " | ".join(row))
    if ratios:
        print(f"  median ratio (REPPO steps / PPO steps): {statistics.median(ratios):.2f}")
    (out / "summary.json").write_text(json.dumps(
        {"env": a.env, "steps": int(a.steps), "threshold": a.threshold, "seeds": a.seeds,
         "results": results, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
