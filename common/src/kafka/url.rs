//! Kafka broker addresses: `kafka://host:9092[,host2:9092]` and `kafka+ssl://...` (TLS), parsed
//! into the bootstrap list librdkafka takes.

use std::fmt;

/// Port used when a Kafka address names none.
pub const DEFAULT_PORT: u16 = 9092;
const ACCEPTED: &str = "expected kafka://host:port[,host2:port] or kafka+ssl://host:port[,...]";

/// A parsed Kafka URL: one or more bootstrap brokers, plain or TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaUrl {
    /// The listener speaks TLS (`kafka+ssl://`).
    pub tls: bool,
    /// `(host, port)` of each bootstrap broker; IPv6 hosts without brackets.
    pub brokers: Vec<(String, u16)>,
}

impl KafkaUrl {
    /// Whether `s` names a Kafka URL (so callers can pick the parser by scheme).
    pub fn is_kafka(s: &str) -> bool {
        let s = s.trim_start().to_ascii_lowercase();
        s.starts_with("kafka://") || s.starts_with("kafka+ssl://")
    }

    /// `bootstrap.servers`: `host:port,host:port`, IPv6 hosts in brackets.
    pub fn bootstrap_servers(&self) -> String {
        self.brokers
            .iter()
            .map(|(h, p)| authority(h, *p))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl fmt::Display for KafkaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "kafka+ssl" } else { "kafka" };
        write!(f, "{scheme}://{}", self.bootstrap_servers())
    }
}

impl std::str::FromStr for KafkaUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("no scheme; {ACCEPTED}"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "kafka" => false,
            "kafka+ssl" | "kafka+tls" => true,
            other => return Err(format!("unknown scheme '{other}'; {ACCEPTED}")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "'{s}' has a path, query or user part; {ACCEPTED} (credentials go in BROKER_USERNAME/BROKER_PASSWORD)"
            ));
        }
        let brokers = rest
            .split(',')
            .map(parse_host_port)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KafkaUrl { tls, brokers })
    }
}

fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in '{s}'; {ACCEPTED}"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("bad port in '{s}'; {ACCEPTED}"))?,
            ),
        };
        (host, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(format!("IPv6 host '{s}' needs brackets; {ACCEPTED}")),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("no host in '{s}'; {ACCEPTED}"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port '{p}'; {ACCEPTED}"))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_ports_and_tls() {
        let u: KafkaUrl = "kafka://a:9093,b,[::1]:19092".parse().unwrap();
        assert!(!u.tls);
        assert_eq!(
            u.brokers,
            vec![
                ("a".to_string(), 9093),
                ("b".to_string(), DEFAULT_PORT),
                ("::1".to_string(), 19092)
            ]
        );
        assert_eq!(u.bootstrap_servers(), "a:9093,b:9092,[::1]:19092");
        assert_eq!(u.to_string(), "kafka://a:9093,b:9092,[::1]:19092");
        let u: KafkaUrl = "KAFKA+SSL://h:9094/".parse().unwrap();
        assert!(u.tls);
        assert_eq!(u.to_string(), "kafka+ssl://h:9094");
        assert!(KafkaUrl::is_kafka(" kafka+ssl://x"));
        assert!(!KafkaUrl::is_kafka("mqtt://x"));
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "",
            "h:9092",
            "mqtt://h:1883",
            "kafka://",
            "kafka://a,,b",
            "kafka://h:0",
            "kafka://h:99999",
            "kafka://h:x",
            "kafka://::1:9092",
            "kafka://[::1:9092",
            "kafka://user:pw@h:9092",
            "kafka://h:9092/topic",
        ] {
            assert!(bad.parse::<KafkaUrl>().is_err(), "{bad}");
        }
    }
}
