//! Fan-out settings (`SCENARIO=fanout`): environment variables, their validation, and the
//! effective plan derived from them (gateways, sources, subject choice per client).

use super::payload::HEADER_LEN;
use crate::config::Config;
use clap::{Args, ValueEnum};
use rr_common::broker::{BrokerUrl, Scheme};
use rr_common::cli::ConfigError;
use std::net::IpAddr;

/// Which half of the test this process runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// subscribers only (the publisher runs elsewhere; wall-clock timestamps)
    Subscribe,
    /// publisher only (subscribers run elsewhere)
    Publish,
    /// publisher and subscribers in this process (monotonic clock, exact books)
    Both,
}

impl Role {
    pub fn subscribes(self) -> bool {
        self != Role::Publish
    }
    pub fn publishes(self) -> bool {
        self != Role::Subscribe
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::Subscribe => "subscribe",
            Role::Publish => "publish",
            Role::Both => "both",
        }
    }
}

/// Fan-out settings.
#[derive(Args, Clone, Debug)]
pub struct FanoutConfig {
    /// Gateway WebSocket URLs (ws:// or wss://), comma separated; clients are spread over them round-robin [default: BROKER when it is ws:// or wss://]
    #[arg(
        long,
        env = "GATEWAY_URLS",
        value_delimiter = ',',
        value_name = "GATEWAY_URLS"
    )]
    pub gateway_urls: Vec<BrokerUrl>,
    /// Direct WebSocket connections, one MQTT session each (fanout)
    #[arg(long, env = "CLIENTS", default_value_t = 1000, value_name = "CLIENTS")]
    pub clients: u32,
    /// Connections opened per second during the ramp (fanout)
    #[arg(
        long,
        env = "CONNECT_RATE",
        default_value_t = 500,
        value_name = "CONNECT_RATE"
    )]
    pub connect_rate: u32,
    /// Local IP addresses the connections bind to, comma separated; each adds one ephemeral port range (fanout) [default: none, the kernel picks]
    #[arg(
        long,
        env = "SOURCE_ADDRS",
        value_delimiter = ',',
        value_name = "SOURCE_ADDRS"
    )]
    pub source_addrs: Vec<IpAddr>,
    /// Subjects, topics {SUBJECT_PREFIX}{n} for n in 0..SUBJECTS (fanout)
    #[arg(
        long,
        env = "SUBJECTS",
        default_value_t = 10_000,
        value_name = "SUBJECTS"
    )]
    pub subjects: u32,
    /// Topic prefix of the subjects (fanout)
    #[arg(
        long,
        env = "SUBJECT_PREFIX",
        default_value = "u/s",
        value_name = "SUBJECT_PREFIX"
    )]
    pub subject_prefix: String,
    /// Distinct subjects each client subscribes to, picked at random with SEED (fanout)
    #[arg(
        long,
        env = "SUBJECTS_PER_CLIENT",
        default_value_t = 1,
        value_name = "SUBJECTS_PER_CLIENT"
    )]
    pub subjects_per_client: u32,
    /// Seed of the subject choice, so runs repeat (fanout)
    #[arg(long, env = "SEED", default_value_t = 1, value_name = "SEED")]
    pub seed: u64,
    /// Broker the publisher connects to, any URL form [default: mqtt://{first gateway host}:1883]
    #[arg(long, env = "PUBLISH_BROKER", value_name = "PUBLISH_BROKER")]
    pub publish_broker: Option<BrokerUrl>,
    /// Messages per second in total, spread evenly over the subjects (fanout)
    #[arg(
        long,
        env = "PUBLISH_RATE",
        default_value_t = 10_000.0,
        value_name = "PUBLISH_RATE"
    )]
    pub publish_rate: f64,
    /// Publisher connections; each subject always goes through the same one, so its order holds (fanout)
    #[arg(
        long,
        env = "PUBLISH_CONNECTIONS",
        default_value_t = 2,
        value_name = "PUBLISH_CONNECTIONS"
    )]
    pub publish_connections: u32,
    /// What this process runs: subscribe, publish or both (fanout)
    #[arg(
        long,
        env = "FANOUT_ROLE",
        value_enum,
        default_value = "both",
        value_name = "FANOUT_ROLE"
    )]
    pub fanout_role: Role,
}

