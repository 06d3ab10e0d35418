//! What a scheduler lane records for the capacity instrument, next to its books: the gate of
//! the load profile, the per-second counts of the timeline, the latency and schedule lag of the
//! current second, the latency of the capacity step's window, and how busy the lane is. All of
//! it lane-local on the hot path; [`Tally::tick`] (once per lane tick) hands finished seconds to
//! the run's [`Instrument`] and picks up a changed profile or step window.

use super::gate::Gate;
use super::profile::{Profile, SharedProfile};
use super::timeline::{Field, LaneSeconds, Timeline, NS_PER_S};
use hdrhistogram::Histogram;
use rr_common::stats::{new_histogram, record_us, SharedHistogram};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Where a lane stands, for the sampler and the search driver.
#[derive(Default)]
struct Progress {
    /// The second the lane's clock is in (its earlier seconds' latency is merged).
    sec: AtomicU64,
    /// Every earlier second's counts have been handed over.
    complete_before: AtomicU64,
    /// Time the lane spent working (not waiting for its next tick), ns.
    busy_ns: AtomicU64,
}

/// The run-wide side: the profile lanes read, the timeline they fill, the capacity step.
pub struct Instrument {
    pub profile: SharedProfile,
    pub timeline: Timeline,
    /// Latency and schedule lag of requests scheduled in the step window.
    pub step_latency: SharedHistogram,
    pub step_lag: SharedHistogram,
    step_from: AtomicU64,
    step_to: AtomicU64,
    lanes: Vec<Progress>,
    /// VIRTUAL_CLIENTS × 1000 / INTERVAL_MS: requests per second per active client × clients.
    per_client_rate: f64,
}

impl Instrument {
    /// `per_client_rate`: requests per second one active virtual client sends (1000/INTERVAL_MS).
    pub fn new(profile: Profile, lanes: usize, per_client_rate: f64) -> Instrument {
        Instrument {
            profile: SharedProfile::new(profile),
            timeline: Timeline::default(),
            step_latency: SharedHistogram::default(),
            step_lag: SharedHistogram::default(),
            step_from: AtomicU64::new(u64::MAX),
            step_to: AtomicU64::new(u64::MAX),
            lanes: (0..lanes).map(|_| Progress::default()).collect(),
            per_client_rate,
        }
    }

    /// The profile's offered rate at `t` (ns since the epoch).
    pub fn target_rate(&self, t: u64) -> f64 {
        self.profile.get().at(t) * self.per_client_rate
    }

    /// The offered rate of `active` clients.
    pub fn target_rate_of(&self, active: f64) -> f64 {
        active * self.per_client_rate
    }

    pub fn active_clients(&self, t: u64) -> f64 {
        self.profile.get().at(t)
    }

    /// From `at` on, offer `rate` requests per second.
    pub fn set_rate_from(&self, at: u64, rate: f64) {
        let active = rate / self.per_client_rate;
        self.profile.update(|p| p.set_from(at, active, 0));
    }

    /// Records latency and lag of requests scheduled in `[from, to)` from now on (the
    /// histograms start empty).
    pub fn open_step(&self, from: u64, to: u64) {
        // `from` first: a lane reading between the stores sees an empty window
        self.step_from.store(from, Relaxed);
        self.step_to.store(to, Relaxed);
        self.step_latency.take();
        self.step_lag.take();
    }

