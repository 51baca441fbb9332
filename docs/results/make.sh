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
