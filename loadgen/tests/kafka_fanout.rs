//! The fan-out shapes over Kafka against a real tansu (testkit, free ports):
//! a. scaling-test shape, the issue's: 1 producer, 20 consumers each in a group of its own, 4
//!    partitions, 2,000 msg/s for 20 s (40,000 deliveries/s; about 25 s): every message to every
//!    consumer once, latency percentiles, no loss for the consumers that live; one consumer
//!    stopped mid-run (`KILL_CLIENT_AT`) is counted failing and what it missed lost; lag and
//!    failing consumers in the timeline, /stats and /metrics; tansu's duplicates and gaps are
//!    what the consumers' offsets say they are (docs/kafka.md, "Duplicates and gaps").
//!    CPU over a run (per thread from /proc, debug build, machine shared with a CI build): the
//!    test process 0.8-0.9 of a core, of which librdkafka's threads ~0.5 (mostly the publisher's
//!    two producers' broker threads, ~0.27 each: wake-ups, `linger.ms=1`; 5 ms only brought them
//!    to ~0.2) and the debug-built Rust (loadgen, publisher and 20 consumer tasks) ~0.25; tansu
//!    0.5-0.6, bound by fetch requests more than records (0.85 at 250 msg/s with 10 ms fetch
//!    waits). So an opt-level override of the workspace crates would save at most ~0.25 of a
//!    core: none is set;
//! c. consumers sharing CONSUMER_GROUP: each message expected, and received, once per group,
//!    also when a member stops mid-run (the group rebalances, the rebalances are counted and the
//!    others read on from the committed offsets; at most 1% lost, 1 of 2,400 in one CI run);
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

/// Test a's rate and measured window (the shape).
const RATE: u64 = 2000;
const SECS: u64 = 20;

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
            ("publish-rate", RATE.to_string()),
            ("warmup-sec", "2".into()),
            ("duration-sec", SECS.to_string()),
            ("failing-after-sec", "2".into()),
            // half-way through the window
            ("kill-client-at", format!("7@{}", 2 + SECS / 2)),
            // fewer, larger fetches: 20 consumers polling every 10 ms (the default) keep tansu
            // busy even when there is nothing to fetch; latency grows by up to 50 ms
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
    let stats: serde_json::Value =
        serde_json::from_str(&get(port, "/stats").await.expect("/stats")).expect("JSON");
    for key in ["rebalances", "redelivered", "skipped", "clients_skipped"] {
        assert!(stats["kafka_consumers"][key].is_u64(), "{key}: {stats}");
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
    assert!(r.sent as f64 >= (RATE * SECS) as f64 * 0.98, "{r:#?}");
    // every consumer expects every message: 20 per message published in the window
    assert_eq!(d.expected, r.sent * 20, "{d:#?}");
    assert_eq!(d.received + d.lost, d.expected, "books close: {d:#?}");
    assert_eq!(r.invalid + r.publish_errors, 0, "{r:#?}");
    // tansu 0.6's fetch responses under load sometimes hold a record batch twice, and
    // librdkafka hands both copies on (docs/kafka.md, "Duplicates and gaps"): every duplicate
    // the books count is such a record, handed on again at an offset already handed on
    assert!(r.duplicates <= k.redelivered, "{r:#?}");
    assert!(r.duplicates * 1000 <= d.received, "duplicates: {r:#?}");
    // the killed consumer (half-way through the window) missed about half of the messages, plus
    // those published before it stopped that it had not received yet (its lag: up to seconds on
    // a loaded machine); the 19 others lost nothing but records their client never got
    // (offsets it jumped over)
    assert!(d.clients_with_loss <= 1 + k.clients_skipped, "{d:#?}");
    let missed = r.sent as f64 * 0.5;
    let lost = d.lost.saturating_sub(k.skipped) as f64;
    let slack = r.sent as f64 * 0.1;
    assert!(
        lost >= missed - slack && lost <= missed + slack + k.consumer_lag_max as f64,
        "lost {} ({} skipped) vs about {missed} (lag up to {})",
        d.lost,
        k.skipped,
        k.consumer_lag_max
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
            ("duration-sec", "8".into()),
            ("kill-client-at", "2@5".into()),
        ]),
    )
    .await;
    let d = dv(&r);
    let k = d.kafka_consumers.clone().expect("Kafka consumer books");
    eprintln!(
        "Kafka CONSUMER_GROUP: published {} expected {} received {} lost {} dup {}; {k:?}",
        r.sent, d.expected, d.received, d.lost, r.duplicates
    );
    assert_eq!(r.config["CONSUMER_GROUP"], "shared");
    assert!(r.sent >= 1700, "{r:#?}");
    // once per group, not once per consumer
    assert_eq!(d.expected, r.sent, "{d:#?}");
    assert_eq!(d.received + d.lost, d.expected, "the books close: {d:#?}");
    // the member stopped mid-run left the group: the two others were revoked and assigned its
    // partitions too (counted as rebalances), from the group's committed offsets, and at most
    // what the last 200 ms of auto commit left uncommitted is read again. Nothing should be
    // lost, but one CI run lost 1 of 2,400 with no skip counted (docs/kafka.md, "Duplicates
    // and gaps": a gap at a partition's first record after a reassignment has no baseline to be
    // seen against); a hand-over from the wrong offset (the end, say) would lose hundreds
    assert!(d.lost * 100 <= d.expected, "{d:#?}");
    assert!(k.clients_rebalanced >= 2, "{k:?}");
    assert!(k.rebalances >= k.clients_rebalanced, "{k:?}");
    assert!(r.duplicates <= 60, "{r:#?}");
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
