//! The per-second timeline of a run: one row per second (warm-up included and marked) with the
//! outcome counts of the requests *scheduled* in that second, gauges sampled at its end, and the
//! latency of the answers that *arrived* in it.
//!
//! Counts are attributed to the second a request was scheduled in (its sent, matched, timed-out,
//! late, duplicate, skipped or failed outcome lands in that row however much later it is known;
//! `invalid` has no request and lands in the second it arrived), exactly as the report's window
//! books attribute them, so the rows of the measured window add up exactly to the report's
//! totals. The hot path stays lane-local: a lane counts into a small ring of recent seconds
//! ([`LaneSeconds`]: plain integers, no atomics, no lock) and hands a second to the shared
//! [`Timeline`] once no more frequent events can reach it (TIMEOUT_MS and a second after it);
//! the rare event for an older second (a late answer long after its timeout) is queued and
//! handed over with the next flush, so nothing is lost from the sums.
//!
//! Latency percentiles of a second come from per-second histograms the lanes merge at their
//! first tick of the next second; the sampler closes a second once every lane moved past it
//! and keeps only five numbers of it. Memory: a stored second is [`ROW_BYTES`] (160) bytes, so
//! a 24-hour run (86,400 rows) holds 13.2 MiB of rows, checked at compile time, plus a few live
//! per-second histograms; as JSON in the report a row is about 320 bytes, ~27 MB a day.

use hdrhistogram::Histogram;
use rr_common::stats::new_histogram;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

pub const NS_PER_S: u64 = 1_000_000_000;

/// What a lane counts per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Field {
    /// A due slot the profile offered (it becomes sent, skipped or a publish error).
    Offered,
    Sent,
    Matched,
    Timeout,
    Late,
    Duplicate,
    Invalid,
    Skipped,
    PublishError,
}

pub const FIELDS: usize = 9;

/// Counts of one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; FIELDS]);

impl Counts {
    #[inline]
    pub fn get(&self, f: Field) -> u64 {
        self.0[f as usize]
    }

    fn add(&mut self, o: &Counts) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a += b;
        }
    }

    fn is_zero(&self) -> bool {
        self.0.iter().all(|&v| v == 0)
    }
}

/// A lane's counts of its recent seconds.
pub struct LaneSeconds {
    /// Oldest second still in the ring.
    base: u64,
    ring: Vec<Counts>,
    mask: u64,
    /// Seconds kept open behind the current one (TIMEOUT_MS rounded up, plus one).
    keep: u64,
    /// Events for seconds outside the ring, handed over at the next flush.
    older: Vec<(u64, Field)>,
    last_roll: u64,
}

impl LaneSeconds {
    pub fn new(timeout_ns: u64) -> LaneSeconds {
        // a request of second s times out by s + 1 + TIMEOUT: one more second of margin
        let keep = timeout_ns.div_ceil(NS_PER_S) + 1;
        let len = (keep + 3).next_power_of_two();
        LaneSeconds {
            base: 0,
            ring: vec![Counts::default(); len as usize],
            mask: len - 1,
            keep,
            older: Vec::new(),
            last_roll: 0,
        }
    }

    /// Every second before this one has been handed over (its later events are rare and are
    /// queued for the next hand-over).
    pub fn complete_before(&self) -> u64 {
        self.base
    }

    /// Counts one event of second `sec` (of the schedule, or of arrival for `Invalid`).
    #[inline]
    pub fn add(&mut self, sec: u64, f: Field) {
        if sec.wrapping_sub(self.base) <= self.mask {
            self.ring[(sec & self.mask) as usize].0[f as usize] += 1;
        } else {
            self.older.push((sec, f));
        }
    }

    /// Hands the seconds no frequent event can reach any more to `to` (once per second of
    /// `now_sec`; cheap to call every tick).
    pub fn roll(&mut self, now_sec: u64, to: &Timeline) {
        if now_sec == self.last_roll {
            return;
        }
        self.last_roll = now_sec;
        self.flush_before(now_sec.saturating_sub(self.keep), to);
    }

    /// Hands over everything (the lane is done).
    pub fn flush_all(&mut self, to: &Timeline) {
        self.flush_before(u64::MAX, to);
    }

