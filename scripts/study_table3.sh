#!/usr/bin/env bash
# The Table 3 study (issue 12): DRAW rows with configs/draw_mnist_study.py, each row one process
# training 3 seeds (train.num_seeds). Resumable: run it again and each run continues from its
# newest checkpoint (a finished run returns at once). Each finished run is evaluated on the test
# split (every replica), and config.json, metrics.jsonl and the evaluation file are copied to
# results/table3/<row>/ (checkpoints stay in runs/). Then the table and the learning curves.
#   bash scripts/study_table3.sh [RUNS_DIR] [DATA_DIR]
# CORES="0 1" (the default) runs one row per listed core at a time (the next as soon as a core is
# free), niced (NICE=10). STEPS=N trains for N updates instead of the config's 7,800 (a finished
# shorter run resumes and goes on: the inverse-time schedule does not depend on the length) and
# writes results/table3_<N>/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh runs/study_table3 "$@"  # RUNS, DATA, PY
STEPS=${STEPS:-}
OUT=results/table3${STEPS:+_$STEPS}
CONFIG=configs/draw_mnist_study.py
source scripts/cores.sh  # on_a_core: one job per core of CORES

declare -A ROWS=(
  [lstm]="--config.model.variant=lstm"
  [layernorm]="--config.model.variant=layernorm"
  [weightnorm]="--config.model.variant=weightnorm"
  [normprop_released]="--config.model.variant=normprop --config.model.compensation=released"
  [normprop_paper]="--config.model.variant=normprop --config.model.compensation=paper"
)
ORDER="normprop_released lstm normprop_paper layernorm weightnorm"

one() {  # row core
  local row=$1 core=$2 dir="$RUNS/$1"
  # shellcheck disable=SC2086
  pinned "$core" $PY train.py --config=$CONFIG ${ROWS[$row]} \
    ${STEPS:+--config.train.num_steps=$STEPS} \
    --workdir="$dir" --data_dir="$DATA" >> "$RUNS/$row.log" 2>&1
  pinned "$core" $PY eval.py --workdir="$dir" --split=test >> "$RUNS/$row.log" 2>&1
  $PY scripts/keep.py "$OUT/$row" "$dir/config.json" "$dir/metrics.jsonl" "$dir"/eval_*.json
}

mkdir -p "$RUNS"
for row in $ORDER; do
  on_a_core one "$row"
done
wait
$PY eval.py --table=3 --runs_glob="$OUT/*" --no_eval --out="$OUT/table3.md"
$PY eval.py --figure=3 --runs_glob="$OUT/*" --out="$OUT/figure3.png"
