//! Comparing two runs: a side-by-side table of the figures people compare (rates, match rate,
//! latency percentiles, timeouts, reconnects) with the change in each, and `--fail-on` rules
//! that turn a regression into exit status 99 for CI.
//!
//! `--fail-on` syntax: rules separated by commas, each `METRIC OP LIMIT`:
//! - `OP` is `>` (fails when the change new − base is above LIMIT) or `<` (fails when the change
//!   is below LIMIT);
//! - `LIMIT` is a signed number, either relative with `%` (`p99>+10%`: new p99 more than 10 %
//!   above the base; from a base of 0, any increase is +∞ %) or absolute in the metric's unit,
//!   where latencies take `us`, `ms` or `s` (`p99>+2ms`) and bare numbers are the report's unit
//!   (microseconds, counts, requests per second, a fraction for `match`: `match<-0.001`).
//! - `METRIC` is one of the names in [`METRICS`] (`loadgen compare --help` lists them).

use super::load::LoadedReport;
use rr_common::stats::Summary;

/// What a metric measures, for units and formatting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rate,
    Fraction,
    Micros,
    Count,
}

/// A metric the comparison shows and `--fail-on` can name.
pub struct Metric {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    /// Whether a higher value is better (for the ▲/▼ hint only; rules say what fails).
    pub higher_is_better: bool,
    get: fn(&LoadedReport, &Summary, &Summary) -> f64,
}

const fn m(
    name: &'static str,
    label: &'static str,
    kind: Kind,
    higher_is_better: bool,
    get: fn(&LoadedReport, &Summary, &Summary) -> f64,
) -> Metric {
    Metric {
        name,
        label,
        kind,
        higher_is_better,
        get,
    }
}

/// Every metric compared, in table order.
pub const METRICS: &[Metric] = &[
    m("offered", "offered rate", Kind::Rate, true, |r, _, _| {
        r.f64("offered_rate")
    }),
    m("achieved", "achieved rate", Kind::Rate, true, |r, _, _| {
        r.f64("achieved_rate")
    }),
    m(
        "matched_rate",
        "matched rate",
        Kind::Rate,
        true,
        |r, _, _| r.matched_rate(),
    ),
    m("match", "match rate", Kind::Fraction, true, |r, _, _| {
        r.ratio()
    }),
    m("p50", "latency p50", Kind::Micros, false, |_, l, _| {
        l.p50 as f64
    }),
    m("p90", "latency p90", Kind::Micros, false, |_, l, _| {
        l.p90 as f64
    }),
    m("p99", "latency p99", Kind::Micros, false, |_, l, _| {
        l.p99 as f64
    }),
    m("p999", "latency p99.9", Kind::Micros, false, |_, l, _| {
        l.p999 as f64
    }),
    m("max", "latency max", Kind::Micros, false, |_, l, _| {
        l.max as f64
    }),
    m("mean", "latency mean", Kind::Micros, false, |_, l, _| {
        l.mean
    }),
    m(
        "lag_p99",
        "schedule lag p99",
        Kind::Micros,
        false,
        |_, _, g| g.p99 as f64,
    ),
    m("sent", "sent", Kind::Count, true, |r, _, _| {
        r.u64("sent") as f64
    }),
    m("matched", "matched", Kind::Count, true, |r, _, _| {
        r.resolved_ok() as f64
    }),
    m("timeouts", "timeouts", Kind::Count, false, |r, _, _| {
        r.u64(if r.is_fanout() { "lost" } else { "timeouts" }) as f64
    }),
    m("late", "late", Kind::Count, false, |r, _, _| {
        r.u64("late") as f64
    }),
    m("skipped", "skipped", Kind::Count, false, |r, _, _| {
        r.u64("skipped") as f64
    }),
    m(
        "publish_errors",
        "publish errors",
        Kind::Count,
        false,
        |r, _, _| r.u64("publish_errors") as f64,
    ),
    m("reconnects", "reconnects", Kind::Count, false, |r, _, _| {
        r.u64("reconnects") as f64
    }),
];

/// Fan-out's words for the metrics whose meaning it changes (the names stay, for `--fail-on`).
fn fanout_label(metric: &str) -> Option<&'static str> {
    Some(match metric {
        "matched_rate" => "delivered rate",
        "match" => "delivery ratio",
        "matched" => "received",
        "timeouts" => "lost",
        _ => return None,
    })
}

/// One line of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub metric: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub base: f64,
    pub new: f64,
    pub higher_is_better: bool,
}

impl Line {
    pub fn change(&self) -> f64 {
        self.new - self.base
    }

    /// Relative change in percent (±∞ from a base of 0, 0 when both are 0).
    pub fn change_pct(&self) -> f64 {
        if self.base == 0.0 {
            if self.new == 0.0 {
                0.0
            } else {
                f64::INFINITY.copysign(self.new)
            }
        } else {
            (self.new - self.base) / self.base.abs() * 100.0
        }
    }

    /// "better", "worse" or "same", by the metric's direction.
    pub fn verdict(&self) -> &'static str {
        let d = self.change();
        if d == 0.0 {
            "same"
        } else if (d > 0.0) == self.higher_is_better {
            "better"
        } else {
            "worse"
        }
    }
}

/// Two runs side by side.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub base_name: String,
    pub new_name: String,
    pub scenarios: (String, String),
    pub lines: Vec<Line>,
}

