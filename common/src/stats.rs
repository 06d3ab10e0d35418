//! Measurement plumbing: HdrHistogram latency recorders merged on a timer, percentile
//! summaries for reports, and a Prometheus text-format writer that exports histograms with
//! fixed buckets (never summaries), so latencies aggregate across instances.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Prometheus latency buckets in seconds: 100 µs to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Highest latency tracked, in microseconds (values above are clamped): 1 hour.
pub const MAX_TRACKED_US: u64 = 3_600_000_000;

/// A new histogram of microseconds with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("static histogram bounds are valid")
}

/// Records a value in microseconds, clamping to the tracked range.
#[inline]
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, MAX_TRACKED_US));
}

/// Percentiles of a latency distribution, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// A histogram shared between hot-path tasks (which merge into it on a timer) and readers.
pub struct SharedHistogram {
    inner: Mutex<Histogram<u64>>,
}

impl Default for SharedHistogram {
    fn default() -> Self {
        SharedHistogram {
            inner: Mutex::new(new_histogram()),
        }
    }
}

impl SharedHistogram {
    /// Adds `local` into the shared histogram.
    pub fn merge(&self, local: &Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let _ = h.add(local);
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn snapshot(&self) -> Histogram<u64> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the content, leaving an empty histogram (for per-interval windows).
    pub fn take(&self) -> Histogram<u64> {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let out = h.clone();
        h.reset();
        out
    }
}

/// Builds a Prometheus text exposition (format 0.0.4).
#[derive(Default)]
pub struct PromWriter {
    out: String,
}

impl PromWriter {
    pub fn new() -> Self {
        PromWriter {
            out: String::with_capacity(8 * 1024),
        }
    }

    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.head(name, help, "counter");
        let _ = writeln!(self.out, "{name} {v}");
    }

    /// A counter family with one label (e.g. `direction`).
    pub fn counter_labeled(&mut self, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        self.head(name, help, "counter");
        for (lv, v) in values {
            let _ = writeln!(self.out, "{name}{{{label}=\"{lv}\"}} {v}");
        }
    }

    pub fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.head(name, help, "gauge");
        let _ = writeln!(self.out, "{name} {}", fmt_f64(v));
    }

    /// A histogram in seconds built from an HdrHistogram of microseconds.
    pub fn histogram_us(&mut self, name: &str, help: &str, h: &Histogram<u64>) {
        self.head(name, help, "histogram");
        for b in LATENCY_BUCKETS {
            let bound_us = (b * 1e6) as u64;
            let n = if h.is_empty() {
                0
            } else {
                h.count_between(0, bound_us)
            };
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let count = h.len();
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum_s = if count == 0 {
            0.0
        } else {
            h.mean() * count as f64 / 1e6
        };
        let _ = writeln!(self.out, "{name}_sum {}", fmt_f64(sum_s));
        let _ = writeln!(self.out, "{name}_count {count}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_buckets() {
        let mut h = new_histogram();
        for us in [50, 150, 900, 2_000, 40_000] {
            record_us(&mut h, us);
        }
        let s = Summary::of(&h);
        assert_eq!(s.min, 50);
        assert!(s.max >= 40_000 && s.max < 40_100);
        let mut w = PromWriter::new();
        w.histogram_us("x_seconds", "test", &h);
        let text = w.finish();
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.001\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0025\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("x_seconds_count 5\n"));
        assert!(text.contains("# TYPE x_seconds histogram\n"));
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Summary::of(&new_histogram()), Summary::default());
    }
}
