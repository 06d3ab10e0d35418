#!/usr/bin/env bash
# `make benchmark` / `make benchmark-quick` (QUICK=1): the performance scenarios of issue 6 against
# mosquitto on free ports: publish-only CPU ratio at 20,000 msg/s, request/response CPU ratios at
# 10,000 req/s, the broker-bound ceiling (stepped rate), latency overhead at 1,000 req/s against a
# minimal rumqttc echo pair, request/response over NATS at 10,000 req/s (nats-server), the Kafka
# producer at 20,000 msg/s of 512 bytes (tansu; skipped with a note when tansu is not installed),
# and (full run) the 1M-client memory script. Results (JSON, a CSV row
# per step, SVG plot) go to a new .run/runs/<time>-benchmark[-quick]/ directory, or to the
# committed benchmarks/results/ with UPDATE_RESULTS=1 (RESULTS_DIR overrides both); see
# benchmarks/README.md and benchmarks/bench.py.
# Variables: QUICK=1, SCENARIOS=pub,rr,ceiling,latency,nats,kafka,memory, REPEAT=n, BIN=dir of binaries,
# UPDATE_RESULTS=1, RESULTS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/run-lib.sh
BIN=${BIN:-target/release}
export BIN
for tool in python3 git; do
  command -v "$tool" >/dev/null || { echo "benchmark: $tool is required" >&2; exit 1; }
done
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  bash scripts/install-deps.sh run || true
fi
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || {
  echo "benchmark: mosquitto is required (apt-get install mosquitto)" >&2; exit 1; }
if [[ ",${SCENARIOS:-nats}," == *",nats,"* ]]; then
  if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    TRANSPORT=nats bash scripts/install-deps.sh run || true
  fi
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || {
    echo "benchmark: nats-server is required for the NATS section (apt-get install nats-server; or SCENARIOS without nats)" >&2; exit 1; }
fi
[ -x "$BIN/loadgen" ] && [ -x "$BIN/worker" ] || {
  echo "benchmark: $BIN/loadgen and $BIN/worker missing: run 'make release' first" >&2; exit 1; }
# The reference echo pair of the latency scenario (a cargo example of loadgen).
export ECHO_PAIR=${ECHO_PAIR:-$BIN/examples/echo_pair}
if [[ ",${SCENARIOS:-latency}," == *",latency,"* ]] && command -v cargo >/dev/null; then
  target_dir=$(cd "$BIN/.." && pwd)
  CARGO_TARGET_DIR=$target_dir cargo build --quiet --release -p loadgen --example echo_pair
fi
RESULTS_DIR=$(results_dir "benchmark$([ "${QUICK:-0}" = 1 ] && echo -quick)")
export RESULTS_DIR
python3 benchmarks/bench.py
results_note "$RESULTS_DIR"