/// Most clients per process (the OS limits usually stop far earlier, with a clear message).
pub const MAX_CLIENTS: u32 = 10_000_000;
/// Most subjects (topic bytes are precomputed per subject).
pub const MAX_SUBJECTS: u32 = 1_000_000;
/// Most subjects per client.
pub const MAX_SUBJECTS_PER_CLIENT: u32 = 1000;

impl FanoutConfig {
    /// Gateways after defaulting to `BROKER`.
    pub fn effective_gateways(&self, cfg: &Config) -> Vec<BrokerUrl> {
        if self.gateway_urls.is_empty() && cfg.broker.scheme.is_ws() {
            vec![cfg.broker.clone()]
        } else {
            self.gateway_urls.clone()
        }
    }

    /// Publisher broker after defaulting to the first gateway's host on port 1883.
    pub fn effective_publish_broker(&self, cfg: &Config) -> Option<BrokerUrl> {
        self.publish_broker.clone().or_else(|| {
            self.effective_gateways(cfg)
                .first()
                .map(|g| BrokerUrl {
                    scheme: Scheme::Tcp,
                    host: g.host.clone(),
                    port: 1883,
                    path: String::new(),
                })
                .or_else(|| (!cfg.broker.scheme.is_ws()).then(|| cfg.broker.clone()))
        })
    }

    pub fn validate(&self, cfg: &Config) -> Result<(), ConfigError> {
        let role = self.fanout_role;
        let gateways = self.effective_gateways(cfg);
        if role.subscribes() {
            if gateways.is_empty() {
                return Err(ConfigError::new(
                    "GATEWAY_URLS",
                    format!(
                        "not set, and BROKER '{}' is not a ws:// or wss:// URL; set GATEWAY_URLS=ws://host:port/mqtt[,...]",
                        cfg.broker
                    ),
                ));
            }
            if let Some(bad) = gateways.iter().find(|g| !g.scheme.is_ws()) {
                return Err(ConfigError::new(
                    "GATEWAY_URLS",
                    format!("'{bad}' is not a ws:// or wss:// URL"),
                ));
            }
            if self.clients == 0 || self.clients > MAX_CLIENTS {
                return Err(ConfigError::new(
                    "CLIENTS",
                    format!("'{}' must be 1..={MAX_CLIENTS}", self.clients),
                ));
            }
            if self.connect_rate == 0 {
                return Err(ConfigError::new(
                    "CONNECT_RATE",
                    "'0' must be at least 1 (connections per second)",
                ));
            }
        }
        if role.publishes() && self.effective_publish_broker(cfg).is_none() {
            return Err(ConfigError::new(
                "PUBLISH_BROKER",
                "not set and there is no gateway to derive it from",
            ));
        }
        if self.subjects == 0 || self.subjects > MAX_SUBJECTS {
            return Err(ConfigError::new(
                "SUBJECTS",
                format!("'{}' must be 1..={MAX_SUBJECTS}", self.subjects),
            ));
        }
        let max_per = self.subjects.min(MAX_SUBJECTS_PER_CLIENT);
        if self.subjects_per_client == 0 || self.subjects_per_client > max_per {
            return Err(ConfigError::new(
                "SUBJECTS_PER_CLIENT",
                format!(
                    "'{}' must be 1..={max_per} (at most SUBJECTS and {MAX_SUBJECTS_PER_CLIENT})",
                    self.subjects_per_client
                ),
            ));
        }
        let p = &self.subject_prefix;
        if p.is_empty() || p.contains(['+', '#', '\0']) || p.len() > 200 {
            return Err(ConfigError::new(
                "SUBJECT_PREFIX",
                format!("'{p}' must be 1-200 characters without '+', '#'"),
            ));
        }
        if !(self.publish_rate.is_finite() && self.publish_rate > 0.0 && self.publish_rate <= 1e7) {
            return Err(ConfigError::new(
                "PUBLISH_RATE",
                format!(
                    "'{}' must be a number of messages per second in (0, 10000000]",
                    self.publish_rate
                ),
            ));
        }
        if self.publish_connections == 0 || self.publish_connections > 64 {
            return Err(ConfigError::new(
                "PUBLISH_CONNECTIONS",
                format!("'{}' must be 1..=64", self.publish_connections),
            ));
        }
        if cfg.payload_bytes() < HEADER_LEN {
            return Err(ConfigError::new(
                "PAYLOAD_BYTES",
                format!(
                    "'{}' is too small for fanout: at least {HEADER_LEN} bytes carry the timestamp and sequence",
                    cfg.payload_bytes()
                ),
            ));
        }
        Ok(())
    }

