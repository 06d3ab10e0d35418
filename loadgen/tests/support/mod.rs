//! Shared helpers of the loadgen integration tests: configs from env-style pairs, an in-process
//! worker, a broker killed and restarted mid-run, metric-text checks and the report schema.
#![allow(dead_code)]

use clap::Parser;
use rr_common::cli::{Valid, Validate};
use std::time::Duration;

/// Turns `("VIRTUAL_CLIENTS", "10")` pairs into `--virtual-clients 10` arguments.
fn args(bin: &str, base: &[(&str, String)], extra: &[(&str, &str)]) -> Vec<String> {
    let mut v = vec![bin.to_string()];
    let mut all: Vec<(String, String)> = base
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for (k, val) in extra {
        all.retain(|(kk, _)| kk != k);
        all.push((k.to_string(), val.to_string()));
    }
    for (k, val) in all {
        v.push(format!("--{}={}", k.to_lowercase().replace('_', "-"), val));
    }
    v
}

pub fn loadgen_config(broker: &str, extra: &[(&str, &str)]) -> Valid<loadgen::config::Config> {
    let base = [
        ("BROKER", broker.to_string()),
        ("METRICS_PORT", "0".into()),
        ("METRICS_ADDR", "127.0.0.1".into()),
        ("PROGRESS_SEC", "0".into()),
        ("INSTANCE_ID", "test".into()),
    ];
    loadgen::config::Config::try_parse_from(args("loadgen", &base, extra))
        .unwrap_or_else(|e| panic!("loadgen config: {e}"))
        .validate()
        .expect("valid loadgen config")
}

pub fn worker_config(broker: &str, extra: &[(&str, &str)]) -> Valid<worker::config::Config> {
    let base = [
        ("BROKER", broker.to_string()),
        ("METRICS_PORT", "0".into()),
        ("METRICS_ADDR", "127.0.0.1".into()),
        ("MIN_WORKERS", "4".into()),
        ("CONNECTIONS", "4".into()),
    ];
    worker::config::Config::try_parse_from(args("worker", &base, extra))
        .unwrap_or_else(|e| panic!("worker config: {e}"))
        .validate()
        .expect("valid worker config")
}

/// Starts an in-process loadgen (endpoints on a free port of 127.0.0.1); it stops when the
/// returned token is cancelled (or at DURATION_SEC).
pub async fn start_loadgen(
    broker: &str,
    extra: &[(&str, &str)],
) -> (loadgen::Running, tokio_util::sync::CancellationToken) {
    let token = tokio_util::sync::CancellationToken::new();
    let running = loadgen::start(loadgen_config(broker, extra), token.clone())
        .await
        .expect("loadgen starts");
    (running, token)
}

