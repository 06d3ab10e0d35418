//! `THRESHOLDS`: pass/fail conditions on a run's results, k6-style, e.g.
//! `p99<50ms,p999<200ms,match>=0.999,timeouts==0,achieved_rate>=0.99*offered`. Parsed once at
//! start-up (an expression it cannot read exits 2 naming it), evaluated against the final figures
//! (of the run, or of a capacity search's answer), printed as a ✓/✗ list and recorded in the
//! report; any failure makes the process exit 99.

use rr_common::cli::ConfigError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// What a threshold can look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    // latency of the measured window, microseconds
    Min,
    Mean,
    P50,
    P90,
    P99,
    P999,
    Max,
    /// Schedule lag p99 of the generator, microseconds.
    LagP99,
    /// matched / sent.
    Match,
    Sent,
    Matched,
    Timeouts,
    Late,
    Duplicates,
    Invalid,
    Skipped,
    PublishErrors,
    Reconnects,
    OfferedRate,
    AchievedRate,
    /// The answer of a capacity search, requests per second.
    Capacity,
    /// Fan-out: messages lost.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Latency,
    Ratio,
    Count,
    Rate,
}

const NAMES: &[(&str, Metric)] = &[
    ("min", Metric::Min),
    ("mean", Metric::Mean),
    ("p50", Metric::P50),
    ("p90", Metric::P90),
    ("p99", Metric::P99),
    ("p999", Metric::P999),
    ("p99.9", Metric::P999),
    ("max", Metric::Max),
    ("lag_p99", Metric::LagP99),
    ("match", Metric::Match),
    ("match_rate", Metric::Match),
    ("sent", Metric::Sent),
    ("matched", Metric::Matched),
    ("timeouts", Metric::Timeouts),
    ("late", Metric::Late),
    ("duplicates", Metric::Duplicates),
    ("invalid", Metric::Invalid),
    ("skipped", Metric::Skipped),
    ("publish_errors", Metric::PublishErrors),
    ("reconnects", Metric::Reconnects),
    ("offered", Metric::OfferedRate),
    ("offered_rate", Metric::OfferedRate),
    ("achieved", Metric::AchievedRate),
    ("achieved_rate", Metric::AchievedRate),
    ("capacity", Metric::Capacity),
    ("lost", Metric::Lost),
];

impl Metric {
    pub fn parse(name: &str) -> Option<Metric> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }

    fn kind(self) -> Kind {
        use Metric::*;
        match self {
            Min | Mean | P50 | P90 | P99 | P999 | Max | LagP99 => Kind::Latency,
            Match => Kind::Ratio,
            OfferedRate | AchievedRate | Capacity => Kind::Rate,
            _ => Kind::Count,
        }
    }

    /// A value of this metric as people read it.
    pub fn show(self, v: f64) -> String {
        match self.kind() {
            Kind::Latency if v >= 1000.0 => format!("{:.1} ms", v / 1000.0),
            Kind::Latency => format!("{v:.0} us"),
            Kind::Ratio => format!("{v:.5}"),
            Kind::Rate => format!("{v:.1}/s"),
            Kind::Count => format!("{v:.0}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// The right-hand side: a constant, or a factor of another metric (`0.99*offered`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    Value(f64),
    Scaled(f64, Metric),
}

/// One parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// As written (trimmed).
    pub expr: String,
    /// The metric's name as written.
    pub name: String,
    pub metric: Metric,
    pub op: Op,
    pub limit: Limit,
}

/// Every threshold of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

/// The outcome of one threshold, as recorded in the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub expr: String,
    pub ok: bool,
    /// The measured value (None when the run did not measure it).
    pub value: Option<f64>,
    /// The limit it was compared with.
    pub limit: Option<f64>,
    /// One line: `✓ p99<50ms (p99 31.2 ms)`.
    pub line: String,
}

const ACCEPTED: &str = "accepted: comma-separated METRIC OP LIMIT such as p99<50ms, \
match>=0.999, timeouts==0, achieved_rate>=0.99*offered; METRIC one of min mean p50 p90 p99 \
p999 max lag_p99 match sent matched timeouts late duplicates invalid skipped publish_errors \
reconnects offered achieved_rate capacity lost; OP one of < <= > >= == !=; latencies need a \
unit (us, ms, s)";

