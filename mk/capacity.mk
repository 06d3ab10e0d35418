# The capacity instrument's target (included by the top-level Makefile): `make capacity` runs the
# capacity search (SCENARIO=capacity) against the local stack that `make up` starts (mosquitto or
# the embedded broker, and one worker), or against BROKER=... and whatever answers there. It
# prints the verdict, and writes report.json, report.html and capacity.svg (offered rate
# against p50/p99/match of every step) into the run directory (.run/runs/latest).
# Every search setting passes through: make capacity SLO_P99_MS=20 STEP_SEC=10 MAX_RATE=8000

.PHONY: capacity

##@ run
capacity: release ## Capacity search: highest rate within SLO_P99_MS/SLO_MATCH (local stack or BROKER=...); verdict, report, capacity.svg
	@SCENARIO=capacity bash scripts/up.sh
