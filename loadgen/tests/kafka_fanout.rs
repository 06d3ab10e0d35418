//! The fan-out shapes over Kafka against a real tansu (testkit, free ports):
//! a. scaling-test shape: 1 producer, 20 consumers each in a group of its own, 4 partitions,
//!    250 msg/s for 12 s (issue 16 asks 2,000 msg/s for 20 s: 40,000 deliveries/s is more than a
//!    debug build beside tansu keeps up with on a loaded 2-core machine; `make benchmark` runs the
//!    shape at 2,000 msg/s): every message to every consumer once, latency percentiles, zero loss
//!    for the consumers that live; one consumer stopped mid-run (`KILL_CLIENT_AT`) is counted
//!    failing and what it missed lost; lag and failing consumers in the timeline, /stats and
//!    /metrics;
//! c. consumers sharing CONSUMER_GROUP: each message expected, and received, once per group;
//! b. gateway shape: the publisher produces to tansu, testkit's Kafka-to-MQTT bridge forwards to
//!    mosquitto's WebSocket listener, 500 WebSocket clients over 100 subjects lose nothing;
//! plus start-up: an unreachable Kafka publish broker exits 3, a bad SUBJECT_TOPIC exits 2.

#[path = "support/fanout.rs"]
mod fanout_support;

use fanout_support::*;
use rr_common::CancellationToken;
use rr_testkit::{KafkaBridge, Mosquitto, MosquittoOptions, Tansu, TansuOptions};
use std::time::{Duration, Instant};

fn tansu() -> Tansu {
    Tansu::start(TansuOptions::new()).expect("tansu must be installed (scripts/install-deps.sh)")
}

/// A fan-out configuration for these tests (a longer CONNECT_RETRY_MS: a group join takes a
/// while on a loaded machine).
fn kafka_config(args: &[(&str, String)]) -> loadgen::config::Valid<loadgen::config::Config> {
    let mut all = vec![
        ("connect-retry-ms", "10000".to_string()),
        ("instance-id", "kafka-fanout-test".to_string()),
    ];
    all.extend(args.iter().cloned());
    fanout_config(&all)
}

