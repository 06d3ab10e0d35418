//! `rr-broker` binary: runs the embedded broker until SIGINT/SIGTERM (`make up` without mosquitto).

use std::net::SocketAddr;
use std::process::ExitCode;

use rr_broker::{EmbeddedBroker, EmbeddedBrokerConfig, WS_PATH};

const HELP: &str = "\
rr-broker: embedded MQTT 5 / 3.1.1 broker for load tests (no persistence, no $SYS,
anonymous access, shared subscriptions). Runs until SIGINT or SIGTERM.

Environment:
  BROKER_BIND     MQTT over TCP listen address (default 0.0.0.0:1883)
  BROKER_WS_BIND  MQTT over WebSocket listen addresses, comma separated, path /mqtt
                  (default unset = none; after the first, each needs an explicit port)
  RUST_LOG        log filter (default info,mqtt5=warn)";

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let cfg = match config_from_env() {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("rr-broker: {msg}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,mqtt5=warn")),
        )
        .with_ansi(stdout_colour())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rr-broker: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rr-broker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: EmbeddedBrokerConfig) -> anyhow::Result<()> {
    let broker = EmbeddedBroker::start(cfg).await?;
    if broker.ws_addrs().is_empty() {
        tracing::info!("rr-broker listening on mqtt://{}", broker.tcp_addr());
    } else {
        let ws: Vec<String> = broker
            .ws_addrs()
            .iter()
            .map(|a| format!("ws://{a}{WS_PATH}"))
            .collect();
        tracing::info!(
            "rr-broker listening on mqtt://{} and {}",
            broker.tcp_addr(),
            ws.join(", ")
        );
    }
    shutdown_signal().await?;
    tracing::info!("rr-broker shutting down");
    broker.stop().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn config_from_env() -> Result<EmbeddedBrokerConfig, String> {
    let tcp_addr =
        addr_var("BROKER_BIND")?.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 1883)));
    let mut ws = addr_list_var("BROKER_WS_BIND")?.into_iter();
    let ws_addr = ws.next();
    let ws_extra: Vec<SocketAddr> = ws.collect();
    if let Some(a) = ws_extra.iter().find(|a| a.port() == 0) {
        return Err(format!(
            "invalid BROKER_WS_BIND: {a} needs an explicit port (only the first listener may use 0)"
        ));
    }
    Ok(EmbeddedBrokerConfig {
        tcp_addr,
        ws_addr,
        ws_extra,
    })
}

/// Reads an optional comma-separated list of `host:port`; unset or empty means none.
fn addr_list_var(name: &str) -> Result<Vec<SocketAddr>, String> {
    let value = match std::env::var(name) {
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok(Vec::new()),
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(format!(
                "invalid {name}={v:?}: expected IP:port[,IP:port...] such as 0.0.0.0:8083"
            ))
        }
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse().map_err(|_| {
                format!("invalid {name}={value:?}: '{s}' is not an IP:port such as 0.0.0.0:8083")
            })
        })
        .collect()
}

/// Reads an optional `host:port` variable; unset or empty means `None`.
fn addr_var(name: &str) -> Result<Option<SocketAddr>, String> {
    let value = match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => return Ok(None),
        Ok(v) => v,
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(format!(
                "invalid {name}={v:?}: expected an IP:port such as 0.0.0.0:1883"
            ))
        }
    };
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| format!("invalid {name}={value:?}: expected an IP:port such as 0.0.0.0:1883"))
}

/// ANSI colour in the log (stdout) only on a terminal and without `NO_COLOR`: `make up` and the
/// benchmarks redirect it to files.
fn stdout_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
