//! The effective fan-out plan derived from a configuration: who connects where, from which
//! source address, to which subjects (the settings themselves are in `config::fanout`).

pub use crate::config::fanout::Role;
use crate::config::Config;
use rr_common::broker::BrokerUrl;
use rr_common::kafka::topics::SubjectTopics;
use std::net::IpAddr;

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
    /// Kafka: where subjects are produced (`SUBJECT_TOPIC`).
    pub subject_topics: SubjectTopics,
    /// Kafka: partitions of the subject topics a run creates (`KAFKA_PARTITIONS`).
    pub kafka_partitions: u32,
    /// The subscribers are Kafka consumers (`GATEWAY_URLS=kafka://...`).
    pub kafka_consumers: bool,
    /// Kafka consumers: the group they share (`CONSUMER_GROUP`), else one each.
    pub consumer_group: Option<String>,
    /// Kafka consumers: no progress for this long counts as failing (`FAILING_AFTER_SEC`).
    pub failing_after: std::time::Duration,
    /// Test hook: subscriber `IDX` stops for good `SEC` seconds after t = 0 (`KILL_CLIENT_AT`).
    pub kill: Option<(u32, u64)>,
}

impl Plan {
    pub fn new(cfg: &Config) -> Plan {
        let f = &cfg.fanout;
        let broker = &cfg.connect.broker;
        let role = f.fanout_role;
        let kafka_consumers = role.subscribes()
            && f.effective_gateways(broker)
                .iter()
                .any(|g| g.scheme.is_kafka());
        // a Kafka consumer of the one subject topic reads every subject; with a topic per
        // subject it reads the topics of its SUBJECTS_PER_CLIENT subjects (in CONSUMER_GROUP,
        // every subject's: the group's books cover them all)
        let per_client = if kafka_consumers
            && (!f.subject_topics().per_subject() || f.consumer_group.is_some())
        {
            f.subjects
        } else {
            f.subjects_per_client
        };
        Plan {
            role,
            gateways: if role.subscribes() {
                f.effective_gateways(broker)
            } else {
                Vec::new()
            },
            publish_broker: f
                .effective_publish_broker(broker)
                .filter(|_| role.publishes()),
            sources: f.source_addrs.clone(),
            clients: if role.subscribes() { f.clients } else { 0 },
            subjects: f.subjects,
            per_client,
            seed: f.seed,
            connect_rate: f.connect_rate,
            publish_rate: f.publish_rate,
            publish_connections: f.publish_connections,
            payload_bytes: cfg.payload_bytes(),
            subject_topics: f.subject_topics(),
            kafka_partitions: cfg.connect.kafka_partitions,
            kafka_consumers,
            consumer_group: f.consumer_group.clone(),
            failing_after: std::time::Duration::from_secs(f.failing_after_sec),
            kill: f
                .kill_client_at
                .as_deref()
                .and_then(crate::config::fanout::parse_kill),
        }
    }

    /// The subject's name, `{SUBJECT_PREFIX}{n}`.
    pub fn subject_name(prefix: &str, n: u32) -> String {
        format!("{prefix}{n}")
    }

    /// Kafka: the topics the subjects are produced to, with the partitions a run creates them
    /// with where the cluster lacks them.
    pub fn kafka_topics(&self, prefix: &str) -> Vec<(String, u32)> {
        let names: Vec<String> = (0..self.subjects)
            .map(|n| Plan::subject_name(prefix, n))
            .collect();
        self.subject_topics
            .topics(names.iter().map(String::as_str))
            .into_iter()
            .map(|t| (t, self.kafka_partitions))
            .collect()
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
        if k == n {
            return (0..self.subjects).collect();
        }
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
    fn gateways_and_publisher_default_from_a_websocket_broker() {
        let c = cfg(&["--broker", "ws://10.1.2.3:8080/mqtt"]);
        let plan = Plan::new(&c);
        assert_eq!(plan.gateways[0].to_string(), "ws://10.1.2.3:8080/mqtt");
        assert_eq!(
            plan.publish_broker.map(|u| u.to_string()).as_deref(),
            Some("mqtt://10.1.2.3:1883")
        );
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
