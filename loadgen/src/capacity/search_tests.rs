//! Tests of the capacity search against simulated systems (no sockets).

use super::*;

fn params() -> SearchParams {
    SearchParams {
        start_rate: 100.0,
        step_factor: 1.5,
        max_rate: 100_000.0,
        precision: 0.05,
        slo: Slo {
            p99_us: 50_000,
            p999_us: None,
            min_match: 0.999,
        },
        lag_bound_us: 10_000,
        busy_limit: 0.9,
    }
}

/// A system that answers everything within 10 ms up to `capacity` req/s and queues beyond.
fn system(capacity: f64) -> impl Fn(f64) -> StepResult {
    move |rate| {
        let sent = (rate * 10.0) as u64;
        let over = rate > capacity;
        StepResult {
            offered_rate: rate,
            duration_s: 10.0,
            sent,
            matched: if over { sent * 95 / 100 } else { sent },
            timeouts: if over { sent - sent * 95 / 100 } else { 0 },
            p50_us: if over { 150_000 } else { 4_000 },
            p99_us: if over { 212_000 } else { 9_000 },
            p999_us: if over { 400_000 } else { 12_000 },
            lag_p99_us: 800,
            ..StepResult::default()
        }
    }
}

/// Runs the search to the end; returns the outcome and the actions taken.
fn drive(s: &mut Search, sys: impl Fn(f64) -> StepResult) -> (Outcome, Vec<Action>) {
    let mut actions = Vec::new();
    for _ in 0..200 {
        let a = s.next();
        actions.push(a.clone());
        match a {
            Action::Step { rate } => s.record(sys(rate)),
            Action::Drain { .. } => s.drained(true),
            Action::Done(o) => return (o, actions),
        }
    }
    panic!("the search did not end: {actions:?}");
}

#[test]
fn finds_a_known_capacity_within_the_precision() {
    for capacity in [1000.0, 777.0, 42_000.0, 150.0] {
        let mut s = Search::new(params());
        let (o, actions) = drive(&mut s, system(capacity));
        assert!(
            o.rate <= capacity && o.rate >= capacity * 0.95,
            "{capacity}: {o:?}"
        );
        assert_eq!(o.limited_by, LimitedBy::P99);
        assert!(!o.lower_bound);
        // it stepped up geometrically from START_RATE until the first failure
        let rates: Vec<f64> = o.steps.iter().map(|r| r.result.offered_rate).collect();
        assert_eq!(rates[0], 100.0);
        assert!((rates[1] - 150.0).abs() < 1e-9);
        let first_fail = o.steps.iter().position(|r| !r.passed).unwrap();
        assert!(o.steps[..first_fail]
            .iter()
            .all(|r| r.phase == "up" && r.passed));
        assert!(o.steps[first_fail + 1..]
            .iter()
            .all(|r| r.phase == "bisect"));
        // every failed step is followed by a drain at the last good rate
        for (i, a) in actions.iter().enumerate() {
            if let Action::Step { rate } = a {
                if *rate > capacity {
                    assert!(
                        matches!(actions[i + 1], Action::Drain { rate } if rate <= capacity),
                        "{actions:?}"
                    );
                }
            }
        }
        // the verdict names the answer, its figures, and the lowest failure
        let lowest_fail = o
            .steps
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.result.offered_rate)
            .fold(f64::MAX, f64::min);
        assert_eq!(
            o.verdict,
            format!("capacity: {:.0} req/s (p99 9.0 ms, match 1.00000); first failure {lowest_fail:.0} req/s: p99 212.0 ms > 50 ms", o.rate)
        );
        assert!(lowest_fail > capacity && (lowest_fail - o.rate) <= 0.05 * o.rate + 1.0);
    }
}

#[test]
fn the_answer_moves_with_the_system() {
    let answer = |c: f64| drive(&mut Search::new(params()), system(c)).0.rate;
    let (a, b) = (answer(1000.0), answer(2000.0));
    assert!((b / a - 2.0).abs() < 0.1, "{a} {b}");
}

