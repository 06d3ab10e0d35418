#!/usr/bin/env bash
# Fan-out benchmark on this machine (not a test): CLIENTS (15,000) direct WebSocket subscribers,
# spread over the broker's WebSocket ports and over 127.0.0.x source addresses, one random
# subject each out of SUBJECTS (10,000), PUBLISH_RATE (10,000) 512-byte messages/s in total,
# i.e. the gateway reference shape (one message per subject per second). Publisher and
# subscribers share the loadgen process, so latency uses one monotonic clock and the books are
# exact.
#
# Writes $NAME.json (+ .md): memory per connection (loadgen RSS delta over the ramp /
# connections), delivered msg/s, latency percentiles, loss, CPU of loadgen and broker during the
# measured window, and the full loadgen report; into a new .run/runs/<time>-$NAME/ directory, or
# the committed benchmarks/results/ with UPDATE_RESULTS=1 (RESULTS_DIR overrides both).
#
#   scripts/fanout-bench.sh                              # embedded broker (default)
#   BENCH_BROKER=mosquitto WS_PORTS=4 scripts/fanout-bench.sh
#
# Variables (default): BENCH_BROKER (embedded: target/release/rr-broker | mosquitto), CLIENTS,
# SUBJECTS, PUBLISH_RATE, SOURCES (4 source addresses 127.0.0.2..), WS_PORTS (mosquitto
# WebSocket listeners, 4; the embedded broker has one), CONNECT_RATE (2000), WARMUP_SEC (10),
# DURATION_SEC (60), NAME (fanout-15k), LOADGEN_BIN, RR_BROKER_BIN, MOSQUITTO_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_BROKER=${BENCH_BROKER:-embedded}
CLIENTS=${CLIENTS:-15000}
SUBJECTS=${SUBJECTS:-10000}
PUBLISH_RATE=${PUBLISH_RATE:-10000}
SOURCES=${SOURCES:-4}
WS_PORTS=${WS_PORTS:-4}
CONNECT_RATE=${CONNECT_RATE:-2000}
WARMUP_SEC=${WARMUP_SEC:-10}
DURATION_SEC=${DURATION_SEC:-60}
NAME=${NAME:-fanout-15k}
LOADGEN_BIN=${LOADGEN_BIN:-target/release/loadgen}
RR_BROKER_BIN=${RR_BROKER_BIN:-target/release/rr-broker}
. "$(dirname "${BASH_SOURCE[0]}")/run-lib.sh"  # results_dir
OUT=$(results_dir "$NAME")
RUN=$(mktemp -d /tmp/fanout-bench.XXXXXX)

die() { echo "fanout-bench: $*" >&2; exit 1; }
[ -x "$LOADGEN_BIN" ] || die "$LOADGEN_BIN missing: run 'make release' (or set LOADGEN_BIN)"
command -v python3 >/dev/null || die "python3 is needed to write the results"
command -v curl >/dev/null || die "curl is needed to follow the run"

# One descriptor per connection in loadgen and in the broker: lift the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((CLIENTS + 200))
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] ||
  die "CLIENTS=$CLIENTS needs an open-file limit of $need, this shell allows $(ulimit -n) (hard $(ulimit -Hn))"

. "$(dirname "${BASH_SOURCE[0]}")/fanout-lib.sh"  # free_port, source_addrs
cpu_ticks() { awk '{printf "%.0f\n", $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_bytes() { awk '/^VmRSS:/ {printf "%.0f\n", $2 * 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

MQTT_PORT=$(free_port)
gateways=()
case "$BENCH_BROKER" in
  embedded)
    [ -x "$RR_BROKER_BIN" ] || die "$RR_BROKER_BIN missing: run 'make release' (or set RR_BROKER_BIN)"
    WS_PORT=$(free_port)
    BROKER_BIND=127.0.0.1:$MQTT_PORT BROKER_WS_BIND=127.0.0.1:$WS_PORT RUST_LOG=warn \
      "$RR_BROKER_BIN" >"$RUN/broker.log" 2>&1 &
    broker_pid=$!
    gateways+=("ws://127.0.0.1:$WS_PORT/mqtt")
    broker_desc="embedded rr-broker (mqtt5 crate), 1 WebSocket port"
    ;;
  mosquitto)
    MOSQ=${MOSQUITTO_BIN:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
    [ -x "$MOSQ" ] || die "mosquitto not found (set MOSQUITTO_BIN)"
    {
      echo "per_listener_settings false"; echo "allow_anonymous true"; echo "persistence false"
      echo "set_tcp_nodelay true"; echo "max_connections -1"; echo "connection_messages false"
      echo "log_type error"; echo "log_type warning"
      echo "listener $MQTT_PORT 127.0.0.1"
      for _ in $(seq 1 "$WS_PORTS"); do
        p=$(free_port); gateways+=("ws://127.0.0.1:$p/mqtt")
        echo "listener $p 127.0.0.1"; echo "protocol websockets"
      done
    } >"$RUN/mosquitto.conf"
    "$MOSQ" -c "$RUN/mosquitto.conf" >"$RUN/broker.log" 2>&1 &
    broker_pid=$!
    broker_desc="$( ("$MOSQ" -h 2>/dev/null || true) | head -1 | sed 's/ is an MQTT.*//'), $WS_PORTS WebSocket ports"
    ;;
  *) die "BENCH_BROKER must be embedded or mosquitto" ;;
