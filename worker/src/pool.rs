//! The bounded request queue, the worker tasks that drain it, and the autoscaler that sizes the
//! pool from arrival rate × service time (Little's law), busy ratio and backlog. Scaling down
//! only retires idle workers between jobs, so a queued request is never lost.

use crate::config::{Config, Mode};
use crate::outbox::Outbox;
use bytes::Bytes;
use rr_common::stats::AtomicBuckets;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One request waiting for a worker: its answer is already encoded.
pub struct Job {
    pub response: Bytes,
    pub enqueued: Instant,
    /// Index of the connection it came from (the answer leaves on whichever connection the
    /// outbox writes to next).
    pub conn: usize,
}

/// Counters of the worker; conservation:
/// `received = responded + dropped + invalid + errors + queued + in_progress`.
#[derive(Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub responded: AtomicU64,
    pub dropped: AtomicU64,
    pub invalid: AtomicU64,
    pub errors: AtomicU64,
    /// Taken by a worker and not finished yet.
    pub in_progress: AtomicU64,
    pub busy_ns: AtomicU64,
    pub scale_up: AtomicU64,
    pub scale_down: AtomicU64,
    pub pool_size: AtomicU64,
    pub queue_wait: AtomicBuckets,
    pub processing: AtomicBuckets,
}

/// What workers and connections share.
pub struct Shared {
    pub counters: Counters,
    pub tx: async_channel::Sender<Job>,
    pub rx: async_channel::Receiver<Job>,
    pub outbox: Arc<Outbox>,
    /// Woken when a worker finishes the last job in hand with the queue empty.
    pub idle: tokio::sync::Notify,
}

impl Shared {
    pub fn new(counters: Counters, queue_cap: usize, outbox: Arc<Outbox>) -> Shared {
        let (tx, rx) = async_channel::bounded(queue_cap);
        Shared {
            counters,
            tx,
            rx,
            outbox,
            idle: tokio::sync::Notify::new(),
        }
    }

    pub fn queue_depth(&self) -> u64 {
        self.rx.len() as u64
    }

    /// Every request received is answered (or dropped, invalid, failed) and no answer waits in
    /// the outbox. Outcomes are read before `received`, so a request arriving meanwhile (or one
    /// a worker has just taken from the queue) can only make this false.
    pub fn is_idle(&self) -> bool {
        let c = &self.counters;
        let resolved = c.responded.load(Relaxed)
            + c.dropped.load(Relaxed)
            + c.invalid.load(Relaxed)
            + c.errors.load(Relaxed);
        resolved == c.received.load(Relaxed) && self.outbox.is_empty()
    }

    /// Waits until [`Shared::is_idle`] (woken by the workers and the outbox, no polling), or
    /// until `deadline`; true when idle.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            let emptied = self.outbox.emptied();
            tokio::pin!(idle, emptied);
            idle.as_mut().enable();
            emptied.as_mut().enable();
            if self.is_idle() {
                return true;
            }
            tokio::select! {
                _ = idle => {}
                _ = emptied => {}
                _ = tokio::time::sleep_until(deadline) => return self.is_idle(),
            }
        }
    }
}

fn burn_cpu(iterations: u64) -> u64 {
    // splitmix64 steps: a fixed amount of real work the optimiser cannot drop.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..iterations {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= z ^ (z >> 31);
    }
    std::hint::black_box(x)
}

