# Sourced by the run and benchmark scripts: where a run keeps its files, and whether colour is on.
#
#   new_run_dir NAME     makes .run/runs/<YYYYmmdd-HHMMSS>-NAME/ (a suffix -2, -3, ... when that
#                        second is taken), points .run/runs/latest at it, prints its path
#   results_dir NAME     where a benchmark writes: RESULTS_DIR when set, benchmarks/results/ (the
#                        committed results) with UPDATE_RESULTS=1, else a new run directory
#   colour_on [FD]       true when FD (default 1) is a terminal and NO_COLOR is empty
# Paths are relative to the repository root (the scripts cd there first). RUN_STATE (.run) holds
# the runs and the pid files of `make up`; the script tests point it at a temporary directory.

RUN_STATE=${RUN_STATE:-.run}
RUNS_ROOT=$RUN_STATE/runs

new_run_dir() {
  local name=$1 stamp dir n=1
  stamp=$(date +%Y%m%d-%H%M%S)
  mkdir -p "$RUNS_ROOT"
  dir="$stamp-$name"
  while ! mkdir "$RUNS_ROOT/$dir" 2>/dev/null; do
    n=$((n + 1)); dir="$stamp-$name-$n"
  done
  ln -sfn "$dir" "$RUNS_ROOT/latest"
  printf '%s\n' "$RUNS_ROOT/$dir"
}

results_dir() {
  if [ -n "${RESULTS_DIR:-}" ]; then
    mkdir -p "$RESULTS_DIR" && printf '%s\n' "$RESULTS_DIR"
  elif [ "${UPDATE_RESULTS:-0}" = 1 ]; then
    mkdir -p benchmarks/results && echo benchmarks/results
  else
    new_run_dir "$1"
  fi
}

# One line telling where the results went and how to update the committed ones.
results_note() {
  if [ "$1" = benchmarks/results ]; then
    echo "results written to the committed benchmarks/results/ (UPDATE_RESULTS=1)"
  else
    echo "results in $1 (scratch; UPDATE_RESULTS=1 writes the committed benchmarks/results/)"
  fi
}

colour_on() {
  [ -t "${1:-1}" ] && [ -z "${NO_COLOR:-}" ]
}
