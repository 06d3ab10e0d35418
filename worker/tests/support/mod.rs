//! Shared helpers of the worker integration tests: the worker binary as a process, an
//! in-process loadgen, and HTTP probes.
#![allow(dead_code)]

use clap::Parser;
use rr_common::http;
use rr_testkit::Process;
use std::time::Duration;

pub const T: Duration = Duration::from_secs(2);

pub fn worker_bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_worker"))
}

/// Starts the worker binary (endpoints on a free port); `env` adds to (and overrides) a test
/// baseline. Returns the process and the address its endpoints listen on.
pub fn spawn_worker(broker: &str, env: &[(&str, &str)]) -> (Process, String) {
    let mut all: Vec<(&str, &str)> = vec![
        ("BROKER", broker),
        ("METRICS_PORT", "0"),
        ("METRICS_ADDR", "127.0.0.1"),
        ("CONNECTIONS", "4"),
        ("MIN_WORKERS", "4"),
    ];
    for (k, v) in env {
        all.retain(|(kk, _)| kk != k);
        all.push((k, v));
    }
    let mut p = Process::spawn(worker_bin(), &all).expect("worker binary starts");
    let addr = tokio::task::block_in_place(|| p.metrics_addr(Duration::from_secs(15)))
        .expect("the worker logs its metrics address");
    (p, addr)
}

pub async fn wait_ready(addr: &str) {
    let a = addr.to_string();
    rr_testkit::wait_until_async(Duration::from_secs(15), "ready", || {
        let a = a.clone();
        async move { matches!(http::get(&a, "/ready", T).await, Ok((200, _))) }
    })
    .await
    .unwrap();
}

/// `GET /stats` as JSON; like the loadgen tests' `stats`, a slow moment is tried again (5 s
/// each, three tries) rather than failing a test that checks something else.
pub async fn stats(addr: &str) -> serde_json::Value {
    let (code, body) = rr_testkit::retry_async("GET /stats", 3, Duration::from_secs(1), || {
        http::get(addr, "/stats", Duration::from_secs(5))
    })
    .await
    .unwrap_or_else(|e| panic!("{addr}: {e}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("/stats is JSON")
}

/// A checked loadgen config from env-style pairs (as `--flag=value` arguments).
pub fn loadgen_config(
    broker: &str,
    extra: &[(&str, &str)],
) -> rr_common::cli::Valid<loadgen::config::Config> {
    let mut all: Vec<(String, String)> = vec![
        ("BROKER".into(), broker.into()),
        ("METRICS_PORT".into(), "0".into()),
        ("METRICS_ADDR".into(), "127.0.0.1".into()),
        ("PROGRESS_SEC".into(), "0".into()),
        ("INSTANCE_ID".into(), "wtest".into()),
    ];
    for (k, v) in extra {
        all.retain(|(kk, _)| kk != k);
        all.push((k.to_string(), v.to_string()));
    }
    let mut args = vec!["loadgen".to_string()];
    for (k, v) in all {
        args.push(format!("--{}={v}", k.to_lowercase().replace('_', "-")));
    }
    rr_common::cli::Validate::validate(
        loadgen::config::Config::try_parse_from(args).expect("loadgen config"),
    )
    .expect("valid loadgen config")
}

pub fn assert_books_close(r: &loadgen::report::Report) {
    assert_eq!(r.unresolved(), 0, "{r:#?}");
    assert_eq!(r.sent, r.rq().matched + r.rq().timeouts, "{r:#?}");
    assert!(r.rq().late <= r.rq().timeouts, "{r:#?}");
}

/// Receives = responded + dropped + invalid + errors + queued + in progress.
pub fn conserved(s: &serde_json::Value) -> bool {
    let n = |k: &str| s[k].as_u64().unwrap();
    n("received")
        == n("responded")
            + n("dropped")
            + n("invalid")
            + n("errors")
            + n("queue_depth")
            + n("in_progress")
}

/// The request books of an rr/pub report.
pub trait Rq {
    fn rq(&self) -> &loadgen::report::RequestBooks;
}

impl Rq for loadgen::report::Report {
    fn rq(&self) -> &loadgen::report::RequestBooks {
        self.requests()
            .unwrap_or_else(|| panic!("an rr/pub report has request books: {self:#?}"))
    }
}
