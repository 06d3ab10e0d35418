//! The HTML report in a real browser (issue 11 test a): headless Chromium (Debian `chromium`)
//! opens the report from a file with the network off (every host name unresolvable, every
//! request sent to a closed local proxy), and Chromium's own network log must show that the
//! page asked for nothing beyond its file; no console message; every chart drawn with data;
//! a full-page screenshot saved under target/tmp/reports/. A control page that does load a
//! remote image and logs an error proves both detectors catch what they look for.
//! Fails, never skips, when chromium is missing (`make install-deps` installs it).

mod report_samples;
mod support;

use loadgen::reporting::{html, LoadedReport};
use report_samples::{capacity, simulate, Run};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join("chromium")))
        .chain([PathBuf::from("/usr/bin/chromium")]);
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "chromium is required by this test and was not found (CHROMIUM_BIN, PATH, \
         /usr/bin/chromium): install Debian's `chromium` package (make install-deps does)"
    );
}

/// What the browser saw of a page.
pub struct Seen {
    pub dom: String,
    /// Console messages (errors, warnings, logs) the page produced.
    pub console: Vec<String>,
    /// URLs the page requested other than its own file.
    pub requests: Vec<String>,
}

fn run_limited(mut cmd: Command, dir: &Path, tag: &str) -> (String, String) {
    let out = dir.join(format!("{tag}.out"));
    let err = dir.join(format!("{tag}.err"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("start chromium");
    let end = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {tag} did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (o, e) = (
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    );
    assert!(status.success(), "chromium {tag} failed ({status}):\n{e}");
    (o, e)
}

fn browser(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        // the network is off: no name resolves, every request goes to a closed local port
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Loads `page` from its file with the network off and reports what happened.
pub fn load_offline(page: &Path) -> Seen {
    let tmp = tempfile::tempdir().unwrap();
    let netlog = tmp.path().join("net.json");
    let mut cmd = browser(&tmp.path().join("profile"));
    cmd.arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()));
    let (dom, err) = run_limited(cmd, tmp.path(), "dump-dom");
    let console = err
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&netlog).expect("net log")).expect("json");
    let mut requests: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let p = &e["params"];
            let url = p["url"].as_str()?;
            // the page's own requests carry its file:// origin; Chromium's background ones do not
            let from_page = ["network_isolation_key", "site_for_cookies"]
                .iter()
                .any(|k| p[*k].as_str().is_some_and(|v| v.contains("file://")));
            (from_page && !url.starts_with("file:")).then(|| url.to_string())
        })
        .collect();
    requests.sort();
    requests.dedup();
    Seen {
        dom,
        console,
        requests,
    }
}

