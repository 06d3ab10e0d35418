#!/usr/bin/env bash
# Terminal dashboard for SSH sessions: polls a loadgen's /stats every second
# and redraws a compact view (rates, match rate, latency, errors, workers,
# fanout) with sparklines of the last minute.
#
#   scripts/dashboard.sh                      # http://127.0.0.1:8090/stats
#   STATS_URL=http://10.0.0.5:8090/stats scripts/dashboard.sh
#   kubectl -n mqtt-rr-bench port-forward pod/loadgen-0 8090:8090 & make dashboard
#   scripts/dashboard.sh --once               # print one snapshot and exit
#
# Needs curl and jq (or python3). As root, a missing jq is installed with apt.
# Env: STATS_URL, INTERVAL (seconds, default 1), HISTORY (sparkline width, 60).
set -uo pipefail

STATS_URL=${STATS_URL:-http://127.0.0.1:8090/stats}
INTERVAL=${INTERVAL:-1}
HISTORY=${HISTORY:-60}
ONCE=0
case "${1:-}" in
  --once) ONCE=1 ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--once]" >&2; exit 2 ;;
esac

command -v curl >/dev/null 2>&1 || { echo "dashboard: curl is required" >&2; exit 1; }
if ! command -v jq >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "dashboard: installing jq" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null 2>&1; }
  fi
  command -v jq >/dev/null 2>&1 || { echo "dashboard: needs jq or python3" >&2; exit 1; }
fi

# One snapshot -> "KEY<TAB>value" lines: the view text (L) plus raw numbers for
# the sparklines (SENT, P99US). jq and python3 produce the same output.
JQ_PROG='
def n: if type == "number" then . else null end;
def grp: if . == null then "-" else (if . < 0 then "-" else "" end) + ((if . < 0 then -. else . end) | floor | tostring
          | explode | reverse | [recurse(.[3:]; length > 0) | .[0:3] | reverse | implode] | reverse | join(",")) end;
def f1: if . == null then "-" elif . >= 1000 then grp else (. * 10 | round / 10 | tostring) end;
def ms: if . == null then "-" elif . >= 1000000 then ((. / 10000 | round) / 100 | tostring) + " s"
        elif . >= 1000 then ((. / 10 | round) / 100 | tostring) + " ms" else (. | round | tostring) + " us" end;
