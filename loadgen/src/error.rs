//! Why a loadgen run could not start or finish, each one line, and the exit status it maps to
//! (2 configuration and limits, 3 broker or gateway unreachable or refusing, 1 anything else).

use rr_common::cli::{EXIT_CONFIG, EXIT_CONNECT};
use rr_common::link::SessionError;
use std::net::SocketAddr;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoadgenError {
    /// The broker of the rr/pub scenario.
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: SessionError },
    /// A fan-out gateway.
    #[error("cannot connect to gateway {url}: {source}")]
    Gateway { url: String, source: SessionError },
    /// The fan-out publisher's broker.
    #[error("cannot connect the publisher to PUBLISH_BROKER {url}: {source}")]
    Publisher { url: String, source: SessionError },
    #[error("cannot serve HTTP on {addr} (METRICS_ADDR/METRICS_PORT): {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The plan does not fit the OS limits (open files, ephemeral ports): numbers and remedy.
    #[error("{0}")]
    Limit(String),
    /// TLS files that cannot be used (unreadable, not PEM); the message says so.
    #[error("{0}")]
    Tls(String),
    /// A task of the run ended abnormally (a bug): never silent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl LoadgenError {
    /// Process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            LoadgenError::Connect { .. }
            | LoadgenError::Gateway { .. }
            | LoadgenError::Publisher { .. } => EXIT_CONNECT,
            LoadgenError::Limit(_) | LoadgenError::Tls(_) => EXIT_CONFIG,
            LoadgenError::Http { .. } | LoadgenError::Internal(_) => 1,
        }
    }
}
