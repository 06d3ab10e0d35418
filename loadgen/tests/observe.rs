//! Live observability (deploy/observe issue, tests c-e) against real processes on free ports:
//!
//! - c. a real Prometheus (Debian `prometheus`) scrapes two live loadgens and a worker, loads the
//!   repository's recording rules (monitoring/rules/*.yml) and, through its HTTP API, returns a
//!   cluster-wide match rate >= 0.99 and a finite p99 from the 15 s rules;
//! - d. every metric the Grafana dashboard and the rules use is in a live `/metrics`, and every
//!   `/stats` field the web dashboard reads is in a live `/stats`;
//! - e. headless Chromium (Debian `chromium`) renders the web dashboard of a live run: the DOM
//!   holds charts with data and numeric values, and a PNG screenshot is written (path printed).
//!
//! The tests fail, never skip, when prometheus or chromium is missing (`make install-deps`).
//! Override the binaries with PROMETHEUS_BIN / CHROMIUM_BIN.

mod support;

use loadgen::report::Report;
use rr_common::cli::Validate;
use rr_testkit::{Mosquitto, MosquittoOptions};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;
use tokio_util::sync::CancellationToken;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Workers start with this pool size (support::worker_config sets MIN_WORKERS=4).
const MIN_WORKERS: f64 = 4.0;
const WARMUP_SEC: u64 = 2;

/// The load of every live run here: 1,000 virtual clients x 1 request/s per loadgen. DURATION_SEC
/// is only an upper bound; each test stops its loadgens once it has what it needs.
fn load(instance: &str) -> Vec<(&str, &str)> {
    vec![
        ("VIRTUAL_CLIENTS", "1000"),
        ("CONNECTIONS", "4"),
        ("SHARDS", "16"),
        ("INTERVAL_MS", "1000"),
        ("WARMUP_SEC", "2"),
        ("DURATION_SEC", "50"),
        ("INSTANCE_ID", instance),
    ]
}

// ---------------------------------------------------------------------------------------------
// External tools and processes
// ---------------------------------------------------------------------------------------------

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `$env_var`, then `name` on PATH, then `fallback`; panics with the remedy when none exists.
fn tool(name: &str, env_var: &str, fallback: &str, package: &str) -> PathBuf {
    let mut looked = Vec::new();
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return p;
        }
        looked.push(format!("{env_var}={}", p.display()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if is_executable(&p) {
                return p;
            }
        }
        looked.push(format!("`{name}` on PATH"));
    }
    let p = PathBuf::from(fallback);
    if is_executable(&p) {
        return p;
    }
    looked.push(fallback.to_string());
    panic!(
        "{name} is required by this test and was not found (looked at {}). Install Debian's \
         `{package}` package (`make install-deps` runs scripts/install-deps.sh, which does), or set \
         {env_var}=/path/to/{name}.",
        looked.join(", ")
    );
}

