//! [`Mosquitto`]: the system mosquitto broker on free loopback ports, with a generated config,
//! killed on drop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};
use tempfile::TempDir;

use crate::daemon::{find_binary, Daemon, DaemonSpec, LaunchError};
use crate::try_free_port;

/// Where Debian's `mosquitto` package installs the broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";
/// Environment variable that overrides [`MOSQUITTO_BIN`].
const MOSQUITTO_BIN_ENV: &str = "MOSQUITTO_BIN";
const MOSQUITTO_PASSWD_BIN: &str = "mosquitto_passwd";
/// How many sets of fresh ports [`Mosquitto::start`] tries when one is taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// The log line mosquitto prints once every listener is open.
const RUNNING_MARKER: &str = " running";
/// Log lines that mean a listener port was taken.
const PORT_TAKEN_MARKERS: [&str; 2] = [
    "Address already in use",
    "Unable to create websockets listener",
];

/// TLS listener files (PEM). [`crate::TestPki::server_files`] makes a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by `ca`.
    pub require_certificate: bool,
}

/// What to start besides the plain MQTT/TCP listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MosquittoOptions {
    /// Number of MQTT-over-WebSocket listeners (each on its own port).
    pub ws_listeners: usize,
    /// Adds an MQTT-over-TLS listener.
    pub tls: Option<TlsFiles>,
    /// Number of MQTT-over-WebSocket-over-TLS listeners; they use the `tls` files.
    pub wss_listeners: usize,
    /// `(user, password)`: creates a password file and turns anonymous access off.
    pub password_file: Option<(String, String)>,
    /// Per-listener connection cap; `None` = unlimited.
    pub max_connections: Option<u32>,
    /// Raw lines appended to the generated config (global section, after the defaults).
    pub extra_config: Vec<String>,
}

impl MosquittoOptions {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn ws_listeners(mut self, count: usize) -> Self {
        self.ws_listeners = count;
        self
    }

    #[must_use]
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// WebSocket-over-TLS listeners (`wss://`), with the files given to [`Self::tls`].
    #[must_use]
    pub fn wss_listeners(mut self, count: usize) -> Self {
        self.wss_listeners = count;
        self
    }

    #[must_use]
    pub fn password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.password_file = Some((user.into(), password.into()));
        self
    }

    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = Some(max);
        self
    }

    #[must_use]
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }
}

/// Listener ports of one mosquitto instance.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ports {
    mqtt: u16,
    ws: Vec<u16>,
    tls: Option<u16>,
    wss: Vec<u16>,
}

impl Ports {
    fn pick(opts: &MosquittoOptions) -> anyhow::Result<Ports> {
        let mut taken = Vec::new();
        let mut next = || -> anyhow::Result<u16> {
            // Ports are released between picks; skip a repeat so two listeners never collide.
            for _ in 0..100 {
                let port = try_free_port().context("picking a free port")?;
                if !taken.contains(&port) {
                    taken.push(port);
                    return Ok(port);
                }
            }
            bail!("the OS keeps handing out the same port")
        };
        Ok(Ports {
            mqtt: next()?,
            ws: (0..opts.ws_listeners)
                .map(|_| next())
                .collect::<Result<_, _>>()?,
            tls: opts.tls.as_ref().map(|_| next()).transpose()?,
            wss: if opts.tls.is_some() {
                (0..opts.wss_listeners)
                    .map(|_| next())
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            },
        })
    }

    fn all(&self) -> impl Iterator<Item = u16> + '_ {
        std::iter::once(self.mqtt)
            .chain(self.ws.iter().copied())
            .chain(self.tls)
            .chain(self.wss.iter().copied())
    }
}

/// A mosquitto process started by the test. Killed (SIGKILL) on drop; if the test is
/// panicking, the tail of the broker log is printed first.
/// Dereferences to its [`Daemon`]: `pid`, `is_running`, `kill`, `cpu_seconds`, `rss_bytes`, `log`.
#[derive(Debug)]
pub struct Mosquitto {
    opts: MosquittoOptions,
    ports: Ports,
    // Declared before `dir`: the process dies before its files go.
    daemon: Daemon,
    dir: TempDir,
}

impl std::ops::Deref for Mosquitto {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for Mosquitto {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl Mosquitto {
    /// Whether a mosquitto binary is installed (`$MOSQUITTO_BIN`, /usr/sbin/mosquitto or PATH).
    /// For a clear message only: tests must still fail when it is missing.
    #[must_use]
    pub fn available() -> bool {
        binary().is_some()
    }

