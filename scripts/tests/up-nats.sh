#!/usr/bin/env bash
# `make up TRANSPORT=nats`: scripts/up.sh starts nats-server (free port) instead of mosquitto, the
# worker and loadgen talk NATS to it, the run keeps its files in .run/runs/<time>-rr-nats/ (the
# server's config and log beside the others) and its report's books close. A TRANSPORT it does
# not know, or fan-out over NATS, exits 2 with one line before starting anything. Runs 2 s at
# 1,000 req/s with the debug binaries (BIN overrides) and a temporary RUN_STATE.
. "$(dirname "$0")/lib.sh"

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
if [ ! -x "$BIN/loadgen" ] || [ ! -x "$BIN/worker" ]; then
  cargo build --quiet -p loadgen -p worker || { fail "cargo build of the binaries"; finish; exit 1; }
fi
export RUN_STATE=$T_TMP/state BIN
runs=$RUN_STATE/runs

if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
  fail "nats-server is not installed (make install-deps)"; finish; exit 1
fi

nats_port=$(free_port)
out=$(env -u BROKER TRANSPORT=nats NATS_PORT=$nats_port WORKER_METRICS_PORT=$(free_port) \
  METRICS_PORT=$(free_port) VIRTUAL_CLIENTS=1000 INTERVAL_MS=1000 CONNECTIONS=4 WARMUP_SEC=0 \
  DURATION_SEC=2 TIMEOUT_MS=1000 UP_DEFAULTED="" timeout 120 bash scripts/up.sh 2>&1); rc=$?
check "make up TRANSPORT=nats exits 0 (rc $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || printf '%s\n' "$out" | tail -n 30 | sed 's/^/     /'
run=$(readlink "$runs/latest")
check "the run directory is named <YYYYmmdd-HHMMSS>-rr-nats ($run)" \
  bash -c "[[ '$run' =~ ^[0-9]{8}-[0-9]{6}-rr-nats(-[0-9]+)?$ ]]"
d=$runs/$run
contains "up says it started nats-server on the port" "$out" "^broker: nats-server on nats://127.0.0.1:$nats_port"
check "the server's config is kept in the run directory" grep -q "listen: 127.0.0.1:$nats_port" "$d/nats-server.conf"
for log in broker worker loadgen; do
  check "$log.log kept" test -s "$d/$log.log"
done
check "report.json: an rr run over NATS whose books close" python3 -c "
import json, sys
r = json.load(open('$d/report.json'))
ok = (r['scenario'] == 'rr' and r['config']['BROKER'].startswith('nats://') and r['sent'] > 0
      and r['matched'] == r['sent'] - r['timeouts'] and r['match_rate'] >= 0.99 and r['invalid'] == 0)
sys.exit(0 if ok else print(json.dumps(r)[:2000]) or 1)"
check "nothing left listening on the NATS port" \
  bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$nats_port) 2>/dev/null"
check "no pid files left after the run" bash -c "! ls '$RUN_STATE'/*.pid >/dev/null 2>&1"

bad=$(TRANSPORT=kafka2 timeout 20 bash scripts/up.sh 2>&1); rc=$?
check "an unknown TRANSPORT exits 2 (rc $rc)" test "$rc" -eq 2
contains "... with one line naming it and what is accepted" "$bad" "^invalid TRANSPORT: 'kafka2' \(accepted: mqtt, nats\)$"
check "... in one line" test "$(wc -l <<<"$bad")" -eq 1
fan=$(TRANSPORT=nats SCENARIO=fanout timeout 20 bash scripts/up.sh 2>&1); rc=$?
check "fan-out over NATS exits 2 (rc $rc)" test "$rc" -eq 2
contains "... saying fan-out is MQTT over WebSocket" "$fan" "SCENARIO=fanout measures MQTT over WebSocket"

finish
