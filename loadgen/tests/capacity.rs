//! The capacity instrument end to end (issue 10 tests a–e) against a real mosquitto started per
//! test on free ports and an in-process worker: STAGES followed second by second, the capacity
//! search against a pool of known throughput, a generator-limited search, THRESHOLDS exit
//! statuses through the binary, and timeline rows that add up to the report's totals.

mod support;

use loadgen::capacity::search::LimitedBy;
use loadgen::capacity::timeline::Row;
use loadgen::report::Report;
use rr_testkit::{Mosquitto, MosquittoOptions};
use support::*;

fn mosquitto() -> Mosquitto {
    Mosquitto::start(MosquittoOptions::new()).expect("mosquitto starts (make test installs it)")
}

fn timeline(r: &Report) -> &[Row] {
    r.sections
        .timeline
        .as_ref()
        .and_then(|t| t.requests())
        .unwrap_or_else(|| panic!("an rr/pub report has a timeline: {r:#?}"))
}

/// Sum of a column over the measured window's rows.
fn window_sum(r: &Report, f: impl Fn(&Row) -> u64) -> u64 {
    timeline(r).iter().filter(|row| !row.warmup).map(f).sum()
}

/// Test e's check: the window's rows add up exactly to the report's totals.
fn assert_rows_sum_to_totals(r: &Report) {
    assert_eq!(window_sum(r, |x| x.sent), r.sent, "sent");
    assert_eq!(window_sum(r, |x| x.duplicates), r.duplicates, "duplicates");
    assert_eq!(window_sum(r, |x| x.skipped), r.skipped, "skipped");
    assert_eq!(window_sum(r, |x| x.publish_errors), r.publish_errors);
    assert_eq!(window_sum(r, |x| x.invalid), r.invalid, "invalid");
    if let Some(b) = r.requests() {
        assert_eq!(window_sum(r, |x| x.matched), b.matched, "matched");
        assert_eq!(window_sum(r, |x| x.timeouts), b.timeouts, "timeouts");
        assert_eq!(window_sum(r, |x| x.late), b.late, "late");
    }
    let warm = timeline(r).iter().filter(|x| x.warmup).count() as u64;
    let warmup_sec = r.config["WARMUP_SEC"].as_u64().unwrap();
    assert_eq!(warm, warmup_sec, "warm-up seconds marked");
    for (i, row) in timeline(r).iter().enumerate() {
        assert_eq!(row.t, i as u64, "one row per second, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stages_are_followed_second_by_second_and_the_books_close() {
    let broker = mosquitto();
    let (_w, stop) = start_worker(&broker.url(), &[]).await;
    // ramp 0 → 2,000 req/s over 4 s, hold 4 s, down to 500 req/s over 4 s
    let r = run_loadgen(
        &broker.url(),
        &[
            ("VIRTUAL_CLIENTS", "4000"),
            ("INTERVAL_MS", "1000"),
            ("CONNECTIONS", "8"),
            ("WARMUP_SEC", "1"),
            ("DURATION_SEC", "60"),
            ("STAGES", "4s:2000/s,4s:2000/s,4s:500/s"),
        ],
    )
    .await;
    stop.cancel();
    assert_books_close(&r);
    assert_eq!(
        r.duration_s, 11.0,
        "the run lasts the stages' sum (DURATION_SEC ignored)"
    );
    assert_eq!(r.reconnects, 0);
    let rows = timeline(&r);
    assert!(rows.len() >= 12, "{rows:#?}");
    // the plan per second: the profile's mean over it
    assert!((rows[1].target_rate - 750.0).abs() < 1e-6, "{:?}", rows[1]);
    assert!((rows[5].target_rate - 2000.0).abs() < 1e-6, "{:?}", rows[5]);
    for (stage, secs) in [("ramp up", 0..4), ("hold", 4..8), ("ramp down", 8..12)] {
        let plan: f64 = rows[secs.clone()].iter().map(|x| x.target_rate).sum();
        let offered: u64 = rows[secs.clone()].iter().map(|x| x.offered).sum();
        let sent: u64 = rows[secs].iter().map(|x| x.sent).sum();
        let off = (offered as f64 - plan).abs() / plan;
        assert!(off <= 0.02, "{stage}: offered {offered} vs plan {plan:.0}");
        assert_eq!(sent, offered, "{stage}: every offered request was sent");
    }
    assert!(
        r.requests().unwrap().match_rate >= 0.999,
        "{:?}",
        r.requests()
    );
    assert!(r.latency_us.p99 < 200_000, "{:?}", r.latency_us);
    // the report's offered rate is what the profile offered over the window
    let planned: f64 = rows[1..12].iter().map(|x| x.target_rate).sum::<f64>() / 11.0;
    assert!(
        (r.offered_rate - planned).abs() < 1.0,
        "{} vs {planned}",
        r.offered_rate
    );
    assert_rows_sum_to_totals(&r);
    validate_report(&serde_json::to_value(&r).unwrap());
}

/// A search against a pool over a mosquitto of its own (`support::search_against_pool`).
async fn search_against_pool_mqtt(pool: u64, start: &str) -> (Report, f64) {
    let broker = mosquitto();
    search_against_pool(&broker.url(), pool, start, &[], &[]).await
}

/// The search's answer against a pool (issue 10: 850..1,000 req/s for 10 workers): what every
/// pool search must find (`support::assert_pool_found`), limited by p99 or match rate, with the
/// first failure named.
fn assert_found(r: &Report, pool: u64, most: f64) -> f64 {
    // (a bisection follows unless the backlog never drains at the last good rate, which ends
    // the search there)
    let rate = assert_pool_found(r, pool, most, 4);
    let c = r.sections.capacity.as_ref().expect("capacity section");
    assert!(
        matches!(c.limited_by, LimitedBy::P99 | LimitedBy::Match),
        "{c:#?}"
    );
    assert!(c.verdict.contains("first failure"), "{}", c.verdict);
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_the_search_finds_the_pools_throughput() {
    // 10 workers × 1 request per 10 ms: at most 1,000 req/s
    let (ten, most) = search_against_pool_mqtt(10, "400").await;
    let rate10 = assert_found(&ten, 10, most);
    // half the pool: half the answer
    let (five, most) = search_against_pool_mqtt(5, "200").await;
    let rate5 = assert_found(&five, 5, most);
    let ratio = rate5 / rate10;
    assert!((0.4..=0.6).contains(&ratio), "{rate5} vs {rate10}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_a_generator_limited_search_is_a_lower_bound() {
    let broker = mosquitto();
    let (_w, stop) = start_worker(&broker.url(), &[]).await;
    // one connection asked for 200,000 req/s: the generator cannot keep its schedule
    let r = run_loadgen(
        &broker.url(),
        &[
            ("SCENARIO", "capacity"),
            ("VIRTUAL_CLIENTS", "200000"),
            ("INTERVAL_MS", "1000"),
            ("CONNECTIONS", "1"),
            ("PUBLISH_WORKERS", "1"),
            ("WARMUP_SEC", "0"),
            ("TIMEOUT_MS", "1000"),
            ("START_RATE", "200000"),
            ("STEP_SEC", "2"),
            ("SETTLE_SEC", "1"),
        ],
    )
    .await;
    stop.cancel();
    let c = r.sections.capacity.as_ref().expect("capacity section");
    assert!(c.lower_bound, "{c:#?}");
    assert_eq!(c.limited_by, LimitedBy::Generator, "{c:#?}");
    assert!(c.verdict.contains("a lower bound"), "{}", c.verdict);
    assert!(c.verdict.contains("remedy"), "{}", c.verdict);
    assert!(c.steps[0].generator_limited.is_some(), "{:#?}", c.steps);
    assert_books_close(&r);
}

/// Runs the loadgen binary to its end; (exit status, stdout, stderr).
fn loadgen_bin(broker: &str, extra: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.env_clear()
        .env("BROKER", broker)
        .env("METRICS_PORT", "0")
        .env("METRICS_ADDR", "127.0.0.1")
        .env("PROGRESS_SEC", "0")
        .env("INSTANCE_ID", "thr")
        .env("VIRTUAL_CLIENTS", "500")
        .env("INTERVAL_MS", "1000")
        .env("CONNECTIONS", "2")
        .env("WARMUP_SEC", "1")
        .env("DURATION_SEC", "2");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("loadgen runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_thresholds_exit_0_99_or_2() {
    let broker = mosquitto();
    let (_w, stop) = start_worker(&broker.url(), &[]).await;
    let url = broker.url();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let json_s = json.to_str().unwrap().to_string();
    let (code, out, err) = tokio::task::spawn_blocking({
        let (url, json_s) = (url.clone(), json_s.clone());
        move || {
            loadgen_bin(
                &url,
                &[
                    (
                        "THRESHOLDS",
                        "p99<2s,match>=0.99,timeouts<=5,achieved_rate>=0.9*offered",
                    ),
                    ("REPORT_JSON", &json_s),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("✓ p99<2s"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["thresholds"].as_array().unwrap().len(), 4, "{v:#}");
    validate_report(&v);

    let (code, out, err) = tokio::task::spawn_blocking({
        let (url, json_s) = (url.clone(), json_s.clone());
        move || {
            loadgen_bin(
                &url,
                &[
                    ("THRESHOLDS", "match>=0.99,p99<1us"),
                    ("REPORT_JSON", &json_s),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 99, "{out}\n{err}");
    assert!(out.contains("✓ match>=0.99"), "{out}");
    assert!(out.contains("✗ p99<1us"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["thresholds"][1]["ok"], false, "{v:#}");

    let (code, _out, err) = tokio::task::spawn_blocking(move || {
        loadgen_bin(&url, &[("THRESHOLDS", "p99<50,match>=0.999")])
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("THRESHOLDS") && err.contains("'p99<50'"),
        "{err}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_timeline_rows_sum_to_the_totals_for_rr_and_pub() {
    let broker = mosquitto();
    let (_w, stop) = start_worker(&broker.url(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("timeline.csv");
    let base = [
        ("VIRTUAL_CLIENTS", "2000"),
        ("INTERVAL_MS", "1000"),
        ("CONNECTIONS", "4"),
        ("WARMUP_SEC", "2"),
        ("DURATION_SEC", "4"),
    ];
    let mut rr = base.to_vec();
    let csv_s = csv.to_str().unwrap().to_string();
    rr.push(("TIMELINE_CSV", &csv_s));
    let r = run_loadgen(&broker.url(), &rr).await;
    assert_books_close(&r);
    assert!(r.sent > 0);
    assert_rows_sum_to_totals(&r);
    let rows = timeline(&r);
    assert!(rows.iter().any(|x| x.p99_us > 0 && x.worker_pool.is_none()));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), rows.len() + 1, "{text}");
    assert!(text.starts_with("t,warmup,target_rate,"));
    validate_report(&serde_json::to_value(&r).unwrap());

    let mut p = base.to_vec();
    p.push(("SCENARIO", "pub"));
    let r = run_loadgen(&broker.url(), &p).await;
    assert!(r.sent > 0);
    assert_rows_sum_to_totals(&r);
    stop.cancel();
}

/// GET /report of the loadgen listening on `port`, as JSON (None until it answers).
async fn live_report(port: u16) -> Option<serde_json::Value> {
    let addr = format!("127.0.0.1:{port}");
    match rr_common::http::get(&addr, "/report", std::time::Duration::from_secs(2)).await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_a_running_search_serves_its_steps_and_ctrl_c_still_reports_them() {
    let broker = mosquitto();
    let (_w, stop) = start_worker(&broker.url(), &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let port = rr_testkit::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.env_clear()
        .env("BROKER", broker.url())
        .env("METRICS_PORT", port.to_string())
        .env("METRICS_ADDR", "127.0.0.1")
        .env("PROGRESS_SEC", "0")
        .env("INSTANCE_ID", "ctrl-c")
        .env("SCENARIO", "capacity")
        // a search that would take minutes (up to 20,000 req/s from 200 req/s by 1.2) and that
        // a busy machine does not end early (an SLO and a generator bound of 10 s)
        .env("VIRTUAL_CLIENTS", "20000")
        .env("INTERVAL_MS", "1000")
        .env("CONNECTIONS", "4")
        .env("WARMUP_SEC", "0")
        .env("TIMEOUT_MS", "1000")
        .env("START_RATE", "200")
        .env("STEP_FACTOR", "1.2")
        .env("STEP_SEC", "2")
        .env("SETTLE_SEC", "1")
        .env("GENERATOR_LAG_MS", "10000")
        .env("SLO_P99_MS", "10000")
        .env("THRESHOLDS", "p99<1000ms")
        .env("REPORT_JSON", &json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("loadgen starts");
    // while it runs: the steps done, the timeline so far and the thresholds in GET /report
    let mut live = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        if let Some(v) = live_report(port).await {
            let two = v["capacity"]["steps"]
                .as_array()
                .is_some_and(|s| s.len() >= 2);
            live = v;
            if two {
                break;
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the loadgen ended ({st}) before two steps:\n{}\n{live:#}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("no two steps in /report within 90 s: {live:#}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let cap = &live["capacity"];
    assert_eq!(cap["limited_by"], "running", "{cap:#}");
    assert_eq!(cap["lower_bound"], true);
    let verdict = cap["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("capacity: >= ") && verdict.contains("the search is still running"),
        "{verdict}"
    );
    let rows = live["timeline"].as_array().expect("the timeline so far");
    assert!(rows.len() >= 4, "{rows:#?}");
    assert!(
        rows.iter().any(|r| r["p90_us"].as_u64() > Some(0)),
        "{rows:#?}"
    );
    assert_eq!(live["thresholds"][0]["expr"], "p99<1000ms", "{live:#}");
    validate_report(&live);

    // Ctrl-C: the loadgen stops, drains and writes its report with the steps done
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("loadgen ends");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("REPORT_JSON written"))
            .unwrap();
    let cap = &v["capacity"];
    assert_eq!(cap["limited_by"], "interrupted", "{cap:#}");
    assert_eq!(cap["lower_bound"], true);
    let steps = cap["steps"].as_array().unwrap();
    assert!(steps.len() >= 2, "{cap:#}");
    let best = steps
        .iter()
        .filter(|s| s["passed"] == true)
        .filter_map(|s| s["offered_rate"].as_f64())
        .fold(0.0, f64::max);
    assert_eq!(cap["rate"].as_f64(), Some(best), "{cap:#}");
    let verdict = cap["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with(&format!("capacity: >= {best:.0} req/s"))
            && verdict.contains(&format!("interrupted after {} steps", steps.len())),
        "{verdict}"
    );
    assert!(
        stdout.contains(verdict),
        "the verdict is printed:\n{stdout}"
    );
    assert!(v["timeline"].as_array().is_some_and(|r| r.len() >= 4));
    assert_eq!(v["thresholds"][0]["ok"], true, "{v:#}");
    assert_eq!(v["unresolved"], 0, "the drain resolved everything: {v:#}");
    validate_report(&v);
    stop.cancel();
}
