#!/usr/bin/env bash
# `make test-scripts`: runs every scripts/tests/*.sh test (not lib.sh or this file); each prints
# ok/FAIL lines. Exit status 1 when any failed. ONLY=name runs one.
set -uo pipefail
cd "$(dirname "$0")"
failed=()
for t in *.sh; do
  case "$t" in lib.sh|run-all.sh) continue ;; esac
  [ -n "${ONLY:-}" ] && [ "${t%.sh}" != "$ONLY" ] && continue
  bash "$t" || failed+=("${t%.sh}")
done
if [ ${#failed[@]} -gt 0 ]; then echo "script tests failed: ${failed[*]}"; exit 1; fi
echo "script tests passed"
