#!/usr/bin/env bash
# `make capacity` end to end: scripts/up.sh with SCENARIO=capacity (what the target runs, without
# its release build) starts the broker (mosquitto, or the embedded one) and a worker on free
# ports, runs a short search (START_RATE=250 doubling up to MAX_RATE=1000, 1 s steps, with the
# debug binaries; BIN overrides) and must print the verdict line and the paths of the report, the
# HTML report and the plot, and write them into the run directory; the verdict printed, the JSON
# report's, the HTML's and the plot's capacity must agree. A temporary RUN_STATE keeps it apart.
. "$(dirname "$0")/lib.sh"

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
if [ ! -x "$BIN/loadgen" ] || [ ! -x "$BIN/worker" ] || [ ! -x "$BIN/rr-broker" ]; then
  cargo build --quiet -p loadgen -p worker -p rr-broker || { fail "cargo build of the binaries"; finish; exit 1; }
fi
export RUN_STATE=$T_TMP/state BIN
runs=$RUN_STATE/runs

# a generous SLO and generator bound: this checks the plumbing, on a machine that may be busy
out=$(SCENARIO=capacity BROKER_PORT=$(free_port) BROKER_WS_PORT=$(free_port) \
  WORKER_METRICS_PORT=$(free_port) METRICS_PORT=$(free_port) VIRTUAL_CLIENTS=1000 INTERVAL_MS=1000 \
  CONNECTIONS=4 WARMUP_SEC=0 TIMEOUT_MS=1000 START_RATE=250 STEP_FACTOR=2 MAX_RATE=1000 \
  STEP_SEC=1 SETTLE_SEC=1 SLO_P99_MS=1000 GENERATOR_LAG_MS=500 PROGRESS_SEC=0 \
  timeout 180 bash scripts/up.sh 2>&1); rc=$?
check "make capacity's run exits 0 (rc $rc)" test "$rc" -eq 0
run=$(readlink "$runs/latest")
d=$runs/$run
check "the run directory is named <YYYYmmdd-HHMMSS>-capacity ($run)" \
  bash -c "[[ '$run' =~ ^[0-9]{8}-[0-9]{6}-capacity(-[0-9]+)?$ ]]"
contains "it prints the verdict line" "$out" "^capacity: >= 1000 req/s \(p99 [0-9.]+ ms, match 1\.00000; a lower bound: MAX_RATE reached\)"
contains "it prints where the JSON report went" "$out" "^report: $d/report.json$"
contains "it prints where the HTML report went" "$out" "^report: $d/report.html$"
contains "it prints where the plot went" "$out" "^plot: $d/capacity.svg$"
for f in report.json report.html capacity.svg loadgen.log worker.log broker.log; do
  check "$f written" test -s "$d/$f"
done
verdict=$(grep -m1 '^capacity: ' <<<"$out")
check "the JSON report, the HTML report and the plot agree with the printed verdict" python3 - \
  "$d/report.json" "$d/report.html" "$d/capacity.svg" "$verdict" <<'PY'
import html, json, re, sys
rep, page, svg, verdict = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read(), sys.argv[4]
r = json.load(open(rep))
c = r["capacity"]
rates = [s["offered_rate"] for s in c["steps"]]
problems = []
if r["scenario"] != "capacity": problems.append(f"scenario {r['scenario']}")
if c["verdict"] != verdict: problems.append(f"JSON verdict {c['verdict']!r} != printed {verdict!r}")
if (c["rate"], c["limited_by"], c["lower_bound"]) != (1000, "max_rate", True): problems.append(f"capacity {c}")
if rates != [250, 500, 1000]: problems.append(f"steps at {rates}")
if not all(s["passed"] and s["sent"] > 0 for s in c["steps"]): problems.append("a step failed or sent nothing")
if html.escape(verdict, quote=False) not in page: problems.append("the HTML lacks the verdict")
for chart in ("chart-capacity", "chart-rates", "chart-latency", "chart-percentiles"):
    m = re.search(r'id="%s" data-points="(\d+)"' % chart, page)
    if not m or int(m.group(1)) == 0: problems.append(f"the HTML has no {chart} with data")
if not svg.lstrip().startswith("<svg") or "capacity 1000 req/s" not in svg:
    problems.append("capacity.svg is not the capacity plot marking 1000 req/s")
if not r.get("timeline"): problems.append("no timeline")
# what the search's profile planned is what the generator offered: per second, and the report's rate
window = [x for x in r.get("timeline", []) if not x["warmup"]]
plan, offered = sum(x["target_rate"] for x in window), sum(x["offered"] for x in window)
if abs(plan - offered) > 0.02 * offered + 10: problems.append(f"timeline plan {plan:.0f} vs offered {offered}")
if abs(r["offered_rate"] * r["duration_s"] - r["sent"]) > 0.03 * r["sent"] + 10:
    problems.append(f"offered_rate {r['offered_rate']:.1f}/s over {r['duration_s']} s vs sent {r['sent']}")
if problems: print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
check "no pid files left after the run" bash -c "! ls '$RUN_STATE'/*.pid >/dev/null 2>&1"
finish
