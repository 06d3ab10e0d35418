#!/usr/bin/env bash
# Installs from Debian what is missing, in one of two sets:
#
#   scripts/install-deps.sh run    what `make up` needs to run: the local broker (mosquitto, with
#                                  its WebSocket listener; nats-server instead when TRANSPORT=nats
#                                  or BROKER is nats://...) and curl (readiness checks)
#   scripts/install-deps.sh test   what `make test` needs (the default): mosquitto (the reference
#                                  broker of the integration tests), nats-server (the NATS
#                                  transport's tests), curl, python3, prlimit (util-linux),
#                                  prometheus (promtool and the live recording-rule test in
#                                  loadgen/tests/observe.rs), chromium (renders the web dashboard
#                                  and the HTML reports headless); and nats-py from PyPI (the
#                                  independent NATS client of the interop tests)
#
# Needs root (or sudo) only when something is missing. Without either, it says what is missing
# and exits 1 (`make up` then falls back to the embedded broker).
# `--list` after the set prints its Debian packages and exits (the script tests check the split).
set -euo pipefail
set_name=${1:-test}

# "command package" pairs; a command also counts as present at /usr/sbin/<command>.
case "${TRANSPORT:-}:${BROKER:-}" in
  nats:*|*:nats://*|*:tls://*) run_broker="nats-server nats-server" ;;
  *) run_broker="mosquitto mosquitto" ;;
esac
run_tools=("$run_broker" "curl curl")
test_tools=("mosquitto mosquitto" "nats-server nats-server" "curl curl" "python3 python3"
            "prlimit util-linux" "prometheus prometheus" "chromium chromium")
case "$set_name" in
  run) tools=("${run_tools[@]}"); what="what make up needs" ;;
  test) tools=("${test_tools[@]}"); what="the test tools (make up needs only its broker)" ;;
  *) echo "usage: $0 [run|test] [--list]" >&2; exit 2 ;;
esac
if [ "${2:-}" = --list ]; then
  for t in "${tools[@]}"; do printf '%s\n' "${t#* }"; done
  exit 0
fi

need=(); have=()
for t in "${tools[@]}"; do
  cmd=${t% *}; pkg=${t#* }
  if command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]; then have+=("$cmd"); else need+=("$pkg"); fi
done

# nats-py (PyPI, test set only): into the python3 the tests run; Debian's own python3 needs pip's
# --break-system-packages (or --user) for it.
install_nats_py() {
  [ "$set_name" = test ] || return 0
  python3 -c 'import nats' >/dev/null 2>&1 && return 0
  python3 -m pip --version >/dev/null 2>&1 || return 1
  echo "install-deps: installing nats-py (pip)"
  python3 -m pip install --quiet nats-py >/dev/null 2>&1 ||
    python3 -m pip install --quiet --break-system-packages nats-py >/dev/null
}
if [ "$set_name" = test ]; then
  if python3 -c 'import nats' >/dev/null 2>&1; then have+=(nats-py); else
    python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  fi
fi

if [ ${#need[@]} -eq 0 ]; then
  install_nats_py
  [ "$set_name" = test ] && echo "install-deps: the test tools are present: ${have[*]}"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "install-deps: missing $what: ${need[*]} (not root and no sudo: install them with apt-get)" >&2
    exit 1
  fi
fi
echo "install-deps: installing $what with apt-get: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a system mosquitto on 1883 (and may start nats-server on 4222); our runs use their
# own instances, so stop them.
for svc in mosquitto nats-server; do
  if [[ " ${need[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
install_nats_py