fn err(expr: &str, what: impl fmt::Display) -> ConfigError {
    ConfigError::new("THRESHOLDS", format!("'{expr}': {what}; {ACCEPTED}"))
}

fn split_op(expr: &str) -> Option<(&str, Op, &str)> {
    for (tok, op) in [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ] {
        if let Some(i) = expr.find(tok) {
            return Some((&expr[..i], op, &expr[i + tok.len()..]));
        }
    }
    None
}

/// A number with an optional unit for `kind`, in the metric's base unit.
fn parse_value(text: &str, kind: Kind) -> Result<f64, &'static str> {
    let t = text.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let v: f64 = num.parse().map_err(|_| "not a number")?;
    if !v.is_finite() {
        return Err("not a number");
    }
    let scale = match (kind, unit.trim()) {
        (Kind::Latency, "us" | "µs") => 1.0,
        (Kind::Latency, "ms") => 1e3,
        (Kind::Latency, "s") => 1e6,
        (Kind::Latency, "") => return Err("a latency needs a unit (us, ms or s)"),
        (Kind::Latency, _) => return Err("unknown latency unit (us, ms or s)"),
        (Kind::Ratio, "") => 1.0,
        (Kind::Ratio, "%") => 0.01,
        (Kind::Rate, "" | "/s") => 1.0,
        (Kind::Count, "") => 1.0,
        _ => return Err("this metric takes no unit"),
    };
    Ok(v * scale)
}

