//! The rr/pub scenario's `/metrics`: its metric families registered once on an exporter of its
//! own (two loadgens in one process never share a series), set from the books at each scrape.

use super::books::Books;
use rr_common::prom::{Counter, Exporter, Gauge, LatencyHistogram};
use std::sync::atomic::Ordering::Relaxed;

pub struct RrMetrics {
    exporter: Exporter,
    sent: Counter,
    matched: Counter,
    timeouts: Counter,
    late: Counter,
    duplicates: Counter,
    invalid: Counter,
    skipped: Counter,
    publish_errors: Counter,
    inflight: Gauge,
    connections: Gauge,
    reconnects: Counter,
    /// The current target (STAGES, the capacity search; the schedule's rate otherwise).
    offered: Gauge,
    active: Gauge,
    latency: LatencyHistogram,
    lag: LatencyHistogram,
}

impl RrMetrics {
    /// Registers every family; the one that never changes is set here once, the target to
    /// every client active at `offered_rate` until [`RrMetrics::set_target`] says otherwise.
    pub fn new(virtual_clients: u32, offered_rate: f64) -> RrMetrics {
        let e = Exporter::new();
        e.gauge("loadgen_virtual_clients", "Virtual clients simulated")
            .set(f64::from(virtual_clients));
        let offered = e.gauge(
            "loadgen_offered_rate",
            "Offered request rate now (requests per second; follows STAGES and the capacity search)",
        );
        offered.set(offered_rate);
        let active = e.gauge(
            "loadgen_active_clients",
            "Virtual clients sending now (all unless STAGES or the capacity search say fewer)",
        );
        active.set(f64::from(virtual_clients));
        RrMetrics {
            offered,
            active,
            sent: e.counter("loadgen_requests_sent_total", "Requests published"),
            matched: e.counter(
                "loadgen_responses_matched_total",
                "Responses matched to their request in time",
            ),
            timeouts: e.counter(
                "loadgen_requests_timeout_total",
                "Requests without a response within TIMEOUT_MS",
            ),
            late: e.counter(
                "loadgen_responses_late_total",
                "Responses that arrived after their request timed out",
            ),
            duplicates: e.counter(
                "loadgen_responses_duplicate_total",
                "Second and further responses to one request",
            ),
            invalid: e.counter(
                "loadgen_responses_invalid_total",
                "Messages on reply topics that could not be matched",
            ),
            skipped: e.counter(
                "loadgen_requests_skipped_total",
                "Due sends skipped because the client was at its inflight cap",
            ),
            publish_errors: e.counter(
                "loadgen_publish_errors_total",
                "Due sends that could not be published (no connection up, or every connection's send queue full)",
            ),
            inflight: e.gauge(
                "loadgen_requests_inflight",
                "Requests sent and not yet resolved",
            ),
            connections: e.gauge("loadgen_connections", "MQTT connections up"),
            reconnects: e.counter(
                "loadgen_reconnects_total",
                "Reconnects after a lost connection",
            ),
            latency: e.histogram(
                "loadgen_response_latency_seconds",
                "Response latency from scheduled send to arrival",
            ),
            lag: e.histogram(
                "loadgen_schedule_lag_seconds",
                "How late the generator sent requests against their schedule (measured window)",
            ),
            exporter: e,
        }
    }

    /// The load profile's target now: offered requests per second and active clients.
    pub fn set_target(&self, rate: f64, active: f64) {
        self.offered.set(rate);
        self.active.set(active);
    }

    /// The exposition of `books` (counts since start) and the connection figures.
    pub fn render(&self, books: &Books, connections: usize, reconnects: u64) -> String {
        let t = books.total.snapshot();
        self.sent.absolute(t.sent);
        self.matched.absolute(t.matched);
        self.timeouts.absolute(t.timeouts);
        self.late.absolute(t.late);
        self.duplicates.absolute(t.duplicates);
        self.invalid.absolute(t.invalid);
        self.skipped.absolute(t.skipped);
        self.publish_errors.absolute(t.publish_errors);
        self.inflight.set(books.inflight.load(Relaxed) as f64);
        self.connections.set(connections as f64);
        self.reconnects.absolute(reconnects);
        self.exporter.render(&[
            (&self.latency, books.latency_all.totals()),
            (&self.lag, books.lag_window.totals()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rr::books::Outcome;
    use rr_common::stats::{new_histogram, record_us};

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn books_render_as_contract_series_and_histograms() {
        let m = RrMetrics::new(1000, 500.0);
        let books = Books::default();
        for _ in 0..3 {
            books.count(Outcome::Sent, true);
        }
        books.count(Outcome::Matched, true);
        books.count(Outcome::Timeout, false);
        books.inflight.store(1, Relaxed);
        let mut h = new_histogram();
        record_us(&mut h, 800);
        record_us(&mut h, 3_000);
        books.latency_all.merge(&h);
        let text = m.render(&books, 4, 2);
        for (series, v) in [
            ("loadgen_requests_sent_total", 3.0),
            ("loadgen_responses_matched_total", 1.0),
            ("loadgen_requests_timeout_total", 1.0),
            ("loadgen_requests_inflight", 1.0),
            ("loadgen_virtual_clients", 1000.0),
            ("loadgen_offered_rate", 500.0),
            ("loadgen_connections", 4.0),
            ("loadgen_reconnects_total", 2.0),
            ("loadgen_response_latency_seconds_bucket{le=\"0.001\"}", 1.0),
            ("loadgen_response_latency_seconds_bucket{le=\"0.005\"}", 2.0),
            ("loadgen_response_latency_seconds_count", 2.0),
            ("loadgen_schedule_lag_seconds_count", 0.0),
        ] {
            assert_eq!(value(&text, series), Some(v), "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE loadgen_response_latency_seconds histogram\n"));
    }
}
