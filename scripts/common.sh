# What every study script sets first (sourced right after `cd` to the repository root):
#   source scripts/common.sh DEFAULT_RUNS_DIR "$@"
# RUNS: the script's first argument, else DEFAULT_RUNS_DIR; DATA: its second, else
# NPRNN_DATA_DIR, else ../shared/data (the offline copies of this project's machines); PY: the
# Python to run (default .venv/bin/python, what `make install` makes).
# The scripts copy what a run leaves worth keeping with scripts/keep.py, which leaves a copy in
# results/ that holds the same values as it is (a run trained again logs other timings only).
# shellcheck disable=SC2034  # read by the scripts that source this file
RUNS=${2:-$1}
DATA=${3:-${NPRNN_DATA_DIR:-../shared/data}}
PY=${PY:-.venv/bin/python}
