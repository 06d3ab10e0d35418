#!/usr/bin/env bash
# Installs from Debian what is missing, in one of three sets:
#
#   scripts/install-deps.sh build  what building needs beyond the Rust toolchain: pkg-config and
#                                  libssl-dev (librdkafka, built from the rdkafka crate's sources
#                                  for the Kafka transport, uses the system OpenSSL for TLS and
#                                  SASL SCRAM); `make release` runs it first
#   scripts/install-deps.sh run    what `make up` needs to run: the local broker (mosquitto, with
#                                  its WebSocket listener; nats-server instead when TRANSPORT=nats
#                                  or BROKER is nats://...) and curl (readiness checks)
#   scripts/install-deps.sh test   what `make test` needs (the default): mosquitto (the reference
#                                  broker of the integration tests), nats-server (the NATS
#                                  transport's tests), curl, python3, prlimit (util-linux),
#                                  prometheus (promtool and the live recording-rule test in
#                                  loadgen/tests/observe.rs), chromium (renders the web dashboard
#                                  and the HTML reports headless); and nats-py from PyPI (the
#                                  independent NATS client of the interop tests); the build set;
#                                  and tansu 0.6.0 from crates.io (the Kafka-compatible broker of
#                                  the Kafka tests: `cargo install`, about 13 minutes of compiling
#                                  on 2 cores, once per machine)
#
# Needs root (or sudo) only when something is missing. Without either, it says what is missing
# and exits 1 (`make up` then falls back to the embedded broker).
# `--list` after the set prints its Debian packages and exits (the script tests check the split).
set -euo pipefail
set_name=${1:-test}

# "command package" pairs; a command also counts as present at /usr/sbin/<command>, and a "command"
# that is an absolute path is a file that must exist.
case "${TRANSPORT:-}:${BROKER:-}" in
  nats:*|*:nats://*|*:tls://*) run_broker="nats-server nats-server" ;;
  *) run_broker="mosquitto mosquitto" ;;
esac
build_tools=("pkg-config pkg-config" "/usr/include/openssl/ssl.h libssl-dev")
run_tools=("$run_broker" "curl curl")
test_tools=("${build_tools[@]}" "mosquitto mosquitto" "nats-server nats-server" "curl curl" "python3 python3"
            "prlimit util-linux" "prometheus prometheus" "chromium chromium")
case "$set_name" in
  build) tools=("${build_tools[@]}"); what="what building needs" ;;
  run) tools=("${run_tools[@]}"); what="what make up needs" ;;
  test) tools=("${test_tools[@]}"); what="the test tools (make up needs only its broker)" ;;
  *) echo "usage: $0 [build|run|test] [--list]" >&2; exit 2 ;;
esac
if [ "${2:-}" = --list ]; then
  for t in "${tools[@]}"; do printf '%s\n' "${t#* }"; done
  exit 0
fi

need=(); have=()
for t in "${tools[@]}"; do
  cmd=${t% *}; pkg=${t#* }
  if [[ $cmd == /* ]]; then
    if [ -e "$cmd" ]; then have+=("$pkg"); else need+=("$pkg"); fi
  elif command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ]; then have+=("$cmd"); else need+=("$pkg"); fi
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
# tansu (crates.io, test set only): the Kafka-compatible broker of the Kafka tests, where
# rr-testkit looks for it ($TANSU_BIN, $CARGO_HOME/bin, PATH).
tansu_present() {
  [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ] && return 0
  [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ] || command -v tansu >/dev/null 2>&1
}
install_tansu() {
  [ "$set_name" = test ] || return 0
  tansu_present && return 0
  echo "install-deps: installing tansu 0.6.0 (cargo install: about 13 minutes of compiling on 2 cores, once per machine)"
  cargo install tansu --version 0.6.0 --locked --features dynostore --quiet
}
if [ "$set_name" = test ]; then
  if tansu_present; then have+=(tansu); fi
  if python3 -c 'import nats' >/dev/null 2>&1; then have+=(nats-py); else
    python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  fi
fi

if [ ${#need[@]} -eq 0 ]; then
  install_nats_py
  install_tansu
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
install_tansu
