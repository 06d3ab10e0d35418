//! TLS fixtures and start-up failure cases shared by the loadgen and worker security tests
//! (the worker's tests include this file by path): a throwaway PKI, mosquitto with TLS, WSS and
//! passwords, and the cases that must each end a binary with one clear line and exit status 3.
#![allow(dead_code)]

use rr_testkit::{free_port, Mosquitto, MosquittoOptions, Process, TestPki};
use std::path::Path;
use std::time::{Duration, Instant};

pub const USER: &str = "bench";
pub const PASSWORD: &str = "pw-Zq8x-never-printed";

/// A broker with a TLS listener and a WebSocket-over-TLS listener; `mutual` requires client
/// certificates, `password` turns anonymous access off.
pub fn tls_broker(pki: &TestPki, mutual: bool, password: bool) -> Mosquitto {
    let mut o = MosquittoOptions::new()
        .tls(pki.server_files(mutual))
        .wss_listeners(1);
    if password {
        o = o.password(USER, PASSWORD);
    }
    Mosquitto::start(o).expect("mosquitto with TLS starts")
}

pub fn pki(dir: &Path) -> TestPki {
    std::fs::create_dir_all(dir).unwrap();
    TestPki::generate(dir).expect("test PKI")
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One start-up failure of a binary: exit 3, one clear error line, in time, nothing secret.
pub fn expect_exit_3(
    bin: &Path,
    name: &str,
    env: &[(&str, &str)],
    says: &[&str],
    within: Duration,
) -> Duration {
    let mut all = vec![
        ("METRICS_PORT", "0"),
        ("METRICS_ADDR", "127.0.0.1"),
        ("INSTANCE_ID", "sec"),
        ("CONNECTIONS", "4"),
    ];
    all.extend_from_slice(env);
    let started = Instant::now();
    let mut proc = Process::spawn(bin, &all).unwrap();
    let status = proc
        .wait_timeout(within + Duration::from_secs(10))
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "{name}: still running after {:?}",
                within + Duration::from_secs(10)
            )
        });
    let took = started.elapsed();
    let (out, err) = (proc.stdout(), proc.stderr());
    assert_eq!(status.code(), Some(3), "{name}: {status}\n{err}");
    let error_lines: Vec<&str> = err
        .lines()
        .chain(out.lines())
        .filter(|l| l.starts_with("error") || l.contains(" ERROR ") || l.contains("panicked"))
        .collect();
    assert_eq!(
        error_lines.len(),
        1,
        "{name}: one error line expected:\n{err}"
    );
    // at the default log level nothing else is said about it (no retry chatter)
    assert!(err.lines().count() <= 4, "{name}: too much output:\n{err}");
    let line = error_lines[0];
    for s in says {
        assert!(line.contains(s), "{name}: error line lacks {s:?}: {line}");
    }
    assert!(
        took <= within,
        "{name}: exit after {took:?}, expected within {within:?}"
    );
    for secret in [PASSWORD, "wrong-Zq8x-secret"] {
        assert!(
            !err.contains(secret) && !out.contains(secret),
            "{name}: a password was printed:\n{err}"
        );
    }
    eprintln!("{name}: exit 3 after {:.2} s: {line}", took.as_secs_f64());
    took
}

/// The failure modes of either binary; used by the worker's tests too (same cases).
pub fn startup_failures(bin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("good"));
    let other = pki_other(&dir.path().join("other"));
    let with_password = tls_broker(&pki, false, true);
    let mutual = tls_broker(&pki, true, false);
    let fast = Duration::from_secs(3);
    let patient = [("CONNECT_RETRY_MS", "30000")];
    let tls = with_password.tls_url().unwrap();
    let wss = with_password.wss_urls()[0].clone();
    let mtls = mutual.tls_url().unwrap();
    let mwss = mutual.wss_urls()[0].clone();
    let plain = with_password.url();
    let ca = p(&pki.ca);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "wrong password",
            vec![
                ("BROKER", &plain),
                ("MQTT_USERNAME", USER),
                ("MQTT_PASSWORD", "wrong-Zq8x-secret"),
            ],
            vec!["rejected the credentials", "MQTT_PASSWORD"],
        ),
        (
            "wrong password over mqtts",
            vec![
                ("BROKER", &tls),
                ("TLS_CA_FILE", ca),
                ("MQTT_USERNAME", USER),
                ("MQTT_PASSWORD", "wrong-Zq8x-secret"),
            ],
            vec!["rejected the credentials"],
        ),
        (
            "no credentials",
            vec![("BROKER", &plain)],
            vec!["rejected the credentials"],
        ),
        (
            "untrusted broker certificate (system roots)",
            vec![
                ("BROKER", &tls),
                ("MQTT_USERNAME", USER),
                ("MQTT_PASSWORD", PASSWORD),
            ],
            vec!["certificate", "TLS_CA_FILE"],
        ),
        (
            "untrusted broker certificate (other CA)",
            vec![
                ("BROKER", &tls),
                ("TLS_CA_FILE", p(&other.ca)),
                ("MQTT_USERNAME", USER),
                ("MQTT_PASSWORD", PASSWORD),
            ],
            vec!["certificate", "TLS_CA_FILE"],
        ),
        (
            "untrusted broker certificate over wss",
            vec![
                ("BROKER", &wss),
                ("MQTT_USERNAME", USER),
                ("MQTT_PASSWORD", PASSWORD),
            ],
            vec!["certificate", "TLS_CA_FILE"],
        ),
        (
            "no client certificate for mutual TLS",
            vec![("BROKER", &mtls), ("TLS_CA_FILE", ca)],
            vec!["TLS", "TLS_CERT_FILE"],
        ),
        (
            "client certificate from another CA",
            vec![
                ("BROKER", &mtls),
                ("TLS_CA_FILE", ca),
                ("TLS_CERT_FILE", p(&other.client_cert)),
                ("TLS_KEY_FILE", p(&other.client_key)),
            ],
            vec!["TLS", "TLS_CERT_FILE"],
        ),
        (
            "no client certificate for mutual TLS over wss",
            vec![("BROKER", &mwss), ("TLS_CA_FILE", ca)],
            vec!["TLS"],
        ),
    ];
    for (name, mut env, says) in cases {
        env.extend_from_slice(&patient);
        expect_exit_3(bin, name, &env, &says, fast);
    }
    // unreachable: retried for CONNECT_RETRY_MS, then one line
    let nobody = format!("mqtt://127.0.0.1:{}", free_port());
    let took = expect_exit_3(
        bin,
        "unreachable broker",
        &[("BROKER", &nobody), ("CONNECT_RETRY_MS", "1500")],
        &["CONNECT_RETRY_MS", "1500 ms", "refused"],
        Duration::from_millis(1500 + 1000),
    );
    assert!(
        took >= Duration::from_millis(1500),
        "gave up after {took:?}, before CONNECT_RETRY_MS"
    );
}

fn pki_other(dir: &Path) -> TestPki {
    pki(dir)
}
