//! Worker loss: two worker processes share the subscription (an MQTT shared subscription, a
//! NATS queue group), each taking a fair share; one is SIGKILLed mid-run. The run completes, the
//! requests the dead worker held become timeouts (and only those), and the survivor takes the
//! whole load with its books conserved.

mod support;

use rr_testkit::{Mosquitto, MosquittoOptions, NatsOptions, NatsServer};
use std::time::{Duration, Instant};
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_sigkill_of_one_worker_costs_only_what_it_held() {
    let broker = Mosquitto::start(MosquittoOptions::new()).expect("mosquitto starts");
    one_of_two_workers_killed(&broker.url(), "MQTT $share").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_nats_queue_group_shares_and_the_survivor_takes_over() {
    let server = NatsServer::start(NatsOptions::new()).expect("nats-server starts");
    one_of_two_workers_killed(&server.url(), "NATS queue group").await;
}

/// Two worker processes share the requests of `url`; one is SIGKILLed mid-run.
async fn one_of_two_workers_killed(url: &str, transport: &str) {
    let env = [
        ("MODE", "sleep"),
        ("SLEEP_MS", "100"),
        ("MIN_WORKERS", "400"),
        ("MAX_WORKERS", "1000"),
    ];
    let (mut a, addr_a) = spawn_worker(url, &env);
    let (b, addr_b) = spawn_worker(url, &env);
    wait_ready(&addr_a).await;
    wait_ready(&addr_b).await;

    let rate = 2000.0;
    let cfg = loadgen_config(
        url,
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
    // five seconds into the run by its own clock (from t = 0): steady load on both workers
    let lg = run.http_addr.to_string();
    rr_testkit::wait_until_async(Duration::from_secs(40), "5 s of sending", || {
        let lg = lg.clone();
        async move {
            stats(&lg).await["elapsed_s"]
                .as_f64()
                .is_some_and(|t| t >= 5.0)
        }
    })
    .await
    .unwrap();

    // a fair share each (mosquitto's shared subscriptions go round robin, NATS queue groups
    // pick a member at random)
    let sa = stats(&addr_a).await;
    let sb = stats(&addr_b).await;
    let (ra, rb) = (
        sa["received"].as_u64().unwrap() as f64,
        sb["received"].as_u64().unwrap() as f64,
    );
    let share = ra / (ra + rb);
    assert!(
        ra + rb >= 0.9 * rate * 5.0 && (0.4..=0.6).contains(&share),
        "A received {ra}, B {rb}"
    );
    // what A holds right before it dies: queued and in progress
    let held = sa["queue_depth"].as_u64().unwrap() + sa["in_progress"].as_u64().unwrap();
    a.signal("KILL").unwrap();
    let killed = Instant::now();
    a.wait_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("worker A is dead");

    let r = tokio::time::timeout(Duration::from_secs(60), run.report())
        .await
        .expect("run completes")
        .expect("run succeeds");
    let mut sb_idle = stats(&addr_b).await;
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
        "{transport}: share of A {share:.3} before the kill; A held {held}; run: sent {} matched {} \
         timeouts {} match rate {:.5}; survivor received {} responded {}; run ended {:.1} s after the kill",
        r.sent, r.rq().matched, r.rq().timeouts, r.rq().match_rate, sb_idle["received"], sb_idle["responded"],
        killed.elapsed().as_secs_f64()
    );
    assert_books_close(&r);
    assert!(r.sent as f64 >= 0.98 * rate * 12.0, "{r:#?}");
    // timeouts are what A held, within the in-flight window (requests on their way to A when
    // it died: about 50 ms of its half of the traffic)
    let window = (rate / 2.0 * 0.05) as u64;
    assert!(held >= 50, "A held too little to tell: {sa:#}");
    assert!(
        r.rq().timeouts + window >= held && r.rq().timeouts <= held + window,
        "timeouts {} vs held {held} (+-{window}): {r:#?}",
        r.rq().timeouts
    );
    assert_eq!((r.duplicates, r.invalid), (0, 0), "{r:#?}");
    // the survivor took the whole load after the kill and lost nothing
    assert!(conserved(&sb_idle), "{sb_idle:#}");
    assert!(sb_idle["received"].as_u64().unwrap() as f64 >= rb + 0.9 * rate * 6.0);
    assert_eq!(sb_idle["dropped"], 0);
    assert_eq!(sb_idle["errors"], 0);
    assert_eq!(sb_idle["reconnects"], 0);
    assert!(b.pid() > 0);
}
