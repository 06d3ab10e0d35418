//! The per-second timeline as reports carry it (`timeline`: one row per second, CONTRACT
//! "Capacity instrument"): reading rows under their canonical names (and the aliases writers
//! may use), placing each on a wall-clock second, merging instances' rows second by second,
//! and folding long runs into coarser buckets for charts.

use super::load::LoadedReport;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How a column of several instances' rows for one second combines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Counts and per-instance gauges: the fleet's value is the sum.
    Sum,
    /// The worker pool (every instance sees the same workers) and per-second percentiles (the
    /// fleet's exact percentile of one second is unknown from rows alone; the highest
    /// instance's value is an upper bound and is labelled as such in merged reports).
    Max,
}

/// One timeline column: canonical name, the names writers may use for it, how it merges.
pub struct Column {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub combine: Combine,
}

const fn col(name: &'static str, aliases: &'static [&'static str], combine: Combine) -> Column {
    Column {
        name,
        aliases,
        combine,
    }
}

/// Every column the report understands. Unknown columns are ignored by charts and merge.
pub const COLUMNS: &[Column] = &[
    col("offered", &["offered_rate"], Combine::Sum),
    col("sent", &[], Combine::Sum),
    col("matched", &[], Combine::Sum),
    col("timeouts", &[], Combine::Sum),
    col("late", &[], Combine::Sum),
    col("duplicates", &[], Combine::Sum),
    col("invalid", &[], Combine::Sum),
    col("skipped", &[], Combine::Sum),
    col("publish_errors", &[], Combine::Sum),
    col("reconnects", &[], Combine::Sum),
    col("inflight", &[], Combine::Sum),
    col("active_clients", &[], Combine::Sum),
    col("target_rate", &[], Combine::Sum),
    col("published", &[], Combine::Sum),
    col("received", &["deliveries", "delivered"], Combine::Sum),
    col("bytes", &["bytes_received"], Combine::Sum),
    col("lost", &[], Combine::Sum),
    col("connections", &[], Combine::Sum),
    col("disconnects", &[], Combine::Sum),
    col("p50_us", &["p50", "latency_p50_us"], Combine::Max),
    col("p90_us", &["p90", "latency_p90_us"], Combine::Max),
    col("p99_us", &["p99", "latency_p99_us"], Combine::Max),
    col("max_us", &["max", "latency_max_us"], Combine::Max),
    col(
        "lag_p99_us",
        &["schedule_lag_p99_us", "lag_p99"],
        Combine::Max,
    ),
    col(
        "worker_pool",
        &["worker_pool_size", "pool_size"],
        Combine::Max,
    ),
];

/// One timeline row, normalized: the second it covers and its known columns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// Seconds since the run's start (as written, or re-based for merged timelines).
    pub t: f64,
    /// The wall-clock second (Unix) the row covers, when the report lets us know it.
    pub unix_s: Option<i64>,
    pub warmup: bool,
    pub values: BTreeMap<&'static str, f64>,
}

impl Row {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// The row as JSON, with canonical names.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("t".into(), num(self.t));
        if let Some(u) = self.unix_s {
            m.insert("unix_s".into(), Value::from(u));
        }
        m.insert("warmup".into(), Value::from(self.warmup));
        for (k, v) in &self.values {
            m.insert((*k).into(), num(*v));
        }
        Value::Object(m)
    }
}

fn num(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9e15 {
        Value::from(v as i64)
    } else {
        Value::from((v * 1000.0).round() / 1000.0)
    }
}

