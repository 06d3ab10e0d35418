//! Kafka sessions behind the link seam (docs/kafka.md, "How Kafka fits the transport seam"): a
//! session is a librdkafka producer and, when the connection subscribes, a consumer of its
//! subscriptions (a group for `$share/{group}/req/+`, an assigned partition for
//! `resp/{instance}/{n}`, a read-only consumer in a group for the fan-out consumers'
//! `$consume/{group}/{topic}`); the topics a run needs are made by [`prepare`]. The driver is in
//! `super::driver`.

use super::client::{self, KafkaContext, KafkaSetupError, Security};
use super::topics;
use crate::broker::{BrokerUrl, ConnectOptions};
use crate::link::{SessionError, SessionSpec};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) type Consumer_ = StreamConsumer<KafkaContext>;

/// An established Kafka session: the producer engines send through, and the consumer of the
/// subscriptions (if any).
pub struct Session {
    /// `None` for a read-only session (a fan-out consumer sends nothing).
    pub(super) producer: Option<Arc<BaseProducer<KafkaContext>>>,
    pub(super) consumer: Option<Arc<Consumer_>>,
    /// Records fetched while waiting for the group's assignment: handed on first.
    pub(super) pending: Vec<rdkafka::message::OwnedMessage>,
}

impl Drop for Session {
    /// The clients are dropped on a thread of their own: closing a consumer waits for its group
    /// (long, when the cluster is gone) and a producer purges and flushes, neither of which may
    /// block a runtime thread.
    fn drop(&mut self) {
        let producer = self.producer.take();
        let consumer = self.consumer.take();
        let _ = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || drop((consumer, producer)));
    }
}

/// What a subscription filter means on Kafka (see docs/kafka.md, topic layout).
#[derive(Debug, PartialEq, Eq)]
enum Subscription {
    /// `$share/{group}/req/+` (or any filter with a wildcard): consume the topic of its fixed
    /// levels in a consumer group.
    Group {
        group: Option<String>,
        topic: String,
    },
    /// `resp/{instance}/{n}`: partition `n` of topic `resp.{instance}`, assigned, no group.
    Partition { topic: String, partition: i32 },
    /// `$consume/{group}/{topic}` (a fan-out consumer, [`consume_filter`]): read `topic` (a
    /// Kafka topic name) in `group` from the end, send nothing.
    Consume { group: String, topic: String },
}

const CONSUME: &str = "$consume/";

/// The subscription of a fan-out consumer: `topic` (a Kafka topic name) read in consumer group
/// `group` from the partitions' ends; a session of such subscriptions only is read-only (no
/// producer). `group` must not hold `/`.
pub fn consume_filter(group: &str, topic: &str) -> String {
    format!("{CONSUME}{group}/{topic}")
}

fn subscription(filter: &str) -> Option<Subscription> {
    if let Some(rest) = filter.strip_prefix(CONSUME) {
        let (g, t) = rest.split_once('/')?;
        return (!g.is_empty() && super::topics::is_legal_topic(t)).then(|| {
            Subscription::Consume {
                group: g.to_string(),
                topic: t.to_string(),
            }
        });
    }
    let (group, f) = match filter.strip_prefix("$share/") {
        Some(rest) => {
            let (g, f) = rest.split_once('/')?;
            (Some(g.to_string()), f)
        }
        None => (None, filter),
    };
    if group.is_some() || f.contains(['+', '#']) {
        return Some(Subscription::Group {
            group,
            topic: topics::topic_of_filter(f)?,
        });
    }
    match topics::split_last(f.as_bytes()) {
        (prefix, Some(last)) => {
            let partition = topics::parse_partition(last)?;
            Some(Subscription::Partition {
                topic: topics::sanitize(std::str::from_utf8(prefix).ok()?),
                partition,
            })
        }
        _ => None,
    }
}

fn security(opts: &ConnectOptions) -> Security {
    Security {
        ca_file: opts.tls_ca_file.clone(),
        cert_file: opts.tls_cert_file.clone(),
        key_file: opts.tls_key_file.clone(),
        insecure: opts.tls_insecure,
        username: opts.username().map(str::to_string),
        password: opts.password().map(str::to_string),
        mechanism: opts.kafka_sasl_mechanism,
    }
}

/// The librdkafka configuration of a client: ours (`defaults`), then `KAFKA_CONFIG`.
pub(super) fn config(
    url: &BrokerUrl,
    opts: &ConnectOptions,
    client_id: &str,
    defaults: &[(&str, &str)],
) -> Result<ClientConfig, String> {
    let k = url
        .kafka()
        .ok_or_else(|| format!("'{url}' is not a Kafka URL"))?;
    let extra = client::parse_properties(&opts.kafka_config)?;
    let mut c = client::client_config(&k, &security(opts), client_id, &[]);
    for (key, v) in defaults {
        c.set(*key, *v);
    }
    for (key, v) in &extra {
        c.set(key, v);
    }
    Ok(c)
}

