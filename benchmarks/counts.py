#!/usr/bin/env python3
"""Counts what one request (or published message) costs each process, in units that depend little
on other load on the machine: system calls (`strace -c -f` over a window), context switches
(voluntary and involuntary, all threads, from /proc/PID/task/*/status) and CPU µs (utime + stime
from /proc/PID/stat), per process: loadgen, worker, broker. Standard library only; uses
bench.py's process stack (a mosquitto or nats-server and a worker on free ports).

    python3 benchmarks/counts.py                      # rr at 10,000 req/s, mosquitto nodelay
    SCENARIO=pub RATE=20000 python3 benchmarks/counts.py
    BROKER_CONFIG=default python3 benchmarks/counts.py   # mosquitto's default (Nagle on)

Environment: SCENARIO (rr or pub), RATE, BROKER_CONFIG (nodelay or default, or nats), WINDOW (s of
the /proc window, default 8), STRACE_SEC (s of the strace window, default 10; 0: none), BIN, OUT
(a JSON file to write), NICE (niceness of the processes, e.g. -15 as root: on a machine busy with
other work they then run when they are ready, as on a quiet one; a starved process batches more
and understates its wake-ups; with a kernel that preempts lazily, FIFO=1 (SCHED_FIFO priority 1,
root) comes closer), LOADGEN_EXTRA / WORKER_EXTRA as in bench.py. The strace window
comes after the /proc window: strace slows what it traces, so CPU and switches are read without it.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

SCENARIO = os.environ.get("SCENARIO", "rr")
RATE = int(os.environ.get("RATE") or (10_000 if SCENARIO == "rr" else 20_000))
CONFIG = os.environ.get("BROKER_CONFIG", "nodelay")
WINDOW = float(os.environ.get("WINDOW") or 8)
STRACE_SEC = float(os.environ.get("STRACE_SEC") or 10)


def switches(pid):
    """(voluntary, involuntary) context switches of every thread of `pid`."""
    vol = invol = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except OSError:
            pass
    return vol, invol


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def parse_strace(text):
    """{syscall: calls} from `strace -c` output."""
    calls = {}
    for line in text.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls


def main():
    if os.environ.get("NICE"):
        os.nice(int(os.environ["NICE"]))  # inherited by every process started below
    if os.environ.get("FIFO"):
        # SCHED_FIFO (root): the measured processes preempt other work at once when they wake
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(os.environ["FIFO"])))
    transport = "nats" if CONFIG == "nats" else "mqtt"
    worker = SCENARIO == "rr"
    interval_ms = bench.INTERVAL_MS if worker else 1000
    duration = int(bench.WARMUP + 1 + WINDOW + STRACE_SEC + 4)
    stack = bench.Stack(f"counts-{SCENARIO}")
    ok = False
    try:
        url = stack.broker(transport, "nodelay" if transport == "nats" else CONFIG)
        if worker:
            stack.worker(url)
        settings = dict(SCENARIO=SCENARIO, VIRTUAL_CLIENTS=int(RATE * interval_ms / 1000),
                        INTERVAL_MS=interval_ms, CONNECTIONS=100, WARMUP_SEC=bench.WARMUP,
                        DURATION_SEC=duration, TIMEOUT_MS=5000)
        if not worker:
            settings["PAYLOAD_BYTES"] = 256
        lg, lport, report_path = stack.loadgen(url, **settings)
        bench.wait_for(lambda: bench.http_ok(lport, "/ready") or lg.poll() is not None, 60, "loadgen /ready")
        time.sleep(bench.WARMUP + 1)
        pids = {role: p.pid for role, p in stack.procs.items()}
        c0 = {r: bench.cpu_seconds(p) for r, p in pids.items()}
        s0 = {r: switches(p) for r, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(WINDOW)
        c1 = {r: bench.cpu_seconds(p) for r, p in pids.items()}
        s1 = {r: switches(p) for r, p in pids.items()}
        window = time.monotonic() - t0
        n = RATE * window
        res = {"scenario": SCENARIO, "rate": RATE, "broker_config": CONFIG, "window_s": round(window, 2),
               "bin": str(bench.BIN), "threads": {r: threads(p) for r, p in pids.items()}, "per_op": {}}
        for r in pids:
            res["per_op"][r] = {
                "cpu_us": round((c1[r] - c0[r]) / n * 1e6, 2),
                "voluntary_switches": round((s1[r][0] - s0[r][0]) / n, 3),
                "involuntary_switches": round((s1[r][1] - s0[r][1]) / n, 3),
            }
        if STRACE_SEC > 0:
            traced = [r for r in ("loadgen", "worker") if r in pids]
            procs = {}
            for r in traced:
                out = stack.dir / f"strace-{r}.txt"
                procs[r] = (subprocess.Popen(["timeout", "-s", "INT", str(STRACE_SEC), "strace", "-c", "-f",
                                              "-p", str(pids[r]), "-o", str(out)],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)
            for r, (p, out) in procs.items():
                p.wait()
                calls = parse_strace(out.read_text())
                n = RATE * STRACE_SEC
                res["per_op"][r]["syscalls"] = round(sum(calls.values()) / n, 3)
                res["per_op"][r]["syscalls_by_name"] = {
                    k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v / n >= 0.005}
        rc = lg.wait(timeout=duration + 60)
        rep = json.loads(report_path.read_text())
        res["report"] = {k: rep.get(k) for k in ("achieved_rate", "sent", "matched", "match_rate", "timeouts")}
        res["latency_us"] = {k: rep["latency_us"].get(k) for k in ("p50", "p90", "p99", "max")}
        res["schedule_lag_us"] = {k: rep["schedule_lag_us"].get(k) for k in ("p50", "p99")}
        res["loadgen_exit"] = rc
        ok = rc == 0
        text = json.dumps(res, indent=1)
        print(text)
        if os.environ.get("OUT"):
            Path(os.environ["OUT"]).write_text(text + "\n")
    finally:
        stack.close(keep_logs=not ok)


if __name__ == "__main__":
    main()
