//! Faults against a real mosquitto on free ports: the broker restarting mid-run (MQTT 5 and
//! 3.1.1), garbage on the reply and request topics, 60 s of total loss at 20,000 req/s (memory
//! stays flat), a stalled broker (backpressure is counted, not hidden), and SIGTERM / SIGKILL of
//! the loadgen binary. Each test is bounded in time; the books must close in every one.

mod support;

use bytes::{Bytes, BytesMut};
use rr_common::broker::ConnectOptions;
use rr_common::codec::{Correlation, CORRELATION_LEN};
use rr_common::http;
use rr_common::link::{self, SessionSpec};
use rr_common::mqtt::codec::{self, OutPublish, Protocol};
use rr_common::mqtt::{link::Decoder, Mqtt};
use rr_testkit::{rss_bytes, send_signal, Mosquitto, MosquittoOptions, Process};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio_util::sync::CancellationToken;

fn mosquitto() -> Mosquitto {
    Mosquitto::start(MosquittoOptions::new()).expect("mosquitto starts (make test installs it)")
}

const T: Duration = Duration::from_secs(2);

async fn metric(addr: &str, name: &str) -> f64 {
    let (_, text) = http::get(addr, "/metrics", T).await.expect("GET /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Starts an in-process loadgen run; returns the address of its endpoints and the run.
async fn spawn_loadgen(url: &str, extra: &[(&str, &str)]) -> (String, loadgen::Running) {
    let (run, _token) = start_loadgen(url, extra).await;
    (run.http_addr.to_string(), run)
}

async fn finish(run: loadgen::Running) -> loadgen::report::Report {
    tokio::time::timeout(Duration::from_secs(120), run.report())
        .await
        .expect("run ends in time")
        .expect("run succeeds")
}

/// The address the loadgen binary logged for its endpoints (it runs with `METRICS_PORT=0`).
fn addr_of(lg: &mut Process) -> String {
    tokio::task::block_in_place(|| lg.metrics_addr(Duration::from_secs(15)))
        .expect("the loadgen logs its metrics address")
}

/// Due sends are all accounted for: sent, skipped or publish errors; the rate is never lowered
/// silently.
fn assert_due_accounted(r: &loadgen::report::Report) {
    let due = r.offered_rate * r.duration_s;
    let seen = (r.sent + r.skipped + r.publish_errors) as f64;
    assert!(
        (seen - due).abs() / due < 0.02,
        "sent + skipped + publish_errors = {seen} vs {due:.0} due: {r:#?}"
    );
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    sent: u64,
    matched: u64,
    running: bool,
}

/// Polls `/stats` every 200 ms until `stop`.
fn sample_stats(addr: String, stop: CancellationToken) -> tokio::task::JoinHandle<Vec<Sample>> {
    tokio::spawn(async move {
        let mut v = Vec::new();
        while !stop.is_cancelled() {
            if let Ok((200, body)) = http::get(&addr, "/stats", T).await {
                if let Ok(s) = serde_json::from_str::<serde_json::Value>(&body) {
                    v.push(Sample {
                        at: Instant::now(),
                        sent: s["totals"]["sent"].as_u64().unwrap_or(0),
                        matched: s["totals"]["matched"].as_u64().unwrap_or(0),
                        running: s["phase"] == "measure",
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        v
    })
}

/// Match ratio (matched / sent) over the second before each sample taken after `from`.
fn ratios_after(samples: &[Sample], from: Instant) -> Vec<(Duration, f64)> {
    let run: Vec<&Sample> = samples.iter().filter(|s| s.running).collect();
    let mut out = Vec::new();
    for (i, s) in run.iter().enumerate() {
        if s.at < from + Duration::from_secs(1) {
            continue;
        }
        let Some(prev) = run[..i]
            .iter()
            .rev()
            .find(|p| s.at.duration_since(p.at) >= Duration::from_secs(1))
        else {
            continue;
        };
        let sent = s.sent - prev.sent;
        if sent > 0 {
            out.push((
                s.at.duration_since(from),
                (s.matched - prev.matched) as f64 / sent as f64,
            ));
        }
    }
    out
}

async fn broker_restart(version: &'static str) {
    let broker = mosquitto();
    let url = broker.url();
    let (w, wstop) = start_worker(&url, &[("MQTT_VERSION", version)]).await;
    let (addr, run) = spawn_loadgen(
        &url,
        &[
            ("MQTT_VERSION", version),
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "10"),
            ("SHARDS", "16"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "22"),
        ],
    )
    .await;
    wait_ready(&addr).await;
    let started = Instant::now();
    let stop_sampling = CancellationToken::new();
    let sampler = sample_stats(addr.clone(), stop_sampling.clone());
    wait_sending_for(&addr, 3.0).await;

    // every link notices within 3 s and stops taking traffic; the broker stays down 3 s
    let (broker, killed_at, back_at) = kill_and_restart(
        broker,
        &addr,
        Duration::from_secs(3),
        Duration::from_secs(3),
    )
    .await;
    wait_links_back(&addr, 10, &w.state, 4, Duration::from_secs(10))
        .await
        .unwrap();
    let relinked = back_at.elapsed();
    let reconnect_metric = metric(&addr, "loadgen_reconnects_total").await;
    let r = finish(run).await;
    stop_sampling.cancel();
    let samples = sampler.await.unwrap();
    let ratios = ratios_after(&samples, back_at);
    // recovered: the first moment from which matching holds >= 0.99 for 2 s in a row (ten
    // sliding one-second windows) and stays >= 0.99 on average to the end of the run. A single
    // window can dip when answers straddle its edges (its neighbour then reads above 1), so one
    // noisy window does not reset the clock; a relapse would pull the average down.
    let recovered = (0..ratios.len())
        .find(|&i| {
            let next = &ratios[i..(i + 10).min(ratios.len())];
            let rest = &ratios[i..];
            let mean = rest.iter().map(|r| r.1).sum::<f64>() / rest.len() as f64;
            next.len() == 10 && next.iter().all(|r| r.1 >= 0.99) && mean >= 0.99
        })
        .map(|i| ratios[i].0);
    eprintln!(
        "MQTT {version}: broker down {:.1} s, all links back {:.2} s after restart, matching >= 0.99 from {:?} after; \
         sent {} matched {} timeouts {} late {} publish_errors {} skipped {} reconnects {} worker reconnects {} (run {:.1} s)",
        back_at.duration_since(killed_at).as_secs_f64(),
        relinked.as_secs_f64(),
        recovered,
        r.sent, r.rq().matched, r.rq().timeouts, r.rq().late, r.publish_errors, r.skipped, r.reconnects,
        w.state.snapshot().reconnects,
        started.elapsed().as_secs_f64(),
    );
    assert_books_close(&r);
    assert_due_accounted(&r);
    let recovered = recovered.unwrap_or_else(|| panic!("never recovered: {ratios:?}"));
    assert!(
        recovered <= Duration::from_secs(10),
        "recovery took {recovered:?}: {ratios:?}"
    );
    let after: Vec<_> = ratios.iter().filter(|(t, _)| *t >= recovered).collect();
    assert!(
        after.len() >= 10,
        "too few windows after recovery to tell: {ratios:?}"
    );
    // every link reconnected once, and the count is visible
    assert!(r.reconnects >= 10, "{r:#?}");
    assert!(reconnect_metric >= 10.0);
    let s = w.state.snapshot();
    assert!(s.reconnects >= 4, "{s:?}");
    // due sends with no connection up are publish errors, never silent: the broker was gone 3 s
    assert!(
        r.publish_errors as f64 >= r.offered_rate * 2.5,
        "publish errors {} for a 3 s outage at {} req/s",
        r.publish_errors,
        r.offered_rate
    );
    assert!(r.rq().timeouts > 0 && r.rq().matched > 0);
    assert_eq!(r.invalid, 0);
    // the worker's books hold once idle
    rr_testkit::wait_until(Duration::from_secs(5), "worker conservation", || {
        w.state.snapshot().conserved()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", w.state.snapshot()));
    wstop.cancel();
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mqtt5() {
    broker_restart("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mqtt311() {
    broker_restart("3").await;
}

/// A raw MQTT session for injecting messages (no subscriptions unless asked).
async fn raw_session(url: &str, version: &str, id: &str, subs: &[&str]) -> link::Session<Decoder> {
    let cfg = loadgen_config(url, &[("MQTT_VERSION", version)]);
    let opts: Arc<ConnectOptions> = Arc::new(cfg.connect.clone());
    let spec = SessionSpec {
        url: cfg.connect.broker.clone(),
        opts,
        client_id: id.into(),
        subscriptions: subs.iter().map(|s| (s.to_string(), 0)).collect(),
        bind: None,
        tls: None,
    };
    link::establish::<Mqtt>(&spec).await.expect("raw session")
}

fn publish(
    proto: Protocol,
    topic: &str,
    response_topic: Option<&[u8]>,
    correlation: Option<&[u8]>,
    payload: &[u8],
) -> Bytes {
    let mut buf = BytesMut::new();
    codec::encode_publish(
        &mut buf,
        proto,
        &OutPublish {
            topic: topic.as_bytes(),
            qos: 0,
            pkid: 0,
            response_topic,
            correlation,
            payload: &[payload],
        },
    );
    buf.freeze()
}

fn header(reply: &[u8], corr: &[u8], body: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    codec::encode_header(&mut b, reply, corr);
    b.extend_from_slice(body);
    b.to_vec()
}

/// Payloads no parser can take for a request or a response.
fn random_payloads(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let len = (next() % 200) as usize;
            let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(b) = v.first_mut() {
                if *b == b'R' {
                    *b = b'X'; // never a payload header by chance
                }
            }
            v
        })
        .collect()
}

/// The run id of the loadgen, read from one of its requests.
async fn snoop_run_id(url: &str, version: &str, proto: Protocol) -> u32 {
    let mut s = raw_session(url, version, "snooper", &["req/+"]).await;
    let mut buf = std::mem::take(&mut s.pending);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        while let Ok(Some(f)) = codec::next_frame(&buf, 1 << 20) {
            let frame = buf.split_to(f.total_len);
            if f.packet_type() == 3 {
                let p = codec::decode_publish(&frame, f, proto).unwrap();
                let m = codec::to_message(&p, frame.len()).unwrap();
                return Correlation::from_bytes(m.correlation.unwrap()).unwrap().run;
            }
        }
        assert!(Instant::now() < deadline, "no request seen");
        tokio::time::timeout(Duration::from_secs(5), s.reader.read_into(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
    }
}

async fn garbage(version: &'static str) {
    let proto = if version == "5" {
        Protocol::V5
    } else {
        Protocol::V4
    };
    let broker = mosquitto();
    let url = broker.url();
    let (w, wstop) = start_worker(&url, &[("MQTT_VERSION", version)]).await;
    let conns = 8;
    let (addr, run) = spawn_loadgen(
        &url,
        &[
            ("MQTT_VERSION", version),
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "8"),
            ("SHARDS", "16"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "2000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "12"),
        ],
    )
    .await;
    wait_ready(&addr).await;
    let run_id = snoop_run_id(&url, version, proto).await;
    wait_sending_for(&addr, 2.0).await;

    let mut to_loadgen: Vec<Bytes> = Vec::new();
    let mut to_worker: Vec<Bytes> = Vec::new();
    let resp = |n: usize| format!("resp/test/{}", n % conns);
    let req = |n: usize| format!("req/{}", n % 16);
    // random bytes
    for (n, p) in random_payloads(1, 300).iter().enumerate() {
        to_loadgen.push(publish(proto, &resp(n), None, None, p));
        to_worker.push(publish(proto, &req(n), None, None, p));
    }
    // truncated 3.1.1 payload headers: every strict prefix of a valid one
    let good = header(b"resp/test/0", &[7u8; CORRELATION_LEN], b"");
    for cut in 0..good.len() {
        to_loadgen.push(publish(proto, &resp(cut), None, None, &good[..cut]));
        to_worker.push(publish(proto, &req(cut), None, None, &good[..cut]));
    }
    // wrong correlations: another run, a client out of range, a cycle not yet due, bad lengths
    let wrong = wrong_correlations(run_id);
    for (n, c) in wrong.iter().enumerate() {
        to_loadgen.push(publish(proto, &resp(n), None, None, &header(b"", c, b"ok")));
        if proto == Protocol::V5 {
            to_loadgen.push(publish(proto, &resp(n), None, Some(c), b"ok"));
        }
        // a well-formed request with a wrong correlation: the worker answers it (any
        // requester may), the loadgen counts the answer as invalid
        to_worker.push(publish(
            proto,
            &req(n),
            None,
            None,
            &header(resp(n).as_bytes(), c, b""),
        ));
    }
    let answered_by_worker = wrong.len();
    // requests the worker must refuse: no reply topic, wildcard or broken reply topics
    for bad in [
        &b""[..],
        b"resp/+/0",
        b"resp/#",
        b"#",
        b"+",
        b"a\0b",
        b"\xff\xfe",
    ] {
        to_worker.push(publish(proto, &req(1), None, None, &header(bad, b"c", b"")));
        // as an MQTT 5 Response Topic the broker passes wildcards on (the worker must refuse
        // them), but disconnects a publisher whose topic is not valid UTF-8 (NUL included)
        if proto == Protocol::V5
            && !bad.is_empty()
            && std::str::from_utf8(bad).is_ok_and(|t| !t.contains('\0'))
        {
            to_worker.push(publish(proto, &req(1), Some(bad), Some(b"c"), b""));
        }
    }
    if proto == Protocol::V5 {
        // a correlation longer than the 3.1.1 header can carry
        to_worker.push(publish(
            proto,
            &req(2),
            Some(b"resp/test/0"),
            Some(&[0u8; 300]),
            b"",
        ));
    }
    // oversized payloads: 2 MiB; with 3.1.1 (no maximum packet size to tell the broker) also
    // 5 MiB, beyond what a connection accepts: skipped and counted, the connection stays up
    let mut sizes = vec![2 << 20];
    if proto == Protocol::V4 {
        sizes.push(5 << 20);
    }
    for (n, size) in sizes.iter().enumerate() {
        let big = vec![b'x'; *size];
        to_loadgen.push(publish(proto, &resp(n), None, None, &big));
        to_worker.push(publish(proto, &req(n), None, None, &big));
    }
    // unexpected topics, under nobody's subscription: must reach no one
    let nowhere = [
        publish(proto, "resp/test/999", None, None, b"x"),
        publish(proto, "resp/other/0", None, None, b"x"),
        publish(proto, "req/1/extra", None, None, b"x"),
        publish(proto, "resp/test", None, None, b"x"),
    ];
    // an unexpected but subscribed topic: req/+ also matches a non-numeric shard
    to_worker.push(publish(proto, "req/not-a-shard", None, None, b"junk"));

    let lg_before = stats(&addr).await["totals"]["invalid"].as_u64().unwrap();
    let w_before = w.state.snapshot().invalid;
    assert_eq!((lg_before, w_before), (0, 0));
    let mut raw = raw_session(&url, version, "garbage", &[]).await;
    let sent_at = Instant::now();
    for p in to_loadgen.iter().chain(&to_worker).chain(&nowhere) {
        raw.writer.write_all(p.clone()).await.expect("raw publish");
    }
    let expect_lg = (to_loadgen.len() + answered_by_worker) as u64;
    let expect_w = (to_worker.len() - answered_by_worker) as u64;
    let a = addr.clone();
    let ws = w.state.clone();
    let counted = rr_testkit::wait_until_async(Duration::from_secs(10), "invalid counters", || {
        let a = a.clone();
        let ws = ws.clone();
        async move {
            stats(&a).await["totals"]["invalid"].as_u64().unwrap() >= expect_lg
                && ws.snapshot().invalid >= expect_w
        }
    })
    .await;
    let lg_invalid = stats(&addr).await["totals"]["invalid"].as_u64().unwrap();
    let w_invalid = w.state.snapshot().invalid;
    counted.unwrap_or_else(|e| {
        panic!(
            "{e}: loadgen invalid {lg_invalid}/{expect_lg}, worker invalid {w_invalid}/{expect_w}"
        )
    });
    eprintln!(
        "MQTT {version}: {} garbage messages counted in {:?}: loadgen invalid {lg_invalid}, worker invalid {w_invalid}",
        to_loadgen.len() + to_worker.len(),
        sent_at.elapsed()
    );
    // both stay up and healthy while real traffic continues
    assert_eq!(http::get(&addr, "/health", T).await.unwrap().0, 200);
    assert_eq!(http::get(&addr, "/ready", T).await.unwrap().0, 200);
    assert_eq!(
        http::get(&w.http_addr.to_string(), "/ready", T)
            .await
            .unwrap()
            .0,
        200
    );
    let r = finish(run).await;
    eprintln!(
        "MQTT {version}: real traffic: sent {} matched {} match rate {:.5} invalid {} duplicates {} reconnects {}",
        r.sent, r.rq().matched, r.rq().match_rate, r.invalid, r.duplicates, r.reconnects
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
    // the worker never published to a wildcard topic: the broker would have disconnected it
    let log = broker.log();
    let dropped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("worker-") || l.contains("lg-test-"))
        .filter(|l| l.contains("protocol error") || l.contains("Bad socket"))
        .collect();
    assert!(
        dropped.is_empty(),
        "broker dropped our clients: {dropped:?}"
    );
    wstop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_garbage_on_both_sides_mqtt5() {
    garbage("5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_garbage_on_both_sides_mqtt311() {
    garbage("3").await;
}

fn loadgen_bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_loadgen"))
}

/// Reads a REPORT_JSON file back (after checking it against the schema).
fn report_of(path: &std::path::Path) -> loadgen::report::Report {
    let text = std::fs::read_to_string(path).expect("REPORT_JSON written");
    let v: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    validate_report(&v);
    serde_json::from_value(v).expect("the report reads back as a Report")
}

/// No worker at all: every request times out. Pending state is preallocated (clients x inflight
/// cap) and the expiry queue holds one timeout's worth of requests, so after warm-up plus one
/// TIMEOUT_MS the process must not grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_memory_stays_flat_through_60_s_of_total_loss_at_20k_per_s() {
    let broker = mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut lg = Process::spawn(
        loadgen_bin(),
        &[
            ("BROKER", &broker.url()),
            ("VIRTUAL_CLIENTS", "100000"),
            ("INTERVAL_MS", "5000"),
            ("TIMEOUT_MS", "5000"),
            ("CONNECTIONS", "50"),
            ("WARMUP_SEC", "2"),
            ("DURATION_SEC", "60"),
            ("METRICS_PORT", "0"),
            ("METRICS_ADDR", "127.0.0.1"),
            ("PROGRESS_SEC", "5"),
            ("INSTANCE_ID", "mem"),
            ("REPORT_JSON", report.to_str().unwrap()),
        ],
    )
    .unwrap();
    let addr = addr_of(&mut lg);
    let start = Instant::now();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut most_inflight = 0;
    while lg.try_status().unwrap().is_none() && start.elapsed() < Duration::from_secs(100) {
        let rss = rss_bytes(lg.pid());
        if rss > 0 {
            samples.push((start.elapsed().as_secs_f64(), rss));
        }
        if let Ok((200, body)) = http::get(&addr, "/stats", T).await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            most_inflight = most_inflight.max(v["inflight"].as_u64().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = lg.wait_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", lg.stderr());
    let r = report_of(&report);
    // warm-up (2 s) plus one timeout (5 s): pending state and the expiry queue are full by then
    let steady: Vec<&(f64, u64)> = samples
        .iter()
        .filter(|(t, _)| (12.0..=62.0).contains(t))
        .collect();
    assert!(steady.len() > 80, "{samples:?}");
    let base = steady[0].1;
    let max = steady.iter().map(|s| s.1).max().unwrap();
    let last = steady.last().unwrap().1;
    let mb = |b: u64| b as f64 / 1048576.0;
    eprintln!(
        "RSS at 12 s {:.1} MiB, max {:.1} MiB, at end {:.1} MiB ({:+.1}%); most in flight {most_inflight}; \
         sent {} timeouts {} skipped {} achieved {:.0}/s",
        mb(base), mb(max), mb(last), (max as f64 / base as f64 - 1.0) * 100.0,
        r.sent, r.rq().timeouts, r.skipped, r.achieved_rate
    );
    // pending state is bounded by clients x inflight cap, and it is full (rate x timeout)
    assert!(
        (90_000..=100_000).contains(&most_inflight),
        "{most_inflight}"
    );
    assert!(
        max as f64 <= base as f64 * 1.10,
        "RSS grew from {base} to {max}: {samples:?}"
    );
    assert_books_close(&r);
    assert_eq!(r.rq().matched, 0);
    assert_eq!(r.rq().timeouts, r.sent);
    assert!(r.achieved_rate >= 0.98 * 20_000.0, "{r:#?}");
    assert_due_accounted(&r);
}

/// The broker stops reading (SIGSTOP) for 5 s while 40 MB/s of requests are due. The kernel's
/// socket buffers fill, then each link's bounded queue; from then on due sends are counted as
/// publish errors instead of piling up in memory, and the report shows the shortfall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_a_stalled_broker_shows_as_publish_errors_not_growth() {
    let broker = mosquitto();
    let url = broker.url();
    let (_w, wstop) = start_worker(&url, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut lg = Process::spawn(
        loadgen_bin(),
        &[
            ("BROKER", &url),
            ("VIRTUAL_CLIENTS", "5000"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "3000"),
            // no client reaches its cap during the stall: what cannot be sent must show
            ("MAX_INFLIGHT_PER_CLIENT", "4"),
            ("CONNECTIONS", "2"),
            ("PAYLOAD_BYTES", "8192"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "15"),
            ("METRICS_PORT", "0"),
            ("METRICS_ADDR", "127.0.0.1"),
            ("INSTANCE_ID", "stall"),
            ("REPORT_JSON", report.to_str().unwrap()),
        ],
    )
    .unwrap();
    let addr = addr_of(&mut lg);
    wait_ready(&addr).await;
    wait_sending_for(&addr, 3.0).await;
    let before = rss_bytes(lg.pid());
    let errors_before = stats(&addr).await["totals"]["publish_errors"]
        .as_u64()
        .unwrap();
    send_signal(broker.pid(), "STOP").unwrap();
    let stopped = Instant::now();
    let mut peak = before;
    let mut first_error = None;
    while stopped.elapsed() < Duration::from_secs(5) {
        peak = peak.max(rss_bytes(lg.pid()));
        if first_error.is_none()
            && stats(&addr).await["totals"]["publish_errors"]
                .as_u64()
                .unwrap()
                > errors_before
        {
            first_error = Some(stopped.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = stats(&addr).await;
    send_signal(broker.pid(), "CONT").unwrap();
    let (status, lg) = tokio::task::spawn_blocking(move || {
        let s = lg.wait_timeout(Duration::from_secs(40)).unwrap();
        (s, lg)
    })
    .await
    .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", lg.stderr());
    let r = report_of(&report);
    let mb = |b: u64| b as f64 / 1048576.0;
    let stalled_errors = during["totals"]["publish_errors"].as_u64().unwrap() - errors_before;
    eprintln!(
        "broker stopped 5 s at {} req/s x 8 KiB: RSS {:.1} -> peak {:.1} MiB; publish errors from {:?} into the stall, {} during it; \
         report: sent {} matched {} timeouts {} late {} skipped {} publish_errors {} lag p99 {} us max {} us, achieved {:.0}/s",
        r.offered_rate, mb(before), mb(peak), first_error, stalled_errors, r.sent, r.rq().matched, r.rq().timeouts, r.rq().late,
        r.skipped, r.publish_errors, r.schedule_lag_us.p99, r.schedule_lag_us.max, r.achieved_rate
    );
    // bounded: the 5 s stall offered 200 MB; nearly all of it was refused, not buffered
    assert!(
        peak.saturating_sub(before) < 32 << 20,
        "RSS grew {before} -> {peak}"
    );
    // the stall is visible, not hidden in a lower rate
    assert!(stalled_errors as f64 >= r.offered_rate * 1.0, "{during:#}");
    assert!(r.achieved_rate < r.offered_rate * 0.95, "{r:#?}");
    assert_due_accounted(&r);
    assert_books_close(&r);
    wstop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_sigterm_stops_drains_reports_and_exits_0() {
    let broker = mosquitto();
    let url = broker.url();
    let (w, wstop) = start_worker(&url, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    for answered in [true, false] {
        let report = dir.path().join(format!("report-{answered}.json"));
        let mut env = vec![
            ("BROKER", url.as_str()),
            ("VIRTUAL_CLIENTS", "2000"),
            ("INTERVAL_MS", "1000"),
            ("TIMEOUT_MS", "3000"),
            ("CONNECTIONS", "4"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "0"),
            ("METRICS_PORT", "0"),
            ("METRICS_ADDR", "127.0.0.1"),
            ("INSTANCE_ID", "term"),
            ("REPORT_JSON", report.to_str().unwrap()),
        ];
        if !answered {
            // requests nobody answers: the drain must still end at TIMEOUT_MS
            env.push(("REQ_TOPIC_PREFIX", "unanswered"));
        }
        let mut lg = Process::spawn(loadgen_bin(), &env).unwrap();
        let addr = addr_of(&mut lg);
        wait_ready(&addr).await;
        wait_sending_for(&addr, 4.0).await;
        lg.signal("TERM").unwrap();
        let signalled = Instant::now();
        let (status, lg) = tokio::task::spawn_blocking(move || {
            (lg.wait_timeout(Duration::from_secs(20)).unwrap(), lg)
        })
        .await
        .unwrap();
        let took = signalled.elapsed();
        eprintln!(
            "SIGTERM ({}answered): exit {status:?} after {took:?}",
            if answered { "" } else { "un" }
        );
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", lg.stderr());
        assert!(took <= Duration::from_secs(3 + 5), "exit took {took:?}");
        let r = report_of(&report);
        assert_books_close(&r);
        assert_due_accounted(&r);
        // it stopped sending at the signal: the window ends there
        let running = r.duration_s;
        assert!(
            (2.5..=4.5).contains(&running),
            "measured {running} s: {r:#?}"
        );
        if answered {
            assert!(r.rq().match_rate >= 0.999, "{r:#?}");
        } else {
            assert_eq!(r.rq().timeouts, r.sent);
        }
        assert!(
            lg.stdout().contains("match"),
            "report text on stdout: {}",
            lg.stdout()
        );
    }
    // SIGKILL leaves the broker and the worker healthy
    let mut lg = Process::spawn(
        loadgen_bin(),
        &[
            ("BROKER", &url),
            ("VIRTUAL_CLIENTS", "2000"),
            ("INTERVAL_MS", "1000"),
            ("CONNECTIONS", "4"),
            ("METRICS_PORT", "0"),
            ("METRICS_ADDR", "127.0.0.1"),
            ("INSTANCE_ID", "killed"),
        ],
    )
    .unwrap();
    let addr = addr_of(&mut lg);
    wait_ready(&addr).await;
    wait_sending_for(&addr, 2.0).await;
    lg.signal("KILL").unwrap();
    lg.wait_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("killed");
    let r = run_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "2000"),
            ("CONNECTIONS", "4"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "4"),
        ],
    )
    .await;
    assert_books_close(&r);
    assert!(r.rq().match_rate >= 0.999, "{r:#?}");
    let waddr = w.http_addr.to_string();
    assert_eq!(http::get(&waddr, "/health", T).await.unwrap().0, 200);
    assert_eq!(http::get(&waddr, "/ready", T).await.unwrap().0, 200);
    let s = w.state.snapshot();
    assert_eq!(s.reconnects, 0, "{s:?}");
    rr_testkit::wait_until(Duration::from_secs(5), "worker conservation", || {
        w.state.snapshot().conserved()
    })
    .await
    .unwrap();
    wstop.cancel();
}
