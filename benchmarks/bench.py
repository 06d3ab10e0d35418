#!/usr/bin/env python3
"""Runs the performance scenarios of issue 6 (called by scripts/benchmark.sh; standard library only).

Every run starts its own mosquitto or nats-server (and worker) on free ports, runs loadgen with a fixed
schedule, and reads the CPU time (utime + stime from /proc/<pid>/stat) of every process over the
same window inside loadgen's measured window. Scenarios:

  pub      publish-only, 100 connections, 256-byte payloads, QoS 0, 20,000 msg/s: loadgen/broker and
           us of CPU per message of each process
  rr       request/response at 10,000 req/s with one worker (MODE=health): loadgen/broker, worker/broker
           and us of CPU (and context switches) per request of each process
           pub and rr run against mosquitto with `set_tcp_nodelay true` ("nodelay", what `make up`
           uses) and with its default configuration ("default", Nagle on): BROKER_CONFIGS
  ceiling  rr at stepped offered rates until match rate < 0.999 or p99 >= 50 ms; CPU of all three
  latency  rr at 1,000 req/s against a minimal pair of rumqttc clients echoing (examples/echo_pair.rs)
  memory   scripts/memory.sh 1m (1,000,000 virtual clients, every one sends), plus the fanout helper's results if present
  nats     rr at 10,000 req/s over NATS (nats-server from Debian): loadgen/nats-server, worker/nats-server

Environment: QUICK=1 (the shorter subset), SCENARIOS=pub,rr,... (default: all; memory only in
full mode), REPEAT (runs of pub, rr, latency and nats per configuration; min / median / max
reported; default 3), BROKER_CONFIGS (mosquitto configurations of pub and rr, default
nodelay,default), BIN (directory
of the release binaries, default target/release), ECHO_PAIR (path of the echo_pair example),
RESULTS_DIR (default benchmarks/results; scripts/benchmark.sh passes a scratch run directory
unless UPDATE_RESULTS=1), CEILING_RATES (comma-separated steps), LOADGEN_EXTRA / WORKER_EXTRA (K=V,K=V settings added to
every loadgen / worker, for experiments), FIFO (SCHED_FIFO priority of every process started, e.g. 1,
root: they run as soon as they wake, ahead of other work on the machine), NICE (niceness of every
started process's autogroup, e.g. -20: each runs in a session of its own, so a plain nice would
not weigh it against other sessions' work). Ceiling steps also sample, every 100 ms, where bytes
wait (`Queues`: the broker's unread input from loadgen and from worker connections, the
clients' unread input, the worker's request queue).
"""

