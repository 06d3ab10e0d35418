//! The books of a run: relaxed atomic counters updated on the hot path, kept twice (since start,
//! for Prometheus; and for the measured window, for the report), plus the shared latency
//! histograms that lanes merge into on a timer.

use rr_common::stats::SharedHistogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Outcome counters of requests.
#[derive(Default, Debug)]
pub struct Counts {
    pub sent: AtomicU64,
    pub matched: AtomicU64,
    pub timeouts: AtomicU64,
    pub late: AtomicU64,
    pub duplicates: AtomicU64,
    pub invalid: AtomicU64,
    pub skipped: AtomicU64,
    pub publish_errors: AtomicU64,
}

/// A plain copy of [`Counts`].
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CountsSnapshot {
    pub sent: u64,
    pub matched: u64,
    pub timeouts: u64,
    pub late: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub publish_errors: u64,
}

impl Counts {
    pub fn snapshot(&self) -> CountsSnapshot {
        CountsSnapshot {
            sent: self.sent.load(Relaxed),
            matched: self.matched.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            late: self.late.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            invalid: self.invalid.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            publish_errors: self.publish_errors.load(Relaxed),
        }
    }
}

/// Which counter an event goes to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Matched,
    Timeout,
    Late,
    Duplicate,
    Invalid,
    Skipped,
    PublishError,
}

impl Counts {
    #[inline]
    fn add(&self, o: Outcome, n: u64) {
        let c = match o {
            Outcome::Sent => &self.sent,
            Outcome::Matched => &self.matched,
            Outcome::Timeout => &self.timeouts,
            Outcome::Late => &self.late,
            Outcome::Duplicate => &self.duplicates,
            Outcome::Invalid => &self.invalid,
            Outcome::Skipped => &self.skipped,
            Outcome::PublishError => &self.publish_errors,
        };
        c.fetch_add(n, Relaxed);
    }
}

/// Everything a run counts.
#[derive(Default)]
pub struct Books {
    /// Since start (Prometheus counters).
    pub total: Counts,
    /// Requests scheduled inside the measured window (the report).
    pub window: Counts,
    /// Requests sent and not yet answered or timed out.
    pub inflight: AtomicU64,
    /// Latency since start (Prometheus histogram).
    pub latency_all: SharedHistogram,
    /// Latency of measured requests (report).
    pub latency_window: SharedHistogram,
    /// Latency since the last progress tick (live p50/p99).
    pub latency_recent: SharedHistogram,
    /// Schedule lag of measured sends (how late the generator itself was).
    pub lag_window: SharedHistogram,
    pub lag_recent: SharedHistogram,
}

impl Books {
    /// Counts one event; `measured` adds it to the window books too.
    #[inline]
    pub fn count(&self, o: Outcome, measured: bool) {
        self.total.add(o, 1);
        if measured {
            self.window.add(o, 1);
        }
    }
}
