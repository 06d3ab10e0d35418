//! librdkafka clients as this project configures them: security (TLS, SASL PLAIN/SCRAM) from the
//! shared connection settings, `KAFKA_CONFIG` pass-through, a context that keeps the last error
//! (so start-up can tell refused credentials from an unreachable broker), the start-up probe
//! with the same retry budget and exit-3 classes as MQTT, and topic creation.

use super::url::KafkaUrl;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;

/// SASL mechanism used when a username is set (`KAFKA_SASL_MECHANISM`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum SaslMechanism {
    #[default]
    #[value(name = "PLAIN", alias = "plain")]
    #[serde(rename = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512", alias = "scram-sha-512")]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How to reach and authenticate to the brokers.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Skip broker certificate verification.
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub mechanism: SaslMechanism,
}

/// Parses `KAFKA_CONFIG`: librdkafka properties as `key=value` pairs separated by commas.
///
/// # Errors
/// A pair without `=` or with an empty key.
pub fn parse_properties(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!(
                "'{p}' is not key=value (librdkafka properties, comma separated)"
            )),
        })
        .collect()
}

/// The librdkafka configuration for `url`: bootstrap list, security, latency settings, then
/// `extra` (`KAFKA_CONFIG`), which overrides everything before it.
pub fn client_config(
    url: &KafkaUrl,
    sec: &Security,
    client_id: &str,
    extra: &[(String, String)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", url.bootstrap_servers())
        .set("client.id", client_id)
        // Latency matters more than the bytes a Nagle delay would save.
        .set("socket.nagle.disable", "true")
        // Connections come and go in fault tests: retry fast, like the MQTT links' backoff.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000")
        // A restarted broker may have lost a topic for a while: learn about it quickly.
        .set("topic.metadata.refresh.interval.ms", "1000");
    let sasl = sec.username.is_some();
    let protocol = match (url.tls, sasl) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if sasl {
        c.set("sasl.mechanisms", sec.mechanism.as_str())
            .set("sasl.username", sec.username.as_deref().unwrap_or_default())
            .set("sasl.password", sec.password.as_deref().unwrap_or_default());
    }
    if url.tls {
        if let Some(ca) = &sec.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let (Some(cert), Some(key)) = (&sec.cert_file, &sec.key_file) {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
        if sec.insecure {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        } else {
            c.set("ssl.endpoint.identification.algorithm", "https");
        }
    }
    for (k, v) in extra {
        c.set(k, v);
    }
    c
}

/// Client context: librdkafka's log lines go to `tracing` (debug); the last client-level error,
/// and the first one that retrying cannot fix, are kept for start-up diagnostics. (librdkafka
/// delivers both through the client's main queue: they arrive while the client is polled.)
#[derive(Default)]
pub struct KafkaContext {
    /// librdkafka said all brokers are down since [`KafkaContext::take_down`] last looked.
    down: std::sync::atomic::AtomicBool,
    /// Records the producer accepted and then failed to deliver (timed out, topic gone, ...).
    undelivered: std::sync::atomic::AtomicU64,
    last_error: Mutex<Option<(RDKafkaErrorCode, String)>>,
    final_error: Mutex<Option<(RDKafkaErrorCode, String)>>,
    /// Consumer lag from the last statistics (`statistics.interval.ms`), plus one (0: none yet).
    lag: std::sync::atomic::AtomicU64,
    /// Group rebalances this consumer went through since [`KafkaContext::take_rebalances`]
    /// last looked: revocations of its partitions (the eager protocol revokes every member's
    /// partitions before it assigns them again; a member the group expelled, say for a late
    /// heartbeat, loses its partitions the same way).
    rebalances: std::sync::atomic::AtomicU64,
    /// Rebalance events (assignments and revocations) so far: a consumer's generation.
    generation: std::sync::atomic::AtomicU64,
}

impl KafkaContext {
    /// Whether librdkafka reported all brokers down since the last call (which clears it).
    pub fn take_down(&self) -> bool {
        self.down.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Records accepted by this producer and then not delivered, so far.
    pub fn undelivered(&self) -> u64 {
        self.undelivered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A consumer's lag as its last statistics said: records between its position and the high
    /// watermark, summed over its assigned partitions (`None`: no statistics yet).
    pub fn consumer_lag(&self) -> Option<u64> {
        self.lag
            .load(std::sync::atomic::Ordering::Relaxed)
            .checked_sub(1)
    }

    /// Group rebalances (revocations of this consumer's partitions) since the last call, which
    /// clears them.
    pub fn take_rebalances(&self) -> u64 {
        self.rebalances
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// How many rebalance events (assignments, revocations) this consumer has seen: records
    /// handed on in one generation belong to one assignment.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The last error librdkafka reported for this client, if any.
    pub fn last_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first refused login or TLS failure reported for this client, if any.
    pub fn final_error(&self) -> Option<KafkaSetupError> {
        let e = self.final_error.lock().unwrap_or_else(|e| e.into_inner());
        e.as_ref().and_then(|(c, r)| final_error(*c, r))
    }
}

impl ClientContext for KafkaContext {
    fn stats(&self, s: rdkafka::Statistics) {
        self.lag.store(
            consumer_lag(&s).saturating_add(1),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{msg}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "error: {error}: {reason}");
        if let Some(code) = error.rdkafka_error_code() {
            if code == RDKafkaErrorCode::AllBrokersDown {
                self.down.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if final_error(code, reason).is_some() {
                let mut f = self.final_error.lock().unwrap_or_else(|e| e.into_inner());
                f.get_or_insert_with(|| (code, reason.to_string()));
            }
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((code, reason.to_string()));
        }
    }
}

impl ConsumerContext for KafkaContext {
    /// Counts rebalances (librdkafka runs this while the consumer is polled, on the polling
    /// task, before it hands on any record of the new assignment).
    fn pre_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        r: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::Rebalance;
        use std::sync::atomic::Ordering::Relaxed;
        match r {
            Rebalance::Assign(tpl) => {
                self.generation.fetch_add(1, Relaxed);
                tracing::debug!(target: "librdkafka", "assigned {} partitions", tpl.count());
            }
            Rebalance::Revoke(tpl) => {
                self.generation.fetch_add(1, Relaxed);
                self.rebalances.fetch_add(1, Relaxed);
                tracing::debug!(target: "librdkafka", "revoked {} partitions", tpl.count());
            }
            Rebalance::Error(e) => tracing::warn!("consumer group rebalance failed: {e}"),
        }
    }
}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            self.undelivered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(target: "librdkafka", "not delivered: {e}");
        }
    }
}

/// Lag of a consumer, Kafka's definition: per assigned partition, the high watermark minus the
/// consumer's position, summed. librdkafka's `consumer_lag_stored` (against the offset of the
/// last record handed to us; `consumer_lag` counts from the last commit, and a consumer of its
/// own group commits nothing); -1, unknown, counts 0.
pub fn consumer_lag(s: &rdkafka::Statistics) -> u64 {
    s.topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .filter(|(p, x)| **p >= 0 && x.fetch_state == "active")
        .map(|(_, x)| {
            let lag = if x.consumer_lag_stored >= 0 {
                x.consumer_lag_stored
            } else {
                x.consumer_lag
            };
            lag.max(0) as u64
        })
        .sum()
}

/// Why Kafka could not be set up at start-up.
#[derive(Debug, Error)]
pub enum KafkaSetupError {
    #[error("invalid Kafka client setting (check KAFKA_CONFIG): {0}")]
    Config(String),
    #[error("broker rejected the credentials ({0}); check BROKER_USERNAME, BROKER_PASSWORD and KAFKA_SASL_MECHANISM")]
    Auth(String),
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("still failing after retrying for {budget_ms} ms (CONNECT_RETRY_MS): {last}")]
    GaveUp { budget_ms: u64, last: String },
    #[error("cannot create topic '{topic}': {reason}")]
    Topic { topic: String, reason: String },
}

/// Classifies a client-level error: credentials and certificates are final (exit 3 at once).
fn final_error(code: RDKafkaErrorCode, reason: &str) -> Option<KafkaSetupError> {
    match code {
        RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed => {
            Some(KafkaSetupError::Auth(reason.to_string()))
        }
        RDKafkaErrorCode::SSL => Some(KafkaSetupError::Tls(reason.to_string())),
        _ => None,
    }
}

/// An admin client on `config`, created here so configuration errors surface as
/// [`KafkaSetupError::Config`].
///
/// # Errors
/// librdkafka refused the configuration (unknown property, bad value).
pub fn admin(config: &ClientConfig) -> Result<AdminClient<KafkaContext>, KafkaSetupError> {
    config
        .create_with_context(KafkaContext::default())
        .map_err(|e| KafkaSetupError::Config(e.to_string()))
}

/// Waits until the cluster answers a metadata request, retrying for `budget`, with a client
/// made from `config`. Refused credentials and TLS failures end it at once; what stays
/// unreachable ends in [`KafkaSetupError::GaveUp`]. Returns the number of brokers.
///
/// # Errors
/// See above; a configuration librdkafka refuses is [`KafkaSetupError::Config`].
pub fn probe(config: &ClientConfig, budget: Duration) -> Result<usize, KafkaSetupError> {
    let client: BaseProducer<KafkaContext> = config
        .create_with_context(KafkaContext::default())
        .map_err(|e| KafkaSetupError::Config(e.to_string()))?;
    let deadline = Instant::now() + budget;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left.clamp(Duration::from_millis(200), Duration::from_secs(1));
        let result = client.client().fetch_metadata(None, attempt);
        // Errors and logs arrive through the main queue.
        client.poll(Duration::ZERO);
        match result {
            Ok(md) => return Ok(md.brokers().len()),
            Err(e) => {
                if let Some(f) = client.context().final_error() {
                    return Err(f);
                }
                if Instant::now() >= deadline {
                    let last = match client.context().last_error() {
                        Some((_, reason)) => format!("{e} ({reason})"),
                        None => e.to_string(),
                    };
                    return Err(KafkaSetupError::GaveUp {
                        budget_ms: budget.as_millis() as u64,
                        last,
                    });
                }
            }
        }
    }
}

