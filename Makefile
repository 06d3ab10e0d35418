# mqtt-rr-bench: `make up` runs broker + worker + loadgen locally, `make test` runs every check.
# Any loadgen/worker variable passes through: make up VIRTUAL_CLIENTS=100000 INTERVAL_MS=10000
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Defaults for `make up` (sized for a 2-core machine: 100,000 clients at INTERVAL_MS=10000
# offer 10,000 req/s, which broker + worker + loadgen sustain with match rate >= 0.999).
VIRTUAL_CLIENTS ?= 100000
INTERVAL_MS     ?= 10000
CONNECTIONS     ?= 100
export VIRTUAL_CLIENTS INTERVAL_MS CONNECTIONS

.PHONY: help up up-fanout down stats logs test test-rust lint build release install-deps \
        benchmark benchmark-quick memory-1m fanout-bench fanout-memory clean

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

build: ## Debug build of every crate
	cargo build --workspace

release: ## Release build of loadgen, worker and the embedded broker
	cargo build --release -p loadgen -p worker -p rr-broker

install-deps: ## Install mosquitto (and the test tools) when root and missing
	@bash scripts/install-deps.sh

up: release ## Run broker (BROKER or local mosquitto/embedded) + worker + loadgen with live progress until Ctrl-C
	@bash scripts/up.sh

up-fanout: release ## Run the WebSocket fan-out scenario against a local mosquitto WebSocket listener
	@SCENARIO=fanout bash scripts/up.sh

down: ## Stop whatever `make up` started
	@bash scripts/down.sh

stats: ## Print loadgen and worker /stats
	@curl -fsS http://127.0.0.1:$${METRICS_PORT:-8090}/stats | python3 -m json.tool || true
	@curl -fsS http://127.0.0.1:$${WORKER_METRICS_PORT:-8080}/stats | python3 -m json.tool || true

logs: ## Show the logs of the processes `make up` started
	@tail -n 50 .run/*.log 2>/dev/null || echo "nothing running (no .run/*.log)"

lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

test-rust: ## The Rust test suite (integration tests start their own brokers on free ports)
	cargo test --workspace --no-fail-fast -- --test-threads=1

test: install-deps lint test-rust validate-deploy ## Everything CI runs: fmt, clippy, tests, offline deploy validation

memory-1m: release ## 1,000,000 virtual clients: loadgen resident memory (writes benchmarks/results/memory-1m.txt)
	@bash scripts/memory-1m.sh

benchmark: release ## Full benchmark suite (results in benchmarks/results/)
	@bash scripts/benchmark.sh

benchmark-quick: release ## 2-minute benchmark subset
	@QUICK=1 bash scripts/benchmark.sh

fanout-bench: release ## 15,000 WebSocket clients, results in benchmarks/results/fanout-15k.{json,md}
	@bash scripts/fanout-bench.sh

fanout-memory: release ## Loadgen memory per idle fan-out connection (benchmarks/results/fanout-memory.{json,md})
	@bash scripts/fanout-memory.sh

clean: down ## Remove build output and run state
	cargo clean
	rm -rf .run

include mk/deploy.mk
