//! The capacity search (`SCENARIO=capacity`) as a state machine, fed step results and answering
//! what to do next; the driver owns the clock and the sockets. It steps the offered rate up from
//! START_RATE by STEP_FACTOR (never past MAX_RATE) until a step misses the SLO, then bisects
//! between the last good and the lowest failed rate to within SEARCH_PRECISION. Each step holds
//! its rate for a settle time and then a measured window; only requests *scheduled* in that
//! window count. After every step the driver goes back to the last good rate while the step's
//! requests resolve (TIMEOUT_MS), and after a failed step it stays there until the system has
//! recovered, so one step never contaminates the next. A step where the generator itself was the
//! limit (schedule lag, publish errors, its own CPU) ends the search with a lower bound.

use serde::{Deserialize, Serialize};

/// What the search must meet.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    pub p99_us: u64,
    pub p999_us: Option<u64>,
    pub min_match: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchParams {
    pub start_rate: f64,
    pub step_factor: f64,
    pub max_rate: f64,
    /// Relative width of the final bracket: (failed − good) / good.
    pub precision: f64,
    pub slo: Slo,
    /// Schedule lag p99 above this means the generator could not keep its schedule.
    pub lag_bound_us: u64,
    /// A scheduler lane busy this fraction of the window or more (it runs on one core) means
    /// the generator is the limit.
    pub busy_limit: f64,
}

/// The figures of one step's measured window (requests scheduled in it, after they resolved).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub offered_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub matched: u64,
    pub timeouts: u64,
    pub late: u64,
    pub skipped: u64,
    pub publish_errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub lag_p99_us: u64,
    /// The loadgen's CPU over the window, in cores (for the record).
    pub cpu_cores: Option<f64>,
    /// The busiest scheduler lane's busy fraction of the window (a lane runs on one core).
    pub lane_busy: Option<f64>,
    /// Sum of the workers' pool sizes at the end of the window (WORKER_STATS_URLS).
    pub worker_pool: Option<u64>,
}

impl StepResult {
    pub fn achieved_rate(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.sent as f64 / self.duration_s
        } else {
            0.0
        }
    }

    /// Matched out of the requests the step offered: a request skipped because its client was
    /// still waiting was not taken by the system, so it counts against the step (without skips
    /// this is the report's matched / sent).
    pub fn match_rate(&self) -> f64 {
        let offered = self.sent + self.skipped;
        if offered == 0 {
            0.0
        } else {
            self.matched as f64 / offered as f64
        }
    }
}

/// Why the search stopped where it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    P99,
    P999,
    Match,
    Generator,
    MaxRate,
    /// The search has not ended yet (`GET /report` of a running search): a lower bound so far.
    Running,
    /// The run was stopped (Ctrl-C, SIGTERM) before the search ended: a lower bound.
    Interrupted,
}

/// One row of the report's `capacity.steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    #[serde(flatten)]
    pub result: StepResult,
    pub achieved_rate: f64,
    pub match_rate: f64,
    /// `up` while stepping up, `bisect` afterwards.
    pub phase: String,
    pub passed: bool,
    /// Which SLO the step missed, and how, e.g. `p99 212.0 ms > 50 ms`.
    pub failed_on: Option<LimitedBy>,
    pub failure: Option<String>,
    /// Why the generator was the limit, e.g. `schedule lag p99 45.1 ms > 10 ms`.
    pub generator_limited: Option<String>,
}

/// The answer: the report's `capacity` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub rate: f64,
    pub limited_by: LimitedBy,
    pub lower_bound: bool,
    /// The one-line verdict, as printed.
    pub verdict: String,
    pub steps: Vec<StepRow>,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Offer `rate`, settle, measure a window, then go back to `Search::resting_rate` while the
    /// window's requests resolve, and `record` the result.
    Step {
        rate: f64,
    },
    /// Stay at `rate` until the system has recovered (see `Search::recovered`), then call
    /// `drained(true)`; `drained(false)` if it does not recover within the driver's limit.
    Drain {
        rate: f64,
    },
    Done(Outcome),
}

#[derive(Clone, Debug, PartialEq)]
enum State {
    Next(f64),
    Draining,
    Finished(Box<Outcome>),
}

#[derive(Clone)]
pub struct Search {
    p: SearchParams,
    state: State,
    /// Highest rate that passed, and its row.
    good: Option<(f64, usize)>,
    /// Lowest rate that failed, and its row.
    failed: Option<(f64, usize)>,
    bisecting: bool,
    steps: Vec<StepRow>,
}

