#!/usr/bin/env bash
# The learning-rate study (issue 19, part 1): every row of ROWS below at each Adam learning rate
# of LRS, seed 0, trained with configs/ptb_char_study.py (H = 128, 7,800 updates, inverse-time
# decay 1e-3 per update, clipping at 1). Resumable: run it again and each run continues from its
# newest checkpoint; a finished run returns at once. config.json and metrics.jsonl of each run
# are copied to results/lr_sweep/<row>/lr<lr>/seed<k>/ as soon as it ends (checkpoints stay in
# runs/). A point that results/table1/<row>/seed<k> already holds (the rows of Table 1 at 2e-3:
# the same config and seed) is not trained again; the sweep's table reads both.
#   bash scripts/study_lr.sh [RUNS_DIR] [DATA_DIR]
# CORES="0 1" (the default) runs one training per listed core at a time (the next as soon as a core
# is free), niced (NICE=10). LRS="1e-3 2e-3 4e-3" and SEEDS="0" by default; ORDER="lstm layernorm
# ..." runs those rows only. HIDDEN=N sets the width (and writes results/lr_sweep_h<N>/).
# TEST_STREAM=1 also evaluates each run on the whole test split as one stream (Table 2's protocol,
# the unregularized rows beside scripts/study_table2.sh's) and copies eval_test_stream.json with it.
# OUT=DIR copies there instead; EXTRA="--config.x=y ..." passes further config overrides to every
# training (the tests run it tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh runs/study_lr "$@"  # RUNS, DATA, PY
LRS=${LRS:-1e-3 2e-3 4e-3}
SEEDS=${SEEDS:-0}
HIDDEN=${HIDDEN:-}
TEST_STREAM=${TEST_STREAM:-}
OUT=${OUT:-results/lr_sweep${HIDDEN:+_h$HIDDEN}}
RUNS=$RUNS${HIDDEN:+_h$HIDDEN}
CONFIG=configs/ptb_char_study.py

source scripts/ptb_rows.sh  # ROWS: row name -> config overrides
source scripts/cores.sh  # on_a_core: one job per core of CORES
source scripts/test_stream.sh  # test_stream: test bpc on the whole test split, once
ORDER=${ORDER:-"normprop_critical_simulated lstm layernorm batchnorm normprop_critical
  normprop_released"}

one() {  # row lr seed core
  local row=$1 lr=$2 seed=$3 core=$4 dir="$RUNS/$1/lr$2/seed$3"
  mkdir -p "$RUNS/$row"
  # shellcheck disable=SC2086
  pinned "$core" $PY train.py --config=$CONFIG ${ROWS[$row]} \
    --config.opt.learning_rate="$lr" ${HIDDEN:+--config.model.hidden_size=$HIDDEN} \
    --config.seed="$seed" ${EXTRA:-} --workdir="$dir" --data_dir="$DATA" \
    >> "$RUNS/$row/lr$lr.seed$seed.log" 2>&1
  $PY scripts/keep.py "$OUT/$row/lr$lr/seed$seed" "$dir/config.json" "$dir/metrics.jsonl"
  if [[ -n $TEST_STREAM ]]; then
    test_stream "$dir" "$core" "$RUNS/$row/lr$lr.seed$seed.log"
    $PY scripts/keep.py "$OUT/$row/lr$lr/seed$seed" "$dir/eval_test_stream.json"
  fi
}

mkdir -p "$RUNS"
for seed in $SEEDS; do
  for lr in $LRS; do
    for row in $ORDER; do
      if [[ $lr == 2e-3 && -z $HIDDEN && -f results/table1/$row/seed$seed/metrics.jsonl ]]; then
        continue
      fi
      on_a_core one "$row" "$lr" "$seed"
    done
  done
done
wait
