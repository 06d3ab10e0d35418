//! The Kafka test bed against a real tansu: what the Kafka transport relies on works there
//! (topic creation with partitions, produce to chosen partitions with keys and headers, consumer
//! groups sharing partitions, separate groups each seeing everything), a restart comes back
//! empty, refused SASL credentials end start-up at once, and the test gateway forwards records to
//! WebSocket subscribers of mosquitto.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use rr_common::kafka::client::{self, KafkaSetupError, Security};
use rr_common::kafka::{headers, KafkaUrl, SaslMechanism};
use rr_testkit::{KafkaBridge, Mosquitto, MosquittoOptions, Tansu, TansuOptions};

const WAIT: Duration = Duration::from_secs(20);

fn tansu(opts: TansuOptions) -> Tansu {
    Tansu::start(opts).expect("tansu must be installed (scripts/install-deps.sh)")
}

fn config(url: &str, sec: &Security) -> ClientConfig {
    client::client_config(&url.parse::<KafkaUrl>().unwrap(), sec, "testkit", &[])
}

fn consumer(url: &str, group: &str, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = config(url, &Security::default())
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

/// Reads until `n` records were seen by the consumers together or `WAIT` passed:
/// (consumer index, partition, offset, key, value, headers) per record.
type Seen = (usize, i32, i64, String, Vec<u8>, Vec<(String, Vec<u8>)>);

async fn read(consumers: &[StreamConsumer], n: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + WAIT;
    while seen.len() < n && tokio::time::Instant::now() < end {
        for (i, c) in consumers.iter().enumerate() {
            let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(20), c.recv()).await else {
                continue;
            };
            let hs = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            seen.push((
                i,
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
                hs,
            ));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_serves_partitions_keys_headers_and_groups() {
    let broker = tansu(TansuOptions::new());
    let url = broker.url();
    assert_eq!(
        client::probe(&config(&url, &Security::default()), Duration::from_secs(10)).unwrap(),
        1
    );
    let admin = client::admin(&config(&url, &Security::default())).unwrap();
    let topics = vec!["bed".to_string()];
    let counts = client::ensure_topics(&admin, &topics, 4, WAIT)
        .await
        .unwrap();
    assert_eq!(counts, vec![4]);
    // Ensuring again finds it and changes nothing.
    assert_eq!(
        client::ensure_topics(&admin, &topics, 8, WAIT)
            .await
            .unwrap(),
        vec![4]
    );

    // Two consumers in one group share the partitions; a third in its own group sees all.
    let shared = [consumer(&url, "g1", "bed"), consumer(&url, "g1", "bed")];
    let alone = [consumer(&url, "g2", "bed")];
    let producer: FutureProducer = config(&url, &Security::default()).create().unwrap();
    const N: usize = 200;
    for i in 0..N {
        let key = format!("u/s{}", i % 10);
        let body = format!("m{i}");
        let corr = (i as u32).to_be_bytes();
        let h = OwnedHeaders::new()
            .insert(Header {
                key: headers::REPLY_TOPIC,
                value: Some("resp.lg"),
            })
            .insert(Header {
                key: headers::CORRELATION_ID,
                value: Some(&corr[..]),
            });
        producer
            .send(
                FutureRecord::to("bed")
                    .partition(rr_common::kafka::topics::partition_of((i % 10) as u32, 4))
                    .key(&key)
                    .payload(&body)
                    .headers(h),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }

    let all = read(&alone, N).await;
    assert_eq!(all.len(), N, "the lone group sees every record");
    let split = read(&shared, N).await;
    assert_eq!(split.len(), N, "the shared group sees every record once");
    let per_consumer: BTreeMap<usize, usize> = split.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.0).or_default() += 1;
        m
    });
    assert!(
        per_consumer.len() == 2 || per_consumer.values().all(|n| *n == N),
        "both members of g1 get partitions once the group has settled: {per_consumer:?}"
    );
    for (_, part, _, key, body, hs) in &all {
        let subject: u32 = key.trim_start_matches("u/s").parse().unwrap();
        assert_eq!(*part, (subject % 4) as i32, "explicit partition kept");
        let i: usize = String::from_utf8_lossy(body)[1..].parse().unwrap();
        let r = headers::reply_to(hs.iter().map(|(k, v)| (k.as_str(), Some(&v[..])))).unwrap();
        assert_eq!(r.topic, "resp.lg");
        assert_eq!(r.correlation, (i as u32).to_be_bytes());
    }
    // Order within each partition is the produce order.
    let mut last: HashMap<i32, (i64, usize)> = HashMap::new();
    for (_, part, off, _, body, _) in &all {
        let i: usize = String::from_utf8_lossy(body)[1..].parse().unwrap();
        if let Some((o, j)) = last.get(part) {
            assert!(
                off > o && i > *j,
                "partition {part}: {o}/{j} then {off}/{i}"
            );
        }
        last.insert(*part, (*off, i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_memory_broker_is_empty_and_topics_can_be_made_again() {
    let mut broker = tansu(TansuOptions::new());
    let url = broker.url();
    let admin = client::admin(&config(&url, &Security::default())).unwrap();
    let topics = vec!["gone".to_string()];
    client::ensure_topics(&admin, &topics, 2, WAIT)
        .await
        .unwrap();
    let port = broker.port();
    broker.restart().unwrap();
    assert_eq!(broker.port(), port, "same port after a restart");
    let counts = client::partition_counts(admin.inner(), &topics, Duration::from_secs(5));
    assert_eq!(counts.unwrap(), vec![None], "memory storage forgets topics");
    assert_eq!(
        client::ensure_topics(&admin, &topics, 2, WAIT)
            .await
            .unwrap(),
        vec![2]
    );
}

/// tansu 0.6 with `--authentication` offers SCRAM only, and a fresh memory broker has no users:
/// every login is refused, and start-up must say so at once instead of retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sasl_logins_end_start_up_at_once() {
    let broker = tansu(TansuOptions::new().authentication());
    let url = broker.url();
    for mechanism in [SaslMechanism::ScramSha512, SaslMechanism::Plain] {
        let sec = Security {
            username: Some("alice".into()),
            password: Some("s3cret-pw".into()),
            mechanism,
            ..Security::default()
        };
        let started = std::time::Instant::now();
        match client::probe(&config(&url, &sec), Duration::from_secs(30)) {
            Err(e @ KafkaSetupError::Auth(_)) => {
                let line = e.to_string();
                assert!(!line.contains("s3cret-pw"), "{line}");
                assert!(line.contains("BROKER_USERNAME"), "{line}");
            }
            other => panic!("{mechanism:?}: expected an authentication error, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{mechanism:?}: refused credentials are final, not retried for the whole budget: {:?}",
            started.elapsed()
        );
    }
    // Without credentials the broker answers nothing but the handshake: start-up gives up.
    assert!(matches!(
        client::probe(&config(&url, &Security::default()), Duration::from_secs(2)),
        Err(KafkaSetupError::GaveUp { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_forwards_records_to_websocket_subscribers() {
    let kafka = tansu(TansuOptions::new());
    let mqtt = Mosquitto::start(MosquittoOptions::new().ws_listeners(1)).unwrap();
    let admin = client::admin(&config(&kafka.url(), &Security::default())).unwrap();
    client::ensure_topics(&admin, &["fanout".to_string()], 4, WAIT)
        .await
        .unwrap();
    let ws = mqtt.ws_urls()[0].clone();
    let bridge = KafkaBridge::start(&kafka.bootstrap(), &["fanout"], &ws)
        .await
        .unwrap();

    // A subscriber on mosquitto's plain listener sees what the bridge publishes over WebSocket.
    let mut opts = rumqttc::MqttOptions::new("sub", "127.0.0.1", mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (sub, mut events) = rumqttc::AsyncClient::new(opts, 100);
    sub.subscribe("u/#", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let poller = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = tx.send(Some((p.topic, p.payload.to_vec())));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    assert_eq!(rx.recv().await, Some(None), "subscribed");

    let producer: FutureProducer = config(&kafka.url(), &Security::default()).create().unwrap();
    for i in 0..20u32 {
        let key = format!("u/s{}", i % 3);
        producer
            .send(
                FutureRecord::to("fanout")
                    .partition((i % 3) as i32)
                    .key(&key)
                    .payload(&i.to_be_bytes()[..]),
                Duration::from_secs(5),
            )
            .await
            .expect("delivered");
    }
    bridge.wait_forwarded(20, WAIT).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 20 {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(Some(m))) => got.push(m),
            other => panic!("after {} messages: {other:?}", got.len()),
        }
    }
    poller.abort();
    for (topic, payload) in &got {
        let i = u32::from_be_bytes(payload[..4].try_into().unwrap());
        assert_eq!(
            topic,
            &format!("u/s{}", i % 3),
            "key becomes the MQTT topic"
        );
    }
    assert_eq!(
        bridge
            .counts()
            .publish_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}