    /// Settings as given; `GATEWAY_URLS` and `PUBLISH_BROKER` are empty when defaulted (the
    /// report replaces them with the effective values).
    pub fn describe(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::Value;
        let join = |v: Vec<String>| Value::from(v.join(","));
        vec![
            (
                "GATEWAY_URLS",
                join(self.gateway_urls.iter().map(|u| u.to_string()).collect()),
            ),
            ("CLIENTS", Value::from(self.clients)),
            ("CONNECT_RATE", Value::from(self.connect_rate)),
            (
                "SOURCE_ADDRS",
                join(self.source_addrs.iter().map(|a| a.to_string()).collect()),
            ),
            ("SUBJECTS", Value::from(self.subjects)),
            ("SUBJECT_PREFIX", Value::from(self.subject_prefix.clone())),
            ("SUBJECTS_PER_CLIENT", Value::from(self.subjects_per_client)),
            ("SEED", Value::from(self.seed)),
            (
                "PUBLISH_BROKER",
                Value::from(
                    self.publish_broker
                        .as_ref()
                        .map(|u| u.to_string())
                        .unwrap_or_default(),
                ),
            ),
            ("PUBLISH_RATE", Value::from(self.publish_rate)),
            ("PUBLISH_CONNECTIONS", Value::from(self.publish_connections)),
            ("FANOUT_ROLE", Value::from(self.fanout_role.name())),
        ]
    }
}

/// The effective fan-out plan: who connects where, from where, to which subjects.
#[derive(Clone, Debug)]
pub struct Plan {
    pub role: Role,
    pub gateways: Vec<BrokerUrl>,
    pub publish_broker: Option<BrokerUrl>,
    pub sources: Vec<IpAddr>,
    pub clients: u32,
    pub subjects: u32,
    pub per_client: u32,
    pub seed: u64,
    pub connect_rate: u32,
    pub publish_rate: f64,
    pub publish_connections: u32,
    pub payload_bytes: usize,
}

impl Plan {
    pub fn new(cfg: &Config) -> Plan {
        let f = &cfg.fanout;
        let role = f.fanout_role;
        Plan {
            role,
            gateways: if role.subscribes() {
                f.effective_gateways(cfg)
            } else {
                Vec::new()
            },
            publish_broker: f.effective_publish_broker(cfg).filter(|_| role.publishes()),
            sources: f.source_addrs.clone(),
            clients: if role.subscribes() { f.clients } else { 0 },
            subjects: f.subjects,
            per_client: f.subjects_per_client,
            seed: f.seed,
            connect_rate: f.connect_rate,
            publish_rate: f.publish_rate,
            publish_connections: f.publish_connections,
            payload_bytes: cfg.payload_bytes(),
        }
    }

    /// Index into `gateways` of client `idx` (round-robin).
    pub fn gateway_of(&self, idx: u32) -> usize {
        idx as usize % self.gateways.len().max(1)
    }

