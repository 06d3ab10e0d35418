#!/usr/bin/env bash
# Installs what the tests and `make up` need from Debian when it is missing: mosquitto (the
# reference broker, with its WebSocket listener), nats-server (the NATS transport's tests and
# `make up TRANSPORT=nats`), prometheus (promtool, and the live recording-rule test in
# loadgen/tests/observe.rs) and chromium (headless, renders the web dashboard in that test); and
# nats-py from PyPI (the independent NATS client of the interop tests).
# Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
# nats-py (PyPI): into the python3 the tests run; Debian's own python3 needs pip's
# --break-system-packages (or --user) for it.
install_nats_py() {
  python3 -c 'import nats' >/dev/null 2>&1 && return 0
  python3 -m pip --version >/dev/null 2>&1 || return 1
  echo "installing: nats-py (pip)"
  python3 -m pip install --quiet nats-py >/dev/null 2>&1 ||
    python3 -m pip install --quiet --break-system-packages nats-py >/dev/null
}
python3 -c 'import nats' >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 ||
  need+=(python3-pip)
if [ ${#need[@]} -eq 0 ]; then
  install_nats_py
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "missing: ${need[*]} (not root and no sudo: install them, or set BROKER to use your broker)" >&2
    exit 1
  fi
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a system mosquitto on 1883; our runs use their own instance, so stop it.
if [[ " ${need[*]} " == *" mosquitto "* ]] && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
# Debian's nats-server package may start a system server on 4222; ours run their own.
if [[ " ${need[*]} " == *" nats-server "* ]] && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
install_nats_py