async fn work(shared: Arc<Shared>, mode: Mode, sleep: Duration, cpu: u64, stop: CancellationToken) {
    loop {
        let job = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            job = shared.rx.recv() => match job {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let c = &shared.counters;
        c.in_progress.fetch_add(1, Relaxed);
        let start = Instant::now();
        c.queue_wait
            .record_us(start.duration_since(job.enqueued).as_micros() as u64);
        match mode {
            Mode::Health => {}
            Mode::Sleep => tokio::time::sleep(sleep).await,
            Mode::Cpu => {
                tokio::task::block_in_place(|| burn_cpu(cpu));
            }
        }
        let took = start.elapsed();
        c.busy_ns.fetch_add(took.as_nanos() as u64, Relaxed);
        c.processing.record_us(took.as_micros() as u64);
        // The worker that leaves the queue empty writes the answers out at once.
        let last = shared.rx.is_empty();
        if shared.outbox.send(&job.response, last) {
            c.responded.fetch_add(1, Relaxed);
        } else {
            c.errors.fetch_add(1, Relaxed);
        }
        if c.in_progress.fetch_sub(1, Relaxed) == 1 && last {
            shared.idle.notify_waiters();
        }
    }
}

/// The running pool: spawns and retires workers.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<CancellationToken>,
    mode: Mode,
    sleep: Duration,
    cpu: u64,
    shutdown: CancellationToken,
}

impl Pool {
    pub fn new(shared: Arc<Shared>, cfg: &Config, shutdown: CancellationToken) -> Pool {
        let mut p = Pool {
            shared,
            workers: Vec::new(),
            mode: cfg.mode,
            sleep: Duration::from_millis(cfg.sleep_ms),
            cpu: cfg.cpu_work,
            shutdown,
        };
        p.resize(cfg.min_workers as usize);
        p
    }

    pub fn size(&self) -> usize {
        self.workers.len()
    }

    /// Grows or shrinks to `n` workers. Retired workers finish the job they hold first.
    pub fn resize(&mut self, n: usize) {
        while self.workers.len() < n {
            let token = self.shutdown.child_token();
            tokio::spawn(work(
                self.shared.clone(),
                self.mode,
                self.sleep,
                self.cpu,
                token.clone(),
            ));
            self.workers.push(token);
        }
        while self.workers.len() > n {
            if let Some(t) = self.workers.pop() {
                t.cancel();
            }
        }
        self.shared
            .counters
            .pool_size
            .store(self.workers.len() as u64, Relaxed);
    }
}

/// Inputs of one autoscaler decision, measured over the last interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub pool: usize,
    pub interval_s: f64,
    /// Requests enqueued during the interval.
    pub arrivals: u64,
    /// Mean processing time of requests finished in the interval (seconds), if any finished.
    pub service_s: Option<f64>,
    /// Busy time / (pool × interval).
    pub busy_ratio: f64,
    pub queue_depth: u64,
}

/// Autoscaler policy, pure so it can be tested without sockets.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub min: usize,
    pub max: usize,
    pub step: usize,
    pub up: f64,
    pub down: f64,
}

impl Policy {
    pub fn from_config(cfg: &Config) -> Policy {
        Policy {
            min: cfg.min_workers as usize,
            max: cfg.max_workers as usize,
            step: cfg.workers_per_scale as usize,
            up: cfg.scale_up_threshold,
            down: cfg.scale_down_threshold,
        }
    }

    /// The pool size the load needs: workers busy at the target utilisation (`up`) for the
    /// arrival rate, plus enough to drain the backlog within one interval.
    pub fn needed(&self, o: &Observation, service_s: f64) -> usize {
        let rate = o.arrivals as f64 / o.interval_s.max(1e-3);
        let steady = rate * service_s / self.up;
        let backlog = o.queue_depth as f64 * service_s / o.interval_s.max(1e-3) / self.up;
        (steady + backlog).ceil() as usize
    }

    /// The new pool size.
    pub fn decide(&self, o: &Observation, service_s: f64) -> usize {
        let needed = self.needed(o, service_s);
        let pool = o.pool;
        let backlog = o.queue_depth as usize > pool;
        let target = if o.busy_ratio >= self.up || backlog || needed > pool {
            pool.saturating_add(self.step).max(needed)
        } else if o.busy_ratio < self.down && o.queue_depth == 0 && needed < pool {
            pool.saturating_sub(self.step).max(needed)
        } else {
            pool
        };
        target.clamp(self.min, self.max)
    }
}

