//! What a running fan-out scenario shows: `/metrics` (through its own exporter, `export.rs`),
//! `/stats`, `/health`, `/ready`, and the counters the harness's tick, progress line and drain
//! read, all from the live counters of `stats.rs`.

use super::export::FanoutMetrics;
use super::stats::{get, Live};
use crate::harness::{self, Finished, Outstanding, RunState, Sample, Words};
use crate::report::{delivery_ratio, Books, DeliveryBooks};
use rr_common::http::Endpoints;
use rr_common::stats::Summary;
use std::sync::Arc;

/// `/metrics`, `/stats`, `/health`, `/ready` of a fan-out run, and what the harness's tick reads.
pub struct FanoutEndpoints {
    pub live: Arc<Live>,
    pub run: Arc<RunState>,
    /// Messages per second the publisher offers (0 when this process does not publish).
    pub offered_rate: f64,
    /// The planned measured window (`None`: until stopped).
    pub window: Option<std::time::Duration>,
    metrics: FanoutMetrics,
}

impl FanoutEndpoints {
    pub fn new(
        live: Arc<Live>,
        run: Arc<RunState>,
        offered_rate: f64,
        window: Option<std::time::Duration>,
    ) -> FanoutEndpoints {
        FanoutEndpoints {
            live,
            run,
            offered_rate,
            window,
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

    /// The window's delivery books so far; what is neither received nor lost yet is
    /// `unresolved` (the subscribers' tails are counted as lost only by `finish`).
    fn so_far(&self) -> Finished {
        let c = &self.live.c;
        let measured = self.run.measured_s();
        let duration_s = self
            .window
            .map_or(measured, |d| measured.min(d.as_secs_f64()));
        let (received, lost) = (get(&c.received_window), get(&c.lost_window));
        let exact = self.live.role == "both";
        let expected = if exact {
            get(&c.expected_window)
        } else {
            received + lost
        };
        let per_s = |n: u64| {
            if duration_s > 0.0 {
                n as f64 / duration_s
            } else {
                0.0
            }
        };
        let (latency, schedule_lag) = self.live.lat.window_histograms();
        let books = DeliveryBooks {
            role: self.live.role.into(),
            clients: self.live.clients,
            subjects: self.live.subjects,
            expected,
            received,
            bytes_received: get(&c.bytes_window),
            lost,
            delivery_ratio: delivery_ratio(received, expected),
            unresolved: expected.saturating_sub(received + lost),
            connections: self.live.connections(),
            disconnects: get(&c.disconnects),
            connect_failures: get(&c.connect_failures),
            delivered_rate: per_s(received),
            bytes_per_s: per_s(get(&c.bytes_window)),
            clock: (!exact).then(|| "wall".into()),
            clock_skewed: (!exact).then(|| get(&c.skewed)),
            kafka_consumers: self.live.kafka_books(),
            ..DeliveryBooks::default()
        };
        Finished {
            duration_s,
            offered_rate: self.offered_rate,
            sent: get(&c.published_window),
            duplicates: get(&c.duplicates),
            invalid: get(&c.invalid),
            skipped: get(&c.skipped_window),
            publish_errors: get(&c.publish_errors),
            reconnects: get(&c.reconnects),
            latency,
            schedule_lag,
            books: Books::Deliveries(books),
        }
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
        let mut rest = rest;
        if l.consumers.enabled() {
            let (lag_max, lag_sum) = l.consumers.lag_now();
            let (rebalances, clients_rebalanced) = l.consumers.rebalances();
            let (redelivered, clients_redelivered) = l.consumers.redelivered();
            let (skipped, clients_skipped) = l.consumers.skipped();
            rest["kafka_consumers"] = serde_json::json!({
                "consumer_lag_max": lag_max,
                "consumer_lag_sum": lag_sum,
                "failing_clients": l.consumers.failing(),
                "failed_clients": l.consumers.failed(),
                "rebalances": rebalances,
                "clients_rebalanced": clients_rebalanced,
                "redelivered": redelivered,
                "clients_redelivered": clients_redelivered,
                "skipped": skipped,
                "clients_skipped": clients_skipped,
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::stats::{add, process_cpu_seconds};
    use std::sync::atomic::Ordering;

    #[test]
    fn metrics_use_contract_names() {
        let live = Arc::new(Live::new(10, 5, "both"));
        live.c.connections.fetch_add(3, Ordering::Relaxed);
        add(&live.c.received, 4);
        live.lat.record(3, 1500, true, |_| {});
        live.lat.record(4, 700, false, |_| {});
        let run = Arc::new(RunState::new(
            "fanout",
            "t".into(),
            std::time::Duration::ZERO,
        ));
        let ends = FanoutEndpoints::new(live.clone(), run, 0.0, None);
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