/// Normalizes one JSON row. `start_unix_ms` (the report's t = 0 on the wall clock) lets a row
/// without its own `unix_s` be placed on a wall-clock second.
pub fn read_row(v: &Value, start_unix_ms: Option<u64>) -> Option<Row> {
    let o = v.as_object()?;
    let t = o.get("t").and_then(Value::as_f64)?;
    let unix_s = o
        .get("unix_s")
        .and_then(Value::as_i64)
        .or_else(|| start_unix_ms.map(|ms| ((ms as f64 + t * 1000.0) / 1000.0).round() as i64));
    let warmup = o.get("warmup").and_then(Value::as_bool).unwrap_or(false);
    let mut values = BTreeMap::new();
    for c in COLUMNS {
        let found = std::iter::once(c.name)
            .chain(c.aliases.iter().copied())
            .find_map(|n| o.get(n).and_then(Value::as_f64));
        if let Some(x) = found {
            values.insert(c.name, x);
        }
    }
    Some(Row {
        t,
        unix_s,
        warmup,
        values,
    })
}

/// A report's rows, normalized (rows that are not objects with a numeric `t` are skipped).
pub fn rows(r: &LoadedReport) -> Vec<Row> {
    rows_of(r.timeline(), r.start_unix_ms())
}

pub fn rows_of(timeline: &[Value], start_unix_ms: Option<u64>) -> Vec<Row> {
    timeline
        .iter()
        .filter_map(|v| read_row(v, start_unix_ms))
        .collect()
}

/// How merged rows were lined up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Every instance's rows carried (or could derive) a wall-clock second.
    WallClock,
    /// Some instance did not say when it started: rows are lined up on `t` since each start.
    Relative,
}

impl Alignment {
    pub fn name(self) -> &'static str {
        match self {
            Alignment::WallClock => "wall_clock",
            Alignment::Relative => "relative",
        }
    }
}

/// Merges several instances' rows second by second: counts summed, percentiles and the worker
/// pool as the highest instance's value. A second is warm-up if any instance was warming up.
pub fn merge(instances: &[Vec<Row>]) -> (Vec<Row>, Alignment) {
    let wall = instances
        .iter()
        .all(|rows| rows.iter().all(|r| r.unix_s.is_some()));
    let align = if wall {
        Alignment::WallClock
    } else {
        Alignment::Relative
    };
    let key = |r: &Row| -> i64 {
        match align {
            Alignment::WallClock => r.unix_s.unwrap_or(0),
            Alignment::Relative => r.t.floor() as i64,
        }
    };
    let mut by_second: BTreeMap<i64, Row> = BTreeMap::new();
    for rows in instances {
        for r in rows {
            let k = key(r);
            let into = by_second.entry(k).or_insert_with(|| Row {
                t: 0.0,
                unix_s: (align == Alignment::WallClock).then_some(k),
                warmup: false,
                values: BTreeMap::new(),
            });
            into.warmup |= r.warmup;
            for c in COLUMNS {
                let Some(x) = r.get(c.name) else { continue };
                let e = into.values.entry(c.name).or_insert(match c.combine {
                    Combine::Sum => 0.0,
                    Combine::Max => f64::MIN,
                });
                *e = match c.combine {
                    Combine::Sum => *e + x,
                    Combine::Max => e.max(x),
                };
            }
        }
    }
    let first = by_second.keys().next().copied().unwrap_or(0);
    let out = by_second
        .into_iter()
        .map(|(k, mut r)| {
            r.t = (k - first) as f64;
            r
        })
        .collect();
    (out, align)
}

/// Folds rows into buckets of `per` rows for charts of long runs: counts become the mean per
/// second over the bucket, percentiles and gauges the bucket's highest value (a spike stays
/// visible). Returns the rows unchanged when `per` <= 1.
pub fn fold(rows: &[Row], per: usize) -> Vec<Row> {
    if per <= 1 {
        return rows.to_vec();
    }
    rows.chunks(per)
        .map(|chunk| {
            let mut out = Row {
                t: chunk[0].t,
                unix_s: chunk[0].unix_s,
                warmup: chunk.iter().any(|r| r.warmup),
                values: BTreeMap::new(),
            };
            for c in COLUMNS {
                let xs: Vec<f64> = chunk.iter().filter_map(|r| r.get(c.name)).collect();
                if xs.is_empty() {
                    continue;
                }
                let v = match c.combine {
                    Combine::Sum if is_gauge(c.name) => xs.iter().copied().fold(f64::MIN, f64::max),
                    Combine::Sum => xs.iter().sum::<f64>() / xs.len() as f64,
                    Combine::Max => xs.iter().copied().fold(f64::MIN, f64::max),
                };
                out.values.insert(c.name, v);
            }
            out
        })
        .collect()
}

