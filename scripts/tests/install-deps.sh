#!/usr/bin/env bash
# The sets of scripts/install-deps.sh: `build` (make release) is what compiling needs, `run`
# (make up) is only the broker and curl, `test` (make test) adds the test tools and the build set;
# `make test` says what it found or installed.
. "$(dirname "$0")/lib.sh"
unset TRANSPORT BROKER  # the run set depends on them

run=$(bash scripts/install-deps.sh run --list | tr '\n' ' ')
check "run set is mosquitto and curl (got: $run)" test "$run" = "mosquitto curl "
run=$(TRANSPORT=nats bash scripts/install-deps.sh run --list | tr '\n' ' ')
check "run set with TRANSPORT=nats is nats-server and curl (got: $run)" test "$run" = "nats-server curl "
run=$(BROKER=nats://127.0.0.1:4222 bash scripts/install-deps.sh run --list | tr '\n' ' ')
check "run set with BROKER=nats://... is nats-server and curl (got: $run)" test "$run" = "nats-server curl "
tests=$(bash scripts/install-deps.sh test --list | tr '\n' ' ')
for p in mosquitto nats-server prometheus chromium python3 curl util-linux pkg-config libssl-dev; do
  contains "test set has $p" "$tests" "(^| )$p( |$)"
done
build=$(bash scripts/install-deps.sh build --list | tr '\n' ' ')
check "build set is pkg-config and libssl-dev (got: $build)" test "$build" = "pkg-config libssl-dev "
out=$(bash scripts/install-deps.sh bogus 2>&1); rc=$?
check "an unknown set exits 2 (rc $rc)" test "$rc" -eq 2
# On this machine make test has already installed them: it says so in one line.
out=$(bash scripts/install-deps.sh test 2>&1); rc=$?
check "test set present: exit 0 (rc $rc)" test "$rc" -eq 0
contains "test set present: says which tools it found" "$out" "^install-deps: the test tools are present: .*libssl-dev.*mosquitto.*prometheus.*chromium.*tansu"
out=$(bash scripts/install-deps.sh run 2>&1); rc=$?
check "run set present: exit 0, silent (rc $rc, '$out')" test "$rc" -eq 0 -a -z "$out"
finish