    fn flush_before(&mut self, until: u64, to: &Timeline) {
        let mut rows: Vec<(u64, Counts)> = Vec::new();
        let end = until.min(self.base + self.mask + 1);
        for sec in self.base..end {
            let slot = &mut self.ring[(sec & self.mask) as usize];
            if !slot.is_zero() {
                rows.push((sec, std::mem::take(slot)));
            }
        }
        if until == u64::MAX {
            self.base = u64::MAX - self.mask; // everything later goes to `older`
        } else if until > self.base {
            self.base = until;
        }
        for (sec, f) in self.older.drain(..) {
            let mut c = Counts::default();
            c.0[f as usize] = 1;
            rows.push((sec, c));
        }
        if !rows.is_empty() {
            to.add_counts(&rows);
        }
    }
}

/// Gauges of one second, sampled by the run's sampler when the second closes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// The profile's active clients and offered rate at the end of the second.
    pub active_clients: f64,
    pub target_rate: f64,
    pub inflight: u64,
    /// Reconnects during the second.
    pub reconnects: u64,
    pub worker_pool: Option<u64>,
}

/// One row of the report's `timeline` (and of `TIMELINE_CSV`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Second of the run (0 = the first).
    pub t: u64,
    pub warmup: bool,
    pub target_rate: f64,
    pub active_clients: f64,
    pub offered: u64,
    pub sent: u64,
    pub matched: u64,
    pub timeouts: u64,
    pub late: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub publish_errors: u64,
    pub reconnects: u64,
    pub inflight: u64,
    /// Latency of the answers that arrived in this second, microseconds (0: none arrived).
    pub p50_us: u64,
    /// Absent in reports written before it was added.
    #[serde(default)]
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub lag_p99_us: u64,
    pub worker_pool: Option<u64>,
}

/// What the timeline keeps per second.
#[derive(Clone, Copy, Debug, Default)]
struct Stored {
    counts: Counts,
    sample: Sample,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    lag_p99_us: u64,
}

/// Bytes a stored second costs (160 on 64-bit targets).
pub const ROW_BYTES: usize = std::mem::size_of::<Stored>();
// what the module documentation promises: a day of seconds in at most 13.2 MiB
const _: () = assert!(ROW_BYTES * 86_400 <= 13_841_203);

struct Open {
    sec: u64,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
}

#[derive(Default)]
struct Inner {
    secs: Vec<Stored>,
    /// Seconds whose histograms are still being merged (a few at most).
    open: Vec<Open>,
    /// Seconds below this are closed.
    closed: u64,
}

impl Inner {
    fn at(&mut self, sec: u64) -> &mut Stored {
        let i = sec as usize;
        if self.secs.len() <= i {
            self.secs.resize(i + 1, Stored::default());
        }
        &mut self.secs[i]
    }
}

/// The run's timeline, shared by the lanes (which hand over seconds) and the sampler.
#[derive(Default)]
pub struct Timeline {
    inner: Mutex<Inner>,
}

