# Sourced by the script tests: assertions that print what failed, a free port, a scratch dir.
# A test file runs from the repository root, calls `ok`/`fail` per check and ends with `finish`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
T_NAME=$(basename "$0" .sh)
T_FAIL=0
T_PASS=0
T_TMP=$(mktemp -d "/tmp/script-test-$T_NAME.XXXXXX")
trap 'rm -rf "$T_TMP"' EXIT

ok()   { T_PASS=$((T_PASS + 1)); echo "ok   $T_NAME: $1"; }
fail() { T_FAIL=$((T_FAIL + 1)); echo "FAIL $T_NAME: $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | head -n 30 | sed 's/^/     /'; return 0; }
# check NAME COMMAND...: ok when the command succeeds.
check() { local name=$1; shift; if "$@"; then ok "$name"; else fail "$name"; fi; }
# contains NAME TEXT PATTERN (grep -E), not_contains NAME TEXT PATTERN
contains()     { if grep -Eq -- "$3" <<<"$2"; then ok "$1"; else fail "$1 (no /$3/)" "$2"; fi; }
not_contains() { if grep -Eq -- "$3" <<<"$2"; then fail "$1 (found /$3/)" "$(grep -E -- "$3" <<<"$2")"; else ok "$1"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ESC=$'\033'
finish() { echo "$T_NAME: $T_PASS passed, $T_FAIL failed"; [ "$T_FAIL" -eq 0 ]; }
