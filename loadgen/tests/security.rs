//! TLS, mutual TLS and password authentication against a real mosquitto (throwaway CA from
//! `TestPki`), the start-up failure modes of the loadgen binary (one clear error line, exit
//! status 3), passwords never printed or served, and the HTTP endpoints: bound to METRICS_ADDR,
//! and slow clients block neither `/metrics` for others nor the hot path.

mod support;
#[path = "support/tls.rs"]
mod tls;

use rr_common::http;
use rr_testkit::{Mosquitto, MosquittoOptions, Process};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;
use tls::*;
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(2);

const SHORT: &[(&str, &str)] = &[
    ("VIRTUAL_CLIENTS", "1000"),
    ("CONNECTIONS", "4"),
    ("SHARDS", "8"),
    ("INTERVAL_MS", "1000"),
    ("WARMUP_SEC", "1"),
    ("DURATION_SEC", "2"),
];

async fn run_through(url: &str, auth: &[(&str, &str)]) -> loadgen::report::Report {
    let (_w, stop) = start_worker(url, auth).await;
    let mut extra = SHORT.to_vec();
    extra.extend_from_slice(auth);
    let r = run_loadgen(url, &extra).await;
    stop.cancel();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_tls_wss_mutual_tls_and_passwords_carry_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let with_password = tls_broker(&pki, false, true);
    let mutual = tls_broker(&pki, true, false);
    let ca_and_password = [
        ("TLS_CA_FILE", p(&pki.ca)),
        ("MQTT_USERNAME", USER),
        ("MQTT_PASSWORD", PASSWORD),
    ];
    let client_cert = [
        ("TLS_CA_FILE", p(&pki.ca)),
        ("TLS_CERT_FILE", p(&pki.client_cert)),
        ("TLS_KEY_FILE", p(&pki.client_key)),
    ];
    let cases = [
        (
            "mqtts + CA + password",
            with_password.tls_url().unwrap(),
            &ca_and_password[..],
        ),
        (
            "wss + CA + password",
            with_password.wss_urls()[0].clone(),
            &ca_and_password[..],
        ),
        (
            "mqtt + password",
            with_password.url(),
            &ca_and_password[1..],
        ),
        (
            "mqtts mutual TLS",
            mutual.tls_url().unwrap(),
            &client_cert[..],
        ),
        (
            "wss mutual TLS",
            mutual.wss_urls()[0].clone(),
            &client_cert[..],
        ),
    ];
    for (name, url, auth) in cases {
        let r = run_through(&url, auth).await;
        eprintln!(
            "{name}: sent {} matched {} match rate {:.5} p50 {} us",
            r.sent,
            r.rq().matched,
            r.rq().match_rate,
            r.latency_us.p50
        );
        assert_books_close(&r);
        assert!(r.rq().match_rate >= 0.999, "{name}: {r:#?}");
        let cfg = serde_json::to_string(&r.config).unwrap();
        assert!(
            !cfg.contains(PASSWORD),
            "{name}: password in the report config: {cfg}"
        );
    }
}

#[test]
fn g_loadgen_startup_failures_exit_3_with_one_clear_line() {
    startup_failures(Path::new(env!("CARGO_BIN_EXE_loadgen")));
}

/// Everything a user or scraper can see: no password anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_the_password_is_never_printed_served_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"));
    let broker = tls_broker(&pki, false, true);
    let url = broker.tls_url().unwrap();
    let auth = [
        ("TLS_CA_FILE", p(&pki.ca)),
        ("MQTT_USERNAME", USER),
        ("MQTT_PASSWORD", PASSWORD),
    ];
    let (w, wstop) = start_worker(&url, &auth).await;
    let report = dir.path().join("report.json");
    let mut env = vec![
        ("BROKER", url.as_str()),
        ("VIRTUAL_CLIENTS", "1000"),
        ("CONNECTIONS", "4"),
        ("INTERVAL_MS", "1000"),
        ("WARMUP_SEC", "1"),
        ("DURATION_SEC", "3"),
        ("METRICS_PORT", "0"),
        ("METRICS_ADDR", "127.0.0.1"),
        ("RUST_LOG", "trace"),
        ("REPORT_JSON", p(&report)),
    ];
    env.extend_from_slice(&auth);
    let bin = Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let mut lg = Process::spawn(bin, &env).unwrap();
    let addr = lg.metrics_addr(Duration::from_secs(15)).unwrap();
    wait_ready(&addr).await;
    let mut seen = String::new();
    for path in ["/stats", "/metrics", "/", "/health", "/ready"] {
        seen += &http::get(&addr, path, T).await.unwrap().1;
    }
    let waddr = w.http_addr.to_string();
    for path in ["/stats", "/metrics"] {
        seen += &http::get(&waddr, path, T).await.unwrap().1;
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = lg.wait_timeout(Duration::from_secs(30)).unwrap();
        (s, lg)
    })
    .await
    .unwrap();
    let (status, lg) = status;
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", lg.stderr());
    seen += &lg.stdout();
    seen += &lg.stderr();
    seen += &std::fs::read_to_string(&report).unwrap();
    // --help, with the password in the environment (clap would show env values)
    let help = Process::spawn_with_args(bin, &auth, &["--help"]).unwrap();
    let mut help = help;
    help.wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("--help exits");
    seen += &help.stdout();
    seen += &help.stderr();
    assert!(help.stdout().contains("MQTT_PASSWORD"), "{}", help.stdout());
    assert!(
        seen.contains("MQTT_PASSWORD"),
        "the grep looks at the right text"
    );
    assert!(!seen.contains(PASSWORD), "the password leaked:\n{seen}");
    eprintln!(
        "grepped {} bytes of output, endpoints, report and --help: no password",
        seen.len()
    );
    wstop.cancel();
}

