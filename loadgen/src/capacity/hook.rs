//! The capacity instrument on the run harness: one [`RunHook`] that, at every tick, closes the
//! seconds of the timeline every lane has moved past (with the gauges of that moment), starts
//! the capacity search next to the run once its clock runs (`SCENARIO=capacity`; the search ends
//! the run with its answer), and at the end puts `timeline`, `capacity` and `thresholds` into the
//! report and writes `TIMELINE_CSV`. A search stopped before its answer (Ctrl-C) reports the
//! steps it finished and a lower bound that says so; `GET /report` carries the same sections so
//! far (the closed seconds, the steps done, the thresholds against the report so far).

use super::config::CapacityConfig;
use super::driver::{self, Timing};
use super::probe::{LiveProbe, PoolReader};
use super::search::{LimitedBy, Outcome, Search, SearchParams};
use super::tally::Instrument;
use super::thresholds::{report_value, Thresholds};
use super::timeline::{to_csv, Sample, NS_PER_S};
use crate::harness::{Finished, RunHook, RunState, Tick};
use crate::report::{Report, Timeline};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The capacity search a run carries out.
pub struct SearchPlan {
    pub params: SearchParams,
    pub timing: Timing,
    pub pool: PoolReader,
}

impl SearchPlan {
    pub fn new(
        c: &CapacityConfig,
        params: SearchParams,
        timeout: Duration,
        pool: PoolReader,
    ) -> Self {
        SearchPlan {
            params,
            timing: Timing {
                settle: Duration::from_secs(c.settle_sec),
                hold: Duration::from_secs(c.step_sec),
                // a backlog drains at least as fast as it built up over a step, and answers
                // older than TIMEOUT_MS no longer count
                drain_limit: Duration::from_secs(c.step_sec + c.settle_sec) + timeout * 2,
            },
            pool,
        }
    }
}

pub struct CapacityHook {
    /// The rr/pub run's profile and timeline (none in a fan-out run: thresholds only).
    run: Option<Arc<Instrument>>,
    state: Arc<RunState>,
    warmup_s: u64,
    csv: Option<PathBuf>,
    thresholds: Thresholds,
    search: Option<SearchPlan>,
    task: Option<JoinHandle<()>>,
    outcome: Arc<Mutex<Option<Outcome>>>,
    /// The search as of its last step (from before its first: no step yet).
    progress: Option<Arc<Mutex<Search>>>,
    reconnects: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CapacityHook {
    pub fn new(
        run: Option<Arc<Instrument>>,
        state: Arc<RunState>,
        cfg: &CapacityConfig,
        warmup_s: u64,
        search: Option<SearchPlan>,
    ) -> Self {
        let progress = search
            .as_ref()
            .map(|p| Arc::new(Mutex::new(Search::new(p.params.clone()))));
        CapacityHook {
            run,
            state,
            warmup_s,
            csv: cfg.timeline_csv.clone(),
            thresholds: cfg.parsed_thresholds(),
            search,
            task: None,
            outcome: Arc::default(),
            progress,
            reconnects: 0,
        }
    }

    /// Starts the search once the run's clock runs; it ends the run when it has its answer.
    fn start_search(&mut self) {
        let (Some(run), Some(epoch)) = (&self.run, self.state.epoch()) else {
            return;
        };
        let Some(plan) = self.search.take() else {
            return;
        };
        let probe = LiveProbe {
            run: run.clone(),
            epoch,
            pool: plan.pool,
        };
        let state = self.state.clone();
        let out = self.outcome.clone();
        let progress = self.progress.clone();
        self.task = Some(tokio::spawn(async move {
            let observe = move |s: &Search| {
                if let Some(p) = &progress {
                    *lock(p) = s.clone();
                }
            };
            let search = Search::new(plan.params);
            let outcome = driver::run_observed(&probe, search, &plan.timing, observe).await;
            eprintln!("{}", outcome.verdict);
            *lock(&out) = Some(outcome);
            state.end_now();
        }));
    }

    /// Closes the seconds every lane has moved past, one by one, with the gauges of now.
    fn close(&mut self, until: u64, inflight: u64, reconnects: u64, pool: Option<u64>) {
        let Some(run) = &self.run else { return };
        let mut new_reconnects = reconnects.saturating_sub(self.reconnects);
        self.reconnects = reconnects.max(self.reconnects);
        for sec in run.timeline.closed()..until {
            let (a, b) = (sec * NS_PER_S, (sec + 1) * NS_PER_S);
            // the profile's mean over the second: exactly what it planned to offer in it
            let active = run.profile.get().integral(a, b) / NS_PER_S as f64;
            run.timeline.close_until(
                sec + 1,
                Sample {
                    active_clients: active,
                    target_rate: run.target_rate_of(active),
                    inflight,
                    reconnects: std::mem::take(&mut new_reconnects),
                    worker_pool: pool,
                },
            );
        }
    }
}

impl RunHook for CapacityHook {
    fn on_tick(&mut self, tick: &Tick<'_>) {
        if tick.second.is_none() {
            return;
        }
        if self.search.is_some() {
            self.start_search();
        }
        let s = tick.sample;
        if let Some(run) = &self.run {
            // every lane is past these seconds (all done: every recorded second)
            let until = match run.seconds_passed() {
                u64::MAX => (run.timeline.len() as u64).max(run.timeline.closed()),
                s => s,
            };
            self.close(until, s.inflight.unwrap_or(0), s.reconnects, s.worker_pool);
        }
    }

    fn on_report(&mut self, report: &mut Report, fin: &Finished) {
        if let Some(task) = self.task.take() {
            // an interrupted search (shutdown) has no answer
            task.abort();
        }
        if let Some(run) = self.run.clone() {
            // every lane has handed everything over: close the rest
            let end = (run.timeline.len() as u64).max(run.timeline.closed());
            self.close(end, 0, fin.reconnects, None);
            let rows = run.timeline.rows(self.warmup_s);
            if let Some(path) = &self.csv {
                match std::fs::write(path, to_csv(&rows)) {
                    Ok(()) => eprintln!("timeline written to {}", path.display()),
                    Err(e) => eprintln!("error: cannot write TIMELINE_CSV {}: {e}", path.display()),
                }
            }
            report.sections.timeline = Some(Timeline::Requests(rows));
        }
        let outcome = lock(&self.outcome).take();
        report.sections.capacity = match (outcome, &self.progress) {
            (Some(o), _) => Some(o),
            // stopped before the search had its answer: the steps done, a lower bound
            (None, Some(p)) => {
                let o = lock(p).so_far(LimitedBy::Interrupted);
                eprintln!("{}", o.verdict);
                Some(o)
            }
            (None, None) => None,
        };
        self.judge(report);
    }

    fn on_live_report(&self, report: &mut Report) {
        if let Some(run) = &self.run {
            // the seconds closed so far (their counts grow while their requests resolve)
            let mut rows = run.timeline.rows(self.warmup_s);
            rows.truncate(run.timeline.closed() as usize);
            report.sections.timeline = Some(Timeline::Requests(rows));
        }
        report.sections.capacity = lock(&self.outcome).clone().or_else(|| {
            self.progress
                .as_ref()
                .map(|p| lock(p).so_far(LimitedBy::Running))
        });
        self.judge(report);
    }
}

impl CapacityHook {
    /// `THRESHOLDS` against the report (the final one, or the one so far).
    fn judge(&self, report: &mut Report) {
        if !self.thresholds.is_empty() {
            let value = serde_json::to_value(&*report).unwrap_or_default();
            report.sections.thresholds =
                Some(self.thresholds.evaluate(|m| report_value(&value, m)));
        }
    }
}
