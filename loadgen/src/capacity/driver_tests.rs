//! The driver on a simulated clock against a simulated system with a known capacity and a
//! backlog that drains at that capacity.

use super::*;
use crate::capacity::search::{LimitedBy, SearchParams, Slo};
use std::sync::Mutex;

const S: u64 = NS_PER_S;
const TIMEOUT_S: u64 = 1;

struct Sim {
    capacity: f64,
    now: u64,
    /// (from, rate) changes in the order made, and when each was made.
    changes: Vec<(u64, f64, u64)>,
    steps: Vec<(u64, u64)>,
    /// Per closed second: (rate, backlog at its start).
    secs: Vec<(f64, f64)>,
}

impl Sim {
    fn rate_at(&self, t: u64) -> f64 {
        // later changes replace what earlier ones planned from their time on
        let mut rate = 0.0;
        let mut best: Option<(usize, u64)> = None;
        for (i, &(from, _, _)) in self.changes.iter().enumerate() {
            if from <= t && best.is_none_or(|(bi, bf)| from > bf || (from == bf && i > bi)) {
                best = Some((i, from));
            }
        }
        if let Some((i, _)) = best {
            rate = self.changes[i].1;
        }
        rate
    }

    /// Advances the simulated system through every whole second before `now`.
    fn advance(&mut self) {
        while (self.secs.len() as u64 + 1) * S <= self.now {
            let s = self.secs.len() as u64;
            let rate = self.rate_at(s * S);
            let backlog = self
                .secs
                .last()
                .map_or(0.0, |&(r, b)| (b + r - self.capacity).max(0.0));
            self.secs.push((rate, backlog));
        }
    }

    fn healthy(&self, s: usize) -> bool {
        let (rate, backlog) = self.secs[s];
        rate <= self.capacity && backlog == 0.0
    }
}

struct FakeRun(Mutex<Sim>);

impl Probe for FakeRun {
    fn now_ns(&self) -> u64 {
        self.0.lock().unwrap().now
    }
    fn sleep_until(&self, ns: u64) -> impl std::future::Future<Output = ()> + Send {
        let mut g = self.0.lock().unwrap();
        g.now = g.now.max(ns);
        g.advance();
        std::future::ready(())
    }
    fn set_rate_from(&self, at_ns: u64, rate: f64) {
        let mut g = self.0.lock().unwrap();
        let now = g.now;
        g.changes.push((at_ns, rate, now));
    }
    fn open_step(&self, from_ns: u64, to_ns: u64) {
        self.0.lock().unwrap().steps.push((from_ns, to_ns));
    }
    fn step_latency(&self) -> (Summary, Summary) {
        let g = self.0.lock().unwrap();
        let &(from, to) = g.steps.last().unwrap();
        let ok = (from / S..to / S).all(|s| g.healthy(s as usize));
        let lat = if ok {
            Summary {
                p50: 2_000,
                p99: 5_000,
                p999: 8_000,
                ..Summary::default()
            }
        } else {
            Summary {
                p50: 150_000,
                p99: 300_000,
                p999: 400_000,
                ..Summary::default()
            }
        };
        (
            lat,
            Summary {
                p99: 900,
                ..Summary::default()
            },
        )
    }
    fn complete_before(&self) -> u64 {
        (self.0.lock().unwrap().now / S).saturating_sub(TIMEOUT_S + 1)
    }
    fn counts(&self, from: u64, to: u64) -> Counts {
        let g = self.0.lock().unwrap();
        assert!(
            to <= g.secs.len() as u64,
            "counts asked before the seconds closed"
        );
        let mut c = Counts::default();
        for s in from..to {
            let sent = g.secs[s as usize].0 as u64;
            c.0[Field::Sent as usize] += sent;
            c.0[Field::Offered as usize] += sent;
            let matched = if g.healthy(s as usize) {
                sent
            } else {
                sent * 9 / 10
            };
            c.0[Field::Matched as usize] += matched;
            c.0[Field::Timeout as usize] += sent - matched;
        }
        c
    }
    fn last_row(&self) -> Option<Row> {
        let g = self.0.lock().unwrap();
        let s = g.secs.len().checked_sub(1)?;
        Some(Row {
            t: s as u64,
            p99_us: if g.healthy(s) { 5_000 } else { 300_000 },
            ..Row::default()
        })
    }
    fn cpu_ns(&self) -> Option<u64> {
        None
    }
    fn lane_busy_ns(&self) -> Vec<u64> {
        Vec::new()
    }
    fn worker_pool(&self) -> Option<u64> {
        Some(10)
    }
}

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