    /// Starts mosquitto on free 127.0.0.1 ports and returns once every listener accepts TCP
    /// connections.
    ///
    /// # Errors
    /// mosquitto (or `mosquitto_passwd` when a password is asked for) is not installed, the
    /// config is rejected, or the broker is not ready within 10 s. The error holds its log.
    pub fn start(opts: MosquittoOptions) -> anyhow::Result<Mosquitto> {
        let bin = binary().ok_or_else(|| {
            anyhow!(
                "mosquitto is not installed (looked at ${MOSQUITTO_BIN_ENV}, {MOSQUITTO_BIN} and \
                 PATH); install the `mosquitto` package (`make test` does)"
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("rr-mosquitto-")
            .tempdir()
            .context("creating the mosquitto tempdir")?;
        if let Some((user, password)) = &opts.password_file {
            create_password_file(&dir.path().join("passwd"), user, password)?;
        }
        let ports = Ports::pick(&opts)?;
        let spec = DaemonSpec {
            name: "mosquitto",
            bin,
            args: vec!["-c".into(), dir.path().join("mosquitto.conf").into()],
            log: dir.path().join("mosquitto.log"),
            ready_marker: RUNNING_MARKER,
            port_taken_markers: &PORT_TAKEN_MARKERS,
        };
        let mut broker = Mosquitto {
            opts,
            ports,
            daemon: Daemon::new(spec),
            dir,
        };
        let mut attempt = 1;
        loop {
            std::fs::write(broker.config_path(), broker.render_config())
                .context("writing mosquitto.conf")?;
            match broker.launch() {
                Ok(()) => return Ok(broker),
                Err(LaunchError::PortTaken(_)) if attempt < START_ATTEMPTS => {
                    attempt += 1;
                    broker.ports = Ports::pick(&broker.opts)?;
                }
                Err(LaunchError::PortTaken(e) | LaunchError::Failed(e)) => return Err(e),
            }
        }
    }

    /// `mqtt://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.ports.mqtt)
    }

    /// The MQTT/TCP port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.ports.mqtt
    }

    /// `ws://127.0.0.1:PORT/mqtt`, one per WebSocket listener (mosquitto accepts any path).
    #[must_use]
    pub fn ws_urls(&self) -> Vec<String> {
        self.ports
            .ws
            .iter()
            .map(|p| format!("ws://127.0.0.1:{p}/mqtt"))
            .collect()
    }

    /// `wss://127.0.0.1:PORT/mqtt`, one per WebSocket-over-TLS listener (needs [`MosquittoOptions::tls`]).
    #[must_use]
    pub fn wss_urls(&self) -> Vec<String> {
        self.ports
            .wss
            .iter()
            .map(|p| format!("wss://127.0.0.1:{p}/mqtt"))
            .collect()
    }

    /// `mqtts://127.0.0.1:PORT` when started with TLS.
    #[must_use]
    pub fn tls_url(&self) -> Option<String> {
        self.ports.tls.map(|p| format!("mqtts://127.0.0.1:{p}"))
    }

    /// Starts mosquitto again with the same ports and config (killing it first if it still
    /// runs) and waits until it is ready. Retries for a few seconds while the old ports are
    /// still busy.
    ///
    /// # Errors
    /// The broker did not come back within the retry window; the error holds its log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.daemon.restart(&self.ports.all().collect::<Vec<_>>())
    }

    /// The generated config file.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// The log file (mosquitto's stderr and stdout).
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    /// Spawns the process and waits until every listener is ready, or it has failed.
    fn launch(&mut self) -> Result<(), LaunchError> {
        let ports: Vec<u16> = self.ports.all().collect();
        self.daemon.launch(&ports)
    }

