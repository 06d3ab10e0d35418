//! The fan-out timeline's hook on the run harness: at each tick it samples the second that ended
//! (gauges, latency; `Live::sample_second`), and at the end it puts the rows (`timeline::rows`)
//! into the report and `TIMELINE_CSV`. Apart from the rows themselves (`timeline`), so that the
//! report's types never import the harness back.

use super::stats::Live;
use super::timeline::{rows, to_csv, Row};
use crate::harness::{Finished, RunHook, Tick};
use crate::report::{Report, Timeline};
use std::path::PathBuf;
use std::sync::Arc;

/// Samples each second's gauges at the tick and puts the rows into the report (and
/// `TIMELINE_CSV`).
pub struct TimelineHook {
    live: Arc<Live>,
    warmup_s: u64,
    csv: Option<PathBuf>,
}

impl TimelineHook {
    pub fn new(live: Arc<Live>, warmup_s: u64, csv: Option<PathBuf>) -> Self {
        TimelineHook {
            live,
            warmup_s,
            csv,
        }
    }

    fn rows(&self) -> Vec<Row> {
        let (counts, gauges) = self.live.timeline();
        rows(&counts, &gauges, self.warmup_s)
    }
}

impl RunHook for TimelineHook {
    fn on_tick(&mut self, tick: &Tick<'_>) {
        // the tick at the end of second k - 1 says k
        if let Some(k) = tick.second.filter(|k| *k > 0) {
            self.live.sample_second(k - 1);
        }
    }

    fn on_report(&mut self, report: &mut Report, _fin: &Finished) {
        let rows = self.rows();
        if let Some(path) = &self.csv {
            match std::fs::write(path, to_csv(&rows)) {
                Ok(()) => eprintln!("timeline written to {}", path.display()),
                Err(e) => eprintln!("error: cannot write TIMELINE_CSV {}: {e}", path.display()),
            }
        }
        report.sections.timeline = Some(Timeline::Deliveries(rows));
    }

    fn on_live_report(&self, report: &mut Report) {
        report.sections.timeline = Some(Timeline::Deliveries(self.rows()));
    }
}
