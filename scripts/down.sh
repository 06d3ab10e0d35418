#!/usr/bin/env bash
# `make down`: stop what `make up` started (recorded in .run/*.pid; RUN_STATE moves .run).
cd "$(dirname "$0")/.." || exit 0
state=${RUN_STATE:-.run}
for f in "$state/loadgen.pid" "$state/worker.pid" "$state/broker.pid"; do
  [ -f "$f" ] || continue
  pid=$(cat "$f"); kill "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
  rm -f "$f"
done
exit 0
