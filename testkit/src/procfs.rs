//! Per-process resource figures (resident memory, CPU time) read from Linux `/proc`.

use anyhow::{anyhow, Context};

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ): 100 on every Linux architecture
/// we run on, and fixed by the kernel ABI regardless of CONFIG_HZ.
const USER_HZ: f64 = 100.0;

/// Resident set size of `pid` in bytes (`VmRSS` in `/proc/<pid>/status`), or 0 when the
/// process is gone or the figure cannot be read. Use [`try_rss_bytes`] to see why.
#[must_use]
pub fn rss_bytes(pid: u32) -> u64 {
    try_rss_bytes(pid).unwrap_or(0)
}

/// [`rss_bytes`] with the reason when it cannot be read.
///
/// # Errors
/// No such process, or `/proc/<pid>/status` has no parsable `VmRSS` line (kernel threads).
pub fn try_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow!("{path} has no VmRSS line"))
}

/// CPU time (user + system) that `pid` has used so far, in seconds, from `/proc/<pid>/stat`.
///
/// # Errors
/// No such process, or the stat line cannot be parsed.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| anyhow!("cannot parse {path}: {stat}"))?;
    // Ticks stay far below 2^52 for any real process, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    Ok(ticks as f64 / USER_HZ)
}

/// `VmRSS:   1234 kB` -> bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// is in parentheses and may hold spaces or parentheses, so fields are counted after the
/// last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11); // field 3 (state) is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  999 kB\nVmRSS:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn parses_cpu_ticks_with_odd_command_names() {
        let stat = "42 (my (odd) proc) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 \
                    100 1000 10 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid) > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert_eq!(rss_bytes(u32::MAX), 0);
        assert!(cpu_seconds(u32::MAX).is_err());
    }
}