/// Partition counts of `topics` as the cluster knows them (`None`: no such topic).
///
/// # Errors
/// The metadata request failed.
pub fn partition_counts(
    client: &Client<KafkaContext>,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<Option<u32>>, KafkaError> {
    let md = client.fetch_metadata(None, timeout)?;
    Ok(topics
        .iter()
        .map(|t| {
            md.topics()
                .iter()
                .find(|mt| mt.name() == t && mt.error().is_none())
                .map(|mt| mt.partitions().len() as u32)
                .filter(|n| *n > 0)
        })
        .collect())
}

/// Creates the topics of `topics` that do not exist yet with `partitions` partitions
/// (replication factor 1 unless `KAFKA_CONFIG`-level defaults say otherwise on the broker), and
/// returns every topic's partition count once the cluster's metadata shows it.
///
/// # Errors
/// Creation was refused for another reason than "already exists", or the topic did not show up
/// in the metadata within `timeout`.
pub async fn ensure_topics(
    admin: &AdminClient<KafkaContext>,
    topics: &[String],
    partitions: u32,
    timeout: Duration,
) -> Result<Vec<u32>, KafkaSetupError> {
    let client = admin.inner();
    let known = partition_counts(client, topics, timeout).map_err(|e| KafkaSetupError::Topic {
        topic: topics.join(","),
        reason: e.to_string(),
    })?;
    let missing: Vec<&String> = topics
        .iter()
        .zip(&known)
        .filter(|(_, n)| n.is_none())
        .map(|(t, _)| t)
        .collect();
    if !missing.is_empty() {
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| NewTopic::new(t, partitions as i32, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let results =
            admin
                .create_topics(new.iter(), &opts)
                .await
                .map_err(|e| KafkaSetupError::Topic {
                    topic: missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    reason: e.to_string(),
                })?;
        for r in results {
            if let Err((topic, code)) = r {
                if code != RDKafkaErrorCode::TopicAlreadyExists {
                    return Err(KafkaSetupError::Topic {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let counts = partition_counts(client, topics, Duration::from_secs(1));
        if let Ok(c) = &counts {
            if c.iter().all(Option::is_some) {
                return Ok(c.iter().map(|n| n.unwrap_or(0)).collect());
            }
        }
        if Instant::now() >= deadline {
            return Err(KafkaSetupError::Topic {
                topic: topics.join(","),
                reason: format!("not in the cluster's metadata after {timeout:?}: {counts:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a delivery or fetch error means the topic is gone (a restarted memory broker).
pub fn is_unknown_topic(code: RDKafkaRespErr) -> bool {
    matches!(
        RDKafkaErrorCode::from(code),
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &ClientConfig, k: &str) -> Option<String> {
        c.get(k).map(str::to_string)
    }

    #[test]
    fn security_protocol_follows_scheme_and_credentials() {
        let plain: KafkaUrl = "kafka://a:1,b:2".parse().unwrap();
        let tls: KafkaUrl = "kafka+ssl://a:1".parse().unwrap();
        let none = Security::default();
        let c = client_config(&plain, &none, "id", &[]);
        assert_eq!(get(&c, "bootstrap.servers").as_deref(), Some("a:1,b:2"));
        assert_eq!(get(&c, "security.protocol").as_deref(), Some("plaintext"));
        assert_eq!(get(&c, "sasl.username"), None);
        let sasl = Security {
            username: Some("u".into()),
            password: Some("p".into()),
            mechanism: SaslMechanism::ScramSha512,
            ca_file: Some("/ca.pem".into()),
            insecure: true,
            ..Security::default()
        };
        let c = client_config(&tls, &sasl, "id", &[("linger.ms".into(), "0".into())]);
        assert_eq!(get(&c, "security.protocol").as_deref(), Some("sasl_ssl"));
        assert_eq!(get(&c, "sasl.mechanisms").as_deref(), Some("SCRAM-SHA-512"));
        assert_eq!(get(&c, "ssl.ca.location").as_deref(), Some("/ca.pem"));
        assert_eq!(
            get(&c, "enable.ssl.certificate.verification").as_deref(),
            Some("false")
        );
        assert_eq!(get(&c, "linger.ms").as_deref(), Some("0"));
        let c = client_config(&plain, &sasl, "id", &[]);
        assert_eq!(
            get(&c, "security.protocol").as_deref(),
            Some("sasl_plaintext")
        );
        assert_eq!(get(&c, "ssl.ca.location"), None);
    }

    #[test]
    fn properties_parse_or_name_the_bad_pair() {
        assert_eq!(
            parse_properties(" linger.ms=1, acks = all ,"),
            Ok(vec![
                ("linger.ms".to_string(), "1".to_string()),
                ("acks".to_string(), "all".to_string())
            ])
        );
        assert_eq!(parse_properties(""), Ok(vec![]));
        assert!(parse_properties("linger.ms")
            .unwrap_err()
            .contains("linger.ms"));
        assert!(parse_properties("=1").is_err());
    }

    #[test]
    fn unknown_properties_are_a_config_error() {
        let url: KafkaUrl = "kafka://127.0.0.1:1".parse().unwrap();
        let c = client_config(
            &url,
            &Security::default(),
            "id",
            &[("no.such.property".into(), "1".into())],
        );
        match admin(&c) {
            Err(KafkaSetupError::Config(m)) => assert!(m.contains("no.such.property"), "{m}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
