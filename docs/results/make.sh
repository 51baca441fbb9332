#!/usr/bin/env bash
# Regenerate the README's results figure and tables from the runs stored under docs/results/.
# Usage (from a checkout with the dev and jax extras installed): bash docs/results/make.sh
# Writes docs/cartpole_balance_cpu.png, docs/results/cartpole_balance_cpu/summary.md and
# docs/results/cartpole_balance_cpu/aggregate.csv; prints the tables.
set -euo pipefail
cd "$(dirname "$(dirname "$(dirname "$(readlink -f "$0")")")")"  # the checkout's root
PY="${PYTHON:-python}"
D=docs/results/cartpole_balance_cpu
reppo() { "$PY" -m reppo_common.cli "$@"; }  # the installed `reppo` command, from this checkout

reppo plot "$D" --tau 900 --title "REPPO (JAX, preset cpu) on dmc/CartpoleBalance" \
    --out docs/cartpole_balance_cpu.png
reppo aggregate "$D" --csv "$D/aggregate.csv" > "$D/aggregate.txt"

# Per-seed table: first evaluation with return >= 800, best and final evaluation.
"$PY" - "$D" > "$D/summary.md" <<'PYEOF'
import sys
import numpy as np
from reppo_common.curves import load_runs

runs = sorted(load_runs([sys.argv[1]]), key=lambda r: r.seed)
print("| seed | first eval ≥ 800: env steps | wall-clock to it | best eval | final eval (env steps) |")
print("| --- | --- | --- | --- | --- |")
for r in runs:
    hit = np.flatnonzero(r.values >= 800)
    first = (f"{int(r.steps[hit[0]]):,} ({r.values[hit[0]]:.1f})", f"{r.wall_s[hit[0]] / 60:.1f} min") \
        if hit.size else ("not reached", "–")
    print(f"| {r.seed} | {first[0]} | {first[1]} | {np.nanmax(r.values):.1f} | "
          f"{r.final:.1f} ({int(r.steps[-1]):,}) |")
PYEOF
cat "$D/summary.md" "$D/aggregate.txt"

# D-REPPO on minatar/Breakout, seed 0, with and without the floor on β (docs/dreppo.md):
# per-iteration β / KL statistics (stats.md) and the figure docs/dreppo_breakout_kl.png.
"$PY" - docs/results/dreppo_breakout_kl > docs/results/dreppo_breakout_kl/stats.md <<'PYEOF'
import csv, sys
from pathlib import Path
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

