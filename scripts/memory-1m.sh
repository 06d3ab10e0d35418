#!/usr/bin/env bash
# Shows that 1,000,000 virtual clients fit in a small loadgen: runs loadgen with
# VIRTUAL_CLIENTS=1000000 INTERVAL_MS=60000 (16,667 req/s) against a local broker and worker,
# samples its resident memory every second, and writes the result to memory-1m.txt in a new
# .run/runs/<time>-memory-1m/ directory (with the logs and the loadgen's report), or to the
# committed benchmarks/results/memory-1m.txt (quoted in the README) with UPDATE_RESULTS=1;
# RESULTS_DIR overrides both.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/run-lib.sh
BIN=${BIN:-target/release}
DUR=${DURATION_SEC:-30}
dir=$(results_dir memory-1m)
OUT=$dir/memory-1m.txt
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
VIRTUAL_CLIENTS=1000000 INTERVAL_MS=60000 CONNECTIONS=100 WARMUP_SEC=5 DURATION_SEC=$DUR \
  METRICS_PORT=$LP METRICS_ADDR=127.0.0.1 PROGRESS_SEC=5 REPORT_JSON="$tmp/report.json" \
  "$BIN/loadgen" > "$tmp/loadgen.out" 2> "$tmp/loadgen.err" &
LG=$!
peak=0; samples=()
while kill -0 $LG 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$LG/status 2>/dev/null || echo 0)
  [ -n "$rss" ] && { samples+=("$rss"); [ "$rss" -gt "$peak" ] && peak=$rss; }
  sleep 1
done
wait $LG || true
python3 - "$tmp/report.json" "$peak" "${samples[*]}" > "$OUT" <<'PY'
import json, sys, platform, subprocess
r = json.load(open(sys.argv[1])); peak = int(sys.argv[2]); s = [int(x) for x in sys.argv[3].split()]
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"loadgen with 1,000,000 virtual clients (INTERVAL_MS=60000, 100 connections), git {rev}, {platform.node()} {platform.release()}")
print(f"peak resident memory: {peak/1024:.1f} MiB ({peak} KiB); median {sorted(s)[len(s)//2]/1024:.1f} MiB over {len(s)} one-second samples")
print(f"offered {r['offered_rate']:.0f} req/s, achieved {r['achieved_rate']:.0f} req/s, sent {r['sent']}, matched {r['matched']}, match rate {r['match_rate']:.5f}")
l = r['latency_us']; print(f"latency us: p50 {l['p50']} p99 {l['p99']} max {l['max']}")
PY
cat "$OUT"
# A scratch run keeps its logs and report beside the result.
[ "$dir" = benchmarks/results ] || cp "$tmp"/*.log "$tmp"/loadgen.* "$tmp"/report.json "$dir"/ 2>/dev/null || true
results_note "$dir"
