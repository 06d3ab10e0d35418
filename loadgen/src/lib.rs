//! loadgen: open-loop MQTT load generator. `start(config, shutdown)` serves the HTTP endpoints
//! and runs the configured scenario (request/response, publish-only or WebSocket fan-out) in
//! the background; `run` does the same and waits for the report.

pub mod capacity;
pub mod config;
pub mod error;
pub mod fanout;
pub mod harness;
pub mod report;
pub mod reporting;
pub mod rr;
mod web;

use capacity::hook::{CapacityHook, SearchPlan};
use config::{Config, Scenario, Valid};
pub use error::LoadgenError;
use harness::{RunState, Scenario as _};
use report::Report;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A run in progress: where its HTTP endpoints listen, and its report once it ends.
pub struct Running {
    /// The bound address of `/metrics`, `/stats`, `/health`, `/ready` (port 0 resolved).
    pub http_addr: SocketAddr,
    task: JoinHandle<Result<Report, LoadgenError>>,
}

impl Running {
    /// Waits for the end of the run (DURATION_SEC, or `shutdown` and the drain): the report.
    pub async fn report(self) -> Result<Report, LoadgenError> {
        join(self.task).await
    }

    /// True once the run has ended (its report is ready).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

async fn join(task: JoinHandle<Result<Report, LoadgenError>>) -> Result<Report, LoadgenError> {
    match task.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(LoadgenError::Internal(format!("run task: {e}"))),
    }
}

/// Binds the HTTP endpoints and starts the configured scenario; returns once the endpoints
/// listen (connecting, warm-up, the measured window and the drain follow in the background
/// until DURATION_SEC or `shutdown`). Start-up errors (exit 2/3) come from [`Running::report`]
/// unless the endpoints themselves cannot be bound.
pub async fn start(
    cfg: Valid<Config>,
    shutdown: CancellationToken,
) -> Result<Running, LoadgenError> {
    let (bound_tx, bound_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let state = Arc::new(RunState::new(
            cfg.scenario.name(),
            cfg.instance_id(),
            cfg.warmup(),
        ));
        let mut hooks: Vec<Box<dyn harness::RunHook>> = Vec::new();
        match cfg.scenario {
            Scenario::Rr | Scenario::Pub | Scenario::Capacity => {
                let rr = rr::scenario::Rr::new(&cfg, state.clone());
                hooks.push(Box::new(capacity_hook(&cfg, &state, &rr)));
                harness::run(&cfg, state, rr, hooks, shutdown, bound_tx).await
            }
            Scenario::Fanout => {
                let fanout = fanout::Fanout::new(&cfg, state.clone())?;
                let c = &cfg.capacity;
                hooks.push(Box::new(fanout.timeline_hook(c.timeline_csv.clone())));
                hooks.push(Box::new(CapacityHook::new(
                    None,
                    state.clone(),
                    c,
                    cfg.warmup_sec,
                    None,
                )));
                harness::run(&cfg, state, fanout, hooks, shutdown, bound_tx).await
            }
        }
    });
    match bound_rx.await {
        Ok(http_addr) => Ok(Running { http_addr, task }),
        // the run ended before it listened: its error says why
        Err(_) => Err(join(task)
            .await
            .err()
            .unwrap_or_else(|| LoadgenError::Internal("the run ended before serving HTTP".into()))),
    }
}

/// The timeline, thresholds and (SCENARIO=capacity) the capacity search of an rr-type run.
fn capacity_hook(cfg: &Config, state: &Arc<RunState>, rr: &rr::scenario::Rr) -> CapacityHook {
    let search = (cfg.scenario == Scenario::Capacity).then(|| {
        let live = rr.live();
        SearchPlan::new(
            &cfg.capacity,
            cfg.capacity.search_params(&cfg.schedule()),
            Duration::from_millis(cfg.rr.timeout_ms),
            Arc::new(move || live.worker_pool()),
        )
    });
    CapacityHook::new(
        Some(rr.instrument()),
        state.clone(),
        &cfg.capacity,
        cfg.warmup_sec,
        search,
    )
}

/// Runs the configured scenario until DURATION_SEC or `shutdown`, drains, and reports.
pub async fn run(cfg: &Valid<Config>, shutdown: CancellationToken) -> Result<Report, LoadgenError> {
    start(cfg.clone(), shutdown).await?.report().await
}
