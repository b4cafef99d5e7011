#!/usr/bin/env bash
# Table 1 at small scale (configs/ptb_char_small.py) for the five variants, plus normprop with the
# critical gamma initialization, then the assembled table and learning curves.
#   bash scripts/table1_small.sh [RUNS_DIR] [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh runs/table1_small "$@"  # RUNS, DATA, PY
for v in lstm weightnorm layernorm batchnorm normprop; do
  $PY train.py --config=configs/ptb_char_small.py --config.model.variant=$v \
    --workdir="$RUNS/$v" --data_dir="$DATA"
done
$PY train.py --config=configs/ptb_char_small.py --config.model.variant=normprop \
  --config.model.gamma_init=critical --workdir="$RUNS/normprop_critical" --data_dir="$DATA"
runs=$(ls -d "$RUNS"/*/ | tr '\n' ',' | sed 's/,$//')
$PY eval.py --table=1 --runs="$runs" --out="$RUNS/table1.md"
$PY eval.py --figure=2 --runs="$runs" --out="$RUNS/figure2.png"
