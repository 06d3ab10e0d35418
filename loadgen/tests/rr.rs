//! Request/response end to end against a real mosquitto (started per test on free ports) and
//! the embedded broker: match rates, MQTT 3.1.1, instance isolation, autoscaling, timeouts,
//! duplicates, endpoints and the report schema.

mod support;

use rr_common::http;
use rr_testkit::{Embedded, Mosquitto, MosquittoOptions};
use std::time::{Duration, Instant};
use support::*;

fn mosquitto() -> Mosquitto {
    Mosquitto::start(MosquittoOptions::new()).expect("mosquitto starts (make test installs it)")
}

const TEN_K: &[(&str, &str)] = &[
    ("VIRTUAL_CLIENTS", "10000"),
    ("CONNECTIONS", "20"),
    ("SHARDS", "32"),
    ("INTERVAL_MS", "1000"),
    ("WARMUP_SEC", "2"),
    ("DURATION_SEC", "10"),
];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = base.to_vec();
    v.extend_from_slice(more);
    v
}

fn check_healthy_run(r: &loadgen::report::Report) {
    assert_books_close(r);
    assert!(
        r.rq().match_rate >= 0.999,
        "match rate {} < 0.999: {r:#?}",
        r.rq().match_rate
    );
    assert_eq!(r.duplicates, 0, "{r:#?}");
    assert_eq!(r.invalid, 0, "{r:#?}");
    let expected = r.offered_rate * r.duration_s;
    let diff = (r.sent as f64 - expected).abs() / expected;
    assert!(
        diff <= 0.02,
        "sent {} vs offered x duration {expected:.0}: {r:#?}",
        r.sent
    );
    assert!(r.latency_us.p50 > 0 && r.latency_us.p99 >= r.latency_us.p50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_clients_mqtt5() {
    let broker = mosquitto();
    let (w, stop) = start_worker(&broker.url(), &[]).await;
    let r = run_loadgen(&broker.url(), TEN_K).await;
    check_healthy_run(&r);
    assert_eq!(r.offered_rate, 10_000.0);
    stop.cancel();
    let s = w.state.snapshot();
    assert!(s.conserved(), "{s:?}");
    assert_eq!(s.invalid, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_ten_thousand_clients_mqtt311() {
    let broker = mosquitto();
    let (_w, stop) = start_worker(&broker.url(), &[("MQTT_VERSION", "3")]).await;
    let r = run_loadgen(&broker.url(), &with(TEN_K, &[("MQTT_VERSION", "3")])).await;
    check_healthy_run(&r);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_two_instances_never_see_each_others_replies() {
    let broker = mosquitto();
    // QoS 1 answers (flow control in the worker's outbox), QoS 0 for the instance that asks so
    let (_w, stop) = start_worker(&broker.url(), &[("PUB_QOS", "1")]).await;
    let url = broker.url();
    let half = [
        ("VIRTUAL_CLIENTS", "5000"),
        ("CONNECTIONS", "10"),
        ("SHARDS", "32"),
        ("INTERVAL_MS", "1000"),
        ("WARMUP_SEC", "2"),
        ("DURATION_SEC", "8"),
    ];
    let one = with(&half, &[("INSTANCE_ID", "alpha")]);
    // the second instance also exercises two scheduler lanes and QoS 1 both ways
    let two = with(
        &half,
        &[
            ("INSTANCE_ID", "beta"),
            ("PUBLISH_WORKERS", "2"),
            ("REQ_QOS", "1"),
            ("RESP_QOS", "1"),
        ],
    );
    let (a, b) = tokio::join!(run_loadgen(&url, &one), run_loadgen(&url, &two));
    for r in [&a, &b] {
        check_healthy_run(r);
    }
    assert_eq!(a.instance_id, "alpha");
    assert_eq!(b.instance_id, "beta");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_autoscaler_grows_under_load_and_shrinks_after() {
    let broker = mosquitto();
    let url = broker.url();
    let (w, stop) = start_worker(
        &url,
        &[
            ("MODE", "sleep"),
            ("SLEEP_MS", "20"),
            ("MIN_WORKERS", "2"),
            ("MAX_WORKERS", "200"),
        ],
    )
    .await;
    let state = w.state.clone();
    // sample pool size and conservation while the load runs
    let sampler = tokio::spawn(async move {
        let start = Instant::now();
        let mut passed_40_at = None;
        let mut max_pool = 0;
        let mut violations = Vec::new();
        while start.elapsed() < Duration::from_secs(22) {
            let s = state.snapshot();
            max_pool = max_pool.max(s.pool_size);
            if s.pool_size > 40 && passed_40_at.is_none() {
                passed_40_at = Some(start.elapsed());
            }
            let accounted = s.responded + s.dropped + s.invalid + s.errors;
            let open = s.received.saturating_sub(accounted);
            // snapshot reads are not atomic together: allow requests arriving meanwhile
            if accounted > s.received || open > s.queue_depth + s.in_progress + 200 {
                violations.push(format!("{s:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (passed_40_at, max_pool, violations)
    });
    let r = run_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "10"),
            ("SHARDS", "32"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "3"),
            ("DURATION_SEC", "15"),
        ],
    )
    .await;
    let (passed_40_at, max_pool, violations) = sampler.await.unwrap();
    assert!(
        violations.is_empty(),
        "conservation violated: {violations:?}"
    );
    let t = passed_40_at.unwrap_or_else(|| panic!("pool never passed 40 (max {max_pool})"));
    assert!(
        t <= Duration::from_secs(15),
        "pool passed 40 only after {t:?}"
    );
    assert_books_close(&r);
    assert!(r.rq().match_rate >= 0.99, "{r:#?}");
    let s = w.state.snapshot();
    assert_eq!(s.dropped, 0, "{s:?}");
    assert!(s.scale_up_events > 0);
    // after the load: back to MIN_WORKERS within 60 s, conservation exact when idle
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = w.state.snapshot();
        if s.pool_size == 2 {
            assert!(s.conserved(), "{s:?}");
            assert!(s.scale_down_events > 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pool still {} after 60 s",
            s.pool_size
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_no_worker_means_every_request_times_out() {
    let broker = mosquitto();
    let r = run_loadgen(
        &broker.url(),
        &[
            ("VIRTUAL_CLIENTS", "1000"),
            ("CONNECTIONS", "4"),
            ("INTERVAL_MS", "500"),
            ("TIMEOUT_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "4"),
        ],
    )
    .await;
    assert_books_close(&r);
    // every due send is either sent or (client at its inflight cap) skipped
    let due = r.offered_rate * r.duration_s;
    assert!(
        ((r.sent + r.skipped) as f64 - due).abs() / due < 0.02,
        "{r:#?}"
    );
    assert_eq!(r.rq().matched, 0);
    assert_eq!(r.rq().timeouts, r.sent);
    assert_eq!(r.rq().match_rate, 0.0);
    assert!(
        r.skipped > 0,
        "with TIMEOUT_MS > INTERVAL_MS due sends hit the inflight cap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_a_responder_that_answers_twice_makes_duplicates() {
    let broker = mosquitto();
    let url = broker.url();
    // two share groups: each request is delivered to, and answered by, both workers
    let (_w1, s1) = start_worker(&url, &[("SHARE_GROUP", "g1")]).await;
    let (_w2, s2) = start_worker(&url, &[("SHARE_GROUP", "g2")]).await;
    let r = run_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "1000"),
            ("CONNECTIONS", "4"),
            ("INTERVAL_MS", "500"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "4"),
        ],
    )
    .await;
    assert_books_close(&r);
    assert!(
        r.rq().match_rate >= 0.999 && r.rq().match_rate <= 1.0,
        "{r:#?}"
    );
    assert!(r.rq().matched <= r.sent);
    let diff = r.duplicates.abs_diff(r.rq().matched);
    assert!(
        diff <= r.rq().matched / 100,
        "about one duplicate per match: {r:#?}"
    );
    s1.cancel();
    s2.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_endpoints_and_report_schema() {
    let broker = mosquitto();
    let url = broker.url();
    let (w, stop) = start_worker(&url, &[]).await;
    // run in the background (endpoints on a free port), poll the endpoints while it runs
    let (lg, _token) = start_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "4"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "5"),
        ],
    )
    .await;
    let lg_addr = lg.http_addr.to_string();
    let t = Duration::from_secs(2);
    wait_ready(&lg_addr).await;
    // the measured window has requests, and the worker has received some
    rr_testkit::wait_until_async(Duration::from_secs(10), "measured requests", || {
        let a = lg_addr.clone();
        async move {
            let Ok((200, body)) = http::get(&a, "/stats", t).await else {
                return false;
            };
            serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|v| v["sent"].as_u64() > Some(0) && v["matched"].as_u64() > Some(0))
        }
    })
    .await
    .unwrap();
    let (code, metrics) = http::get(&lg_addr, "/metrics", t).await.unwrap();
    assert_eq!(code, 200);
    let names = parse_prometheus(&metrics);
    for m in [
        "loadgen_requests_sent_total",
        "loadgen_responses_matched_total",
        "loadgen_requests_timeout_total",
        "loadgen_responses_late_total",
        "loadgen_responses_duplicate_total",
        "loadgen_responses_invalid_total",
        "loadgen_requests_skipped_total",
        "loadgen_publish_errors_total",
        "loadgen_requests_inflight",
        "loadgen_virtual_clients",
        "loadgen_connections",
        "loadgen_reconnects_total",
        "loadgen_offered_rate",
        "loadgen_response_latency_seconds_bucket",
        "loadgen_response_latency_seconds_sum",
        "loadgen_response_latency_seconds_count",
    ] {
        assert!(names.iter().any(|n| n == m), "{m} missing from /metrics");
    }
    let (code, stats) = http::get(&lg_addr, "/stats", t).await.unwrap();
    assert_eq!(code, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("/stats is JSON");
    assert!(stats["sent"].as_u64().unwrap() > 0);
    assert!(stats["latency_us"]["p99"].is_u64());
    assert_eq!(http::get(&lg_addr, "/health", t).await.unwrap().0, 200);
    let (code, page) = http::get(&lg_addr, "/", t).await.unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<html") || page.contains("<!doctype") || page.contains("<!DOCTYPE"));

    // worker endpoints
    let waddr = w.http_addr.to_string();
    let (code, wm) = http::get(&waddr, "/metrics", t).await.unwrap();
    assert_eq!(code, 200);
    let wnames = parse_prometheus(&wm);
    for m in [
        "worker_requests_received_total",
        "worker_responses_published_total",
        "worker_requests_dropped_total",
        "worker_requests_invalid_total",
        "worker_errors_total",
        "worker_queue_depth",
        "worker_queue_capacity",
        "worker_pool_size",
        "worker_busy_workers",
        "worker_scale_events_total",
        "worker_connections",
        "worker_reconnects_total",
        "worker_queue_wait_seconds_bucket",
        "worker_processing_seconds_bucket",
    ] {
        assert!(
            wnames.iter().any(|n| n == m),
            "{m} missing from worker /metrics"
        );
    }
    assert!(wm.contains("worker_scale_events_total{direction=\"up\"}"));
    let (code, ws) = http::get(&waddr, "/stats", t).await.unwrap();
    assert_eq!(code, 200);
    let ws: serde_json::Value = serde_json::from_str(&ws).expect("worker /stats is JSON");
    assert!(ws["received"].as_u64().unwrap() > 0);
    assert_eq!(http::get(&waddr, "/ready", t).await.unwrap().0, 200);

    let report = lg.report().await.expect("run succeeds");
    assert_books_close(&report);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    report.write_json(&path).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    validate_report(&v);
    // the report says when, where and with what it ran (a file found later explains itself)
    let run = &v["run"];
    let started = run["started_at"].as_str().expect("run.started_at");
    let ended = run["ended_at"].as_str().expect("run.ended_at");
    assert!(started.ends_with('Z') && started.len() == 20, "{started}");
    assert!(ended >= started, "{started} .. {ended}");
    assert!(!run["git_revision"].as_str().unwrap().is_empty());
    assert_eq!(run["host"], rr_common::cli::hostname());
    assert_eq!(run["broker"], v["config"]["BROKER"]);
    assert!(report
        .text()
        .contains(&format!("run             : {started} .. {ended}")));
    // the schema is not vacuous: a report with a match rate above 1 is rejected
    let mut bad = v.clone();
    bad["match_rate"] = 1.5.into();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/report.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(!jsonschema::is_valid(&schema, &bad));
    // the worker's connections stayed up through the run (a stopped worker closes them)
    assert!(w.state.links.iter().all(|l| l.is_up()));
    stop.cancel();
}

#[test]
fn g_invalid_values_exit_2_naming_the_variable() {
    let bin = env!("CARGO_BIN_EXE_loadgen");
    for (var, value) in [
        ("CONNECTIONS", "0"),
        ("SHARDS", "100000000"),
        ("BROKER", "not a url"),
        ("BROKER", "http://host:1"),
        ("INTERVAL_MS", "-5"),
        ("VIRTUAL_CLIENTS", "many"),
        ("MQTT_VERSION", "4.5"),
        ("REQ_QOS", "2"),
    ] {
        let out = std::process::Command::new(bin)
            .env(var, value)
            .env("METRICS_PORT", "0")
            .output()
            .expect("run loadgen");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(
            err.contains(var),
            "{var}={value}: message does not name it: {err}"
        );
        assert!(
            err.contains(value),
            "{var}={value}: message does not show the value: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn g_help_lists_every_variable_with_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for var in [
        "VIRTUAL_CLIENTS",
        "CONNECTIONS",
        "SHARDS",
        "INTERVAL_MS",
        "MAX_INFLIGHT_PER_CLIENT",
        "TIMEOUT_MS",
        "REQ_QOS",
        "RESP_QOS",
        "PAYLOAD_BYTES",
        "WARMUP_SEC",
        "DURATION_SEC",
        "INSTANCE_ID",
        "METRICS_PORT",
        "REPORT_JSON",
        "BROKER",
        "MQTT_VERSION",
        "MQTT_USERNAME",
        "MQTT_PASSWORD",
        "TLS_CA_FILE",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "TLS_INSECURE",
        "SCENARIO",
    ] {
        assert!(text.contains(&format!("env: {var}")), "--help lacks {var}");
    }
    assert!(text.contains("[default: 100000]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_short_run_against_the_embedded_broker() {
    let broker = Embedded::start().await.expect("embedded broker starts");
    let url = broker.url();
    let (_w, stop) = start_worker(&url, &[]).await;
    let r = run_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "8"),
            ("SHARDS", "16"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "5"),
        ],
    )
    .await;
    assert_books_close(&r);
    assert!(r.rq().match_rate >= 0.999, "{r:#?}");
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.invalid, 0);
    stop.cancel();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_a_stopping_worker_answers_what_it_holds() {
    let broker = mosquitto();
    let url = broker.url();
    // 2 workers × 100 ms: 20 answers/s against 40 req/s, so requests queue up
    let (w, stop) = start_worker(
        &url,
        &[
            ("MODE", "sleep"),
            ("SLEEP_MS", "100"),
            ("MIN_WORKERS", "2"),
            ("MAX_WORKERS", "2"),
        ],
    )
    .await;
    let lg = tokio::spawn({
        let url = url.clone();
        async move {
            run_loadgen(
                &url,
                &[
                    ("VIRTUAL_CLIENTS", "40"),
                    ("CONNECTIONS", "2"),
                    ("INTERVAL_MS", "1000"),
                    ("TIMEOUT_MS", "10000"),
                    ("WARMUP_SEC", "0"),
                    ("DURATION_SEC", "3"),
                ],
            )
            .await
        }
    });
    rr_testkit::wait_until(Duration::from_secs(10), "a queue builds up", || {
        w.state.snapshot().queue_depth >= 10
    })
    .await
    .unwrap();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), w.done.cancelled())
        .await
        .expect("worker stops within its drain limit");
    let s = w.state.snapshot();
    assert_eq!(s.queue_depth + s.in_progress, 0, "queue drained: {s:?}");
    assert!(s.conserved(), "{s:?}");
    assert_eq!(s.dropped + s.errors, 0, "{s:?}");
    let r = lg.await.unwrap();
    assert_books_close(&r);
    assert!(
        r.rq().matched >= s.responded.min(r.sent) * 9 / 10,
        "{r:#?} {s:?}"
    );
}
