#!/usr/bin/env bash
# Table 3 at small scale (configs/draw_mnist_small.py): the four DRAW variants of the paper, then
# the assembled table (test bound in nats) and learning curves.
#   bash scripts/table3_small.sh [RUNS_DIR] [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh runs/table3_small "$@"  # RUNS, DATA, PY
for v in lstm layernorm weightnorm normprop; do
  $PY train.py --config=configs/draw_mnist_small.py --config.model.variant=$v \
    --workdir="$RUNS/$v" --data_dir="$DATA"
  $PY eval.py --workdir="$RUNS/$v" --split=test
done
runs=$(ls -d "$RUNS"/*/ | tr '\n' ',' | sed 's/,$//')
$PY eval.py --table=3 --runs="$runs" --out="$RUNS/table3.md"
$PY eval.py --figure=3 --runs="$runs" --out="$RUNS/figure3.png"
