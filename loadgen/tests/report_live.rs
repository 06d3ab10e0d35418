//! Issue 11 test b: two loadgen instances against one broker (mosquitto) and one worker, lined
//! up by `START_AT`. `loadgen merge` of their live `GET /report` URLs while they run, and of
//! their report files after, has summed books and percentiles equal to those of one histogram
//! holding both instances' samples (built here from the instances' serialized histograms).

mod support;

use hdrhistogram::Histogram;
use loadgen::reporting::{hist, LoadedReport};
use rr_common::stats::Summary;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const IDS: [&str; 2] = ["fleet-a", "fleet-b"];

async fn merge(sources: &[String], out: &Path) -> LoadedReport {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("merge")
        .args(sources)
        .arg("-o")
        .arg(out)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "loadgen merge {sources:?}: {text}");
    assert!(text.contains("merged 2 reports"), "{text}");
    LoadedReport::from_file(out).expect("the merged report reads back")
}

/// One histogram holding every sample of `hists` (decoded from their serialized form).
fn one_histogram<'a>(hists: impl Iterator<Item = &'a str>) -> Histogram<u64> {
    let mut all = hist::empty();
    for text in hists {
        hist::merge_into(&mut all, &hist::decode(text).expect("histogram decodes"));
    }
    all
}

/// The merged report has the instances' books summed and exactly the percentiles of one
/// histogram holding both instances' samples.
fn assert_exact_merge(merged: &LoadedReport, parts: &[LoadedReport]) {
    for k in [
        "sent",
        "matched",
        "timeouts",
        "late",
        "duplicates",
        "skipped",
    ] {
        let sum: u64 = parts.iter().map(|p| p.u64(k)).sum();
        assert_eq!(merged.u64(k), sum, "{k}");
    }
    for (key, merged_h) in [
        (hist::LATENCY, &merged.latency),
        (hist::SCHEDULE_LAG, &merged.schedule_lag),
    ] {
        let all = one_histogram(
            parts
                .iter()
                .map(|p| p.value["histograms"][key].as_str().unwrap()),
        );
        assert_eq!(merged_h.len(), all.len(), "{key} samples");
        assert_eq!(Summary::of(merged_h), Summary::of(&all), "{key}");
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged_h.value_at_quantile(q),
                all.value_at_quantile(q),
                "{key} q{q}"
            );
        }
        assert_eq!(
            merged.value[key],
            serde_json::to_value(Summary::of(&all)).unwrap(),
            "{key} in the JSON"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_two_instances_merge_exactly_from_live_urls_and_from_files() {
    let broker = rr_testkit::Mosquitto::start(rr_testkit::MosquittoOptions::new())
        .expect("mosquitto starts (make test installs it)");
    let (_w, stop_worker) = support::start_worker(&broker.url(), &[]).await;
    // both instances open their schedule at the same wall-clock second
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let start_at = (now.as_secs() + 4).to_string();
    let mut running = Vec::new();
    for id in IDS {
        let (r, _stop) = support::start_loadgen(
            &broker.url(),
            &[
                ("INSTANCE_ID", id),
                ("VIRTUAL_CLIENTS", "1000"),
                ("INTERVAL_MS", "1000"),
                ("CONNECTIONS", "2"),
                ("WARMUP_SEC", "1"),
                ("DURATION_SEC", "5"),
                ("START_AT", start_at.as_str()),
            ],
        )
        .await;
        running.push(r);
    }
    let urls: Vec<String> = running
        .iter()
        .map(|r| format!("http://{}", r.http_addr))
        .collect();

    // live: wait until both have answers in their window, then merge the URLs
    for r in &running {
        let addr = r.http_addr.to_string();
        rr_testkit::wait_until_async(Duration::from_secs(30), "matched > 1000 in /report", || {
            let addr = addr.clone();
            async move {
                let Ok((200, body)) =
                    rr_common::http::get(&addr, "/report", Duration::from_secs(2)).await
                else {
                    return false;
                };
                let v: Value = serde_json::from_str(&body).unwrap();
                v["matched"].as_u64().unwrap_or(0) > 1000
            }
        })
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let live = merge(&urls, &dir.path().join("live.json")).await;
    let rows = live.value["instances"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    // the merge's own inputs are its instance rows (as served): rebuild them and check
    let served: Vec<LoadedReport> = rows
        .iter()
        .map(|row| LoadedReport::from_value("row", row.clone()).expect("a row reads as a report"))
        .collect();
    assert_exact_merge(&live, &served);
    // lanes hand their histograms over every 0.1 s: most of the answers so far are in them
    assert!(live.latency.len() > 1500, "{}", live.latency.len());
    for row in &rows {
        assert_eq!(
            row["start_unix_ms"].as_u64(),
            Some(start_at.parse::<u64>().unwrap() * 1000),
            "START_AT fixes t = 0 of every instance: {row}"
        );
    }

    // files: the finished reports
    let mut parts = Vec::new();
    for (r, id) in running.into_iter().zip(IDS) {
        let report = r.report().await.expect("run succeeds");
        support::assert_books_close(&report);
        let path = dir.path().join(format!("{id}.json"));
        report.write_json(&path).unwrap();
        parts.push(LoadedReport::from_file(&path).unwrap());
    }
    stop_worker.cancel();
    let files: Vec<String> = IDS
        .iter()
        .map(|id| dir.path().join(format!("{id}.json")).display().to_string())
        .collect();
    let merged = merge(&files, &dir.path().join("files.json")).await;
    assert_exact_merge(&merged, &parts);
    assert_eq!(
        merged.u64("sent"),
        merged.u64("matched") + merged.u64("timeouts")
    );
    assert!(merged.u64("sent") >= 8000, "{}", merged.u64("sent"));
    assert_eq!(
        merged.start_unix_ms(),
        Some(start_at.parse::<u64>().unwrap() * 1000)
    );
    assert!(dir.path().join("files.html").is_file());
}
