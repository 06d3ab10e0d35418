//! Reports from JSON (issue 11), on sample reports of a simulated run:
//! - the HTML report has every chart its data allows, each with data, is self-contained and
//!   redacts secrets; absent parts render as notes;
//! - merge is exact (percentiles equal one histogram holding every instance's samples), sums
//!   the books, lines timelines up on wall-clock seconds and keeps a row per instance;
//! - compare flags an injected regression and passes an identical pair;
//! - older reports (no histograms) are refused with a clear message;
//! - a day-long timeline folds into a page of bounded size.

mod report_samples;

use loadgen::reporting::compare::{self, Comparison};
use loadgen::reporting::html::{self, Baseline};
use loadgen::reporting::{hist, merge, LoadedReport, ReportError};
use report_samples::{capacity, old, simulate, Run};
use rr_common::stats::Summary;
use serde_json::Value;
use std::path::PathBuf;

fn loaded(name: &str, v: &Value) -> LoadedReport {
    LoadedReport::from_value(name, v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn out_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reports");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (id, data-points) of every chart figure in a page.
fn charts(page: &str) -> Vec<(String, u64)> {
    page.split("<figure class=\"chart\" id=\"")
        .skip(1)
        .map(|f| {
            let id = f.split('"').next().unwrap().to_string();
            let n = f
                .split("data-points=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            let svg = f.split("</figure>").next().unwrap();
            assert!(
                svg.contains("<svg") && svg.contains("<polyline"),
                "{id} draws no line"
            );
            (id, n)
        })
        .collect()
}

fn ids(cs: &[(String, u64)]) -> Vec<&str> {
    cs.iter().map(|(i, _)| i.as_str()).collect()
}

fn assert_self_contained(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    for bad in ["<script", "src=", "href=\"http", "url(", "@import", "<link"] {
        assert!(!page.contains(bad), "page loads something: found {bad}");
    }
}

#[test]
fn rr_report_has_every_chart_with_data_and_no_secret() {
    let s = simulate(&Run::default());
    let r = loaded("rr.json", &s.report);
    let page = html::render(&r, None);
    std::fs::write(out_dir().join("rr.html"), &page).unwrap();
    assert_self_contained(&page);
    let cs = charts(&page);
    assert_eq!(
        ids(&cs),
        [
            "chart-rates",
            "chart-latency",
            "chart-inflight",
            "chart-workers",
            "chart-percentiles"
        ],
        "active clients are constant: no chart for them"
    );
    for (id, n) in &cs {
        assert!(*n > 10, "{id} has {n} points");
    }
    assert!(page.contains(&format!("data-charts=\"{}\"", cs.len())));
    // 4 lines of 40 seconds on the rates chart; the percentile curve from the histogram
    assert_eq!(cs[0].1, 4 * 40);
    assert!(
        page.contains(">reconnect<") || page.contains("reconnect\n"),
        "faults marked"
    );
    assert!(!page.contains("s3cret"), "a password leaked into the page");
    assert!(page.contains("mqtt://bench:&lt;redacted&gt;@127.0.0.1:1883"));
    assert!(page.contains("data-verdict=\"none\""));
    assert!(page.contains("Books close</span>: sent 35000 = matched 34950 + timeouts 50"));
    let p99 = format!("{:.3}", s.latency.value_at_quantile(0.99) as f64 / 1e3);
    assert!(page.contains(&p99), "p99 {p99} ms shown");
}

#[test]
fn fanout_capacity_thresholds_and_absent_parts_render() {
    let mut fan = simulate(&Run {
        scenario: "fanout",
        ..Run::default()
    })
    .report;
    fan["thresholds"] = serde_json::json!([
        {"expr": "p99<50ms", "passed": true, "actual": "p99 9.1 ms"},
        {"expr": "timeouts==0", "ok": false, "value": 50.0, "limit": 0.0, "line": "✗ timeouts==0 (timeouts 50)"}
    ]);
    let page = html::render(&loaded("fanout.json", &fan), None);
    std::fs::write(out_dir().join("fanout.html"), &page).unwrap();
    let cs = charts(&page);
    for want in [
        "chart-rates",
        "chart-deliveries",
        "chart-connections",
        "chart-latency",
        "chart-percentiles",
    ] {
        assert!(ids(&cs).contains(&want), "no {want} in {:?}", ids(&cs));
    }
    assert!(page.contains("data-verdict=\"fail\""));
    assert!(
        page.contains("✗ <code>timeouts==0</code>") && page.contains("✓ <code>p99&lt;50ms</code>")
    );
    assert!(page.contains("clients_with_loss"), "fan-out figures listed");
    assert!(
        page.contains("<td>delivery ratio</td><td>0.99857</td>"),
        "fan-out books"
    );
    assert!(page.contains("Delivered 1747500 of 1750000 expected, lost 2500."));

    // fan-out instances merge on their delivery books
    let f2 = simulate(&Run {
        scenario: "fanout",
        instance: "sub-2",
        seed: 5,
        faults: vec![],
        ..Run::default()
    })
    .report;
    let m = merge::merge(&[loaded("f1", &fan), loaded("f2", &f2)]).unwrap();
    assert_eq!(m["received"], 1747500 + 1750000);
    assert_eq!(m["expected"], 3500000);
    assert_eq!(m["delivery_ratio"], (1747500.0 + 1750000.0) / 3500000.0);
    assert!(!m.contains_key("match_rate") && !m.contains_key("matched"));
    let cmp = Comparison::of(&loaded("f1", &fan), &loaded("f2", &f2));
    assert_eq!(cmp.line("timeouts").unwrap().label, "lost");
    assert_eq!(cmp.line("timeouts").unwrap().change(), -2500.0);
    assert_eq!(cmp.line("match").unwrap().label, "delivery ratio");

    let mut cap = simulate(&Run::default()).report;
    cap["capacity"] = capacity();
    cap["config"]["SLO_P99_MS"] = 50.into();
    let page = html::render(&loaded("capacity.json", &cap), None);
    std::fs::write(out_dir().join("capacity.html"), &page).unwrap();
    let cs = charts(&page);
    let c = cs
        .iter()
        .find(|(i, _)| i == "chart-capacity")
        .expect("capacity chart");
    assert_eq!(c.1, 4 * 7, "p50, p99, p99.9 and match of 7 steps");
    assert!(
        page.contains("capacity: 7594 req/s (p99 31.2 ms"),
        "verdict line on top"
    );
    assert!(page.contains("id=\"capacity-steps\""));
    assert!(page.contains("SLO p99 50 ms"));

    // no timeline, nothing matched: notes instead of empty charts
    let mut bare = simulate(&Run::default()).report;
    bare.as_object_mut().unwrap().remove("timeline");
    bare["histograms"][hist::LATENCY] = hist::encode(&hist::empty()).into();
    let page = html::render(&loaded("bare.json", &bare), None);
    assert!(charts(&page).iter().all(|(i, _)| i == "chart-percentiles"));
    assert!(page.contains("has no `timeline`") && page.contains("no latency was recorded"));
    assert!(page.contains("id=\"config\""));
}

#[test]
fn merge_is_exact_sums_books_and_lines_up_wall_seconds() {
    let a = simulate(&Run::default());
    // b started 3 s later, ran another seed and a slower system
    let b = simulate(&Run {
        instance: "lg-b",
        start_unix_ms: Run::default().start_unix_ms + 3000,
        seed: 7,
        base_us: 1500,
        faults: vec![],
        ..Run::default()
    });
    let m = merge::merge(&[loaded("a.json", &a.report), loaded("b.json", &b.report)]).unwrap();
    let m = loaded("merged", &Value::Object(m));

    let mut both = hist::empty();
    hist::merge_into(&mut both, &a.latency);
    hist::merge_into(&mut both, &b.latency);
    assert_eq!(Summary::of(&m.latency), Summary::of(&both));
    assert_eq!(
        m.value["latency_us"],
        serde_json::to_value(Summary::of(&both)).unwrap()
    );
    assert_eq!(m.latency.len(), a.latency.len() + b.latency.len());
    assert_ne!(
        Summary::of(&both).p99,
        Summary::of(&a.latency).p99,
        "the mix differs from either"
    );

    for k in ["sent", "matched", "timeouts", "reconnects"] {
        assert_eq!(
            m.u64(k),
            a.report[k].as_u64().unwrap() + b.report[k].as_u64().unwrap(),
            "{k}"
        );
    }
    assert_eq!(
        m.f64("match_rate"),
        m.u64("matched") as f64 / m.u64("sent") as f64
    );
    assert_eq!(m.f64("offered_rate"), 2000.0);

    let tl = m.timeline();
    assert_eq!(tl.len(), 43, "40 s of each, 3 s apart");
    assert_eq!(m.value["timeline_alignment"], "wall_clock");
    assert_eq!(tl[0]["sent"], 1000, "only a in the first 3 s");
    assert_eq!(tl[3]["sent"], 2000);
    assert_eq!(tl[42]["sent"], 1000, "only b in the last 3 s");
    assert_eq!(tl[3]["unix_s"], 1_754_000_003);
    let inst = m.value["instances"].as_array().unwrap();
    assert_eq!(inst.len(), 2);
    assert_eq!(inst[1]["instance_id"], "lg-b");
    assert_eq!(inst[1]["source"], "b.json");
    assert_eq!(inst[1]["latency_us"]["p99"], Summary::of(&b.latency).p99);
    assert_eq!(
        inst[1]["histograms"], b.report["histograms"],
        "kept as served"
    );
    assert_eq!(m.value["config"]["INSTANCE_ID"], "(differs per instance)");
    assert_eq!(inst[0]["config"]["INSTANCE_ID"], "lg-a");

    // a merged report renders, with its instances
    let page = html::render(&m, None);
    std::fs::write(out_dir().join("merged.html"), &page).unwrap();
    assert!(page.contains("id=\"instances\"") && page.contains("an upper bound"));

    // the same instance twice, mixed scenarios, nothing: refused
    let twice = merge::merge(&[loaded("a.json", &a.report), loaded("a2.json", &a.report)]);
    assert!(matches!(twice, Err(ReportError::Merge(ref e)) if e.contains("appears twice")));
    let fan = simulate(&Run {
        scenario: "fanout",
        instance: "f",
        ..Run::default()
    });
    let mixed = merge::merge(&[loaded("a.json", &a.report), loaded("f.json", &fan.report)]);
    assert!(mixed
        .unwrap_err()
        .to_string()
        .contains("merge reports of one scenario"));
    assert!(merge::merge(&[]).is_err());
}

#[test]
fn compare_flags_an_injected_regression_and_passes_an_identical_pair() {
    let base = simulate(&Run::default());
    let rules = compare::parse_rules("p99>+10%, match<-0.001, timeouts>+0").unwrap();
    let same = Comparison::of(
        &loaded("base.json", &base.report),
        &loaded("same.json", &base.report),
    );
    let res = compare::check(&same, &rules);
    assert!(res.iter().all(|r| !r.failed), "{res:?}");
    assert!(same.lines.iter().all(|l| l.change() == 0.0));

    // the same run on a system 3x slower that loses a few more requests
    let worse = simulate(&Run {
        base_us: 2400,
        faults: vec![20, 30],
        ..Run::default()
    });
    let cmp = Comparison::of(
        &loaded("base.json", &base.report),
        &loaded("new.json", &worse.report),
    );
    let res = compare::check(&cmp, &rules);
    let failed: Vec<&str> = res
        .iter()
        .filter(|r| r.failed)
        .map(|r| r.rule.as_str())
        .collect();
    assert_eq!(
        failed,
        ["p99>+10%", "match<-0.001", "timeouts>+0"],
        "{}",
        compare::rules_text(&res)
    );
    assert!(cmp.line("p99").unwrap().change_pct() > 100.0);
    assert_eq!(cmp.line("p99").unwrap().verdict(), "worse");
    let text = cmp.text();
    assert!(
        text.contains("latency p99") && text.contains("worse"),
        "{text}"
    );
    // absolute limits in latency units
    let abs = compare::parse_rules("p99>+1ms,p50<-5ms").unwrap();
    assert_eq!(abs[0].limit, 1000.0);
    let res = compare::check(&cmp, &abs);
    assert!(res[0].failed && !res[1].failed);

    // the comparison embeds in the HTML with its rule results
    let res = compare::check(&cmp, &rules);
    let page = html::render(
        &loaded("new.json", &worse.report),
        Some(&Baseline {
            comparison: &cmp,
            rules: &res,
        }),
    );
    std::fs::write(out_dir().join("compared.html"), &page).unwrap();
    assert!(page.contains("id=\"comparison\"") && page.contains("data-verdict=\"fail\""));

    for bad in [
        "p99",
        "p99>",
        "p98>+10%",
        "p99>+ten%",
        "p99=+10%",
        "match<-x",
    ] {
        let e = compare::parse_rules(bad).unwrap_err();
        assert!(e.contains(bad.split(',').next().unwrap()), "{bad}: {e}");
    }
}

#[test]
fn old_reports_are_refused_clearly() {
    let s = simulate(&Run::default());
    let e = LoadedReport::from_value("old.json", old(&s.report)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("old.json: this report has no `histograms`"),
        "{msg}"
    );
    assert!(
        msg.contains("older loadgen") && msg.contains("re-run"),
        "{msg}"
    );
    let mut half = s.report.clone();
    half["histograms"]
        .as_object_mut()
        .unwrap()
        .remove(hist::SCHEDULE_LAG);
    let msg = LoadedReport::from_value("half.json", half)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("histograms.schedule_lag_us"), "{msg}");
    let mut broken = s.report.clone();
    broken["histograms"][hist::LATENCY] = "not base64!".into();
    let msg = LoadedReport::from_value("broken.json", broken)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("histogram `latency_us` is not base64"),
        "{msg}"
    );
    for (text, want) in [
        ("[1,2]", "not a JSON object"),
        ("{\"scenario\":\"rr\"}", "`instance_id` is missing"),
        ("{", "not a JSON report"),
    ] {
        let msg = LoadedReport::from_text("x.json", text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(want), "{text}: {msg}");
    }
}

#[test]
fn sample_and_merged_reports_follow_the_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/report.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let a = simulate(&Run::default());
    let b = simulate(&Run {
        instance: "lg-b",
        seed: 3,
        ..Run::default()
    });
    let m = merge::merge(&[loaded("a.json", &a.report), loaded("b.json", &b.report)]).unwrap();
    for r in [&a.report, &Value::Object(m)] {
        let errors: Vec<String> = v.iter_errors(r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let mut bad = a.report.clone();
    bad["histograms"][hist::LATENCY] = "not base64!".into();
    assert!(
        !v.is_valid(&bad),
        "the schema checks the encoding's alphabet"
    );
}

#[test]
fn a_day_long_timeline_folds_into_a_small_page() {
    // 86,400 one-second rows (a 24-hour run) under a short run's histograms
    let mut day = simulate(&Run::default());
    day.report["timeline"] = (0..86_400u64)
        .map(|t| {
            serde_json::json!({"t": t, "warmup": t < 60, "offered": 1000, "sent": 1000,
                "matched": 999, "timeouts": 1, "reconnects": u64::from(t % 3600 == 0),
                "inflight": t % 17, "p50_us": 900 + t % 50, "p90_us": 2000, "p99_us": 5000 + t % 999,
                "max_us": 9000 + t % 7777, "lag_p99_us": 100})
        })
        .collect();
    let page = html::render(&loaded("day.json", &day.report), None);
    let cs = charts(&page);
    assert_eq!(cs[0].0, "chart-rates");
    // 4 lines of at most MAX_POINTS points each
    assert!(cs[0].1 <= 4 * 1500 && cs[0].1 >= 4 * 1400, "{:?}", cs[0]);
    assert!(page.contains("Each point covers 58 s"), "the fold is said");
    assert!(page.len() < 1 << 20, "a day's page is {} bytes", page.len());
    eprintln!("24-hour report: {} KiB of HTML", page.len() / 1024);
}
