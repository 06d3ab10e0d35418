//! The report subcommands through the binary (issue 11 tests c and d): `loadgen compare` exits
//! 99 on an injected regression and 0 on an identical pair, bad arguments exit 2 with one line,
//! every subcommand refuses old reports (no histograms) with exit 2, and `merge`/`report`
//! write their JSON and HTML.

mod report_samples;

use loadgen::reporting::{hist, LoadedReport};
use report_samples::{capacity, old, simulate, Run};
use rr_common::stats::Summary;
use serde_json::Value;

fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env_remove("REPORT_BASELINE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_json(dir: &std::path::Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p.display().to_string()
}

#[test]
fn c_compare_exits_99_on_an_injected_regression_and_0_on_an_identical_pair() {
    let dir = tempfile::tempdir().unwrap();
    let base = write_json(dir.path(), "base.json", &simulate(&Run::default()).report);
    let same = write_json(dir.path(), "same.json", &simulate(&Run::default()).report);
    let slow = simulate(&Run {
        base_us: 1200,
        ..Run::default()
    });
    let new = write_json(dir.path(), "new.json", &slow.report);
    let rules = "p99>+10%,match<-0.001";

    let (code, out, err) = loadgen(&["compare", &base, &same, "--fail-on", rules]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("✓ p99>+10%") && out.contains("latency p99"),
        "{out}"
    );

    let html = dir.path().join("cmp.html");
    let (code, out, err) = loadgen(&[
        "compare",
        &base,
        &new,
        "--fail-on",
        rules,
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(code, 99, "{out}{err}");
    assert!(
        out.contains("✗ p99>+10%") && out.contains("✓ match<-0.001"),
        "{out}"
    );
    assert!(err.contains("regression: 1 of 2 rules failed"), "{err}");
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("data-verdict=\"fail\""));

    // without rules the table is printed and nothing fails
    let (code, out, _) = loadgen(&["compare", &base, &new]);
    assert_eq!(code, 0);
    assert!(out.contains("worse"));

    // the same through `report --baseline`
    let page = dir.path().join("new.html");
    let (code, _, err) = loadgen(&[
        "report",
        &new,
        "-o",
        page.to_str().unwrap(),
        "--baseline",
        &base,
        "--fail-on",
        "p99>+10%",
    ]);
    assert_eq!(code, 99, "{err}");
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .contains("id=\"comparison\""));

    // bad arguments: exit 2 with one line naming the problem
    for (args, want) in [
        (
            vec!["compare", &base, &new, "--fail-on", "p99>>10%"],
            "invalid --fail-on `p99>>10%`",
        ),
        (
            vec!["compare", &base, &new, "--fail-on", "latency>+1%"],
            "unknown metric `latency`",
        ),
        (vec!["compare", &base], "required"),
        (
            vec!["compare", &base, "/nonexistent.json"],
            "/nonexistent.json: cannot read",
        ),
        (vec!["merge"], "required"),
    ] {
        let (code, out, err) = loadgen(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn d_old_reports_are_rejected_by_every_subcommand_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let s = simulate(&Run::default());
    let new = write_json(dir.path(), "new.json", &s.report);
    let old = write_json(dir.path(), "old.json", &old(&s.report));
    for args in [
        vec!["report", old.as_str()],
        vec!["merge", new.as_str(), old.as_str(), "-o", "/tmp/never.json"],
        vec!["compare", old.as_str(), new.as_str()],
    ] {
        let (code, out, err) = loadgen(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.starts_with(&format!("error: {old}: this report has no `histograms`")),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("panicked") && err.lines().count() == 1,
            "{err}"
        );
    }
}

#[test]
fn merge_and_report_subcommands_write_json_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let a = simulate(&Run::default());
    let b = simulate(&Run {
        instance: "lg-b",
        seed: 9,
        ..Run::default()
    });
    let fa = write_json(dir.path(), "a.json", &a.report);
    let fb = write_json(dir.path(), "b.json", &b.report);
    let out = dir.path().join("fleet/merged.json");
    let (code, stdout, err) = loadgen(&["merge", &fa, &fb, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut both = hist::empty();
    hist::merge_into(&mut both, &a.latency);
    hist::merge_into(&mut both, &b.latency);
    let want = Summary::of(&both);
    assert!(stdout.contains(&format!("p99 {}", want.p99)), "{stdout}");
    let m = LoadedReport::from_file(&out).unwrap();
    assert_eq!(Summary::of(&m.latency), want);
    assert!(
        std::fs::read_to_string(dir.path().join("fleet/merged.html"))
            .unwrap()
            .contains("id=\"instances\"")
    );

    let (code, _, err) = loadgen(&["report", &fa]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(dir.path().join("a.html"))
        .unwrap()
        .contains("chart-percentiles"));
    let (code, out, _) = loadgen(&["merge", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("http://HOST:PORT"), "{out}");
}

#[test]
fn report_charts_writes_the_capacity_plot_as_svg() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = simulate(&Run::default()).report;
    r["capacity"] = capacity();
    let f = write_json(dir.path(), "cap.json", &r);
    let charts = dir.path().join("charts");
    let (code, _, err) = loadgen(&["report", &f, "--charts", charts.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let svg = std::fs::read_to_string(charts.join("chart-capacity.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    for label in ["p50", "p99", "match rate", "capacity 7594 req/s"] {
        assert!(
            svg.contains(label),
            "{label} missing from the capacity plot"
        );
    }
    assert!(charts.join("chart-percentiles.svg").exists());
}
