//! Sample reports for the reporting tests: a deterministic simulated run (per-second rows and
//! the histograms they came from), shaped like the loadgen's JSON report, in every variant the
//! HTML must render (rr with warm-up and faults, fan-out, capacity, an old report).

#![allow(dead_code)]

use hdrhistogram::Histogram;
use loadgen::reporting::hist;
use rr_common::stats::{new_histogram, record_us, Summary};
use serde_json::{json, Map, Value};

/// A small deterministic generator (xorshift), so samples are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A latency in microseconds: mostly around `base`, with a long tail.
    pub fn latency(&mut self, base: u64) -> u64 {
        let r = self.next() % 10_000;
        let jitter = self.next() % base.max(1);
        match r {
            0..=8_999 => base + jitter,
            9_000..=9_899 => base * 3 + jitter * 4,
            9_900..=9_989 => base * 10 + jitter * 10,
            _ => base * 60 + jitter * 50,
        }
    }
}

/// What a simulated run produced: its report and the histograms behind it.
pub struct Sample {
    pub report: Value,
    pub latency: Histogram<u64>,
    pub lag: Histogram<u64>,
}

/// Options of a simulated run.
pub struct Run {
    pub instance: &'static str,
    pub scenario: &'static str,
    pub start_unix_ms: u64,
    pub seconds: u64,
    pub warmup: u64,
    pub rate: u64,
    pub seed: u64,
    pub base_us: u64,
    /// Seconds in which a connection was lost (a few timeouts and a reconnect follow).
    pub faults: Vec<u64>,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            instance: "lg-a",
            scenario: "rr",
            start_unix_ms: 1_754_000_000_000,
            seconds: 40,
            warmup: 5,
            rate: 1000,
            seed: 1,
            base_us: 800,
            faults: vec![20],
        }
    }
}