/// Kills and reaps a child process when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` (stdout and stderr to files in `dir`) for at most `limit`; returns
/// (exit status, stdout, stderr without Chromium's D-Bus noise).
async fn run_with_limit(
    mut cmd: Command,
    dir: &Path,
    tag: &str,
    limit: Duration,
) -> (std::process::ExitStatus, String, String) {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let program = format!("{cmd:?}");
    let mut child = ChildGuard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}")),
    );
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= end {
            panic!(
                "{tag} did not finish within {limit:?}: {program}\nstderr:\n{}",
                tail(&err_path, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr: Vec<String> = std::fs::read_to_string(&err_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("dbus") && !l.contains("unexpected operator"))
        .map(str::to_string)
        .collect();
    (status, stdout, stderr.join("\n"))
}

/// GET over HTTP/1.0 (no chunked encoding; Prometheus answers large JSON chunked over 1.1).
async fn get10(addr: &str, path_and_query: &str) -> std::io::Result<(u16, String)> {
    rr_common::http::get(addr, path_and_query, HTTP_TIMEOUT).await
}

async fn get_json(addr: &str, path: &str) -> Value {
    let (code, body) = get10(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    assert_eq!(code, 200, "GET http://{addr}{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

async fn get_text(addr: &str, path: &str) -> String {
    let (code, body) = get10(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    assert_eq!(code, 200, "GET http://{addr}{path}: {body}");
    body
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A live run: mosquitto, one in-process worker, in-process loadgens on free ports
// ---------------------------------------------------------------------------------------------

struct Loadgen {
    addr: String,
    offered: f64,
    started_unix: f64,
    stop: CancellationToken,
    run: loadgen::Running,
}

struct Live {
    _broker: Mosquitto,
    worker: worker::Running,
    worker_stop: CancellationToken,
    loadgens: Vec<Loadgen>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

async fn start_live(instances: &[&str]) -> Live {
    let broker = Mosquitto::start(MosquittoOptions::new())
        .expect("mosquitto starts (make install-deps installs it)");
    let url = broker.url();
    let (worker, worker_stop) = start_worker(&url, &[]).await;
    let worker_stats = format!("http://{}/stats", worker.http_addr);
    let mut loadgens = Vec::new();
    for id in instances {
        let mut settings = load(id);
        settings.push(("WORKER_STATS_URLS", &worker_stats));
        let started_unix = unix_now();
        let (run, stop) = start_loadgen(&url, &settings).await;
        let addr = run.http_addr.to_string();
        wait_ready(&addr).await;
        loadgens.push(Loadgen {
            addr,
            offered: 1000.0,
            started_unix,
            stop,
            run,
        });
    }
    Live {
        _broker: broker,
        worker,
        worker_stop,
        loadgens,
    }
}

impl Live {
    /// Waits until the first loadgen's /stats shows the worker pool and a refreshed recent window.
    async fn wait_for_stats(&self) -> Value {
        let addr = self.loadgens[0].addr.clone();
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let s = get_json(&addr, "/stats").await;
            let ok = s["worker"]["pool_size"].as_u64().unwrap_or(0) > 0
                && s["recent"]["window_s"].as_f64().unwrap_or(0.0) > 0.0
                && s["recent"]["sent_per_s"].as_f64().unwrap_or(0.0) > 0.0;
            if ok {
                return s;
            }
            assert!(
                Instant::now() < end,
                "loadgen /stats never showed the worker pool and a recent window: {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops every loadgen, then the worker; the books of each run close.
    async fn finish(self) -> Vec<Report> {
        let mut reports = Vec::new();
        for lg in self.loadgens {
            lg.stop.cancel();
            let r = tokio::time::timeout(Duration::from_secs(20), lg.run.report())
                .await
                .expect("loadgen drains in time")
                .expect("loadgen run succeeds");
            assert_books_close(&r);
            reports.push(r);
        }
        self.worker_stop.cancel();
        reports
    }
}

// ---------------------------------------------------------------------------------------------
// c. Prometheus with the repository's recording rules
// ---------------------------------------------------------------------------------------------

struct Prometheus {
    addr: String,
    log: PathBuf,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

fn rules_file() -> PathBuf {
    Path::new(REPO)
        .join("monitoring/rules/mqtt-rr-bench.rules.yml")
        .canonicalize()
        .expect("monitoring/rules/mqtt-rr-bench.rules.yml exists")
}

async fn start_prometheus(bin: &Path, loadgens: &[String], workers: &[String]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let rules_glob = rules_file().parent().unwrap().join("*.yml");
    let quote = |v: &[String]| {
        v.iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - \"{}\"\n\
         scrape_configs:\n\
         \x20 - job_name: loadgen\n    static_configs:\n      - targets: [{}]\n\
         \x20 - job_name: worker\n    static_configs:\n      - targets: [{}]\n",
        rules_glob.display(),
        quote(loadgens),
        quote(workers)
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, &config).unwrap();
    let log = dir.path().join("prometheus.log");
    // the port was free a moment ago; if another process takes it first, try another
    for attempt in 0..3 {
        let addr = format!("127.0.0.1:{}", rr_testkit::free_port());
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut child = ChildGuard(child);
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = get10(&addr, "/-/ready").await {
                return Prometheus {
                    addr,
                    log,
                    _child: child,
                    _dir: dir,
                };
            }
            if let Some(st) = child.0.try_wait().unwrap() {
                let log_tail = tail(&log, 30);
                if attempt < 2 && log_tail.contains("address already in use") {
                    break;
                }
                panic!(
                    "prometheus exited ({st}) before it was ready:\n{log_tail}\nconfig:\n{config}"
                );
            }
            assert!(
                Instant::now() < end,
                "prometheus not ready after 30 s:\n{}",
                tail(&log, 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!()
}

fn prom_value(v: &Value) -> f64 {
    match v.as_str().unwrap_or("") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s
            .parse()
            .unwrap_or_else(|e| panic!("bad sample value {v}: {e}")),
    }
}

impl Prometheus {
    /// Instant query; returns (labels, timestamp, value) per series.
    async fn query(&self, q: &str) -> Vec<(Value, f64, f64)> {
        let v = get_json(
            &self.addr,
            &format!("/api/v1/query?query={}", url_encode(q)),
        )
        .await;
        assert_eq!(v["status"], "success", "query {q}: {v}");
        assert_eq!(v["data"]["resultType"], "vector", "query {q}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metric"].clone(),
                    s["value"][0].as_f64().unwrap(),
                    prom_value(&s["value"][1]),
                )
            })
            .collect()
    }

    /// The single sample of a cluster-wide series (recording rules aggregate away all labels):
    /// (timestamp of the sample, value). An instant query stamps its results with the query
    /// time, so the sample's own time (when the rule was evaluated) comes from `timestamp()`.
    async fn scalar(&self, q: &str) -> (f64, f64) {
        let r = self.query(q).await;
        assert_eq!(r.len(), 1, "{q}: expected one series, got {r:?}");
        let t = self.query(&format!("timestamp({q})")).await;
        (t.first().map_or(f64::NAN, |s| s.2), r[0].2)
    }
}

/// Names of the recording rules and alerts defined in the rules file.
fn rule_names(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut records = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start().trim_start_matches("- ").trim();
        if let Some(n) = l.strip_prefix("record:") {
            records.insert(n.trim().to_string());
        } else if let Some(n) = l.strip_prefix("alert:") {
            alerts.insert(n.trim().to_string());
        }
    }
    (records, alerts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_prometheus_evaluates_the_recording_rules_on_a_live_run() {
    let bin = tool(
        "prometheus",
        "PROMETHEUS_BIN",
        "/usr/bin/prometheus",
        "prometheus",
    );
    let live = start_live(&["obs-c-0", "obs-c-1"]).await;
    let lg_addrs: Vec<String> = live.loadgens.iter().map(|l| l.addr.clone()).collect();
    let w_addr = live.worker.http_addr.to_string();
    let prom = start_prometheus(&bin, &lg_addrs, std::slice::from_ref(&w_addr)).await;
    eprintln!("prometheus on {} (log {})", prom.addr, prom.log.display());

    // every loadgen and the worker are scraped
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let up = prom.query("up == 1").await;
        if up.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < end,
            "targets not all up after 15 s: {up:?}\n{}",
            get_text(&prom.addr, "/api/v1/targets").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let all_scraped = unix_now();

    // Wait for a 15 s rule evaluation whose window lies wholly after the warm-up of both loadgens
    // and after the first scrape of every target: rate() over a window that begins before a
    // series does extrapolates only half a scrape interval back, so it would read low.
    let steady_from = live
        .loadgens
        .iter()
        .map(|l| l.started_unix)
        .fold(0.0, f64::max)
        + WARMUP_SEC as f64;
    let want_ts = steady_from.max(all_scraped) + 15.0 + 1.0;
    let end = Instant::now() + Duration::from_secs(40);
    loop {
        let r = prom
            .query("timestamp(mqtt_rr:match_rate:ratio_rate15s)")
            .await;
        if r.first().is_some_and(|s| s.2 >= want_ts) {
            break;
        }
        assert!(
            Instant::now() < end,
            "no evaluation of mqtt_rr:match_rate:ratio_rate15s at or after {want_ts:.1} \
             (now {:.1}; timestamp(...): {r:?})\n{}",
            unix_now(),
            tail(&prom.log, 20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut seen = Vec::new();
    let mut get = |name: &'static str, v: (f64, f64)| {
        seen.push(format!("  {name} = {} (evaluated at {:.1})", v.1, v.0));
        v.1
    };
    let match_15s = get(
        "mqtt_rr:match_rate:ratio_rate15s",
        prom.scalar("mqtt_rr:match_rate:ratio_rate15s").await,
    );
    let p99_15s = get(
        "mqtt_rr:latency_p99:seconds_rate15s",
        prom.scalar("mqtt_rr:latency_p99:seconds_rate15s").await,
    );
    let p50_15s = get(
        "mqtt_rr:latency_p50:seconds_rate15s",
        prom.scalar("mqtt_rr:latency_p50:seconds_rate15s").await,
    );
    let sent_15s = get(
        "mqtt_rr:requests_sent:rate15s",
        prom.scalar("mqtt_rr:requests_sent:rate15s").await,
    );
    let matched_15s = get(
        "mqtt_rr:responses_matched:rate15s",
        prom.scalar("mqtt_rr:responses_matched:rate15s").await,
    );
    let timeouts_15s = get(
        "mqtt_rr:requests_timeout:rate15s",
        prom.scalar("mqtt_rr:requests_timeout:rate15s").await,
    );
    let worker_rx_15s = get(
        "mqtt_rr:worker_requests_received:rate15s",
        prom.scalar("mqtt_rr:worker_requests_received:rate15s")
            .await,
    );
    let offered = get(
        "mqtt_rr:offered_rate:sum",
        prom.scalar("mqtt_rr:offered_rate:sum").await,
    );
    let pool = get(
        "mqtt_rr:worker_pool_size:sum",
        prom.scalar("mqtt_rr:worker_pool_size:sum").await,
    );
    let match_total = get(
        "mqtt_rr:match_rate:ratio_total",
        prom.scalar("mqtt_rr:match_rate:ratio_total").await,
    );
    let match_1m = get(
        "mqtt_rr:match_rate:ratio_rate1m",
        prom.scalar("mqtt_rr:match_rate:ratio_rate1m").await,
    );
    let p99_1m = get(
        "mqtt_rr:latency_p99:seconds_rate1m",
        prom.scalar("mqtt_rr:latency_p99:seconds_rate1m").await,
    );
    // the loadgens' own view of the same seconds, for the messages below
    let mut own = Vec::new();
    for l in &live.loadgens {
        let s = get_json(&l.addr, "/stats").await;
        own.push(format!(
            "{}: achieved {} req/s, recent sent/s {}, schedule lag p99 {} us, skipped {}, inflight {}",
            s["instance_id"], s["achieved_rate"], s["recent"]["sent_per_s"],
            s["schedule_lag_us"]["p99"], s["skipped"], s["inflight"]
        ));
    }
    eprintln!("loadgen /stats:\n  {}", own.join("\n  "));
    let raw = get_json(
        &prom.addr,
        &format!(
            "/api/v1/query?query={}",
            url_encode("loadgen_requests_sent_total[20s]")
        ),
    )
    .await;
    let raw: Vec<String> = raw["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let v: Vec<String> = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    format!(
                        "{:.3}={}",
                        p[0].as_f64().unwrap() % 100.0,
                        p[1].as_str().unwrap()
                    )
                })
                .collect();
            format!("{}: {}", s["metric"]["instance"], v.join(" "))
        })
        .collect();

    let per_instance = prom
        .query("sum by (instance) (rate(loadgen_requests_sent_total[15s]))")
        .await;
    eprintln!("recording rules from Prometheus:\n{}", seen.join("\n"));

    let want_offered: f64 = live.loadgens.iter().map(|l| l.offered).sum();
    assert_eq!(
        per_instance.len(),
        2,
        "both loadgens counted: {per_instance:?}"
    );
    assert!(
        (offered - want_offered).abs() < 1e-6,
        "offered_rate:sum {offered} != {want_offered} (the sum over both loadgens)"
    );
    assert!(
        match_15s.is_finite() && match_15s >= 0.99,
        "cluster-wide match rate over 15 s {match_15s} < 0.99"
    );
    assert!(
        p99_15s.is_finite() && p99_15s > 0.0 && p99_15s < 5.0,
        "p99 over 15 s must be finite, > 0 and under TIMEOUT_MS (5 s): {p99_15s}"
    );
    assert!(
        p50_15s.is_finite() && p50_15s > 0.0 && p50_15s <= p99_15s,
        "p50 {p50_15s} vs p99 {p99_15s}"
    );
    assert!(
        (sent_15s - want_offered).abs() / want_offered <= 0.10,
        "sent rate over 15 s {sent_15s} vs offered {want_offered}; per instance \
         {per_instance:?}; loadgens: {own:#?}; raw samples (s % 100 = value): {raw:#?}"
    );
    assert!(
        matched_15s > 0.0 && matched_15s <= sent_15s * 1.01,
        "matched {matched_15s} vs sent {sent_15s}"
    );
    assert!(timeouts_15s.is_finite() && timeouts_15s >= 0.0);
    assert!(worker_rx_15s > 0.0, "worker receive rate {worker_rx_15s}");
    assert!(
        pool >= MIN_WORKERS,
        "worker pool sum {pool} < {MIN_WORKERS}"
    );
    assert!(
        (0.99..=1.0).contains(&match_total),
        "whole-run match rate {match_total}"
    );
    assert!(
        match_1m.is_finite() && match_1m > 0.0,
        "1m match rate {match_1m}"
    );
    assert!(p99_1m.is_finite() && p99_1m > 0.0, "1m p99 {p99_1m}");

    // Every rule of the file is loaded and evaluates without error.
    let (records, alerts) = rule_names(&std::fs::read_to_string(rules_file()).unwrap());
    let rules = get_json(&prom.addr, "/api/v1/rules").await;
    let mut loaded = BTreeSet::new();
    let mut unhealthy = Vec::new();
    for g in rules["data"]["groups"].as_array().expect("rule groups") {
        for r in g["rules"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap().to_string();
            if r["health"] != "ok" {
                unhealthy.push(format!("{name}: {} {}", r["health"], r["lastError"]));
            }
            loaded.insert(name);
        }
    }
    let defined: BTreeSet<String> = records.union(&alerts).cloned().collect();
    assert!(records.len() >= 40, "rules file parsed: {records:?}");
    assert_eq!(loaded, defined, "rules Prometheus loaded vs the rules file");
    assert!(unhealthy.is_empty(), "rules not healthy: {unhealthy:#?}");
    let firing = prom.query("ALERTS{alertstate=\"firing\"}").await;
    assert!(
        firing.is_empty(),
        "alerts firing on a healthy run: {firing:?}"
    );

    for r in live.finish().await {
        assert!(r.rq().match_rate >= 0.99, "{r:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// d. Metric names and /stats fields of the dashboards exist in live output
// ---------------------------------------------------------------------------------------------

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Identifiers of a PromQL expression (or rules text) outside string literals that name
/// contract metrics (loadgen_*, worker_*, fanout_*) or recording rules (mqtt_rr:*).
fn promql_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if is_ident_start(c)
            && (i == 0 || !is_ident_char(chars[i - 1]) && chars[i - 1] != '$')
        {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if ["loadgen_", "worker_", "fanout_", "mqtt_rr:"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                out.insert(name);
            }
        } else {
            i += 1;
        }
    }
    out
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "expr" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                }
                collect_exprs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

/// Every query of every Grafana dashboard in monitoring/grafana/dashboards/.
fn grafana_exprs() -> Vec<(String, String)> {
    let dir = Path::new(REPO).join("monitoring/grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("monitoring/grafana/dashboards") {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "json") {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let mut exprs = Vec::new();
            collect_exprs(&v, &mut exprs);
            let file = p.file_name().unwrap().to_string_lossy().to_string();
            out.extend(exprs.into_iter().map(|e| (file.clone(), e)));
        }
    }
    out
}

/// The rules file without comment lines and without the `record:` names (what the rules read).
fn rules_exprs_text(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with('#') && !t.starts_with("- record:") && !t.starts_with("record:")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(name, type)` of monitoring/metric-names.txt.
fn contract_metrics() -> Vec<(String, String)> {
    std::fs::read_to_string(Path::new(REPO).join("monitoring/metric-names.txt"))
        .expect("monitoring/metric-names.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            (
                it.next().unwrap().to_string(),
                it.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The sample names a contract metric shows in /metrics (histograms as _bucket/_sum/_count).
fn sample_names(name: &str, kind: &str) -> Vec<String> {
    if kind == "histogram" {
        ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect()
    } else {
        vec![name.to_string()]
    }
}

/// The literal paths of `get(s, "a.b")` (rr/pub /stats) and `fan(s, "a.b")` (fanout-only
/// fields) in the web dashboard's script; panics on any other access to the snapshot `s`.
fn dashboard_stats_paths(html: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let script = html
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(s, _)| s)
        .expect("dashboard has an inline <script>");
    let mut sets = [BTreeSet::new(), BTreeSet::new()];
    for (i, call) in ["get(s, \"", "fan(s, \""].iter().enumerate() {
        for (pos, _) in script.match_indices(call) {
            let rest = &script[pos + call.len()..];
            let path = rest.split('"').next().unwrap();
            assert!(
                !path.is_empty()
                    && path
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
                "bad /stats path in dashboard: {path:?}"
            );
            sets[i].insert(path.to_string());
        }
    }
    // no other way into the snapshot: `s.x`, `s[x]` would escape the check above
    let chars: Vec<char> = script.chars().collect();
    for i in 0..chars.len().saturating_sub(1) {
        let before_ok =
            i == 0 || !(is_ident_char(chars[i - 1]) || chars[i - 1] == '.' || chars[i - 1] == '$');
        if chars[i] == 's' && before_ok && (chars[i + 1] == '.' || chars[i + 1] == '[') {
            let line = script[..script.char_indices().nth(i).unwrap().0]
                .lines()
                .count();
            panic!(
                "dashboard.html script line {line}: reads the /stats snapshot directly (`s{}`); \
                 use get(s, \"path\") or fan(s, \"path\") so observe.rs can check the field",
                chars[i + 1]
            );
        }
    }
    let [rr, fanout] = sets;
    (rr, fanout)
}

/// Whether `path` ("a.b.c") exists in `v` (the value may be null).
fn has_path(v: &Value, path: &str) -> bool {
    let mut cur = v;
    for part in path.split('.') {
        match cur.get(part) {
            Some(x) => cur = x,
            None => return false,
        }
    }
    true
}

/// Runs SCENARIO=fanout briefly through `loadgen::start` (50 WebSocket subscribers on
/// mosquitto, 100 msg/s over 10 subjects) and returns its /metrics names and /stats once
/// messages arrive.
async fn live_fanout() -> (BTreeSet<String>, Value) {
    use clap::Parser;
    let broker = Mosquitto::start(MosquittoOptions::new().ws_listeners(1))
        .expect("mosquitto with a WebSocket listener starts");
    let args = vec![
        "loadgen".to_string(),
        "--scenario=fanout".into(),
        format!("--gateway-urls={}", broker.ws_urls()[0]),
        format!("--publish-broker={}", broker.url()),
        "--clients=50".into(),
        "--subjects=10".into(),
        "--publish-rate=100".into(),
        "--warmup-sec=1".into(),
        "--duration-sec=30".into(),
        "--instance-id=obs-d-fanout".into(),
        "--metrics-addr=127.0.0.1".into(),
        "--metrics-port=0".into(),
        "--progress-sec=0".into(),
    ];
    let cfg = loadgen::config::Config::try_parse_from(&args)
        .unwrap_or_else(|e| panic!("fanout settings {args:?}: {e}"))
        .validate()
        .unwrap_or_else(|e| panic!("fanout settings {args:?}: {e}"));
    let stop = CancellationToken::new();
    let run = loadgen::start(cfg, stop.clone())
        .await
        .expect("fanout run starts");
    let addr = run.http_addr.to_string();
    let end = Instant::now() + Duration::from_secs(20);
    let (names, stats) = loop {
        if let (Ok((200, m)), Ok((200, s))) =
            (get10(&addr, "/metrics").await, get10(&addr, "/stats").await)
        {
            let stats: Value = serde_json::from_str(&s).expect("fanout /stats is JSON");
            if stats["received"].as_u64().unwrap_or(0) > 0 {
                break (parse_prometheus(&m).into_iter().collect(), stats);
            }
        }
        if run.is_finished() {
            panic!(
                "fanout run ended early: {:?}",
                run.report().await.map(|_| ())
            );
        }
        assert!(
            Instant::now() < end,
            "fanout run never showed received messages in /stats (addr {addr})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), run.report()).await;
    drop(broker);
    (names, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_dashboard_and_rule_metrics_exist_in_live_output() {
    let live = start_live(&["obs-d"]).await;
    let stats = live.wait_for_stats().await;
    let lg = &live.loadgens[0].addr;
    let w = live.worker.http_addr.to_string();
    let lg_metrics = get_text(lg, "/metrics").await;
    let w_metrics = get_text(&w, "/metrics").await;
    let mut live_names: BTreeSet<String> = parse_prometheus(&lg_metrics).into_iter().collect();
    live_names.extend(parse_prometheus(&w_metrics));

    // what the dashboards and rules use
    let grafana = grafana_exprs();
    assert!(
        grafana.len() >= 30,
        "Grafana queries found: {}",
        grafana.len()
    );
    let rules_text = std::fs::read_to_string(rules_file()).unwrap();
    let (records, _) = rule_names(&rules_text);
    let mut used: Vec<(String, String)> = Vec::new(); // (where, name)
    for (file, e) in &grafana {
        let names = promql_names(e);
        assert!(
            !names.is_empty(),
            "{file}: query uses no contract metric: {e}"
        );
        used.extend(names.into_iter().map(|n| (format!("grafana {file}"), n)));
    }
    let rule_uses = promql_names(&rules_exprs_text(&rules_text));
    assert!(rule_uses.len() >= 20, "rules read {rule_uses:?}");
    used.extend(rule_uses.into_iter().map(|n| ("rules".to_string(), n)));

    let contract = contract_metrics();
    // fanout_* names come from a live SCENARIO=fanout run (its own broker with WebSockets)
    let (fanout_names, fanout_stats) = live_fanout().await;
    let live_or_fanout = |n: &String| {
        if n.starts_with("fanout_") {
            fanout_names.contains(n)
        } else {
            live_names.contains(n)
        }
    };

    let mut missing = Vec::new();
    let mut checked = BTreeSet::new();
    for (place, name) in &used {
        if name.starts_with("mqtt_rr:") {
            if !records.contains(name) {
                missing.push(format!(
                    "{place}: {name} is no recording rule of the rules file"
                ));
            }
        } else if live_or_fanout(name) {
            checked.insert(name.clone());
        } else {
            missing.push(format!(
                "{place}: {name} missing from live loadgen/worker/fanout /metrics"
            ));
        }
    }
    // the contract list itself matches what runs
    for (name, kind) in &contract {
        for s in sample_names(name, kind) {
            if !live_or_fanout(&s) {
                missing.push(format!(
                    "monitoring/metric-names.txt: {s} missing from live /metrics"
                ));
            }
        }
    }

    // the web dashboard's /stats fields
    let html = std::fs::read_to_string(Path::new(REPO).join("loadgen/src/web/dashboard.html"))
        .expect("dashboard.html");
    let served = get_text(lg, "/").await;
    assert_eq!(
        served, html,
        "loadgen serves loadgen/src/web/dashboard.html at /"
    );
    let (rr_paths, fanout_paths) = dashboard_stats_paths(&html);
    assert!(rr_paths.len() >= 20, "dashboard /stats paths: {rr_paths:?}");
    for p in &rr_paths {
        if !has_path(&stats, p) {
            missing.push(format!(
                "dashboard.html reads /stats field {p}, absent from a live /stats"
            ));
        }
    }
    for p in &fanout_paths {
        if !has_path(&fanout_stats, p) {
            missing.push(format!(
                "dashboard.html reads fanout /stats field {p}, absent from a live fanout /stats"
            ));
        }
    }
    eprintln!(
        "checked live: {} metric names used by Grafana and the rules ({} with fanout_*), {} \
         contract names, {} rr /stats paths, {} fanout /stats paths {fanout_paths:?}",
        checked.len(),
        checked.iter().filter(|n| n.starts_with("fanout_")).count(),
        contract.len(),
        rr_paths.len(),
        fanout_paths.len(),
    );
    assert!(
        missing.is_empty(),
        "dashboards or rules drifted from the live output:\n{}",
        missing.join("\n")
    );
    live.finish().await;
}

// ---------------------------------------------------------------------------------------------
// e. Headless Chromium renders the web dashboard of a live run
// ---------------------------------------------------------------------------------------------

fn chromium_cmd(bin: &Path, profile: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1400,1000",
        // the page polls /stats every second: let 6 s of (virtual) time pass before the dump
        "--virtual-time-budget=6000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The start tag of the element with `id` in a serialized DOM.
fn tag_with_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let needle = format!("id=\"{id}\"");
    let pos = dom
        .find(&needle)
        .unwrap_or_else(|| panic!("no element #{id} in the DOM"));
    let start = dom[..pos].rfind('<').unwrap();
    let end = pos + dom[pos..].find('>').unwrap();
    &dom[start..=end]
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let pos = tag.find(&needle)? + needle.len();
    tag[pos..].split('"').next()
}

fn number_of(dom: &str, id: &str) -> f64 {
    let tag = tag_with_id(dom, id);
    let raw = attr(tag, "data-value").unwrap_or_else(|| panic!("#{id} has no data-value: {tag}"));
    raw.parse()
        .unwrap_or_else(|_| panic!("#{id} data-value is not a number: {tag}"))
}

fn text_of(dom: &str, id: &str) -> String {
    let tag = tag_with_id(dom, id);
    let pos = dom.find(tag).unwrap() + tag.len();
    dom[pos..].split('<').next().unwrap().to_string()
}

/// (width, height) from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_headless_chromium_renders_the_live_dashboard() {
    let bin = tool("chromium", "CHROMIUM_BIN", "/usr/bin/chromium", "chromium");
    let live = start_live(&["obs-e"]).await;
    live.wait_for_stats().await;
    // a few seconds of steady load, so the recent window and the worker pool are established
    wait_sending_for(&live.loadgens[0].addr, 3.0).await;
    let url = format!("http://{}/", live.loadgens[0].addr);
    let tmp = tempfile::tempdir().unwrap();

    // 1. DOM after ~6 polls
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = chromium_cmd(&bin, profile.path());
    cmd.arg("--dump-dom").arg(&url);
    let (st, dom, err) = run_with_limit(cmd, tmp.path(), "dump-dom", Duration::from_secs(45)).await;
    assert!(
        st.success() && dom.contains("</html>"),
        "chromium --dump-dom failed ({st}):\n{err}\n{dom}"
    );

    let body = tag_with_id(&dom.replace("<body ", "<body id=\"body\" "), "body").to_string();
    let polls: u32 = attr(&body, "data-polls").unwrap().parse().unwrap();
    let errors: u32 = attr(&body, "data-errors").unwrap().parse().unwrap();
    assert!(polls >= 3, "dashboard polled /stats {polls} times: {body}");
    assert_eq!(errors, 0, "dashboard poll errors: {body}");
    let mut charts = Vec::new();
    for c in ["rate", "match", "latency", "timeouts", "worker"] {
        let tag = tag_with_id(&dom, &format!("chart-{c}"));
        let n: u32 = attr(tag, "data-points").unwrap().parse().unwrap();
        let polylines = dom
            .split(&format!("id=\"chart-{c}\""))
            .nth(1)
            .and_then(|r| r.split("</svg>").next())
            .map_or(0, |svg| svg.matches("<polyline").count());
        assert!(n > 1, "chart-{c} holds {n} points: {tag}");
        assert!(polylines >= 1, "chart-{c} draws no line");
        charts.push(format!("chart-{c}={n} points/{polylines} lines"));
    }
    let fanout_points: u32 = attr(tag_with_id(&dom, "chart-fanout"), "data-points")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(fanout_points, 0, "no fanout data in an rr run");
    let worker_card = dom
        .match_indices("data-when=\"worker\"")
        .map(|(p, _)| &dom[dom[..p].rfind('<').unwrap()..p])
        .find(|t| t.contains("class=\"card"))
        .expect("worker card");
    assert!(
        !worker_card.contains("hidden"),
        "worker card hidden: {worker_card}"
    );

    let offered = number_of(&dom, "v-offered-rate");
    let achieved = number_of(&dom, "v-achieved-rate");
    let matched = number_of(&dom, "v-matched-rate");
    let match_rate = number_of(&dom, "v-match-rate");
    let p50 = number_of(&dom, "v-p50");
    let p99 = number_of(&dom, "v-p99");
    let pool = number_of(&dom, "v-pool-size");
    let timeouts = number_of(&dom, "v-timeouts");
    let vclients = number_of(&dom, "v-virtual-clients");
    eprintln!(
        "dashboard DOM: polls {polls}, {}; offered {offered}, achieved {achieved}, matched/s {matched}, \
         match rate {match_rate}, p50 {p50} us, p99 {p99} us, pool {pool}, timeouts/s {timeouts}, \
         match tile {:?}, p99 tile {:?}",
        charts.join(", "),
        text_of(&dom, "v-match-rate"),
        text_of(&dom, "v-p99"),
    );
    assert_eq!(offered, 1000.0);
    assert_eq!(vclients, 1000.0);
    assert!(
        (achieved - offered).abs() / offered <= 0.2,
        "achieved {achieved}"
    );
    assert!(matched > 0.0, "matched/s {matched}");
    assert!(
        (0.99..=1.0).contains(&match_rate),
        "match rate {match_rate}"
    );
    assert!(
        p50 > 0.0 && p99 >= p50 && p99 < 5e6,
        "p50 {p50} us, p99 {p99} us"
    );
    assert!(pool >= MIN_WORKERS, "worker pool {pool}");
    assert!(timeouts >= 0.0);
    assert_eq!(text_of(&dom, "v-scenario"), "rr");
    assert_eq!(text_of(&dom, "v-instance"), "obs-e");
    assert!(text_of(&dom, "v-match-rate").ends_with('%'));

    // 2. screenshot
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("observe");
    std::fs::create_dir_all(&out_dir).unwrap();
    let png = out_dir.join("web-dashboard.png");
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = chromium_cmd(&bin, profile.path());
    cmd.arg(format!("--screenshot={}", png.display())).arg(&url);
    let (st, _, err) = run_with_limit(cmd, tmp.path(), "screenshot", Duration::from_secs(45)).await;
    assert!(st.success(), "chromium --screenshot failed ({st}):\n{err}");
    let bytes = std::fs::read(&png)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{err}", png.display()));
    assert_eq!(png_size(&bytes), (1400, 1000), "screenshot size");
    assert!(
        bytes.len() > 20_000,
        "screenshot is {} bytes: blank?",
        bytes.len()
    );
    println!("web dashboard screenshot: {}", png.display());
    eprintln!("web dashboard screenshot: {}", png.display());

    live.finish().await;
}