/// Rates below this are not tried (a system that fails at 1 req/s has no capacity to speak of).
const MIN_RATE: f64 = 1.0;

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

impl Search {
    pub fn new(p: SearchParams) -> Search {
        let first = p.start_rate.min(p.max_rate);
        Search {
            p,
            state: State::Next(first),
            good: None,
            failed: None,
            bisecting: false,
            steps: Vec::new(),
        }
    }

    pub fn steps(&self) -> &[StepRow] {
        &self.steps
    }

    /// The answer so far of a search that has not ended (`why`: [`LimitedBy::Running`] or
    /// [`LimitedBy::Interrupted`]): the last good rate as a lower bound, the steps done, and
    /// the first failure if one is known; the answer itself once the search has ended.
    pub fn so_far(&self, why: LimitedBy) -> Outcome {
        if let State::Finished(o) = &self.state {
            return (**o).clone();
        }
        let n = self.steps.len();
        let what = match why {
            LimitedBy::Running => format!("the search is still running, {n} steps so far"),
            _ => format!("interrupted after {n} steps, before the search ended"),
        };
        let mut verdict = match self.good {
            Some((g, i)) => {
                let r = &self.steps[i];
                format!(
                    "capacity: >= {g:.0} req/s (p99 {}, match {:.5}; a lower bound: {what})",
                    ms(r.result.p99_us),
                    r.match_rate
                )
            }
            None => format!("capacity: no answer yet (no step met the SLO; {what})"),
        };
        if let Some((f, i)) = self.failed {
            let w = self.steps[i].failure.clone().unwrap_or_default();
            verdict.push_str(&format!("; first failure {f:.0} req/s: {w}"));
        }
        Outcome {
            rate: self.resting_rate(),
            limited_by: why,
            lower_bound: true,
            verdict,
            steps: self.steps.clone(),
        }
    }

    /// The rate to hold between steps: the last good one (0 before any step passed).
    pub fn resting_rate(&self) -> f64 {
        self.good.map_or(0.0, |g| g.0)
    }

    /// What to do now.
    pub fn next(&self) -> Action {
        match &self.state {
            State::Next(rate) => Action::Step { rate: *rate },
            State::Draining => Action::Drain {
                rate: self.resting_rate(),
            },
            State::Finished(o) => Action::Done((**o).clone()),
        }
    }

    /// Whether one second of the drain looked healthy: the answers that arrived in it met the
    /// p99 SLO (a backlog still queued in front of fresh requests shows as high latency), or
    /// nothing was asked of the system at all.
    pub fn recovered(&self, arrived_p99_us: u64, answers: u64, resting_rate: f64) -> bool {
        if resting_rate <= 0.0 {
            return answers == 0 || arrived_p99_us <= self.p.slo.p99_us;
        }
        answers > 0 && arrived_p99_us <= self.p.slo.p99_us
    }

    fn generator_limit(&self, r: &StepResult) -> Option<String> {
        if r.lag_p99_us > self.p.lag_bound_us {
            return Some(format!(
                "schedule lag p99 {} > {}",
                ms(r.lag_p99_us),
                ms(self.p.lag_bound_us)
            ));
        }
        if r.publish_errors > 0 {
            return Some(format!("{} publish errors", r.publish_errors));
        }
        match r.lane_busy {
            Some(b) if b >= self.p.busy_limit => Some(format!(
                "a scheduler lane busy {:.0}% of the time >= {:.0}% of its core",
                b * 100.0,
                self.p.busy_limit * 100.0
            )),
            _ => None,
        }
    }

    fn slo_failure(&self, r: &StepResult) -> Option<(LimitedBy, String)> {
        let slo = &self.p.slo;
        if r.matched > 0 && r.p99_us > slo.p99_us {
            return Some((
                LimitedBy::P99,
                format!("p99 {} > {} ms", ms(r.p99_us), slo.p99_us / 1000),
            ));
        }
        if let Some(b) = slo.p999_us {
            if r.matched > 0 && r.p999_us > b {
                return Some((
                    LimitedBy::P999,
                    format!("p999 {} > {} ms", ms(r.p999_us), b / 1000),
                ));
            }
        }
        let m = r.match_rate();
        if m < slo.min_match {
            return Some((
                LimitedBy::Match,
                format!("match {m:.5} < {}", slo.min_match),
            ));
        }
        None
    }

