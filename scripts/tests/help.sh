#!/usr/bin/env bash
# `make help`: up/down/test named first, targets grouped run/observe/deploy/develop, every
# documented target listed once, colour only on a terminal (and never with NO_COLOR).
. "$(dirname "$0")/lib.sh"

out=$(make --no-print-directory help 2>&1)
not_contains "piped make help carries no ANSI codes" "$out" "$ESC"
contains "the first line names make up, make down, make test" "$(head -n 1 <<<"$out")" \
  "make up.*make down.*make test"
groups=$(grep -E '^[a-z][a-z ]*$' <<<"$out" | head -n 4 | tr '\n' ' ')
check "groups in order run, observe, deploy, develop (got: $groups)" \
  test "$groups" = "run observe deploy develop "
first_run=$(awk '/^run$/ {getline; print $1; exit}' <<<"$out")
check "up opens the run group (got: $first_run)" test "$first_run" = up
documented=$(grep -hE '^[a-zA-Z0-9_-]+:.*## ' Makefile mk/*.mk | sed 's/:.*//' | sort)
listed=$(grep -E '^  [a-zA-Z0-9_-]+ ' <<<"$out" | awk '{print $1}' | sort)
if [ "$documented" = "$listed" ]; then ok "every documented target is listed once"; else
  fail "every documented target is listed once" "$(diff <(echo "$documented") <(echo "$listed"))"; fi

if command -v script >/dev/null 2>&1; then
  tty=$(script -qec "make --no-print-directory help" /dev/null 2>&1)
  contains "make help on a terminal is coloured" "$tty" "$ESC\[36mup"
  tty=$(NO_COLOR=1 script -qec "make --no-print-directory help" /dev/null 2>&1)
  not_contains "NO_COLOR=1 turns it off on a terminal" "$tty" "$ESC"
else
  fail "script (bsdutils) is needed to give make help a terminal"
fi
finish
