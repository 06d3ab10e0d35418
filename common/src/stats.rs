//! Measurement plumbing: HdrHistogram latency recorders merged on a timer, percentile
//! summaries for reports, and the bucket totals the Prometheus export (`prom.rs`) writes as
//! histograms with fixed buckets (never summaries), so latencies aggregate across instances.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
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
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
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

/// A latency distribution as the Prometheus export needs it: samples per bucket of
/// [`LATENCY_BUCKETS`] (not cumulative; the last entry counts values above the highest bound)
/// and the sum in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BucketTotals {
    pub counts: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum_s: f64,
}

impl BucketTotals {
    /// From an HdrHistogram of microseconds. A value counts in the first bucket whose bound is
    /// at or above the lowest value of its HdrHistogram bin (as `count_between(0, bound)` would).
    pub fn of_hdr(h: &Histogram<u64>) -> BucketTotals {
        let mut t = BucketTotals::default();
        if h.is_empty() {
            return t;
        }
        let bounds_us: Vec<u64> = LATENCY_BUCKETS
            .iter()
            .map(|b| (b * 1e6).round() as u64)
            .collect();
        // one walk over the bins from min to max (cheaper than hdrhistogram's `iter_recorded`)
        let (mut sum_us, mut i, mut value) = (0.0, 0, h.lowest_equivalent(h.min()));
        let max = h.max();
        while value <= max {
            let n = h.count_at(value);
            if n > 0 {
                while i < bounds_us.len() && value > bounds_us[i] {
                    i += 1;
                }
                t.counts[i] += n;
                sum_us += h.median_equivalent(value) as f64 * n as f64;
            }
            value = h.next_non_equivalent(value);
        }
        t.sum_s = sum_us / 1e6;
        t
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
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

    /// Records every value (µs) of `values` under one lock. A batch recorded in one pass keeps
    /// the counters it touches in cache (latencies cluster), where values recorded one at a
    /// time as they happen each cost a cache miss.
    pub fn record_each(&self, values: impl IntoIterator<Item = u64>) {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for v in values {
            record_us(&mut h, v);
        }
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Bucket totals for the Prometheus export. Copies the histogram first, so the lock that
    /// hot-path merges wait on is held for a copy, not for the walk over its bins.
    pub fn totals(&self) -> BucketTotals {
        BucketTotals::of_hdr(&self.snapshot())
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

/// A lock-free histogram with the fixed Prometheus buckets, for many concurrent recorders
/// (e.g. worker tasks). Percentiles read from it are bucket upper bounds.
pub struct AtomicBuckets {
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Default for AtomicBuckets {
    fn default() -> Self {
        AtomicBuckets {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl AtomicBuckets {
    #[inline]
    pub fn record_us(&self, us: u64) {
        let s = us as f64 / 1e6;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// Upper bound (µs) of the bucket holding quantile `q`; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return LATENCY_BUCKETS
                    .get(i)
                    .map_or(u64::MAX, |b| (b * 1e6) as u64);
            }
        }
        u64::MAX
    }

    /// Current totals for the Prometheus export.
    pub fn totals(&self) -> BucketTotals {
        BucketTotals {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_s: self.sum_us() as f64 / 1e6,
        }
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
        let t = BucketTotals::of_hdr(&h);
        let upto = |bound: f64| -> u64 {
            let i = LATENCY_BUCKETS.iter().position(|b| *b == bound).unwrap();
            t.counts[..=i].iter().sum()
        };
        assert_eq!(upto(0.0001), 1, "{t:?}");
        assert_eq!(upto(0.001), 3, "{t:?}");
        assert_eq!(upto(0.0025), 4, "{t:?}");
        assert_eq!(t.count(), 5);
        assert!((t.sum_s - 0.0431).abs() < 0.0001, "{t:?}");
    }

    #[test]
    fn atomic_buckets_export_cumulative_counts() {
        let b = AtomicBuckets::default();
        for us in [50, 150, 900, 2_000, 40_000_000] {
            b.record_us(us);
        }
        assert_eq!(b.count(), 5);
        assert_eq!(b.quantile_us(0.5), 1_000);
        let t = b.totals();
        let cumulative: Vec<u64> = t
            .counts
            .iter()
            .scan(0, |acc, n| {
                *acc += n;
                Some(*acc)
            })
            .collect();
        assert_eq!(cumulative[1], 2, "le=0.00025: {t:?}");
        assert_eq!(cumulative[LATENCY_BUCKETS.len() - 1], 4, "le=30: {t:?}");
        assert_eq!(cumulative[LATENCY_BUCKETS.len()], 5, "+Inf: {t:?}");
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Summary::of(&new_histogram()), Summary::default());
    }
}