    /// Source address of client `idx`: round-robin within each gateway's share, so every
    /// gateway sees every source address.
    pub fn source_of(&self, idx: u32) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let per_gateway = idx as usize / self.gateways.len().max(1);
        Some(self.sources[per_gateway % self.sources.len()])
    }

    /// The distinct subjects of client `idx`, a pure function of (SEED, idx), so runs repeat
    /// and a reconnect subscribes the same ones (Floyd's sampling without replacement).
    pub fn subjects_of(&self, idx: u32) -> Vec<u32> {
        let mut state = self.seed ^ u64::from(idx).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let n = u64::from(self.subjects);
        let k = u64::from(self.per_client.min(self.subjects));
        let mut chosen: Vec<u32> = Vec::with_capacity(k as usize);
        for j in (n - k)..n {
            let t = (next() % (j + 1)) as u32;
            if chosen.contains(&t) {
                chosen.push(j as u32);
            } else {
                chosen.push(t);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Config {
        let mut v = vec!["loadgen", "--scenario", "fanout"];
        v.extend_from_slice(args);
        Config::try_parse_from(v).expect("parse")
    }

    #[test]
    fn gateways_default_to_a_websocket_broker() {
        let c = cfg(&["--broker", "ws://10.1.2.3:8080/mqtt"]);
        assert_eq!(c.fanout.validate(&c), Ok(()));
        let plan = Plan::new(&c);
        assert_eq!(plan.gateways[0].to_string(), "ws://10.1.2.3:8080/mqtt");
        assert_eq!(
            plan.publish_broker.map(|u| u.to_string()).as_deref(),
            Some("mqtt://10.1.2.3:1883")
        );
        let c = cfg(&["--broker", "mqtt://h:1883"]);
        let e = c.fanout.validate(&c).unwrap_err();
        assert_eq!(e.var, "GATEWAY_URLS");
        assert!(e.to_string().contains("not a ws://"), "{e}");
    }

    #[test]
    fn rejects_bad_values_naming_the_variable() {
        let gw = "--gateway-urls=ws://a:1/mqtt,ws://b:2/mqtt";
        for (args, var) in [
            (vec![gw, "--clients", "0"], "CLIENTS"),
            (vec![gw, "--subjects", "0"], "SUBJECTS"),
            (
                vec![gw, "--subjects", "3", "--subjects-per-client", "4"],
                "SUBJECTS_PER_CLIENT",
            ),
            (vec![gw, "--subject-prefix", "a/+"], "SUBJECT_PREFIX"),
            (vec![gw, "--publish-rate", "0"], "PUBLISH_RATE"),
            (vec![gw, "--payload-bytes", "8"], "PAYLOAD_BYTES"),
            (vec![gw, "--connect-rate", "0"], "CONNECT_RATE"),
            (vec!["--gateway-urls", "mqtt://a:1"], "GATEWAY_URLS"),
        ] {
            let c = cfg(&args);
            assert_eq!(
                c.fanout.validate(&c).map_err(|e| e.var),
                Err(var),
                "{args:?}"
            );
        }
        let c = cfg(&[gw, "--source-addrs", "127.0.0.2,127.0.0.3"]);
        assert_eq!(c.fanout.validate(&c), Ok(()));
        assert_eq!(c.fanout.source_addrs.len(), 2);
        assert_eq!(c.fanout.gateway_urls.len(), 2);
    }

    #[test]
    fn subjects_are_seeded_distinct_and_in_range() {
        let c = cfg(&[
            "--gateway-urls=ws://a:1/mqtt",
            "--subjects",
            "50",
            "--subjects-per-client",
            "50",
        ]);
        let plan = Plan::new(&c);
        let mut s = plan.subjects_of(7);
        assert_eq!(s, plan.subjects_of(7), "same seed, same choice");
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        let c = cfg(&["--gateway-urls=ws://a:1/mqtt", "--subjects", "1000"]);
        let plan = Plan::new(&c);
        let picks: Vec<u32> = (0..2000).map(|i| plan.subjects_of(i)[0]).collect();
        assert!(picks.iter().all(|&s| s < 1000));
        let distinct: std::collections::HashSet<_> = picks.iter().collect();
        assert!(
            distinct.len() > 800,
            "spread over subjects: {}",
            distinct.len()
        );
        let other = Plan {
            seed: 2,
            ..plan.clone()
        };
        assert_ne!(
            picks[..20],
            (0..20).map(|i| other.subjects_of(i)[0]).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn clients_spread_over_gateways_and_sources() {
        let c = cfg(&[
            "--gateway-urls=ws://a:1/mqtt,ws://a:2/mqtt",
            "--source-addrs=127.0.0.2,127.0.0.3,127.0.0.4",
        ]);
        let plan = Plan::new(&c);
        let mut seen = std::collections::HashSet::new();
        for i in 0..12 {
            seen.insert((plan.gateway_of(i), plan.source_of(i)));
        }
        assert_eq!(seen.len(), 6, "every gateway gets every source address");
    }
}
