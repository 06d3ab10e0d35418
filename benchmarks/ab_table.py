#!/usr/bin/env python3
"""Summarises interleaved A/B runs of bench.py (pub and rr, one run per configuration each) as a
markdown table: median (min-max) over the runs of each variant.

    python3 benchmarks/ab_table.py LABEL=RESULTS_DIR[,RESULTS_DIR...] LABEL=...

Each RESULTS_DIR holds the benchmark-quick.json (or benchmark.json) of one bench.py run, or is
such a file.
"""

import json
import statistics
import sys
from pathlib import Path


def load(d):
    if Path(d).is_file():
        return json.loads(Path(d).read_text())
    for name in ("benchmark-quick.json", "benchmark.json"):
        p = Path(d) / name
        if p.exists():
            return json.loads(p.read_text())
    sys.exit(f"{d}: no benchmark-quick.json or benchmark.json")


def runs(doc, scenario, config):
    """The per-run records of `scenario` against mosquitto `config`."""
    sec = doc.get(scenario) or {}
    return ((sec.get("configs") or {}).get(config) or {}).get("runs") or []


# (row label, scenario, broker configuration, value of one run record, decimals)
ROWS = [
    ("pub 20k msg/s, nodelay: loadgen / broker", "pub", "nodelay",
     lambda r: r["ratio_loadgen_broker"], 3),
    ("pub 20k msg/s, nodelay: loadgen µs per message", "pub", "nodelay",
     lambda r: r["cpu_us_per_op"]["loadgen"], 2),
    ("pub 20k msg/s, default: loadgen / broker", "pub", "default",
     lambda r: r["ratio_loadgen_broker"], 3),
    ("rr 10k req/s, nodelay: loadgen / broker", "rr", "nodelay",
     lambda r: r["ratio_loadgen_broker"], 3),
    ("rr 10k req/s, nodelay: loadgen µs per request", "rr", "nodelay",
     lambda r: r["cpu_us_per_op"]["loadgen"], 2),
    ("rr 10k req/s, nodelay: worker / broker", "rr", "nodelay",
     lambda r: r["ratio_worker_broker"], 3),
    ("rr 10k req/s, default: loadgen / broker", "rr", "default",
     lambda r: r["ratio_loadgen_broker"], 3),
    ("rr 10k req/s, default: loadgen µs per request", "rr", "default",
     lambda r: r["cpu_us_per_op"]["loadgen"], 2),
    ("rr 10k req/s, default: worker / broker", "rr", "default",
     lambda r: r["ratio_worker_broker"], 3),
    ("rr 10k req/s, nodelay: p50 µs", "rr", "nodelay", lambda r: r["latency_us"]["p50"], 0),
    ("rr 10k req/s, nodelay: p99 µs", "rr", "nodelay", lambda r: r["latency_us"]["p99"], 0),
    ("rr 10k req/s, default: p50 µs", "rr", "default", lambda r: r["latency_us"]["p50"], 0),
]


def cell(values, decimals):
    if not values:
        return "-"
    f = f"{{:.{decimals}f}}"
    med = statistics.median(values)
    return f"{f.format(med)} ({f.format(min(values))}–{f.format(max(values))})"


def main(args):
    if not args or any("=" not in a for a in args):
        sys.exit(__doc__)
    variants = []
    for a in args:
        label, dirs = a.split("=", 1)
        variants.append((label, [load(d) for d in dirs.split(",") if d]))
    head = "| | " + " | ".join(f"{label} ({len(docs)} runs)" for label, docs in variants) + " |"
    lines = [head, "|---|" + "---|" * len(variants)]
    for label, scenario, config, get, decimals in ROWS:
        cells = []
        for _, docs in variants:
            vals = [get(r) for d in docs for r in runs(d, scenario, config)]
            cells.append(cell(vals, decimals))
        if all(c == "-" for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
