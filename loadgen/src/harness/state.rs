//! What the harness knows about a run while it runs, shared with the HTTP endpoints: the
//! phase, readiness, the run's clock (t = 0 is the start of the schedule, after connecting)
//! and the last second's rates.

use super::phase::{Phase, PhaseCell};
use rr_common::stats::Summary;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Rates over the last tick (one second), for `/stats` and the dashboard.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Recent {
    /// Length of the window these rates cover (0 until the first tick).
    pub window_s: f64,
    pub sent_per_s: f64,
    /// Answers matched (fan-out: deliveries received) per second.
    pub matched_per_s: f64,
    /// Timeouts (fan-out: losses) per second.
    pub timeouts_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub lag_p99_us: u64,
}

impl Recent {
    pub fn latency(&self) -> (Summary, Summary) {
        let l = Summary {
            p50: self.p50_us,
            p99: self.p99_us,
            ..Summary::default()
        };
        let g = Summary {
            p99: self.lag_p99_us,
            ..Summary::default()
        };
        (l, g)
    }
}

/// The run as the harness drives it.
pub struct RunState {
    pub scenario: &'static str,
    pub instance_id: String,
    pub phase: PhaseCell,
    ready: AtomicBool,
    warmup: Duration,
    /// t = 0 of the schedule, set when sending starts.
    epoch: OnceLock<(Instant, u64)>,
    recent: Mutex<Recent>,
    /// Cancelled to end the measured window now (a hook's decision, like a capacity search
    /// that has its answer); the run then stops and drains as on a planned end.
    end: CancellationToken,
}

impl RunState {
    pub fn new(scenario: &'static str, instance_id: String, warmup: Duration) -> RunState {
        RunState {
            scenario,
            instance_id,
            phase: PhaseCell::default(),
            ready: AtomicBool::new(false),
            warmup,
            epoch: OnceLock::new(),
            recent: Mutex::new(Recent::default()),
            end: CancellationToken::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Connected (and subscribed): `/ready` answers 200 once this holds and a connection is up.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    pub(super) fn set_ready(&self) {
        self.ready.store(true, Relaxed);
    }

    /// Fixes t = 0 now; returns it. `at` is the wall-clock time it stands for when the run
    /// waited for one (`START_AT`), else now.
    pub(super) fn start_clock(&self, at: Option<SystemTime>) -> Instant {
        let wall = at
            .unwrap_or_else(SystemTime::now)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.epoch.get_or_init(|| (Instant::now(), wall)).0
    }

    /// t = 0 of the schedule, once sending has started.
    pub fn epoch(&self) -> Option<Instant> {
        self.epoch.get().map(|e| e.0)
    }

    /// Wall-clock time (Unix ms) of t = 0.
    pub fn epoch_unix_ms(&self) -> Option<u64> {
        self.epoch.get().map(|e| e.1)
    }

    /// Time since t = 0 (zero before the schedule starts).
    pub fn elapsed(&self) -> Duration {
        self.epoch().map_or(Duration::ZERO, |e| e.elapsed())
    }

    pub fn warmup(&self) -> Duration {
        self.warmup
    }

    /// Seconds of the measured window so far.
    pub fn measured_s(&self) -> f64 {
        self.elapsed().saturating_sub(self.warmup).as_secs_f64()
    }

    pub fn recent(&self) -> Recent {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_recent(&self, r: Recent) {
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }

    /// Ends the measured window now: sending stops, the drain and the report follow.
    pub fn end_now(&self) {
        self.end.cancel();
    }

    pub(super) fn end_token(&self) -> &CancellationToken {
        &self.end
    }

    /// The fields every scenario's `/stats` starts with.
    pub fn stats_head(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("scenario".into(), self.scenario.into());
        m.insert("instance_id".into(), self.instance_id.clone().into());
        m.insert("phase".into(), self.phase().name().into());
        m.insert("elapsed_s".into(), self.elapsed().as_secs_f64().into());
        m.insert("measured_s".into(), self.measured_s().into());
        m
    }
}
