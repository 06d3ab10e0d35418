//! Fan-out settings (`SCENARIO=fanout`): the variables, their checks and their report entries.
//! Knows nothing of the rest of the loadgen: checks take the two facts they need from outside
//! (`BROKER` and the effective `PAYLOAD_BYTES`).

use clap::{Args, ValueEnum};
use rr_common::broker::{BrokerUrl, Scheme};
use rr_common::cli::ConfigError;
use rr_common::kafka::topics::SubjectTopics;
use serde_json::Value;
use std::net::IpAddr;

/// Smallest fan-out message: the stamp (timestamp, run, subject, sequence) it carries. The
/// payload layout (`fanout::payload`) checks that its header is exactly this long.
pub const MIN_PAYLOAD_BYTES: usize = 24;

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
    /// Gateway WebSocket URLs (ws:// or wss://), comma separated, clients spread over them round-robin; or one kafka://host:port[,...]: the subscribers are Kafka consumers (the scaling-test shape) [default: BROKER when it is ws:// or wss://]
    #[arg(
        long,
        env = "GATEWAY_URLS",
        value_parser = parse_gateways,
        default_value = "",
        hide_default_value = true,
        value_name = "GATEWAY_URLS"
    )]
    pub gateway_urls: GatewayUrls,
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
    /// Broker the publisher connects to, any URL form, kafka://host:port[,...] included [default: mqtt://{first gateway host}:1883; GATEWAY_URLS when it is kafka://]
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
    /// Kafka: the topic every subject is produced to (keyed by the subject's name), or a template holding {subject} for a topic per subject (s.{subject}: u/s17 -> s.u.s17) (fanout)
    #[arg(
        long,
        env = "SUBJECT_TOPIC",
        default_value = "fanout",
        value_name = "SUBJECT_TOPIC"
    )]
    pub subject_topic: String,
    /// Kafka consumers: one consumer group shared by all of them (each message expected once per group) [default: a group of its own per consumer, each sees every message]
    #[arg(long, env = "CONSUMER_GROUP", value_name = "CONSUMER_GROUP")]
    pub consumer_group: Option<String>,
    /// Kafka consumers: a consumer that makes no progress for this long while it has lag (or is down) counts as failing (fanout)
    #[arg(
        long,
        env = "FAILING_AFTER_SEC",
        default_value_t = 5,
        value_name = "FAILING_AFTER_SEC"
    )]
    pub failing_after_sec: u64,
    /// Test hook: IDX@SEC stops subscriber IDX for good SEC seconds after t = 0, as a crashed client (fanout) [default: none]
    #[arg(long, env = "KILL_CLIENT_AT", value_name = "KILL_CLIENT_AT")]
    pub kill_client_at: Option<String>,
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
/// `GATEWAY_URLS`: URLs separated by commas, where a Kafka URL's bootstrap list
/// (`kafka://h1:9092,h2:9092`) runs on to the next entry that has a scheme.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayUrls(pub Vec<BrokerUrl>);

impl std::ops::Deref for GatewayUrls {
    type Target = Vec<BrokerUrl>;
    fn deref(&self) -> &Vec<BrokerUrl> {
        &self.0
    }
}

fn parse_gateways(s: &str) -> Result<GatewayUrls, String> {
    let parts: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut out = Vec::with_capacity(parts.len());
    let mut i = 0;
    while i < parts.len() {
        let mut j = i + 1;
        if rr_common::kafka::KafkaUrl::is_kafka(parts[i]) {
            while j < parts.len() && !parts[j].contains("://") {
                j += 1;
            }
        }
        out.push(parts[i..j].join(",").parse()?);
        i = j;
    }
    Ok(GatewayUrls(out))
}

/// Most Kafka consumers per process (each is a librdkafka client: README, Kafka).
pub const MAX_KAFKA_CONSUMERS: u32 = 500;

/// `KILL_CLIENT_AT`: `IDX@SEC`.
pub fn parse_kill(s: &str) -> Option<(u32, u64)> {
    let (i, t) = s.trim().split_once('@')?;
    Some((i.trim().parse().ok()?, t.trim().parse().ok()?))
}

/// Most subjects (topic bytes are precomputed per subject).
pub const MAX_SUBJECTS: u32 = 1_000_000;
/// Most subjects per client.
pub const MAX_SUBJECTS_PER_CLIENT: u32 = 1000;

impl FanoutConfig {
    /// Gateways after defaulting to `BROKER` (when it is a WebSocket URL).
    pub fn effective_gateways(&self, broker: &BrokerUrl) -> Vec<BrokerUrl> {
        if self.gateway_urls.is_empty() && broker.scheme.is_ws() {
            vec![broker.clone()]
        } else {
            self.gateway_urls.to_vec()
        }
    }

    /// Publisher broker after defaulting to the first gateway's host on port 1883 (a Kafka
    /// gateway: the same cluster) (or to
    /// `BROKER` when it is not a WebSocket URL and there is no gateway).
    pub fn effective_publish_broker(&self, broker: &BrokerUrl) -> Option<BrokerUrl> {
        self.publish_broker.clone().or_else(|| {
            self.effective_gateways(broker)
                .first()
                .map(|g| {
                    if g.scheme.is_kafka() {
                        g.clone()
                    } else {
                        BrokerUrl {
                            scheme: Scheme::Tcp,
                            host: g.host.clone(),
                            port: 1883,
                            path: String::new(),
                        }
                    }
                })
                .or_else(|| (!broker.scheme.is_ws()).then(|| broker.clone()))
        })
    }

    /// `SUBJECT_TOPIC`, checked (see [`FanoutConfig::check`]).
    pub fn subject_topics(&self) -> SubjectTopics {
        SubjectTopics::parse(&self.subject_topic)
            .unwrap_or_else(|_| SubjectTopics::parse("fanout").expect("a legal topic"))
    }

