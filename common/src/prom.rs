//! Prometheus export of one instance (`/metrics`). Counters and gauges live in a
//! metrics-exporter-prometheus recorder owned by that instance, never the process-global one (a
//! loadgen and a worker share one process in tests): handles are registered once and set from the
//! hot path's own counters when scraped. Latency histograms are written from bucket totals with
//! the exporter's own formatting functions; [`Exporter::render`] says why they skip its recorder.

use crate::stats::{BucketTotals, LATENCY_BUCKETS};
pub use metrics::{Counter, Gauge};
use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::formatting::{
    write_help_line, write_metric_line, write_type_line,
};
use metrics_exporter_prometheus::{
    LabelSet, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The `/metrics` registry of one loadgen, worker or fan-out instance.
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

/// A latency histogram family (seconds, buckets [`LATENCY_BUCKETS`]), filled at render time.
pub struct LatencyHistogram {
    name: &'static str,
    help: &'static str,
    labels: LabelSet,
}

impl Exporter {
    pub fn new() -> Exporter {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("LATENCY_BUCKETS is not empty")
            .build_recorder();
        let handle = recorder.handle();
        Exporter { recorder, handle }
    }

    /// Registers a counter; set it with `Counter::absolute` from the instance's own totals.
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.labeled_counter(name, help, &[])
    }

    /// Registers one labelled series of a counter family (e.g. `direction="up"`).
    pub fn labeled_counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &'static str)],
    ) -> Counter {
        self.recorder
            .describe_counter(name.into(), None, help.into());
        let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::new(k, v)).collect();
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    /// Registers a gauge.
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.recorder.describe_gauge(name.into(), None, help.into());
        self.recorder
            .register_gauge(&Key::from_static_name(name), &METADATA)
    }

    /// Declares a latency histogram family.
    pub fn histogram(&self, name: &'static str, help: &'static str) -> LatencyHistogram {
        LatencyHistogram {
            name,
            help,
            labels: LabelSet::from_key_and_global(
                &Key::from_static_name(name),
                &Default::default(),
            ),
        }
    }

    /// The exposition: every counter and gauge as last set, then each histogram from `totals`
    /// (cumulative since start, so Prometheus sees counters that only grow).
    ///
    /// Why histograms bypass the recorder: its histogram storage keeps one entry per sample, and
    /// `record_many(value, n)` is the `metrics` trait's default loop of `n` single records, so
    /// replaying the hot path's bucket deltas through it costs about 0.1 µs per request per
    /// histogram at every scrape (`cargo bench -p rr-common --bench export`, figures in
    /// benchmarks/README.md), against O(buckets) here.
    pub fn render(&self, totals: &[(&LatencyHistogram, BucketTotals)]) -> String {
        let mut out = self.handle.render();
        for (h, t) in totals {
            write_help_line(&mut out, h.name, None, None, h.help);
            write_type_line(&mut out, h.name, None, None, "histogram");
            let mut acc = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&t.counts) {
                acc += n;
                write_metric_line(
                    &mut out,
                    h.name,
                    Some("bucket"),
                    &h.labels,
                    Some(("le", bound)),
                    acc,
                    None,
                );
            }
            let count = t.count();
            write_metric_line(
                &mut out,
                h.name,
                Some("bucket"),
                &h.labels,
                Some(("le", "+Inf")),
                count,
                None,
            );
            write_metric_line::<&str, f64>(
                &mut out,
                h.name,
                Some("sum"),
                &h.labels,
                None,
                t.sum_s,
                None,
            );
            write_metric_line::<&str, u64>(
                &mut out,
                h.name,
                Some("count"),
                &h.labels,
                None,
                count,
                None,
            );
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_histogram, record_us};

    /// `name{labels} value` lines of an exposition, with the HELP/TYPE of each family.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_gauges_and_labels_render_with_help_and_type() {
        let e = Exporter::new();
        let sent = e.counter("x_sent_total", "Things sent");
        let up = e.labeled_counter("x_scale_total", "Resizes", &[("direction", "up")]);
        let down = e.labeled_counter("x_scale_total", "Resizes", &[("direction", "down")]);
        let g = e.gauge("x_rate", "Offered rate");
        sent.absolute(42);
        sent.absolute(43); // absolute, not added
        up.absolute(2);
        down.absolute(1);
        g.set(12.5);
        let text = e.render(&[]);
        assert_eq!(sample(&text, "x_sent_total"), Some(43.0), "{text}");
        assert_eq!(
            sample(&text, "x_scale_total{direction=\"up\"}"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "x_scale_total{direction=\"down\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(sample(&text, "x_rate"), Some(12.5), "{text}");
        assert!(
            text.contains("# HELP x_sent_total Things sent\n# TYPE x_sent_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE x_rate gauge\n"), "{text}");
        assert_eq!(
            text.matches("# TYPE x_scale_total counter").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_buckets_never_summaries() {
        let e = Exporter::new();
        let lat = e.histogram("x_latency_seconds", "Latency");
        let mut h = new_histogram();
        for us in [50, 150, 900, 2_000, 2_500, 40_000_000] {
            record_us(&mut h, us);
        }
        let text = e.render(&[(&lat, BucketTotals::of_hdr(&h))]);
        for (series, v) in [
            ("x_latency_seconds_bucket{le=\"0.0001\"}", 1.0),
            ("x_latency_seconds_bucket{le=\"0.00025\"}", 2.0),
            ("x_latency_seconds_bucket{le=\"0.001\"}", 3.0),
            ("x_latency_seconds_bucket{le=\"0.0025\"}", 5.0),
            ("x_latency_seconds_bucket{le=\"30\"}", 5.0),
            ("x_latency_seconds_bucket{le=\"+Inf\"}", 6.0),
            ("x_latency_seconds_count", 6.0),
        ] {
            assert_eq!(sample(&text, series), Some(v), "{series} in\n{text}");
        }
        let sum = sample(&text, "x_latency_seconds_sum").unwrap();
        assert!((sum - 40.0056).abs() < 0.05, "sum {sum}");
        assert!(
            text.contains("# TYPE x_latency_seconds histogram\n"),
            "{text}"
        );
        assert!(!text.contains("quantile"), "{text}");
    }

    #[test]
    fn two_exporters_in_one_process_do_not_share_series() {
        let (a, b) = (Exporter::new(), Exporter::new());
        let ca = a.counter("y_total", "y");
        let cb = b.counter("y_total", "y");
        ca.absolute(7);
        assert_eq!(sample(&a.render(&[]), "y_total"), Some(7.0));
        assert_eq!(sample(&b.render(&[]), "y_total"), Some(0.0));
        cb.absolute(3);
        assert_eq!(sample(&a.render(&[]), "y_total"), Some(7.0));
        // nothing went to the global recorder either
        metrics::counter!("y_total").absolute(99);
        assert_eq!(sample(&b.render(&[]), "y_total"), Some(3.0));
    }
}
