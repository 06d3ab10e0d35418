//! Worker loss: two worker processes share the subscription; one is SIGKILLed mid-run. The
//! run completes, the requests the dead worker held become timeouts (and only those), and the
//! survivor's books stay conserved.

mod support;

use rr_testkit::{Mosquitto, MosquittoOptions};
use std::time::{Duration, Instant};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_sigkill_of_one_worker_costs_only_what_it_held() {
    let broker = Mosquitto::start(MosquittoOptions::new()).expect("mosquitto starts");
    let url = broker.url();
    // each request takes 100 ms, so each worker holds about rate/2 x 0.1 s requests at any time
    let env = [
        ("MODE", "sleep"),
        ("SLEEP_MS", "100"),
        ("MIN_WORKERS", "400"),
        ("MAX_WORKERS", "1000"),
    ];
    let (mut a, addr_a) = spawn_worker(&url, &env);
    let (b, addr_b) = spawn_worker(&url, &env);
    wait_ready(&addr_a).await;
    wait_ready(&addr_b).await;

    let rate = 2000.0;
    let cfg = loadgen_config(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "2000"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "2000"),
            ("CONNECTIONS", "8"),
            ("SHARDS", "32"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "12"),
        ],
    );
    let run = loadgen::start(cfg, CancellationToken::new())
        .await
        .expect("loadgen starts");
    tokio::time::sleep(Duration::from_secs(5)).await;

    // what A holds right before it dies: queued and in progress
    let sa = stats(&addr_a).await;
    a.signal("KILL").unwrap();
    let killed = Instant::now();
    let held = sa["queue_depth"].as_u64().unwrap() + sa["in_progress"].as_u64().unwrap();
    let received_a = sa["received"].as_u64().unwrap();
    a.wait_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("worker A is dead");

    let r = tokio::time::timeout(Duration::from_secs(60), run.report())
        .await
        .expect("run completes")
        .expect("run succeeds");
    let sb = stats(&addr_b).await;
    // B goes idle: its books close exactly
    let mut sb_idle = sb.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(conserved(&sb_idle) && sb_idle["queue_depth"] == 0 && sb_idle["in_progress"] == 0) {
        assert!(
            Instant::now() < deadline,
            "survivor never settles: {sb_idle:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        sb_idle = stats(&addr_b).await;
    }
    eprintln!(
        "worker A held {held} (received {received_a}) when killed; run: sent {} matched {} timeouts {} late {} match rate {:.5}; \
         survivor received {} responded {} dropped {} errors {} reconnects {}; run ended {:.1} s after the kill",
        r.sent, r.rq().matched, r.rq().timeouts, r.rq().late, r.rq().match_rate,
        sb_idle["received"], sb_idle["responded"], sb_idle["dropped"], sb_idle["errors"], sb_idle["reconnects"],
        killed.elapsed().as_secs_f64()
    );
    assert_books_close(&r);
    assert!(r.sent as f64 >= 0.98 * rate * 12.0, "{r:#?}");
    // Timeouts are what A held, within the in-flight window: the requests on their way to A
    // when it died (at most ~50 ms of its half of the traffic) and the few answers it had
    // finished but not yet written.
    let window = (rate / 2.0 * 0.05) as u64;
    assert!(held >= 50, "A held too little to tell: {sa:#}");
    assert!(
        r.rq().timeouts + window >= held && r.rq().timeouts <= held + window,
        "timeouts {} vs held {held} (+-{window}): {r:#?}",
        r.rq().timeouts
    );
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.invalid, 0);
    // the survivor took over the whole share and lost nothing
    assert!(conserved(&sb_idle), "{sb_idle:#}");
    assert_eq!(sb_idle["dropped"], 0);
    assert_eq!(sb_idle["errors"], 0);
    assert_eq!(sb_idle["reconnects"], 0);
    assert!(b.pid() > 0);
}