/// Waits until `GET /ready` on `addr` answers 200.
pub async fn wait_ready(addr: &str) {
    let a = addr.to_string();
    rr_testkit::wait_until_async(Duration::from_secs(15), "/ready", || {
        let a = a.clone();
        async move {
            matches!(
                rr_common::http::get(&a, "/ready", Duration::from_secs(2)).await,
                Ok((200, _))
            )
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{addr}: {e}"));
}

/// Waits until the run serving `addr` has been sending for `secs` seconds by its own clock
/// (`/stats` `elapsed_s`, from t = 0): the load is established, whatever start-up took.
pub async fn wait_sending_for(addr: &str, secs: f64) {
    let a = addr.to_string();
    let what = format!("{secs} s of sending (/stats elapsed_s)");
    rr_testkit::wait_until_async(Duration::from_secs_f64(secs + 30.0), &what, || {
        let a = a.clone();
        async move {
            let Ok((200, body)) = rr_common::http::get(&a, "/stats", Duration::from_secs(2)).await
            else {
                return false;
            };
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["elapsed_s"].as_f64())
                .is_some_and(|t| t >= secs)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{addr}: {e}"));
}

/// `GET /stats` of the run serving `addr`, as JSON. How fast it answers is not what these
/// tests check: with the other test of a pair saturating both cores and librdkafka's threads
/// reconnecting, one request once went unanswered for 2 s. So each try gets 5 s, three in all
/// (slow ones are printed).
pub async fn stats(addr: &str) -> serde_json::Value {
    let (code, body) = rr_testkit::retry_async("GET /stats", 3, Duration::from_secs(1), || {
        rr_common::http::get(addr, "/stats", Duration::from_secs(5))
    })
    .await
    .unwrap_or_else(|e| panic!("{addr}: {e}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("/stats is JSON")
}

/// A broker a test kills and starts again on its port (testkit's mosquitto, nats-server,
/// tansu).
pub trait Restartable: Send + 'static {
    fn kill_now(&mut self);
    /// Starts it again on its port; panics if it cannot.
    fn start_again(&mut self);
}

macro_rules! restartable {
    ($($t:ty),*) => {$(
        impl Restartable for $t {
            fn kill_now(&mut self) {
                self.kill();
            }
            fn start_again(&mut self) {
                self.restart()
                    .unwrap_or_else(|e| panic!("{} restarts on its port: {e}", stringify!($t)));
            }
        }
    )*};
}
restartable!(
    rr_testkit::Mosquitto,
    rr_testkit::NatsServer,
    rr_testkit::Tansu
);

/// Kills `broker`, waits up to `notice` until the loadgen serving `addr` has no link up, keeps
/// the broker down until `down` after the kill, then starts it again on its port (kill and
/// start on a blocking thread). Returns it, when it was killed and when it was back.
pub async fn kill_and_restart<B: Restartable>(
    mut broker: B,
    addr: &str,
    notice: Duration,
    down: Duration,
) -> (B, std::time::Instant, std::time::Instant) {
    let killed_at = std::time::Instant::now();
    broker = tokio::task::spawn_blocking(move || {
        broker.kill_now();
        broker
    })
    .await
    .expect("kill");
    let a = addr.to_string();
    rr_testkit::wait_until_async(notice, "loadgen links down", || {
        let a = a.clone();
        async move { stats(&a).await["connections"] == 0 }
    })
    .await
    .unwrap_or_else(|e| panic!("{addr}: {e}"));
    tokio::time::sleep_until((killed_at + down).into()).await;
    broker = tokio::task::spawn_blocking(move || {
        broker.start_again();
        broker
    })
    .await
    .expect("restart");
    (broker, killed_at, std::time::Instant::now())
}

/// Waits up to `within` until the loadgen serving `addr` has `links` links up and `worker`
/// has `worker_links`.
pub async fn wait_links_back(
    addr: &str,
    links: u64,
    worker: &std::sync::Arc<worker::WorkerState>,
    worker_links: u64,
    within: Duration,
) -> Result<(), String> {
    let a = addr.to_string();
    rr_testkit::wait_until_async(within, "every link back", || {
        let (a, w) = (a.clone(), worker.clone());
        async move {
            stats(&a).await["connections"] == links && w.snapshot().connections == worker_links
        }
    })
    .await
    .map_err(|e| e.to_string())
}

/// Starts a worker in this process; it stops when the returned token is cancelled.
pub async fn start_worker(
    broker: &str,
    extra: &[(&str, &str)],
) -> (worker::Running, tokio_util::sync::CancellationToken) {
    let token = tokio_util::sync::CancellationToken::new();
    let running = worker::start(worker_config(broker, extra), token.clone())
        .await
        .expect("worker starts");
    (running, token)
}

/// Runs the loadgen to its end with the given settings.
pub async fn run_loadgen(broker: &str, extra: &[(&str, &str)]) -> loadgen::report::Report {
    let cfg = loadgen_config(broker, extra);
    let token = tokio_util::sync::CancellationToken::new();
    tokio::time::timeout(Duration::from_secs(180), loadgen::run(&cfg, token))
        .await
        .expect("loadgen finishes in time")
        .expect("loadgen run succeeds")
}

/// The accounting every finished run must satisfy.
pub fn assert_books_close(r: &loadgen::report::Report) {
    assert_eq!(r.unresolved(), 0, "requests left unresolved: {r:#?}");
    assert_eq!(
        r.sent,
        r.rq().matched + r.rq().timeouts,
        "sent = matched + timeouts: {r:#?}"
    );
    assert!(
        r.rq().late <= r.rq().timeouts,
        "late is a subset of timeouts: {r:#?}"
    );
    assert!(r.rq().match_rate <= 1.0);
}

/// Checks that `text` is well-formed Prometheus exposition text; returns the sample names.
pub fn parse_prometheus(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "bad comment line: {line}"
            );
            if let Some(t) = rest.strip_prefix("TYPE ") {
                let kind = t.split_whitespace().nth(1).unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type: {line}"
                );
                assert_ne!(kind, "summary", "latencies must be histograms: {line}");
            }
            continue;
        }
        let (name_labels, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let v = value.trim();
        assert!(
            v.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&v),
            "bad value: {line}"
        );
        let name = name_labels.split('{').next().unwrap_or("");
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        if let Some(labels) = name_labels.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels: {line}"
                );
            }
        }
        names.push(name.to_string());
    }
    names
}

