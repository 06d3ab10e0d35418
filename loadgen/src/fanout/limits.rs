//! OS limits checked before the ramp: open files (one per connection) and ephemeral ports (one
//! per connection and source address), so a run that cannot reach `CLIENTS` says so at once.

use super::config::Plan;
use crate::error::LoadgenError;
use std::collections::HashMap;

/// File descriptors kept free for the HTTP endpoints, the runtime and the report.
pub const FD_SLACK: u64 = 64;

/// The limits that apply to this process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct OsLimits {
    /// Soft and hard `RLIMIT_NOFILE`.
    pub open_files: Option<(u64, u64)>,
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: Option<(u32, u32)>,
}

impl OsLimits {
    /// Reads `/proc/self/limits` and `/proc/sys/net/ipv4/ip_local_port_range`.
    pub fn current() -> OsLimits {
        let hard = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(4))
                    .and_then(|v| v.parse::<u64>().ok())
            });
        let soft = rr_common::cli::open_file_limit();
        let port_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
                Some((it.next()??, it.next()??))
            });
        OsLimits {
            open_files: soft.map(|s| (s, hard.unwrap_or(s))),
            port_range,
        }
    }
}

/// Connections this process opens: subscribers plus publisher links.
fn connections(plan: &Plan) -> u64 {
    let subs = if plan.role.subscribes() {
        u64::from(plan.clients)
    } else {
        0
    };
    let pubs = if plan.role.publishes() {
        u64::from(plan.publish_connections)
    } else {
        0
    };
    subs + pubs
}

/// Fails with the numbers and the remedy when the plan cannot fit the limits.
pub fn check(plan: &Plan, limits: &OsLimits) -> Result<(), LoadgenError> {
    let conns = connections(plan);
    if let Some((soft, hard)) = limits.open_files {
        let needed = conns + FD_SLACK;
        if needed > soft {
            let remedy = if needed <= hard {
                format!(
                    "raise the soft limit (ulimit -n {needed}; the hard limit {hard} allows it)"
                )
            } else {
                format!(
                    "raise the hard and soft limits to at least {needed} (ulimit -Hn/-n as root, LimitNOFILE= in systemd, --ulimit nofile= in Docker)"
                )
            };
            return Err(LoadgenError::Limit(format!(
                "CLIENTS={} needs about {needed} open files ({conns} connections + {FD_SLACK} spare) but the open-file limit is {soft}; {remedy}, or lower CLIENTS",
                plan.clients
            )));
        }
    }
    if !plan.role.subscribes() {
        return Ok(());
    }
    let Some((lo, hi)) = limits.port_range else {
        return Ok(());
    };
    let ports = u64::from(hi.saturating_sub(lo)) + 1;
    if plan.sources.is_empty() {
        // Without a bind the kernel needs a free port per destination (address and port).
        let mut per_dest: HashMap<String, u64> = HashMap::new();
        let m = plan.gateways.len().max(1) as u64;
        for (g, url) in plan.gateways.iter().enumerate() {
            let share =
                u64::from(plan.clients) / m + u64::from((g as u64) < u64::from(plan.clients) % m);
            *per_dest.entry(url.authority()).or_default() += share;
        }
        if let Some((dest, &n)) = per_dest.iter().max_by_key(|(_, n)| **n) {
            if n > ports {
                return Err(LoadgenError::Limit(format!(
                    "CLIENTS={} puts {n} connections on {dest} but one source address has only {ports} ephemeral ports (net.ipv4.ip_local_port_range {lo}-{hi}); set SOURCE_ADDRS to {} or more local addresses (e.g. 127.0.0.2,127.0.0.3 on loopback), add GATEWAY_URLS ports, or widen the port range",
                    plan.clients,
                    n.div_ceil(ports)
                )));
            }
        }
    } else {
        // A bind before connect takes a port of that address for all destinations.
        let n = plan.sources.len() as u64;
        let per_source = u64::from(plan.clients).div_ceil(n);
        if per_source > ports {
            return Err(LoadgenError::Limit(format!(
                "CLIENTS={} puts about {per_source} connections on each of the {n} SOURCE_ADDRS but each address has only {ports} ephemeral ports (net.ipv4.ip_local_port_range {lo}-{hi}); use at least {} source addresses or widen the port range",
                plan.clients,
                u64::from(plan.clients).div_ceil(ports)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let mut v = vec!["loadgen", "--scenario", "fanout"];
        v.extend_from_slice(args);
        Plan::new(&Config::try_parse_from(v).expect("parse"))
    }

    const ROOMY: OsLimits = OsLimits {
        open_files: Some((1 << 20, 1 << 20)),
        port_range: Some((32768, 60999)),
    };

    #[test]
    fn open_files_limit_names_numbers_and_remedy() {
        let p = plan(&["--gateway-urls=ws://h:1/mqtt", "--clients", "20000"]);
        let lim = OsLimits {
            open_files: Some((1024, 524_288)),
            ..ROOMY
        };
        let e = check(&p, &lim).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("CLIENTS=20000"), "{msg}");
        assert!(msg.contains("20066 open files"), "{msg}");
        assert!(msg.contains("limit is 1024"), "{msg}");
        assert!(msg.contains("ulimit -n 20066"), "{msg}");
        assert!(!msg.contains('\n'));
        assert_eq!(e.exit_code(), 2);
        assert!(check(&p, &ROOMY).is_ok());
    }

    #[test]
    fn port_space_per_destination_and_per_source() {
        let p = plan(&["--gateway-urls=ws://h:1/mqtt", "--clients", "30000"]);
        let msg = check(&p, &ROOMY).unwrap_err().to_string();
        assert!(msg.contains("30000 connections on h:1"), "{msg}");
        assert!(msg.contains("28232 ephemeral ports"), "{msg}");
        assert!(msg.contains("SOURCE_ADDRS to 2"), "{msg}");
        // Two ports of the gateway are two destinations.
        let p = plan(&[
            "--gateway-urls=ws://h:1/mqtt,ws://h:2/mqtt",
            "--clients",
            "30000",
        ]);
        assert!(check(&p, &ROOMY).is_ok());
        // Two paths on one port are one destination.
        let p = plan(&["--gateway-urls=ws://h:1/a,ws://h:1/b", "--clients", "30000"]);
        assert!(check(&p, &ROOMY).is_err());
        let p = plan(&[
            "--gateway-urls=ws://h:1/mqtt",
            "--clients",
            "60000",
            "--source-addrs=127.0.0.2,127.0.0.3",
        ]);
        let msg = check(&p, &ROOMY).unwrap_err().to_string();
        assert!(msg.contains("at least 3 source addresses"), "{msg}");
        let p = plan(&[
            "--gateway-urls=ws://h:1/mqtt",
            "--clients",
            "50000",
            "--source-addrs=127.0.0.2,127.0.0.3",
        ]);
        assert!(check(&p, &ROOMY).is_ok());
    }

    #[test]
    fn reads_this_process() {
        let l = OsLimits::current();
        let (soft, hard) = l.open_files.expect("linux /proc");
        assert!(soft <= hard && soft > 0);
    }
}