impl Timeline {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one event straight into second `sec` (for events outside the lanes, such as an
    /// unreadable answer seen by a connection).
    pub fn add_one(&self, sec: u64, f: Field) {
        let mut c = Counts::default();
        c.0[f as usize] = 1;
        self.add_counts(&[(sec, c)]);
    }

    /// Adds counts handed over by a lane.
    pub fn add_counts(&self, rows: &[(u64, Counts)]) {
        let mut g = self.lock();
        for (sec, c) in rows {
            g.at(*sec).counts.add(c);
        }
    }

    /// Merges a lane's latency (answers that arrived in `sec`) and schedule lag (sends made in
    /// `sec`). A second already closed folds into the first open one.
    pub fn merge_latency(&self, sec: u64, latency: &Histogram<u64>, lag: &Histogram<u64>) {
        if latency.is_empty() && lag.is_empty() {
            return;
        }
        let mut g = self.lock();
        let sec = sec.max(g.closed);
        let i = match g.open.iter().position(|o| o.sec == sec) {
            Some(i) => i,
            None => {
                g.open.push(Open {
                    sec,
                    latency: new_histogram(),
                    lag: new_histogram(),
                });
                g.open.len() - 1
            }
        };
        let o = &mut g.open[i];
        let _ = o.latency.add(latency);
        let _ = o.lag.add(lag);
    }

    /// Closes every second before `until` (the sampler calls it once every lane has moved past
    /// them), recording `sample` for the last of them.
    pub fn close_until(&self, until: u64, sample: Sample) {
        let mut g = self.lock();
        if until <= g.closed {
            return;
        }
        let mut open = std::mem::take(&mut g.open);
        open.retain(|o| {
            if o.sec >= until {
                return true;
            }
            let (l, lag) = (&o.latency, &o.lag);
            let s = g.at(o.sec);
            if !l.is_empty() {
                s.p50_us = l.value_at_quantile(0.5);
                s.p90_us = l.value_at_quantile(0.9);
                s.p99_us = l.value_at_quantile(0.99);
                s.max_us = l.max();
            }
            if !lag.is_empty() {
                s.lag_p99_us = lag.value_at_quantile(0.99);
            }
            false
        });
        g.open = open;
        g.at(until - 1).sample = sample;
        g.closed = until;
    }

    /// Seconds closed so far (their latency and gauges are final).
    pub fn closed(&self) -> u64 {
        self.lock().closed
    }

    /// The row of the last closed second.
    pub fn last_closed(&self) -> Option<Row> {
        let closed = self.closed();
        let t = closed.checked_sub(1)?;
        self.row(t)
    }

    /// The row of second `t`, if recorded.
    pub fn row(&self, t: u64) -> Option<Row> {
        let g = self.lock();
        g.secs.get(t as usize).map(|s| to_row(t, s, false))
    }

    /// Seconds recorded so far.
    pub fn len(&self) -> usize {
        self.lock().secs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows, seconds before `warmup_s` marked as warm-up.
    pub fn rows(&self, warmup_s: u64) -> Vec<Row> {
        let g = self.lock();
        g.secs
            .iter()
            .enumerate()
            .map(|(t, s)| to_row(t as u64, s, (t as u64) < warmup_s))
            .collect()
    }

    /// Sum of the counts of seconds `[from, to)`.
    pub fn sum(&self, from: u64, to: u64) -> Counts {
        let g = self.lock();
        let mut c = Counts::default();
        for s in g
            .secs
            .iter()
            .skip(from as usize)
            .take(to.saturating_sub(from) as usize)
        {
            c.add(&s.counts);
        }
        c
    }
}

fn to_row(t: u64, s: &Stored, warmup: bool) -> Row {
    let c = &s.counts;
    Row {
        t,
        warmup,
        target_rate: s.sample.target_rate,
        active_clients: s.sample.active_clients,
        offered: c.get(Field::Offered),
        sent: c.get(Field::Sent),
        matched: c.get(Field::Matched),
        timeouts: c.get(Field::Timeout),
        late: c.get(Field::Late),
        duplicates: c.get(Field::Duplicate),
        invalid: c.get(Field::Invalid),
        skipped: c.get(Field::Skipped),
        publish_errors: c.get(Field::PublishError),
        reconnects: s.sample.reconnects,
        inflight: s.sample.inflight,
        p50_us: s.p50_us,
        p90_us: s.p90_us,
        p99_us: s.p99_us,
        max_us: s.max_us,
        lag_p99_us: s.lag_p99_us,
        worker_pool: s.sample.worker_pool,
    }
}

/// The header of `TIMELINE_CSV`.
pub const CSV_HEADER: &str = "t,warmup,target_rate,active_clients,offered,sent,matched,timeouts,late,duplicates,invalid,skipped,publish_errors,reconnects,inflight,p50_us,p90_us,p99_us,max_us,lag_p99_us,worker_pool";

/// The rows as CSV (header first; an unknown pool size is an empty field).
pub fn to_csv(rows: &[Row]) -> String {
    let mut s = String::with_capacity(64 + rows.len() * 96);
    s.push_str(CSV_HEADER);
    s.push('\n');
    for r in rows {
        use std::fmt::Write as _;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.t,
            r.warmup,
            r.target_rate,
            r.active_clients,
            r.offered,
            r.sent,
            r.matched,
            r.timeouts,
            r.late,
            r.duplicates,
            r.invalid,
            r.skipped,
            r.publish_errors,
            r.reconnects,
            r.inflight,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.max_us,
            r.lag_p99_us,
            r.worker_pool.map_or(String::new(), |p| p.to_string()),
        );
    }
    s
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
