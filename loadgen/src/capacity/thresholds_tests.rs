//! Tests of THRESHOLDS parsing and evaluation.

use super::*;

fn facts(m: Metric) -> Option<f64> {
    Some(match m {
        Metric::P50 => 800.0,
        Metric::P99 => 31_200.0,
        Metric::P999 => 250_000.0,
        Metric::Match => 0.9996,
        Metric::Timeouts => 12.0,
        Metric::Sent => 100_000.0,
        Metric::OfferedRate => 1000.0,
        Metric::AchievedRate => 995.0,
        Metric::Capacity => return None,
        _ => 0.0,
    })
}

#[test]
fn the_issues_example_parses_and_evaluates() {
    let t = Thresholds::parse(
        "p99<50ms, p999<200ms,match>=0.999,timeouts==0,achieved_rate>=0.99*offered",
    )
    .unwrap();
    assert_eq!(t.0.len(), 5);
    assert_eq!(t.0[0].metric, Metric::P99);
    assert_eq!(t.0[0].op, Op::Lt);
    assert_eq!(t.0[0].limit, Limit::Value(50_000.0));
    assert_eq!(t.0[4].limit, Limit::Scaled(0.99, Metric::OfferedRate));
    let v = t.evaluate(facts);
    let ok: Vec<bool> = v.iter().map(|v| v.ok).collect();
    assert_eq!(ok, [true, false, true, false, true]);
    assert_eq!(v[0].line, "✓ p99<50ms (p99 31.2 ms)");
    assert_eq!(v[1].line, "✗ p999<200ms (p999 250.0 ms)");
    assert_eq!(v[3].line, "✗ timeouts==0 (timeouts 12)");
    assert_eq!(
        v[4].line,
        "✓ achieved_rate>=0.99*offered (achieved_rate 995.0/s, limit 990.0/s)"
    );
    assert_eq!(v[4].limit, Some(990.0));
    assert!(!all_passed(&v));
    assert!(all_passed(&v[..1]));
}

#[test]
fn units_and_operators() {
    let t = Thresholds::parse(
        "p50<=800us,p50>0.5ms,p99<1s,match>=99.9%,sent!=0,p50==800µs,capacity>=500/s",
    )
    .unwrap();
    let v = t.evaluate(facts);
    assert_eq!(
        v.iter().map(|v| v.ok).collect::<Vec<_>>(),
        [true, true, true, true, true, true, false]
    );
    assert_eq!(v[6].line, "✗ capacity>=500/s (not measured in this run)");
    assert_eq!(v[6].value, None);
}

#[test]
fn an_empty_value_means_no_thresholds() {
    assert!(Thresholds::parse("").unwrap().is_empty());
    assert!(Thresholds::parse("  ").unwrap().is_empty());
}

#[test]
fn what_it_cannot_read_is_named() {
    let cases = [
        ("p99", "'p99': no comparison"),
        ("p98<5ms", "'p98<5ms': unknown metric 'p98'"),
        ("p99<50", "'p99<50': a latency needs a unit"),
        ("p99<50 parsecs", "unknown latency unit"),
        ("timeouts==0ms", "takes no unit"),
        ("match>=abc", "not a number"),
        ("achieved_rate>=x*offered", "'x' is not a number"),
        ("achieved_rate>=0.9*bogus", "unknown metric 'bogus'"),
        ("p99<0.5*match", "different kinds"),
        ("p99<50ms,,match>0.9", "an empty condition"),
    ];
    for (value, what) in cases {
        let e = Thresholds::parse(value).unwrap_err();
        assert_eq!(e.var, "THRESHOLDS");
        let line = e.to_string();
        assert!(line.contains(what), "{value}: {line}");
        assert!(line.contains("accepted:"), "{line}");
        assert!(!line.contains('\n'));
    }
}

#[test]
fn a_metric_the_run_cannot_measure_is_found_before_the_run() {
    let t = Thresholds::parse("p99<5ms,achieved_rate>=0.9*capacity").unwrap();
    let (th, m) = t.unmeasurable(|m| m != Metric::Capacity).unwrap();
    assert_eq!(th.expr, "achieved_rate>=0.9*capacity");
    assert_eq!(m, Metric::Capacity);
    assert!(t.unmeasurable(|_| true).is_none());
}

#[test]
fn a_report_gives_its_window_figures() {
    let r = serde_json::json!({
        "sent": 1000, "matched": 998, "timeouts": 2, "match_rate": 0.998,
        "offered_rate": 100.0, "achieved_rate": 99.5, "reconnects": 0,
        "latency_us": {"p50": 800, "p99": 31200, "p999": 40000, "max": 52000},
        "schedule_lag_us": {"p99": 120},
    });
    let t = Thresholds::parse(
        "p99<50ms,match>=0.999,timeouts==0,achieved_rate>=0.99*offered,lag_p99<1ms,capacity>0",
    )
    .unwrap();
    let v = t.evaluate(|m| report_value(&r, m));
    assert_eq!(
        v.iter().map(|v| v.ok).collect::<Vec<_>>(),
        [true, false, false, true, true, false]
    );
    assert_eq!(v[0].value, Some(31_200.0));
    assert_eq!(v[5].line, "✗ capacity>0 (not measured in this run)");
}

#[test]
fn a_capacity_report_is_judged_on_its_answer_step() {
    let step = |rate: f64, p99: u64, passed: bool| {
        serde_json::json!({"offered_rate": rate, "achieved_rate": rate, "p99_us": p99,
            "match_rate": 1.0, "sent": 10, "timeouts": 0, "passed": passed})
    };
    let r = serde_json::json!({
        // the whole search's latency includes the failed steps
        "latency_us": {"p99": 900_000}, "match_rate": 0.9,
        "capacity": {"rate": 1500.0, "steps": [
            step(1000.0, 5_000, true), step(1500.0, 8_000, true), step(2250.0, 800_000, false),
        ]},
    });
    let t = Thresholds::parse("p99<50ms,match>=0.999,capacity>=1400/s,capacity<1600").unwrap();
    let v = t.evaluate(|m| report_value(&r, m));
    assert!(all_passed(&v), "{v:?}");
    assert_eq!(v[0].value, Some(8_000.0));
    // no step passed: the answer has no figures to judge
    let none =
        serde_json::json!({"capacity": {"rate": 0.0, "steps": [step(1000.0, 800_000, false)]}});
    assert_eq!(report_value(&none, Metric::P99), None);
    assert_eq!(report_value(&none, Metric::Capacity), Some(0.0));
}