/// Validates a report JSON value against schemas/report.schema.json.
pub fn validate_report(v: &serde_json::Value) {
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema file"))
            .expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "report does not match schema: {errors:?}\n{v:#}"
    );
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

/// Correlations a run with id `run_id` (of fewer than 2,000 clients) must count as invalid:
/// another run, a client out of range, a cycle not yet due, and bad lengths.
pub fn wrong_correlations(run_id: u32) -> Vec<Vec<u8>> {
    use rr_common::codec::Correlation;
    let c = |run, client, seq| Correlation { run, client, seq }.to_bytes().to_vec();
    vec![
        c(run_id ^ 1, 0, 0),
        c(run_id, 2000, 0),
        c(run_id, 3, 1_000_000),
        vec![1, 2, 3, 4, 5],
        vec![],
    ]
}

/// One capacity search over `broker` against an in-process worker pool of `pool` workers that
/// sleep 10 ms per request (at most 100 req/s each; `worker_extra` and `loadgen_extra` add to or
/// override the settings): the report, and the most the pool could answer given the time a
/// request really took in it (`pool / mean processing time`: less than 100 req/s per worker
/// while other work on the machine delays the workers' timers).
pub async fn search_against_pool(
    broker: &str,
    pool: u64,
    start: &str,
    worker_extra: &[(&str, &str)],
    loadgen_extra: &[(&str, &str)],
) -> (loadgen::report::Report, f64) {
    let n = pool.to_string();
    let mut wcfg = vec![
        ("MODE", "sleep"),
        ("SLEEP_MS", "10"),
        ("MIN_WORKERS", n.as_str()),
        ("MAX_WORKERS", n.as_str()),
    ];
    wcfg.extend_from_slice(worker_extra);
    let (w, stop) = start_worker(broker, &wcfg).await;
    let stats = format!("http://{}/stats", w.http_addr);
    let mut lcfg = vec![
        ("SCENARIO", "capacity"),
        ("VIRTUAL_CLIENTS", "3000"),
        ("INTERVAL_MS", "1000"),
        ("CONNECTIONS", "4"),
        ("WARMUP_SEC", "0"),
        ("TIMEOUT_MS", "1000"),
        ("START_RATE", start),
        ("STEP_FACTOR", "1.5"),
        ("STEP_SEC", "3"),
        ("SETTLE_SEC", "1"),
        ("WORKER_STATS_URLS", stats.as_str()),
        // the pool's limit is the subject: on a shared 2-core machine the generator's own
        // timers may run late by more than the default 10 ms without being the limit
        ("GENERATOR_LAG_MS", "100"),
        // and an SLO a stalled timer on that machine does not break (a backlog above the
        // pool's rate still grows past it within a step)
        ("SLO_P99_MS", "200"),
    ];
    lcfg.extend_from_slice(loadgen_extra);
    let r = run_loadgen(broker, &lcfg).await;
    let mean_us = w.state.snapshot().processing_us["mean"].as_f64().unwrap();
    stop.cancel();
    (r, pool as f64 * 1e6 / mean_us)
}

/// What every search against such a pool must find: a rate of at most what the pool can do at
/// 10 ms per request and at least 85% of what it did do, not a lower bound, a verdict that
/// names it, at least `min_steps` steps that all saw the pool, and a report the schema accepts.
/// Returns the rate found.
pub fn assert_pool_found(
    r: &loadgen::report::Report,
    pool: u64,
    most: f64,
    min_steps: usize,
) -> f64 {
    let c = r.sections.capacity.as_ref().expect("capacity section");
    assert!(
        c.rate <= pool as f64 * 100.0 && c.rate >= 0.85 * most.min(pool as f64 * 100.0),
        "pool {pool} (at most {most:.0} req/s as measured): {}\n{:#?}",
        c.verdict,
        c.steps
    );
    assert!(!c.lower_bound, "{}", c.verdict);
    assert!(c
        .verdict
        .starts_with(&format!("capacity: {:.0} req/s", c.rate)));
    assert!(c.steps.len() >= min_steps, "{:#?}", c.steps);
    assert!(c.steps.iter().all(|s| s.result.worker_pool == Some(pool)));
    validate_report(&serde_json::to_value(r).unwrap());
    eprintln!(
        "pool {pool}: {} (the pool's measured ceiling {most:.0} req/s); steps {:?}",
        c.verdict,
        c.steps
            .iter()
            .map(|s| s.result.offered_rate)
            .collect::<Vec<_>>()
    );
    c.rate
}