/// Runs the autoscaler until shutdown.
pub async fn autoscale(
    mut pool: Pool,
    policy: Policy,
    interval: Duration,
    stop: CancellationToken,
) {
    let shared = pool.shared.clone();
    let c = &shared.counters;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = Instant::now();
    let enqueued =
        |c: &Counters| c.received.load(Relaxed) - c.dropped.load(Relaxed) - c.invalid.load(Relaxed);
    let mut last_arrivals = enqueued(c);
    let mut last_busy = c.busy_ns.load(Relaxed);
    let mut last_done = (c.processing.count(), c.processing.sum_us());
    let mut service_s = 0.0f64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let interval_s = now.duration_since(last).as_secs_f64();
        last = now;
        let arrivals = enqueued(c);
        let busy = c.busy_ns.load(Relaxed);
        let done = (c.processing.count(), c.processing.sum_us());
        let finished = done.0 - last_done.0;
        let mean = (finished > 0).then(|| (done.1 - last_done.1) as f64 / 1e6 / finished as f64);
        if let Some(m) = mean {
            service_s = m;
        }
        let o = Observation {
            pool: pool.size(),
            interval_s,
            arrivals: arrivals - last_arrivals,
            service_s: mean,
            busy_ratio: (busy - last_busy) as f64 / 1e9 / (pool.size().max(1) as f64 * interval_s),
            queue_depth: shared.queue_depth(),
        };
        last_arrivals = arrivals;
        last_busy = busy;
        last_done = done;
        let target = policy.decide(&o, service_s);
        if target != o.pool {
            if target > o.pool {
                c.scale_up.fetch_add(1, Relaxed);
            } else {
                c.scale_down.fetch_add(1, Relaxed);
            }
            tracing::info!(
                "scale {} -> {target} (arrivals {:.0}/s, service {:.2} ms, busy {:.2}, queue {})",
                o.pool,
                o.arrivals as f64 / interval_s,
                service_s * 1e3,
                o.busy_ratio,
                o.queue_depth
            );
            pool.resize(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min: 2,
            max: 200,
            step: 10,
            up: 0.7,
            down: 0.2,
        }
    }

    fn obs(pool: usize, arrivals: u64, busy: f64, depth: u64) -> Observation {
        Observation {
            pool,
            interval_s: 1.0,
            arrivals,
            service_s: Some(0.02),
            busy_ratio: busy,
            queue_depth: depth,
        }
    }

    #[test]
    fn jumps_to_what_the_load_needs() {
        // 2000 req/s × 20 ms = 40 busy workers; at 70 % target that is 58.
        let p = policy();
        assert_eq!(p.decide(&obs(2, 2000, 1.0, 500), 0.02), 72);
        assert_eq!(p.decide(&obs(60, 2000, 0.66, 0), 0.02), 60);
    }

    #[test]
    fn reacts_to_backlog_before_the_queue_fills() {
        // busy ratio below threshold, but the queue holds more than the pool: grow.
        let p = policy();
        assert!(p.decide(&obs(10, 100, 0.5, 11), 0.001) > 10);
    }

    #[test]
    fn shrinks_stepwise_when_idle_and_never_below_min() {
        let p = policy();
        assert_eq!(p.decide(&obs(60, 0, 0.0, 0), 0.02), 50);
        assert_eq!(p.decide(&obs(5, 0, 0.0, 0), 0.02), 2);
        // never shrinks while requests are queued
        assert_eq!(p.decide(&obs(60, 0, 0.1, 3), 0.02), 60);
    }

    #[test]
    fn respects_max() {
        let p = policy();
        assert_eq!(p.decide(&obs(190, 100_000, 1.0, 10_000), 0.02), 200);
    }

    #[test]
    fn cpu_work_is_deterministic() {
        assert_eq!(burn_cpu(1000), burn_cpu(1000));
        assert_ne!(burn_cpu(1000), burn_cpu(1001));
    }
}