fn threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaling_shape_20_consumers_every_message_once_and_a_killed_one_fails() {
    let kafka = tansu();
    let threads_before = threads();
    let rss_before = rr_testkit::rss_bytes(std::process::id());
    let run = loadgen::start(
        kafka_config(&[
            ("gateway-urls", kafka.url()),
            ("kafka-partitions", "4".into()),
            ("clients", "20".into()),
            ("connect-rate", "100".into()),
            ("subjects", "100".into()),
            ("publish-rate", "250".into()),
            ("warmup-sec", "2".into()),
            ("duration-sec", "12".into()),
            ("failing-after-sec", "2".into()),
            ("kill-client-at", "7@8".into()),
            // fewer, larger fetches: 20 consumers polling every 10 ms (the default) keep tansu
            // busier than a loaded 2-core machine allows; latency grows by up to 50 ms
            (
                "kafka-config",
                "fetch.min.bytes=65536,fetch.wait.max.ms=50".into(),
            ),
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("fan-out run starts");
    let port = run.http_addr;
    // the consumers' cost, once all are up (librdkafka's threads and buffers)
    rr_testkit::wait_until_async(Duration::from_secs(60), "fanout /ready", || async {
        get(port, "/ready").await.is_some()
    })
    .await
    .expect("ready");
    let (threads_up, rss_up) = (threads(), rr_testkit::rss_bytes(std::process::id()));
    eprintln!(
        "20 Kafka consumers (+1 producer): {} threads, {:.1} MiB RSS more than before",
        threads_up.saturating_sub(threads_before),
        rss_up.saturating_sub(rss_before) as f64 / (1 << 20) as f64
    );
    // past the kill and FAILING_AFTER_SEC: the killed consumer is failing, live
    let failing =
        rr_testkit::wait_until_async(Duration::from_secs(30), "a failing consumer", || async {
            get(port, "/stats").await.is_some_and(|s| {
                serde_json::from_str::<serde_json::Value>(&s)
                    .is_ok_and(|v| v["kafka_consumers"]["failing_clients"] == 1)
            })
        })
        .await;
    if let Err(e) = failing {
        panic!("{e}: /stats: {:?}", get(port, "/stats").await);
    }
    let metrics = get(port, "/metrics").await.expect("/metrics");
    for name in [
        "fanout_failing_clients 1",
        "fanout_consumer_lag ",
        "fanout_consumer_lag_max ",
        "fanout_connections 19",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let r = tokio::time::timeout(Duration::from_secs(90), run.report())
        .await
        .expect("run ends in time")
        .expect("run succeeds");
    let d = dv(&r);
    let k = d.kafka_consumers.clone().expect("Kafka consumer books");
    eprintln!(
        "Kafka scaling shape: published {} expected {} received {} lost {} (clients with loss {}) dup {} invalid {} reconnects {} disconnects {} p50 {} us p90 {} us p99 {} us; {k:?}",
        r.sent,
        d.expected,
        d.received,
        d.lost,
        d.clients_with_loss,
        r.duplicates,
        r.invalid,
        r.reconnects,
        d.disconnects,
        r.latency_us.p50,
        r.latency_us.p90,
        r.latency_us.p99
    );
    assert_eq!(r.config["GATEWAY_URLS"], kafka.url().as_str());
    assert_eq!(
        r.config["PUBLISH_BROKER"],
        kafka.url().as_str(),
        "defaults to the cluster"
    );
    assert!(r.sent as f64 >= 250.0 * 12.0 * 0.98, "{r:#?}");
    // every consumer expects every message: 20 per message published in the window
    assert_eq!(d.expected, r.sent * 20, "{d:#?}");
    assert_eq!(d.received + d.lost, d.expected, "books close: {d:#?}");
    assert_eq!(r.invalid + r.publish_errors, 0, "{r:#?}");
    // Under heavy load (seconds of latency) consumers have counted a few duplicates (1-16 per
    // 100,000 deliveries, also with the idempotent producer; source not found yet): counted,
    // and bounded here.
    assert!(r.duplicates * 10_000 <= d.received, "duplicates: {r:#?}");
    // the killed consumer (at t = 8 s, 6 s into the 12 s window) missed about 6 s of messages;
    // the 19 others lost nothing
    assert_eq!(d.clients_with_loss, 1, "{d:#?}");
    let missed = r.sent as f64 * 6.0 / 12.0;
    assert!(
        (d.lost as f64 - missed).abs() <= r.sent as f64 * 0.1,
        "lost {} vs about {missed}",
        d.lost
    );
    assert_eq!((k.failing_clients, k.failed_clients), (1, 1), "{k:?}");
    assert!(r.latency_us.p50 > 0 && r.latency_us.p99 >= r.latency_us.p90);
    validate_schema(&r);
    assert!(
        serde_json::to_value(&r).expect("JSON")["kafka_consumers"].is_object(),
        "{r:#?}"
    );
    // the timeline: lag and failing consumers per second
    let rows = r
        .sections
        .timeline
        .as_ref()
        .and_then(|t| t.deliveries())
        .expect("timeline");
    assert!(
        rows.iter().any(|x| x.failing_clients == Some(1)),
        "{rows:#?}"
    );
    assert!(rows.iter().all(|x| x.failing_clients.unwrap_or(0) <= 1));
    assert!(
        rows[..5]
            .iter()
            .all(|x| x.failing_clients.unwrap_or(0) == 0),
        "none failing before the kill: {rows:#?}"
    );
    assert!(rows.iter().any(|x| x.consumer_lag_sum.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_consumers_sharing_one_group_get_each_message_once() {
    let kafka = tansu();
    let r = run_within(
        Duration::from_secs(90),
        kafka_config(&[
            ("gateway-urls", kafka.url()),
            ("kafka-partitions", "4".into()),
            ("consumer-group", "shared".into()),
            ("clients", "3".into()),
            ("subjects", "100".into()),
            ("publish-rate", "300".into()),
            ("warmup-sec", "2".into()),
            ("duration-sec", "6".into()),
        ]),
    )
    .await;
    let d = dv(&r);
    eprintln!(
        "Kafka CONSUMER_GROUP: published {} expected {} received {} lost {} dup {}",
        r.sent, d.expected, d.received, d.lost, r.duplicates
    );
    assert_eq!(r.config["CONSUMER_GROUP"], "shared");
    assert!(r.sent >= 1700, "{r:#?}");
    // once per group, not once per consumer
    assert_eq!(d.expected, r.sent, "{d:#?}");
    assert_eq!((d.received, d.lost), (d.expected, 0), "{d:#?}");
    assert!(r.duplicates * 1000 <= d.received, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_gateway_shape_through_the_bridge_500_ws_clients_no_loss() {
    let kafka = tansu();
    let mqtt = Mosquitto::start(MosquittoOptions::new().ws_listeners(1)).expect("mosquitto");
    let ws = mqtt.ws_urls()[0].clone();
    // the bridge needs the topic to hold partitions; the loadgen finds it and uses it as it is
    kafka.create_topic("fanout", 4).expect("topic");
    let bridge = KafkaBridge::start(&kafka.bootstrap(), &["fanout"], &ws)
        .await
        .expect("bridge");
    let started = Instant::now();
    let r = run_within(
        Duration::from_secs(60),
        kafka_config(&[
            ("publish-broker", kafka.url()),
            ("gateway-urls", ws),
            ("clients", "500".into()),
            ("connect-rate", "1000".into()),
            ("subjects", "100".into()),
            ("publish-rate", "500".into()),
            ("warmup-sec", "2".into()),
            ("duration-sec", "6".into()),
        ]),
    )
    .await;
    let d = dv(&r);
    eprintln!(
        "Kafka gateway shape: published {} expected {} received {} lost {} dup {} p50 {} us p99 {} us; bridge forwarded {} ({:.1} s)",
        r.sent,
        d.expected,
        d.received,
        d.lost,
        r.duplicates,
        r.latency_us.p50,
        r.latency_us.p99,
        bridge.forwarded(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(r.config["PUBLISH_BROKER"], kafka.url().as_str());
    assert_eq!(r.config["SUBJECT_TOPIC"], "fanout");
    assert!(r.sent >= 2500, "{r:#?}");
    assert!(
        d.expected >= r.sent * 4,
        "500 clients / 100 subjects: {d:#?}"
    );
    assert_eq!(d.lost, 0, "{d:#?}");
    assert_eq!(d.received, d.expected, "{d:#?}");
    assert_eq!(r.duplicates + r.invalid + r.publish_errors, 0, "{r:#?}");
    assert!(
        bridge.forwarded() >= r.sent,
        "every record went through the bridge"
    );
    assert!(r.latency_us.p50 > 0 && r.latency_us.p99 >= r.latency_us.p50);
}

#[test]
fn kafka_publish_broker_start_up_exits() {
    let bin = env!("CARGO_BIN_EXE_loadgen");
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(bin)
            .env_clear()
            .envs([
                ("SCENARIO", "fanout"),
                ("GATEWAY_URLS", "ws://127.0.0.1:9/mqtt"),
                ("METRICS_PORT", "0"),
                ("CONNECT_RETRY_MS", "1000"),
            ])
            .envs(env.iter().copied())
            .output()
            .expect("loadgen runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // nothing listens on port 9: exit 3, naming the publish broker
    let (code, err) = run(&[("PUBLISH_BROKER", "kafka://127.0.0.1:9")]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("kafka://127.0.0.1:9"), "{err}");
    let (code, err) = run(&[
        ("PUBLISH_BROKER", "kafka://127.0.0.1:9"),
        ("SUBJECT_TOPIC", "a/b"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("SUBJECT_TOPIC") && err.contains("a/b"),
        "{err}"
    );
}