d = Path(sys.argv[1])
train = list(csv.DictReader(open(d / "train.csv")))
evals = list(csv.DictReader(open(d / "eval.csv")))
runs = ["no_floor", "beta_min_0.1"]
print("| run | iterations | median KL | 99th pct KL | max KL | iterations with KL > 0.2 | min β | evals | evals below half the running best |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
fig, ax = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
for run in runs:
    t = [r for r in train if r["run"] == run]
    x = np.array([float(r["env_steps"]) for r in t]) / 1e6
    kl = np.array([float(r["kl"]) for r in t])
    beta = np.array([float(r["beta"]) for r in t])
    e = [r for r in evals if r["run"] == run]
    ex = np.array([float(r["env_steps"]) for r in e]) / 1e6
    ey = np.array([float(r["return_mean"]) for r in e])
    best = np.maximum.accumulate(ey)
    drops = int(np.sum(ey < 0.5 * best))
    print(f"| {run} | {len(t)} | {np.median(kl):.3f} | {np.percentile(kl, 99):.3f} | {kl.max():.3f} | "
          f"{int(np.sum(kl > 0.2))} | {beta.min():.2g} | {len(e)} | {drops} |")
    ax[0].semilogy(x, beta, lw=0.8, label=run)
    ax[1].semilogy(x, kl, lw=0.6, label=run)
    ax[2].plot(ex, ey, marker="o", ms=3, label=run)
ax[1].axhline(0.1, color="k", ls="--", lw=0.8, label="KL target")
ax[0].set_ylabel("β")
ax[1].set_ylabel("mean KL of the iteration")
ax[2].set_ylabel("eval return (greedy)")
ax[2].set_xlabel("env steps (M)")
for a in ax:
    a.legend(fontsize=8)
fig.suptitle("D-REPPO, minatar/Breakout seed 0 (16 minibatches): β floor off vs loss.beta_min=0.1")
fig.tight_layout()
fig.savefig("docs/dreppo_breakout_kl.png", dpi=90)
PYEOF
cat docs/results/dreppo_breakout_kl/stats.md

# dmc/CartpoleBalance seeds 1 and 3 evaluated every 16,384 env steps (docs/stability.md):
# the dips and the β / KL around seed 1's dip.
"$PY" - docs/results/cartpole_fine_eval > docs/results/cartpole_fine_eval/stats.md <<'PYEOF'
import csv, sys
from pathlib import Path
import numpy as np

d = Path(sys.argv[1])
ev = list(csv.DictReader(open(d / "eval.csv")))
print("| seed | evals | first eval ≥ 900 | evals < 900 after it | lowest of those (env steps) | all evals ≥ 900 in the last third |")
print("| --- | --- | --- | --- | --- | --- |")
for seed in sorted({r["seed"] for r in ev}):
    e = [r for r in ev if r["seed"] == seed]
    x = np.array([int(r["env_steps"]) for r in e])
    y = np.array([float(r["return_mean"]) for r in e])
    first = int(np.argmax(y >= 900))
    after = y[first + 1:] < 900
    low = (f"{y[first + 1:][after].min():.1f} ({x[first + 1:][after][np.argmin(y[first + 1:][after])]:,})"
           if after.any() else "–")
    last = y[x >= x[-1] * 2 / 3]
    print(f"| {seed} | {len(e)} | {x[first]:,} | {int(after.sum())} | {low} | {bool((last >= 900).all())} |")
tr = [r for r in csv.DictReader(open(d / "train.csv"))]
print()
print("| seed 1, env steps | β | mean KL | violation fraction | entropy |")
print("| --- | --- | --- | --- | --- |")
for r in tr:
    if 917_000 <= int(r["env_steps"]) <= 936_000:
        print(f"| {int(r['env_steps']):,} | {float(r['beta']):.2g} | {float(r['kl']):.3f} | "
              f"{float(r['kl_violation_frac']):.3f} | {float(r['entropy']):.3f} |")
PYEOF
cat docs/results/cartpole_fine_eval/stats.md

# D-REPPO minatar/Breakout, preset cpu-discrete, seeds 0-2 of docs/benchmarks/minatar_5m:
# why seed 1 never learned (docs/dreppo.md).
"$PY" - docs/results/dreppo_breakout_seeds/train.csv > docs/results/dreppo_breakout_seeds/stats.md <<'PYEOF'
import csv, statistics, sys

rows = list(csv.DictReader(open(sys.argv[1])))
print("| seed | lowest entropy in iterations 1–100 (env steps) | median after 1M env steps: actor grad norm | α | entropy | training episode return |")
print("| --- | --- | --- | --- | --- | --- |")
for seed in ("0", "1", "2"):
    r = [x for x in rows if x["seed"] == seed]
    early = min(r[:100], key=lambda x: float(x["entropy"]))
    late = [x for x in r if int(x["env_steps"]) >= 1_000_000]
    med = lambda k: statistics.median(float(x[k]) for x in late)
    print(f"| {seed} | {float(early['entropy']):.3f} ({int(early['env_steps']):,}) | "
          f"{med('actor_grad_norm'):.4f} | {med('alpha'):.4f} | {med('entropy'):.3f} | "
          f"{med('rollout_episode_return'):.1f} |")
PYEOF
cat docs/results/dreppo_breakout_seeds/stats.md

# D-REPPO vs PQN on MinAtar (docs/benchmarks/minatar_5m, docs/dreppo.md): the benchmark table,
# then per game the level PQN reaches at 1M env steps (mean over seeds), when each run first
# reaches it, and how many later evaluations fall below half of that run's running best.
"$PY" -m benchmarks.suite report docs/benchmarks/minatar_5m > /dev/null
"$PY" -m benchmarks.suite versus docs/benchmarks/minatar_5m --baseline pqn --level-at 1e6 \
    --at 1e6 5e6 --out docs/benchmarks/minatar_5m/versus.md

# dmc/CartpoleBalance (preset cpu), seeds 0-2, without and with loss.beta_min=0.01 (= beta_init:
# β never below its start) — docs/stability.md.
"$PY" - docs/results/cartpole_balance_cpu docs/results/cartpole_balance_beta_min \
    > docs/results/cartpole_balance_beta_min/compare.md <<'PYEOF'
import sys
import numpy as np
from reppo_common.curves import load_runs

print("| runs | seed | first eval ≥ 900 | evals < 900 after it | lowest of those | all evals ≥ 900 in the last third | final |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for d, name in zip(sys.argv[1:], ("no floor", "beta_min 0.01")):
    for r in sorted(load_runs([d]), key=lambda r: r.seed):
        y, x = np.asarray(r.values), np.asarray(r.steps)
        if not (y >= 900).any():
            print(f"| {name} | {r.seed} | never | – | – | False | {y[-1]:.1f} |")
            continue
        i = int(np.argmax(y >= 900))
        after = y[i + 1:][y[i + 1:] < 900]
        last = y[x >= x[-1] * 2 / 3]
        print(f"| {name} | {r.seed} | {int(x[i]):,} | {after.size} | "
              f"{(f'{after.min():.1f}' if after.size else '–')} | {bool((last >= 900).all())} | "
              f"{y[-1]:.1f} |")
PYEOF
cat docs/results/cartpole_balance_beta_min/compare.md

# D-REPPO minatar/Breakout, preset cpu-discrete before its α floor (loss.alpha_min=0) with one
# override at a time, 1.5M env steps, evaluated every 50k (docs/dreppo.md, "Breakout seed 1";
# the loss.alpha_min=0.03 rows are the current preset): per run the first evaluation >= 20,
# the evaluation at 1.5M, and medians over the last 0.4M env steps of the training episode
# return, α and the actor's gradient norm. The unchanged preset's seeds 1 and 2 come from the
# 5M benchmark curves (evaluated every ~100k; training is the same, evaluation has its own key).
"$PY" - docs/results/dreppo_breakout_variants docs/benchmarks/minatar_5m \
    > docs/results/dreppo_breakout_variants/stats.md <<'PYEOF'
import csv, statistics, sys
from pathlib import Path

d, bench = Path(sys.argv[1]), Path(sys.argv[2])
override = {"base": "(none)", "mlr3e-3": "--loss.multiplier_lr=3e-3",
            "klt0.03": "--loss.kl_target=0.03", "ainit1": "--loss.alpha_init=1.0",
            "ent0.6": "--loss.entropy_target_mult=0.6", "ent0.7": "--loss.entropy_target_mult=0.7",
            "bins451": "--critic.num_bins=451", "vmax30": "--env.v_max=30",
            "amin0.01": "--loss.alpha_min=0.01", "amin0.03": "--loss.alpha_min=0.03"}
curves = {}
for r in csv.DictReader(open(d / "eval.csv")):
    curves.setdefault((r["run"], r["seed"]), []).append((int(r["env_steps"]), float(r["return_mean"])))
for seed in ("1", "2"):
    c = [(int(r["env_steps"]), float(r["return"])) for r in
         csv.DictReader(open(bench / "curves/reppo/minatar_Breakout" / f"seed{seed}.csv"))]
    curves[("base", seed)] = [(s, y) for s, y in c if s <= 1_500_000]
train = {}
for r in csv.DictReader(open(d / "train.csv")):
    train.setdefault((r["run"], r["seed"]), []).append(r)
for r in csv.DictReader(open(d.parent / "dreppo_breakout_seeds" / "train.csv")):
    if r["seed"] in ("1", "2"):  # the same subsampling: iterations 1-100, then every 8th
        train.setdefault(("base", r["seed"]), []).append(r)
print("| override | seed | lowest entropy, first 100 iterations | first eval ≥ 20 (env steps) | eval at 1.5M | last 0.4M: training return | α | actor grad norm |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for (run, seed), c in sorted(curves.items(), key=lambda kv: (list(override).index(kv[0][0]), kv[0][1])):
    first = next((f"{s:,}" for s, y in c if y >= 20), "never")
    t = train.get((run, seed))
    if t:  # train.csv: every iteration up to 100, then every 8th
        early = min(float(x["entropy"]) for x in t if int(x["iteration"]) <= 100)
        late = [x for x in t if 1_100_000 <= int(x["env_steps"]) <= 1_500_000]
        med = lambda k: statistics.median(float(x[k]) for x in late)
        extra = (f"{early:.3f} | {first} | {c[-1][1]:.1f} | {med('rollout_episode_return'):.1f} | "
                 f"{med('alpha'):.4f} | {med('actor_grad_norm'):.3f}")
    print(f"| {override[run]} | {seed} | {extra} |")
PYEOF
cat docs/results/dreppo_breakout_variants/stats.md

# Start-up and throughput on the 2-core CPU machine, quiet (docs/performance.md, "Measured on a
# quiet machine"): the README's first command with a cold then a warm compile cache (start.csv),
# bench_throughput's JAX and torch outputs (*.json) -> performance/summary.md.
"$PY" - docs/results/performance > docs/results/performance/summary.md <<'PYEOF'
import csv, json, statistics, sys
from pathlib import Path

d = Path(sys.argv[1])
rows = list(csv.DictReader(open(d / "start.csv")))
print("| start | `wall_s` of the first train record (s) | compile_s | iteration 2 (s) | median of iterations 3-20 (s) | process wall / CPU (s) |")
print("| --- | --- | --- | --- | --- | --- |")
for start in ("cold", "warm"):
    it = {int(r["iteration"]): r for r in rows if r["start"] == start}
    med = statistics.median(float(it[i]["iteration_s"]) for i in range(3, 21))
    proc = json.load(open(d / f"{start}_process.json"))
    print(f"| {start} cache | {float(it[1]['wall_s']):.1f} | {float(it[1]['compile_s']):.1f} | "
          f"{float(it[2]['iteration_s']):.3f} | {med:.3f} | {proc['process_wall_s']:.1f} / "
          f"{proc['process_user_s'] + proc['process_sys_s']:.1f} |")
print()
jax = json.load(open(d / "bench_jax.json"))
print(f"JAX iteration, cold compile: {jax['train_compile_s']:.1f} s wall "
      f"({jax['train_compile_cpu_s']:.1f} s process CPU); steady state "
      f"{jax['train_sps']:,.0f} env-steps/s")
print()
print("| torch side | threads | torch/JAX by wall (paired median) | by process CPU time | torch env-steps/s | JAX env-steps/s (paired) |")
print("| --- | --- | --- | --- | --- | --- |")
for name, label in (("bench_torch", "eager"), ("bench_torch_compile", "run.torch_compile"),
                    ("bench_torch_compile_2threads", "run.torch_compile")):
    r = json.load(open(d / f"{name}.json"))
    print(f"| {label} | {r['torch_threads']} | {r['torch_over_jax_train_sps']:.2f}x | "
          f"{r['torch_over_jax_cpu_time_ratio']:.2f}x | {r['torch_train_sps']:,.0f} | "
          f"{r['paired_jax_train_sps']:,.0f} |")
PYEOF
cat docs/results/performance/summary.md

# REPPO (preset cpu) on DMC tasks with sparse rewards vs dense ones, from the DMC benchmark's
# runs (docs/benchmarks/dmc_1m): alpha, entropy and the rollout reward per iteration
# (dmc_sparse_alpha/train.csv: every 4th iteration up to 100, then every 16th) -> stats.md.
"$PY" - docs/results/dmc_sparse_alpha docs/benchmarks/dmc_1m > docs/results/dmc_sparse_alpha/stats.md <<'PYEOF'
import csv, sys
from pathlib import Path

d, bench = Path(sys.argv[1]), Path(sys.argv[2])
runs = {}
for r in csv.DictReader(open(d / "train.csv")):
    runs.setdefault((r["task"], int(r["seed"])), []).append(r)
print("| task | seed | first iteration with mean rollout reward ≥ 0.01 (env steps) | α at ~250k | entropy at ~250k (target) | lowest α | final eval | best eval |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for (task, seed), rows in sorted(runs.items()):
    found = next((int(r["env_steps"]) for r in rows if int(r["iteration"]) > 10
                  and float(r["rollout_reward"]) >= 0.01), None)
    at = min(rows, key=lambda r: abs(int(r["env_steps"]) - 250_000))
    curve = bench / "curves" / "reppo" / task.replace("/", "_") / f"seed{seed}.csv"
    ret = [float(x["return"]) for x in csv.DictReader(open(curve))]
    target = {"dmc/BallInCup": -1.0, "dmc/FingerSpin": -1.0, "dmc/HopperStand": -2.0,
              "dmc/CartpoleBalance": -0.5, "dmc/WalkerStand": -3.0}[task]
    print(f"| {task} | {seed} | {f'{found:,}' if found else 'never'} | {float(at['alpha']):.2g} | "
          f"{float(at['entropy']):.2f} ({target}) | {min(float(r['alpha']) for r in rows):.1g} | "
          f"{ret[-1]:.1f} | {max(ret):.1f} |")
PYEOF
cat docs/results/dmc_sparse_alpha/stats.md

# D-REPPO on MinAtar with the shipped preset (constant α floor 0.03) against PQN
# (docs/benchmarks/minatar_5m_alpha_floor) and with the floor fading over the first 1M env steps
# (docs/benchmarks/minatar_5m_alpha_fade, the same PQN runs): table, figure, versus.md of each;
# then from the per-iteration traces (dreppo_alpha_fade/train.csv, every 16th iteration) per run:
# how often α sits on its floor after 1M env steps, the median entropy over the last 1M against
# the target (0.5 log|A|) and the greedy evaluation at 1M and 5M -> stats.md (docs/dreppo.md).
for b in minatar_5m_alpha_floor minatar_5m_alpha_fade; do
    "$PY" -m benchmarks.suite report docs/benchmarks/$b > /dev/null
    "$PY" -m benchmarks.suite versus docs/benchmarks/$b --baseline pqn --level-at 1e6 \
        --at 1e6 5e6 --out docs/benchmarks/$b/versus.md > /dev/null
done
"$PY" - docs/results/dreppo_alpha_fade docs/benchmarks > docs/results/dreppo_alpha_fade/stats.md <<'PYEOF'
import csv, math, statistics, sys
from pathlib import Path

d, bench = Path(sys.argv[1]), Path(sys.argv[2])
actions = {"Breakout": 3, "Asterix": 5, "Freeway": 3, "SpaceInvaders": 4}
runs = {}
for r in csv.DictReader(open(d / "train.csv")):
    runs.setdefault((r["game"], r["variant"], int(r["seed"])), []).append(r)
print("| game | variant | seed | α on the floor after 1M (share of iterations) | median entropy, last 1M (target) | eval @ 1M | eval @ 5M |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for game in actions:
    for variant in ("floor", "fade"):
        for seed in range(3):
            rows = runs.get((game, variant, seed))
            if not rows:
                continue
            late = [r for r in rows if int(r["env_steps"]) > 1_000_000]
            on = sum(float(r["alpha"]) <= 0.03 * 1.001 for r in late)  # the preset's floor
            last = [float(r["entropy"]) for r in rows if int(r["env_steps"]) > 4_000_000]
            sub = "alpha_floor" if variant == "floor" else "alpha_fade"
            curve = [(int(x["env_steps"]), float(x["return"])) for x in csv.DictReader(
                open(bench / f"minatar_5m_{sub}/curves/reppo/minatar_{game}/seed{seed}.csv"))]
            at = lambda s: [y for x, y in curve if x <= s][-1]
            share = f"{on / len(late):.2f}" if variant == "floor" else "– (no floor after 1M)"
            print(f"| {game} | {variant} | {seed} | {share} | {statistics.median(last):.2f} "
                  f"({0.5 * math.log(actions[game]):.2f}) | {at(1e6):.1f} | {at(5e6):.1f} |")
PYEOF
cat docs/results/dreppo_alpha_fade/stats.md
