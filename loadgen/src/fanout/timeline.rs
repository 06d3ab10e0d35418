//! The fan-out per-second timeline (the report's `timeline` for `SCENARIO=fanout`, issue 10 §3):
//! one row per second of the run, warm-up included and marked, with the messages published, the
//! deliveries received (and their bytes) and the deliveries lost, the subscriber connections at
//! the second's end, the disconnects and reconnects during it, and p50/p90/p99/max of the
//! deliveries that *arrived* in it.
//!
//! Counts are attributed as the window's books attribute them, so the rows of the measured window
//! add up exactly to the report's `sent`, `received`, `bytes_received` and `lost`: a message and
//! its deliveries (and their bytes) to the second it was *published* in (its stamp); a loss to
//! the second of the message whose arrival revealed the gap (a gap's part before the window to
//! that warm-up second, or nowhere when a window message revealed it); the tail (window messages
//! that never came, known at the end) to the window's last second. A message stamped before t = 0
//! or (split roles) after the window is in no row, as it is in no total.
//!
//! The hot path counts into the sharded lock the latency recorder takes anyway ([`Recent`]: the
//! few seconds a shard saw since the last collection); collecting moves them into the run's
//! rows. The tick samples the gauges and the second's latency (`timeline_hook`); with Kafka
//! consumers (the scaling-test shape) also the lag of the most-behind consumer, the sum over
//! consumers and the failing consumers (`fanout::consumers`). A stored second costs
//! [`SECOND_BYTES`] bytes: 12 MB for a 24-hour run.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

pub const NS_PER_S: u64 = 1_000_000_000;
const UNSET: u64 = u64::MAX;

/// What one second counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub published: u64,
    pub received: u64,
    pub bytes: u64,
    pub lost: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.published += o.published;
        self.received += o.received;
        self.bytes += o.bytes;
        self.lost += o.lost;
    }
}

/// One shard's counts of the seconds it saw since the last collection (one or two, usually).
#[derive(Default)]
pub struct Recent(Vec<(u64, Counts)>);

