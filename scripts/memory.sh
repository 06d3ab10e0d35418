#!/usr/bin/env bash
# Loadgen resident memory with many virtual clients: runs the loadgen against a local broker and
# worker, samples its resident memory every second, and writes memory-<NAME>.txt in a new
# .run/runs/<time>-memory-<NAME>/ directory (with the logs and the loadgen's report), or to the
# committed benchmarks/results/ (quoted in the README) with UPDATE_RESULTS=1; RESULTS_DIR
# overrides both.
#
#   scripts/memory.sh 1m     1,000,000 clients, INTERVAL_MS=40000 (25,000 req/s), 45 s
#   scripts/memory.sh 10m    10,000,000 clients, INTERVAL_MS=400000 (25,000 req/s), 420 s
# Each run lasts longer than one interval, so every client has sent (and holds its state) before
# the end; the result says how many clients it covered.
#
# CLIENTS, INTERVAL_MS and DURATION_SEC override a size's values. A short run at a long interval
# touches few clients and understates memory: the "covered" line is the check.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/run-lib.sh
BIN=${BIN:-target/release}
NAME=${1:-1m}
# `make` exports its `make up` defaults (INTERVAL_MS=10000 ...) and names them in UP_DEFAULTED;
# those are not a choice for this script, whose sizes have their own interval.
for v in ${UP_DEFAULTED:-}; do
  case $v in INTERVAL_MS|VIRTUAL_CLIENTS|CONNECTIONS) unset "$v" ;; esac
done
case $NAME in
  1m) CLIENTS=${CLIENTS:-1000000}; INTERVAL=${INTERVAL_MS:-40000}; DUR=${DURATION_SEC:-45}; WARM=0 ;;
  10m) CLIENTS=${CLIENTS:-10000000}; INTERVAL=${INTERVAL_MS:-400000}; DUR=${DURATION_SEC:-420}; WARM=0 ;;
  *) echo "memory.sh: unknown size '$NAME' (accepted: 1m, 10m)" >&2; exit 2 ;;
esac
dir=$(results_dir "memory-$NAME")
OUT=$dir/memory-$NAME.txt
tmp=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
BP=$(port); WP=$(port); LP=$(port)
if [ -z "${BROKER:-}" ]; then
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nset_tcp_nodelay true\n' "$BP" > "$tmp/m.conf"
  mosquitto -c "$tmp/m.conf" > "$tmp/broker.log" 2>&1 &
  sleep 0.5
  BROKER=mqtt://127.0.0.1:$BP
fi
export BROKER
METRICS_PORT=$WP METRICS_ADDR=127.0.0.1 "$BIN/worker" > "$tmp/worker.log" 2>&1 &
sleep 1
VIRTUAL_CLIENTS=$CLIENTS INTERVAL_MS=$INTERVAL CONNECTIONS=100 WARMUP_SEC=$WARM DURATION_SEC=$DUR \
  METRICS_PORT=$LP METRICS_ADDR=127.0.0.1 PROGRESS_SEC=10 REPORT_JSON="$tmp/report.json" \
  "$BIN/loadgen" > "$tmp/loadgen.out" 2> "$tmp/loadgen.err" &
LG=$!
peak=0; samples=(); last=0
while kill -0 $LG 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$LG/status 2>/dev/null || echo 0)
  [ -n "$rss" ] && [ "$rss" -gt 0 ] && { samples+=("$rss"); last=$rss; [ "$rss" -gt "$peak" ] && peak=$rss; }
  sleep 1
done
wait $LG || true
python3 - "$tmp/report.json" "$peak" "$last" "${samples[*]}" "$CLIENTS" "$INTERVAL" "$WARM" > "$OUT" <<'PY'
import json, sys, platform, subprocess
r = json.load(open(sys.argv[1])); peak, last = int(sys.argv[2]), int(sys.argv[3])
s = [int(x) for x in sys.argv[4].split()]
clients, interval_ms, warm = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"loadgen with {clients:,} virtual clients (INTERVAL_MS={interval_ms}, 100 connections), git {rev}, {platform.node()} {platform.release()}")
print(f"peak resident memory: {peak/1024:.1f} MiB ({peak} KiB); median {sorted(s)[len(s)//2]/1024:.1f} MiB over {len(s)} one-second samples; last sample {last/1024:.1f} MiB")
print(f"offered {r['offered_rate']:.0f} req/s, achieved {r['achieved_rate']:.0f} req/s, sent {r['sent']}, matched {r['matched']}, match rate {r['match_rate']:.5f}")
# Each client sends once per interval at its own phase, so the first `clients` requests of the
# schedule come from distinct clients; the measured window (after WARMUP_SEC) gives a lower bound.
covered = min(clients, r['sent'])
print(f"clients covered: {covered:,} of {clients:,} ({100.0*covered/clients:.1f}%) sent at least once before the last sample"
      + ("" if warm == 0 else f" (counting only the measured window after {warm} s of warm-up)"))
l = r['latency_us']; print(f"latency us: p50 {l['p50']} p99 {l['p99']} max {l['max']}")
PY
cat "$OUT"
# A scratch run keeps its logs and report beside the result.
[ "$dir" = benchmarks/results ] || cp "$tmp"/*.log "$tmp"/loadgen.* "$tmp"/report.json "$dir"/ 2>/dev/null || true
results_note "$dir"
