//! The worker's `/metrics`: its metric families registered once on an exporter of its own, set
//! from the pool's counters and latency buckets at each scrape.

use crate::pool::Counters;
use crate::Snapshot;
use rr_common::prom::{Counter, Exporter, Gauge, LatencyHistogram};

pub struct WorkerMetrics {
    exporter: Exporter,
    received: Counter,
    responded: Counter,
    dropped: Counter,
    invalid: Counter,
    errors: Counter,
    queue_depth: Gauge,
    queue_capacity: Gauge,
    pool_size: Gauge,
    busy_workers: Gauge,
    scale_up: Counter,
    scale_down: Counter,
    connections: Gauge,
    reconnects: Counter,
    queue_wait: LatencyHistogram,
    processing: LatencyHistogram,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let e = Exporter::new();
        const SCALE: &str = "worker_scale_events_total";
        const SCALE_HELP: &str = "Autoscaler resizes";
        WorkerMetrics {
            received: e.counter("worker_requests_received_total", "Requests received"),
            responded: e.counter(
                "worker_responses_published_total",
                "Responses handed to a connection",
            ),
            dropped: e.counter(
                "worker_requests_dropped_total",
                "Requests dropped because the queue was full",
            ),
            invalid: e.counter(
                "worker_requests_invalid_total",
                "Messages that could not be parsed as requests",
            ),
            errors: e.counter(
                "worker_errors_total",
                "Responses that could not be published",
            ),
            queue_depth: e.gauge("worker_queue_depth", "Requests waiting in the queue"),
            queue_capacity: e.gauge("worker_queue_capacity", "Capacity of the request queue"),
            pool_size: e.gauge("worker_pool_size", "Workers in the pool"),
            busy_workers: e.gauge("worker_busy_workers", "Workers processing a request"),
            scale_up: e.labeled_counter(SCALE, SCALE_HELP, &[("direction", "up")]),
            scale_down: e.labeled_counter(SCALE, SCALE_HELP, &[("direction", "down")]),
            connections: e.gauge("worker_connections", "Connected subscriber connections"),
            reconnects: e.counter(
                "worker_reconnects_total",
                "Reconnects after a lost connection",
            ),
            queue_wait: e.histogram(
                "worker_queue_wait_seconds",
                "Time requests waited in the queue",
            ),
            processing: e.histogram(
                "worker_processing_seconds",
                "Time a worker spent on a request",
            ),
            exporter: e,
        }
    }
}

impl WorkerMetrics {
    /// The exposition of snapshot `s` and the latency buckets in `c`.
    pub fn render(&self, s: &Snapshot, c: &Counters) -> String {
        self.received.absolute(s.received);
        self.responded.absolute(s.responded);
        self.dropped.absolute(s.dropped);
        self.invalid.absolute(s.invalid);
        self.errors.absolute(s.errors);
        self.queue_depth.set(s.queue_depth as f64);
        self.queue_capacity.set(s.queue_capacity as f64);
        self.pool_size.set(s.pool_size as f64);
        self.busy_workers.set(s.busy_workers as f64);
        self.scale_up.absolute(s.scale_up_events);
        self.scale_down.absolute(s.scale_down_events);
        self.connections.set(s.connections as f64);
        self.reconnects.absolute(s.reconnects);
        self.exporter.render(&[
            (&self.queue_wait, c.queue_wait.totals()),
            (&self.processing, c.processing.totals()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, type)` of the worker's lines in monitoring/metric-names.txt.
    fn contract() -> Vec<(String, String)> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../monitoring/metric-names.txt"
        );
        std::fs::read_to_string(path)
            .expect("monitoring/metric-names.txt")
            .lines()
            .filter(|l| l.starts_with("worker_"))
            .map(|l| {
                let mut it = l.split_whitespace();
                (it.next().unwrap().into(), it.next().unwrap().into())
            })
            .collect()
    }

    #[test]
    fn renders_every_contract_metric_with_its_type_and_value() {
        let m = WorkerMetrics::default();
        let c = Counters::default();
        c.queue_wait.record_us(300);
        c.queue_wait.record_us(40_000);
        let s = Snapshot {
            received: 10,
            responded: 7,
            dropped: 1,
            invalid: 1,
            errors: 1,
            queue_depth: 0,
            in_progress: 0,
            queue_capacity: 100,
            pool_size: 4,
            busy_workers: 0,
            scale_up_events: 3,
            scale_down_events: 2,
            connections: 2,
            reconnects: 5,
            queue_wait_us: serde_json::Value::Null,
            processing_us: serde_json::Value::Null,
            coalesced_wakeups: 0,
        };
        let text = m.render(&s, &c);
        let names = contract();
        assert_eq!(names.len(), 14, "{names:?}");
        for (name, kind) in names {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind}:\n{text}"
            );
        }
        for line in [
            "worker_requests_received_total 10",
            "worker_responses_published_total 7",
            "worker_queue_capacity 100",
            "worker_scale_events_total{direction=\"up\"} 3",
            "worker_scale_events_total{direction=\"down\"} 2",
            "worker_reconnects_total 5",
            "worker_queue_wait_seconds_bucket{le=\"0.0005\"} 1",
            "worker_queue_wait_seconds_bucket{le=\"0.05\"} 2",
            "worker_queue_wait_seconds_count 2",
            "worker_processing_seconds_count 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // a second scrape sets, never adds (series order may differ between renders)
        let sorted = |t: &str| {
            let mut v: Vec<String> = t.lines().map(str::to_string).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&m.render(&s, &c)), sorted(&text));
    }
}