    /// Takes the result of the step `next` asked for.
    pub fn record(&mut self, result: StepResult) {
        let State::Next(rate) = self.state.clone() else {
            return;
        };
        let generator = self.generator_limit(&result);
        let failure = self.slo_failure(&result);
        let row = StepRow {
            achieved_rate: result.achieved_rate(),
            match_rate: result.match_rate(),
            phase: if self.bisecting { "bisect" } else { "up" }.to_string(),
            passed: failure.is_none() && generator.is_none(),
            failed_on: failure.as_ref().map(|f| f.0),
            failure: failure.as_ref().map(|f| f.1.clone()),
            generator_limited: generator.clone(),
            result,
        };
        let i = self.steps.len();
        let nothing_answered = row.result.matched == 0 && row.result.sent > 0;
        self.steps.push(row);
        if let Some(why) = generator {
            // the figures of this step (and any higher one) say more about the generator
            let passed_anyway = failure.is_none();
            return self.finish_lower_bound(rate, why, passed_anyway, i);
        }
        if failure.is_none() {
            self.good = Some((rate, i));
            if self.bisecting {
                return self.bisect();
            }
            if rate >= self.p.max_rate {
                return self.finish(LimitedBy::MaxRate, true);
            }
            self.state = State::Next((rate * self.p.step_factor).min(self.p.max_rate));
            return;
        }
        if self.failed.is_none_or(|(f, _)| rate < f) {
            self.failed = Some((rate, i));
        }
        self.bisecting = true;
        if nothing_answered {
            // nothing answers at all (no responder?): bisecting down would not help
            self.good = None;
            return self.finish_failed();
        }
        self.state = State::Draining;
    }

    /// The drain after a failed step ended: `recovered` false means the system did not recover
    /// at the resting rate within the driver's limit, which ends the search.
    pub fn drained(&mut self, recovered: bool) {
        if self.state != State::Draining {
            return;
        }
        if !recovered {
            return self.finish_failed();
        }
        self.bisect();
    }

    fn bisect(&mut self) {
        let Some((high, _)) = self.failed else {
            return self.finish_failed();
        };
        let low = self.resting_rate();
        if low > 0.0 && (high - low) <= self.p.precision * low {
            return self.finish_failed();
        }
        let next = ((low + high) / 2.0).round();
        if next < MIN_RATE || next <= low || next >= high {
            return self.finish_failed();
        }
        self.state = State::Next(next);
    }

    /// Ends at the last good rate, limited by the lowest failure's reason.
    fn finish_failed(&mut self) {
        let limited_by = self
            .failed
            .and_then(|(_, i)| self.steps[i].failed_on)
            .unwrap_or(LimitedBy::Match);
        self.finish(limited_by, false)
    }

    fn finish_lower_bound(&mut self, rate: f64, why: String, passed_anyway: bool, i: usize) {
        // a step that met the SLO although the generator fell behind still shows the system
        // sustained what was actually sent
        let sustained = if passed_anyway {
            self.steps[i].achieved_rate.floor()
        } else {
            0.0
        };
        let answer = self.resting_rate().max(sustained);
        let verdict = format!(
            "capacity: >= {answer:.0} req/s (a lower bound: the generator was the limit at {rate:.0} req/s: {why}); remedy: add CONNECTIONS or PUBLISH_WORKERS, or run more loadgen instances"
        );
        self.done(answer, LimitedBy::Generator, true, verdict);
    }

    fn finish(&mut self, limited_by: LimitedBy, lower_bound: bool) {
        let rate = self.resting_rate();
        let at = |i: usize| {
            let r = &self.steps[i];
            format!("p99 {}, match {:.5}", ms(r.result.p99_us), r.match_rate)
        };
        let mut verdict = match self.good {
            Some((g, i)) if limited_by == LimitedBy::MaxRate => format!(
                "capacity: >= {g:.0} req/s ({}; a lower bound: MAX_RATE reached); remedy: raise MAX_RATE (and VIRTUAL_CLIENTS) to search higher",
                at(i)
            ),
            Some((g, i)) => format!("capacity: {g:.0} req/s ({})", at(i)),
            None => "capacity: 0 req/s (no step met the SLO)".to_string(),
        };
        if let Some((f, i)) = self.failed {
            let why = self.steps[i].failure.clone().unwrap_or_default();
            verdict.push_str(&format!("; first failure {f:.0} req/s: {why}"));
        }
        self.done(rate, limited_by, lower_bound, verdict);
    }

    fn done(&mut self, rate: f64, limited_by: LimitedBy, lower_bound: bool, verdict: String) {
        self.state = State::Finished(Box::new(Outcome {
            rate,
            limited_by,
            lower_bound,
            verdict,
            steps: self.steps.clone(),
        }));
    }
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
