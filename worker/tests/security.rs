//! The worker binary's start-up failures (wrong password, untrusted certificates, missing client
//! certificate, unreachable broker: one clear line, exit status 3) and its secrecy: the password
//! never appears in its output, `/stats`, `/metrics` or `--help`.

mod support;
#[path = "../../loadgen/tests/support/tls.rs"]
mod tls;

use rr_common::http;
use rr_testkit::Process;
use std::time::Duration;
use support::*;
use tls::*;

#[test]
fn g_worker_startup_failures_exit_3_with_one_clear_line() {
    startup_failures(worker_bin());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_worker_never_prints_or_serves_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = tls_broker(&pki, false, true);
    let url = broker.tls_url().unwrap();
    let auth = [
        ("TLS_CA_FILE", p(&pki.ca)),
        ("MQTT_USERNAME", USER),
        ("MQTT_PASSWORD", PASSWORD),
    ];
    let mut env = auth.to_vec();
    env.push(("RUST_LOG", "trace"));
    let (mut w, addr) = spawn_worker(&url, &env);
    wait_ready(&addr).await;
    let mut seen = String::new();
    for path in ["/stats", "/metrics", "/health", "/ready"] {
        seen += &http::get(&addr, path, T).await.unwrap().1;
    }
    assert!(
        seen.contains("BROKER_PASSWORD"),
        "/stats lists the setting (MQTT_PASSWORD is its alias): {seen}"
    );
    w.signal("TERM").unwrap();
    let status = w.wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", w.stderr());
    seen += &w.stdout();
    seen += &w.stderr();
    let mut help = Process::spawn_with_args(worker_bin(), &auth, &["--help"]).unwrap();
    help.wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("--help exits");
    assert!(help.stdout().contains("MQTT_PASSWORD"), "{}", help.stdout());
    seen += &help.stdout();
    seen += &help.stderr();
    assert!(!seen.contains(PASSWORD), "the password leaked:\n{seen}");
    eprintln!(
        "grepped {} bytes of worker output, endpoints and --help: no password",
        seen.len()
    );
}
