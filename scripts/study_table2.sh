#!/usr/bin/env bash
# Table 2 at CPU size (issue 19, part 3): normprop (eq. 15, critical gamma_h), layer norm and the
# plain LSTM with the paper's regularization (configs/ptb_char_dropout_study.py: H = 256, 7,800
# updates), each at the learning rate the H = 128 sweep found best (RATES), seeds 0..SEEDS-1.
# Each run is then evaluated on the whole test split as one stream (the paper's protocol).
# Resumable: run it again and each run continues from its newest checkpoint; a finished run
# returns at once, and its evaluation is redone only if missing or older than the checkpoint.
# config.json, metrics.jsonl and the evaluation of each run are copied to
# results/table2/<row>/seed<k>/ as soon as it ends (checkpoints stay in runs/).
#   bash scripts/study_table2.sh [RUNS_DIR] [DATA_DIR]
# CORES="0 1" (the default) runs one training per listed core at a time (the next as soon as a core
# is free), niced (NICE=10); SEEDS=3; ORDER="lstm ..." runs those rows only; HIDDEN=N sets the width
# (default the config's 256); RATES="row=lr ..." overrides the rates; OUT=DIR copies there instead;
# EXTRA="--config.x=y ..." passes further config overrides to every training (the tests run it
# tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh runs/study_table2 "$@"  # RUNS, DATA, PY
SEEDS=${SEEDS:-3}
HIDDEN=${HIDDEN:-}
OUT=${OUT:-results/table2${HIDDEN:+_h$HIDDEN}}
RUNS=$RUNS${HIDDEN:+_h$HIDDEN}
CONFIG=configs/ptb_char_dropout_study.py

source scripts/ptb_rows.sh  # ROWS: row name -> config overrides
source scripts/cores.sh  # on_a_core: one job per core of CORES
source scripts/test_stream.sh  # test_stream: test bpc on the whole test split, once
ORDER=${ORDER:-"normprop_critical layernorm lstm"}
declare -A RATE=([lstm]=1.6e-2 [layernorm]=1.6e-2 [normprop_critical]=8e-3)
for pair in ${RATES:-}; do RATE[${pair%%=*}]=${pair#*=}; done

one() {  # row seed core
  local row=$1 seed=$2 core=$3 dir="$RUNS/$1/seed$2"
  mkdir -p "$RUNS/$row"
  # shellcheck disable=SC2086
  pinned "$core" $PY train.py --config=$CONFIG ${ROWS[$row]} \
    --config.opt.learning_rate="${RATE[$row]}" ${HIDDEN:+--config.model.hidden_size=$HIDDEN} \
    --config.seed="$seed" ${EXTRA:-} --workdir="$dir" --data_dir="$DATA" \
    >> "$RUNS/$row/seed$seed.log" 2>&1
  test_stream "$dir" "$core" "$RUNS/$row/seed$seed.log"
  $PY scripts/keep.py "$OUT/$row/seed$seed" "$dir/config.json" "$dir/metrics.jsonl" \
    "$dir/eval_test_stream.json"
}

mkdir -p "$RUNS"
for seed in $(seq 0 $((SEEDS - 1))); do
  for row in $ORDER; do
    on_a_core one "$row" "$seed"
  done
done
wait
$PY eval.py --table=2 --runs_glob="$OUT/*/seed*" --no_eval --out="$OUT/table2.md"
