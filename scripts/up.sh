#!/usr/bin/env bash
# `make up`: start a broker (unless BROKER is set), one worker and one loadgen in the foreground.
# Local broker: mosquitto when installed (installed here when root), else the embedded mqtt5
# broker (rr-broker). Ctrl-C stops the loadgen (it drains and prints its report), then everything
# this script started. Each run keeps its files in .run/runs/<YYYYmmdd-HHMMSS>-<scenario>/
# (broker.log, worker.log, loadgen.log with everything the loadgen printed, report.json and
# report.html, written by `loadgen report` after the run unless the loadgen wrote it itself),
# .run/runs/latest points at the newest, and the pids
# of the running processes are in .run/*.pid for `make down` (RUN_STATE moves .run elsewhere).
# TRANSPORT=nats starts nats-server (NATS_PORT, 4222) instead, and the worker and loadgen talk NATS
# (docs/nats.md); BROKER=nats://host:port uses a server of yours.
# SCENARIO=capacity (make capacity) runs the capacity search against the same stack and also
# writes capacity.svg (offered rate against p50/p99/match per step) next to the report.
# Variables: SCENARIO (rr), TRANSPORT (mqtt), BIN (target/release), METRICS_PORT (8090),
# WORKER_METRICS_PORT (8080), BROKER_PORT (1883), BROKER_WS_PORT (8083), NATS_PORT (4222),
# REPORT_JSON / REPORT_HTML (in the run directory), UP_DEFAULTED (set by the Makefile: the load
# variables it defaulted).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/run-lib.sh
BIN=${BIN:-target/release}
SCENARIO=${SCENARIO:-rr}
LOADGEN_PORT=${METRICS_PORT:-8090}
WORKER_PORT=${WORKER_METRICS_PORT:-8080}
BROKER_PORT=${BROKER_PORT:-1883}
WS_PORT=${BROKER_WS_PORT:-8083}
TRANSPORT=${TRANSPORT:-mqtt}
case "$TRANSPORT" in
  mqtt) ;;
  nats)
    [ "$SCENARIO" != fanout ] || { echo "TRANSPORT=nats: SCENARIO=fanout measures MQTT over WebSocket (NATS runs rr and pub)" >&2; exit 2; }
    NATS_PORT=${NATS_PORT:-4222} ;;
  *) echo "invalid TRANSPORT: '$TRANSPORT' (accepted: mqtt, nats)" >&2; exit 2 ;;
esac
mkdir -p "$RUN_STATE"
RUN=$(new_run_dir "$SCENARIO$([ "$TRANSPORT" = nats ] && echo -nats)")
echo "run: $RUN (logs, report; $RUNS_ROOT/latest points here)"

pids=()
tee_pid=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$RUN_STATE"/*.pid "$RUN/loadgen.fifo"
}
trap cleanup EXIT

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 100); do port_free "$1" || return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }

if [ -z "${BROKER:-}" ] && [ "$TRANSPORT" = nats ]; then
  port_free "$NATS_PORT" || { echo "port $NATS_PORT is taken: set BROKER=nats://host:port to use that server, or NATS_PORT=..." >&2; exit 1; }
  bash scripts/install-deps.sh run || true
  NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
  [ -x "$NATS" ] || { echo "TRANSPORT=nats needs nats-server (apt-get install nats-server)" >&2; exit 1; }
  cat > "$RUN/nats-server.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
CONF
  setsid "$NATS" -c "$RUN/nats-server.conf" >"$RUN/broker.log" 2>&1 &
  echo "broker: nats-server on nats://127.0.0.1:$NATS_PORT, log $RUN/broker.log"
  pids+=($!); echo $! > "$RUN_STATE/broker.pid"
  wait_port "$NATS_PORT"
  export BROKER=nats://127.0.0.1:$NATS_PORT
elif [ -z "${BROKER:-}" ]; then
  port_free "$BROKER_PORT" || { echo "port $BROKER_PORT is taken: set BROKER=mqtt://host:port to use that broker, or BROKER_PORT=..." >&2; exit 1; }
  bash scripts/install-deps.sh run || true
  if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    cat > "$RUN/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
