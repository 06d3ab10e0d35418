#!/usr/bin/env bash
# `make up`: start a broker (unless BROKER is set), one worker and one loadgen in the foreground.
# Local broker: mosquitto when installed (installed here when root), else the embedded mqtt5
# broker (target/release/rr-broker). Ctrl-C stops the loadgen (it drains and prints its report),
# then everything this script started. State and logs live in .run/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=.run; mkdir -p "$RUN"
BIN=target/release
SCENARIO=${SCENARIO:-rr}
LOADGEN_PORT=${METRICS_PORT:-8090}
WORKER_PORT=${WORKER_METRICS_PORT:-8080}
BROKER_PORT=${BROKER_PORT:-1883}
WS_PORT=${BROKER_WS_PORT:-8083}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$RUN"/*.pid
}
trap cleanup EXIT

port_free() { ! (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 100); do port_free "$1" || return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }

if [ -z "${BROKER:-}" ]; then
  port_free "$BROKER_PORT" || { echo "port $BROKER_PORT is taken: set BROKER=mqtt://host:port to use that broker, or BROKER_PORT=..." >&2; exit 1; }
  bash scripts/install-deps.sh || true
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
    echo "broker: embedded mqtt5 broker on mqtt://127.0.0.1:$BROKER_PORT (WebSocket ws://127.0.0.1:$WS_PORT/mqtt)"
  fi
  pids+=($!); echo $! > "$RUN/broker.pid"
  wait_port "$BROKER_PORT"
  export BROKER=mqtt://127.0.0.1:$BROKER_PORT
  export GATEWAY_URLS=${GATEWAY_URLS:-ws://127.0.0.1:$WS_PORT/mqtt}
fi

if [ "$SCENARIO" = "rr" ]; then
  METRICS_PORT=$WORKER_PORT setsid "$BIN/worker" >"$RUN/worker.log" 2>&1 &
  pids+=($!); echo $! > "$RUN/worker.pid"
  wait_port "$WORKER_PORT"
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$WORKER_PORT/ready" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "worker: http://127.0.0.1:$WORKER_PORT/metrics  http://127.0.0.1:$WORKER_PORT/stats  (log $RUN/worker.log)"
  export WORKER_STATS_URLS=${WORKER_STATS_URLS:-http://127.0.0.1:$WORKER_PORT/stats}
fi
echo "loadgen: http://127.0.0.1:$LOADGEN_PORT/metrics  http://127.0.0.1:$LOADGEN_PORT/stats  dashboard http://127.0.0.1:$LOADGEN_PORT/"
echo "Ctrl-C stops the run, drains in-flight requests and prints the summary."
export METRICS_PORT=$LOADGEN_PORT SCENARIO
export REPORT_JSON=${REPORT_JSON:-$RUN/report.json}
# Broker and worker run in their own sessions (setsid) so Ctrl-C reaches only the loadgen,
# which stops sending, drains against a live broker and worker, and writes the report.
set +e
"$BIN/loadgen" &
lg=$!; echo $lg > "$RUN/loadgen.pid"
trap 'kill -INT $lg 2>/dev/null' INT TERM
wait $lg; rc=$?
while kill -0 $lg 2>/dev/null; do wait $lg; rc=$?; done
trap cleanup EXIT
echo "report: $REPORT_JSON"
exit $rc