pub fn simulate(run: &Run) -> Sample {
    let mut rng = Rng::new(run.seed);
    let mut latency = new_histogram();
    let mut lag = new_histogram();
    let mut rows = Vec::new();
    let (mut sent, mut matched, mut timeouts, mut reconnects) = (0u64, 0u64, 0u64, 0u64);
    for t in 0..run.seconds {
        let warm = t < run.warmup;
        let fault = run.faults.contains(&t);
        let mut sec = new_histogram();
        let mut sec_lag = new_histogram();
        let lost = if fault { run.rate / 20 } else { 0 };
        for _ in 0..run.rate - lost {
            let l = rng.latency(run.base_us + if fault { 2000 } else { 0 });
            record_us(&mut sec, l);
            record_us(&mut sec_lag, rng.next() % 200 + 5);
        }
        for _ in 0..lost {
            record_us(&mut sec_lag, rng.next() % 200 + 5);
        }
        let s = Summary::of(&sec);
        let (delivered, lost_msgs) = (run.rate - lost, lost);
        let mut row = json!({
            "t": t, "warmup": warm, "offered": run.rate, "sent": run.rate,
            "matched": run.rate - lost, "timeouts": lost, "late": 0, "skipped": 0,
            "publish_errors": u64::from(fault), "reconnects": u64::from(fault),
            "inflight": run.rate / 100 + rng.next() % 10, "active_clients": run.rate * 2,
            "p50_us": s.p50, "p90_us": s.p90, "p99_us": s.p99, "max_us": s.max,
            "lag_p99_us": Summary::of(&sec_lag).p99, "worker_pool": 10 + (t / 10) * 10,
        });
        if run.scenario == "fanout" {
            let m = row.as_object_mut().unwrap();
            m.insert("received".into(), (delivered * 50).into());
            m.insert("lost".into(), (lost_msgs * 50).into());
            m.insert("connections".into(), (500 - u64::from(fault) * 20).into());
        }
        rows.push(row);
        if !warm {
            hist::merge_into(&mut latency, &sec);
            hist::merge_into(&mut lag, &sec_lag);
            sent += run.rate;
            matched += run.rate - lost;
            timeouts += lost;
            reconnects += u64::from(fault);
        }
    }
    let window = (run.seconds - run.warmup) as f64;
    let mut r = json!({
        "scenario": run.scenario,
        "instance_id": run.instance,
        "config": {
            "BROKER": "mqtt://bench:s3cret@127.0.0.1:1883", "MQTT_PASSWORD": "<redacted>",
            "VIRTUAL_CLIENTS": run.rate * 2, "INTERVAL_MS": 2000, "CONNECTIONS": 4,
            "INSTANCE_ID": run.instance, "WARMUP_SEC": run.warmup,
        },
        "start_unix_ms": run.start_unix_ms,
        "duration_s": window,
        "offered_rate": run.rate as f64,
        "achieved_rate": sent as f64 / window,
        "sent": sent, "matched": matched, "timeouts": timeouts, "late": 0, "duplicates": 0,
        "invalid": 0, "skipped": 0, "publish_errors": reconnects, "reconnects": reconnects,
        "match_rate": matched as f64 / sent as f64,
        "latency_us": Summary::of(&latency),
        "schedule_lag_us": Summary::of(&lag),
        "unresolved": 0,
        "histograms": {
            hist::LATENCY: hist::encode(&latency),
            hist::SCHEDULE_LAG: hist::encode(&lag),
        },
        "timeline": rows,
    });
    if run.scenario == "fanout" {
        // fan-out books: deliveries instead of requests
        let m = r.as_object_mut().unwrap();
        for k in ["matched", "timeouts", "late", "match_rate"] {
            m.remove(k);
        }
        m.insert("role".into(), "both".into());
        m.insert(
            "delivery_ratio".into(),
            (matched as f64 / sent as f64).into(),
        );
        m.insert("clients".into(), 500.into());
        m.insert("subjects".into(), 10.into());
        m.insert("received".into(), (matched * 50).into());
        m.insert("expected".into(), (sent * 50).into());
        m.insert("lost".into(), (timeouts * 50).into());
        m.insert("clients_with_loss".into(), 20.into());
        m.insert("bytes_received".into(), (matched * 50 * 120).into());
    }
    Sample {
        report: r,
        latency,
        lag,
    }
}

/// A capacity object like issue 10's: steps up by 1.5x until p99 breaks the SLO of 50 ms.
pub fn capacity() -> Value {
    let mut steps = Vec::new();
    let mut rate = 1000.0f64;
    for i in 0..7 {
        let load = rate / 9000.0;
        let p50 = 800.0 / (1.0 - load.min(0.95));
        let p99 = p50 * (3.0 + 20.0 * load * load * load * load);
        steps.push(json!({
            "offered": rate.round(), "achieved": (rate * 0.999).round(), "sent": (rate * 20.0) as u64,
            "matched": (rate * 20.0 * (1.0 - 0.0005 * f64::from(i))) as u64, "timeouts": 10 * i,
            "match_rate": 1.0 - 0.0005 * f64::from(i), "p50_us": p50.round(), "p99_us": p99.round(),
            "p999_us": (p99 * 1.6).round(), "lag_p99_us": 120, "worker_pool": 40,
            "passed": p99 < 50_000.0,
        }));
        rate *= 1.5;
    }
    json!({"rate": 7594, "limited_by": "p99", "lower_bound": false, "steps": steps,
           "verdict": "capacity: 7594 req/s (p99 31.2 ms, match 0.99900); first failure 11391 req/s: p99 212 ms > 50 ms"})
}

/// The same report as an older loadgen wrote it: no histograms.
pub fn old(report: &Value) -> Value {
    let mut r: Map<String, Value> = report.as_object().unwrap().clone();
    r.remove("histograms");
    r.remove("timeline");
    r.remove("start_unix_ms");
    Value::Object(r)
}
