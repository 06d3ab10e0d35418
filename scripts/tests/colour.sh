#!/usr/bin/env bash
# The binaries colour their logs only on a terminal: loadgen, worker and rr-broker write ANSI
# codes under a pseudo-terminal (script), none when redirected to a file or pipe, none with
# NO_COLOR=1. Uses the debug binaries (BIN overrides); loadgen and worker exit 3 quickly against
# a closed port, rr-broker runs for 2 s.
. "$(dirname "$0")/lib.sh"

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
if [ ! -x "$BIN/loadgen" ] || [ ! -x "$BIN/worker" ] || [ ! -x "$BIN/rr-broker" ]; then
  cargo build --quiet -p loadgen -p worker -p rr-broker || { fail "cargo build of the binaries"; finish; exit 1; }
fi
command -v script >/dev/null 2>&1 || { fail "script (bsdutils) is needed for a pseudo-terminal"; finish; exit 1; }
closed=$(free_port)
env_for() {  # the environment that makes BIN exit or stop quickly
  case $1 in
    loadgen|worker) echo "BROKER=mqtt://127.0.0.1:$closed CONNECT_RETRY_MS=300 METRICS_PORT=0 METRICS_ADDR=127.0.0.1" ;;
    rr-broker) echo "BROKER_BIND=127.0.0.1:0" ;;
  esac
}
run_cmd() { echo "env $(env_for "$1") timeout 2 $BIN/$1"; }

for b in loadgen worker rr-broker; do
  piped=$(bash -c "$(run_cmd "$b")" 2>&1)
  contains "$b: logs something when redirected" "$piped" "INFO"
  not_contains "$b: no ANSI codes when redirected" "$piped" "$ESC"
  tty=$(script -qec "$(run_cmd "$b")" /dev/null 2>&1)
  contains "$b: coloured on a terminal" "$tty" "$ESC\[[0-9;]*m"
  tty=$(NO_COLOR=1 script -qec "$(run_cmd "$b")" /dev/null 2>&1)
  not_contains "$b: NO_COLOR=1 turns colour off on a terminal" "$tty" "$ESC"
done
finish
