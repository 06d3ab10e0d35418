"""Arrival times of the broker's segments to the loadgen's connections (AF_PACKET on lo, kernel
timestamps), rr at 10k req/s: how far apart do the answers of one burst arrive, and what would
reading them at a 1 ms tick with the kernel's coalesced RX timestamp do to each one's arrival?"""
import os, sys, socket, struct, time, json, subprocess, statistics, random
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import bench
CONFIG = os.environ.get("BROKER_CONFIG", "nodelay")
SEC = float(os.environ.get("SEC", 5))
if os.environ.get("FIFO"):
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
stack = bench.Stack("capture")
try:
    url = stack.broker("mqtt", CONFIG)
    bport = int(url.rsplit(":", 1)[1])
    stack.worker(url)
    lg, lport, rep = stack.loadgen(url, SCENARIO="rr", VIRTUAL_CLIENTS=100000, INTERVAL_MS=10000,
                                   CONNECTIONS=100, WARMUP_SEC=3, DURATION_SEC=int(SEC + 10), TIMEOUT_MS=5000)
    bench.wait_for(lambda: bench.http_ok(lport, "/ready"), 60, "ready")
    time.sleep(4)
    ss = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
    lgports = set()
    for line in ss.splitlines():
        if f"pid={lg.pid}," in line and f":{bport}" in line.split()[4]:
            lgports.add(int(line.split()[3].rsplit(":", 1)[1]))
    print("loadgen connections", len(lgports), file=sys.stderr)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind(("lo", 0))
    s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    s.settimeout(0.5)
    arr = {}
    end = time.monotonic() + SEC
    while time.monotonic() < end:
        try:
            data, anc, _, addr = s.recvmsg(256, socket.CMSG_SPACE(16))
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        ip = data[14:]
        if ip[9] != 6: continue
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:]
        sp, dp = struct.unpack("!HH", tcp[:4])
        doff = (tcp[12] >> 4) * 4
        plen = tot - ihl - doff
        if sp == bport and dp in lgports and plen > 0:
            ts = None
            for lvl, typ, d in anc:
                if typ == 35:
                    a, b = struct.unpack("qq", d[:16]); ts = a * 1e9 + b
            arr.setdefault(dp, []).append(ts)
finally:
    stack.close()
# simulate reads at a 1 ms tick (phase random): each segment's stamp = last segment of its
# connection that arrived before the tick at which it is read
errs = []
gaps = []
per_read = []
for trial in range(5):
    phase = random.random() * 1e6
    for dp, ts in arr.items():
        ts.sort()
        i = 0
        while i < len(ts):
            tick = ((ts[i] - phase) // 1e6 + 1) * 1e6 + phase
            j = i
            while j + 1 < len(ts) and ts[j + 1] < tick:
                j += 1
            for k in range(i, j + 1):
                errs.append((ts[j] - ts[k]) / 1e3)
            per_read.append(j - i + 1)
            i = j + 1
for dp, ts in arr.items():
    for a, b in zip(ts, ts[1:]):
        gaps.append((b - a) / 1e3)
errs.sort(); gaps.sort()
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
print(json.dumps({"config": CONFIG, "segments": sum(len(v) for v in arr.values()), "sec": SEC,
      "tick_error_us": {p: round(q(errs, p), 1) for p in (0.5, 0.9, 0.99, 0.999)} | {"max": round(errs[-1], 1), "mean": round(statistics.mean(errs), 1), "share_zero": round(sum(e == 0 for e in errs) / len(errs), 3)},
      "segments_per_tick_read": round(statistics.mean(per_read), 2),
      "gap_same_conn_us": {p: round(q(gaps, p), 1) for p in (0.01, 0.1, 0.5, 0.9)}}, indent=1))
