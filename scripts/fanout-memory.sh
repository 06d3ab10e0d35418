#!/usr/bin/env bash
# Loadgen memory per idle fan-out connection (target: at most 4 KiB). Runs the subscriber role
# (no publisher, so connections stay idle) twice, with SMALL and LARGE client counts against a
# local broker, and samples the loadgen's resident memory after IDLE_SEC of idling:
#   per connection = (RSS idle - RSS before the ramp) / connections, for each run, and
#   slope          = (RSS idle LARGE - RSS idle SMALL) / (LARGE - SMALL), free of fixed costs.
# Writes fanout-memory.json (+ .md) to a new .run/runs/<time>-fanout-memory/ directory, or to the
# committed benchmarks/results/ with UPDATE_RESULTS=1 (RESULTS_DIR overrides both).
#
# Variables (default): SMALL (2000), LARGE (12000), IDLE_SEC (10), SOURCES (4),
# BENCH_BROKER (mosquitto when installed, else embedded), LOADGEN_BIN, RR_BROKER_BIN, MOSQUITTO_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=${SMALL:-2000}
LARGE=${LARGE:-12000}
IDLE_SEC=${IDLE_SEC:-10}
SOURCES=${SOURCES:-4}
LOADGEN_BIN=${LOADGEN_BIN:-target/release/loadgen}
RR_BROKER_BIN=${RR_BROKER_BIN:-target/release/rr-broker}
MOSQ=${MOSQUITTO_BIN:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
if [ -z "${BENCH_BROKER:-}" ]; then
  if [ -x "$MOSQ" ]; then BENCH_BROKER=mosquitto; else BENCH_BROKER=embedded; fi
fi
. "$(dirname "${BASH_SOURCE[0]}")/run-lib.sh"  # results_dir
OUT=$(results_dir fanout-memory)
RUN=$(mktemp -d /tmp/fanout-memory.XXXXXX)

die() { echo "fanout-memory: $*" >&2; exit 1; }
[ -x "$LOADGEN_BIN" ] || die "$LOADGEN_BIN missing: run 'make release' (or set LOADGEN_BIN)"
command -v python3 >/dev/null || die "python3 is needed"
command -v curl >/dev/null || die "curl is needed"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((LARGE + 200)) ] ||
  die "LARGE=$LARGE needs an open-file limit of $((LARGE + 200)); this shell allows $(ulimit -n)"

. "$(dirname "${BASH_SOURCE[0]}")/fanout-lib.sh"  # free_port, source_addrs
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
rss_bytes() { awk '/^VmRSS:/ {printf "%.0f\n", $2 * 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

gateways=()
case "$BENCH_BROKER" in
  mosquitto)
    [ -x "$MOSQ" ] || die "mosquitto not found (set MOSQUITTO_BIN)"
    {
      echo "per_listener_settings false"; echo "allow_anonymous true"; echo "persistence false"
      echo "max_connections -1"; echo "connection_messages false"; echo "log_type error"
      echo "listener $(free_port) 127.0.0.1"
      for _ in 1 2 3 4; do
        p=$(free_port); gateways+=("ws://127.0.0.1:$p/mqtt")
        echo "listener $p 127.0.0.1"; echo "protocol websockets"
      done
    } >"$RUN/mosquitto.conf"
    "$MOSQ" -c "$RUN/mosquitto.conf" >"$RUN/broker.log" 2>&1 &
    broker_desc="mosquitto, 4 WebSocket ports"
    ;;
  embedded)
    [ -x "$RR_BROKER_BIN" ] || die "$RR_BROKER_BIN missing: run 'make release'"
    p=$(free_port); gateways+=("ws://127.0.0.1:$p/mqtt")
    BROKER_BIND=127.0.0.1:$(free_port) BROKER_WS_BIND=127.0.0.1:$p RUST_LOG=warn \
      "$RR_BROKER_BIN" >"$RUN/broker.log" 2>&1 &
    broker_desc="embedded rr-broker, 1 WebSocket port"
    ;;
  *) die "BENCH_BROKER must be mosquitto or embedded" ;;