impl Comparison {
    pub fn of(base: &LoadedReport, new: &LoadedReport) -> Comparison {
        let sums = |r: &LoadedReport| (Summary::of(&r.latency), Summary::of(&r.schedule_lag));
        let (bl, bg) = sums(base);
        let (nl, ng) = sums(new);
        let lines = METRICS
            .iter()
            .map(|mt| Line {
                metric: mt.name,
                label: if new.is_fanout() {
                    fanout_label(mt.name).unwrap_or(mt.label)
                } else {
                    mt.label
                },
                kind: mt.kind,
                base: (mt.get)(base, &bl, &bg),
                new: (mt.get)(new, &nl, &ng),
                higher_is_better: mt.higher_is_better,
            })
            .collect();
        Comparison {
            base_name: base.source.clone(),
            new_name: new.source.clone(),
            scenarios: (base.scenario().into(), new.scenario().into()),
            lines,
        }
    }

    pub fn line(&self, metric: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.metric == metric)
    }

    /// The side-by-side table as text.
    pub fn text(&self) -> String {
        let mut s = format!("base: {}\nnew : {}\n", self.base_name, self.new_name);
        if self.scenarios.0 != self.scenarios.1 {
            s.push_str(&format!(
                "note: comparing a `{}` run with a `{}` run\n",
                self.scenarios.0, self.scenarios.1
            ));
        }
        s.push_str(&format!(
            "{:<18} {:>14} {:>14} {:>14} {:>10}\n",
            "metric", "base", "new", "change", "%"
        ));
        for l in &self.lines {
            s.push_str(&format!(
                "{:<18} {:>14} {:>14} {:>14} {:>10}  {}\n",
                l.label,
                fmt_value(l.kind, l.base),
                fmt_value(l.kind, l.new),
                fmt_change(l.kind, l.change()),
                fmt_pct(l.change_pct()),
                l.verdict(),
            ));
        }
        s
    }
}

/// A value for display: rates per second, fractions to 5 places, microseconds as ms.
pub fn fmt_value(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Rate => format!("{v:.1}/s"),
        Kind::Fraction => format!("{v:.5}"),
        Kind::Micros => format!("{:.3} ms", v / 1000.0),
        Kind::Count => format!("{v:.0}"),
    }
}

pub fn fmt_change(kind: Kind, d: f64) -> String {
    let body = fmt_value(kind, d.abs());
    if d < 0.0 {
        format!("-{body}")
    } else {
        format!("+{body}")
    }
}

pub fn fmt_pct(p: f64) -> String {
    if p.is_infinite() {
        if p > 0.0 { "+inf%" } else { "-inf%" }.into()
    } else {
        format!("{p:+.2}%")
    }
}

/// One `--fail-on` rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub text: String,
    pub metric: &'static str,
    /// true for `>` (fail above the limit), false for `<` (fail below it).
    pub above: bool,
    pub limit: f64,
    pub relative: bool,
}

/// A rule checked against a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleResult {
    pub rule: String,
    pub failed: bool,
    pub detail: String,
}

/// Parses a `--fail-on` list. The error names the rule and says what is accepted.
pub fn parse_rules(list: &str) -> Result<Vec<Rule>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(parse_rule)
        .collect()
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let names = METRICS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ");
    let pos = text.find(['>', '<']).ok_or_else(|| {
        format!("`{text}`: expected METRIC>LIMIT or METRIC<LIMIT, e.g. p99>+10% or match<-0.001")
    })?;
    let name = text[..pos].trim();
    let above = &text[pos..pos + 1] == ">";
    let metric = METRICS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| format!("`{text}`: unknown metric `{name}` (accepted: {names})"))?;
    let raw = text[pos + 1..].trim();
    let (num, relative, scale) = if let Some(n) = raw.strip_suffix('%') {
        (n, true, 1.0)
    } else if metric.kind == Kind::Micros {
        if let Some(n) = raw.strip_suffix("ms") {
            (n, false, 1e3)
        } else if let Some(n) = raw.strip_suffix("us") {
            (n, false, 1.0)
        } else if let Some(n) = raw.strip_suffix('s') {
            (n, false, 1e6)
        } else {
            (raw, false, 1.0)
        }
    } else {
        (raw.strip_suffix("/s").unwrap_or(raw), false, 1.0)
    };
    let limit: f64 = num.trim().parse().map_err(|_| {
        format!(
            "`{text}`: limit `{raw}` is not a number with an optional % (or us/ms/s for latencies)"
        )
    })?;
    if !limit.is_finite() {
        return Err(format!("`{text}`: limit `{raw}` is not finite"));
    }
    Ok(Rule {
        text: text.to_string(),
        metric: metric.name,
        above,
        limit: limit * scale,
        relative,
    })
}

/// Checks each rule; a rule fails when the change crosses its limit.
pub fn check(cmp: &Comparison, rules: &[Rule]) -> Vec<RuleResult> {
    rules
        .iter()
        .map(|r| {
            let Some(l) = cmp.line(r.metric) else {
                return RuleResult {
                    rule: r.text.clone(),
                    failed: true,
                    detail: "metric not in the comparison".into(),
                };
            };
            let change = if r.relative {
                l.change_pct()
            } else {
                l.change()
            };
            let failed = if r.above {
                change > r.limit
            } else {
                change < r.limit
            };
            let shown = if r.relative {
                fmt_pct(change)
            } else {
                fmt_change(l.kind, change)
            };
            RuleResult {
                rule: r.text.clone(),
                failed,
                detail: format!(
                    "{} {} → {} ({shown})",
                    l.label,
                    fmt_value(l.kind, l.base),
                    fmt_value(l.kind, l.new)
                ),
            }
        })
        .collect()
}

/// The rule results as text lines (✓ / ✗), for stdout.
pub fn rules_text(results: &[RuleResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "{} {:<22} {}\n",
                if r.failed { "✗" } else { "✓" },
                r.rule,
                r.detail
            )
        })
        .collect()
}
