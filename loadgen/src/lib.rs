//! loadgen: open-loop MQTT load generator. `run(config, shutdown)` runs the configured scenario
//! (request/response, publish-only or WebSocket fan-out) and returns its report.

pub mod capacity;
pub mod config;
pub mod fanout;
pub mod report;
pub mod reporting;
pub mod rr;

use config::{Config, Scenario};
use report::Report;
use rr_common::mqtt::SessionError;
use std::net::SocketAddr;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// The web dashboard, served at `/` by every scenario.
pub const DASHBOARD_HTML: &str = include_str!("web/dashboard.html");

#[derive(Debug, Error)]
pub enum LoadgenError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: SessionError },
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Fanout(String, i32),
}

impl LoadgenError {
    pub fn connect(cfg: &Config, source: SessionError) -> Self {
        LoadgenError::Connect {
            url: cfg.broker.to_string(),
            source,
        }
    }

    /// Process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadgenError::Connect { .. } => rr_common::cli::EXIT_CONNECT,
            LoadgenError::Http { .. } => 1,
            LoadgenError::Fanout(_, code) => *code,
        }
    }
}

/// Runs the configured scenario until DURATION_SEC or `shutdown`, drains, and reports.
pub async fn run(cfg: &Config, shutdown: CancellationToken) -> Result<Report, LoadgenError> {
    match cfg.scenario {
        Scenario::Rr | Scenario::Pub => rr::run(cfg, shutdown).await,
        Scenario::Fanout => fanout::run(cfg, shutdown).await.map_err(|e| {
            let code = e.exit_code();
            LoadgenError::Fanout(e.to_string(), code)
        }),
    }
}
