//! What the harness and its parts agree on: the [`Scenario`] trait a scenario implements, the
//! [`Live`] side the endpoints and the tick read, the [`RunHook`]s that plug into a run, and the
//! plain types passed between them.

use super::drain::{DrainRule, Outstanding};
use super::phase::Phase;
use super::state::RunState;
use crate::error::LoadgenError;
use crate::report::{Books, Report};
use hdrhistogram::Histogram;
use rr_common::http::Endpoints;
use rr_common::stats::Summary;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A scenario's counters since start, as the tick and the progress line read them.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Requests (messages) sent.
    pub sent: u64,
    /// Answers matched (fan-out: deliveries received).
    pub done: u64,
    /// Timeouts (fan-out: deliveries lost).
    pub failed: u64,
    /// Requests in flight, where the scenario has them.
    pub inflight: Option<u64>,
    pub connections: u64,
    pub connections_planned: u64,
    pub reconnects: u64,
    /// Workers in the answering pool, when the loadgen polls them (`WORKER_STATS_URLS`).
    pub worker_pool: Option<u64>,
}

/// The words a scenario's progress line uses for [`Sample::sent`], `done` and `failed`.
#[derive(Copy, Clone, Debug)]
pub struct Words {
    pub sent: &'static str,
    pub done: &'static str,
    pub failed: &'static str,
}

/// The live side of a scenario: what the endpoints serve and the tick reads.
pub trait Live: Endpoints {
    fn sample(&self) -> Sample;
    /// Latency and schedule lag of what arrived since the previous call.
    fn take_recent(&self) -> (Summary, Summary);
    fn words(&self) -> Words;
    /// The end of the progress line (scenario-specific figures), may be empty.
    fn progress_extra(&self) -> String {
        String::new()
    }
    /// What the drain waits for.
    fn outstanding(&self) -> Outstanding;
    /// The measured window's books so far (what `GET /report` serves while the run goes): the
    /// same figures [`Scenario::finish`] closes, read without stopping anything.
    fn so_far(&self) -> Finished;
}

/// When sending stops.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// At the planned end of the window (t = `WARMUP_SEC + DURATION_SEC`), which the scenario
    /// knew from the start.
    Planned,
    /// Now: shutdown, or a hook ended the run.
    Now,
}

/// The time plan a scenario starts sending on.
#[derive(Copy, Clone, Debug)]
pub struct RunClock {
    /// t = 0: the schedule starts here.
    pub epoch: Instant,
    /// The measured window opens at t = warm-up.
    pub warmup: Duration,
    /// The measured window closes at t = warm-up + duration (`None`: until stopped).
    pub duration: Option<Duration>,
}

impl RunClock {
    /// Planned end of the window, if any.
    pub fn planned_end(&self) -> Option<Instant> {
        self.duration.map(|d| self.epoch + self.warmup + d)
    }
}

/// What a scenario hands the harness when it has closed its books.
pub struct Finished {
    /// The measured window in seconds.
    pub duration_s: f64,
    pub offered_rate: f64,
    pub sent: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub publish_errors: u64,
    pub reconnects: u64,
    /// Latency and schedule lag of the measured window (microseconds), lossless.
    pub latency: Histogram<u64>,
    pub schedule_lag: Histogram<u64>,
    pub books: Books,
}

/// One scenario on the harness.
pub trait Scenario: Send + 'static {
    type Live: Live;
    /// The live side (shared with the endpoints and the tick).
    fn live(&self) -> Arc<Self::Live>;
    /// Opens every connection; errors are final (exit 2/3). Returns when sending can start.
    fn connect(
        &mut self,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Result<(), LoadgenError>> + Send;
    /// Starts sending on `clock` (never blocks).
    fn start(&mut self, clock: RunClock);
    /// Stops sending; returns when nothing more will be sent (the window's end is fixed).
    fn stop(&mut self, how: Stop) -> impl Future<Output = ()> + Send;
    /// How long the drain may take (it waits on [`Live::outstanding`]).
    fn drain_rule(&self) -> DrainRule;
    /// Ends every task it started (joined, not left behind) and closes the books.
    fn finish(self) -> impl Future<Output = Result<Finished, LoadgenError>> + Send;
}

/// A part of a run that is not a scenario: it sees every tick and the finished report.
pub trait RunHook: Send + 'static {
    /// Once a second (see [`Tick`]).
    fn on_tick(&mut self, _tick: &Tick<'_>) {}
    /// Before the report is returned: add sections from the books.
    fn on_report(&mut self, _report: &mut Report, _books: &Finished) {}
    /// `GET /report` while the run goes: add the sections known so far.
    fn on_live_report(&self, _report: &mut Report) {}
}

/// The run's hooks, shared by the tick, `GET /report` and the end of the run.
pub type Hooks = std::sync::Arc<std::sync::Mutex<Vec<Box<dyn RunHook>>>>;

/// Locks the hooks (a hook that panicked leaves them usable).
pub fn lock_hooks(h: &Hooks) -> std::sync::MutexGuard<'_, Vec<Box<dyn RunHook>>> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// One tick, as hooks see it.
pub struct Tick<'a> {
    /// Whole seconds since t = 0 (the tick falls on that second's end); `None` before the
    /// schedule starts.
    pub second: Option<u64>,
    pub phase: Phase,
    /// The scenario's counters since start.
    pub sample: &'a Sample,
    /// The run (phase, clock; `end_now` ends the measured window).
    pub state: &'a RunState,
}