esac
pids+=("$broker_pid")
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break; sleep 0.1; done

sources=$(source_addrs "$SOURCES")
GATEWAY_URLS=$(IFS=,; echo "${gateways[*]}")
METRICS_PORT=$(free_port)
echo "fanout-bench: $CLIENTS clients on $GATEWAY_URLS from $sources; broker: $broker_desc; run dir $RUN"

SCENARIO=fanout GATEWAY_URLS=$GATEWAY_URLS PUBLISH_BROKER=mqtt://127.0.0.1:$MQTT_PORT \
  CLIENTS=$CLIENTS SUBJECTS=$SUBJECTS SUBJECTS_PER_CLIENT=1 PUBLISH_RATE=$PUBLISH_RATE \
  SOURCE_ADDRS=$sources CONNECT_RATE=$CONNECT_RATE WARMUP_SEC=$WARMUP_SEC DURATION_SEC=$DURATION_SEC \
  PAYLOAD_BYTES=512 METRICS_ADDR=127.0.0.1 METRICS_PORT=$METRICS_PORT PROGRESS_SEC=5 \
  INSTANCE_ID=fanout-bench REPORT_JSON="$RUN/report.json" \
  "$LOADGEN_BIN" >"$RUN/loadgen.out" 2> >(tee "$RUN/loadgen.err" >&2) &
lg=$!
pids+=("$lg")

# Broker CPU over the measured window (loadgen measures its own): from phase "measure" to the
# first poll after it.
t0=""; t1=""
while alive "$lg"; do
  p=$(curl -fsS "http://127.0.0.1:$METRICS_PORT/stats" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["phase"])' 2>/dev/null || true)
  if [ "$p" = measure ] && [ -z "$t0" ]; then
    t0=$(date +%s.%N); br0=$(cpu_ticks "$broker_pid")
  elif [ -n "$t0" ] && [ -z "$t1" ] && [ "$p" != measure ]; then
    t1=$(date +%s.%N); br1=$(cpu_ticks "$broker_pid"); broker_rss=$(rss_bytes "$broker_pid")
  fi
  sleep 0.2
done
if [ -n "$t0" ] && [ -z "$t1" ]; then
  t1=$(date +%s.%N); br1=$(cpu_ticks "$broker_pid"); broker_rss=$(rss_bytes "$broker_pid")
fi
wait "$lg" || die "loadgen failed (exit $?); see $RUN/loadgen.err"
[ -s "$RUN/report.json" ] || die "no report in $RUN/report.json"
cat "$RUN/loadgen.out"

export NAME BENCH_BROKER broker_desc RUN OUT t0 t1 br0 br1 broker_rss sources GATEWAY_URLS
export CLK_TCK; CLK_TCK=$(getconf CLK_TCK)
python3 - <<'PY'
import json, os, platform, datetime, subprocess
e = os.environ
r = json.load(open(os.path.join(e["RUN"], "report.json")))
x = lambda k: r.get(k)
def cores(a, b):
    try:
        dt = float(e["t1"]) - float(e["t0"])
        return round((int(e[b]) - int(e[a])) / int(e["CLK_TCK"]) / dt, 3)
    except (KeyError, ValueError, ZeroDivisionError):
        return None