fn timing() -> Timing {
    Timing {
        settle: Duration::from_secs(2),
        hold: Duration::from_secs(5),
        drain_limit: Duration::from_secs(120),
    }
}

fn simulate(capacity: f64) -> (Outcome, Sim) {
    let run = FakeRun(Mutex::new(Sim {
        capacity,
        now: 123_456_789,
        changes: Vec::new(),
        steps: Vec::new(),
        secs: Vec::new(),
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outcome = rt.block_on(run_search(&run));
    (outcome, run.0.into_inner().unwrap())
}

async fn run_search(run: &FakeRun) -> Outcome {
    super::run(run, Search::new(params()), &timing()).await
}

#[test]
fn steps_change_the_rate_at_whole_seconds_ahead_of_the_clock() {
    let (o, sim) = simulate(1000.0);
    assert!(o.rate <= 1000.0 && o.rate >= 950.0, "{o:?}");
    assert_eq!(o.limited_by, LimitedBy::P99);
    for &(at, _, made) in &sim.changes {
        assert_eq!(at % S, 0, "changes at whole seconds");
        assert!(at >= made + MARGIN_NS, "a change lies ahead of the clock");
    }
    // each step: settle, then a window of STEP_SEC, then back to the resting rate
    assert_eq!(sim.steps.len(), o.steps.len());
    for (i, &(from, to)) in sim.steps.iter().enumerate() {
        assert_eq!(to - from, 5 * S);
        let step_rate = o.steps[i].result.offered_rate;
        assert_eq!(
            sim.rate_at(from - 2 * S),
            step_rate,
            "settle at the step's rate"
        );
        assert_eq!(sim.rate_at(to - 1), step_rate);
        assert!(sim.rate_at(to) < step_rate || i == 0 || o.steps[i].passed);
        assert_eq!(o.steps[i].result.duration_s, 5.0);
        assert_eq!(o.steps[i].result.sent, (step_rate as u64) * 5);
        assert_eq!(o.steps[i].result.worker_pool, Some(10));
    }
}

#[test]
fn a_failed_step_is_drained_before_the_next_one() {
    let (o, sim) = simulate(1000.0);
    for (i, row) in o.steps.iter().enumerate() {
        if row.passed || i + 1 == o.steps.len() {
            continue;
        }
        // the next step settles and measures only after the backlog was gone
        let (next_from, _) = sim.steps[i + 1];
        let first_sec = (next_from / S) as usize;
        assert!(
            (first_sec.saturating_sub(4)..first_sec).all(|s| sim.secs[s].1 == 0.0),
            "step {i}: backlog left when the next window began"
        );
        // and every step after it passed or failed on its own rate, not on leftovers
        assert_eq!(
            o.steps[i + 1].passed,
            o.steps[i + 1].result.offered_rate <= 1000.0
        );
    }
}

#[test]
fn a_system_that_never_recovers_ends_the_search() {
    // capacity 0 after the first failure: the backlog never drains
    let run = FakeRun(Mutex::new(Sim {
        capacity: 120.0,
        now: 0,
        changes: Vec::new(),
        steps: Vec::new(),
        secs: Vec::new(),
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut t = timing();
    t.drain_limit = Duration::from_secs(3);
    let o = rt.block_on(super::run(&run, Search::new(params()), &t));
    // 100 passed, 150 failed; its backlog needs longer than 3 s at 100/s against 120/s
    assert_eq!(o.rate, 100.0);
    assert_eq!(o.steps.len(), 2);
}