    /// Every second before this one has complete counts in the timeline.
    pub fn complete_before(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| l.complete_before.load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Every lane's clock has moved past the seconds before this one.
    pub fn seconds_passed(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| l.sec.load(Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Busy time of each lane so far, ns.
    pub fn lane_busy_ns(&self) -> Vec<u64> {
        self.lanes.iter().map(|l| l.busy_ns.load(Relaxed)).collect()
    }
}

/// One lane's recorder.
pub struct Tally {
    pub gate: Gate,
    lane: usize,
    seconds: LaneSeconds,
    sec: u64,
    lat: Histogram<u64>,
    lag: Histogram<u64>,
    step: (u64, u64),
    step_lat: Histogram<u64>,
    step_lag: Histogram<u64>,
    busy_ns: u64,
}

#[inline]
fn sec_of(ns: u64) -> u64 {
    ns / NS_PER_S
}

impl Tally {
    pub fn new(
        lane: u32,
        lanes: u32,
        total_clients: u32,
        timeout_ns: u64,
        run: &Instrument,
    ) -> Tally {
        Tally {
            gate: Gate::new(lane, lanes, total_clients, &run.profile),
            lane: lane as usize,
            seconds: LaneSeconds::new(timeout_ns),
            sec: 0,
            lat: new_histogram(),
            lag: new_histogram(),
            step: (u64::MAX, u64::MAX),
            step_lat: new_histogram(),
            step_lag: new_histogram(),
            busy_ns: 0,
        }
    }

    /// Counts an event of the request scheduled at `sched` (ns; for `Invalid`, the arrival).
    #[inline]
    pub fn count(&mut self, sched: u64, f: Field) {
        self.seconds.add(sec_of(sched), f);
    }

    /// Whether a request scheduled at `sched` belongs to the open capacity step.
    #[inline]
    pub fn in_step(&self, sched: u64) -> bool {
        sched >= self.step.0 && sched < self.step.1
    }

    /// Whether a tick at `now` starts a new second (and hands the last one over).
    #[inline]
    pub fn new_second(&self, now: u64) -> bool {
        sec_of(now) != self.sec
    }

    /// Records send lags (µs) and whether each request was in the capacity step.
    pub fn sent(&mut self, lags: impl IntoIterator<Item = (u64, bool)>) {
        for (lag_us, step) in lags {
            record_us(&mut self.lag, lag_us);
            if step {
                record_us(&mut self.step_lag, lag_us);
            }
        }
    }

    /// Records answer latencies (µs) and whether each request was in the capacity step.
    pub fn answered(&mut self, lats: impl IntoIterator<Item = (u64, bool)>) {
        for (us, step) in lats {
            record_us(&mut self.lat, us);
            if step {
                record_us(&mut self.step_lat, us);
            }
        }
    }

    /// Adds working time of the lane.
    #[inline]
    pub fn busy(&mut self, ns: u64) {
        self.busy_ns += ns;
    }

    /// Once per lane tick, before the tick's work: a new second hands the last one's latency
    /// and the finished seconds' counts over; a changed profile or step window is picked up.
    pub fn tick(&mut self, now: u64, run: &Instrument) {
        self.gate.refresh(&run.profile);
        self.step = (run.step_from.load(Relaxed), run.step_to.load(Relaxed));
        let p = &run.lanes[self.lane];
        p.busy_ns.store(self.busy_ns, Relaxed);
        let now_sec = sec_of(now);
        if now_sec != self.sec {
            self.hand_over(run);
            self.sec = now_sec;
            p.sec.store(now_sec, Relaxed);
            self.seconds.roll(now_sec, &run.timeline);
            p.complete_before
                .store(self.seconds.complete_before(), Relaxed);
        }
    }

    fn hand_over(&mut self, run: &Instrument) {
        run.timeline.merge_latency(self.sec, &self.lat, &self.lag);
        self.lat.reset();
        self.lag.reset();
    }

    /// Merges the step histograms into the run's (on the lane's merge timer).
    pub fn merge(&mut self, run: &Instrument) {
        if !self.step_lat.is_empty() {
            run.step_latency.merge(&self.step_lat);
            self.step_lat.reset();
        }
        if !self.step_lag.is_empty() {
            run.step_lag.merge(&self.step_lag);
            self.step_lag.reset();
        }
    }

    /// The lane is done: everything goes to the run.
    pub fn finish(&mut self, run: &Instrument) {
        self.merge(run);
        self.hand_over(run);
        self.seconds.flush_all(&run.timeline);
        let p = &run.lanes[self.lane];
        p.sec.store(u64::MAX, Relaxed);
        p.complete_before.store(u64::MAX, Relaxed);
        p.busy_ns.store(self.busy_ns, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::timeline::Sample;

    const S: u64 = NS_PER_S;

    #[test]
    fn a_lane_hands_over_seconds_and_the_step_window() {
        let run = Instrument::new(Profile::constant(10.0), 2, 1.0);
        let mut a = Tally::new(0, 2, 10, S, &run);
        let mut b = Tally::new(1, 2, 10, S, &run);
        run.open_step(2 * S, 4 * S);
        for t in (0..8 * S).step_by((S / 10) as usize) {
            for l in [&mut a, &mut b] {
                l.tick(t, &run);
                l.count(t, Field::Sent);
                l.sent([(100, l.in_step(t))]);
                if t >= S / 2 {
                    let sched = t - S / 2;
                    l.count(sched, Field::Matched);
                    l.answered([(500_000, l.in_step(sched))]);
                }
                l.busy(1000);
                l.merge(&run);
            }
        }
        // seconds older than TIMEOUT (1 s) and a margin are complete, in every lane
        assert_eq!(run.seconds_passed(), 7);
        assert_eq!(run.complete_before(), 5);
        assert_eq!(run.timeline.sum(2, 4).get(Field::Sent), 2 * 2 * 10);
        assert_eq!(run.timeline.sum(2, 4).get(Field::Matched), 2 * 2 * 10);
        // the step's latency: answers to requests scheduled in [2 s, 4 s)
        assert_eq!(run.step_latency.snapshot().len(), 2 * 2 * 10);
        assert_eq!(run.step_lag.snapshot().len(), 2 * 2 * 10);
        // busy time is published at each tick: the last tick's work shows at the next
        assert_eq!(run.lane_busy_ns(), vec![79_000, 79_000]);
        run.timeline
            .close_until(run.seconds_passed(), Sample::default());
        let rows = run.timeline.rows(0);
        assert!(
            (499_000..=501_000).contains(&rows[3].p99_us),
            "{:?}",
            rows[3]
        );
        assert_eq!(rows[3].lag_p99_us, 100);
        a.finish(&run);
        b.finish(&run);
        assert_eq!(run.complete_before(), u64::MAX);
        assert_eq!(run.timeline.sum(0, 100).get(Field::Sent), 2 * 80);
    }

    #[test]
    fn a_rate_change_reaches_the_gate_at_the_next_tick() {
        let run = Instrument::new(Profile::constant(100.0), 1, 0.5);
        let mut t = Tally::new(0, 1, 100, S, &run);
        t.tick(0, &run);
        assert!(t.gate.offered(0, S));
        run.set_rate_from(2 * S, 0.0);
        assert_eq!(run.target_rate(S), 50.0);
        assert_eq!(run.target_rate(3 * S), 0.0);
        t.tick(S, &run);
        assert!(!t.gate.offered(0, 3 * S));
        run.set_rate_from(4 * S, 25.0);
        assert_eq!(run.active_clients(5 * S), 50.0);
    }
}
