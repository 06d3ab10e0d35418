//! The fan-out scenario's `/metrics`: its metric families registered once on an exporter of its
//! own, set from the live counters at each scrape.

use super::stats::{get, Live};
use rr_common::prom::{Counter, Exporter, Gauge, LatencyHistogram};

pub struct FanoutMetrics {
    exporter: Exporter,
    published: Counter,
    received: Counter,
    bytes: Counter,
    connections: Gauge,
    disconnects: Counter,
    lost: Counter,
    lag_max: Gauge,
    lag_sum: Gauge,
    failing: Gauge,
    latency: LatencyHistogram,
}

impl Default for FanoutMetrics {
    fn default() -> Self {
        let e = Exporter::new();
        FanoutMetrics {
            published: e.counter(
                "fanout_messages_published_total",
                "Messages published to the subjects",
            ),
            received: e.counter(
                "fanout_messages_received_total",
                "Messages received by the subscriber connections",
            ),
            bytes: e.counter(
                "fanout_bytes_received_total",
                "Bytes of MQTT PUBLISH packets received by the subscribers",
            ),
            connections: e.gauge("fanout_connections", "Subscriber connections currently up"),
            disconnects: e.counter(
                "fanout_disconnects_total",
                "Subscriber connections lost (each is followed by a reconnect attempt)",
            ),
            lost: e.counter(
                "fanout_messages_lost_total",
                "Messages missed by a subscriber (sequence gaps per client and subject)",
            ),
            lag_max: e.gauge(
                "fanout_consumer_lag_max",
                "Kafka consumers: lag of the most-behind consumer (records; 0 without Kafka consumers)",
            ),
            lag_sum: e.gauge(
                "fanout_consumer_lag",
                "Kafka consumers: lag summed over the consumers (records; 0 without Kafka consumers)",
            ),
            failing: e.gauge(
                "fanout_failing_clients",
                "Kafka consumers making no progress for FAILING_AFTER_SEC while behind or down",
            ),
            latency: e.histogram(
                "fanout_latency_seconds",
                "Publish (scheduled) to receipt latency of fan-out deliveries",
            ),
            exporter: e,
        }
    }
}

impl FanoutMetrics {
    /// The exposition of `live` (counts since start).
    pub fn render(&self, live: &Live) -> String {
        let c = &live.c;
        self.published.absolute(get(&c.published));
        self.received.absolute(get(&c.received));
        self.bytes.absolute(get(&c.bytes));
        self.connections.set(live.connections() as f64);
        self.disconnects.absolute(get(&c.disconnects));
        self.lost.absolute(get(&c.lost));
        let (lag_max, lag_sum) = live.consumers.lag_now();
        self.lag_max.set(lag_max as f64);
        self.lag_sum.set(lag_sum as f64);
        self.failing.set(live.consumers.failing() as f64);
        self.exporter
            .render(&[(&self.latency, live.lat.total_buckets())])
    }
}
