//! Runs the capacity search against a live run: turns each [`Action`] of the [`Search`] into
//! profile changes at whole seconds, waits on the run's clock, and turns the timeline and the
//! step histograms into [`StepResult`]s. The run is reached through [`Probe`], so the sequence
//! is tested on a simulated clock and system.
//!
//! One step, on the run's clock (`S` a whole second at least [`MARGIN_NS`] ahead):
//! `[S, S+SETTLE)` settle at the step's rate, `[S+SETTLE, S+SETTLE+STEP)` the measured window
//! (only requests *scheduled* in it count), then back to the resting rate (the last good one)
//! while the window's requests resolve: the step is judged once the timeline holds every second
//! of the window completely (TIMEOUT_MS and a second after its end). After a failed step the
//! driver stays at the resting rate until two consecutive seconds look healthy (see
//! [`Search::recovered`]) or the drain limit passes.

use super::search::{Action, Outcome, Search, StepResult};
use super::timeline::{Counts, Field, Row, NS_PER_S};
use rr_common::stats::Summary;
use std::time::Duration;

/// A profile change lies at least this far ahead of the driver's clock, so no lane has decided
/// a slot it changes.
pub const MARGIN_NS: u64 = 50_000_000;

/// Healthy seconds in a row that end a drain.
const HEALTHY_SECONDS: u32 = 2;

/// What the driver needs of a running rr run.
pub trait Probe {
    /// Nanoseconds since the run's epoch.
    fn now_ns(&self) -> u64;
    /// Waits until the run's clock reaches `ns`.
    fn sleep_until(&self, ns: u64) -> impl std::future::Future<Output = ()> + Send;
    /// From `at_ns` on, offer `rate` requests per second (replacing what was planned after it).
    fn set_rate_from(&self, at_ns: u64, rate: f64);
    /// Starts recording latency and schedule lag of requests scheduled in `[from_ns, to_ns)`.
    fn open_step(&self, from_ns: u64, to_ns: u64);
    /// Latency and schedule lag of the step's requests merged so far.
    fn step_latency(&self) -> (Summary, Summary);
    /// Every second before this one is complete in the timeline (no more frequent events).
    fn complete_before(&self) -> u64;
    /// Sum of the timeline's counts over seconds `[from, to)`.
    fn counts(&self, from: u64, to: u64) -> Counts;
    /// The last closed timeline row (latency of the answers that arrived in it).
    fn last_row(&self) -> Option<Row>;
    /// The loadgen's CPU time so far (ns) and the busiest lane's busy time so far (ns, per lane).
    fn cpu_ns(&self) -> Option<u64>;
    fn lane_busy_ns(&self) -> Vec<u64>;
    /// Sum of the worker pools (WORKER_STATS_URLS), when known.
    fn worker_pool(&self) -> Option<u64>;
}

/// Timing of the search.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub settle: Duration,
    pub hold: Duration,
    /// Longest wait for a drain to look healthy.
    pub drain_limit: Duration,
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs().max(1) * NS_PER_S
}

/// Runs `search` to its outcome.
pub async fn run<P: Probe>(probe: &P, search: Search, timing: &Timing) -> Outcome {
    run_observed(probe, search, timing, |_| {}).await
}

/// Runs `search` to its outcome; `observe` sees the search after every step and drain (what
/// `GET /report` and an interrupted run report).
pub async fn run_observed<P: Probe>(
    probe: &P,
    mut search: Search,
    timing: &Timing,
    mut observe: impl FnMut(&Search) + Send,
) -> Outcome {
    let settle = timing.settle.as_secs() * NS_PER_S;
    let hold = whole_seconds(timing.hold);
    loop {
        match search.next() {
            Action::Step { rate } => {
                let start = (probe.now_ns() + MARGIN_NS).div_ceil(NS_PER_S) * NS_PER_S;
                let (from, to) = (start + settle, start + settle + hold);
                probe.set_rate_from(start, rate);
                probe.set_rate_from(to, search.resting_rate());
                probe.open_step(from, to);
                probe.sleep_until(from).await;
                let (cpu0, busy0) = (probe.cpu_ns(), probe.lane_busy_ns());
                probe.sleep_until(to).await;
                let (cpu1, busy1) = (probe.cpu_ns(), probe.lane_busy_ns());
                let pool = probe.worker_pool();
                // the window's requests resolve (TIMEOUT_MS) and its seconds complete
                let last = to / NS_PER_S;
                while probe.complete_before() < last {
                    let t = probe.now_ns();
                    probe.sleep_until(t + NS_PER_S / 10).await;
                }
                let c = probe.counts(from / NS_PER_S, last);
                let (lat, lag) = probe.step_latency();
                let window = (to - from) as f64;
                let busy = busy1
                    .iter()
                    .zip(busy0.iter().chain(std::iter::repeat(&0)))
                    .map(|(b1, b0)| b1.saturating_sub(*b0) as f64 / window)
                    .fold(None, |m: Option<f64>, b| Some(m.map_or(b, |m| m.max(b))));
                search.record(StepResult {
                    offered_rate: rate,
                    duration_s: window / NS_PER_S as f64,
                    sent: c.get(Field::Sent),
                    matched: c.get(Field::Matched),
                    timeouts: c.get(Field::Timeout),
                    late: c.get(Field::Late),
                    skipped: c.get(Field::Skipped),
                    publish_errors: c.get(Field::PublishError),
                    p50_us: lat.p50,
                    p99_us: lat.p99,
                    p999_us: lat.p999,
                    lag_p99_us: lag.p99,
                    cpu_cores: cpu0
                        .zip(cpu1)
                        .map(|(a, b)| b.saturating_sub(a) as f64 / window),
                    lane_busy: busy,
                    worker_pool: pool,
                });
                observe(&search);
            }
            Action::Drain { rate } => {
                let began = probe.now_ns();
                let limit = timing.drain_limit.as_nanos() as u64;
                let mut healthy = 0;
                let mut seen = None;
                let recovered = loop {
                    if probe.now_ns() >= began + limit {
                        break false;
                    }
                    let t = probe.now_ns();
                    probe.sleep_until(t + NS_PER_S / 4).await;
                    let Some(row) = probe.last_row() else {
                        continue;
                    };
                    if seen == Some(row.t) {
                        continue;
                    }
                    seen = Some(row.t);
                    // answers that arrived in the second: none if p99 is 0
                    let answers = u64::from(row.p99_us > 0);
                    if search.recovered(row.p99_us, answers, rate) {
                        healthy += 1;
                        if healthy >= HEALTHY_SECONDS {
                            break true;
                        }
                    } else {
                        healthy = 0;
                    }
                };
                search.drained(recovered);
                observe(&search);
            }
            Action::Done(outcome) => return outcome,
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
