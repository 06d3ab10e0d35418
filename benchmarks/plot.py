#!/usr/bin/env python3
"""Renders the ceiling steps of a benchmark JSON as an SVG (standard library only).

Top panel: offered rate against p50 and p99 latency (log scale) and match rate.
Bottom panel: CPU of broker, worker and loadgen (cores) at each step.

    python3 benchmarks/plot.py benchmarks/results/benchmark.json benchmarks/results/benchmark-ceiling.svg
"""

import json
import math
import sys
from xml.sax.saxutils import escape

W, H = 760, 620
LEFT, RIGHT = 70, 70
TOP_Y0, TOP_Y1 = 60, 330  # latency panel (top, bottom)
BOT_Y0, BOT_Y1 = 390, 560  # cpu panel
COLORS = {"p50": "#1f77b4", "p99": "#d62728", "match": "#2ca02c",
          "broker": "#7f3fbf", "worker": "#ff7f0e", "loadgen": "#17becf"}


def main(src, dst):
    res = json.load(open(src))
    steps = res["ceiling"]["steps"]
    m = res["machine"]
    rates = [s["offered_rate"] / 1000 for s in steps]
    x_max = max(rates) * 1.08 if rates else 1
    x = lambda r: LEFT + (W - LEFT - RIGHT) * r / x_max
    lat_min, lat_max = 0.1, 10_000.0  # ms, log scale
    ly = lambda ms: TOP_Y1 - (TOP_Y1 - TOP_Y0) * (math.log10(min(max(ms, lat_min), lat_max)) - math.log10(lat_min)) / (math.log10(lat_max) - math.log10(lat_min))
    matches = [s["match_rate"] for s in steps]
    m_lo = min([0.99] + matches)
    m_lo = math.floor(m_lo * 100) / 100
    my = lambda v: TOP_Y1 - (TOP_Y1 - TOP_Y0) * (v - m_lo) / (1.0 - m_lo)
    cores_max = max([1.0] + [c for s in steps for c in s["cpu_cores"].values()])
    cores_max = math.ceil(cores_max * 2) / 2
    cy = lambda c: BOT_Y1 - (BOT_Y1 - BOT_Y0) * c / cores_max

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">', f'<rect width="{W}" height="{H}" fill="white"/>']
    title = (f"Request/response through mosquitto ({m['nproc']} cores, {m['cpu_model']}, "
             f"git {m['git_describe']})")
    o.append(f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>')
    ceiling = res["ceiling"].get("ceiling_rate")
    at_least = "at least " if res["ceiling"].get("ceiling_is_lower_bound") else ""
    sub = (f"ceiling {at_least}{ceiling:,.0f} req/s ({res['ceiling']['criterion']})" if ceiling
           else f"no step met {res['ceiling']['criterion']}")
    o.append(f'<text x="{W / 2}" y="40" text-anchor="middle">{escape(sub)}; {m["date_utc"]}, {m["mode"]} run</text>')

    def frame(y0, y1):
        o.append(f'<rect x="{LEFT}" y="{y0}" width="{W - LEFT - RIGHT}" height="{y1 - y0}" fill="none" stroke="#444"/>')

    def xaxis(y1):
        step = 5 if x_max <= 60 else 10
        r = 0
        while r <= x_max:
            o.append(f'<line x1="{x(r)}" y1="{y1}" x2="{x(r)}" y2="{y1 + 4}" stroke="#444"/>')
            o.append(f'<text x="{x(r)}" y="{y1 + 17}" text-anchor="middle">{r:g}k</text>')
            r += step

    def polyline(pts, color, dash=""):
        if len(pts) > 1:
            p = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            o.append(f'<polyline points="{p}" fill="none" stroke="{color}" stroke-width="2" {dash}/>')
        for a, b in pts:
            o.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" fill="{color}"/>')

    # Latency panel.
    frame(TOP_Y0, TOP_Y1)
    for ms in (0.1, 1, 10, 100, 1000, 10000):
        y = ly(ms)
        o.append(f'<line x1="{LEFT}" y1="{y}" x2="{W - RIGHT}" y2="{y}" stroke="#ddd"/>')
        o.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{ms:g}</text>')
    o.append(f'<text x="18" y="{(TOP_Y0 + TOP_Y1) / 2}" transform="rotate(-90 18 {(TOP_Y0 + TOP_Y1) / 2})" text-anchor="middle">latency (ms, log)</text>')
    y50 = ly(50)
    o.append(f'<line x1="{LEFT}" y1="{y50}" x2="{W - RIGHT}" y2="{y50}" stroke="{COLORS["p99"]}" stroke-dasharray="4,4" opacity="0.6"/>')
    o.append(f'<text x="{LEFT + 4}" y="{y50 - 4}" fill="{COLORS["p99"]}">p99 limit 50 ms</text>')
    for v in (m_lo, (m_lo + 1) / 2, 1.0):
        o.append(f'<text x="{W - RIGHT + 6}" y="{my(v) + 4}" fill="{COLORS["match"]}">{v:.3f}</text>')
    o.append(f'<text x="{W - 16}" y="{(TOP_Y0 + TOP_Y1) / 2}" transform="rotate(90 {W - 16} {(TOP_Y0 + TOP_Y1) / 2})" text-anchor="middle" fill="{COLORS["match"]}">match rate</text>')
    ym = my(0.999)
    o.append(f'<line x1="{LEFT}" y1="{ym}" x2="{W - RIGHT}" y2="{ym}" stroke="{COLORS["match"]}" stroke-dasharray="2,3" opacity="0.6"/>')
    if ceiling:
        xc = x(ceiling / 1000)
        o.append(f'<line x1="{xc}" y1="{TOP_Y0}" x2="{xc}" y2="{BOT_Y1}" stroke="#555" stroke-dasharray="6,3"/>')
        o.append(f'<text x="{xc + 4}" y="{TOP_Y0 + 14}">ceiling</text>')
    polyline([(x(r), ly(s["latency_us"]["p50"] / 1000)) for r, s in zip(rates, steps)], COLORS["p50"])
    polyline([(x(r), ly(s["latency_us"]["p99"] / 1000)) for r, s in zip(rates, steps)], COLORS["p99"])
    polyline([(x(r), my(max(s["match_rate"], m_lo))) for r, s in zip(rates, steps)], COLORS["match"],
             'stroke-dasharray="6,3"')
    xaxis(TOP_Y1)
    lx = LEFT + 10
    for key, label in (("p50", "p50 latency"), ("p99", "p99 latency"), ("match", "match rate (right axis)")):
        o.append(f'<line x1="{lx}" y1="{TOP_Y0 + 14}" x2="{lx + 18}" y2="{TOP_Y0 + 14}" stroke="{COLORS[key]}" stroke-width="3"/>')
        o.append(f'<text x="{lx + 22}" y="{TOP_Y0 + 18}">{label}</text>')
        lx += 40 + 7 * len(label)

    # CPU panel.
    frame(BOT_Y0, BOT_Y1)
    c = 0.0
    while c <= cores_max + 1e-9:
        y = cy(c)
        o.append(f'<line x1="{LEFT}" y1="{y}" x2="{W - RIGHT}" y2="{y}" stroke="#ddd"/>')
        o.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{c:g}</text>')
        c += 0.5
    o.append(f'<text x="18" y="{(BOT_Y0 + BOT_Y1) / 2}" transform="rotate(-90 18 {(BOT_Y0 + BOT_Y1) / 2})" text-anchor="middle">CPU (cores)</text>')
    for role in ("broker", "worker", "loadgen"):
        polyline([(x(r), cy(s["cpu_cores"].get(role, 0))) for r, s in zip(rates, steps)], COLORS[role])
    xaxis(BOT_Y1)
    o.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{BOT_Y1 + 36}" text-anchor="middle">offered rate (requests/s)</text>')
    lx = LEFT + 10
    for role in ("broker", "worker", "loadgen"):
        o.append(f'<line x1="{lx}" y1="{BOT_Y0 + 14}" x2="{lx + 18}" y2="{BOT_Y0 + 14}" stroke="{COLORS[role]}" stroke-width="3"/>')
        o.append(f'<text x="{lx + 22}" y="{BOT_Y0 + 18}">{role}</text>')
        lx += 90
    o.append("</svg>")
    open(dst, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
