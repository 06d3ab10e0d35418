//! The self-contained HTML report, generated from a JSON report: verdict and thresholds at the
//! top, the books, the comparison with a baseline when given, the charts (inline SVG), capacity
//! steps, per-instance rows of a merged report, and the configuration with secrets redacted.
//! No script, no external resource: it opens offline from a file and prints.

use super::charts;
use super::compare::{self, Comparison, RuleResult};
use super::figures::{self, Figure};
use super::load::{LoadedReport, COUNTS, DELIVERY_COUNTS, REQUEST_COUNTS};
use super::merge::summary_json;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// A baseline comparison to embed (from `REPORT_BASELINE` or `loadgen compare`).
pub struct Baseline<'a> {
    pub comparison: &'a Comparison,
    pub rules: &'a [RuleResult],
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Whether a configuration key holds a secret.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "CREDENTIAL"]
        .iter()
        .any(|s| k.contains(s))
}

/// A configuration value as shown: secrets redacted, passwords in URLs removed.
pub fn redact(key: &str, v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if is_secret(key) && !text.is_empty() {
        return "<redacted>".into();
    }
    // scheme://user:password@host → scheme://user:<redacted>@host
    text.split(',')
        .map(|part| match (part.find("://"), part.find('@')) {
            (Some(s), Some(at)) if at > s => {
                let cred = &part[s + 3..at];
                match cred.find(':') {
                    Some(c) => {
                        format!("{}{}:<redacted>{}", &part[..s + 3], &cred[..c], &part[at..])
                    }
                    None => part.to_string(),
                }
            }
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1160px;padding:16px 24px;color:#222}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 12px}
.verdict{border-radius:6px;padding:10px 14px;margin:10px 0;border:1px solid #ccc;background:#f6f6f6}
.verdict.pass{background:#eaf6ea;border-color:#8c8}.verdict.fail{background:#fbeaea;border-color:#d88}
.verdict .line{font-size:16px;font-weight:600}
.ok{color:#262}.bad{color:#a22}.muted{color:#777}
table{border-collapse:collapse;margin:4px 0 8px}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th{background:#fafafa}td:first-child,th:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:24px}
figure{margin:14px 0}figure svg{width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:13px}
.absent{color:#777;font-style:italic}.wide{overflow-x:auto}
code{background:#f3f3f3;padding:0 3px}
@media print{body{max-width:none}figure{break-inside:avoid}}
";

/// Renders the page.
pub fn render(r: &LoadedReport, baseline: Option<&Baseline>) -> String {
    let mut h = String::new();
    let scen = r.scenario();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>loadgen report: {} {}</title><style>{STYLE}</style></head>\n",
        esc(scen),
        esc(r.instance_id())
    );
    let figs = figures::figures(r);
    let charts_n = figs
        .iter()
        .filter(|f| matches!(f, Figure::Chart { .. }))
        .count();
    let _ = writeln!(
        h,
        "<body data-scenario=\"{}\" data-charts=\"{charts_n}\">",
        esc(scen)
    );
    let _ = writeln!(h, "<h1>loadgen report: {}</h1>", esc(scen));
    let _ = writeln!(h, "<p class=\"sub\">{}</p>", subtitle(r));
    verdict(&mut h, r, baseline);
    if let Some(b) = baseline {
        comparison(&mut h, b.comparison);
    }
    books(&mut h, r);
    h.push_str("<h2 id=\"charts\">Charts</h2>\n");
    for f in &figs {
        match f {
            Figure::Chart { chart, caption } => {
                let svg = charts::svg(chart)
                    .unwrap_or_else(|e| format!("<p class=\"absent\">{}</p>", esc(&e)));
                let _ = writeln!(
                    h,
                    "<figure class=\"chart\" id=\"{}\" data-points=\"{}\">{svg}<figcaption>{}</figcaption></figure>",
                    chart.id,
                    chart.points(),
                    esc(caption)
                );
            }
            Figure::Absent { id, title, why } => {
                let _ = writeln!(
                    h,
                    "<p class=\"absent\" id=\"{id}\" data-points=\"0\"><b>{}</b>: {}</p>",
                    esc(title),
                    esc(why)
                );
            }
        }
    }
    capacity_steps(&mut h, r);
    instances(&mut h, r);
    config(&mut h, r);
    let _ = writeln!(
        h,
        "<p class=\"muted\">Generated from the JSON report by loadgen {}; regenerate with \
         <code>loadgen report REPORT.json -o REPORT.html</code>.</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn subtitle(r: &LoadedReport) -> String {
    let mut parts = vec![format!("instance {}", esc(r.instance_id()))];
    if let Some(ms) = r.start_unix_ms() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        parts.push(format!("started {}", humantime::format_rfc3339_seconds(t)));
    }
    parts.push(format!("measured window {:.1} s", r.f64("duration_s")));
    if let Some(b) = r.value.get("config").and_then(|c| c.get("BROKER")) {
        parts.push(format!("broker {}", esc(&redact("BROKER", b))));
    }
    parts.join(" · ")
}

/// A threshold entry, whatever the writer named its fields: (expression, passed, detail).
/// The loadgen's own entries are `{expr, ok, value, limit, line}`.
fn threshold(v: &Value) -> (String, Option<bool>, String) {
    let pick = |names: &[&str]| names.iter().find_map(|n| v.get(*n)).cloned();
    let text = |x: Value| x.as_str().map_or(x.to_string(), str::to_string);
    let expr = pick(&["expr", "threshold", "rule", "text", "name"])
        .map(text)
        .unwrap_or_else(|| text(v.clone()));
    let passed = pick(&["ok", "passed", "pass"]).and_then(|b| b.as_bool());
    let detail = match (
        v.get("line").and_then(Value::as_str),
        pick(&["actual", "value", "observed"]),
    ) {
        // the line repeats mark and expression first: keep what follows them
        (Some(line), _) => line
            .split_once(expr.as_str())
            .map_or(line, |(_, rest)| rest)
            .trim()
            .to_string(),
        (None, Some(Value::Null)) | (None, None) => String::new(),
        (None, Some(a)) => text(a),
    };
    (expr, passed, detail)
}

fn verdict(h: &mut String, r: &LoadedReport, baseline: Option<&Baseline>) {
    let thresholds: Vec<(String, Option<bool>, String)> = r
        .value
        .get("thresholds")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(threshold).collect())
        .unwrap_or_default();
    let rules = baseline.map_or(&[][..], |b| b.rules);
    let failed = thresholds.iter().any(|t| t.1 == Some(false)) || rules.iter().any(|r| r.failed);
    let judged = !thresholds.is_empty() || !rules.is_empty();
    let class = if failed {
        "fail"
    } else if judged {
        "pass"
    } else {
        "none"
    };
    let _ = writeln!(
        h,
        "<section id=\"verdict\" class=\"verdict {class}\" data-verdict=\"{class}\">"
    );
    let cap = r.value.get("capacity");
    let line = r
        .value
        .get("verdict")
        .or_else(|| cap.and_then(|c| c.get("verdict")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| cap.map(capacity_line));
    let headline = match (&line, class) {
        (Some(l), _) => l.clone(),
        (None, "fail") => "FAILED: a threshold or regression rule failed".into(),
        (None, "pass") => "PASSED: every threshold and regression rule holds".into(),
        (None, _) => format!(
            "{} sent, {} {:.5}, p99 {:.3} ms (no thresholds set)",
            r.u64("sent"),
            r.ratio_name().replace('_', " "),
            r.ratio(),
            r.latency.value_at_quantile(0.99) as f64 / 1e3
        ),
    };
    let _ = writeln!(h, "<div class=\"line\">{}</div>", esc(&headline));
    if !thresholds.is_empty() {
        h.push_str("<div>Thresholds:</div><ul id=\"thresholds\">");
        for (expr, passed, actual) in &thresholds {
            let (mark, cls) = match passed {
                Some(true) => ("✓", "ok"),
                Some(false) => ("✗", "bad"),
                None => ("?", "muted"),
            };
            let _ = write!(
                h,
                "<li class=\"{cls}\">{mark} <code>{}</code> {}</li>",
                esc(expr),
                esc(actual)
            );
        }
        h.push_str("</ul>\n");
    }
    if !rules.is_empty() {
        h.push_str("<div>Regression rules against the baseline:</div><ul id=\"rules\">");
        for rr in rules {
            let (mark, cls) = if rr.failed {
                ("✗", "bad")
            } else {
                ("✓", "ok")
            };
            let _ = write!(
                h,
                "<li class=\"{cls}\">{mark} <code>{}</code> {}</li>",
                esc(&rr.rule),
                esc(&rr.detail)
            );
        }
        h.push_str("</ul>\n");
    }
    let _ = writeln!(h, "<div>{}</div></section>", books_line(r));
}

fn capacity_line(cap: &Value) -> String {
    let rate = cap.get("rate").and_then(Value::as_f64).unwrap_or(0.0);
    let by = cap.get("limited_by").and_then(Value::as_str).unwrap_or("?");
    let lb = cap.get("lower_bound").and_then(Value::as_bool) == Some(true);
    format!(
        "capacity: {rate:.0} req/s, limited by {by}{}",
        if lb {
            " (a lower bound: the generator was the limit)"
        } else {
            ""
        }
    )
}

/// Whether the books close (sent = matched + timeouts after the drain), in words.
fn books_line(r: &LoadedReport) -> String {
    let (sent, matched, timeouts) = (r.u64("sent"), r.u64("matched"), r.u64("timeouts"));
    let unresolved = r.u64("unresolved");
    if r.scenario() == "fanout" {
        return format!(
            "Delivered {} of {} expected, lost {}{}.",
            r.u64("received"),
            r.u64("expected"),
            r.u64("lost"),
            if unresolved > 0 {
                format!(" ({unresolved} unresolved when the report was written)")
            } else {
                String::new()
            }
        );
    }
    if sent == matched + timeouts {
        format!("<span class=\"ok\">Books close</span>: sent {sent} = matched {matched} + timeouts {timeouts}.")
    } else {
        format!(
            "<span class=\"bad\">Books do not close</span>: sent {sent} ≠ matched {matched} + timeouts {timeouts} ({unresolved} unresolved when the report was written)."
        )
    }
}

fn comparison(h: &mut String, c: &Comparison) {
    let _ = writeln!(
        h,
        "<h2 id=\"comparison\">Compared with the baseline</h2><p class=\"sub\">base {} · new {}</p>",
        esc(&c.base_name),
        esc(&c.new_name)
    );
    h.push_str("<table><tr><th>metric</th><th>base</th><th>this run</th><th>change</th><th>%</th><th></th></tr>\n");
    for l in &c.lines {
        let cls = match l.verdict() {
            "better" => "ok",
            "worse" => "bad",
            _ => "muted",
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{cls}\">{}</td></tr>",
            l.label,
            compare::fmt_value(l.kind, l.base),
            compare::fmt_value(l.kind, l.new),
            compare::fmt_change(l.kind, l.change()),
            compare::fmt_pct(l.change_pct()),
            l.verdict()
        );
    }
    h.push_str("</table>\n");
}

fn row(h: &mut String, k: &str, v: &str) {
    let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
}

fn books(h: &mut String, r: &LoadedReport) {
    h.push_str("<h2 id=\"books\">Books</h2><div class=\"grid\"><table>\n");
    row(
        h,
        "offered rate",
        &format!("{:.1}/s", r.f64("offered_rate")),
    );
    row(
        h,
        "achieved rate",
        &format!("{:.1}/s", r.f64("achieved_rate")),
    );
    let books = if r.is_fanout() {
        DELIVERY_COUNTS
    } else {
        REQUEST_COUNTS
    };
    for k in COUNTS.iter().chain(books) {
        row(h, &k.replace('_', " "), &r.u64(k).to_string());
    }
    row(h, "unresolved", &r.u64("unresolved").to_string());
    row(
        h,
        &r.ratio_name().replace('_', " "),
        &format!("{:.5}", r.ratio()),
    );
    h.push_str("</table><table><tr><th>ms</th><th>latency</th><th>schedule lag</th></tr>\n");
    let (l, g) = (summary_json(&r.latency), summary_json(&r.schedule_lag));
    for k in ["min", "mean", "p50", "p90", "p99", "p999", "max"] {
        let ms = |v: &Value| {
            format!(
                "{:.3}",
                v.get(k).and_then(Value::as_f64).unwrap_or(0.0) / 1e3
            )
        };
        let _ = writeln!(
            h,
            "<tr><td>{k}</td><td>{}</td><td>{}</td></tr>",
            ms(&l),
            ms(&g)
        );
    }
    let _ = writeln!(
        h,
        "<tr><td>samples</td><td>{}</td><td>{}</td></tr></table>",
        r.latency.len(),
        r.schedule_lag.len()
    );
    let other = other_fields(&r.value);
    if !other.is_empty() {
        h.push_str("<table><tr><th>other figures</th><th></th></tr>\n");
        for (k, v) in other {
            row(h, &k, &v);
        }
        h.push_str("</table>");
    }
    h.push_str("</div>\n");
}

/// Scalar top-level fields not shown elsewhere (fan-out figures, fields newer writers add).
fn other_fields(m: &Map<String, Value>) -> Vec<(String, String)> {
    const SHOWN: &[&str] = &[
        "scenario",
        "instance_id",
        "duration_s",
        "offered_rate",
        "achieved_rate",
        "match_rate",
        "delivery_ratio",
        "unresolved",
        "start_unix_ms",
        "merged",
        "verdict",
    ];
    m.iter()
        .filter(|(k, v)| {
            !SHOWN.contains(&k.as_str())
                && !COUNTS.contains(&k.as_str())
                && !REQUEST_COUNTS.contains(&k.as_str())
                && !DELIVERY_COUNTS.contains(&k.as_str())
                && (v.is_number() || v.is_string() || v.is_boolean())
        })
        .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
        .collect()
}

fn capacity_steps(h: &mut String, r: &LoadedReport) {
    let Some(steps) = r
        .value
        .get("capacity")
        .and_then(|c| c.get("steps"))
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    table_of_objects(h, "capacity-steps", "Capacity steps", steps);
}

fn instances(h: &mut String, r: &LoadedReport) {
    if let Some(rows) = r.value.get("instances").and_then(Value::as_array) {
        table_of_objects(h, "instances", &format!("Instances ({})", rows.len()), rows);
    }
}

/// A table with one row per object and one column per scalar or summary field.
fn table_of_objects(h: &mut String, id: &str, title: &str, rows: &[Value]) {
    // the figures people read first, then whatever else the rows carry
    const FIRST: &[&str] = &[
        "source",
        "instance_id",
        "role",
        "offered",
        "offered_rate",
        "achieved",
        "achieved_rate",
        "sent",
        "matched",
        "timeouts",
        "match_rate",
        "p50_us",
        "p99_us",
        "p999_us",
        "latency_us.p99",
        "lag_p99_us",
        "schedule_lag_us.p99",
        "worker_pool",
        "passed",
    ];
    let mut cols: Vec<String> = Vec::new();
    for o in rows.iter().filter_map(Value::as_object) {
        for (k, v) in o {
            let key = if v.is_object() && v.get("p99").is_some() {
                format!("{k}.p99")
            } else {
                k.clone()
            };
            if !cols.contains(&key) && !v.is_array() && (!v.is_object() || key.ends_with(".p99")) {
                cols.push(key);
            }
        }
    }
    cols.sort_by_key(|c| FIRST.iter().position(|f| f == c).unwrap_or(FIRST.len()));
    let _ = write!(
        h,
        "<h2 id=\"{id}\">{}</h2><div class=\"wide\"><table><tr>",
        esc(title)
    );
    for c in &cols {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>\n");
    for o in rows {
        h.push_str("<tr>");
        for c in &cols {
            let v = match c.strip_suffix(".p99") {
                Some(k) => o.get(k).and_then(|s| s.get("p99")),
                None => o.get(c.as_str()),
            };
            let text = match v {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) if n.is_f64() => {
                    let f = n.as_f64().unwrap_or(0.0);
                    if f.fract() == 0.0 {
                        format!("{f:.0}")
                    } else if f.abs() < 10.0 {
                        format!("{f:.5}")
                    } else {
                        format!("{f:.1}")
                    }
                }
                Some(v) => v.to_string(),
            };
            let _ = write!(h, "<td>{}</td>", esc(&text));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
}

fn config(h: &mut String, r: &LoadedReport) {
    h.push_str("<h2 id=\"config\">Configuration</h2>\n");
    let Some(cfg) = r
        .value
        .get("config")
        .and_then(Value::as_object)
        .filter(|c| !c.is_empty())
    else {
        h.push_str("<p class=\"absent\">The report records no configuration.</p>\n");
        return;
    };
    h.push_str("<table><tr><th>variable</th><th>value</th></tr>\n");
    for (k, v) in cfg {
        row(h, k, &redact(k, v));
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("MQTT_PASSWORD", &json!("hunter2")), "<redacted>");
        assert_eq!(redact("BROKER_PASSWORD", &json!("")), "");
        assert_eq!(
            redact("BROKER", &json!("mqtt://bob:hunter2@h:1883,ws://h:80/x")),
            "mqtt://bob:<redacted>@h:1883,ws://h:80/x"
        );
        assert_eq!(redact("VIRTUAL_CLIENTS", &json!(100)), "100");
    }

    #[test]
    fn escaping_covers_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
