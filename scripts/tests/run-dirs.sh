#!/usr/bin/env bash
# `make up`'s files: each run gets its own .run/runs/<time>-<scenario>/ with report.json and the
# logs of every process (the loadgen's own output included, without ANSI codes) and report.html,
# `latest` points at the newest, `make logs` shows that one, `make down` finds nothing left. Runs
# scripts/up.sh twice for 2 s at 1,000 req/s on free ports with the debug binaries (BIN
# overrides) and a temporary RUN_STATE, and once as make up-fanout. Also: the benchmark scripts' results go to a scratch run directory unless
# UPDATE_RESULTS=1.
. "$(dirname "$0")/lib.sh"

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
if [ ! -x "$BIN/loadgen" ] || [ ! -x "$BIN/worker" ] || [ ! -x "$BIN/rr-broker" ]; then
  cargo build --quiet -p loadgen -p worker -p rr-broker || { fail "cargo build of the binaries"; finish; exit 1; }
fi
export RUN_STATE=$T_TMP/state BIN
runs=$RUN_STATE/runs

up_once() {  # a short make up run; prints its output
  BROKER_PORT=$(free_port) BROKER_WS_PORT=$(free_port) WORKER_METRICS_PORT=$(free_port) \
  METRICS_PORT=$(free_port) VIRTUAL_CLIENTS=1000 INTERVAL_MS=1000 CONNECTIONS=4 WARMUP_SEC=0 \
  DURATION_SEC=2 TIMEOUT_MS=1000 UP_DEFAULTED=${UP_DEFAULTED-INTERVAL_MS} timeout 120 bash scripts/up.sh 2>&1
}

out1=$(up_once); rc1=$?
check "first run exits 0 (rc $rc1)" test "$rc1" -eq 0
first=$(readlink "$runs/latest")
out2=$(up_once); rc2=$?
check "second run exits 0 (rc $rc2)" test "$rc2" -eq 0
second=$(readlink "$runs/latest")

check "each run has its own directory ($first, $second)" test -n "$first" -a "$first" != "$second"
check "run directories are named <YYYYmmdd-HHMMSS>-rr" \
  bash -c "[[ '$first' =~ ^[0-9]{8}-[0-9]{6}-rr(-[0-9]+)?$ && '$second' =~ ^[0-9]{8}-[0-9]{6}-rr(-[0-9]+)?$ ]]"
check "latest points at the second run" test "$(cd "$runs/latest" && pwd -P)" = "$(cd "$runs/$second" && pwd -P)"
contains "up prints the run directory" "$out2" "^run: $runs/$second "
contains "up prints where the report went" "$out2" "^report: $runs/$second/report.json"
contains "up prints where the HTML report went" "$out2" "^report: $runs/$second/report.html"
contains "up says the load and why it is make up's default" "$out2" \
  "^load: VIRTUAL_CLIENTS=1000 x one request per INTERVAL_MS=1000 = 1000 req/s: make up's default, sized for .*2-core.*INTERVAL_MS=2000"

for r in "$first" "$second"; do
  d=$runs/$r
  check "$r: report.json is the run's JSON report" python3 -c "
import json, sys
r = json.load(open('$d/report.json'))
sys.exit(0 if r['scenario'] == 'rr' and r['sent'] > 0 and r['matched'] == r['sent'] - r['timeouts'] else 1)"
  # every report carries its histograms, so every run writes its HTML report (REPORT_HTML)
  check "$r: report.html is the run's HTML report" grep -qi "<html" "$d/report.html"
  check "$r: report.json carries its histograms" grep -q '"latency_us": "HISTF' "$d/report.json"
  for log in broker worker loadgen; do
    check "$r: $log.log kept" test -s "$d/$log.log"
  done
  lg=$(cat "$d/loadgen.log" 2>/dev/null)
  contains "$r: loadgen.log holds the start-up line" "$lg" "offered rate 1000(\.0)? req/s"
  contains "$r: loadgen.log holds the summary" "$lg" "match"
  not_contains "$r: logs carry no ANSI codes" "$(cat "$d"/*.log)" "$ESC"
done
check "nothing written to the old shared .run/report.json" test ! -e "$RUN_STATE/report.json"
check "no pid files left after the run" bash -c "! ls '$RUN_STATE'/*.pid >/dev/null 2>&1"

logs=$(bash scripts/logs.sh 2>&1)
contains "make logs names the latest run" "$(head -n 1 <<<"$logs")" "^run $runs/$second \(finished\)"
contains "make logs shows the latest loadgen log" "$logs" "==> $runs/latest/loadgen.log <=="
contains "make down finds nothing to stop" "$(bash scripts/down.sh 2>&1; echo end)" "^end$"

# make up-fanout: the fan-out run gets its directory, JSON and HTML report too.
out4=$(SCENARIO=fanout CLIENTS=100 SUBJECTS=20 PUBLISH_RATE=50 up_once); rc4=$?
check "up-fanout run exits 0 (rc $rc4)" test "$rc4" -eq 0
fo=$(readlink "$runs/latest")
check "up-fanout run directory is named <YYYYmmdd-HHMMSS>-fanout ($fo)" \
  bash -c "[[ '$fo' =~ ^[0-9]{8}-[0-9]{6}-fanout(-[0-9]+)?$ ]]"
contains "up-fanout prints where the HTML report went" "$out4" "^report: $runs/$fo/report.html"
check "up-fanout: report.html is the fan-out run's HTML report" \
  grep -qi "delivery ratio" "$runs/$fo/report.html"

# Output of a user-set load: "(as set)", no claim about make up's default.
out3=$(UP_DEFAULTED="" up_once)
contains "a load the user set is reported as set" "$out3" "^load: .* = 1000 req/s \(as set\)"

# Benchmarks write to a scratch run directory unless UPDATE_RESULTS=1 (RESULTS_DIR wins).
. scripts/run-lib.sh
d=$(results_dir memory-1m)
check "results_dir: a scratch run directory by default ($d)" bash -c "[[ '$d' == '$runs/'*-memory-1m && -d '$d' ]]"
check "results_dir: UPDATE_RESULTS=1 gives the committed benchmarks/results" \
  test "$(UPDATE_RESULTS=1 results_dir x)" = benchmarks/results
check "results_dir: RESULTS_DIR wins" test "$(RESULTS_DIR=$T_TMP/r UPDATE_RESULTS=1 results_dir x)" = "$T_TMP/r"
finish
