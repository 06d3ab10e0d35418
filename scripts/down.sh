#!/usr/bin/env bash
# `make down`: stop what `make up` started (recorded in .run/*.pid).
cd "$(dirname "$0")/.." || exit 0
for f in .run/loadgen.pid .run/worker.pid .run/broker.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f"); kill "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
  rm -f "$f"
done
exit 0
