#!/usr/bin/env bash
# Installs what the tests and `make up` need from Debian when it is missing: mosquitto (the
# reference broker, with its WebSocket listener), prometheus (promtool, and the live recording-rule
# test in loadgen/tests/observe.rs) and chromium (headless, renders the web dashboard in that test).
# Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
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