/// Opens `idle` connections that send nothing and `trickle` that send one header byte per
/// second; they stay open until the returned task is aborted.
async fn slow_clients(addr: &str, idle: usize, trickle: usize) -> tokio::task::JoinHandle<()> {
    let mut socks = Vec::new();
    for _ in 0..idle + trickle {
        socks.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::spawn(async move {
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        for i in 0.. {
            for s in socks.iter_mut().skip(idle) {
                let _ = s.write_all(&head[i % head.len()..i % head.len() + 1]).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn timed_get(addr: &str, path: &str) -> Duration {
    let t = Instant::now();
    let (code, _) = http::get(addr, path, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr} while slow clients hang: {e}"));
    assert_eq!(code, 200);
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_slow_http_clients_block_neither_metrics_nor_the_hot_path() {
    let broker = Mosquitto::start(MosquittoOptions::new()).expect("mosquitto");
    let url = broker.url();
    let (w, wstop) = start_worker(&url, &[]).await;
    let (run, _token) = start_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "5000"),
            ("CONNECTIONS", "8"),
            ("INTERVAL_MS", "1000"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "8"),
        ],
    )
    .await;
    let addr = run.http_addr.to_string();
    wait_ready(&addr).await;
    let waddr = w.http_addr.to_string();
    let hang_lg = slow_clients(&addr, 100, 20).await;
    let hang_w = slow_clients(&waddr, 100, 20).await;
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        for (a, path) in [(&addr, "/metrics"), (&addr, "/stats"), (&waddr, "/metrics")] {
            worst = worst.max(timed_get(a, path).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = tokio::time::timeout(Duration::from_secs(60), run.report())
        .await
        .unwrap()
        .unwrap();
    hang_lg.abort();
    hang_w.abort();
    eprintln!(
        "240 slow HTTP clients: slowest of 60 GETs {worst:?}; run match rate {:.5}, p99 {} us, schedule lag p99 {} us max {} us",
        r.rq().match_rate, r.latency_us.p99, r.schedule_lag_us.p99, r.schedule_lag_us.max
    );
    assert!(worst < Duration::from_millis(500), "a GET took {worst:?}");
    assert_books_close(&r);
    assert!(r.rq().match_rate >= 0.999, "{r:#?}");
    assert_eq!(r.publish_errors, 0);
    assert_eq!(r.skipped, 0);
    wstop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_endpoints_bind_to_metrics_addr() {
    let broker = Mosquitto::start(MosquittoOptions::new()).expect("mosquitto");
    let url = broker.url();
    // 127.0.0.2 is loopback too on Linux, but a different address than 127.0.0.1
    let (w, wstop) = start_worker(&url, &[("METRICS_ADDR", "127.0.0.2")]).await;
    assert_eq!(w.http_addr.ip().to_string(), "127.0.0.2");
    let wport = w.http_addr.port();
    assert_eq!(
        http::get(&format!("127.0.0.2:{wport}"), "/health", T)
            .await
            .unwrap()
            .0,
        200
    );
    assert!(http::get(&format!("127.0.0.1:{wport}"), "/health", T)
        .await
        .is_err());

    let (run, token) = start_loadgen(
        &url,
        &[
            ("VIRTUAL_CLIENTS", "100"),
            ("CONNECTIONS", "1"),
            ("WARMUP_SEC", "0"),
            // long enough to be up however loaded the machine is; stopped below
            ("DURATION_SEC", "60"),
            ("METRICS_ADDR", "127.0.0.2"),
        ],
    )
    .await;
    assert_eq!(run.http_addr.ip().to_string(), "127.0.0.2");
    let port = run.http_addr.port();
    let on = format!("127.0.0.2:{port}");
    rr_testkit::wait_until_async(Duration::from_secs(10), "loadgen on 127.0.0.2", || {
        let on = on.clone();
        async move { matches!(http::get(&on, "/health", T).await, Ok((200, _))) }
    })
    .await
    .unwrap();
    assert!(http::get(&format!("127.0.0.1:{port}"), "/health", T)
        .await
        .is_err());
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), run.report())
        .await
        .expect("loadgen stops when cancelled")
        .unwrap();
    wstop.cancel();
}
