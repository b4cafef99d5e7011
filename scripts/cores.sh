# One study job per core (sourced by the study scripts): on_a_core FUNC ARGS... runs
# `FUNC ARGS... CORE` in the background as soon as one of the cores of CORES (default "0 1") is
# free, so that a long job does not hold back the next ones; end the script with `wait`. A job
# runs its commands through `pinned CORE CMD...`: on that core, at niceness NICE (default 10, so
# that a study yields to interactive work; the tests run the scripts at 0).
CORES=(${CORES:-0 1})
NICE=${NICE:-10}
declare -A _CORE_OF=()  # pid of a running job -> its core

on_a_core() {
  local pid core
  while (( ${#_CORE_OF[@]} >= ${#CORES[@]} )); do
    wait -n || true  # a job ended (its own failure is in its log)
    for pid in "${!_CORE_OF[@]}"; do
      kill -0 "$pid" 2>/dev/null || unset "_CORE_OF[$pid]"
    done
  done
  for core in "${CORES[@]}"; do
    [[ " ${_CORE_OF[*]} " == *" $core "* ]] || break
  done
  "$@" "$core" &
  _CORE_OF[$!]=$core
}

pinned() {  # core cmd...
  local core=$1
  shift
  taskset -c "$core" nice -n "$NICE" "$@"
}
