# Test bpc on the whole test split as one stream (Table 2's protocol), sourced by the study scripts:
# test_stream DIR CORE LOG evaluates the run in DIR with eval.py, pinned to CORE and niced
# (cores.sh's `pinned`), unless its evaluation is newer than its newest checkpoint; the data
# directory is the run's own (config.json). The evaluation is DIR/eval_test_stream.json.
test_stream() {
  local dir=$1 core=$2 log=$3
  if [[ ! $dir/eval_test_stream.json -nt $dir/checkpoints ]]; then
    # shellcheck disable=SC2086
    pinned "$core" $PY eval.py --workdir="$dir" --split=test --protocol=stream \
      >> "$log" 2>&1
  fi
}
