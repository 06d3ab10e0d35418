//! [`Daemon`]: a broker process started by a test, its output in a log file; ready when its log
//! says so and its ports accept TCP; killed on drop, with the log tail printed when the test
//! panics. [`crate::Mosquitto`], [`crate::NatsServer`] and [`crate::Tansu`] each own one and
//! dereference to it, so `pid`, `is_running`, `kill`, `cpu_seconds`, `rss_bytes` and `log` are
//! written once, here.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::wait::POLL_INTERVAL;

/// How long a start may take before it is an error.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Daemon::restart`] keeps retrying while the old ports are still busy.
const RESTART_BIND_RETRY: Duration = Duration::from_secs(5);

/// Why one launch failed.
#[derive(Debug)]
pub(crate) enum LaunchError {
    /// A listener port was taken: worth retrying (new ports on start, later on restart).
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

/// How to run and recognise one kind of broker.
#[derive(Debug, Clone)]
pub(crate) struct DaemonSpec {
    /// For messages: `nats-server`.
    pub name: &'static str,
    pub bin: PathBuf,
    pub args: Vec<OsString>,
    pub log: PathBuf,
    /// A log line fragment printed once the broker serves.
    pub ready_marker: &'static str,
    /// Log line fragments that mean a listener port was taken.
    pub port_taken_markers: &'static [&'static str],
}

/// See the module docs.
#[derive(Debug)]
pub struct Daemon {
    spec: DaemonSpec,
    child: Option<Child>,
    pid: u32,
}

impl Daemon {
    pub(crate) fn new(spec: DaemonSpec) -> Daemon {
        Daemon {
            spec,
            child: None,
            pid: 0,
        }
    }

    /// PID of the current (or last) process.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is still alive (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// SIGKILL and reap: the ports are closed when this returns. Nothing if not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if the process already exited; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the process has logged so far (all runs, restarts included).
    #[must_use]
    pub fn log(&self) -> String {
        self.log_since(0)
    }

    /// CPU seconds (user + system) used by the current process.
    ///
    /// # Errors
    /// The process is gone.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        crate::procfs::cpu_seconds(self.pid)
    }

    /// Resident memory of the current process in bytes (0 when it is gone).
    #[must_use]
    pub fn rss_bytes(&self) -> u64 {
        crate::procfs::rss_bytes(self.pid)
    }

    fn log_since(&self, offset: u64) -> String {
        let log = std::fs::read(&self.spec.log).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[start..]).into_owned()
    }

    /// `bin args...`, for messages.
    fn command_line(&self) -> String {
        let mut line = self.spec.bin.display().to_string();
        for a in &self.spec.args {
            line.push(' ');
            line.push_str(&a.to_string_lossy());
        }
        line
    }

    /// Spawns the process and waits until it is ready (its marker logged and every port in
    /// `ports` accepting) or has failed.
    pub(crate) fn launch(&mut self, ports: &[u16]) -> Result<(), LaunchError> {
        let name = self.spec.name;
        let failed = |e: anyhow::Error| LaunchError::Failed(e);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .with_context(|| format!("opening the {name} log"))
            .map_err(failed)?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stdout = log
            .try_clone()
            .context("duplicating the log")
            .map_err(failed)?;
        let child = Command::new(&self.spec.bin)
            .args(&self.spec.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.spec.bin.display()))
            .map_err(failed)?;
        self.pid = child.id();
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                let log = self.log_since(log_start);
                let err = anyhow!(
                    "{name} exited while starting ({}); log:\n{log}",
                    self.command_line()
                );
                let taken = self.spec.port_taken_markers.iter().any(|m| log.contains(m));
                return Err(if taken {
                    LaunchError::PortTaken(err)
                } else {
                    LaunchError::Failed(err)
                });
            }
            if self.log_since(log_start).contains(self.spec.ready_marker) && accept(ports) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(failed(anyhow!(
                    "{name} was not ready after {READY_TIMEOUT:?}; log:\n{}",
                    self.log_since(log_start)
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Daemon {
    /// Kills the process if it runs, then launches it again on the same `ports`, retrying for
    /// a few seconds while they are still busy.
    pub(crate) fn restart(&mut self, ports: &[u16]) -> anyhow::Result<()> {
        self.kill();
        let retry_until = Instant::now() + RESTART_BIND_RETRY;
        loop {
            match self.launch(ports) {
                Ok(()) => return Ok(()),
                Err(LaunchError::PortTaken(_)) if Instant::now() < retry_until => {
                    std::thread::sleep(POLL_INTERVAL);
                }
                Err(LaunchError::PortTaken(e) | LaunchError::Failed(e)) => return Err(e),
            }
        }
    }
}

/// Whether every port on 127.0.0.1 accepts a TCP connection.
fn accept(ports: &[u16]) -> bool {
    ports.iter().all(|&port| {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- {} log tail ({}) ---\n{}\n--- end of {} log ---",
                self.spec.name,
                self.spec.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                self.spec.name,
            );
        }
        self.kill();
    }
}

/// `$env_var` if set (and a file), else `default` if it is a file, else `name` on PATH.
pub(crate) fn find_binary(env_var: &str, default: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let default = PathBuf::from(default);
    if default.is_file() {
        return Some(default);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
