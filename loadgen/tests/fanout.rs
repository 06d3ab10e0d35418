//! Fan-out scenario against a real mosquitto with WebSocket listeners on free ports:
//! a. 2,000 clients over two listener ports deliver every message exactly once, and the report
//!    validates against the schema;
//! b. subscribers cut off by a proxy reconnect, and what they missed is counted as lost;
//! c. subscribers over wss:// (TLS, verified against the test CA) get every message once too;
//! d. split roles, as across pods: one publisher and two subscriber instances, no loss.
//! a and b also check the per-second timeline (issue 10 test e for fan-out): the rows of the
//! measured window add up exactly to the report's totals, the gauges follow the connections, the
//! live `/report` carries the rows so far, and the HTML report charts them.

#[path = "support/fanout.rs"]
mod fanout_support;

use fanout_support::*;
use loadgen::report::Report;
use rr_common::CancellationToken;
use rr_testkit::{wait_until_async, Mosquitto, MosquittoOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Lifts this process's soft open-file limit to `n` (at most the hard limit) with `prlimit`,
/// before mosquitto is started, so both the test's clients and the broker (which inherits the
/// limit) have a descriptor per connection even where the default soft limit is 1024.
fn ensure_open_files(n: u64) {
    let soft = rr_common::cli::open_file_limit().unwrap_or(0);
    if soft >= n {
        return;
    }
    let hard = loadgen::fanout::OsLimits::current()
        .open_files
        .map_or(n, |(_, hard)| hard);
    let target = n.min(hard);
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={target}:{hard}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "cannot raise the open-file limit to {target} with prlimit (util-linux)"
    );
}

/// An integer field of the report as JSON (the fan-out books are flattened into it).
fn extra(r: &Report, key: &str) -> u64 {
    let v = serde_json::to_value(r).expect("report serializes");
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no integer '{key}': {v:#}"))
}

/// A fan-out report files nothing under the request/response books: no matched, no timeouts.
fn assert_no_request_books(r: &Report) {
    let v = serde_json::to_value(r).expect("report serializes");
    for k in ["matched", "timeouts", "late", "match_rate"] {
        assert!(v.get(k).is_none(), "fan-out report has '{k}': {v:#}");
    }
}

/// The fan-out report's timeline; its rows of the measured window add up exactly to the totals
/// (published, received, bytes, lost), one row per second, warm-up marked.
fn assert_timeline_sums(r: &Report) -> &[loadgen::fanout::timeline::Row] {
    let rows = r
        .sections
        .timeline
        .as_ref()
        .and_then(|t| t.deliveries())
        .unwrap_or_else(|| panic!("a fan-out report has delivery rows: {:#?}", r.sections));
    let sum = |f: fn(&loadgen::fanout::timeline::Row) -> u64| -> u64 {
        rows.iter().filter(|x| !x.warmup).map(f).sum()
    };
    assert_eq!(sum(|x| x.published), r.sent, "published");
    assert_eq!(sum(|x| x.received), dv(r).received, "received");
    assert_eq!(sum(|x| x.bytes), dv(r).bytes_received, "bytes");
    assert_eq!(sum(|x| x.lost), dv(r).lost, "lost");
    let warm = rows.iter().filter(|x| x.warmup).count() as u64;
    assert_eq!(
        warm,
        r.config["WARMUP_SEC"].as_u64().unwrap(),
        "warm-up rows"
    );
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.t, i as u64, "one row per second, in order");
        if row.max_us > 0 {
            assert!(
                row.p50_us <= row.p90_us && row.p90_us <= row.p99_us && row.p99_us <= row.max_us,
                "{row:?}"
            );
        }
    }
    rows
}

