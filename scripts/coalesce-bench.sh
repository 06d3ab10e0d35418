#!/usr/bin/env bash
# `make benchmark-coalesce`: what the worker's read coalescing (COALESCE_US) trades. rr at 10,000
# req/s (one worker, both mosquitto configurations, REPEAT runs each, default 3) for each worker
# variant below, then latency at 1,000 req/s with and without it (the window is not taken
# there). Each variant is a benchmarks/bench.py run with WORKER_EXTRA; a summary table
# (coalesce.md) is written beside their benchmark.json files, in a new
# .run/runs/<time>-coalesce/ directory (UPDATE_RESULTS=1: the committed
# benchmarks/results/coalesce/; RESULTS_DIR overrides both).
# Variables: REPEAT=n, BIN=dir of binaries, VARIANTS="name:K=V,K=V name2:..." (default below).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/run-lib.sh
BIN=${BIN:-target/release}
export BIN
[ -x "$BIN/loadgen" ] && [ -x "$BIN/worker" ] || {
  echo "benchmark-coalesce: $BIN/loadgen and $BIN/worker missing: run 'make release' first" >&2; exit 1; }
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  bash scripts/install-deps.sh run || true
fi
export ECHO_PAIR=${ECHO_PAIR:-$BIN/examples/echo_pair}
target_dir=$(cd "$BIN/.." && pwd)
CARGO_TARGET_DIR=$target_dir cargo build --quiet --release -p loadgen --example echo_pair
if [ "${UPDATE_RESULTS:-0}" = 1 ] && [ -z "${RESULTS_DIR:-}" ]; then
  OUT=benchmarks/results/coalesce; mkdir -p "$OUT"
else
  OUT=$(results_dir coalesce)
fi
VARIANTS=${VARIANTS:-"default: coalesce300:COALESCE_US=300 coalesce300-2conn:COALESCE_US=300,CONNECTIONS=2 coalesce500-2conn:COALESCE_US=500,CONNECTIONS=2"}
export REPEAT=${REPEAT:-3}
for v in $VARIANTS; do
  name=${v%%:*}; extra=${v#*:}
  echo "== rr, worker ${extra:-defaults} ($name)"
  SCENARIOS=rr WORKER_EXTRA="$extra" RESULTS_DIR="$OUT/$name" python3 benchmarks/bench.py
done
for v in "latency-default:" "latency-coalesce300:COALESCE_US=300"; do
  name=${v%%:*}; extra=${v#*:}
  echo "== latency at 1,000 req/s, worker ${extra:-defaults} ($name)"
  SCENARIOS=latency WORKER_EXTRA="$extra" RESULTS_DIR="$OUT/$name" python3 benchmarks/bench.py
done
python3 benchmarks/coalesce_table.py "$OUT" "$VARIANTS" > "$OUT/coalesce.md"
cat "$OUT/coalesce.md"
echo "results in $OUT"
