//! Live fan-out counters and latency histograms: hot paths bump relaxed atomics and record into
//! a few sharded histograms (and, under the same lock, the per-second counts of the timeline);
//! readers (`endpoints.rs`: the harness's tick and progress line, `/metrics` and `/stats`; the
//! timeline's tick) merge them.

use super::consumers::Consumers;
use super::timeline::{self, Counts, Gauges, Recent, RunSeconds};
use hdrhistogram::Histogram;
use rr_common::stats::{new_histogram, record_us, BucketTotals, Summary};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

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
    /// Timeline counts of the seconds seen since the last collection.
    secs: Recent,
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
    /// Since the timeline last sampled a second.
    second: Histogram<u64>,
    /// The timeline's counts, by second of the run.
    secs: Vec<Counts>,
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
                        secs: Recent::default(),
                    })
                })
                .collect(),
            merged: Mutex::new(Merged {
                total: new_histogram(),
                interval: new_histogram(),
                window: new_histogram(),
                lag: new_histogram(),
                second: new_histogram(),
                secs: Vec::new(),
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Latency {
    /// Records a delivery's latency; `count` adds its timeline counts under the same lock.
    #[inline]
    pub fn record(&self, shard: usize, us: u64, in_window: bool, count: impl FnOnce(&mut Recent)) {
        let mut p = lock(&self.shards[shard % SHARDS]);
        record_us(&mut p.all, us);
        if in_window {
            record_us(&mut p.window, us);
        }
        count(&mut p.secs);
    }

    /// Adds timeline counts (the publisher's, a few per tick).
    pub fn count(&self, shard: usize, count: impl FnOnce(&mut Recent)) {
        count(&mut lock(&self.shards[shard % SHARDS]).secs);
    }

    /// Adds `c` to second `sec` of the timeline directly (the tail, at the end).
    pub fn count_at(&self, sec: u64, c: &Counts) {
        timeline::add_at(&mut lock(&self.merged).secs, sec, c);
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
                let _ = m.second.add(&p.all);
                p.all.reset();
            }
            if !p.window.is_empty() {
                let _ = m.window.add(&p.window);
                p.window.reset();
            }
            p.secs.move_into(&mut m.secs);
        }
    }

    /// Latency of what arrived since the last call (the timeline's second).
    pub fn take_second(&self) -> Summary {
        self.collect();
        let mut m = lock(&self.merged);
        let s = Summary::of(&m.second);
        m.second.reset();
        s
    }

    /// The timeline's counts so far, by second.
    pub fn seconds(&self) -> Vec<Counts> {
        self.collect();
        lock(&self.merged).secs.clone()
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

    pub fn total(&self) -> Summary {
        self.collect();
        Summary::of(&lock(&self.merged).total)
    }
}

/// The timeline's gauges, by second, and the counters at the last sample.
#[derive(Default)]
struct Sampled {
    gauges: Vec<Gauges>,
    disconnects: u64,
    reconnects: u64,
}

/// Everything the hot paths count and the endpoints read.
pub struct Live {
    pub c: Counters,
    pub lat: Latency,
    /// Which second of the run a stamp falls in.
    pub seconds: RunSeconds,
    sampled: Mutex<Sampled>,
    pub clients: u64,
    pub subjects: u64,
    pub role: &'static str,
    /// Kafka consumers' progress (empty otherwise).
    pub consumers: Consumers,
}

impl Live {
    /// Books without Kafka consumers (the unit tests' shape).
    #[cfg(test)]
    pub fn new(clients: u64, subjects: u64, role: &'static str) -> Live {
        Live::with_consumers(
            clients,
            subjects,
            role,
            Consumers::new(0, std::time::Duration::ZERO),
        )
    }

    /// With `consumers` (the Kafka consumers' progress).
    pub fn with_consumers(
        clients: u64,
        subjects: u64,
        role: &'static str,
        consumers: Consumers,
    ) -> Live {
        Live {
            consumers,
            c: Counters::default(),
            lat: Latency::default(),
            seconds: RunSeconds::default(),
            sampled: Mutex::default(),
            clients,
            subjects,
            role,
        }
    }

    pub fn connections(&self) -> u64 {
        self.c.connections.load(Ordering::Relaxed).max(0) as u64
    }

    /// The tick at the end of second `sec`: its gauges, and the latency of what arrived since
    /// the previous sample (seconds the tick skipped keep the connection count, no latency).
    pub fn sample_second(&self, sec: u64) {
        let lat = self.lat.take_second();
        let (d, r) = (get(&self.c.disconnects), get(&self.c.reconnects));
        let connections = self.connections();
        let k = self
            .consumers
            .enabled()
            .then(|| self.consumers.sample(std::time::Instant::now()));
        let mut s = lock(&self.sampled);
        let i = sec as usize;
        if s.gauges.len() <= i {
            s.gauges.resize(i + 1, Gauges::default());
        }
        for g in s.gauges.iter_mut().filter(|g| !g.sampled) {
            g.sampled = true;
            g.connections = connections;
        }
        let g = Gauges {
            sampled: true,
            connections,
            disconnects: d.saturating_sub(s.disconnects),
            reconnects: r.saturating_sub(s.reconnects),
            p50_us: lat.p50,
            p90_us: lat.p90,
            p99_us: lat.p99,
            max_us: lat.max,
            consumer_lag_max: k.map(|k| k.lag_max),
            consumer_lag_sum: k.map(|k| k.lag_sum),
            failing_clients: k.map(|k| k.failing),
        };
        s.gauges[i] = g;
        s.disconnects = d.max(s.disconnects);
        s.reconnects = r.max(s.reconnects);
    }

    /// The Kafka consumers' part of the report (`None` without Kafka consumers).
    pub fn kafka_books(&self) -> Option<Box<crate::report::KafkaConsumerBooks>> {
        let k = &self.consumers;
        k.enabled().then(|| {
            let (rebalances, clients_rebalanced) = k.rebalances();
            let (redelivered, clients_redelivered) = k.redelivered();
            let (skipped, clients_skipped) = k.skipped();
            Box::new(crate::report::KafkaConsumerBooks {
                failing_clients: k.failing(),
                failed_clients: k.failed(),
                consumer_lag_max: k.lag_peak(),
                consumer_lag_end: k.lag_now().1,
                rebalances,
                clients_rebalanced,
                redelivered,
                clients_redelivered,
                skipped,
                clients_skipped,
            })
        })
    }

    /// The timeline so far: counts and gauges by second.
    pub fn timeline(&self) -> (Vec<Counts>, Vec<Gauges>) {
        let counts = self.lat.seconds();
        (counts, lock(&self.sampled).gauges.clone())
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