/// `data-points` of the chart `id` in an HTML report (0 when absent).
fn chart_points(page: &str, id: &str) -> u64 {
    let key = format!("id=\"{id}\" data-points=\"");
    page.find(&key)
        .and_then(|i| page[i + key.len()..].split('"').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_thousand_ws_clients_receive_every_message_once() {
    ensure_open_files(8192);
    let broker = Mosquitto::start(MosquittoOptions::new().ws_listeners(2)).expect("mosquitto");
    let ws = broker.ws_urls();
    assert_eq!(ws.len(), 2);
    let cfg = fanout_config(&[
        ("gateway-urls", ws.join(",")),
        ("publish-broker", broker.url()),
        ("clients", "2000".into()),
        ("connect-rate", "2000".into()),
        ("subjects", "1000".into()),
        ("publish-rate", "2000".into()),
        ("warmup-sec", "1".into()),
        ("duration-sec", "20".into()),
    ]);
    let started = Instant::now();
    let run = start(cfg).await;
    let port = run.http_addr;
    // While it runs: /ready once every client subscribed, /metrics with the contract's names.
    wait_until_async(Duration::from_secs(20), "fanout /ready", || async {
        get(port, "/ready").await.is_some()
    })
    .await
    .expect("ready");
    let metrics = get(port, "/metrics").await.expect("metrics");
    for name in [
        "fanout_messages_published_total",
        "fanout_messages_received_total",
        "fanout_bytes_received_total",
        "fanout_connections 2000",
        "fanout_disconnects_total 0",
        "fanout_messages_lost_total 0",
        "fanout_latency_seconds_bucket",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing in /metrics:\n{metrics}"
        );
    }
    // GET /report: the report so far, with its delivery books, histograms and the timeline so
    // far (a few seconds of it, every client connected)
    wait_until_async(
        Duration::from_secs(20),
        "3 timeline rows in /report",
        || async {
            let text = get(port, "/report").await.unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| {
                v["timeline"].as_array().is_some_and(|rows| {
                    rows.len() >= 3
                        && rows[2]["connections"] == 2000
                        && rows[2]["published"] == 2000
                })
            })
        },
    )
    .await
    .expect("the live report carries the timeline so far");
    let text = get(port, "/report").await.expect("/report");
    let live = loadgen::reporting::LoadedReport::from_text("/report", &text)
        .expect("the live report carries its histograms");
    assert!(
        live.is_fanout() && live.value["clients"] == 2000,
        "{:?}",
        live.value
    );
    let report = run.report().await.expect("fanout run");
    eprintln!("{}", report.text());
    // the HTML report of a fan-out run (what make up-fanout writes)
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    loadgen::reporting::run::write_html(&report, &page, None).expect("fan-out HTML report");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("delivery"));
    // deliveries, loss and connections over time, and p50/p90/p99/max per second
    for id in [
        "chart-deliveries",
        "chart-connections",
        "chart-latency",
        "chart-rates",
    ] {
        assert!(chart_points(&html, id) >= 20, "{id} has no data");
    }
    assert!(html.contains(">p90<"), "the latency chart has a p90 line");
    let json = serde_json::to_value(&report).unwrap();
    let back = loadgen::reporting::LoadedReport::from_value("report", json).unwrap();
    assert_eq!(back.latency.len(), dv(&report).received);
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "took {:?}",
        started.elapsed()
    );

    assert_eq!(report.scenario, "fanout");
    assert_eq!(extra(&report, "clients"), 2000);
    assert_eq!(extra(&report, "subjects"), 1000);
    assert_eq!(extra(&report, "connections"), 2000);
    assert_eq!(extra(&report, "disconnects"), 0);
    // 2,000 msg/s for 20 s, exactly on schedule.
    assert!(
        (report.duration_s - 20.0).abs() < 0.01,
        "{}",
        report.duration_s
    );
    assert!(report.sent.abs_diff(40_000) <= 2, "sent {}", report.sent);
    assert_eq!(report.skipped, 0);
    // Every subscriber gets every message of its subject exactly once.
    let expected = extra(&report, "expected");
    assert_eq!(
        expected,
        report.sent * 2,
        "2,000 clients on 1,000 subjects: two deliveries per message on average"
    );
    assert_eq!(dv(&report).received, expected);
    assert_eq!(extra(&report, "received"), expected);
    assert_no_request_books(&report);
    assert_eq!(extra(&report, "lost"), 0);
    assert_eq!(extra(&report, "clients_with_loss"), 0);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.invalid, 0);
    assert_eq!(dv(&report).delivery_ratio, 1.0);
    assert_eq!(report.unresolved(), 0);
    let rows = assert_timeline_sums(&report);
    eprintln!("{}", loadgen::fanout::timeline::to_csv(rows));
    // 1 s warm-up and 20 s of window at 2,000 msg/s, two deliveries per message
    assert!(rows.len() >= 21, "{rows:#?}");
    for row in &rows[..21] {
        assert!(row.published.abs_diff(2000) <= 2, "{row:?}");
        assert_eq!(row.received, 2 * row.published, "{row:?}");
        assert_eq!((row.lost, row.disconnects), (0, 0), "{row:?}");
        // (the last second's end may fall after the subscribers started to leave)
        assert!(row.connections == 2000 || row.t == 20, "{row:?}");
    }
    // deliveries arrive every second (a tick late on a loaded machine folds two into one)
    let with_latency = rows[..21].iter().filter(|r| r.p90_us > 0).count();
    assert!(with_latency >= 18, "{rows:#?}");
    assert!(extra(&report, "bytes_received") >= expected * 512);
    let l = report.latency_us;
    assert!(
        l.min > 0 && l.p50 >= l.min && l.p99 >= l.p50 && l.max >= l.p999,
        "{l:?}"
    );
    assert!(
        l.p50 < 50_000,
        "median latency on loopback should be far below 50 ms: {l:?}"
    );
    assert_eq!(
        report.config["GATEWAY_URLS"],
        serde_json::Value::from(ws.join(","))
    );
    validate_schema(&report);
}