#[test]
fn a_failure_at_the_start_rate_bisects_downwards() {
    let mut p = params();
    p.start_rate = 1000.0;
    let (o, _) = drive(&mut Search::new(p), system(300.0));
    assert!(o.rate <= 300.0 && o.rate >= 285.0, "{o:?}");
    assert_eq!(o.steps[0].result.offered_rate, 1000.0);
    assert_eq!(o.steps[1].result.offered_rate, 500.0);
}

#[test]
fn max_rate_reached_is_a_lower_bound() {
    let mut p = params();
    p.max_rate = 1000.0;
    let (o, _) = drive(&mut Search::new(p), system(1e9));
    assert_eq!(o.rate, 1000.0);
    assert_eq!(o.limited_by, LimitedBy::MaxRate);
    assert!(o.lower_bound);
    assert_eq!(o.steps.last().unwrap().result.offered_rate, 1000.0);
    assert!(
        o.verdict.starts_with("capacity: >= 1000 req/s"),
        "{}",
        o.verdict
    );
    assert!(o.verdict.contains("MAX_RATE"));
}

#[test]
fn a_generator_that_falls_behind_makes_the_answer_a_lower_bound() {
    let sys = |rate: f64| {
        let mut r = system(1e9)(rate);
        if rate > 500.0 {
            r.lag_p99_us = 45_100;
            r.p99_us = 60_000;
            r.sent = (rate * 10.0 * 0.8) as u64;
            r.matched = r.sent;
        }
        r
    };
    let (o, _) = drive(&mut Search::new(params()), sys);
    assert_eq!(o.limited_by, LimitedBy::Generator);
    assert!(o.lower_bound);
    assert_eq!(o.rate, 337.5);
    let last = o.steps.last().unwrap();
    assert!(!last.passed);
    assert_eq!(
        last.generator_limited.as_deref(),
        Some("schedule lag p99 45.1 ms > 10.0 ms")
    );
    assert!(
        o.verdict
            .contains("a lower bound: the generator was the limit at 506 req/s"),
        "{}",
        o.verdict
    );
    assert!(o.verdict.contains("remedy: add CONNECTIONS"));
}

#[test]
fn a_lagging_step_that_still_met_the_slo_counts_what_was_sent() {
    let sys = |rate: f64| {
        let mut r = system(1e9)(rate);
        if rate > 200.0 {
            r.publish_errors = 3;
            r.sent = 2000; // 200/s of the 225 offered
            r.matched = 2000;
        }
        r
    };
    let (o, _) = drive(&mut Search::new(params()), sys);
    assert_eq!(o.limited_by, LimitedBy::Generator);
    assert_eq!(o.rate, 200.0);
    assert!(o.steps.last().unwrap().generator_limited.as_deref() == Some("3 publish errors"));
}

#[test]
fn a_lane_near_a_full_core_is_the_generator() {
    let sys = |rate: f64| StepResult {
        lane_busy: Some(if rate > 300.0 { 0.95 } else { 0.4 }),
        cpu_cores: Some(1.2),
        ..system(1e9)(rate)
    };
    let (o, _) = drive(&mut Search::new(params()), sys);
    assert_eq!(o.limited_by, LimitedBy::Generator);
    assert!(
        o.verdict
            .contains("a scheduler lane busy 95% of the time >= 90% of its core"),
        "{}",
        o.verdict
    );
}

#[test]
fn nothing_answering_ends_at_once() {
    let sys = |rate: f64| StepResult {
        offered_rate: rate,
        duration_s: 10.0,
        sent: 1000,
        timeouts: 1000,
        ..StepResult::default()
    };
    let (o, actions) = drive(&mut Search::new(params()), sys);
    assert_eq!(actions.len(), 2);
    assert_eq!(o.rate, 0.0);
    assert_eq!(o.limited_by, LimitedBy::Match);
    assert_eq!(
        o.verdict,
        "capacity: 0 req/s (no step met the SLO); first failure 100 req/s: match 0.00000 < 0.999"
    );
}