listener $WS_PORT 127.0.0.1
protocol websockets
allow_anonymous true
persistence false
max_queued_messages 100000
set_tcp_nodelay true
CONF
    setsid "$MOSQ" -c "$RUN/mosquitto.conf" >"$RUN/broker.log" 2>&1 &
    echo "broker: mosquitto on mqtt://127.0.0.1:$BROKER_PORT (WebSocket ws://127.0.0.1:$WS_PORT/mqtt), log $RUN/broker.log"
  else
    BROKER_BIND=127.0.0.1:$BROKER_PORT BROKER_WS_BIND=127.0.0.1:$WS_PORT setsid "$BIN/rr-broker" >"$RUN/broker.log" 2>&1 &
    echo "broker: embedded mqtt5 broker on mqtt://127.0.0.1:$BROKER_PORT (WebSocket ws://127.0.0.1:$WS_PORT/mqtt), log $RUN/broker.log"
  fi
  pids+=($!); echo $! > "$RUN_STATE/broker.pid"
  wait_port "$BROKER_PORT"
  export BROKER=mqtt://127.0.0.1:$BROKER_PORT
  export GATEWAY_URLS=${GATEWAY_URLS:-ws://127.0.0.1:$WS_PORT/mqtt}
  export PUBLISH_BROKER=${PUBLISH_BROKER:-$BROKER}
fi

if [ "$SCENARIO" = "rr" ] || [ "$SCENARIO" = "capacity" ]; then
  METRICS_PORT=$WORKER_PORT setsid "$BIN/worker" >"$RUN/worker.log" 2>&1 &
  pids+=($!); echo $! > "$RUN_STATE/worker.pid"
  wait_port "$WORKER_PORT"
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$WORKER_PORT/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "worker: http://127.0.0.1:$WORKER_PORT/metrics  http://127.0.0.1:$WORKER_PORT/stats  (log $RUN/worker.log)"
  export WORKER_STATS_URLS=${WORKER_STATS_URLS:-http://127.0.0.1:$WORKER_PORT/stats}
fi

# The load, and why make up's default differs from the binary's (INTERVAL_MS=2000, 50,000 req/s).
if [ "$SCENARIO" != fanout ] && [ "$SCENARIO" != capacity ] && [ -n "${VIRTUAL_CLIENTS:-}" ] && [ -n "${INTERVAL_MS:-}" ] &&
   [ "${INTERVAL_MS:-0}" -gt 0 ] 2>/dev/null; then
  rate=$(( VIRTUAL_CLIENTS * 1000 / INTERVAL_MS ))
  load="load: VIRTUAL_CLIENTS=$VIRTUAL_CLIENTS x one request per INTERVAL_MS=$INTERVAL_MS = $rate req/s"
  case " ${UP_DEFAULTED:-} " in
    *" INTERVAL_MS "*) echo "$load: make up's default, sized for broker + worker + loadgen on one 2-core machine; the loadgen binary alone defaults to INTERVAL_MS=2000 (50,000 req/s from 100,000 clients). Change it: make up INTERVAL_MS=2000" ;;
    *) echo "$load (as set)" ;;
  esac
fi
echo "loadgen: http://127.0.0.1:$LOADGEN_PORT/metrics  http://127.0.0.1:$LOADGEN_PORT/stats  dashboard http://127.0.0.1:$LOADGEN_PORT/  (log $RUN/loadgen.log)"
if [ "$SCENARIO" = capacity ]; then
  echo "capacity search: up to VIRTUAL_CLIENTS=${VIRTUAL_CLIENTS:-?} x one request per INTERVAL_MS=${INTERVAL_MS:-?} (MAX_RATE), SLO p99 < ${SLO_P99_MS:-50} ms, match >= ${SLO_MATCH:-0.999}; Ctrl-C stops it"
else
  echo "Ctrl-C stops the run, drains in-flight requests and prints the summary."
fi
export METRICS_PORT=$LOADGEN_PORT SCENARIO
export REPORT_JSON=${REPORT_JSON:-$RUN/report.json}
export REPORT_HTML=${REPORT_HTML:-$RUN/report.html}
# Broker and worker run in their own sessions (setsid) so Ctrl-C reaches only the loadgen,
# which stops sending, drains against a live broker and worker, and writes the report. Its output
# goes to the terminal and to loadgen.log through tee, which ignores Ctrl-C (-i) so it keeps
# copying the drain and the summary.
mkfifo "$RUN/loadgen.fifo"
tee -i "$RUN/loadgen.log" < "$RUN/loadgen.fifo" &
tee_pid=$!
set +e
"$BIN/loadgen" > "$RUN/loadgen.fifo" 2>&1 &
lg=$!; echo $lg > "$RUN_STATE/loadgen.pid"
trap 'kill -INT $lg 2>/dev/null' INT TERM
wait $lg; rc=$?
while kill -0 $lg 2>/dev/null; do wait $lg; rc=$?; done
wait "$tee_pid"
trap cleanup EXIT
# The HTML report of the run, unless the loadgen wrote one itself.
if [ -s "$REPORT_JSON" ] && [ ! -e "$REPORT_HTML" ]; then
  "$BIN/loadgen" report "$REPORT_JSON" -o "$REPORT_HTML" >>"$RUN/loadgen.log" 2>&1 ||
    echo "no HTML report: 'loadgen report' failed, see $RUN/loadgen.log"
fi
# The capacity plot: every chart of the report as SVG, the capacity one copied to capacity.svg.
if [ "$SCENARIO" = capacity ] && [ -s "$REPORT_JSON" ]; then
  if "$BIN/loadgen" report "$REPORT_JSON" -o "$REPORT_HTML" --charts "$RUN/charts" >>"$RUN/loadgen.log" 2>&1 &&
     [ -f "$RUN/charts/chart-capacity.svg" ]; then
    cp "$RUN/charts/chart-capacity.svg" "$RUN/capacity.svg"
    echo "plot: $RUN/capacity.svg"
  else
    echo "no capacity plot: 'loadgen report --charts' failed, see $RUN/loadgen.log"
  fi
  grep -m1 '^capacity: ' "$RUN/loadgen.log" || true
fi
[ -f "$REPORT_JSON" ] && echo "report: $REPORT_JSON"
[ -f "$REPORT_HTML" ] && echo "report: $REPORT_HTML"
echo "logs: $RUN (make logs)"
exit $rc
