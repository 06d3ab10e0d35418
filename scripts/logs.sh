#!/usr/bin/env bash
# `make logs`: the last LOG_LINES (50) lines of every log of the current or latest run
# (.run/runs/latest, which `make up` points at its run directory when it starts; RUN_STATE moves
# .run).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/run-lib.sh
dir=$RUNS_ROOT/latest
if [ ! -d "$dir" ]; then
  echo "no run yet ($dir does not exist): make up starts one"
  exit 0
fi
name=$RUNS_ROOT/$(readlink "$dir")
state="finished"
[ -f "$RUN_STATE/loadgen.pid" ] && kill -0 "$(cat "$RUN_STATE/loadgen.pid")" 2>/dev/null && state="running"
echo "run $name ($state)"
shopt -s nullglob
logs=("$dir"/*.log)
if [ ${#logs[@]} -eq 0 ]; then
  echo "no logs in $name: $(cd "$dir" && ls | tr '\n' ' ')"
  exit 0
fi
tail -n "${LOG_LINES:-50}" "${logs[@]}"