#[test]
fn no_recovery_after_a_failure_ends_at_the_last_good_rate() {
    let mut s = Search::new(params());
    let sys = system(400.0);
    loop {
        match s.next() {
            Action::Step { rate } => s.record(sys(rate)),
            Action::Drain { rate } => {
                assert_eq!(rate, 337.5);
                s.drained(false);
            }
            Action::Done(o) => {
                assert_eq!(o.rate, 337.5);
                assert_eq!(o.limited_by, LimitedBy::P99);
                break;
            }
        }
    }
}

#[test]
fn p999_and_match_slos_and_skips() {
    let mut p = params();
    p.slo.p999_us = Some(10_000);
    let (o, _) = drive(&mut Search::new(p), system(1000.0));
    assert_eq!(o.limited_by, LimitedBy::P999);
    assert_eq!(o.rate, 0.0); // p999 12 ms even when healthy

    // skipped requests count against the match rate
    let r = StepResult {
        sent: 990,
        matched: 990,
        skipped: 10,
        duration_s: 1.0,
        ..StepResult::default()
    };
    assert!((r.match_rate() - 0.99).abs() < 1e-12);
    let mut s = Search::new(params());
    s.record(StepResult {
        offered_rate: 100.0,
        p99_us: 1000,
        ..r
    });
    assert_eq!(s.steps()[0].failed_on, Some(LimitedBy::Match));
}

#[test]
fn recovery_is_judged_on_the_answers_arriving() {
    let s = Search::new(params());
    assert!(s.recovered(20_000, 500, 300.0));
    assert!(!s.recovered(80_000, 500, 300.0));
    assert!(!s.recovered(0, 0, 300.0)); // nothing arrives: not yet
    assert!(s.recovered(0, 0, 0.0)); // resting at 0: quiet is recovered
}

#[test]
fn a_search_that_has_not_ended_reports_a_lower_bound_so_far() {
    let sys = system(300.0);
    let mut s = Search::new(params());
    let o = s.so_far(LimitedBy::Interrupted);
    assert_eq!((o.rate, o.lower_bound, o.steps.len()), (0.0, true, 0));
    assert!(
        o.verdict
            .starts_with("capacity: no answer yet (no step met the SLO; interrupted after 0 steps"),
        "{}",
        o.verdict
    );
    // 100 and 150 pass
    for _ in 0..2 {
        let Action::Step { rate } = s.next() else {
            panic!()
        };
        s.record(sys(rate));
    }
    let o = s.so_far(LimitedBy::Running);
    assert_eq!(o.limited_by, LimitedBy::Running);
    assert_eq!((o.rate, o.steps.len()), (150.0, 2));
    assert_eq!(
        o.verdict,
        "capacity: >= 150 req/s (p99 9.0 ms, match 1.00000; a lower bound: the search is still running, 2 steps so far)"
    );
    // 225 passes, 337.5 fails: the first failure is known, the bisection is not done
    for _ in 0..2 {
        let Action::Step { rate } = s.next() else {
            panic!()
        };
        s.record(sys(rate));
    }
    let o = s.so_far(LimitedBy::Interrupted);
    assert_eq!((o.rate, o.limited_by), (225.0, LimitedBy::Interrupted));
    assert!(
        o.verdict
            .contains("a lower bound: interrupted after 4 steps")
            && o.verdict
                .contains("; first failure 338 req/s: p99 212.0 ms > 50 ms"),
        "{}",
        o.verdict
    );
    // an ended search reports its answer
    let (done, _) = drive(&mut s, sys);
    assert_eq!(s.so_far(LimitedBy::Interrupted), done);
    assert!(!done.lower_bound);
}
