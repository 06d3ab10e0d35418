# mqtt-rr-bench: `make up` runs broker + worker + loadgen locally, `make test` runs every check.
# Any loadgen/worker variable passes through: make up VIRTUAL_CLIENTS=100000 INTERVAL_MS=10000
# `make help` lists the targets by group: a "##@ group" line starts a group, "## text" after a
# target describes it (scripts/help.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Defaults for `make up` (sized for a 2-core machine: 100,000 clients at INTERVAL_MS=10000
# offer 10,000 req/s, which broker + worker + loadgen sustain with match rate >= 0.999). The
# loadgen binary's own default is INTERVAL_MS=2000 (50,000 req/s); scripts/up.sh prints which
# one applies, using UP_DEFAULTED (the variables defaulted here rather than set by the user).
VIRTUAL_CLIENTS ?= 100000
INTERVAL_MS     ?= 10000
CONNECTIONS     ?= 100
UP_DEFAULTED    := $(strip $(foreach v,VIRTUAL_CLIENTS INTERVAL_MS CONNECTIONS,$(if $(filter file,$(origin $(v))),$(v))))
export VIRTUAL_CLIENTS INTERVAL_MS CONNECTIONS UP_DEFAULTED

.PHONY: help up up-fanout down stats logs test test-rust test-scripts lint build release \
        install-deps benchmark benchmark-quick benchmark-coalesce memory-1m memory-10m fanout-bench fanout-memory clean

##@ run
up: release ## Broker (BROKER, local mosquitto/embedded, or TRANSPORT=nats: nats-server) + worker + loadgen, live progress until Ctrl-C
	@bash scripts/up.sh

down: ## Stop whatever `make up` started
	@bash scripts/down.sh

up-fanout: release ## The WebSocket fan-out scenario against a local broker's WebSocket listener
	@SCENARIO=fanout bash scripts/up.sh

memory-1m: release ## 1,000,000 virtual clients, 30 s: loadgen resident memory (UPDATE_RESULTS=1: benchmarks/results/memory-1m.txt)
	@bash scripts/memory.sh 1m

memory-10m: release ## 10,000,000 virtual clients, 7 min, every client sends: loadgen resident memory (UPDATE_RESULTS=1: benchmarks/results/memory-10m.txt)
	@bash scripts/memory.sh 10m

benchmark: release ## Full benchmark suite (scratch dir; UPDATE_RESULTS=1: benchmarks/results/)
	@bash scripts/benchmark.sh

benchmark-quick: release ## 5-minute benchmark subset (scratch dir; UPDATE_RESULTS=1: benchmarks/results/)
	@QUICK=1 bash scripts/benchmark.sh

benchmark-coalesce: release ## 11 minutes: the worker's read coalescing (COALESCE_US) against its defaults, rr 10,000 req/s and latency at 1,000 (UPDATE_RESULTS=1: benchmarks/results/coalesce/)
	@bash scripts/coalesce-bench.sh

fanout-bench: release ## 15,000 WebSocket clients (UPDATE_RESULTS=1: benchmarks/results/fanout-15k.{json,md})
	@bash scripts/fanout-bench.sh

fanout-memory: release ## Loadgen memory per idle fan-out connection (UPDATE_RESULTS=1: benchmarks/results/)
	@bash scripts/fanout-memory.sh

##@ observe
logs: ## The logs of the current (or latest) run: .run/runs/latest/*.log
	@bash scripts/logs.sh

stats: ## Print loadgen and worker /stats
	@curl -fsS http://127.0.0.1:$${METRICS_PORT:-8090}/stats | python3 -m json.tool || true
	@curl -fsS http://127.0.0.1:$${WORKER_METRICS_PORT:-8080}/stats | python3 -m json.tool || true

##@ develop
test: install-deps lint test-rust validate-deploy test-scripts ## Everything CI runs: test tools, fmt, clippy, tests, deploy validation, script tests

install-deps: ## Install the test tools when missing and root: mosquitto, prometheus, chromium, ... (make up installs only mosquitto)
	@bash scripts/install-deps.sh test

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-rust: ## The Rust test suite (integration tests start their own brokers on free ports)
	@# the `make up` defaults exported above are not the binaries' defaults the tests check
	env -u VIRTUAL_CLIENTS -u INTERVAL_MS -u CONNECTIONS -u UP_DEFAULTED \
	  cargo test --workspace --no-fail-fast -- --test-threads=1

test-scripts: ## Shell tests of the scripts (scripts/tests/*.sh): run directories, k8s pre-flight, colour
	@bash scripts/tests/run-all.sh

build: ## Debug build of every crate
	cargo build --workspace

release: ## Release build of loadgen, worker and the embedded broker (the first one takes minutes, says so)
	@bash scripts/release.sh

help: ## List the targets by group
	@bash scripts/help.sh $(MAKEFILE_LIST)

clean: down ## Remove build output and run state
	cargo clean
	rm -rf .run

include mk/deploy.mk
include mk/capacity.mk
