//! [`Process`]: one of our binaries run as a child process with a clean environment, its
//! stdout and stderr captured to files (so tests can grep everything it printed), signals sent
//! by pid, killed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::wait::POLL_INTERVAL;

/// A child process started by a test. Killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    dir: TempDir,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `bin` with only `PATH` and `env` in its environment, output captured.
    ///
    /// # Errors
    /// The binary cannot be spawned.
    pub fn spawn(bin: &Path, env: &[(&str, &str)]) -> anyhow::Result<Process> {
        Self::spawn_with_args(bin, env, &[])
    }

    /// [`Process::spawn`] with command-line arguments.
    ///
    /// # Errors
    /// The binary cannot be spawned.
    pub fn spawn_with_args(
        bin: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<Process> {
        let dir = tempfile::Builder::new()
            .prefix("rr-process-")
            .tempdir()
            .context("creating the output tempdir")?;
        let out = File::create(dir.path().join("stdout")).context("creating stdout file")?;
        let err = File::create(dir.path().join("stderr")).context("creating stderr file")?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        Ok(Process {
            child,
            dir,
            status: None,
        })
    }

    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`"TERM"`, `"KILL"`, `"STOP"`, `"CONT"`, ...) to the process.
    ///
    /// # Errors
    /// `kill` failed (for example the process is gone).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(self.pid(), signal)
    }

    /// Waits up to `limit` for the process to exit; `None` if it still runs.
    ///
    /// # Errors
    /// Waiting on the child failed.
    pub fn wait_timeout(&mut self, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_status()? {
                return Ok(Some(s));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The exit status if the process has exited.
    ///
    /// # Errors
    /// Waiting on the child failed.
    pub fn try_status(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("waiting for the child")?;
        }
        Ok(self.status)
    }

    /// Everything written to stdout so far.
    #[must_use]
    pub fn stdout(&self) -> String {
        read_lossy(&self.dir.path().join("stdout"))
    }

    /// Everything written to stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("stderr"))
    }

    /// Waits up to `deadline` until `find` returns `Some` for everything written to stderr so
    /// far (for example the address a server bound); fails early if the process exits first.
    ///
    /// # Errors
    /// The deadline passed, or the process exited, before `find` matched; names `what`.
    pub fn wait_for_stderr<T>(
        &mut self,
        deadline: Duration,
        what: &str,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let end = Instant::now() + deadline;
        loop {
            if let Some(v) = find(&self.stderr()) {
                return Ok(v);
            }
            if let Some(status) = self.try_status()? {
                bail!(
                    "exited ({status}) before {what}:\n{}",
                    tail(&self.stderr(), 20)
                );
            }
            if Instant::now() >= end {
                bail!(
                    "no {what} after {deadline:?}:\n{}",
                    tail(&self.stderr(), 20)
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The `host:port` our binaries log as `metrics on http://host:port/metrics` once their
    /// HTTP endpoints listen (so tests start them with `METRICS_PORT=0`).
    ///
    /// # Errors
    /// As [`Process::wait_for_stderr`].
    pub fn metrics_addr(&mut self, deadline: Duration) -> anyhow::Result<String> {
        self.wait_for_stderr(deadline, "metrics address", metrics_addr_in)
    }

    /// Where the captured output lives.
    #[must_use]
    pub fn output_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- child {} stderr ---\n{}\n--- end ---",
                self.child.id(),
                tail(&self.stderr(), 40)
            );
        }
        self.kill();
    }
}

/// Sends `signal` to `pid` with the `kill` utility (no `unsafe` needed).
///
/// # Errors
/// `kill` could not run or reported a failure.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg("-s")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -s {signal} {pid} failed: {status}");
    }
    Ok(())
}

/// The address in the first `metrics on http://ADDR/metrics` line of `text`.
#[must_use]
pub fn metrics_addr_in(text: &str) -> Option<String> {
    let at = text.find("metrics on http://")? + "metrics on http://".len();
    let rest = &text[at..];
    let end = rest.find("/metrics")?;
    Some(rest[..end].to_string())
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::metrics_addr_in;

    #[test]
    fn finds_the_logged_metrics_address() {
        let log = "\u{1b}[32m INFO\u{1b}[0m metrics on http://127.0.0.1:40123/metrics, stats on http://127.0.0.1:40123/stats\n";
        assert_eq!(metrics_addr_in(log).as_deref(), Some("127.0.0.1:40123"));
        assert_eq!(metrics_addr_in("starting\n"), None);
    }
}