impl Recent {
    /// The counts of second `sec`.
    #[inline]
    pub fn at(&mut self, sec: u64) -> &mut Counts {
        let i = match self.0.iter().rposition(|(s, _)| *s == sec) {
            Some(i) => i,
            None => {
                self.0.push((sec, Counts::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    /// Adds everything to `rows` (indexed by second) and empties itself.
    pub fn move_into(&mut self, rows: &mut Vec<Counts>) {
        for (sec, c) in self.0.drain(..) {
            add_at(rows, sec, &c);
        }
    }
}

/// Adds `c` to second `sec` of `rows`, growing it as needed.
pub fn add_at(rows: &mut Vec<Counts>, sec: u64, c: &Counts) {
    let i = sec as usize;
    if rows.len() <= i {
        rows.resize(i + 1, Counts::default());
    }
    rows[i].add(c);
}

/// The gauges of one second, sampled by the tick at its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    pub sampled: bool,
    pub connections: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Kafka consumers: lag of the most-behind one, the sum, the failing ones.
    pub consumer_lag_max: Option<u64>,
    pub consumer_lag_sum: Option<u64>,
    pub failing_clients: Option<u64>,
}

/// Bytes a second of the run costs in memory (counts and gauges).
pub const SECOND_BYTES: usize = std::mem::size_of::<Counts>() + std::mem::size_of::<Gauges>();
const _: () = assert!(SECOND_BYTES * 86_400 <= 13 * 1000 * 1000);

/// The run's t = 0 on the payload clock: which second a stamp falls in.
pub struct RunSeconds {
    epoch_ns: AtomicU64,
    warmup_s: AtomicU64,
}

impl Default for RunSeconds {
    fn default() -> Self {
        RunSeconds {
            epoch_ns: AtomicU64::new(UNSET),
            warmup_s: AtomicU64::new(0),
        }
    }
}

impl RunSeconds {
    /// t = 0 is `epoch_ns` on the payload clock; the window opens `warmup_s` later.
    pub fn set_epoch(&self, epoch_ns: u64, warmup_s: u64) {
        self.warmup_s.store(warmup_s, Ordering::Relaxed);
        self.epoch_ns.store(epoch_ns, Ordering::Release);
    }

    /// The measured window's first second.
    pub fn first_window(&self) -> u64 {
        self.warmup_s.load(Ordering::Relaxed)
    }

    /// The second of the run a message stamped `ts_ns` was published in (`None` before t = 0).
    #[inline]
    pub fn of(&self, ts_ns: u64) -> Option<u64> {
        let e = self.epoch_ns.load(Ordering::Acquire);
        if e == UNSET {
            return None;
        }
        ts_ns.checked_sub(e).map(|d| d / NS_PER_S)
    }
}

/// One row of a fan-out report's `timeline` (and of `TIMELINE_CSV`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Second of the run (0 = the first).
    pub t: u64,
    pub warmup: bool,
    /// Messages published in this second (this process's publisher).
    pub published: u64,
    /// Deliveries of the messages published in this second, and their bytes.
    pub received: u64,
    pub bytes: u64,
    /// Deliveries lost (see the module documentation for the second a loss lands in).
    pub lost: u64,
    /// Subscriber connections up at the end of the second.
    pub connections: u64,
    /// Connections lost, and re-established, during the second.
    pub disconnects: u64,
    pub reconnects: u64,
    /// Latency of the deliveries that arrived in this second, microseconds (0: none arrived).
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Kafka consumers only: lag of the most-behind consumer at the second's end (records), the
    /// sum over consumers, and the consumers failing (no progress for FAILING_AFTER_SEC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag_max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag_sum: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_clients: Option<u64>,
}

/// The rows of a run from its counts and gauges, seconds before `warmup_s` marked. A second the
/// tick did not sample (the end of the run) keeps the last connection count seen.
pub fn rows(counts: &[Counts], gauges: &[Gauges], warmup_s: u64) -> Vec<Row> {
    let n = counts.len().max(gauges.len());
    let mut connections = 0;
    (0..n)
        .map(|i| {
            let c = counts.get(i).copied().unwrap_or_default();
            let g = gauges.get(i).copied().unwrap_or_default();
            if g.sampled {
                connections = g.connections;
            }
            Row {
                t: i as u64,
                warmup: (i as u64) < warmup_s,
                published: c.published,
                received: c.received,
                bytes: c.bytes,
                lost: c.lost,
                connections,
                disconnects: g.disconnects,
                reconnects: g.reconnects,
                p50_us: g.p50_us,
                p90_us: g.p90_us,
                p99_us: g.p99_us,
                max_us: g.max_us,
                consumer_lag_max: g.consumer_lag_max,
                consumer_lag_sum: g.consumer_lag_sum,
                failing_clients: g.failing_clients,
            }
        })
        .collect()
}

/// The header of a fan-out run's `TIMELINE_CSV`.
pub const CSV_HEADER: &str = "t,warmup,published,received,bytes,lost,connections,disconnects,reconnects,p50_us,p90_us,p99_us,max_us";

/// The columns a run with Kafka consumers adds.
pub const CSV_KAFKA: &str = ",consumer_lag_max,consumer_lag_sum,failing_clients";

/// The rows as CSV, header first.
pub fn to_csv(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64 + rows.len() * 64);
    s.push_str(CSV_HEADER);
    let kafka = rows.iter().any(|r| r.failing_clients.is_some());
    if kafka {
        s.push_str(CSV_KAFKA);
    }
    s.push('\n');
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.t,
            r.warmup,
            r.published,
            r.received,
            r.bytes,
            r.lost,
            r.connections,
            r.disconnects,
            r.reconnects,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.max_us
        );
        if kafka {
            s.pop();
            let v = |x: Option<u64>| x.unwrap_or(0);
            let _ = writeln!(
                s,
                ",{},{},{}",
                v(r.consumer_lag_max),
                v(r.consumer_lag_sum),
                v(r.failing_clients)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_seconds_move_into_rows_and_rows_carry_connections() {
        let mut r = Recent::default();
        r.at(2).received += 3;
        r.at(1).published += 1;
        r.at(2).bytes += 30;
        let mut rows = Vec::new();
        r.move_into(&mut rows);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].received, 3);
        assert_eq!(rows[2].bytes, 30);
        assert_eq!(rows[1].published, 1);
        r.at(2).lost += 1;
        r.move_into(&mut rows);
        assert_eq!(rows[2].lost, 1);
        let g = Gauges {
            sampled: true,
            connections: 7,
            p90_us: 90,
            ..Gauges::default()
        };
        let out = super::rows(&rows, &[Gauges::default(), g], 1);
        assert_eq!(out.len(), 3);
        assert!(out[0].warmup && !out[1].warmup);
        assert_eq!(out[0].connections, 0);
        assert_eq!((out[1].connections, out[1].p90_us), (7, 90));
        assert_eq!(
            out[2].connections, 7,
            "an unsampled second keeps the last count"
        );
        assert_eq!(out[2].p90_us, 0);
        let csv = to_csv(&out);
        assert_eq!(csv.lines().count(), 4);
        assert!(csv
            .lines()
            .nth(2)
            .unwrap()
            .starts_with("1,false,1,0,0,0,7,"));
    }

    #[test]
    fn stamps_fall_in_run_seconds() {
        let s = RunSeconds::default();
        assert_eq!(s.of(5), None, "no epoch yet");
        s.set_epoch(10 * NS_PER_S, 1);
        assert_eq!(s.first_window(), 1);
        assert_eq!(s.of(9 * NS_PER_S), None, "before t = 0");
        assert_eq!(s.of(10 * NS_PER_S), Some(0));
        assert_eq!(s.of(12 * NS_PER_S - 1), Some(1));
    }
}
