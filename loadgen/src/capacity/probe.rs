//! The search driver's view of a live rr run ([`Probe`] over the run's [`Instrument`]): the
//! run's clock, its profile and step window, the timeline, the process's CPU time, the lanes'
//! busy time and the worker pool the loadgen polls.

use super::driver::Probe;
use super::tally::Instrument;
use super::timeline::{Counts, Row};
use rr_common::stats::Summary;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads the worker pool size the run knows (WORKER_STATS_URLS), if any.
pub type PoolReader = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

pub struct LiveProbe {
    pub run: Arc<Instrument>,
    /// t = 0 of the run's schedule.
    pub epoch: Instant,
    pub pool: PoolReader,
}

/// CPU time the process has used, ns (Linux: CLOCK_PROCESS_CPUTIME_ID).
pub fn process_cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

impl Probe for LiveProbe {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn sleep_until(&self, ns: u64) -> impl std::future::Future<Output = ()> + Send {
        tokio::time::sleep_until((self.epoch + Duration::from_nanos(ns)).into())
    }

    fn set_rate_from(&self, at_ns: u64, rate: f64) {
        self.run.set_rate_from(at_ns, rate);
    }

    fn open_step(&self, from_ns: u64, to_ns: u64) {
        self.run.open_step(from_ns, to_ns);
    }

    fn step_latency(&self) -> (Summary, Summary) {
        (
            Summary::of(&self.run.step_latency.snapshot()),
            Summary::of(&self.run.step_lag.snapshot()),
        )
    }

    fn complete_before(&self) -> u64 {
        self.run.complete_before()
    }

    fn counts(&self, from: u64, to: u64) -> Counts {
        self.run.timeline.sum(from, to)
    }

    fn last_row(&self) -> Option<Row> {
        self.run.timeline.last_closed()
    }

    fn cpu_ns(&self) -> Option<u64> {
        process_cpu_ns()
    }

    fn lane_busy_ns(&self) -> Vec<u64> {
        self.run.lane_busy_ns()
    }

    fn worker_pool(&self) -> Option<u64> {
        (self.pool)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_grows_with_work() {
        let Some(a) = process_cpu_ns() else { return };
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = process_cpu_ns().unwrap();
        assert!(b > a, "{a} {b}");
    }
}
