//! Live fan-out counters and latency histograms: hot paths bump relaxed atomics and record into
//! a few sharded histograms; readers merge them for the harness's tick and progress line,
//! `/metrics` and `/stats`.

use super::export::FanoutMetrics;
use crate::harness::{self, Outstanding, RunState, Sample, Words};
use hdrhistogram::Histogram;
use rr_common::http::Endpoints;
use rr_common::stats::{new_histogram, record_us, BucketTotals, Summary};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Histogram shards; a recorder picks one by client index, so locks are rarely contended.
const SHARDS: usize = 8;

/// Monotonic counters (since start) and their measured-window counterparts.
#[derive(Default)]
pub struct Counters {
    pub published: AtomicU64,
    pub published_window: AtomicU64,
    /// Due messages not published because their publisher link was down or full.
    pub skipped: AtomicU64,
    pub skipped_window: AtomicU64,
    pub publish_errors: AtomicU64,
    /// Deliveries the window's messages should make (exact books only).
    pub expected_window: AtomicU64,
    pub received: AtomicU64,
    pub received_window: AtomicU64,
    pub bytes: AtomicU64,
    pub bytes_window: AtomicU64,
    pub lost: AtomicU64,
    pub lost_window: AtomicU64,
    pub duplicates: AtomicU64,
    pub invalid: AtomicU64,
    /// Wall-clock latencies below zero (clock skew between machines), recorded as 0.
    pub skewed: AtomicU64,
    pub connections: AtomicI64,
    /// Clients that completed their first subscribe.
    pub joined: AtomicU64,
    pub disconnects: AtomicU64,
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
}

#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[inline]
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

struct Pending {
    all: Histogram<u64>,
    window: Histogram<u64>,
}

struct Merged {
    /// Since start, for `/metrics`.
    total: Histogram<u64>,
    /// Since the last progress line.
    interval: Histogram<u64>,
    /// Measured window, for the report.
    window: Histogram<u64>,
    /// Publisher schedule lag in the window.
    lag: Histogram<u64>,
}

