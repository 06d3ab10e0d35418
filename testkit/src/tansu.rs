//! [`Tansu`]: the `tansu` Kafka-compatible broker (memory storage) on a free loopback port,
//! ready once it answers a Kafka `ApiVersions` request, restartable on the same port, killed
//! on drop.
//!
//! Installed by `scripts/install-deps.sh` with
//! `cargo install tansu --version 0.6.0 --locked --features dynostore` (the memory storage
//! engine needs `dynostore`). Memory storage keeps nothing across a restart: a restarted broker
//! has no topics, no consumer groups and no SCRAM users.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tempfile::TempDir;

use crate::daemon::{Daemon, DaemonSpec, LaunchError};
use crate::try_free_port;
use crate::wait::POLL_INTERVAL;

/// Environment variable naming the tansu binary (default: `$CARGO_HOME/bin/tansu`, then PATH).
pub const TANSU_BIN_ENV: &str = "TANSU_BIN";
/// How long the broker may take to answer once its port accepts.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports [`Tansu::start`] tries when one is taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// What to start the broker with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TansuOptions {
    /// Clients must authenticate with SASL (tansu 0.6 offers SCRAM, checked against its stored
    /// users, of which a fresh memory broker has none).
    pub authentication: bool,
}

impl TansuOptions {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn authentication(mut self) -> Self {
        self.authentication = true;
        self
    }
}

/// A tansu broker started by the test. Killed (SIGKILL) on drop; if the test is panicking, the
/// tail of its log is printed first.
/// Dereferences to its [`Daemon`]: `pid`, `is_running`, `kill`, `cpu_seconds`, `rss_bytes`, `log`.
#[derive(Debug)]
pub struct Tansu {
    bin: PathBuf,
    port: u16,
    // Declared before `dir`: the process dies before its files go.
    daemon: Daemon,
    dir: TempDir,
}

impl std::ops::Deref for Tansu {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for Tansu {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl Tansu {
    /// Whether a tansu binary is installed. For a clear message only: tests must still fail
    /// when it is missing.
    #[must_use]
    pub fn available() -> bool {
        binary().is_some()
    }

    /// Starts tansu on a free 127.0.0.1 port and returns once it answers a Kafka request.
    ///
    /// # Errors
    /// tansu is not installed, exits while starting, or does not answer in time. The error
    /// holds its log.
    pub fn start(opts: TansuOptions) -> anyhow::Result<Tansu> {
        let bin = binary().ok_or_else(|| {
            anyhow!(
                "tansu is not installed (looked at ${TANSU_BIN_ENV}, $CARGO_HOME/bin and PATH); \
                 run scripts/install-deps.sh (`make test` does), or \
                 `cargo install tansu --version 0.6.0 --locked --features dynostore`"
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("rr-tansu-")
            .tempdir()
            .context("creating the tansu tempdir")?;
        // tansu takes its settings from the environment and from `.env` in its working
        // directory: it runs with an empty environment in the tempdir, whose `.env` names the
        // port (rewritten when a port has to be picked again).
        let mut args: Vec<std::ffi::OsString> = vec!["-i".into(), "-C".into()];
        args.push(dir.path().into());
        if let Some(path) = std::env::var_os("PATH") {
            let mut p = std::ffi::OsString::from("PATH=");
            p.push(path);
            args.push(p);
        }
        if let Some(level) = std::env::var_os("TANSU_LOG") {
            let mut p = std::ffi::OsString::from("RUST_LOG=");
            p.push(level);
            args.push(p);
        }
        args.push(bin.clone().into_os_string());
        args.extend(["broker".into(), "--silent".into()]);
        if opts.authentication {
            args.push("--authentication".into());
        }
        let spec = DaemonSpec {
            name: "tansu",
            bin: PathBuf::from("/usr/bin/env"),
            args,
            log: dir.path().join("tansu.log"),
            // Silent: nothing is logged; readiness is its port accepting, then answering.
            ready_marker: "",
            port_taken_markers: &["Address already in use"],
        };
        let mut broker = Tansu {
            bin,
            port: 0,
            daemon: Daemon::new(spec),
            dir,
        };
        let mut attempt = 1;
        loop {
            broker.port = try_free_port().context("picking a free port")?;
            broker.write_env()?;
            match broker.daemon.launch(&[broker.port]) {
                Ok(()) => {
                    broker.wait_answer()?;
                    return Ok(broker);
                }
                Err(LaunchError::PortTaken(_)) if attempt < START_ATTEMPTS => attempt += 1,
                Err(LaunchError::PortTaken(e) | LaunchError::Failed(e)) => return Err(e),
            }
        }
    }

    fn write_env(&self) -> anyhow::Result<()> {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        std::fs::write(
            self.dir.path().join(".env"),
            format!(
                "LISTENER_URL={listener}\nADVERTISED_LISTENER_URL={listener}\n\
                 STORAGE_ENGINE=memory://tansu/\n"
            ),
        )
        .context("writing tansu's .env")
    }

    /// Waits until the broker answers `ApiVersions`, not just accepts.
    fn wait_answer(&mut self) -> anyhow::Result<()> {
        let end = Instant::now() + ANSWER_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            let answered = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .and_then(|mut s| api_versions_answered(&mut s))
                .unwrap_or(false);
            if answered {
                return Ok(());
            }
            if Instant::now() >= end || !self.daemon.is_running() {
                let log = self.daemon.log();
                self.daemon.kill();
                bail!("tansu accepted but did not answer ApiVersions; log:\n{log}");
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `kafka://127.0.0.1:PORT`, as loadgen and worker take it.
    #[must_use]
    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`, as librdkafka's `bootstrap.servers` takes it.
    #[must_use]
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts tansu again on the same port (killing it first if it still runs) and waits until
    /// it answers. Memory storage: the new broker is empty.
    ///
    /// # Errors
    /// The broker did not come back in time; the error holds its log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.daemon.restart(&[self.port])?;
        self.wait_answer()
    }

    /// Creates `name` with `partitions` partitions (`tansu topic create`).
    ///
    /// # Errors
    /// The command failed or the broker refused (for example, the topic exists).
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let out = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .context("running tansu topic create")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || text.contains("Error") {
            bail!("tansu topic create {name} failed ({}): {text}", out.status);
        }
        Ok(())
    }
}

/// Sends a Kafka `ApiVersions` v0 request and checks that a response with its correlation id
/// comes back.
fn api_versions_answered(s: &mut TcpStream) -> std::io::Result<bool> {
    const CORRELATION: i32 = 0x7273_6b31;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.set_write_timeout(Some(Duration::from_millis(500)))?;
    // size, api_key 18, api_version 0, correlation id, client id (null string)
    let mut req = Vec::with_capacity(14);
    req.extend_from_slice(&10i32.to_be_bytes());
    req.extend_from_slice(&18i16.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&CORRELATION.to_be_bytes());
    req.extend_from_slice(&(-1i16).to_be_bytes());
    s.write_all(&req)?;
    let mut head = [0u8; 8];
    s.read_exact(&mut head)?;
    let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    Ok(size >= 4 && correlation == CORRELATION)
}

/// The tansu binary: `$TANSU_BIN`, then `$CARGO_HOME/bin/tansu` (default `~/.cargo/bin`), then PATH.
fn binary() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    let default = cargo_home.join("bin").join("tansu");
    crate::daemon::find_binary(TANSU_BIN_ENV, &default.to_string_lossy(), "tansu")
}
