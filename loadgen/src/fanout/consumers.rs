//! Progress of the Kafka consumers of the scaling-test shape (`GATEWAY_URLS=kafka://...`): each
//! consumer's lag (librdkafka's statistics, once a second), when it last made progress, and
//! whether it is up; from them, once a second, the lag of the most-behind consumer, the sum over
//! consumers and the failing consumers (docs/kafka.md): a consumer is failing when it has made no
//! progress for `FAILING_AFTER_SEC` while it has lag or is down (after it first came up). A
//! consumer that failed at any time is remembered for the report. Once the run stops its
//! subscribers the samples freeze: stopping is not failing.

use rr_common::link::ConsumerProgress;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// One consumer, written by its handler, read by the sampler.
#[derive(Default)]
pub struct Progress {
    /// Milliseconds (since [`Consumers::base`]) of the last received message or of coming up.
    last_ms: AtomicU64,
    /// Lag plus one (0: not measured yet).
    lag: AtomicU64,
    up: AtomicBool,
    joined: AtomicBool,
    failed: AtomicBool,
    /// Group rebalances it went through (its partitions revoked).
    rebalances: AtomicU64,
    /// Records it read again (at an offset it had already handed on).
    redelivered: AtomicU64,
    /// Offsets it jumped over (records it never got).
    skipped: AtomicU64,
}

/// What the sampler saw at one second's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub lag_max: u64,
    pub lag_sum: u64,
    pub failing: u64,
}

/// Every consumer's progress (empty when the subscribers are not Kafka consumers).
pub struct Consumers {
    base: Instant,
    all: Box<[Progress]>,
    failing_after_ms: u64,
    /// Largest `lag_max` sampled so far.
    lag_peak: AtomicU64,
    /// Failing consumers at the last sample.
    failing_now: AtomicU64,
    /// The run is ending: consumers going down now are stopped, not failing.
    frozen: AtomicBool,
    last: std::sync::Mutex<Sample>,
}

impl Consumers {
    pub fn new(n: u32, failing_after: Duration) -> Consumers {
        Consumers {
            base: Instant::now(),
            all: (0..n).map(|_| Progress::default()).collect(),
            failing_after_ms: failing_after.as_millis() as u64,
            lag_peak: AtomicU64::new(0),
            failing_now: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            last: std::sync::Mutex::default(),
        }
    }