/// Latency recorders.
pub struct Latency {
    shards: Vec<Mutex<Pending>>,
    merged: Mutex<Merged>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Pending {
                        all: new_histogram(),
                        window: new_histogram(),
                    })
                })
                .collect(),
            merged: Mutex::new(Merged {
                total: new_histogram(),
                interval: new_histogram(),
                window: new_histogram(),
                lag: new_histogram(),
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Latency {
    #[inline]
    pub fn record(&self, shard: usize, us: u64, in_window: bool) {
        let mut p = lock(&self.shards[shard % SHARDS]);
        record_us(&mut p.all, us);
        if in_window {
            record_us(&mut p.window, us);
        }
    }

    pub fn record_lag(&self, us: u64) {
        record_us(&mut lock(&self.merged).lag, us);
    }

    /// Moves what the shards hold into the merged histograms.
    pub fn collect(&self) {
        let mut m = lock(&self.merged);
        for s in &self.shards {
            let mut p = lock(s);
            if !p.all.is_empty() {
                let _ = m.total.add(&p.all);
                let _ = m.interval.add(&p.all);
                p.all.reset();
            }
            if !p.window.is_empty() {
                let _ = m.window.add(&p.window);
                p.window.reset();
            }
        }
    }

    /// Summary since the last call (for the progress line).
    pub fn take_interval(&self) -> Summary {
        self.collect();
        let mut m = lock(&self.merged);
        let s = Summary::of(&m.interval);
        m.interval.reset();
        s
    }

    /// The measured window's latency and publisher schedule lag, lossless.
    pub fn window_histograms(&self) -> (Histogram<u64>, Histogram<u64>) {
        self.collect();
        let m = lock(&self.merged);
        (m.window.clone(), m.lag.clone())
    }

    /// Bucket totals of every delivery since start, for `/metrics` (the histogram is copied
    /// first, so recorders never wait for the walk over its bins).
    pub fn total_buckets(&self) -> BucketTotals {
        self.collect();
        let total = lock(&self.merged).total.clone();
        BucketTotals::of_hdr(&total)
    }

    fn total(&self) -> Summary {
        self.collect();
        Summary::of(&lock(&self.merged).total)
    }
}

/// Everything the hot paths count and the endpoints read.
pub struct Live {
    pub c: Counters,
    pub lat: Latency,
    pub clients: u64,
    pub subjects: u64,
    pub role: &'static str,
}

impl Live {
    pub fn new(clients: u64, subjects: u64, role: &'static str) -> Live {
        Live {
            c: Counters::default(),
            lat: Latency::default(),
            clients,
            subjects,
            role,
        }
    }

    pub fn connections(&self) -> u64 {
        self.c.connections.load(Ordering::Relaxed).max(0) as u64
    }
}

/// `/metrics`, `/stats`, `/health`, `/ready` of a fan-out run, and what the harness's tick reads.
pub struct FanoutEndpoints {
    pub live: Arc<Live>,
    pub run: Arc<RunState>,
    metrics: FanoutMetrics,
}

impl FanoutEndpoints {
    pub fn new(live: Arc<Live>, run: Arc<RunState>) -> FanoutEndpoints {
        FanoutEndpoints {
            live,
            run,
            metrics: FanoutMetrics::default(),
        }
    }
}

impl harness::Live for FanoutEndpoints {
    fn sample(&self) -> Sample {
        let c = &self.live.c;
        Sample {
            sent: get(&c.published),
            done: get(&c.received),
            failed: get(&c.lost),
            inflight: None,
            connections: self.live.connections(),
            connections_planned: self.live.clients,
            reconnects: get(&c.reconnects),
            worker_pool: None,
        }
    }

    fn take_recent(&self) -> (Summary, Summary) {
        (self.live.lat.take_interval(), Summary::default())
    }

    fn words(&self) -> Words {
        Words {
            sent: "pub",
            done: "recv",
            failed: "lost",
        }
    }

    fn progress_extra(&self) -> String {
        format!("disconnects {}", get(&self.live.c.disconnects))
    }

    /// Exact books (publisher in this process) know what is still to come; split roles only
    /// see deliveries stop.
    fn outstanding(&self) -> Outstanding {
        let c = &self.live.c;
        let received = get(&c.received_window);
        Outstanding {
            pending: (self.live.role == "both")
                .then(|| get(&c.expected_window).saturating_sub(received + get(&c.lost_window))),
            progress: received,
        }
    }
}

impl Endpoints for FanoutEndpoints {
    fn metrics(&self) -> String {
        self.metrics.render(&self.live)
    }

    fn stats(&self) -> String {
        let l = &self.live;
        let c = &l.c;
        let mut head = self.run.stats_head();
        let rest = serde_json::json!({
            "role": l.role,
            "clients": l.clients,
            "subjects": l.subjects,
            "connections": l.connections(),
            "joined": get(&c.joined),
            "published": get(&c.published),
            "skipped": get(&c.skipped),
            "publish_errors": get(&c.publish_errors),
            "received": get(&c.received),
            "bytes_received": get(&c.bytes),
            "lost": get(&c.lost),
            "duplicates": get(&c.duplicates),
            "invalid": get(&c.invalid),
            "disconnects": get(&c.disconnects),
            "reconnects": get(&c.reconnects),
            "connect_failures": get(&c.connect_failures),
            "window": {
                "published": get(&c.published_window),
                "expected": get(&c.expected_window),
                "received": get(&c.received_window),
                "lost": get(&c.lost_window),
            },
            "latency_us": l.lat.total(),
            "rss_bytes": rr_common::cli::rss_bytes(),
        });
        if let serde_json::Value::Object(m) = rest {
            head.extend(m);
        }
        serde_json::Value::Object(head).to_string()
    }

    fn ready(&self) -> bool {
        self.run.is_ready()
    }

    fn other(&self, path: &str) -> Option<(&'static str, Vec<u8>)> {
        match path {
            "/" | "/index.html" | "/dashboard" => Some((
                "text/html; charset=utf-8",
                crate::web::DASHBOARD_HTML.as_bytes().to_vec(),
            )),
            _ => None,
        }
    }
}

/// CPU time (user + system) this process has used, in seconds (Linux; `None` elsewhere).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses: state is index 0, utime 11, stime 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_use_contract_names() {
        let live = Arc::new(Live::new(10, 5, "both"));
        live.c.connections.fetch_add(3, Ordering::Relaxed);
        add(&live.c.received, 4);
        live.lat.record(3, 1500, true);
        live.lat.record(4, 700, false);
        let run = Arc::new(RunState::new(
            "fanout",
            "t".into(),
            std::time::Duration::ZERO,
        ));
        let ends = FanoutEndpoints::new(live.clone(), run);
        let text = ends.metrics();
        for name in [
            "fanout_messages_published_total 0",
            "fanout_messages_received_total 4",
            "fanout_bytes_received_total 0",
            "fanout_connections 3",
            "fanout_disconnects_total 0",
            "fanout_messages_lost_total 0",
            "fanout_latency_seconds_count 2",
            "# TYPE fanout_latency_seconds histogram",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        assert_eq!(Summary::of(&live.lat.window_histograms().0).max / 100, 15);
        assert!(process_cpu_seconds().is_some());
        let stats: serde_json::Value = serde_json::from_str(&ends.stats()).expect("json");
        assert_eq!(stats["received"], 4);
        assert_eq!(stats["phase"], "starting");
    }
}