def pct: if . == null then "-" else ((. * 100000 | round) / 1000 | tostring) + "%" end;
. as $s | ($s.recent // {}) as $r | ($s.latency_us // {}) as $l |
"L\tmqtt-rr-bench  \($s.scenario // "-")  instance \($s.instance_id // "-")  phase \($s.phase // "-")  elapsed \($s.elapsed_s | n | f1)s  measured \($s.measured_s | n | f1)s",
"L\trate     offered \($s.offered_rate | n | f1)/s   achieved \($s.achieved_rate | n | f1)/s   now: sent \($r.sent_per_s | n | f1)/s  matched \($r.matched_per_s | n | f1)/s  timeouts \($r.timeouts_per_s | n | f1)/s",
(if $s.scenario != "fanout" then
"L\tmatch    \($s.match_rate | n | pct)   sent \($s.sent | n | grp)  matched \($s.matched | n | grp)  timeouts \($s.timeouts | n | grp)  late \($s.late | n | grp)  dup \($s.duplicates | n | grp)  invalid \($s.invalid | n | grp)  skipped \($s.skipped | n | grp)"
else empty end),
"L\tlatency  now p50 \($r.p50_us | n | ms)  p99 \($r.p99_us | n | ms)   run p50 \($l.p50 | n | ms)  p90 \($l.p90 | n | ms)  p99 \($l.p99 | n | ms)  p99.9 \($l.p999 | n | ms)  max \($l.max | n | ms)",
"L\tload     clients \(($s.virtual_clients // $s.clients) | n | grp)  connections \($s.connections | n | grp)  inflight \($s.inflight | n | grp)  reconnects \($s.reconnects | n | grp)  publish errors \($s.publish_errors | n | grp)  schedule lag p99 \(($s.schedule_lag_us // {}).p99 | n | ms)",
(if ($s.worker | type) == "object" then
"L\tworker   pool \($s.worker.pool_size | n | grp)  busy \($s.worker.busy_workers | n | grp)  queue \($s.worker.queue_depth | n | grp)"
else empty end),
(if $s.scenario == "fanout" then
"L\tfanout   clients \($s.clients | n | grp)  subjects \($s.subjects | n | grp)  received \($s.received | n | grp) (\($r.received_per_s | n | f1)/s)  bytes \($s.bytes_received | n | grp)  lost \($s.lost | n | grp)  clients with loss \($s.clients_with_loss | n | grp)"
else empty end),
"SENT\t\(($r.sent_per_s // $r.received_per_s // 0) | n // 0 | floor)",
"P99US\t\(($r.p99_us // 0) | n // 0 | floor)"
'

PY_PROG=$(cat <<'PYEOF'
import json, sys
s = json.load(sys.stdin)
def n(v): return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
def grp(v):
    v = n(v)
    return "-" if v is None else f"{int(v // 1) if v >= 0 else -int(-v // 1):,}"
def f1(v):
    v = n(v)
    if v is None: return "-"
    return grp(v) if v >= 1000 else str(round(v, 1)).removesuffix(".0") if round(v, 1) == int(round(v, 1)) else str(round(v, 1))
def ms(v):
    v = n(v)
    if v is None: return "-"
    if v >= 1e6: return f"{round(v / 1e4) / 100:g} s"
    if v >= 1e3: return f"{round(v / 10) / 100:g} ms"
    return f"{round(v)} us"
def pct(v):
    v = n(v)
    return "-" if v is None else f"{round(v * 100000) / 1000:g}%"
r = s.get("recent") or {}; l = s.get("latency_us") or {}; w = s.get("worker")
out = [f"mqtt-rr-bench  {s.get('scenario') or '-'}  instance {s.get('instance_id') or '-'}  phase {s.get('phase') or '-'}  elapsed {f1(s.get('elapsed_s'))}s  measured {f1(s.get('measured_s'))}s",
       f"rate     offered {f1(s.get('offered_rate'))}/s   achieved {f1(s.get('achieved_rate'))}/s   now: sent {f1(r.get('sent_per_s'))}/s  matched {f1(r.get('matched_per_s'))}/s  timeouts {f1(r.get('timeouts_per_s'))}/s"]
if s.get("scenario") != "fanout":
    out.append(f"match    {pct(s.get('match_rate'))}   sent {grp(s.get('sent'))}  matched {grp(s.get('matched'))}  timeouts {grp(s.get('timeouts'))}  late {grp(s.get('late'))}  dup {grp(s.get('duplicates'))}  invalid {grp(s.get('invalid'))}  skipped {grp(s.get('skipped'))}")
out.append(f"latency  now p50 {ms(r.get('p50_us'))}  p99 {ms(r.get('p99_us'))}   run p50 {ms(l.get('p50'))}  p90 {ms(l.get('p90'))}  p99 {ms(l.get('p99'))}  p99.9 {ms(l.get('p999'))}  max {ms(l.get('max'))}")
vc = s.get("virtual_clients", s.get("clients"))
out.append(f"load     clients {grp(vc)}  connections {grp(s.get('connections'))}  inflight {grp(s.get('inflight'))}  reconnects {grp(s.get('reconnects'))}  publish errors {grp(s.get('publish_errors'))}  schedule lag p99 {ms((s.get('schedule_lag_us') or {}).get('p99'))}")
if isinstance(w, dict):
    out.append(f"worker   pool {grp(w.get('pool_size'))}  busy {grp(w.get('busy_workers'))}  queue {grp(w.get('queue_depth'))}")
if s.get("scenario") == "fanout":
    out.append(f"fanout   clients {grp(s.get('clients'))}  subjects {grp(s.get('subjects'))}  received {grp(s.get('received'))} ({f1(r.get('received_per_s'))}/s)  bytes {grp(s.get('bytes_received'))}  lost {grp(s.get('lost'))}  clients with loss {grp(s.get('clients_with_loss'))}")
for line in out: print("L\t" + line)
print("SENT\t%d" % int(n(r.get("sent_per_s")) or n(r.get("received_per_s")) or 0))
print("P99US\t%d" % int(n(r.get("p99_us")) or 0))
PYEOF
)

render() {
  if command -v jq >/dev/null 2>&1; then jq -r "$JQ_PROG"; else python3 -c "$PY_PROG"; fi
}

SPARK=(▁ ▂ ▃ ▄ ▅ ▆ ▇ █)
sparkline() {   # values... -> one line of block characters scaled to the max
  local max=1 v out=""
  for v in "$@"; do [ "$v" -gt "$max" ] && max=$v; done
  for v in "$@"; do out+=${SPARK[$(( v * 7 / max ))]}; done
  printf '%s' "$out"
}

HIST_SENT=()
HIST_P99=()
TTY=0; [ -t 1 ] && TTY=1
trap 'printf "\n"; exit 0' INT TERM

while :; do
  body=$(curl -fsS --max-time 2 "$STATS_URL" 2>&1); rc=$?
  frame=""; ok=0
  if [ $rc -ne 0 ]; then
    frame="mqtt-rr-bench  waiting for $STATS_URL ($body)"
  elif ! parsed=$(printf '%s' "$body" | render 2>&1); then
    frame="mqtt-rr-bench  cannot parse /stats from $STATS_URL: $parsed"
  else
    ok=1; sent=0; p99=0
    while IFS=$'\t' read -r key val; do
      case "$key" in
        L) frame+="$val"$'\n' ;;
        SENT) sent=${val%%.*} ;;
        P99US) p99=${val%%.*} ;;
      esac
    done <<<"$parsed"
    HIST_SENT+=("${sent:-0}"); HIST_P99+=("${p99:-0}")
    [ ${#HIST_SENT[@]} -gt "$HISTORY" ] && HIST_SENT=("${HIST_SENT[@]:1}") && HIST_P99=("${HIST_P99[@]:1}")
    if [ "$ONCE" = 0 ]; then
      frame+="history  sent/s $(sparkline "${HIST_SENT[@]}")"$'\n'
      frame+="         p99    $(sparkline "${HIST_P99[@]}")"$'\n'
    fi
    frame+="$(date '+%H:%M:%S')  $STATS_URL  (Ctrl-C to quit)"
  fi
  if [ "$ONCE" = 1 ]; then
    printf '%s\n' "$frame"
    [ "$ok" = 1 ]; exit $?
  fi
  if [ "$TTY" = 1 ]; then printf '\033[H\033[2J%s\n' "$frame"; else printf '%s\n\n' "$frame"; fi
  sleep "$INTERVAL"
done
