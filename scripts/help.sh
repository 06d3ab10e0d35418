#!/usr/bin/env bash
# `make help`: the targets of the given makefiles, grouped by their "##@ group" lines (run,
# observe, deploy, develop, then any other) after a line naming the three to start with.
# Colour only when stdout is a terminal and NO_COLOR is empty.
set -euo pipefail
. "$(dirname "$0")/run-lib.sh"
if colour_on 1; then b=$'\033[1m'; c=$'\033[36m'; r=$'\033[0m'; else b=""; c=""; r=""; fi
echo "${b}start here:${r} ${c}make up${r} (run locally until Ctrl-C), ${c}make down${r} (stop it), ${c}make test${r} (every check)"
awk -v b="$b" -v c="$c" -v r="$r" '
  /^##@ / { group = substr($0, 5); next }
  /^[a-zA-Z0-9_-]+:.*## / {
    name = $0; sub(/:.*/, "", name)
    text = $0; sub(/^[^#]*## /, "", text)
    g = (group == "") ? "other" : group
    if (!(g in rows)) { order[++n] = g }
    rows[g] = rows[g] sprintf("  %s%-18s%s %s\n", c, name, r, text)
  }
  END {
    split("run observe deploy develop", want, " ")
    for (i = 1; i <= 4; i++) if (want[i] in rows) { printf "\n%s%s%s\n%s", b, want[i], r, rows[want[i]]; done[want[i]] = 1 }
    for (i = 1; i <= n; i++) if (!(order[i] in done)) printf "\n%s%s%s\n%s", b, order[i], r, rows[order[i]]
  }' "$@"