lg_cores, br_cores = x("cpu_cores_in_window"), cores("br0", "br1")
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
mem_kb = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
delivered = x("delivered_rate")
rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip() or "unknown"
res = {
    "name": e["NAME"],
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "git_revision": rev,
    "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model, "memory_gib": round(mem_kb / 2**20, 1),
                "kernel": platform.release(),
                "load_average_1m_at_end": float(open("/proc/loadavg").read().split()[0])},
    "broker": {"kind": e["BENCH_BROKER"], "description": e["broker_desc"],
               "cpu_cores_in_window": br_cores,
               "rss_bytes": int(e["broker_rss"]) if e.get("broker_rss") else None},
    "settings": {k: r["config"].get(k) for k in ["CLIENTS", "SUBJECTS", "SUBJECTS_PER_CLIENT", "PUBLISH_RATE",
                 "PAYLOAD_BYTES", "CONNECT_RATE", "WARMUP_SEC", "DURATION_SEC", "GATEWAY_URLS", "SOURCE_ADDRS",
                 "PUBLISH_CONNECTIONS", "MQTT_VERSION", "FANOUT_ROLE"]},
    "results": {
        "connections": x("connections"),
        "memory_per_connection_bytes": x("memory_per_connection_bytes"),
        "loadgen_rss_bytes_after_ramp": x("rss_bytes_after_ramp"),
        "published_per_s": x("achieved_rate"),
        "delivered_per_s": delivered,
        "bytes_per_s": x("bytes_per_s"),
        "latency_us": x("latency_us"),
        "expected": x("expected"), "received": x("received"), "lost": x("lost"),
        "clients_with_loss": x("clients_with_loss"), "delivery_ratio": x("delivery_ratio"),
        "disconnects": x("disconnects"), "reconnects": x("reconnects"),
        "loadgen_cpu_cores_in_window": lg_cores,
        "loadgen_cpu_us_per_delivery": round(lg_cores * 1e6 / delivered, 2) if lg_cores and delivered else None,
        "duration_s": x("duration_s"),
    },
    "report": r,
}
base = os.path.join(e["OUT"], e["NAME"])
json.dump(res, open(base + ".json", "w"), indent=2)
open(base + ".json", "a").write("\n")
R, L = res["results"], res["results"]["latency_us"]
ms = lambda us: f"{us / 1000:.2f} ms"
md = f"""# Fan-out benchmark: {e['NAME']}

{res['date']}, git {rev}, on {res['machine']['cpus']} cores ({cpu_model}), {res['machine']['memory_gib']} GiB, Linux {res['machine']['kernel']}.
Broker: {e['broker_desc']}; loadgen, broker and publisher on the same machine (loopback);
1-minute load average at the end {res['machine']['load_average_1m_at_end']} (other jobs shared the machine when above ~2).
Shape: {res['settings']['CLIENTS']} WebSocket clients from {e['sources']}, one random subject each of
{res['settings']['SUBJECTS']}, {res['settings']['PUBLISH_RATE']} messages/s of {res['settings']['PAYLOAD_BYTES']} bytes in total,
{res['settings']['DURATION_SEC']} s measured after {res['settings']['WARMUP_SEC']} s warm-up.

| figure | value |
|---|---|
| connections | {R['connections']} |
| loadgen memory per connection (RSS delta over the ramp / connections) | {R['memory_per_connection_bytes']} bytes |
| published | {R['published_per_s']} msg/s |
| delivered | {R['delivered_per_s']} msg/s ({R['bytes_per_s'] / 1e6:.1f} MB/s of MQTT packets) |
| latency mean / p50 / p90 / p99 / p99.9 / max | {L['mean'] / 1000:.2f} / {ms(L['p50'])} / {ms(L['p90'])} / {ms(L['p99'])} / {ms(L['p999'])} / {ms(L['max'])} |
| lost / clients with loss / delivery ratio | {R['lost']} / {R['clients_with_loss']} / {R['delivery_ratio']} |
| disconnects | {R['disconnects']} |
| loadgen CPU in the window (publisher included) | {R['loadgen_cpu_cores_in_window']} cores ({R['loadgen_cpu_us_per_delivery']} µs per delivered message) |
| broker CPU in the window | {res['broker']['cpu_cores_in_window']} cores |

Reproduce: `scripts/fanout-bench.sh` (variables at the top of the script).
"""
open(base + ".md", "w").write(md)
print(md)
PY
echo "results: $OUT/$NAME.json $OUT/$NAME.md"
results_note "$OUT"
