//! Read coalescing (`COALESCE_US`, off by default): at high request rates the worker's runtime
//! waits a short window after each wake-up before it reads, so the requests of one burst are
//! read, answered and written out together instead of over several wake-ups.
//!
//! Why: a broker such as mosquitto 2.0 reads one packet per connection per pass of its event
//! loop, so a burst of requests reaches an idle worker over several passes, and the worker is
//! woken, reads, answers and writes once per pass. On a virtual machine the wake-up, the reads
//! and the small writes cost more than the work on the answers (benchmarks/README.md, "The
//! worker's read coalescing").
//! Waiting `COALESCE_US` after a wake-up trades up to that much latency per answer for fewer
//! wake-ups, reads and writes, like a network card's interrupt moderation.
//!
//! The window is only taken while it pays: when at least [`MIN_EXPECTED`] more requests are
//! expected to arrive within it at the rate measured over the last [`RATE_SPAN`]. At low rates
//! (1,000 req/s with a 300 µs window expects 0.3) the worker answers as soon as it wakes.

use crate::pool::Shared;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Requests expected within the window for it to be taken.
pub const MIN_EXPECTED: f64 = 2.0;

/// Span over which the request rate is measured.
pub const RATE_SPAN: Duration = Duration::from_millis(20);

/// Decides, at each wake-up of the worker's runtime, whether to wait before reading.
pub struct Coalesce {
    window: Duration,
    /// The running worker's counters (set once it has started).
    shared: OnceLock<Arc<Shared>>,
    state: Mutex<Rate>,
    /// Wake-ups that waited, for `/stats` and tests.
    waited: AtomicU64,
}

/// Requests per second over the last completed span.
struct Rate {
    since: Instant,
    count_then: u64,
    per_s: f64,
}

impl Coalesce {
    pub fn new(window: Duration) -> Coalesce {
        Coalesce {
            window,
            shared: OnceLock::new(),
            state: Mutex::new(Rate {
                since: Instant::now(),
                count_then: 0,
                per_s: 0.0,
            }),
            waited: AtomicU64::new(0),
        }
    }

    /// The worker whose received requests set the rate.
    pub fn attach(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }

    /// Wake-ups that waited the window.
    pub fn waited(&self) -> u64 {
        self.waited.load(Relaxed)
    }

    /// The window to wait at a wake-up at `now` when `received` requests have arrived so far
    /// (None: read at once).
    pub fn decide(&self, now: Instant, received: u64) -> Option<Duration> {
        let mut r = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let span = now.saturating_duration_since(r.since);
        if span >= RATE_SPAN {
            r.per_s = received.saturating_sub(r.count_then) as f64 / span.as_secs_f64();
            r.since = now;
            r.count_then = received;
        }
        (r.per_s * self.window.as_secs_f64() >= MIN_EXPECTED).then_some(self.window)
    }

    /// Called by the runtime each time its thread unparks: waits the window when it pays.
    pub fn on_unpark(&self) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let received = shared.counters.received.load(Relaxed);
        if let Some(w) = self.decide(Instant::now(), received) {
            self.waited.fetch_add(1, Relaxed);
            std::thread::sleep(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_when_enough_requests_are_expected_within_the_window() {
        let c = Coalesce::new(Duration::from_micros(300));
        let t0 = Instant::now();
        // no rate measured yet
        assert_eq!(c.decide(t0, 0), None);
        // 1,000 req/s: 0.3 expected in 300 µs
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(c.decide(t1, 100), None);
        // 10,000 req/s: 3 expected
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(c.decide(t2, 100 + 1000), Some(Duration::from_micros(300)));
        // within a span the last rate holds
        assert_eq!(
            c.decide(t2 + Duration::from_millis(1), 1101),
            Some(Duration::from_micros(300))
        );
        // the load stops: the next span measures nothing and the worker reads at once
        let t3 = t2 + Duration::from_millis(50);
        assert_eq!(c.decide(t3, 1101), None);
    }

    #[test]
    fn the_threshold_is_two_requests_per_window() {
        // 6,000 req/s x 300 µs = 1.8 < 2; 7,000 x 300 µs = 2.1
        for (rate, expect) in [(6_000u64, false), (7_000, true)] {
            let c = Coalesce::new(Duration::from_micros(300));
            let t0 = Instant::now();
            c.decide(t0, 0);
            let got = c.decide(t0 + Duration::from_secs(1), rate);
            assert_eq!(got.is_some(), expect, "rate {rate}");
        }
    }
}