import csv
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BIN") or ROOT / "target" / "release")
COMMITTED = ROOT / "benchmarks" / "results"
RESULTS = Path(os.environ.get("RESULTS_DIR") or COMMITTED)
QUICK = os.environ.get("QUICK", "0") not in ("", "0")
REPEAT = int(os.environ.get("REPEAT") or 3)
ALL = ["pub", "rr", "ceiling", "latency", "nats", "kafka"] + ([] if QUICK else ["memory"])
SCENARIOS = [s for s in (os.environ.get("SCENARIOS") or ",".join(ALL)).split(",") if s]
MOSQUITTO = os.environ.get("MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
NATS_SERVER = os.environ.get("NATS_SERVER") or shutil.which("nats-server") or "/usr/sbin/nats-server"
TANSU = (os.environ.get("TANSU_BIN") or shutil.which("tansu")
         or str(Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo") / "bin" / "tansu"))
ECHO_PAIR = Path(os.environ.get("ECHO_PAIR") or BIN / "examples" / "echo_pair")
CLK = os.sysconf("SC_CLK_TCK")
FIFO = int(os.environ.get("FIFO") or 0)  # SCHED_FIFO priority of every process (0: normal scheduling)
# niceness of every started process's autogroup: each runs in a session of its own, so (with the
# kernel's autogroups) a plain nice would only weigh it against itself, not against other work
NICE = os.environ.get("NICE")
PREFIX = "benchmark-quick" if QUICK else "benchmark"

# Durations (seconds): warm-up excluded from loadgen's statistics, then the measured window.
WARMUP = 3
DUR = {"pub": 10 if QUICK else 15, "rr": 10 if QUICK else 15, "ceiling": 8 if QUICK else 12,
       "latency": 8 if QUICK else 15, "nats": 10 if QUICK else 15, "kafka": 10 if QUICK else 15}
# mosquitto configurations: the broker's Nagle setting moves every ratio (with Nagle on it
# coalesces small writes, so its consumers wake less and it spends less per message)
BROKER_CONFIGS = {"nodelay": "set_tcp_nodelay true\n", "default": ""}
RUN_CONFIGS = [c for c in (os.environ.get("BROKER_CONFIGS") or "nodelay,default").split(",") if c]
for _c in RUN_CONFIGS:
    if _c not in BROKER_CONFIGS:
        sys.exit(f"BROKER_CONFIGS: unknown configuration '{_c}' (accepted: {', '.join(BROKER_CONFIGS)})")
PUB_RATE = 20_000
RR_RATE = 10_000
LATENCY_RATE = 1_000
CEILING_RATES = [10_000, 20_000, 30_000, 40_000, 50_000] if QUICK else \
    [10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 45_000, 50_000, 60_000, 70_000, 80_000]
if os.environ.get("CEILING_RATES"):
    CEILING_RATES = [int(r) for r in os.environ["CEILING_RATES"].split(",")]
MATCH_MIN = 0.999
P99_MAX_US = 50_000
INTERVAL_MS = 10_000  # rr schedules: VIRTUAL_CLIENTS = rate * INTERVAL_MS / 1000


def log(msg):
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def extra_env(var):
    """`K=V,K=V` from the environment variable `var` (e.g. LOADGEN_EXTRA=PUBLISH_WORKERS=2)."""
    pairs = [kv.split("=", 1) for kv in (os.environ.get(var) or "").split(",") if "=" in kv]
    return {k.strip(): v.strip() for k, v in pairs}


def switches(pid):
    """Context switches (voluntary + involuntary) of all threads of a process: its wake-ups."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def base_env(**extra):
    """A clean environment (nothing leaks in from the caller's loadgen/worker settings)."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "RUST_LOG") if k in os.environ}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def http_ok(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Stack:
    """The processes of one run; stopped (and their logs kept on failure) by `close`."""

    def __init__(self, name):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.procs = {}

    def spawn(self, role, argv, env, cwd=ROOT):
        out = open(self.dir / f"{role}.log", "w")
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=cwd)
        self.procs[role] = p
        if NICE:
            try:
                Path(f"/proc/{p.pid}/autogroup").write_text(NICE)
            except OSError as e:
                log(f"NICE={NICE}: cannot set the autogroup niceness of {role}: {e}")
        return p

    def broker(self, transport="mqtt", config="nodelay"):
        """mosquitto (or nats-server) on a free port; returns the URL clients use. `config`:
        a key of BROKER_CONFIGS (mosquitto only)."""
        port = free_port()
        cwd, env = ROOT, base_env()
        if transport == "nats":
            argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port)]
        elif transport == "kafka":
            # tansu reads its settings from .env in its working directory (memory storage)
            listener = f"tcp://127.0.0.1:{port}"
            (self.dir / ".env").write_text(f"LISTENER_URL={listener}\nADVERTISED_LISTENER_URL={listener}\n"
                                           "STORAGE_ENGINE=memory://tansu/\n")
            argv, cwd, env = [TANSU, "broker", "--silent"], self.dir, {"PATH": os.environ.get("PATH", "")}
        else:
            conf = self.dir / "mosquitto.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                            "max_queued_messages 100000\n" + BROKER_CONFIGS[config])
            argv = [MOSQUITTO, "-c", str(conf)]
        p = self.spawn("broker", argv, env, cwd)

        def listening():
            if p.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited: {(self.dir / 'broker.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False
        wait_for(listening, 10, argv[0])
        return f"{transport}://127.0.0.1:{port}"

    def worker(self, broker, **extra):
        port = free_port()
        env = base_env(BROKER=broker, METRICS_PORT=port,
                       METRICS_ADDR="127.0.0.1", MODE="health", INSTANCE_ID="bench",
                       **{**extra, **extra_env("WORKER_EXTRA")})
        self.spawn("worker", [str(BIN / "worker")], env)
        wait_for(lambda: http_ok(port, "/ready"), 30, "worker /ready")
        return port

    def loadgen(self, broker, **settings):
        port = free_port()
        report = self.dir / "report.json"
        env = base_env(BROKER=broker, METRICS_PORT=port,
                       METRICS_ADDR="127.0.0.1", PROGRESS_SEC=0, INSTANCE_ID="bench",
                       REPORT_JSON=report, **{**settings, **extra_env("LOADGEN_EXTRA")})
        p = self.spawn("loadgen", [str(BIN / "loadgen")], env)
        return p, port, report

    def close(self, keep_logs=False):
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if keep_logs:
            log(f"logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Queues(threading.Thread):
    """Where bytes wait, every 100 ms (from /proc/net/tcp, no process started): unread in the
    broker's sockets from the loadgen's and from the worker's connections (a busy broker reads
    behind), unread in the loadgen's and the worker's own sockets, and the worker's request queue
    (its /stats). Shows which hop a latency tail builds up in."""

    def __init__(self, broker_port, pids, worker_port):
        super().__init__(daemon=True)
        self.port, self.pids, self.wport = broker_port, pids, worker_port
        self.stop, self.rows, self.owner = threading.Event(), [], {}

    @staticmethod
    def sockets():
        """(local port, remote port, unread bytes, socket inode) of every established TCP socket."""
        out = []
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                x = line.split()
                if x[3] != "01":
                    continue
                out.append((int(x[1].split(":")[1], 16), int(x[2].split(":")[1], 16),
                            int(x[4].split(":")[1], 16), x[9]))
        return out

    def owners(self, socks):
        """local port of each client socket of the broker -> "loadgen" or "worker"."""
        inodes = {}
        for role, pid in self.pids.items():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    except OSError:
                        continue
                    if link.startswith("socket:["):
                        inodes[link[8:-1]] = role
            except OSError:
                pass
        for lp, rp, _, ino in socks:
            if rp == self.port and ino in inodes:
                self.owner[lp] = inodes[ino]

    def run(self):
        while not self.stop.wait(0.1):
            socks = self.sockets()
            if not self.owner:
                self.owners(socks)
            row = {}
            for lp, rp, unread, _ in socks:
                if lp == self.port and rp in self.owner:
                    key = f"broker_unread_from_{self.owner[rp]}"
                elif rp == self.port and lp in self.owner:
                    key = f"{self.owner[lp]}_unread"
                else:
                    continue
                total, deepest = row.get(key, (0, 0))
                row[key] = (total + unread, max(deepest, unread))
            if self.wport:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.wport}/stats", timeout=0.5) as r:
                        row["worker_queue"] = (json.loads(r.read()).get("queue_depth", 0), 0)
                except (OSError, ValueError):
                    pass
            self.rows.append(row)

    def summary(self):
        """bytes (requests for worker_queue): mean and max of the total, max of the deepest socket."""
        keys = sorted({k for r in self.rows for k in r})
        res = {}
        for k in keys:
            tot = [r.get(k, (0, 0))[0] for r in self.rows]
            res[k] = {"mean": round(statistics.mean(tot)), "max": max(tot)}
            if k != "worker_queue":
                res[k]["deepest_socket_max"] = max(r.get(k, (0, 0))[1] for r in self.rows)
        return {"samples": len(self.rows), **res}


def run_loadgen(name, scenario, rate, duration, payload=None, worker=False, interval_ms=INTERVAL_MS,
                transport="mqtt", broker_config="nodelay", connections=100, queues=False):
    """One run: broker (+ worker) + loadgen; CPU of each process over the same window; with
    `queues`, where bytes wait over that window (`Queues`)."""
    stack = Stack(name)
    ok = False
    try:
        bport = stack.broker(transport, broker_config)
        wport = stack.worker(bport) if worker else None
        settings = dict(SCENARIO=scenario, VIRTUAL_CLIENTS=int(rate * interval_ms / 1000),
                        INTERVAL_MS=interval_ms, CONNECTIONS=connections, WARMUP_SEC=WARMUP,
                        DURATION_SEC=duration, TIMEOUT_MS=5000)
        if payload:
            settings["PAYLOAD_BYTES"] = payload
        lg, lport, report_path = stack.loadgen(bport, **settings)
        wait_for(lambda: http_ok(lport, "/ready") or lg.poll() is not None, 60, "loadgen /ready")
        if lg.poll() is not None:
            raise RuntimeError(f"loadgen exited early: {(stack.dir / 'loadgen.log').read_text()[-2000:]}")
        # The measured window opens WARMUP s after loadgen's start (just before /ready).
        time.sleep(WARMUP + 0.5)
        pids = {role: p.pid for role, p in stack.procs.items()}
        sampler = None
        if queues:
            sampler = Queues(int(bport.rsplit(":", 1)[1]), {r: pids[r] for r in ("loadgen", "worker") if r in pids},
                             wport)
            sampler.start()
        c0 = {r: cpu_seconds(pid) for r, pid in pids.items()}
        s0 = {r: switches(pid) for r, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(duration - 1.0)
        c1 = {r: cpu_seconds(pid) for r, pid in pids.items()}
        s1 = {r: switches(pid) for r, pid in pids.items()}
        window = time.monotonic() - t0
        if sampler:
            sampler.stop.set()
            sampler.join()
        rc = lg.wait(timeout=duration + 60)
        if rc != 0:
            raise RuntimeError(f"loadgen exit {rc}: {(stack.dir / 'loadgen.log').read_text()[-2000:]}")
        rep = json.loads(report_path.read_text())
        cpu = {r: round(c1[r] - c0[r], 3) for r in pids}
        lat = rep["latency_us"]
        # messages (pub) or requests (rr) in the CPU window
        done = max(rep["achieved_rate"] * window, 1)
        res = {
            "name": name, "scenario": scenario,
            "broker_config": broker_config if transport == "mqtt" else transport,
            "offered_rate": rep["offered_rate"],
            "achieved_rate": round(rep["achieved_rate"], 1), "sent": rep["sent"],
            "matched": rep["matched"], "match_rate": rep["match_rate"], "timeouts": rep["timeouts"],
            "skipped": rep["skipped"], "publish_errors": rep["publish_errors"],
            "reconnects": rep["reconnects"],
            "latency_us": {k: lat.get(k) for k in ("p50", "p90", "p99", "max", "mean")},
            "schedule_lag_p99_us": rep["schedule_lag_us"].get("p99"),
            "schedule_lag_us": {k: rep["schedule_lag_us"].get(k) for k in ("p50", "p99", "p999", "max", "mean")},
            "cpu_window_s": round(window, 3), "cpu_s": cpu,
            "cpu_cores": {r: round(v / window, 3) for r, v in cpu.items()},
            "context_switches_per_s": {r: round((s1[r] - s0[r]) / window) for r in pids},
            "cpu_us_per_op": {r: round(v / done * 1e6, 2) for r, v in cpu.items()},
            "context_switches_per_op": {r: round((s1[r] - s0[r]) / done, 3) for r in pids},
        }
        if sampler:
            res["queues"] = sampler.summary()
        b = cpu.get("broker") or 0
        res["ratio_loadgen_broker"] = round(cpu["loadgen"] / b, 3) if b else None
        if worker:
            res["ratio_worker_broker"] = round(cpu["worker"] / b, 3) if b else None
            # wake-ups that waited COALESCE_US (0 when it is off or not taken)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{wport}/stats", timeout=2) as r:
                    res["worker_coalesced_wakeups"] = json.loads(r.read()).get("coalesced_wakeups")
            except (OSError, ValueError):
                res["worker_coalesced_wakeups"] = None
        ok = True
        return res
    finally:
        stack.close(keep_logs=not ok)


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def spread(vals):
    """min / median / max of the values that exist."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"min": round(min(vals), 3), "median": round(statistics.median(vals), 3),
            "max": round(max(vals), 3)}


def fmt(s):
    return "-" if s is None else f"{s['min']} / {s['median']} / {s['max']}"


def per_process(runs, key, roles):
    """spread of `run[key][role]` for each role."""
    return {r: spread([run[key].get(r) for run in runs]) for r in roles}


def pub_config(config):
    runs = []
    for i in range(REPEAT):
        r = run_loadgen(f"pub-{config}-{i}", "pub", PUB_RATE, DUR["pub"], payload=256,
                        interval_ms=1000, broker_config=config)
        log(f"pub {config} #{i}: loadgen {r['cpu_s']['loadgen']} s, broker {r['cpu_s']['broker']} s, "
            f"ratio {r['ratio_loadgen_broker']}, us per message: loadgen {r['cpu_us_per_op']['loadgen']} "
            f"broker {r['cpu_us_per_op']['broker']}; achieved {r['achieved_rate']}/s")
        runs.append(r)
    roles = ("loadgen", "broker")
    return {"broker_config": config, "repeats": len(runs),
            "ratio_loadgen_broker": spread([r["ratio_loadgen_broker"] for r in runs]),
            "cpu_us_per_msg": per_process(runs, "cpu_us_per_op", roles),
            "context_switches_per_msg": per_process(runs, "context_switches_per_op", roles),
            "runs": runs}


KAFKA_CONNECTIONS = 4


def scenario_kafka():
    """The Kafka producer (issue 16): pub at PUB_RATE of 512-byte messages to tansu over
    KAFKA_CONNECTIONS producers, loadgen/tansu CPU over the same window, REPEAT runs. Skipped
    (with a note) when tansu is not installed."""
    if not Path(TANSU).exists():
        log(f"kafka: tansu not found at {TANSU}; section skipped (scripts/install-deps.sh installs it)")
        return {"skipped": f"tansu not found at {TANSU}"}
    runs = []
    for i in range(REPEAT):
        r = run_loadgen(f"kafka-pub-{i}", "pub", PUB_RATE, DUR["kafka"], payload=512, interval_ms=1000,
                        transport="kafka", connections=KAFKA_CONNECTIONS)
        log(f"kafka pub #{i}: loadgen {r['cpu_s']['loadgen']} s, tansu {r['cpu_s']['broker']} s, "
            f"ratio {r['ratio_loadgen_broker']}, us per message: loadgen {r['cpu_us_per_op']['loadgen']} "
            f"tansu {r['cpu_us_per_op']['broker']}; achieved {r['achieved_rate']}/s")
        runs.append(r)
    roles = ("loadgen", "broker")
    return {"target": "loadgen/tansu <= 0.5", "rate": PUB_RATE, "payload_bytes": 512,
            "transport": "kafka", "broker": "tansu 0.6 (memory storage)",
            "connections": KAFKA_CONNECTIONS, "repeats": len(runs),
            "ratio_loadgen_broker": spread([r["ratio_loadgen_broker"] for r in runs]),
            "cpu_us_per_msg": per_process(runs, "cpu_us_per_op", roles),
            "achieved_rate": spread([r["achieved_rate"] for r in runs]),
            "consumers": kafka_consumers(),
            "runs": runs}


KAFKA_CONSUMERS = 20
KAFKA_FANOUT_RATE = 2000


def stats_json(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2) as r:
        return json.loads(r.read())


def kafka_consumers():
    """The scaling-test shape's consumers (issue 16): one loadgen with KAFKA_CONSUMERS Kafka
    consumers (FANOUT_ROLE=subscribe, each in a group of its own, 4 partitions) and one
    publishing KAFKA_FANOUT_RATE msg/s of 512 B over 100 subjects (FANOUT_ROLE=publish), both
    against tansu; the consumers' process CPU per delivered message over the same window."""
    runs = []
    for i in range(REPEAT):
        stack = Stack(f"kafka-consumers-{i}")
        ok = False
        try:
            url = stack.broker("kafka")
            common = dict(SCENARIO="fanout", SUBJECTS=100, KAFKA_PARTITIONS=4, PAYLOAD_BYTES=512,
                          METRICS_ADDR="127.0.0.1", PROGRESS_SEC=0, WARMUP_SEC=1)
            sport = free_port()
            sub = stack.spawn("subscribers", [str(BIN / "loadgen")], base_env(
                **common, FANOUT_ROLE="subscribe", GATEWAY_URLS=url, CLIENTS=KAFKA_CONSUMERS,
                CONNECT_RATE=100, DURATION_SEC=DUR["kafka"] + 30, METRICS_PORT=sport,
                INSTANCE_ID="bench-sub"))
            wait_for(lambda: http_ok(sport, "/ready") or sub.poll() is not None, 90, "consumers /ready")
            if sub.poll() is not None:
                raise RuntimeError(f"consumers exited: {(stack.dir / 'subscribers.log').read_text()[-2000:]}")
            stack.spawn("publisher", [str(BIN / "loadgen")], base_env(
                **common, FANOUT_ROLE="publish", PUBLISH_BROKER=url, PUBLISH_RATE=KAFKA_FANOUT_RATE,
                DURATION_SEC=DUR["kafka"] + 2, METRICS_PORT=free_port(), INSTANCE_ID="bench-pub"))
            time.sleep(3)
            pids = {role: p.pid for role, p in stack.procs.items()}
            c0 = {r: cpu_seconds(pid) for r, pid in pids.items()}
            n0, t0 = stats_json(sport)["received"], time.monotonic()
            time.sleep(DUR["kafka"] - 2)
            c1 = {r: cpu_seconds(pid) for r, pid in pids.items()}
            st = stats_json(sport)
            window = time.monotonic() - t0
            delivered = st["received"] - n0
            cpu = {r: round(c1[r] - c0[r], 3) for r in pids}
            r = {"name": f"kafka-consumers-{i}", "consumers": KAFKA_CONSUMERS,
                 "publish_rate": KAFKA_FANOUT_RATE, "cpu_window_s": round(window, 3), "cpu_s": cpu,
                 "delivered": delivered, "delivered_rate": round(delivered / window, 1),
                 "lost": st["lost"], "duplicates": st["duplicates"],
                 "kafka_consumers": st.get("kafka_consumers"),
                 "consumers_cpu_us_per_delivered_msg": round(cpu["subscribers"] / max(delivered, 1) * 1e6, 2),
                 "tansu_cpu_us_per_delivered_msg": round(cpu["broker"] / max(delivered, 1) * 1e6, 2)}
            log(f"kafka consumers #{i}: {KAFKA_CONSUMERS} consumers, {r['delivered_rate']} deliveries/s, "
                f"consumers {r['consumers_cpu_us_per_delivered_msg']} us CPU per delivered message, "
                f"tansu {r['tansu_cpu_us_per_delivered_msg']} us; lost {r['lost']}")
            runs.append(r)
            ok = True
        finally:
            stack.close(keep_logs=not ok)
    return {"consumers": KAFKA_CONSUMERS, "publish_rate": KAFKA_FANOUT_RATE, "subjects": 100,
            "partitions": 4, "payload_bytes": 512, "repeats": len(runs),
            "consumers_cpu_us_per_delivered_msg": spread([r["consumers_cpu_us_per_delivered_msg"] for r in runs]),
            "tansu_cpu_us_per_delivered_msg": spread([r["tansu_cpu_us_per_delivered_msg"] for r in runs]),
            "delivered_rate": spread([r["delivered_rate"] for r in runs]),
            "runs": runs}


def scenario_pub():
    configs = {c: pub_config(c) for c in RUN_CONFIGS}
    first = configs[RUN_CONFIGS[0]]
    return {"target": "loadgen/broker <= 0.45", "rate": PUB_RATE, "payload_bytes": 256,
            "connections": 100, "qos": 0, "repeats": REPEAT,
            # the first configuration's medians, under the names earlier results used
            "median_ratio_loadgen_broker": first["ratio_loadgen_broker"]["median"],
            "median_loadgen_cpu_us_per_msg": first["cpu_us_per_msg"]["loadgen"]["median"],
            "median_broker_cpu_us_per_msg": first["cpu_us_per_msg"]["broker"]["median"],
            "configs": configs,
            "runs": [r for c in configs.values() for r in c["runs"]]}


def rr_runs(transport, config):
    """rr at RR_RATE with one worker, REPEAT runs; over NATS (transport "nats") the broker is
    nats-server, else mosquitto in configuration `config`."""
    name = "rr" if transport == "mqtt" else transport
    label = f"{name}-{config}" if transport == "mqtt" else name
    runs = []
    for i in range(REPEAT):
        r = run_loadgen(f"{label}-{i}", "rr", RR_RATE, DUR[name], worker=True, transport=transport,
                        broker_config=config)
        u = r["cpu_us_per_op"]
        log(f"{label} #{i}: ratios {r['ratio_loadgen_broker']} / {r['ratio_worker_broker']}; "
            f"us per request: loadgen {u['loadgen']} worker {u['worker']} broker {u['broker']}; "
            f"p50/p99 {r['latency_us']['p50']}/{r['latency_us']['p99']} us, match {r['match_rate']:.5f}")
        runs.append(r)
    roles = ("loadgen", "worker", "broker")
    return {"broker_config": config if transport == "mqtt" else transport, "repeats": len(runs),
            "ratio_loadgen_broker": spread([r["ratio_loadgen_broker"] for r in runs]),
            "ratio_worker_broker": spread([r["ratio_worker_broker"] for r in runs]),
            "cpu_us_per_request": per_process(runs, "cpu_us_per_op", roles),
            "context_switches_per_request": per_process(runs, "context_switches_per_op", roles),
            "latency_p50_us": spread([r["latency_us"]["p50"] for r in runs]),
            "latency_p99_us": spread([r["latency_us"]["p99"] for r in runs]),
            "match_rate": spread([r["match_rate"] for r in runs]),
            "runs": runs}


def scenario_rr(transport="mqtt"):
    """rr at RR_RATE: against mosquitto in each of RUN_CONFIGS, or over NATS."""
    if transport == "nats":
        c = rr_runs("nats", "nats")
        return {"target": "loadgen/nats-server <= 0.5 and worker/nats-server <= 0.5",
                "rate": RR_RATE, "transport": "nats", "broker": "nats-server",
                "worker_mode": "health", **{k: v for k, v in c.items() if k != "broker_config"},
                "ratio_loadgen_broker_min_max": [c["ratio_loadgen_broker"]["min"], c["ratio_loadgen_broker"]["max"]],
                "ratio_worker_broker_min_max": [c["ratio_worker_broker"]["min"], c["ratio_worker_broker"]["max"]],
                "median_ratio_loadgen_broker": c["ratio_loadgen_broker"]["median"],
                "median_ratio_worker_broker": c["ratio_worker_broker"]["median"]}
    configs = {c: rr_runs("mqtt", c) for c in RUN_CONFIGS}
    first = configs[RUN_CONFIGS[0]]
    return {"target": "loadgen/broker and worker/broker <= 0.25 (nodelay), <= 0.35 (default)",
            "rate": RR_RATE, "transport": "mqtt", "broker": "mosquitto", "worker_mode": "health",
            "repeats": REPEAT,
            # the first configuration's medians, under the names earlier results used
            "median_ratio_loadgen_broker": first["ratio_loadgen_broker"]["median"],
            "median_ratio_worker_broker": first["ratio_worker_broker"]["median"],
            "configs": configs,
            "runs": [r for c in configs.values() for r in c["runs"]]}


def sustained(r):
    p99 = r["latency_us"]["p99"]
    return (r["match_rate"] >= MATCH_MIN and p99 is not None and p99 < P99_MAX_US
            and r["achieved_rate"] >= 0.99 * r["offered_rate"])


def scenario_ceiling():
    steps = []
    for rate in CEILING_RATES:
        r = run_loadgen(f"ceiling-{rate}", "rr", rate, DUR["ceiling"], worker=True, queues=True)
        r["sustained"] = sustained(r)
        steps.append(r)
        c, q = r["cpu_cores"], r["queues"]
        waiting = ", ".join(f"{k} {v['mean']}/{v['max']}" for k, v in q.items() if k != "samples")
        log(f"ceiling {rate}/s: match {r['match_rate']:.5f} p50 {r['latency_us']['p50']} us "
            f"p99 {r['latency_us']['p99']} us (send lag p99 {r['schedule_lag_us']['p99']} us), cores: "
            f"broker {c['broker']} worker {c['worker']} loadgen {c['loadgen']}; waiting (mean/max bytes): "
            f"{waiting} -> {'ok' if r['sustained'] else 'NOT sustained'}")
        if not r["sustained"]:
            break
    ok = [s for s in steps if s["sustained"]]
    top = max(ok, key=lambda s: s["offered_rate"]) if ok else None
    return {"criterion": f"match rate >= {MATCH_MIN} and p99 < {P99_MAX_US // 1000} ms",
            "ceiling_rate": top["offered_rate"] if top else None,
            # every step held: the ceiling lies above the last step tried
            "ceiling_is_lower_bound": bool(steps) and steps[-1]["sustained"],
            "cpu_cores_at_ceiling": top["cpu_cores"] if top else None,
            "busiest_at_ceiling": max(top["cpu_cores"], key=top["cpu_cores"].get) if top else None,
            "steps": steps}


def echo_pair(i):
    """The reference: two rumqttc clients echoing through their own mosquitto."""
    if not ECHO_PAIR.exists():
        raise RuntimeError(f"{ECHO_PAIR} missing: cargo build --release -p loadgen --example echo_pair")
    stack = Stack(f"latency-echo-{i}")
    ok = False
    try:
        bport = stack.broker().rsplit(":", 1)[1]
        env = base_env(BROKER_HOST="127.0.0.1", BROKER_PORT=bport, RATE=LATENCY_RATE,
                       WARMUP_SEC=WARMUP, DURATION_SEC=DUR["latency"], PAYLOAD_BYTES=64)
        out = subprocess.run([str(ECHO_PAIR)], env=env, capture_output=True, text=True,
                             timeout=DUR["latency"] + 60)
        if out.returncode != 0:
            raise RuntimeError(f"echo_pair failed: {out.stderr[-2000:]}")
        ok = True
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        stack.close(keep_logs=not ok)


def scenario_latency():
    """loadgen+worker at 1,000 req/s against the echo pair, alternating, REPEAT times each.

    loadgen measures from the schedule, so its figure includes its own send lag (its 1 ms tick):
    it is compared with the echo pair's round trip from the send (the broker's own round trip)
    and with the echo pair measured from its schedule (the same 1 ms tick, like for like)."""
    pairs = []
    for i in range(REPEAT):
        lg = run_loadgen(f"latency-loadgen-{i}", "rr", LATENCY_RATE, DUR["latency"], worker=True,
                         interval_ms=1000)
        echo = echo_pair(i)
        log(f"latency #{i} at {LATENCY_RATE}/s: loadgen+worker p50/p99 {lg['latency_us']['p50']}/"
            f"{lg['latency_us']['p99']} us (its send lag p50 {lg['schedule_lag_us']['p50']} us); "
            f"echo pair round trip {echo['latency_us']['p50']}/{echo['latency_us']['p99']} us, "
            f"from its schedule {echo['from_schedule_us']['p50']}/{echo['from_schedule_us']['p99']} us")
        pairs.append((lg, echo))
    med = lambda xs: statistics.median(xs)
    lg_p50 = med([lg["latency_us"]["p50"] for lg, _ in pairs])
    lg_p99 = med([lg["latency_us"]["p99"] for lg, _ in pairs])
    rtt_p50 = med([e["latency_us"]["p50"] for _, e in pairs])
    rtt_p99 = med([e["latency_us"]["p99"] for _, e in pairs])
    sch_p50 = med([e["from_schedule_us"]["p50"] for _, e in pairs])
    sch_p99 = med([e["from_schedule_us"]["p99"] for _, e in pairs])
    return {"target": "loadgen+worker p50 <= 2 x echo pair p50", "rate": LATENCY_RATE, "repeats": len(pairs),
            "median_loadgen_worker_us": {"p50": lg_p50, "p99": lg_p99,
                                         "send_lag_p50": med([lg["schedule_lag_us"]["p50"] for lg, _ in pairs])},
            "median_echo_round_trip_us": {"p50": rtt_p50, "p99": rtt_p99},
            "median_echo_from_schedule_us": {"p50": sch_p50, "p99": sch_p99},
            "p50_ratio_vs_echo_round_trip": round(lg_p50 / max(rtt_p50, 1), 3),
            "p50_ratio_vs_echo_from_schedule": round(lg_p50 / max(sch_p50, 1), 3),
            "p99_ratio_vs_echo_round_trip": round(lg_p99 / max(rtt_p99, 1), 3),
            "runs": [{"loadgen_worker": lg, "echo_pair": e} for lg, e in pairs]}


def scenario_memory():
    """Reruns the 1M-client memory script (it writes memory-1m.txt into RESULTS_DIR)."""
    env = dict(os.environ)
    env.pop("DURATION_SEC", None)  # the script's own: one full interval, every client sends
    log("memory: scripts/memory.sh 1m (1,000,000 virtual clients, 45 s)")
    subprocess.run(["bash", "scripts/memory.sh", "1m"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def collect_memory():
    """What the memory and fanout scripts measured, as found in the results folder (or, for a
    scratch run that did not measure them, in the committed benchmarks/results/; "file" says which)."""
    mem = {}
    m1 = RESULTS / "memory-1m.txt"
    if not m1.exists():
        m1 = COMMITTED / "memory-1m.txt"
    if m1.exists():
        text = m1.read_text()
        mem["memory_1m"] = {"file": rel(m1), "text": text.strip()}
        for line in text.splitlines():
            if line.startswith("peak resident memory:"):
                try:
                    mem["memory_1m"]["peak_mib"] = float(line.split(":")[1].split("MiB")[0])
                except ValueError:
                    pass
    fan = sorted(p for p in RESULTS.glob("fanout*") if p.is_file()) or \
        sorted(p for p in COMMITTED.glob("fanout*") if p.is_file())
    if fan:
        mem["fanout"] = []
        for p in fan:
            entry = {"file": rel(p)}
            if p.suffix == ".json":
                try:
                    entry["data"] = json.loads(p.read_text())
                except ValueError:
                    pass
            elif p.suffix in (".txt", ".md"):
                entry["text"] = p.read_text().strip()[:4000]
            mem["fanout"].append(entry)
    return mem


def rel(p):
    """`p` relative to the repository when inside it."""
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    mosq = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True).stdout.splitlines()
    nats = subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True).stdout.strip() \
        if os.path.exists(NATS_SERVER) else ""
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
        "machine": platform.machine(), "hostname": platform.node(),
        "mem_total_kib": next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), None),
        "mosquitto": mosq[0] if mosq else "", "nats_server": nats,
        # BENCH_GIT_REVISION: the revision the binaries were built from, when not this tree's.
        "git_revision": os.environ.get("BENCH_GIT_REVISION") or git("rev-parse", "HEAD"),
        "git_describe": os.environ.get("BENCH_GIT_REVISION", "")[:7] or git("describe", "--always", "--dirty"),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "quick" if QUICK else "full",
    }


CSV_FIELDS = ["scenario_step", "broker_config", "offered_rate", "achieved_rate", "sent", "matched",
              "match_rate", "timeouts", "skipped", "p50_us", "p90_us", "p99_us", "max_us",
              "schedule_lag_p99_us", "cpu_window_s", "loadgen_cpu_s", "worker_cpu_s", "broker_cpu_s",
              "loadgen_cores", "worker_cores", "broker_cores", "ratio_loadgen_broker",
              "ratio_worker_broker", "loadgen_us_per_op", "worker_us_per_op", "broker_us_per_op",
              "loadgen_switches_per_op", "worker_switches_per_op", "broker_switches_per_op",
              "broker_unread_from_loadgen_mean_b", "broker_unread_from_worker_mean_b",
              "broker_unread_from_worker_deepest_b", "worker_queue_max", "sustained"]


def csv_row(r):
    c, l, q = r["cpu_s"], r["latency_us"], r.get("queues", {})
    return {
        "scenario_step": r["name"], "broker_config": r.get("broker_config", "nodelay"),
        "offered_rate": r["offered_rate"], "achieved_rate": r["achieved_rate"],
        "sent": r["sent"], "matched": r["matched"], "match_rate": r["match_rate"],
        "timeouts": r["timeouts"], "skipped": r["skipped"], "p50_us": l["p50"], "p90_us": l["p90"],
        "p99_us": l["p99"], "max_us": l["max"], "schedule_lag_p99_us": r["schedule_lag_p99_us"],
        "cpu_window_s": r["cpu_window_s"], "loadgen_cpu_s": c.get("loadgen"),
        "worker_cpu_s": c.get("worker", ""), "broker_cpu_s": c.get("broker"),
        "loadgen_cores": r["cpu_cores"].get("loadgen"), "worker_cores": r["cpu_cores"].get("worker", ""),
        "broker_cores": r["cpu_cores"].get("broker"), "ratio_loadgen_broker": r.get("ratio_loadgen_broker"),
        "ratio_worker_broker": r.get("ratio_worker_broker", ""),
        "loadgen_us_per_op": r["cpu_us_per_op"].get("loadgen"),
        "worker_us_per_op": r["cpu_us_per_op"].get("worker", ""),
        "broker_us_per_op": r["cpu_us_per_op"].get("broker"),
        "loadgen_switches_per_op": r["context_switches_per_op"].get("loadgen"),
        "worker_switches_per_op": r["context_switches_per_op"].get("worker", ""),
        "broker_switches_per_op": r["context_switches_per_op"].get("broker"),
        "broker_unread_from_loadgen_mean_b": q.get("broker_unread_from_loadgen", {}).get("mean", ""),
        "broker_unread_from_worker_mean_b": q.get("broker_unread_from_worker", {}).get("mean", ""),
        "broker_unread_from_worker_deepest_b": q.get("broker_unread_from_worker", {}).get("deepest_socket_max", ""),
        "worker_queue_max": q.get("worker_queue", {}).get("max", ""),
        "sustained": r.get("sustained", ""),
    }


def main():
    RESULTS.mkdir(parents=True, exist_ok=True)
    if FIFO:
        # SCHED_FIFO (root), inherited by every process started below: they preempt other work
        # on the machine as soon as they wake, so a run while others compile reads like a quiet one
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(FIFO))
    for b in ("loadgen", "worker"):
        if not (BIN / b).exists():
            sys.exit(f"{BIN / b} missing: run `make release` (or set BIN)")
    result = {"benchmark": "mqtt-rr-bench issue 6", "machine": machine(), "scenarios": SCENARIOS,
              "sched_fifo": FIFO}
    log(f"{result['machine']['mode']} run: {', '.join(SCENARIOS)}; results in {RESULTS}")
    started = time.monotonic()
    steps = []
    if "pub" in SCENARIOS:
        result["pub"] = scenario_pub()
        steps += result["pub"]["runs"]
    if "rr" in SCENARIOS:
        result["rr"] = scenario_rr()
        steps += result["rr"]["runs"]
    if "ceiling" in SCENARIOS:
        result["ceiling"] = scenario_ceiling()
        steps += result["ceiling"]["steps"]
    if "latency" in SCENARIOS:
        result["latency"] = scenario_latency()
        steps += [r["loadgen_worker"] for r in result["latency"]["runs"]]
    if "nats" in SCENARIOS:
        result["nats"] = scenario_rr("nats")
        steps += result["nats"]["runs"]
    if "kafka" in SCENARIOS:
        result["kafka"] = scenario_kafka()
        steps += result["kafka"].get("runs", [])
    if "memory" in SCENARIOS:
        scenario_memory()
    result["memory"] = collect_memory()
    result["elapsed_s"] = round(time.monotonic() - started, 1)

    json_path = RESULTS / f"{PREFIX}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    csv_path = RESULTS / f"{PREFIX}-steps.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in steps:
            w.writerow(csv_row(r))
    written = [json_path, csv_path]
    if "ceiling" in result:
        svg = RESULTS / f"{PREFIX}-ceiling.svg"
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plot.py"), str(json_path), str(svg)],
                       check=True)
        written.append(svg)
    summary(result)
    log("wrote " + ", ".join(rel(p) for p in written))