/// Columns that are levels (inflight, clients, connections), not per-second counts.
pub fn is_gauge(name: &str) -> bool {
    matches!(name, "inflight" | "active_clients" | "connections")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_read_aliases_and_derive_wall_seconds() {
        let r = read_row(
            &json!({"t": 3, "sent": 10, "p99": 250, "pool_size": 7, "warmup": true}),
            Some(1_700_000_000_000),
        )
        .unwrap();
        assert_eq!(r.unix_s, Some(1_700_000_003));
        assert!(r.warmup);
        assert_eq!(r.get("p99_us"), Some(250.0));
        assert_eq!(r.get("worker_pool"), Some(7.0));
        assert_eq!(r.get("matched"), None);
        assert!(read_row(&json!({"sent": 1}), None).is_none());
        assert!(read_row(&json!([1, 2]), None).is_none());
    }

    #[test]
    fn merge_lines_up_wall_seconds_sums_counts_and_keeps_highest_percentile() {
        let a = rows_of(
            &[
                json!({"t": 0, "sent": 5, "p99_us": 100, "worker_pool": 10}),
                json!({"t": 1, "sent": 6, "p90_us": 90, "p99_us": 300, "worker_pool": 10}),
            ],
            Some(1_000_000),
        );
        // b started one second later
        let b = rows_of(
            &[
                json!({"t": 0, "sent": 7, "p90_us": 150, "p99_us": 200, "worker_pool": 10}),
                json!({"t": 1, "sent": 8, "p99_us": 50, "worker_pool": 12}),
            ],
            Some(1_001_000),
        );
        let (m, align) = merge(&[a, b]);
        assert_eq!(align, Alignment::WallClock);
        let got: Vec<_> = m
            .iter()
            .map(|r| {
                (
                    r.t,
                    r.unix_s.unwrap(),
                    r.get("sent").unwrap(),
                    r.get("p99_us").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0.0, 1000, 5.0, 100.0),
                (1.0, 1001, 13.0, 300.0),
                (2.0, 1002, 8.0, 50.0)
            ]
        );
        assert_eq!(m[2].get("worker_pool"), Some(12.0));
        // p90 per second travels like p50/p99: the highest instance's (an upper bound)
        assert_eq!(m[1].get("p90_us"), Some(150.0));
        assert_eq!(
            m[0].get("p90_us"),
            None,
            "no instance had it in that second"
        );
        assert_eq!(m[1].get("worker_pool"), Some(10.0), "not double counted");
    }

    #[test]
    fn merge_without_wall_clock_aligns_on_t() {
        let a = rows_of(&[json!({"t": 0, "sent": 1})], None);
        let b = rows_of(&[json!({"t": 0, "sent": 2})], Some(5000));
        let (m, align) = merge(&[a, b]);
        assert_eq!(align, Alignment::Relative);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].get("sent"), Some(3.0));
    }

    #[test]
    fn fold_keeps_rates_and_spikes() {
        let rows = rows_of(
            &(0..10)
                .map(|t| json!({"t": t, "sent": 100, "p99_us": if t == 7 { 9000 } else { 10 }, "inflight": t}))
                .collect::<Vec<_>>(),
            None,
        );
        let f = fold(&rows, 5);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].t, 5.0);
        assert_eq!(f[1].get("sent"), Some(100.0));
        assert_eq!(f[1].get("p99_us"), Some(9000.0));
        assert_eq!(f[1].get("inflight"), Some(9.0));
    }
}
