//! The one run harness of every scenario (rr, pub, fan-out):
//!
//! ```text
//! serve HTTP → connect → [t = 0] warm-up → measure → stop sending → drain → finish → report
//!                        └── per-second tick: rates for /stats, hooks, progress line ──┘
//! ```
//!
//! A scenario ([`Scenario`]) says how to connect, start and stop sending, what is still
//! outstanding and how its books close; the harness owns everything else: the endpoints'
//! lifetime, the phases, the clock (t = 0 is when sending starts, after every connection is up),
//! the planned end (`DURATION_SEC` after warm-up) or shutdown, the drain, the tick and the
//! progress line, joining what it spawned, and the report's common fields.
//!
//! Hooks ([`RunHook`]) are where later parts plug in without touching a scenario: each tick
//! hands them the live counters (a per-second timeline, a load profile changing the offered
//! load, a capacity search that ends the run with [`RunState::end_now`]), and the finished
//! report passes through them (timeline rows, lossless histograms, thresholds).

mod drain;
mod phase;
mod scenario;
mod state;
mod ticker;

pub use drain::{drain, DrainRule, Drained, Outstanding};
pub use phase::{Phase, PhaseCell};
pub use scenario::{
    lock_hooks, Finished, Hooks, Live, RunClock, RunHook, Sample, Scenario, Stop, Tick, Words,
};
pub use state::{Recent, RunState};

use crate::config::Config;
use crate::error::LoadgenError;
use crate::report::{Report, RunMeta, Sections};
use crate::reporting::live::WithReport;
use crate::reporting::run::Histograms;
use crate::reporting::start_at::{self, StartAt};
use rr_common::stats::Summary;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Drives `scenario` through every phase and returns its report. `bound` learns the HTTP
/// address as soon as the endpoints listen.
pub async fn run<S: Scenario>(
    cfg: &Config,
    state: Arc<RunState>,
    mut scenario: S,
    hooks: Vec<Box<dyn RunHook>>,
    shutdown: CancellationToken,
    bound: oneshot::Sender<SocketAddr>,
) -> Result<Report, LoadgenError> {
    let live = scenario.live();
    // Everything spawned here stops when the run returns, error or not.
    let stop_all = CancellationToken::new();
    let _stop_on_return = stop_all.clone().drop_guard();
    let addr = cfg.http.socket();
    let hooks: Hooks = Arc::new(std::sync::Mutex::new(hooks));
    let so_far = {
        let (cfg, state, live, hooks) = (cfg.clone(), state.clone(), live.clone(), hooks.clone());
        move || {
            let mut r = report(&cfg, &state, &live.so_far());
            for h in lock_hooks(&hooks).iter() {
                h.on_live_report(&mut r);
            }
            r
        }
    };
    let served = Arc::new(WithReport::new(live.clone(), so_far));
    let http_addr = rr_common::http::serve(addr, served, stop_all.clone())
        .await
        .map_err(|source| LoadgenError::Http { addr, source })?;
    tracing::info!(
        "metrics on http://{http_addr}/metrics, stats on http://{http_addr}/stats, dashboard on http://{http_addr}/"
    );
    let _ = bound.send(http_addr);
    let tick_done = stop_all.child_token();
    let ticker = tokio::spawn(ticker::run(
        state.clone(),
        live.clone(),
        cfg.progress_sec,
        hooks.clone(),
        tick_done.clone(),
    ));

    state.phase.advance(Phase::Connect);
    let connected = tokio::select! {
        r = scenario.connect(&shutdown) => { r?; true }
        _ = shutdown.cancelled() => false,
    };
    let mut at = None;
    if connected && !shutdown.is_cancelled() {
        state.set_ready();
        if let Some(start_at) = cfg.start_at {
            at = wait_for_start(start_at, &shutdown).await;
        }
    }
    let clock = RunClock {
        epoch: state.start_clock(at),
        warmup: cfg.warmup(),
        duration: cfg.duration(),
    };
    if connected && !shutdown.is_cancelled() {
        scenario.start(clock);
        state.phase.advance(Phase::Warmup);
        let end = state.end_token().clone();
        let how = tokio::select! {
            _ = shutdown.cancelled() => Stop::Now,
            _ = end.cancelled() => Stop::Now,
            how = measure(&state, clock) => how,
        };
        state.phase.advance(Phase::Drain);
        scenario.stop(how).await;
        drain(scenario.drain_rule(), || live.outstanding()).await;
    } else {
        state.phase.advance(Phase::Drain);
        scenario.stop(Stop::Now).await;
    }
    let fin = scenario.finish().await?;
    tick_done.cancel();
    ticker
        .await
        .map_err(|e| LoadgenError::Internal(format!("tick task: {e}")))?;
    let mut report = report(cfg, &state, &fin);
    for h in lock_hooks(&hooks).iter_mut() {
        h.on_report(&mut report, &fin);
    }
    state.phase.advance(Phase::Done);
    Ok(report)
}

/// `START_AT`: waits until that wall-clock second (every instance given the same one opens
/// its schedule and its window then). Returns the second, or `None` when it had passed (the run
/// starts now, and says it cannot line up) or on shutdown.
async fn wait_for_start(start_at: StartAt, shutdown: &CancellationToken) -> Option<SystemTime> {
    let (when, wait) = start_at.wait(SystemTime::now());
    let unix_s = start_at::unix_ms(when) / 1000;
    if wait.is_zero() {
        tracing::warn!(
            "START_AT ({unix_s}, Unix seconds) has passed: starting now, not lined up with \
             instances that started on time"
        );
        return None;
    }
    tracing::info!(
        "connected; the schedule starts at START_AT = {} (Unix {unix_s}), in {:.1} s",
        humantime::format_rfc3339_seconds(when),
        wait.as_secs_f64()
    );
    tokio::select! {
        _ = tokio::time::sleep(wait) => Some(when),
        _ = shutdown.cancelled() => None,
    }
}

/// Warm-up, then the measured window until its planned end (forever without one).
async fn measure(state: &RunState, clock: RunClock) -> Stop {
    tokio::time::sleep_until((clock.epoch + clock.warmup).into()).await;
    state.phase.advance(Phase::Measure);
    match clock.planned_end() {
        Some(end) => {
            tokio::time::sleep_until(end.into()).await;
            Stop::Planned
        }
        None => std::future::pending().await,
    }
}

/// The report's common fields from the finished books (or the books so far, for `/report`),
/// with the lossless histograms.
fn report(cfg: &Config, state: &RunState, fin: &Finished) -> Report {
    let per_s = |n: u64| {
        if fin.duration_s > 0.0 {
            n as f64 / fin.duration_s
        } else {
            0.0
        }
    };
    Report {
        scenario: cfg.scenario.name().into(),
        instance_id: state.instance_id.clone(),
        config: cfg.describe(),
        duration_s: fin.duration_s,
        offered_rate: fin.offered_rate,
        achieved_rate: per_s(fin.sent),
        sent: fin.sent,
        duplicates: fin.duplicates,
        invalid: fin.invalid,
        skipped: fin.skipped,
        publish_errors: fin.publish_errors,
        reconnects: fin.reconnects,
        latency_us: Summary::of(&fin.latency),
        schedule_lag_us: Summary::of(&fin.schedule_lag),
        books: fin.books.clone(),
        sections: Sections {
            start_unix_ms: state.epoch_unix_ms(),
            run: Some(RunMeta::new(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(state.epoch_unix_ms().unwrap_or(0)),
                cfg.connect.broker.to_string(),
            )),
            histograms: Some(Histograms::of(&fin.latency, &fin.schedule_lag)),
            ..Sections::default()
        },
    }
}
