//! rr over Kafka end to end against a real tansu (testkit, free port): (c) 1,000 req/s with two
//! workers in one consumer group, (d) the broker killed and restarted mid-run (memory storage:
//! it comes back empty, the topics are created again), (f) the pub scenario's messages all reach
//! the request topic, (g) the capacity search finds a worker pool's throughput over Kafka, and
//! start-up checks (exit 3 for an unreachable cluster, exit 2 for a KAFKA_CONFIG librdkafka
//! refuses).

mod support;

use rr_testkit::{Tansu, TansuOptions};
use std::time::{Duration, Instant};
use support::*;

fn tansu() -> Tansu {
    Tansu::start(TansuOptions::new()).expect("tansu must be installed (scripts/install-deps.sh)")
}

/// Two workers of two connections each: four consumers in the workers' group.
const WORKER: &[(&str, &str)] = &[("CONNECTIONS", "2"), ("MIN_WORKERS", "2")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_two_workers_in_one_group_answer_1000_req_s() {
    let broker = tansu();
    let url = broker.url();
    let (w1, stop1) = start_worker(&url, WORKER).await;
    let (w2, stop2) = start_worker(&url, WORKER).await;
    let r = run_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "1000"),
            ("CONNECTIONS", "4"),
            ("SHARDS", "16"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "3000"),
            ("WARMUP_SEC", "2"),
            ("DURATION_SEC", "8"),
        ],
    )
    .await;
    let (s1, s2) = (w1.state.snapshot(), w2.state.snapshot());
    eprintln!(
        "Kafka rr 1000 req/s: sent {} matched {} match rate {:.5} duplicates {} p50 {} us p99 {} us; \
         worker answers {} + {}",
        r.sent,
        r.rq().matched,
        r.rq().match_rate,
        r.duplicates,
        r.latency_us.p50,
        r.latency_us.p99,
        s1.responded,
        s2.responded,
    );
    assert_books_close(&r);
    assert!(r.rq().match_rate >= 0.999, "match rate: {r:#?}");
    assert_eq!(r.invalid, 0, "{r:#?}");
    assert_eq!(r.offered_rate, 1000.0);
    let expected = r.offered_rate * r.duration_s;
    assert!(
        (r.sent as f64 - expected).abs() / expected <= 0.02,
        "sent {} vs {expected}",
        r.sent
    );
    assert!(r.latency_us.p50 > 0 && r.latency_us.p99 >= r.latency_us.p50);
    assert_eq!(r.config["BROKER"], url.as_str());
    // the group shares the work: both workers answered
    assert!(s1.responded > 0 && s2.responded > 0, "{s1:?} {s2:?}");
    stop1.cancel();
    stop2.cancel();
    rr_testkit::wait_until(Duration::from_secs(5), "worker conservation", || {
        w1.state.snapshot().conserved() && w2.state.snapshot().conserved()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}", w1.state.snapshot(), w2.state.snapshot()));
    assert_eq!(w1.state.snapshot().invalid + w2.state.snapshot().invalid, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_broker_restart_mid_run_links_come_back_and_books_close() {
    let broker = tansu();
    let url = broker.url();
    let (w, wstop) = start_worker(&url, WORKER).await;
    let (run, _token) = start_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "500"),
            ("CONNECTIONS", "4"),
            ("SHARDS", "8"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "25"),
        ],
    )
    .await;
    let addr = run.http_addr.to_string();
    wait_sending_for(&addr, 3.0).await;
    // (memory storage: tansu comes back empty, so it is started again at once)
    let (broker, _, back_at) =
        kill_and_restart(broker, &addr, Duration::from_secs(10), Duration::ZERO).await;
    wait_links_back(&addr, 4, &w.state, 2, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}; tansu log: {}", broker.log()));
    let relinked = back_at.elapsed();
    // matching recovers (the workers' group settles after its members rejoin): within 12 s a
    // 2 s window matches what it sends
    let mut recent = 0.0;
    let settle = Instant::now() + Duration::from_secs(12);
    while Instant::now() < settle {
        let before = stats(&addr).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = stats(&addr).await;
        let delta = |k: &str| {
            after["totals"][k].as_u64().unwrap() as f64
                - before["totals"][k].as_u64().unwrap() as f64
        };
        recent = delta("matched") / delta("sent");
        if recent >= 0.99 {
            break;
        }
    }
    let recovered = back_at.elapsed();
    let r = tokio::time::timeout(Duration::from_secs(60), run.report())
        .await
        .expect("run ends in time")
        .expect("run succeeds");
    eprintln!(
        "Kafka restart: links back {:.2} s after restart, matching {:.1} s after ({recent:.4} of a 2 s window); \
         sent {} matched {} timeouts {} late {} publish_errors {} reconnects {} worker reconnects {}",
        relinked.as_secs_f64(),
        recovered.as_secs_f64(),
        r.sent,
        r.rq().matched,
        r.rq().timeouts,
        r.rq().late,
        r.publish_errors,
        r.reconnects,
        w.state.snapshot().reconnects
    );
    assert_books_close(&r);
    assert!(recent >= 0.99, "matching did not recover: {recent}");
    assert!(r.reconnects >= 4, "every link reconnected: {r:#?}");
    assert!(w.state.snapshot().reconnects >= 2);
    assert!(r.rq().timeouts > 0 && r.rq().matched > 0);
    assert_eq!(r.invalid, 0);
    wstop.cancel();
    rr_testkit::wait_until(Duration::from_secs(5), "worker conservation", || {
        w.state.snapshot().conserved()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", w.state.snapshot()));
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_pub_messages_all_reach_the_request_topic() {
    let broker = tansu();
    let url = broker.url();
    // the worker's group reads the request topic; a message without a reply topic is invalid
    let (w, stop) = start_worker(&url, WORKER).await;
    let r = run_loadgen(
        &url,
        &[
            ("SCENARIO", "pub"),
            ("VIRTUAL_CLIENTS", "500"),
            ("CONNECTIONS", "2"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "3"),
            ("PAYLOAD_BYTES", "512"),
        ],
    )
    .await;
    assert_eq!(r.publish_errors, 0, "{r:#?}");
    let sent = r.sent
        + r.sections
            .timeline
            .as_ref()
            .and_then(|t| t.requests())
            .unwrap_or_default()
            .iter()
            .filter(|t| t.warmup)
            .map(|t| t.sent)
            .sum::<u64>();
    assert!(sent >= 1900, "{r:#?}");
    rr_testkit::wait_until(
        Duration::from_secs(15),
        "every message at the worker",
        || w.state.snapshot().received >= sent,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: sent {sent}, worker {:?}", w.state.snapshot()));
    let s = w.state.snapshot();
    assert_eq!(
        (s.received, s.invalid, s.responded),
        (sent, sent, 0),
        "{s:?}"
    );
    stop.cancel();
}

fn loadgen_bin(env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_clear()
        .envs(env.iter().copied())
        .env("METRICS_PORT", "0")
        .output()
        .expect("loadgen runs")
}

#[test]
fn e_unreachable_cluster_exits_3_and_bad_kafka_config_exits_2() {
    let port = rr_testkit::free_port();
    let url = format!("kafka://127.0.0.1:{port}");
    let out = loadgen_bin(&[
        ("BROKER", &url),
        ("CONNECT_RETRY_MS", "1000"),
        ("DURATION_SEC", "1"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("CONNECT_RETRY_MS"), "{err}");
    let out = loadgen_bin(&[("BROKER", &url), ("KAFKA_CONFIG", "no.such.property=1")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("KAFKA_CONFIG") && err.contains("no.such.property"),
        "{err}"
    );
    let out = loadgen_bin(&[("BROKER", &url), ("KAFKA_PARTITIONS", "0")]);
    assert_eq!(out.status.code(), Some(2));
}

/// (g) The capacity search over Kafka: against a pool of 5 workers sleeping 10 ms per request
/// (at most 500 req/s, less when the machine delays their timers) the search finds the pool's
/// throughput, as it does over MQTT (capacity.rs b), with the same steps, verdict and report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_capacity_search_finds_the_pools_throughput() {
    let broker = tansu();
    let url = broker.url();
    let (r, most) = search_against_pool(
        &url,
        5,
        "200",
        &[("CONNECTIONS", "2")],
        &[("VIRTUAL_CLIENTS", "2000"), ("SHARDS", "16")],
    )
    .await;
    assert_pool_found(&r, 5, most, 3);
    assert_eq!(r.config["BROKER"], url.as_str());
}
