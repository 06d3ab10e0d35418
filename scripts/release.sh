#!/usr/bin/env bash
# `make release`: release build of loadgen, worker and the embedded broker. When the binaries are
# not there yet it says first what the build does and roughly how long it takes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-target}/release
if [ ! -x "$out/loadgen" ] || [ ! -x "$out/worker" ] || [ ! -x "$out/rr-broker" ]; then
  echo "first release build: cargo compiles about 250 crates (tokio, rustls, the embedded mqtt5 broker,"
  echo "librdkafka's C sources, ...), some 13 minutes of CPU: about 7 minutes on 2 idle cores, less with"
  echo "more; later builds take seconds."
fi
# pkg-config and the OpenSSL headers (librdkafka's TLS and SASL SCRAM) when missing and root.
bash scripts/install-deps.sh build || true
exec cargo build --release -p loadgen -p worker -p rr-broker