def summary(res):
    lines = []
    lines.append("(min / median / max of the runs)")
    if "pub" in res:
        p = res["pub"]
        for name, c in p["configs"].items():
            u = c["cpu_us_per_msg"]
            lines.append(f"pub {p['rate']}/s, mosquitto {name}: loadgen/broker CPU "
                         f"{fmt(c['ratio_loadgen_broker'])} (target <= 0.45); us per message: loadgen "
                         f"{fmt(u['loadgen'])}, broker {fmt(u['broker'])}")

    def rr_line(label, c):
        u = c["cpu_us_per_request"]
        return (f"{label}: loadgen/broker {fmt(c['ratio_loadgen_broker'])}, worker/broker "
                f"{fmt(c['ratio_worker_broker'])}; us per request: loadgen {fmt(u['loadgen'])}, "
                f"worker {fmt(u['worker'])}, broker {fmt(u['broker'])}; p50 {fmt(c['latency_p50_us'])} us, "
                f"p99 {fmt(c['latency_p99_us'])} us")
    if "rr" in res:
        r = res["rr"]
        for name, c in r["configs"].items():
            target = "<= 0.25" if name == "nodelay" else "<= 0.35"
            lines.append(rr_line(f"rr {r['rate']}/s, mosquitto {name} (targets {target})", c))
    if "nats" in res:
        r = res["nats"]
        lines.append(rr_line(f"nats rr {r['rate']}/s (broker: nats-server; targets <= 0.5)", r))
    if "kafka" in res and "runs" in res["kafka"]:
        k = res["kafka"]
        u = k["cpu_us_per_msg"]
        lines.append(f"kafka pub {k['rate']}/s of {k['payload_bytes']} B to tansu: loadgen/tansu CPU "
                     f"{fmt(k['ratio_loadgen_broker'])} (target <= 0.5); us per message: loadgen "
                     f"{fmt(u['loadgen'])}, tansu {fmt(u['broker'])}")
        c = k.get("consumers") or {}
        if c.get("runs"):
            lines.append(f"kafka consumers: {c['consumers']} consumers of {c['publish_rate']} msg/s: "
                         f"{fmt(c['delivered_rate'])} deliveries/s; us CPU per delivered message: "
                         f"consumers {fmt(c['consumers_cpu_us_per_delivered_msg'])}, tansu "
                         f"{fmt(c['tansu_cpu_us_per_delivered_msg'])}")
    if "ceiling" in res:
        c = res["ceiling"]
        bound = " (at least: every step held)" if c["ceiling_is_lower_bound"] else ""
        lines.append(f"ceiling: {c['ceiling_rate']} req/s{bound} ({c['criterion']}); cores at ceiling "
                     f"{c['cpu_cores_at_ceiling']}")
    if "latency" in res:
        l = res["latency"]
        lg, rtt, sch = l["median_loadgen_worker_us"], l["median_echo_round_trip_us"], l["median_echo_from_schedule_us"]
        lines.append(f"latency {l['rate']}/s: loadgen+worker p50/p99 {lg['p50']}/{lg['p99']} us (send lag p50 "
                     f"{lg['send_lag_p50']} us); echo pair round trip {rtt['p50']}/{rtt['p99']} us, from its "
                     f"schedule {sch['p50']}/{sch['p99']} us; p50 ratio {l['p50_ratio_vs_echo_round_trip']} vs "
                     f"round trip, {l['p50_ratio_vs_echo_from_schedule']} vs from schedule (target <= 2)")
    m = res.get("memory", {}).get("memory_1m")
    if m:
        lines.append(f"memory: 1M virtual clients peak {m.get('peak_mib')} MiB (target <= 100 MB)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
