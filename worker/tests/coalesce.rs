//! Read coalescing (`COALESCE_US`): the worker binary waits the window after its wake-ups only
//! while enough requests are expected within it, and answers every request either way.

mod support;

use rr_testkit::{Mosquitto, MosquittoOptions};
use support::*;
use tokio_util::sync::CancellationToken;

/// One rr run of `rate` req/s for `secs` against `url`; every request must be answered.
async fn run_at(url: &str, rate: u32, secs: u32) -> loadgen::report::Report {
    let clients = rate.to_string();
    let duration = secs.to_string();
    let cfg = loadgen_config(
        url,
        &[
            ("VIRTUAL_CLIENTS", clients.as_str()),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "5000"),
            ("CONNECTIONS", "8"),
            ("SHARDS", "32"),
            ("WARMUP_SEC", "0"),
            ("DURATION_SEC", duration.as_str()),
        ],
    );
    let run = loadgen::start(cfg, CancellationToken::new())
        .await
        .expect("loadgen starts");
    let r = run.report().await.expect("run succeeds");
    assert_books_close(&r);
    assert_eq!(r.sent, r.rq().matched, "every request answered: {r:#?}");
    assert!(r.sent >= u64::from(rate * secs) * 9 / 10, "{r:#?}");
    assert_eq!((r.duplicates, r.invalid), (0, 0), "{r:#?}");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_the_window_is_taken_only_at_rates_that_fill_it() {
    let broker = Mosquitto::start(MosquittoOptions::new()).expect("mosquitto starts");
    let url = broker.url();
    // a 2 ms window pays from 1,000 req/s (two requests expected within it)
    let (_w, addr) = spawn_worker(&url, &[("COALESCE_US", "2000"), ("CONNECTIONS", "2")]);
    wait_ready(&addr).await;
    let s = stats(&addr).await;
    assert_eq!(s["config"]["COALESCE_US"], 2000, "{s:#}");

    // 200 req/s expects 0.4 requests per window: the worker reads as soon as it wakes
    run_at(&url, 200, 3).await;
    let low = stats(&addr).await;
    assert_eq!(low["coalesced_wakeups"], 0, "{low:#}");

    // 3,000 req/s expects 6: the wake-ups wait, and every request is still answered
    let r = run_at(&url, 3000, 4).await;
    let high = stats(&addr).await;
    let waited = high["coalesced_wakeups"].as_u64().unwrap();
    let received = high["received"].as_u64().unwrap() - low["received"].as_u64().unwrap();
    eprintln!(
        "3,000 req/s: {waited} wake-ups waited for {received} requests; p50 {} us",
        r.latency_us.p50
    );
    assert!(waited > 0, "{high:#}");
    // at most one wait per 2 ms window of the run (a wait reads everything that came)
    assert!(waited <= 4 * 500 + 100, "{high:#}");
    assert!(conserved(&high), "{high:#}");
}

#[test]
fn a_window_over_100_ms_is_refused() {
    let out = std::process::Command::new(worker_bin())
        .env("BROKER", "mqtt://127.0.0.1:1")
        .env("COALESCE_US", "100001")
        .output()
        .expect("worker runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("COALESCE_US"), "{err}");
}