/// A TCP proxy in front of one WebSocket listener that can cut every connection through it
/// and refuse new ones for a while: subscribers behind it are cut off, nothing else is.
struct CutProxy {
    port: u16,
    refusing: Arc<AtomicBool>,
    generation: Arc<Mutex<CancellationToken>>,
}

impl CutProxy {
    async fn start(upstream: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let refusing = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let (r, g) = (refusing.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if r.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let cut = g.lock().expect("lock").clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        CutProxy {
            port,
            refusing,
            generation,
        }
    }

    /// Drops every proxied connection and refuses new ones until [`CutProxy::restore`].
    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        let mut g = self.generation.lock().expect("lock");
        g.cancel();
        *g = CancellationToken::new();
    }

    fn restore(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_cut_off_subscribers_reconnect_and_their_missed_messages_count_as_lost() {
    ensure_open_files(8192);
    let broker = Mosquitto::start(MosquittoOptions::new().ws_listeners(2)).expect("mosquitto");
    let ws = broker.ws_urls();
    let upstream: u16 = ws[1]
        .trim_start_matches("ws://127.0.0.1:")
        .trim_end_matches("/mqtt")
        .parse()
        .expect("ws port");
    let proxy = CutProxy::start(upstream).await;
    let gateways = format!("{},ws://127.0.0.1:{}/mqtt", ws[0], proxy.port);
    let cfg = fanout_config(&[
        ("gateway-urls", gateways),
        ("publish-broker", broker.url()),
        ("clients", "300".into()),
        ("connect-rate", "1000".into()),
        ("subjects", "100".into()),
        ("publish-rate", "500".into()),
        ("warmup-sec", "1".into()),
        ("duration-sec", "8".into()),
    ]);
    let run = start(cfg).await;
    let port = run.http_addr;
    wait_until_async(Duration::from_secs(20), "fanout /ready", || async {
        get(port, "/ready").await.is_some()
    })
    .await
    .expect("ready");
    // Once the measured window is open, cut the 150 clients behind the proxy off for 1.5 s.
    wait_until_async(Duration::from_secs(10), "the measured window", || async {
        get(port, "/stats").await.is_some_and(|s| {
            serde_json::from_str::<serde_json::Value>(&s).is_ok_and(|v| {
                v["phase"] == "measure" && v["window"]["received"].as_u64() > Some(0)
            })
        })
    })
    .await
    .expect("window open");
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();
    wait_until_async(
        Duration::from_secs(10),
        "all 300 connections back",
        || async {
            get(port, "/metrics")
                .await
                .is_some_and(|m| m.contains("fanout_connections 300\n"))
        },
    )
    .await
    .expect("reconnected");
    let metrics = get(port, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("fanout_disconnects_total 150\n"),
        "every proxied client lost its connection once:\n{metrics}"
    );
    let report = run.report().await.expect("fanout run");
    eprintln!("{}", report.text());

    assert_eq!(extra(&report, "disconnects"), 150);
    assert!(report.reconnects >= 150, "reconnects {}", report.reconnects);
    assert_eq!(extra(&report, "connections"), 300);
    // 1.5 s without a connection at 5 msg/s per subject: several messages per cut-off client.
    let lost = extra(&report, "lost");
    assert!(lost >= 150 * 4, "lost {lost}");
    assert_no_request_books(&report);
    let with_loss = extra(&report, "clients_with_loss");
    assert!(
        (120..=150).contains(&with_loss),
        "only the cut-off clients lose messages: {with_loss}"
    );
    // The books close: every expected delivery is either received or lost.
    let expected = extra(&report, "expected");
    assert_eq!(dv(&report).received + lost, expected);
    let ratio = dv(&report).delivery_ratio;
    assert!(ratio < 1.0 && ratio > 0.5, "{ratio}");
    assert_eq!(report.duplicates, 0);
    // the timeline: the losses add up, the cut shows as 150 disconnects and fewer connections
    let rows = assert_timeline_sums(&report);
    assert_eq!(rows.iter().map(|x| x.disconnects).sum::<u64>(), 150);
    assert!(rows.iter().map(|x| x.reconnects).sum::<u64>() >= 150);
    assert!(
        rows.iter().any(|x| x.connections < 300 && !x.warmup),
        "a second ended with the proxied clients cut off: {rows:#?}"
    );
    assert!(rows.iter().filter(|x| !x.warmup).any(|x| x.lost > 0));
    validate_schema(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_wss_subscribers_receive_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = rr_testkit::TestPki::generate(dir.path()).expect("test PKI");
    let broker = Mosquitto::start(
        MosquittoOptions::new()
            .tls(pki.server_files(false))
            .wss_listeners(1),
    )
    .expect("mosquitto with a wss listener");
    let wss = broker.wss_urls()[0].clone();
    assert!(wss.starts_with("wss://"), "{wss}");
    let cfg = fanout_config(&[
        ("gateway-urls", wss.clone()),
        ("publish-broker", broker.url()),
        ("tls-ca-file", pki.ca.display().to_string()),
        ("clients", "300".into()),
        ("connect-rate", "1000".into()),
        ("subjects", "100".into()),
        ("publish-rate", "500".into()),
        ("warmup-sec", "1".into()),
        ("duration-sec", "6".into()),
    ]);
    let report = run_within(Duration::from_secs(60), cfg).await;
    eprintln!("{}", report.text());
    assert_eq!(extra(&report, "connections"), 300);
    assert_eq!(extra(&report, "disconnects"), 0);
    assert!(report.sent.abs_diff(3_000) <= 2, "sent {}", report.sent);
    let expected = extra(&report, "expected");
    assert_eq!(expected, report.sent * 3, "300 clients on 100 subjects");
    assert_eq!(dv(&report).received, expected);
    assert_eq!(extra(&report, "lost"), 0);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.invalid, 0);
    assert!(extra(&report, "bytes_received") >= expected * 512);
    assert!(report.latency_us.p50 > 0, "{:?}", report.latency_us);
    assert_eq!(report.config["GATEWAY_URLS"], serde_json::Value::from(wss));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_one_publisher_and_two_subscriber_instances_lose_nothing() {
    let broker = Mosquitto::start(MosquittoOptions::new().ws_listeners(1)).expect("mosquitto");
    let ws = broker.ws_urls()[0].clone();
    let common = |role: &str, id: &str, warmup: &str, duration: &str| {
        fanout_config(&[
            ("gateway-urls", ws.clone()),
            ("publish-broker", broker.url()),
            ("fanout-role", role.into()),
            ("instance-id", id.into()),
            ("clients", "200".into()),
            ("connect-rate", "1000".into()),
            ("subjects", "100".into()),
            ("publish-rate", "500".into()),
            ("warmup-sec", warmup.into()),
            ("duration-sec", duration.into()),
        ])
    };
    // Subscribers first, with a window that covers the publisher's whole run.
    let mut subs = Vec::new();
    for id in ["sub-a", "sub-b"] {
        subs.push(start(common("subscribe", id, "0", "12")).await);
    }
    // ... and every subscriber connected before the publisher starts
    for s in &subs {
        wait_until_async(Duration::from_secs(20), "subscribers /ready", || async {
            get(s.http_addr, "/ready").await.is_some()
        })
        .await
        .expect("subscribers ready");
    }
    let publisher = common("publish", "pub", "1", "6");
    let p = run_within(Duration::from_secs(60), publisher).await;
    eprintln!("{}", p.text());
    assert!(p.sent.abs_diff(3_000) <= 2, "sent {}", p.sent);
    assert_eq!(p.skipped, 0);
    // everything it published, warm-up included, fell in the subscribers' window
    let published = p.sent + 500; // the 1 s warm-up at 500 msg/s
    for sub in subs {
        let r = tokio::time::timeout(Duration::from_secs(60), sub.report())
            .await
            .expect("subscriber ends")
            .expect("subscriber runs");
        eprintln!("{}", r.text());
        assert_eq!(extra(&r, "connections"), 200);
        assert_eq!(extra(&r, "disconnects"), 0);
        assert_eq!(extra(&r, "lost"), 0, "{}", r.text());
        assert_eq!(r.duplicates, 0);
        assert_eq!(r.invalid, 0);
        // 200 clients on 100 subjects: two deliveries per message; the first message of each
        // subject is a client's baseline, so up to one per (client, subject) is not counted
        let received = extra(&r, "received");
        assert!(
            received + 200 >= 2 * published && received <= 2 * published + 4,
            "received {received} of ~{} deliveries",
            2 * published
        );
        assert!(r.latency_us.p50 > 0, "{:?}", r.latency_us);
    }
}
