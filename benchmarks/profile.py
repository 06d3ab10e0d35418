#!/usr/bin/env python3
"""Profiles one process of a benchmark scenario with `perf record -g` (Debian: linux-perf).

    python3 benchmarks/profile.py rr loadgen     # rr at 10,000 req/s, profile loadgen
    python3 benchmarks/profile.py pub loadgen    # publish-only at 20,000 msg/s
    python3 benchmarks/profile.py rr worker

Writes /tmp/perf-<scenario>-<role>.data and prints the top of `perf report --no-children`,
plus the syscall counts of the process over the same window (`perf trace -s` when available,
else `strace -c`). BIN, RATE and SECONDS override the defaults. BIN defaults to
target/profiling (`cargo build --profile profiling -p loadgen -p worker`: release code with the
debug info that call graphs need, which the release profile leaves out).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "profiling"))
import bench  # noqa: E402


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("rr", "pub") or sys.argv[2] not in ("loadgen", "worker", "broker"):
        sys.exit(__doc__)
    scenario, role = sys.argv[1], sys.argv[2]
    for b in ("loadgen", "worker"):
        if not (bench.BIN / b).exists():
            sys.exit(f"{bench.BIN / b} missing: cargo build --profile profiling -p loadgen -p worker (or set BIN)")
    rate = int(os.environ.get("RATE") or (bench.PUB_RATE if scenario == "pub" else bench.RR_RATE))
    seconds = int(os.environ.get("SECONDS") or 10)
    stack = bench.Stack(f"profile-{scenario}")
    try:
        bport = stack.broker()
        if scenario == "rr":
            stack.worker(bport)
        settings = dict(SCENARIO=scenario, VIRTUAL_CLIENTS=rate, INTERVAL_MS=1000, CONNECTIONS=100,
                        WARMUP_SEC=2, DURATION_SEC=seconds + 4)
        if scenario == "pub":
            settings["PAYLOAD_BYTES"] = 256
        lg, lport, _ = stack.loadgen(bport, **settings)
        bench.wait_for(lambda: bench.http_ok(lport, "/ready"), 60, "loadgen /ready")
        time.sleep(3)
        pid = stack.procs[role].pid
        out = f"/tmp/perf-{scenario}-{role}.data"
        subprocess.run(["perf", "record", "-F", "2000", "-g", "--call-graph", "dwarf,16384", "-o", out,
                        "-p", str(pid), "--", "sleep", str(seconds)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lg.wait(timeout=seconds + 60)
        report = subprocess.run(["perf", "report", "-i", out, "--no-children", "--stdio", "-g", "none",
                                 "--percent-limit", "0.7", "--sort", "dso,symbol"],
                                capture_output=True, text=True).stdout
        print("\n".join(line for line in report.splitlines() if line and not line.startswith("#")))
        print(f"\nprofile: {out}")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