esac
pids+=($!)
first_port=${gateways[0]#ws://127.0.0.1:}; first_port=${first_port%/mqtt}
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$first_port") 2>/dev/null && break; sleep 0.1; done
GATEWAY_URLS=$(IFS=,; echo "${gateways[*]}")
sources=$(source_addrs "$SOURCES")

# run N: idles N subscriber connections; writes $RUN/N.report.json and $RUN/N.idle_rss.
run() {
  local n=$1 port; port=$(free_port)
  SCENARIO=fanout FANOUT_ROLE=subscribe GATEWAY_URLS=$GATEWAY_URLS CLIENTS=$n CONNECT_RATE=2000 \
    SOURCE_ADDRS=$sources WARMUP_SEC=0 DURATION_SEC=$IDLE_SEC PROGRESS_SEC=0 \
    METRICS_ADDR=127.0.0.1 METRICS_PORT=$port INSTANCE_ID=fanout-memory-$n \
    REPORT_JSON="$RUN/$n.report.json" "$LOADGEN_BIN" >"$RUN/$n.out" 2>"$RUN/$n.err" &
  local lg=$! idle=0 phase
  while alive "$lg"; do
    phase=$(curl -fsS "http://127.0.0.1:$port/stats" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["phase"])' 2>/dev/null || true)
    # The last sample taken while idling (phase "measure") is the idle figure.
    if [ "$phase" = measure ]; then idle=$(rss_bytes "$lg"); fi
    sleep 0.5
  done
  wait "$lg" || die "loadgen with CLIENTS=$n failed; see $RUN/$n.err"
  echo "$idle" >"$RUN/$n.idle_rss"
  echo "fanout-memory: CLIENTS=$n idle RSS $idle bytes"
}
echo "fanout-memory: broker $broker_desc, gateways $GATEWAY_URLS, sources $sources, run dir $RUN"
run "$SMALL"
run "$LARGE"

export RUN OUT SMALL LARGE IDLE_SEC broker_desc
python3 - <<'PY'
import json, os, datetime, subprocess
e = os.environ
rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip() or "unknown"
small, large = int(e["SMALL"]), int(e["LARGE"])
def one(n):
    r = json.load(open(f"{e['RUN']}/{n}.report.json"))
    idle = int(open(f"{e['RUN']}/{n}.idle_rss").read().strip() or 0)
    conns = r["connections"]
    before = r["rss_bytes_before_ramp"]
    return {"clients": n, "connections": conns, "rss_before_ramp_bytes": before,
            "rss_after_ramp_bytes": r["rss_bytes_after_ramp"], "rss_idle_bytes": idle,
            "per_connection_over_ramp_bytes": r["memory_per_connection_bytes"],
            "per_connection_idle_bytes": (idle - before) // max(conns, 1)}
s, l = one(small), one(large)
slope = (l["rss_idle_bytes"] - s["rss_idle_bytes"]) // max(l["connections"] - s["connections"], 1)
res = {"name": "fanout-memory",
       "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
       "git_revision": rev, "broker": e["broker_desc"], "idle_sec": int(e["IDLE_SEC"]), "target_bytes": 4096,
       "per_connection_bytes": slope, "runs": [s, l]}
json.dump(res, open(f"{e['OUT']}/fanout-memory.json", "w"), indent=2)
open(f"{e['OUT']}/fanout-memory.json", "a").write("\n")
md = f"""# Fan-out memory per idle connection

{res['date']}, git {rev}, broker: {e['broker_desc']}, subscriber role (no publisher), {e['IDLE_SEC']} s idle.

| clients | RSS before ramp | RSS idle | per connection (idle) |
|---|---|---|---|
| {s['connections']} | {s['rss_before_ramp_bytes'] / 2**20:.1f} MiB | {s['rss_idle_bytes'] / 2**20:.1f} MiB | {s['per_connection_idle_bytes']} bytes |
| {l['connections']} | {l['rss_before_ramp_bytes'] / 2**20:.1f} MiB | {l['rss_idle_bytes'] / 2**20:.1f} MiB | {l['per_connection_idle_bytes']} bytes |

Marginal cost of one idle WebSocket connection (slope between the two runs):
**{slope} bytes** ({slope / 1024:.1f} KiB; target at most 4 KiB).

Reproduce: `scripts/fanout-memory.sh`.
"""
open(f"{e['OUT']}/fanout-memory.md", "w").write(md)
print(md)
PY
results_note "$OUT"
