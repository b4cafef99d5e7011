#!/usr/bin/env bash
# The Table 1 study (issue 12): every row of ROWS below with seeds 0..SEEDS-1, trained with
# configs/ptb_char_study.py. Resumable: run it again and each run continues from its newest
# checkpoint; a finished run returns at once. What a run leaves that is worth keeping (config.json,
# metrics.jsonl) is copied to results/table1/<row>/seed<k>/ as soon as it ends (checkpoints stay
# in runs/). Then the table (mean ± std over seeds) and the learning curves are made from results/.
#   bash scripts/study_table1.sh [RUNS_DIR] [DATA_DIR]
# CORES="0 1" (the default) runs one training per listed core at a time (the next as soon as a core
# is free), niced (NICE=10); SEEDS=3 by default. STEPS=N trains for N updates instead of the
# config's 7,800 (a finished shorter run resumes and goes on) and writes results/table1_<N>/;
# ORDER="lstm layernorm ..." runs those rows only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh runs/study_table1 "$@"  # RUNS, DATA, PY
SEEDS=${SEEDS:-3}
STEPS=${STEPS:-}
OUT=results/table1${STEPS:+_$STEPS}
CONFIG=configs/ptb_char_study.py

source scripts/ptb_rows.sh  # ROWS: row name -> config overrides
source scripts/cores.sh  # on_a_core: one job per core of CORES
ORDER=${ORDER:-"lstm normprop_paper normprop_released layernorm batchnorm weightnorm
  normprop_critical normprop_paper_expdecay"}

one() {  # row seed core
  local row=$1 seed=$2 core=$3 dir="$RUNS/$1/seed$2"
  # A finished run resumes at its last step and returns at once.
  # shellcheck disable=SC2086
  pinned "$core" $PY train.py --config=$CONFIG ${ROWS[$row]} \
    ${STEPS:+--config.train.num_steps=$STEPS} \
    --config.seed="$seed" --workdir="$dir" --data_dir="$DATA" >> "$RUNS/$row.seed$seed.log" 2>&1
  $PY scripts/keep.py "$OUT/$row/seed$seed" "$dir/config.json" "$dir/metrics.jsonl"
}

mkdir -p "$RUNS"
for seed in $(seq 0 $((SEEDS - 1))); do
  for row in $ORDER; do
    on_a_core one "$row" "$seed"
  done
done
wait
# s/epoch: the quiet single-process timings of benchmarks/step_time.py, not the study's own.
$PY eval.py --table=1 --runs_glob="$OUT/*/seed*" --no_eval --out="$OUT/table1.md" \
  --step_times=results/table1/step_times.json
$PY eval.py --figure=2 --runs_glob="$OUT/*/seed*" --out="$OUT/figure2.png"
