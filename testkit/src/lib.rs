//! Test harness for the integration tests of loadgen and worker: real brokers on free ports.
//!
//! - [`Mosquitto`]: the system `mosquitto` (2.0) with a generated config in a tempdir, on
//!   loopback ports picked at start; killed on drop. Tests must fail, not skip, when it is
//!   missing ([`Mosquitto::start`] returns an error saying so).
//! - [`NatsServer`]: the system `nats-server` (2.9) on a free loopback port, optionally with TLS
//!   and a user/password; killed on drop, restartable on its port.
//! - [`Tansu`]: the `tansu` Kafka-compatible broker (memory storage) on a free port, restartable;
//!   [`KafkaBridge`]: a test-only Kafka-to-MQTT-over-WebSocket gateway.
//! - [`Embedded`]: the in-process `rr-broker` (mqtt5 crate) on a free port.
//! - [`TestPki`]: a throwaway CA with server and client certificates for TLS tests.
//! - [`wait_until`] and friends: poll a condition with a deadline instead of sleeping.
//! - [`rss_bytes`] / [`cpu_seconds`]: per-process figures from `/proc`.
//! - [`Process`]: one of our binaries as a child process, output captured, signals by pid.
//! - [`py_script`]: the Python helpers in `testkit/py/` (independent NATS clients, nats-py).

mod daemon;
mod embedded;
mod kafka_bridge;
mod mosquitto;
mod nats_server;
mod pki;
mod process;
mod procfs;
mod tansu;
mod wait;

pub use daemon::Daemon;
pub use embedded::Embedded;
pub use kafka_bridge::{BridgeCounts, KafkaBridge};
pub use mosquitto::{Mosquitto, MosquittoOptions, TlsFiles, MOSQUITTO_BIN};
pub use nats_server::{NatsOptions, NatsServer, NATS_SERVER_BIN};
pub use pki::TestPki;
pub use process::{metrics_addr_in, send_signal, Process};
pub use procfs::{cpu_seconds, rss_bytes, try_rss_bytes};
pub use tansu::{Tansu, TansuOptions, TANSU_BIN_ENV};
pub use wait::{retry_async, wait_until, wait_until_async, wait_until_blocking, POLL_INTERVAL};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read back, released).
///
/// Another process may take it before the caller binds it; [`Mosquitto::start`] retries with
/// fresh ports when that happens.
///
/// # Panics
/// If 127.0.0.1:0 cannot be bound at all (no loopback interface): no test could run then.
#[must_use]
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"))
}

/// [`free_port`] without the panic.
///
/// # Errors
/// Binding 127.0.0.1:0 failed.
pub fn try_free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A Python helper script of `testkit/py/` (for example `nats_responder.py`), run with
/// `python3`.
#[must_use]
pub fn py_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(name)
}
