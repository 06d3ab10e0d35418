//! [`NatsServer`]: Debian's `nats-server` (2.9) on a free loopback port with a generated
//! config (optionally TLS with [`crate::TestPki`] files, a user and password), killed on drop,
//! restartable on the same port for fault tests.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use tempfile::TempDir;

use crate::daemon::{find_binary, Daemon, DaemonSpec, LaunchError};
use crate::mosquitto::TlsFiles;
use crate::try_free_port;

/// Where Debian's `nats-server` package installs the server.
pub const NATS_SERVER_BIN: &str = "/usr/sbin/nats-server";
/// Environment variable that overrides [`NATS_SERVER_BIN`].
const NATS_SERVER_BIN_ENV: &str = "NATS_SERVER_BIN";
/// How many fresh ports [`NatsServer::start`] tries when one is taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// What to configure besides a plain listener with anonymous access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsOptions {
    /// The listener requires TLS (the client upgrades after the server's INFO); with
    /// `require_certificate`, clients must present a certificate signed by the CA.
    pub tls: Option<TlsFiles>,
    /// `(user, password)`: the only account; anonymous clients are refused.
    pub user: Option<(String, String)>,
    /// `max_payload` in bytes (nats-server's default is 1 MiB).
    pub max_payload: Option<usize>,
    /// Raw lines appended to the generated config.
    pub extra_config: Vec<String>,
}

impl NatsOptions {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    #[must_use]
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    #[must_use]
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    #[must_use]
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }
}

/// A nats-server process started by the test. Killed (SIGKILL) on drop; if the test is
/// panicking, the tail of its log is printed first.
/// Dereferences to its [`Daemon`]: `pid`, `is_running`, `kill`, `cpu_seconds`, `rss_bytes`, `log`.
#[derive(Debug)]
pub struct NatsServer {
    opts: NatsOptions,
    port: u16,
    // Declared before `dir`: the process dies before its files go.
    daemon: Daemon,
    dir: TempDir,
}

impl std::ops::Deref for NatsServer {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for NatsServer {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl NatsServer {
    /// Whether a nats-server binary is installed (`$NATS_SERVER_BIN`, /usr/sbin/nats-server or
    /// PATH). For a clear message only: tests must still fail when it is missing.
    #[must_use]
    pub fn available() -> bool {
        binary().is_some()
    }

    /// Starts nats-server on a free 127.0.0.1 port and returns once it is ready.
    ///
    /// # Errors
    /// nats-server is not installed, the config is rejected, or the server is not ready within
    /// 10 s. The error holds its log.
    pub fn start(opts: NatsOptions) -> anyhow::Result<NatsServer> {
        let bin = binary().ok_or_else(|| {
            anyhow!(
                "nats-server is not installed (looked at ${NATS_SERVER_BIN_ENV}, \
                 {NATS_SERVER_BIN} and PATH); install the `nats-server` package \
                 (scripts/install-deps.sh does)"
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("rr-nats-")
            .tempdir()
            .context("creating the nats-server tempdir")?;
        let config = dir.path().join("nats.conf");
        let spec = DaemonSpec {
            name: "nats-server",
            bin,
            args: vec!["-c".into(), config.clone().into_os_string()],
            log: dir.path().join("nats.log"),
            ready_marker: "Server is ready",
            port_taken_markers: &["address already in use"],
        };
        let mut server = NatsServer {
            opts,
            port: 0,
            daemon: Daemon::new(spec),
            dir,
        };
        let mut attempt = 1;
        loop {
            server.port = try_free_port().context("picking a free port")?;
            std::fs::write(&config, render_config(&server.opts, server.port))
                .context("writing nats.conf")?;
            match server.daemon.launch(&[server.port]) {
                Ok(()) => return Ok(server),
                Err(LaunchError::PortTaken(_)) if attempt < START_ATTEMPTS => attempt += 1,
                Err(LaunchError::PortTaken(e) | LaunchError::Failed(e)) => return Err(e),
            }
        }
    }

    /// `nats://127.0.0.1:PORT`, or `tls://127.0.0.1:PORT` when the listener requires TLS.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls.is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts nats-server again on the same port with the same config (killing it first if it
    /// still runs) and waits until it is ready. Retries for a few seconds while the old port
    /// is still busy.
    ///
    /// # Errors
    /// The server did not come back within the retry window; the error holds its log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.daemon.restart(&[self.port])
    }

    /// The generated config file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }
}

/// A string in nats-server's config syntax (double-quoted, JSON escapes).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The server config: one loopback listener, no monitoring port, no clustering.
fn render_config(opts: &NatsOptions, port: u16) -> String {
    let mut c = format!("# Generated by rr-testkit.\nlisten: \"127.0.0.1:{port}\"\n");
    if let Some(max) = opts.max_payload {
        let _ = writeln!(c, "max_payload: {max}");
    }
    if let Some((user, password)) = &opts.user {
        let _ = writeln!(
            c,
            "authorization {{\n  user: {}\n  password: {}\n}}",
            quoted(user),
            quoted(password)
        );
    }
    if let Some(tls) = &opts.tls {
        let _ = writeln!(
            c,
            "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {}\n  timeout: 5\n}}",
            quoted(&tls.cert.display().to_string()),
            quoted(&tls.key.display().to_string()),
            quoted(&tls.ca.display().to_string()),
            tls.require_certificate
        );
    }
    for line in &opts.extra_config {
        let _ = writeln!(c, "{line}");
    }
    c
}

/// The nats-server binary: `$NATS_SERVER_BIN`, then [`NATS_SERVER_BIN`], then PATH.
fn binary() -> Option<PathBuf> {
    find_binary(NATS_SERVER_BIN_ENV, NATS_SERVER_BIN, "nats-server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_the_listener_auth_and_tls() {
        let opts = NatsOptions::new()
            .user("u", "p\"w\\d")
            .max_payload(4096)
            .tls(TlsFiles {
                ca: "/p/ca.pem".into(),
                cert: "/p/s.pem".into(),
                key: "/p/s.key".into(),
                require_certificate: true,
            })
            .config_line("ping_interval: \"1s\"");
        let c = render_config(&opts, 4333);
        for line in [
            "listen: \"127.0.0.1:4333\"",
            "max_payload: 4096",
            "user: \"u\"",
            "password: \"p\\\"w\\\\d\"",
            "cert_file: \"/p/s.pem\"",
            "ca_file: \"/p/ca.pem\"",
            "verify: true",
            "ping_interval: \"1s\"",
        ] {
            assert!(c.contains(line), "missing {line:?} in:\n{c}");
        }
        let plain = render_config(&NatsOptions::new(), 1);
        assert!(!plain.contains("authorization") && !plain.contains("tls"));
    }
}