/// A full-page PNG of `page` (width 1200).
pub fn screenshot(page: &Path, png: &Path, height: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let _ = std::fs::remove_file(png);
    let mut cmd = browser(&tmp.path().join("profile"));
    cmd.arg(format!("--window-size=1200,{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()));
    run_limited(cmd, tmp.path(), "screenshot");
    let bytes = std::fs::read(png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "blank screenshot?"
    );
}

/// Every chart of a rendered DOM: (id, data-points, polylines drawn).
pub fn dom_charts(dom: &str) -> Vec<(String, u64, usize)> {
    dom.split("<figure class=\"chart\" id=\"")
        .skip(1)
        .map(|f| {
            let id = f.split('"').next().unwrap().to_string();
            let n = f
                .split("data-points=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let body = f.split("</figure>").next().unwrap();
            (id, n, body.matches("<polyline").count())
        })
        .collect()
}

/// The checks of test a on a report page: offline, silent, every chart with data.
pub fn check_report_page(page: &Path, png: &Path) -> Vec<(String, u64, usize)> {
    let seen = load_offline(page);
    assert!(
        seen.requests.is_empty(),
        "the page requested {:?}",
        seen.requests
    );
    assert!(seen.console.is_empty(), "console: {:?}", seen.console);
    let charts = dom_charts(&seen.dom);
    let declared: usize = seen
        .dom
        .split("data-charts=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .expect("data-charts on body");
    assert_eq!(charts.len(), declared);
    assert!(!charts.is_empty());
    for (id, n, lines) in &charts {
        assert!(*n > 0 && *lines > 0, "{id}: {n} points, {lines} lines");
    }
    screenshot(page, png, 4400);
    charts
}

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reports");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_detectors_catch_a_remote_request_and_a_console_error() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("control.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>control</p>\
         <img src=\"http://report-assets.invalid/logo.png\">\
         <script>console.error('control-error')</script></body></html>",
    )
    .unwrap();
    let seen = load_offline(&page);
    assert_eq!(seen.requests, ["http://report-assets.invalid/logo.png"]);
    assert!(
        seen.console.iter().any(|l| l.contains("control-error")),
        "{:?}",
        seen.console
    );
}

#[test]
fn a_sample_capacity_report_renders_offline_with_every_chart() {
    let mut r = simulate(&Run::default()).report;
    r["capacity"] = capacity();
    r["config"]["SLO_P99_MS"] = 50.into();
    let page = out_dir().join("browser-sample.html");
    let loaded = LoadedReport::from_value("sample.json", r).unwrap();
    std::fs::write(&page, html::render(&loaded, None)).unwrap();
    let charts = check_report_page(&page, &out_dir().join("browser-sample.png"));
    let ids: Vec<&str> = charts.iter().map(|c| c.0.as_str()).collect();
    assert!(
        ids.contains(&"chart-capacity") && ids.contains(&"chart-percentiles"),
        "{ids:?}"
    );
}

/// Test a: a real run (mosquitto, an in-process worker, the loadgen binary with REPORT_JSON and
/// REPORT_HTML) writes an HTML report that renders offline with every chart holding data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_writes_an_html_report_that_renders_offline() {
    let broker = rr_testkit::Mosquitto::start(rr_testkit::MosquittoOptions::new())
        .expect("mosquitto starts (make test installs it)");
    let (w, stop) = support::start_worker(&broker.url(), &[]).await;
    let dir = out_dir();
    let (json, page) = (dir.join("real-run.json"), dir.join("real-run.html"));
    let _ = std::fs::remove_file(&page);
    let bin = env!("CARGO_BIN_EXE_loadgen");
    let out = tokio::process::Command::new(bin)
        .envs([
            ("BROKER", broker.url()),
            ("VIRTUAL_CLIENTS", "2000".into()),
            ("INTERVAL_MS", "1000".into()),
            ("CONNECTIONS", "4".into()),
            ("WARMUP_SEC", "1".into()),
            ("DURATION_SEC", "10".into()),
            ("THRESHOLDS", "p99<100ms,match>=0.999".into()),
            ("METRICS_PORT", "0".into()),
            ("METRICS_ADDR", "127.0.0.1".into()),
            ("PROGRESS_SEC", "0".into()),
            ("INSTANCE_ID", "report-a".into()),
            ("WORKER_STATS_URLS", format!("http://{}/stats", w.http_addr)),
            ("REPORT_JSON", json.display().to_string()),
            ("REPORT_HTML", page.display().to_string()),
        ])
        .env_remove("REPORT_BASELINE")
        .output()
        .await
        .unwrap();
    stop.cancel();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed: {err}");
    assert!(err.contains("HTML report written to"), "{err}");
    let r = LoadedReport::from_file(&json).expect("the run's JSON carries its histograms");
    assert!(
        r.u64("sent") > 5000 && r.latency.len() == r.u64("matched"),
        "{}",
        r.u64("sent")
    );
    let charts = check_report_page(&page, &dir.join("real-run.png"));
    let ids: Vec<&str> = charts.iter().map(|c| c.0.as_str()).collect();
    // the timeline's charts (rates, p50/p90/p99/max per second, in flight, the worker pool) and
    // the percentile distribution, each with data
    for id in [
        "chart-rates",
        "chart-latency",
        "chart-inflight",
        "chart-workers",
        "chart-percentiles",
    ] {
        assert!(ids.contains(&id), "{id} missing: {ids:?}");
    }
    assert!(std::fs::read_to_string(&page).unwrap().contains(">p90<"));
    println!("report screenshot: {}", dir.join("real-run.png").display());
}