    fn render_config(&self) -> String {
        render_config(&self.opts, &self.ports, self.dir.path(), running_as_root())
    }
}

/// The broker config: loopback listeners, no persistence, no `$SYS`, nothing that throttles
/// or drops load-test traffic.
fn render_config(opts: &MosquittoOptions, ports: &Ports, dir: &Path, as_root: bool) -> String {
    let mut c = String::from("# Generated by rr-testkit.\nper_listener_settings false\n");
    if opts.password_file.is_some() {
        let passwd = dir.join("passwd");
        let _ = writeln!(
            c,
            "allow_anonymous false\npassword_file {}",
            passwd.display()
        );
    } else {
        c.push_str("allow_anonymous true\n");
    }
    c.push_str(
        "persistence false\n\
         sys_interval 0\n\
         max_queued_messages 100000\n\
         max_inflight_messages 0\n\
         set_tcp_nodelay true\n\
         log_dest stderr\n\
         log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
         log_timestamp_format %Y-%m-%dT%H:%M:%S\n",
    );
    if as_root {
        // As root, mosquitto drops to user `mosquitto`, which cannot read our tempdir.
        c.push_str("user root\n");
    }
    for line in &opts.extra_config {
        let _ = writeln!(c, "{line}");
    }
    let max_connections = opts.max_connections.map_or(-1, i64::from);
    let _ = writeln!(c, "\nlistener {} 127.0.0.1", ports.mqtt);
    let _ = writeln!(c, "max_connections {max_connections}");
    for port in &ports.ws {
        let _ = writeln!(c, "\nlistener {port} 127.0.0.1\nprotocol websockets");
        let _ = writeln!(c, "max_connections {max_connections}");
    }
    if let Some(tls) = &opts.tls {
        let listeners = ports.tls.iter().map(|p| (*p, false));
        for (port, ws) in listeners.chain(ports.wss.iter().map(|p| (*p, true))) {
            let _ = writeln!(c, "\nlistener {port} 127.0.0.1");
            if ws {
                let _ = writeln!(c, "protocol websockets");
            }
            let _ = writeln!(c, "max_connections {max_connections}");
            let _ = writeln!(c, "cafile {}", tls.ca.display());
            let _ = writeln!(c, "certfile {}", tls.cert.display());
            let _ = writeln!(c, "keyfile {}", tls.key.display());
            let _ = writeln!(c, "require_certificate {}", tls.require_certificate);
        }
    }
    c
}

/// The mosquitto binary: `$MOSQUITTO_BIN`, then [`MOSQUITTO_BIN`], then `mosquitto` on PATH.
fn binary() -> Option<PathBuf> {
    find_binary(MOSQUITTO_BIN_ENV, MOSQUITTO_BIN, "mosquitto")
}

fn create_password_file(path: &Path, user: &str, password: &str) -> anyhow::Result<()> {
    let output = Command::new(MOSQUITTO_PASSWD_BIN)
        .arg("-b")
        .arg("-c")
        .arg(path)
        .arg(user)
        .arg(password)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!("running {MOSQUITTO_PASSWD_BIN} (it comes with the `mosquitto` package)")
        })?;
    if !output.status.success() {
        bail!(
            "{MOSQUITTO_PASSWD_BIN} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Whether this process runs with effective uid 0 (the `Uid:` line of `/proc/self/status`).
fn running_as_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_every_listener_and_the_load_test_settings() {
        let opts = MosquittoOptions::new()
            .ws_listeners(2)
            .tls(TlsFiles {
                ca: "/p/ca.pem".into(),
                cert: "/p/s.pem".into(),
                key: "/p/s.key".into(),
                require_certificate: true,
            })
            .password("u", "p")
            .max_connections(50);
        let ports = Ports {
            mqtt: 1001,
            ws: vec![1002, 1003],
            tls: Some(1004),
            wss: vec![1005],
        };
        let c = render_config(&opts, &ports, Path::new("/d"), true);
        for line in [
            "listener 1001 127.0.0.1",
            "listener 1002 127.0.0.1\nprotocol websockets",
            "listener 1003 127.0.0.1\nprotocol websockets",
            "listener 1004 127.0.0.1",
            "listener 1005 127.0.0.1\nprotocol websockets",
            "cafile /p/ca.pem",
            "require_certificate true",
            "allow_anonymous false",
            "password_file /d/passwd",
            "persistence false",
            "sys_interval 0",
            "max_connections 50",
            "user root",
        ] {
            assert!(c.contains(line), "missing {line:?} in:\n{c}");
        }
        let plain = render_config(&MosquittoOptions::new(), &ports, Path::new("/d"), false);
        assert!(plain.contains("allow_anonymous true"));
        assert!(plain.contains("max_connections -1"));
        assert!(!plain.contains("user root"));
    }

    #[test]
    fn picked_ports_are_distinct() {
        let ports = Ports::pick(&MosquittoOptions::new().ws_listeners(3)).unwrap();
        let mut all: Vec<u16> = ports.all().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4);
    }
}
