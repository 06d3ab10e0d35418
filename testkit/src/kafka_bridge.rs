//! [`KafkaBridge`]: a test-only streaming gateway. It consumes Kafka topics (from tansu) in its
//! own consumer group and publishes every record to an MQTT broker over WebSocket (mosquitto's
//! listener): MQTT topic = the record key (the subject name; the Kafka topic when there is no
//! key), payload = the record value, QoS 0. It stands in for the Kafka-to-WebSocket gateway of
//! the gateway shape, built from independent pieces (librdkafka and `rumqttc`), so the loadgen is
//! not tested against its own code.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use tokio::task::JoinHandle;

use crate::wait::POLL_INTERVAL;

/// How long [`KafkaBridge::start`] waits for the MQTT session and the partition assignment.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters of a running bridge.
#[derive(Debug, Default)]
pub struct BridgeCounts {
    /// Records consumed from Kafka.
    pub consumed: AtomicU64,
    /// Records published to MQTT.
    pub forwarded: AtomicU64,
    /// Consumer errors (fetch failures, broker gone).
    pub consume_errors: AtomicU64,
    /// Publishes the MQTT client refused (its session is gone).
    pub publish_errors: AtomicU64,
}

/// A running bridge; stopped on drop.
#[derive(Debug)]
pub struct KafkaBridge {
    counts: Arc<BridgeCounts>,
    consume: JoinHandle<()>,
    mqtt: JoinHandle<()>,
}

impl KafkaBridge {
    /// Connects to the MQTT broker at `ws_url` (`ws://host:port/path`), subscribes in a fresh
    /// consumer group to `topics` at `bootstrap` (`host:port`) reading from the earliest offset,
    /// and returns once the MQTT session is up and the consumer holds its partitions.
    ///
    /// # Errors
    /// The MQTT broker or Kafka does not get ready within 30 s, or a setting is refused.
    pub async fn start(bootstrap: &str, topics: &[&str], ws_url: &str) -> anyhow::Result<Self> {
        let id = format!("kafka-bridge-{:08x}", std::process::id() ^ nanos());
        let port = url_port(ws_url).ok_or_else(|| anyhow!("no port in '{ws_url}'"))?;
        let mut opts = MqttOptions::new(&id, ws_url, port);
        opts.set_transport(Transport::Ws)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 4096);
        let (up_tx, mut up_rx) = tokio::sync::watch::channel(false);
        // The event loop runs in its own task; publishes never wait inside it.
        let mqtt = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = up_tx.send(true);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = up_tx.send(false);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        let mqtt_ready = tokio::time::timeout(READY_TIMEOUT, up_rx.wait_for(|up| *up)).await;
        if !matches!(mqtt_ready, Ok(Ok(_))) {
            mqtt.abort();
            bail!("the bridge's MQTT session to {ws_url} was not up within {READY_TIMEOUT:?}");
        }

        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &id)
            .set("client.id", &id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("fetch.wait.max.ms", "10")
            .set("socket.nagle.disable", "true")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .create()
            .context("creating the bridge's Kafka consumer")?;
        consumer
            .subscribe(topics)
            .context("subscribing the bridge's consumer")?;
        let consumer = Arc::new(consumer);
        let counts = Arc::new(BridgeCounts::default());
        let c = counts.clone();
        let polled = CloseOffThread(Some(consumer.clone()));
        let consume = tokio::spawn(async move {
            let polled = polled;
            if let Some(consumer) = &polled.0 {
                forward(consumer, client, c).await;
            }
        });
        let bridge = KafkaBridge {
            counts,
            consume,
            mqtt,
        };
        // The group join happens while the task polls: wait until partitions are assigned.
        let end = Instant::now() + READY_TIMEOUT;
        while consumer.assignment().map_or(0, |a| a.count()) == 0 {
            if Instant::now() >= end {
                bail!("the bridge's consumer got no partitions of {topics:?} within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(bridge)
    }

    /// The bridge's counters.
    #[must_use]
    pub fn counts(&self) -> &BridgeCounts {
        &self.counts
    }

    /// Records published to MQTT so far.
    #[must_use]
    pub fn forwarded(&self) -> u64 {
        self.counts.forwarded.load(Relaxed)
    }

    /// Waits until `n` records have been forwarded, for at most `deadline`.
    ///
    /// # Errors
    /// Fewer were forwarded by then.
    pub async fn wait_forwarded(&self, n: u64, deadline: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + deadline;
        while self.forwarded() < n {
            if Instant::now() >= end {
                bail!(
                    "the bridge forwarded {} of {n} records within {deadline:?}",
                    self.forwarded()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(())
    }
}

impl Drop for KafkaBridge {
    fn drop(&mut self) {
        self.consume.abort();
        self.mqtt.abort();
    }
}

/// Holds the forwarding task's consumer and drops it on a thread of its own: closing a consumer
/// waits for its group, which never answers once the test has killed the broker, and must not
/// hold up the runtime's shutdown (it hung a test whose tansu was gone before the aborted task
/// was dropped).
struct CloseOffThread(Option<Arc<StreamConsumer>>);

impl Drop for CloseOffThread {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            // If the thread cannot start, the consumer closes here.
            let _ = std::thread::Builder::new()
                .name("bridge-close".into())
                .spawn(move || drop(consumer));
        }
    }
}

async fn forward(consumer: &StreamConsumer, client: AsyncClient, c: Arc<BridgeCounts>) {
    loop {
        let m = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                c.consume_errors.fetch_add(1, Relaxed);
                tracing_free_log(&e.to_string());
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        c.consumed.fetch_add(1, Relaxed);
        let topic = match m.key().map(std::str::from_utf8) {
            Some(Ok(k)) => k.to_string(),
            _ => m.topic().to_string(),
        };
        let payload = m.payload().unwrap_or_default().to_vec();
        // Waits when the MQTT client's queue is full: the gateway slows its consumption.
        if client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
            .is_ok()
        {
            c.forwarded.fetch_add(1, Relaxed);
        } else {
            c.publish_errors.fetch_add(1, Relaxed);
        }
    }
}

/// Consumer errors are expected while a broker restarts; keep them out of the test output
/// unless `TANSU_LOG` asks for detail.
fn tracing_free_log(msg: &str) {
    if std::env::var_os("TANSU_LOG").is_some() {
        eprintln!("kafka bridge: {msg}");
    }
}

fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_of_a_websocket_url() {
        assert_eq!(super::url_port("ws://127.0.0.1:8080/mqtt"), Some(8080));
        assert_eq!(super::url_port("ws://h/mqtt"), None);
    }
}
