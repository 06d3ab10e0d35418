//! The one per-second tick of every run: it samples the scenario's live counters, keeps the
//! last second's rates for `/stats`, hands each tick to the run's hooks (the place a timeline
//! or a load profile reads the books), and prints the progress line every `PROGRESS_SEC`.
//! Once the schedule has started, ticks fall on whole seconds of the run's clock.

use super::scenario::{lock_hooks, Hooks, Live, Sample, Tick};
use super::state::{Recent, RunState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs until `done`.
pub(super) async fn run<L: Live + ?Sized>(
    state: Arc<RunState>,
    live: Arc<L>,
    progress_sec: u64,
    hooks: Hooks,
    done: CancellationToken,
) {
    let mut last = (Instant::now(), live.sample());
    let mut printed = last;
    let mut ticks = 0u64;
    let mut before_clock = Instant::now();
    loop {
        // the next whole second of the run's clock, or a second from now before it starts
        let next = match state.epoch() {
            Some(e) => e + Duration::from_secs(e.elapsed().as_secs() + 1),
            None => {
                before_clock += Duration::from_secs(1);
                before_clock
            }
        };
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        ticks += 1;
        let now = Instant::now();
        let sample = live.sample();
        let (lat, lag) = live.take_recent();
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        state.set_recent(Recent {
            window_s: dt,
            sent_per_s: rate(sample.sent, last.1.sent),
            matched_per_s: rate(sample.done, last.1.done),
            timeouts_per_s: rate(sample.failed, last.1.failed),
            p50_us: lat.p50,
            p99_us: lat.p99,
            lag_p99_us: lag.p99,
        });
        last = (now, sample);
        let tick = Tick {
            second: state
                .epoch()
                .map(|e| (now.duration_since(e).as_secs_f64()).round() as u64),
            phase: state.phase(),
            sample: &sample,
            state: &state,
        };
        for h in lock_hooks(&hooks).iter_mut() {
            h.on_tick(&tick);
        }
        if progress_sec > 0 && ticks.is_multiple_of(progress_sec) {
            eprintln!("{}", line(&state, &*live, printed, (now, sample)));
            printed = (now, sample);
        }
    }
}

/// The progress line: rates since the previous line, the last second's latency, the books.
fn line<L: Live + ?Sized>(
    state: &RunState,
    live: &L,
    (t0, a): (Instant, Sample),
    (t1, b): (Instant, Sample),
) -> String {
    let w = live.words();
    let dt = t1.duration_since(t0).as_secs_f64().max(1e-3);
    let rate = |x: u64, y: u64| x.saturating_sub(y) as f64 / dt;
    let r = state.recent();
    let ms = |us: u64| us as f64 / 1e3;
    let mut s = format!(
        "[{:>6.1}s {:<8}] {}/s {:>8.0}  {}/s {:>8.0}  p50 {:>7.2} ms  p99 {:>7.2} ms  {} {}",
        state.elapsed().as_secs_f64(),
        state.phase().name(),
        w.sent,
        rate(b.sent, a.sent),
        w.done,
        rate(b.done, a.done),
        ms(r.p50_us),
        ms(r.p99_us),
        w.failed,
        b.failed,
    );
    if let Some(n) = b.inflight {
        s.push_str(&format!("  inflight {n}"));
    }
    s.push_str(&format!(
        "  conns {}/{}  lag p99 {:.2} ms",
        b.connections,
        b.connections_planned,
        ms(r.lag_p99_us)
    ));
    let extra = live.progress_extra();
    if !extra.is_empty() {
        s.push_str("  ");
        s.push_str(&extra);
    }
    s
}