impl Thresholds {
    /// Parses a `THRESHOLDS` value; an empty value means none.
    pub fn parse(text: &str) -> Result<Thresholds, ConfigError> {
        let mut out = Vec::new();
        for part in text.split(',') {
            let expr = part.trim();
            if expr.is_empty() {
                if text.trim().is_empty() {
                    continue;
                }
                return Err(err(text, "an empty condition"));
            }
            let Some((lhs, op, rhs)) = split_op(expr) else {
                return Err(err(expr, "no comparison (<, <=, >, >=, ==, !=)"));
            };
            let name = lhs.trim();
            let Some(metric) = Metric::parse(name) else {
                return Err(err(expr, format_args!("unknown metric '{name}'")));
            };
            let rhs = rhs.trim();
            let limit = if let Some((factor, other)) = rhs.split_once('*') {
                let f: f64 = factor
                    .trim()
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite())
                    .ok_or_else(|| {
                        err(expr, format_args!("'{}' is not a number", factor.trim()))
                    })?;
                let Some(m) = Metric::parse(other.trim()) else {
                    return Err(err(expr, format_args!("unknown metric '{}'", other.trim())));
                };
                if m.kind() != metric.kind() {
                    return Err(err(expr, "compares quantities of different kinds"));
                }
                Limit::Scaled(f, m)
            } else if let Some(m) = Metric::parse(rhs) {
                if m.kind() != metric.kind() {
                    return Err(err(expr, "compares quantities of different kinds"));
                }
                Limit::Scaled(1.0, m)
            } else {
                Limit::Value(parse_value(rhs, metric.kind()).map_err(|w| err(expr, w))?)
            };
            out.push(Threshold {
                expr: expr.to_string(),
                name: name.to_string(),
                metric,
                op,
                limit,
            });
        }
        Ok(Thresholds(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first threshold that uses a metric `has` says the run cannot measure.
    pub fn unmeasurable(&self, has: impl Fn(Metric) -> bool) -> Option<(&Threshold, Metric)> {
        self.0.iter().find_map(|t| {
            let mut used = vec![t.metric];
            if let Limit::Scaled(_, m) = t.limit {
                used.push(m);
            }
            used.into_iter().find(|m| !has(*m)).map(|m| (t, m))
        })
    }

    /// Evaluates every threshold against the figures `value` gives (None: not measured).
    pub fn evaluate(&self, value: impl Fn(Metric) -> Option<f64>) -> Vec<Verdict> {
        self.0
            .iter()
            .map(|t| {
                let v = value(t.metric);
                let limit = match t.limit {
                    Limit::Value(x) => Some(x),
                    Limit::Scaled(f, m) => value(m).map(|x| f * x),
                };
                let ok = matches!((v, limit), (Some(a), Some(b)) if t.op.holds(a, b));
                let shown = match (v, limit) {
                    (Some(a), Some(b)) => match t.limit {
                        Limit::Value(_) => format!("{} {}", t.name, t.metric.show(a)),
                        Limit::Scaled(..) => format!(
                            "{} {}, limit {}",
                            t.name,
                            t.metric.show(a),
                            t.metric.show(b)
                        ),
                    },
                    _ => "not measured in this run".to_string(),
                };
                Verdict {
                    expr: t.expr.clone(),
                    ok,
                    value: v,
                    limit,
                    line: format!("{} {} ({shown})", if ok { "✓" } else { "✗" }, t.expr),
                }
            })
            .collect()
    }
}

/// A metric's value in a JSON report (any scenario's): the measured window's totals, or, for
/// a capacity search, the figures of the step that gave its answer (the last passed step at
/// the answer's rate), so `p99<50ms` judges the capacity found, not the whole search.
pub fn report_value(report: &Value, m: Metric) -> Option<f64> {
    use Metric::*;
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    if let Some(cap) = report.get("capacity").filter(|c| c.is_object()) {
        if m == Capacity {
            return num(cap, "rate");
        }
        let rate = num(cap, "rate")?;
        let step = cap.get("steps").and_then(Value::as_array).and_then(|s| {
            s.iter().rev().find(|r| {
                r.get("passed").and_then(Value::as_bool) == Some(true)
                    && num(r, "offered_rate") == Some(rate)
            })
        });
        return match (m, step) {
            (P50, Some(s)) => num(s, "p50_us"),
            (P99, Some(s)) => num(s, "p99_us"),
            (P999, Some(s)) => num(s, "p999_us"),
            (LagP99, Some(s)) => num(s, "lag_p99_us"),
            (Match, Some(s)) => num(s, "match_rate"),
            (OfferedRate, Some(s)) => num(s, "offered_rate"),
            (AchievedRate, Some(s)) => num(s, "achieved_rate"),
            (Sent | Matched | Timeouts | Late | Skipped | PublishErrors, Some(s)) => {
                num(s, m.name())
            }
            // no step passed: nothing was sustained, so no step figures to judge
            (P50 | P99 | P999 | LagP99 | Match | OfferedRate | AchievedRate, None) => None,
            (Sent | Matched | Timeouts | Late | Skipped | PublishErrors, None) => None,
            _ => totals(report, m),
        };
    }
    totals(report, m)
}

fn totals(report: &Value, m: Metric) -> Option<f64> {
    use Metric::*;
    let lat = |k: &str| {
        report
            .get("latency_us")
            .and_then(|l| l.get(k))
            .and_then(Value::as_f64)
    };
    let top = |k: &str| report.get(k).and_then(Value::as_f64);
    match m {
        Min => lat("min"),
        Mean => lat("mean"),
        P50 => lat("p50"),
        P90 => lat("p90"),
        P99 => lat("p99"),
        P999 => lat("p999"),
        Max => lat("max"),
        LagP99 => report
            .get("schedule_lag_us")
            .and_then(|l| l.get("p99"))
            .and_then(Value::as_f64),
        Match => top("match_rate").or_else(|| top("delivery_ratio")),
        OfferedRate => top("offered_rate"),
        AchievedRate => top("achieved_rate"),
        Capacity => None,
        Sent | Matched | Timeouts | Late | Duplicates | Invalid | Skipped | PublishErrors
        | Reconnects | Lost => top(m.name()),
    }
}

/// Whether every verdict passed.
pub fn all_passed(verdicts: &[Verdict]) -> bool {
    verdicts.iter().all(|v| v.ok)
}

/// Process exit status when a threshold failed (k6's convention).
pub const EXIT_THRESHOLDS: i32 = 99;

#[cfg(test)]
#[path = "thresholds_tests.rs"]
mod tests;