/// Latency first: a request waits at most 1 ms to join a batch.
const PRODUCER: &[(&str, &str)] = &[("linger.ms", "1")];

/// Checks `KAFKA_CONFIG` at start-up (exit 2 when librdkafka refuses it): a client is made
/// from it, no connection is opened.
pub fn check_config(opts: &ConnectOptions) -> Result<(), String> {
    let c = config(&opts.broker, opts, "check", PRODUCER)?;
    client::admin(&c).map(|_| ()).map_err(|e| e.to_string())
}

fn setup_error(e: KafkaSetupError) -> SessionError {
    match e {
        KafkaSetupError::Auth(m) => SessionError::Auth(m),
        KafkaSetupError::GaveUp { budget_ms, last } => SessionError::GaveUp {
            budget_ms,
            last: Box::new(SessionError::Protocol(last)),
        },
        KafkaSetupError::Tls(m) => SessionError::GaveUp {
            budget_ms: 0,
            last: Box::new(SessionError::Refused(format!("TLS failure: {m}"))),
        },
        other => SessionError::Protocol(other.to_string()),
    }
}

/// Topics runs create (MQTT-layout name, partitions), per bootstrap list: made again when a
/// restarted cluster has lost them.
static PREPARED: Mutex<Vec<(String, String, u32)>> = Mutex::new(Vec::new());

/// Waits (up to CONNECT_RETRY_MS) until the cluster answers, then creates the topics a run
/// needs (`(name in the MQTT layout, partitions)`; `/` becomes `.`) that it lacks.
pub async fn prepare(
    url: &BrokerUrl,
    opts: &ConnectOptions,
    needed: &[(String, u32)],
) -> Result<(), SessionError> {
    let c = config(url, opts, "rr-prepare", &[]).map_err(SessionError::Protocol)?;
    let budget = Duration::from_millis(opts.connect_retry_ms);
    let probe = c.clone();
    tokio::task::spawn_blocking(move || client::probe(&probe, budget))
        .await
        .map_err(|e| SessionError::Task(e.to_string()))?
        .map_err(setup_error)?;
    let bootstrap = url.path.clone();
    {
        let mut p = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
        for (name, n) in needed {
            let t = topics::sanitize(name);
            if !p.iter().any(|(b, x, _)| *b == bootstrap && *x == t) {
                p.push((bootstrap.clone(), t, *n));
            }
        }
    }
    ensure(
        &c,
        &bootstrap,
        opts.connect_timeout().max(Duration::from_secs(5)),
    )
    .await
}

/// Creates the prepared topics of `bootstrap` that the cluster lacks.
pub(super) async fn ensure(
    c: &ClientConfig,
    bootstrap: &str,
    within: Duration,
) -> Result<(), SessionError> {
    let wanted: Vec<(String, u32)> = PREPARED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(b, _, _)| b == bootstrap)
        .map(|(_, t, n)| (t.clone(), *n))
        .collect();
    let admin = client::admin(c).map_err(setup_error)?;
    for (t, n) in wanted {
        client::ensure_topics(&admin, std::slice::from_ref(&t), n, within)
            .await
            .map_err(setup_error)?;
    }
    Ok(())
}