    /// Ranges and combinations, naming the variable. `broker` is `BROKER` (the default
    /// gateway); `payload_bytes` the effective `PAYLOAD_BYTES`.
    pub fn check(&self, broker: &BrokerUrl, payload_bytes: usize) -> Result<(), ConfigError> {
        let role = self.fanout_role;
        let gateways = self.effective_gateways(broker);
        if role.subscribes() {
            if gateways.is_empty() {
                return Err(ConfigError::new(
                    "GATEWAY_URLS",
                    format!(
                        "not set, and BROKER '{}' is not a ws:// or wss:// URL; set GATEWAY_URLS=ws://host:port/mqtt[,...]",
                        broker
                    ),
                ));
            }
            let kafka = gateways.iter().any(|g| g.scheme.is_kafka());
            if kafka && gateways.len() > 1 {
                return Err(ConfigError::new(
                    "GATEWAY_URLS",
                    format!(
                        "'{}': a kafka:// URL must be the only one (list the cluster's brokers in it: kafka://h1:9092,h2:9092)",
                        gateways.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(",")
                    ),
                ));
            }
            if let Some(bad) = gateways
                .iter()
                .find(|g| !g.scheme.is_ws() && !g.scheme.is_kafka())
            {
                return Err(ConfigError::new(
                    "GATEWAY_URLS",
                    format!("'{bad}' is not a ws://, wss:// or kafka:// URL"),
                ));
            }
            if kafka && self.clients > MAX_KAFKA_CONSUMERS {
                return Err(ConfigError::new(
                    "CLIENTS",
                    format!(
                        "'{}' must be 1..={MAX_KAFKA_CONSUMERS} with Kafka consumers (GATEWAY_URLS=kafka://...): each is a librdkafka client with its own threads and buffers (README, Kafka); run more loadgen instances with FANOUT_ROLE=subscribe",
                        self.clients
                    ),
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
        SubjectTopics::parse(&self.subject_topic)
            .map_err(|e| ConfigError::new("SUBJECT_TOPIC", e))?;
        if let Some(g) = &self.consumer_group {
            if g.is_empty() || g.len() > 200 || g.contains(['/', '\0']) {
                return Err(ConfigError::new(
                    "CONSUMER_GROUP",
                    format!("'{g}' must be 1-200 characters without '/'"),
                ));
            }
        }
        if self.failing_after_sec == 0 || self.failing_after_sec > 3600 {
            return Err(ConfigError::new(
                "FAILING_AFTER_SEC",
                format!("'{}' must be 1..=3600 seconds", self.failing_after_sec),
            ));
        }
        if let Some(k) = &self.kill_client_at {
            match parse_kill(k) {
                Some((idx, _)) if idx < self.clients => {}
                _ => {
                    return Err(ConfigError::new(
                        "KILL_CLIENT_AT",
                        format!(
                            "'{k}' must be IDX@SEC: a subscriber index below CLIENTS ({}) and whole seconds after t = 0",
                            self.clients
                        ),
                    ))
                }
            }
        }
        if role.publishes() && self.effective_publish_broker(broker).is_none() {
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
        if payload_bytes < MIN_PAYLOAD_BYTES {
            return Err(ConfigError::new(
                "PAYLOAD_BYTES",
                format!(
                    "'{payload_bytes}' is too small for fanout: at least {MIN_PAYLOAD_BYTES} bytes carry the timestamp and sequence"
                ),
            ));
        }
        Ok(())
    }

    /// Settings for the report's `config`, typed; `GATEWAY_URLS` and `PUBLISH_BROKER` are the
    /// effective values (after their defaults from `broker`), empty where the role has none.
    pub fn describe(&self, broker: &BrokerUrl) -> Vec<(&'static str, Value)> {
        let join = |v: Vec<String>| Value::from(v.join(","));
        let role = self.fanout_role;
        let gateways = if role.subscribes() {
            self.effective_gateways(broker)
        } else {
            Vec::new()
        };
        let publish_broker = self
            .effective_publish_broker(broker)
            .filter(|_| role.publishes());
        vec![
            (
                "GATEWAY_URLS",
                join(gateways.iter().map(|u| u.to_string()).collect()),
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
                Value::from(publish_broker.map(|u| u.to_string()).unwrap_or_default()),
            ),
            ("PUBLISH_RATE", Value::from(self.publish_rate)),
            ("PUBLISH_CONNECTIONS", Value::from(self.publish_connections)),
            ("SUBJECT_TOPIC", Value::from(self.subject_topic.clone())),
            (
                "CONSUMER_GROUP",
                Value::from(self.consumer_group.clone().unwrap_or_default()),
            ),
            ("FAILING_AFTER_SEC", Value::from(self.failing_after_sec)),
            (
                "KILL_CLIENT_AT",
                Value::from(self.kill_client_at.clone().unwrap_or_default()),
            ),
            ("FANOUT_ROLE", Value::from(self.fanout_role.name())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_lists_keep_a_kafka_bootstrap_list_whole() {
        let g = parse_gateways("ws://a:1/mqtt, ws://b:2/mqtt").unwrap();
        assert_eq!(g.len(), 2);
        let g = parse_gateways("kafka://h1:9092,h2:9093").unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].to_string(), "kafka://h1:9092,h2:9093");
        let g = parse_gateways("kafka://h1:9092,h2:9093,ws://c:3/mqtt").unwrap();
        assert_eq!(g.len(), 2);
        assert!(parse_gateways("").unwrap().is_empty());
        assert!(parse_gateways("ws://a:1/mqtt,h2:9093").is_err());
    }
}
