//! Binary-edge helpers: environment configuration parsed once with clap (invalid values exit 2
//! with one line naming the variable), logging, the shutdown signal, and process facts.

use clap::Parser;
use std::net::IpAddr;
use tokio_util::sync::CancellationToken;

/// Exit status for invalid configuration.
pub const EXIT_CONFIG: i32 = 2;
/// Exit status when the broker cannot be reached or refuses us at start-up.
pub const EXIT_CONNECT: i32 = 3;

/// A configuration error: which variable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            var,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Parses `T` from the environment and arguments. `--help`/`--version` print and exit 0;
/// any invalid value prints one line and exits 2.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    std::process::exit(0)
                }
                _ => {
                    let rendered = e.render().to_string();
                    let first = rendered
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid configuration")
                        .trim();
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    eprintln!("error: {first}");
                    std::process::exit(EXIT_CONFIG)
                }
            }
        }
    }
}

/// Prints a semantic configuration error as one line and exits 2.
pub fn config_exit(e: &ConfigError) -> ! {
    eprintln!("error: {e}");
    std::process::exit(EXIT_CONFIG)
}

/// Logging to stderr, `RUST_LOG` or `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// A token cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// The machine's host name (default instance id).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Resident set size of this process in bytes (Linux), 0 where unknown.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Open-file limit of this process (soft), if known.
pub fn open_file_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
}

/// Socket address for the HTTP endpoints from `METRICS_ADDR` and a port.
pub fn metrics_socket(addr: IpAddr, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(addr, port)
}

/// Topic names must be valid UTF-8 without wildcards or NUL; used for ids that go into topics.
pub fn check_topic_segment(var: &'static str, s: &str) -> Result<(), ConfigError> {
    if s.is_empty() || s.contains(['+', '#', '/', '\0']) || s.len() > 128 {
        return Err(ConfigError::new(
            var,
            format!("'{s}' must be 1-128 characters without '/', '+', '#'"),
        ));
    }
    Ok(())
}