/// Opens a session: a producer, and a consumer of `spec.subscriptions` (a group's consumer
/// waits, within CONNECT_TIMEOUT_MS, for its share of the partitions; a reply partition is
/// read from its current end).
pub async fn establish(spec: &SessionSpec) -> Result<Session, SessionError> {
    let opts = spec.opts.clone();
    let timeout = opts.connect_timeout();
    let subs: Vec<Subscription> = spec
        .subscriptions
        .iter()
        .map(|(f, _)| {
            subscription(f).ok_or_else(|| {
                SessionError::SubscribeRejected(format!("{f} (no Kafka topic in it)"))
            })
        })
        .collect::<Result<_, _>>()?;
    let read_only = !subs.is_empty()
        && subs
            .iter()
            .all(|s| matches!(s, Subscription::Consume { .. }));
    let mut session = Session {
        producer: None,
        consumer: None,
        pending: Vec::new(),
    };
    if !read_only {
        let pc =
            config(&spec.url, &opts, &spec.client_id, PRODUCER).map_err(SessionError::Protocol)?;
        let producer: BaseProducer<KafkaContext> = pc
            .create_with_context(KafkaContext::default())
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        let producer = Arc::new(producer);
        let p = producer.clone();
        let md = tokio::task::spawn_blocking(move || {
            let r = p.client().fetch_metadata(None, timeout);
            p.poll(Duration::ZERO);
            match r {
                Ok(_) => Ok(()),
                Err(e) => Err(match p.context().final_error() {
                    Some(f) => setup_error(f),
                    None => SessionError::Refused(e.to_string()),
                }),
            }
        })
        .await
        .map_err(|e| SessionError::Task(e.to_string()))?;
        md?;
        session.producer = Some(producer);
    }
    if subs.is_empty() {
        return Ok(session);
    }
    let group = subs.iter().find_map(|s| match s {
        Subscription::Group { group, .. } => Some(group.clone().unwrap_or(spec.client_id.clone())),
        Subscription::Consume { group, .. } => Some(group.clone()),
        _ => None,
    });
    let defaults: &[(&str, &str)] = if read_only {
        // a fan-out consumer: from the end; a group of its own commits nothing (it is new every
        // run), a shared one (CONSUMER_GROUP) commits so a rebalance hands partitions on where
        // they were; statistics once a second give its lag
        let own = group.as_deref() == Some(spec.client_id.as_str());
        &[
            ("group.id", group.as_deref().unwrap_or(&spec.client_id)),
            ("enable.auto.commit", if own { "false" } else { "true" }),
            ("auto.commit.interval.ms", "200"),
            ("auto.offset.reset", "latest"),
            ("fetch.wait.max.ms", "10"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("statistics.interval.ms", "1000"),
            // prefetch at most 4 MB per consumer (librdkafka's default is 64 MB)
            ("queued.max.messages.kbytes", "4096"),
        ]
    } else {
        &[
            ("group.id", group.as_deref().unwrap_or(&spec.client_id)),
            (
                "enable.auto.commit",
                if group.is_some() { "true" } else { "false" },
            ),
            ("auto.commit.interval.ms", "200"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "10"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
        ]
    };
    let cc = config(&spec.url, &opts, &spec.client_id, defaults).map_err(SessionError::Protocol)?;
    let consumer: Consumer_ = cc
        .create_with_context(KafkaContext::default())
        .map_err(|e| SessionError::Protocol(e.to_string()))?;
    let consumer = Arc::new(consumer);
    if read_only {
        // (no producer asked the cluster yet: the same start-up check, with the consumer)
        let c = consumer.clone();
        tokio::task::spawn_blocking(move || match c.fetch_metadata(None, timeout) {
            Ok(_) => Ok(()),
            Err(e) => Err(SessionError::Refused(e.to_string())),
        })
        .await
        .map_err(|e| SessionError::Task(e.to_string()))??;
    }
    let mut assigned = TopicPartitionList::new();
    let mut grouped = Vec::new();
    for s in &subs {
        match s {
            Subscription::Group { topic, .. } | Subscription::Consume { topic, .. } => {
                grouped.push(topic.as_str())
            }
            Subscription::Partition { topic, partition } => {
                let (c, t, p) = (consumer.clone(), topic.clone(), *partition);
                let high = tokio::task::spawn_blocking(move || {
                    c.fetch_watermarks(&t, p, timeout).map(|(_, h)| h)
                })
                .await
                .map_err(|e| SessionError::Task(e.to_string()))?
                .map_err(|e| {
                    SessionError::SubscribeRejected(format!("{topic}/{partition}: {e}"))
                })?;
                assigned
                    .add_partition_offset(topic, *partition, Offset::Offset(high))
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
            }
        }
    }
    if !grouped.is_empty() {
        consumer
            .subscribe(&grouped)
            .map_err(|e| SessionError::SubscribeRejected(format!("{grouped:?}: {e}")))?;
        // The group's assignment arrives while the consumer is polled.
        let deadline = tokio::time::Instant::now() + timeout;
        while consumer.assignment().map_or(0, |a| a.count()) == 0 {
            tokio::select! {
                m = consumer.recv() => if let Ok(m) = m {
                    session.pending.push(m.detach());
                },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(client = %spec.client_id, "no partitions assigned yet; going on");
                break;
            }
        }
    } else {
        consumer
            .assign(&assigned)
            .map_err(|e| SessionError::SubscribeRejected(e.to_string()))?;
    }
    session.consumer = Some(consumer);
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_map_to_groups_or_partitions() {
        assert_eq!(
            subscription("$share/workers/req/+"),
            Some(Subscription::Group {
                group: Some("workers".into()),
                topic: "req".into()
            })
        );
        assert_eq!(
            subscription("a/b/#"),
            Some(Subscription::Group {
                group: None,
                topic: "a.b".into()
            })
        );
        assert_eq!(
            subscription("resp/lg-1/7"),
            Some(Subscription::Partition {
                topic: "resp.lg-1".into(),
                partition: 7
            })
        );
        assert_eq!(
            subscription(&consume_filter("g-1", "fanout")),
            Some(Subscription::Consume {
                group: "g-1".into(),
                topic: "fanout".into()
            })
        );
        assert_eq!(subscription("$consume/g/a b"), None);
        assert_eq!(subscription("$consume//t"), None);
        assert_eq!(subscription("resp/x"), None);
        assert_eq!(subscription("+"), None);
    }
}
