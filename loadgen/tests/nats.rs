//! NATS end to end against a real nats-server (testkit, free port): (a) 10,000 virtual clients
//! over 20 connections at 10,000 req/s, (c) the server restarted mid-run, (d) garbage on the
//! reply and request subjects, (e) the loadgen measuring a nats-py responder, (f) start-up
//! failures (wrong password, untrusted certificate, ...) exit 3 with one line, and a payload over
//! the server's max_payload exits 2. Tests b, e (nats-py requester) and f for the worker are in
//! worker/tests/nats.rs.

#[path = "support/nats.rs"]
mod nats_support;
mod support;
#[path = "support/tls.rs"]
mod tls;

use bytes::Bytes;
use nats_support::*;
use rr_common::codec::Correlation;
use rr_testkit::{NatsOptions, NatsServer};
use std::path::Path;
use std::time::Duration;
use support::*;

fn check_healthy_run(r: &loadgen::report::Report) {
    assert_books_close(r);
    assert!(
        r.rq().match_rate >= 0.999,
        "match rate {}: {r:#?}",
        r.rq().match_rate
    );
    assert_eq!(r.duplicates, 0, "{r:#?}");
    assert_eq!(r.invalid, 0, "{r:#?}");
    let expected = r.offered_rate * r.duration_s;
    let diff = (r.sent as f64 - expected).abs() / expected;
    assert!(diff <= 0.02, "sent {} vs {expected:.0}: {r:#?}", r.sent);
    assert!(r.latency_us.p50 > 0 && r.latency_us.p99 >= r.latency_us.p50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_clients_over_20_connections() {
    let server = nats();
    let (w, stop) = start_worker(&server.url(), &[]).await;
    let r = run_loadgen(
        &server.url(),
        &[
            ("VIRTUAL_CLIENTS", "10000"),
            ("CONNECTIONS", "20"),
            ("SHARDS", "32"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "2"),
            ("DURATION_SEC", "10"),
        ],
    )
    .await;
    eprintln!(
        "NATS 10k req/s: sent {} matched {} match rate {:.5} p50 {} us p99 {} us",
        r.sent,
        r.rq().matched,
        r.rq().match_rate,
        r.latency_us.p50,
        r.latency_us.p99
    );
    check_healthy_run(&r);
    assert_eq!(r.offered_rate, 10_000.0);
    assert_eq!(r.config["BROKER"], server.url().as_str());
    stop.cancel();
    let s = w.state.snapshot();
    assert!(s.conserved(), "{s:?}");
    assert_eq!(s.invalid, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_server_restart_mid_run_books_close_and_matching_recovers() {
    let server = nats();
    let url = server.url();
    let (w, wstop) = start_worker(&url, &[]).await;
    let (run, _token) = start_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "10"),
            ("SHARDS", "16"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "16"),
        ],
    )
    .await;
    let addr = run.http_addr.to_string();
    wait_ready(&addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (server, _, back_at) = kill_and_restart(
        server,
        &addr,
        Duration::from_secs(3),
        Duration::from_secs(2),
    )
    .await;
    wait_links_back(&addr, 10, &w.state, 4, Duration::from_secs(10))
        .await
        .unwrap();
    let relinked = back_at.elapsed();
    // matching recovers: a later second of the run matches what it sends
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = stats(&addr).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stats(&addr).await;
    let delta = |k: &str| {
        after["totals"][k].as_u64().unwrap() as f64 - before["totals"][k].as_u64().unwrap() as f64
    };
    let recent = delta("matched") / delta("sent");
    let r = tokio::time::timeout(Duration::from_secs(60), run.report())
        .await
        .expect("run ends in time")
        .expect("run succeeds");
    eprintln!(
        "NATS restart: links back {:.2} s after restart; 2 s window {:.1} s later matched/sent {recent:.4}; \
         sent {} matched {} timeouts {} publish_errors {} reconnects {} worker reconnects {}",
        relinked.as_secs_f64(),
        3.0,
        r.sent, r.rq().matched, r.rq().timeouts, r.publish_errors, r.reconnects,
        w.state.snapshot().reconnects
    );
    assert_books_close(&r);
    assert!(
        (0.99..=1.01).contains(&recent),
        "matching did not recover: {recent}"
    );
    assert!(r.reconnects >= 10, "every link reconnected: {r:#?}");
    assert!(w.state.snapshot().reconnects >= 4);
    assert!(r.rq().timeouts > 0 && r.rq().matched > 0);
    assert!(
        r.publish_errors as f64 >= r.offered_rate * 1.5,
        "due sends without a link are publish errors: {r:#?}"
    );
    assert_eq!(r.invalid, 0);
    rr_testkit::wait_until(Duration::from_secs(5), "worker conservation", || {
        w.state.snapshot().conserved()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", w.state.snapshot()));
    wstop.cancel();
    drop(server);
}

/// An `HPUB` with `header` as its header block, whatever it holds.
fn raw_hpub(subject: &str, reply: &str, header: &[u8], body: &[u8]) -> Bytes {
    let total = header.len() + body.len();
    let mut f = format!("HPUB {subject} {reply} {} {total}\r\n", header.len()).into_bytes();
    f.extend_from_slice(header);
    f.extend_from_slice(body);
    f.extend_from_slice(b"\r\n");
    Bytes::from(f)
}

/// Random bytes, for payloads no one can take as a request or an answer.
fn junk(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| (0..next() % 200).map(|_| next() as u8).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_garbage_on_reply_and_request_subjects_is_counted_on_both_sides() {
    let server = nats();
    let url = server.url();
    let (w, wstop) = start_worker(&url, &[]).await;
    let conns = 8;
    let (run, _token) = start_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "8"),
            ("SHARDS", "16"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "2000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "10"),
        ],
    )
    .await;
    let addr = run.http_addr.to_string();
    wait_ready(&addr).await;
    // the loadgen's run id, read from one of its requests
    let mut snoop = raw_nats(&url, "snooper", &["req/+"]).await;
    let (_, _, corr) = next_msg(&mut snoop, Duration::from_secs(5)).await;
    let run_id = Correlation::from_bytes(&corr.expect("requests carry a correlation"))
        .unwrap()
        .run;
    // past the warm-up: the report counts the garbage too
    tokio::time::sleep(Duration::from_secs(2)).await;

    let resp = |n: usize| format!("resp.test.{}", n % conns);
    let req = |n: usize| format!("req.{}", n % 16);
    let mut to_loadgen: Vec<Bytes> = Vec::new();
    let mut to_worker: Vec<Bytes> = Vec::new();
    for (n, body) in junk(1, 200).iter().enumerate() {
        // no correlation header (loadgen), no reply subject (worker)
        to_loadgen.push(nats_pub(&resp(n), None, None, body));
        to_worker.push(nats_pub(&req(n), None, None, body));
    }
    // malformed header blocks and correlations, on both sides; a correlation longer than a
    // header may carry (256 bytes)
    let long = format!("NATS/1.0\r\nRR-Correlation: {}\r\n\r\n", "07".repeat(256));
    let bad_headers: [&[u8]; 5] = [
        b"JUNK\r\n\r\n",
        b"NATS/1.0\r\nRR-Correlation: 0xzz\r\n\r\n",
        b"NATS/1.0\r\nRR-Correlation: abc\r\n\r\n",
        b"NATS/1.0\r\nno colon here\r\n\r\n",
        long.as_bytes(),
    ];
    for (n, h) in bad_headers.iter().enumerate() {
        to_loadgen.push(raw_hpub(&resp(n), "x", h, b"ok"));
        to_worker.push(raw_hpub(&req(n), &resp(n), h, b"ok"));
    }
    // well-formed answers with wrong correlations: another run, a client out of range, a
    // cycle not yet due, bad lengths; and the same as requests, which the worker answers (any
    // requester may ask) and the loadgen then counts
    let wrong = wrong_correlations(run_id);
    for (n, c) in wrong.iter().enumerate() {
        to_loadgen.push(nats_pub(&resp(n), None, Some(c), b"ok"));
        to_worker.push(nats_pub(&req(n), Some(&resp(n)), Some(c), b""));
    }
    let answered_by_worker = wrong.len();
    // subscribed, unexpected: req.* matches a non-numeric shard (no reply subject: invalid)
    to_worker.push(nats_pub("req.not-a-shard", None, None, b"junk"));
    // under nobody's subscription: must reach no one
    let nowhere = [
        nats_pub("resp.test.999", None, None, b"x"),
        nats_pub("resp.other.0", None, None, b"x"),
        nats_pub("req.1.extra", None, None, b"x"),
        nats_pub("resp.test", None, None, b"x"),
    ];

    let mut raw = raw_nats(&url, "garbage", &[]).await;
    for b in to_loadgen.iter().chain(&to_worker).chain(&nowhere) {
        raw.writer.write_all(b.clone()).await.expect("raw publish");
    }
    let expect_lg = (to_loadgen.len() + answered_by_worker) as u64;
    let expect_w = (to_worker.len() - answered_by_worker) as u64;
    let (a, ws) = (addr.clone(), w.state.clone());
    let counted = rr_testkit::wait_until_async(Duration::from_secs(10), "invalid counters", || {
        let (a, ws) = (a.clone(), ws.clone());
        async move {
            stats(&a).await["totals"]["invalid"].as_u64().unwrap() >= expect_lg
                && ws.snapshot().invalid >= expect_w
        }
    })
    .await;
    let lg_invalid = stats(&addr).await["totals"]["invalid"].as_u64().unwrap();
    counted.unwrap_or_else(|e| {
        panic!(
            "{e}: loadgen invalid {lg_invalid}/{expect_lg}, worker invalid {}/{expect_w}",
            w.state.snapshot().invalid
        )
    });
    let r = tokio::time::timeout(Duration::from_secs(60), run.report())
        .await
        .expect("run ends in time")
        .expect("run succeeds");
    eprintln!(
        "NATS garbage: loadgen invalid {} (expected {expect_lg}), worker invalid {} (expected {expect_w}); \
         real traffic sent {} match rate {:.5} reconnects {}",
        r.invalid,
        w.state.snapshot().invalid,
        r.sent,
        r.rq().match_rate,
        r.reconnects
    );
    assert_books_close(&r);
    assert!(r.rq().match_rate >= 0.999, "{r:#?}");
    assert_eq!(r.duplicates, 0);
    assert_eq!(
        r.invalid, expect_lg,
        "exactly the garbage is invalid: {r:#?}"
    );
    assert_eq!(r.reconnects, 0, "garbage never costs a connection: {r:#?}");
    let s = w.state.snapshot();
    assert_eq!(s.invalid, expect_w, "{s:?}");
    assert_eq!(s.reconnects, 0, "{s:?}");
    assert!(s.conserved(), "{s:?}");
    wstop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_loadgen_measures_a_nats_py_responder() {
    let server = nats();
    let url = server.url();
    let mut responder = python("nats_responder.py", &[&url, "req.*", "workers"]);
    rr_testkit::wait_until(Duration::from_secs(15), "nats-py responder ready", || {
        responder.stdout().starts_with("ready")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", responder.stderr()));
    let r = run_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "500"),
            ("CONNECTIONS", "4"),
            ("SHARDS", "8"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "5"),
        ],
    )
    .await;
    eprintln!(
        "loadgen -> nats-py responder: sent {} matched {} match rate {:.5} p50 {} us",
        r.sent,
        r.rq().matched,
        r.rq().match_rate,
        r.latency_us.p50
    );
    check_healthy_run(&r);
    assert!(
        responder.try_status().unwrap().is_none(),
        "{}",
        responder.stderr()
    );
}

#[test]
fn f_loadgen_startup_failures_exit_3_with_one_line() {
    nats_startup_failures(Path::new(env!("CARGO_BIN_EXE_loadgen")));
}

#[test]
fn f_a_payload_over_the_servers_max_payload_exits_2() {
    let server = NatsServer::start(NatsOptions::new().max_payload(4096)).unwrap();
    let url = server.url();
    let bin = Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let mut lg = rr_testkit::Process::spawn(
        bin,
        &[
            ("BROKER", url.as_str()),
            ("PAYLOAD_BYTES", "5000"),
            ("METRICS_PORT", "0"),
            ("METRICS_ADDR", "127.0.0.1"),
            ("CONNECTIONS", "2"),
        ],
    )
    .unwrap();
    let status = lg
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("exits");
    let err = lg.stderr();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("PAYLOAD_BYTES") && err.contains("4096"),
        "{err}"
    );
}

#[test]
fn g_settings_nats_cannot_carry_exit_2_naming_the_variable() {
    settings_exit_2(
        Path::new(env!("CARGO_BIN_EXE_loadgen")),
        &[
            (&[("INSTANCE_ID", "my host")], "INSTANCE_ID", "my host"),
            (&[("INSTANCE_ID", "*")], "INSTANCE_ID", "*"),
            (&[("REQ_TOPIC_PREFIX", "a//b")], "REQ_TOPIC_PREFIX", "a//b"),
            (&[("SCENARIO", "fanout")], "BROKER", "nats://"),
        ],
    );
}