    /// Whether the subscribers are Kafka consumers.
    pub fn enabled(&self) -> bool {
        !self.all.is_empty()
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Consumer `idx` received a message at `now`.
    #[inline]
    pub fn progressed(&self, idx: u32, now: Instant) {
        if let Some(p) = self.all.get(idx as usize) {
            p.last_ms.store(self.ms(now), Relaxed);
        }
    }

    /// What consumer `idx`'s transport last told of its progress.
    pub fn progress(&self, idx: u32, x: ConsumerProgress) {
        if let Some(p) = self.all.get(idx as usize) {
            if let Some(lag) = x.lag {
                p.lag.store(lag.saturating_add(1), Relaxed);
            }
            p.rebalances.fetch_add(x.rebalances, Relaxed);
            p.redelivered.fetch_add(x.redelivered, Relaxed);
            p.skipped.fetch_add(x.skipped, Relaxed);
        }
    }

    /// Sum over the consumers of one of their counters, and the consumers where it is not 0.
    fn count(&self, f: impl Fn(&Progress) -> &AtomicU64) -> (u64, u64) {
        self.all
            .iter()
            .map(|p| f(p).load(Relaxed))
            .fold((0, 0), |(sum, n), r| (sum + r, n + u64::from(r > 0)))
    }

    /// Group rebalances summed over the consumers, and the consumers that went through any.
    pub fn rebalances(&self) -> (u64, u64) {
        self.count(|p| &p.rebalances)
    }

    /// Records the consumers read again (at an offset already handed on), and the consumers
    /// that did.
    pub fn redelivered(&self) -> (u64, u64) {
        self.count(|p| &p.redelivered)
    }

    /// Offsets the consumers jumped over (records they never got), and the consumers that did.
    pub fn skipped(&self) -> (u64, u64) {
        self.count(|p| &p.skipped)
    }

    /// Consumer `idx` came up (`true`) or went down.
    pub fn link(&self, idx: u32, up: bool, now: Instant) {
        if let Some(p) = self.all.get(idx as usize) {
            if up {
                p.joined.store(true, Relaxed);
                p.last_ms.store(self.ms(now), Relaxed);
            }
            p.up.store(up, Relaxed);
        }
    }

    /// Called when the run stops its subscribers: later samples repeat the last one.
    pub fn freeze(&self) {
        self.frozen.store(true, Relaxed);
    }

    /// The second's sample at `now`: lag of the most-behind consumer, the sum, the failing ones.
    pub fn sample(&self, now: Instant) -> Sample {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if self.frozen.load(Relaxed) {
            return *last;
        }
        let now_ms = self.ms(now);
        let mut s = Sample::default();
        for p in self.all.iter() {
            let lag = p.lag.load(Relaxed).saturating_sub(1);
            let up = p.up.load(Relaxed);
            if up {
                s.lag_max = s.lag_max.max(lag);
                s.lag_sum += lag;
            }
            let still = now_ms.saturating_sub(p.last_ms.load(Relaxed)) >= self.failing_after_ms;
            if p.joined.load(Relaxed) && still && (!up || lag > 0) {
                s.failing += 1;
                p.failed.store(true, Relaxed);
            }
        }
        self.lag_peak.fetch_max(s.lag_max, Relaxed);
        self.failing_now.store(s.failing, Relaxed);
        *last = s;
        s
    }

    /// Consumers failing at the last sample.
    pub fn failing(&self) -> u64 {
        self.failing_now.load(Relaxed)
    }

    /// Consumers that were failing at any sample.
    pub fn failed(&self) -> u64 {
        self.all.iter().filter(|p| p.failed.load(Relaxed)).count() as u64
    }

    /// The largest lag of the most-behind consumer at any sample.
    pub fn lag_peak(&self) -> u64 {
        self.lag_peak.load(Relaxed)
    }

    /// The current lag: most-behind consumer, sum (consumers that are up).
    pub fn lag_now(&self) -> (u64, u64) {
        self.all
            .iter()
            .filter(|p| p.up.load(Relaxed))
            .map(|p| p.lag.load(Relaxed).saturating_sub(1))
            .fold((0, 0), |(m, s), l| (m.max(l), s + l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_without_progress_fails_when_it_has_lag_or_is_down() {
        let c = Consumers::new(3, Duration::from_secs(2));
        let t0 = c.base;
        assert!(c.enabled());
        for i in 0..3 {
            c.link(i, true, t0);
        }
        let lag = |n| ConsumerProgress {
            lag: Some(n),
            ..ConsumerProgress::default()
        };
        c.progress(0, lag(5));
        c.progress(1, lag(0));
        c.progress(2, lag(7));
        let s = c.sample(t0 + Duration::from_secs(1));
        assert_eq!(
            s,
            Sample {
                lag_max: 7,
                lag_sum: 12,
                failing: 0
            },
            "not yet {:?}",
            c.failing_after_ms
        );
        // 0 keeps receiving; 1 is idle without lag (not failing); 2 went down
        c.progressed(0, t0 + Duration::from_millis(2500));
        c.link(2, false, t0 + Duration::from_secs(2));
        let s = c.sample(t0 + Duration::from_secs(3));
        assert_eq!((s.lag_max, s.lag_sum, s.failing), (5, 5, 1));
        assert_eq!((c.failing(), c.failed(), c.lag_peak()), (1, 1, 7));
        // 0 stops too, with lag
        let s = c.sample(t0 + Duration::from_millis(4600));
        assert_eq!(s.failing, 2);
        // 2 comes back: failed once, not failing now
        c.link(2, true, t0 + Duration::from_secs(5));
        c.progress(2, lag(0));
        let s = c.sample(t0 + Duration::from_secs(5));
        assert_eq!(s.failing, 1);
        assert_eq!(c.failed(), 2);
        // the run ends: its subscribers stopping are not failing
        c.freeze();
        for i in 0..3 {
            c.link(i, false, t0 + Duration::from_secs(6));
        }
        assert_eq!(c.sample(t0 + Duration::from_secs(20)), s);
        assert_eq!(c.failing(), 1);
        assert!(!Consumers::new(0, Duration::from_secs(1)).enabled());
    }

    #[test]
    fn rebalances_redeliveries_and_skips_add_up_per_consumer() {
        let c = Consumers::new(3, Duration::from_secs(2));
        let ev = |rebalances, redelivered, skipped| ConsumerProgress {
            lag: None,
            rebalances,
            redelivered,
            skipped,
        };
        c.progress(0, ev(1, 0, 0));
        c.progress(0, ev(2, 40, 1));
        c.progress(2, ev(0, 3, 0));
        c.progress(1, ev(0, 0, 6));
        // out of range: ignored
        c.progress(9, ev(5, 5, 5));
        assert_eq!(c.rebalances(), (3, 1));
        assert_eq!(c.redelivered(), (43, 2));
        assert_eq!(c.skipped(), (7, 2));
        // no lag in those reports: none measured
        assert_eq!(c.lag_now(), (0, 0));
    }
}
