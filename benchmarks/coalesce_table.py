#!/usr/bin/env python3
"""Summary table of `make benchmark-coalesce` (scripts/coalesce-bench.sh): for each worker variant,
rr at 10,000 req/s per mosquitto configuration (median (min-max) of the runs) and latency at
1,000 req/s. Usage: coalesce_table.py RESULTS_DIR "name:K=V,K=V name2:..."."""

import json
import statistics
import sys
from pathlib import Path


def spread(xs, fmt="{:.3f}"):
    xs = sorted(xs)
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(xs[0])}-{fmt.format(xs[-1])})"


def main():
    out, variants = Path(sys.argv[1]), sys.argv[2].split()
    machine = None
    print("| worker settings | mosquitto | loadgen / broker | worker / broker | worker µs per request "
          "| worker switches per request | broker µs per request | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        name, _, extra = v.partition(":")
        d = json.loads((out / name / "benchmark.json").read_text())
        machine = machine or d.get("machine", {})
        for config, c in d["rr"]["configs"].items():
            runs = c["runs"]
            print(f"| {extra or 'defaults'} | {config} "
                  f"| {spread([r['ratio_loadgen_broker'] for r in runs])} "
                  f"| {spread([r['ratio_worker_broker'] for r in runs])} "
                  f"| {spread([r['cpu_us_per_op']['worker'] for r in runs], '{:.1f}')} "
                  f"| {spread([r['context_switches_per_op']['worker'] for r in runs], '{:.2f}')} "
                  f"| {spread([r['cpu_us_per_op']['broker'] for r in runs], '{:.1f}')} "
                  f"| {spread([r['latency_us']['p50'] / 1000 for r in runs], '{:.2f}')} "
                  f"| {spread([r['latency_us']['p99'] / 1000 for r in runs], '{:.1f}')} |")
    print()
    print("| worker settings | 1,000 req/s p50 / p99 µs (loadgen+worker) | echo pair round trip p50 / p99 µs "
          "| coalesced wake-ups |")
    print("|---|---|---|---|")
    for name in ("latency-default", "latency-coalesce300"):
        f = out / name / "benchmark.json"
        if not f.exists():
            continue
        runs = json.loads(f.read_text())["latency"]["runs"]
        lw = [r["loadgen_worker"]["latency_us"] for r in runs]
        echo = [r["echo_pair"]["latency_us"] for r in runs]
        print(f"| {'COALESCE_US=300' if 'coalesce' in name else 'defaults'} "
              f"| {spread([x['p50'] for x in lw], '{:.0f}')} / {spread([x['p99'] for x in lw], '{:.0f}')} "
              f"| {spread([x['p50'] for x in echo], '{:.0f}')} / {spread([x['p99'] for x in echo], '{:.0f}')} "
              f"| {', '.join(str(r['loadgen_worker'].get('worker_coalesced_wakeups', '-')) for r in runs)} |")
    print()
    print(f"Median (min-max) of the runs; revision {machine.get('git_revision', '?')[:7]}, "
          f"started {machine.get('date_utc', '?')}, {machine.get('mosquitto', '')}.")


if __name__ == "__main__":
    main()
