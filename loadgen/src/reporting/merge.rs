//! Exact merge of several instances' reports into one fleet report: books summed, histograms
//! merged count by count (so the fleet's percentiles are exact, never averaged), timelines
//! lined up on wall-clock seconds, and one row per instance kept under `instances`.

use super::hist;
use super::load::{as_count, LoadedReport, ReportError, COUNTS, REQUEST_COUNTS};
use super::timeline;
use serde_json::{Map, Value};

/// Fan-out fields that add up across instances (publishers and subscribers of one run).
const FANOUT_SUMS: &[&str] = &[
    "clients",
    "received",
    "bytes_received",
    "lost",
    "clients_with_loss",
    "expected",
    "connections",
    "connections_after_ramp",
    "disconnects",
    "connect_failures",
    "unresolved",
];
/// Per-second rates that add up across instances running at the same time.
const RATE_SUMS: &[&str] = &[
    "offered_rate",
    "achieved_rate",
    "delivered_rate",
    "bytes_per_s",
];
/// Fields the fleet shares (the same subjects or clients seen from every instance).
const MAXES: &[&str] = &["subjects"];
/// Per-instance fields copied into each `instances` row.
const INSTANCE_FIELDS: &[&str] = &[
    "scenario",
    "instance_id",
    "role",
    "start_unix_ms",
    "run",
    "duration_s",
    "offered_rate",
    "achieved_rate",
    "match_rate",
    "delivery_ratio",
    "unresolved",
    "received",
    "lost",
    "expected",
    "clients",
    "connections",
    "capacity",
    "thresholds",
];

/// Merges reports into one. Fails when there is nothing to merge, when scenarios differ, or when
/// one instance appears twice (its requests would count twice).
pub fn merge(reports: &[LoadedReport]) -> Result<Map<String, Value>, ReportError> {
    let Some(first) = reports.first() else {
        return Err(ReportError::Merge("no reports given".into()));
    };
    for r in reports {
        if r.scenario() != first.scenario() {
            return Err(ReportError::Merge(format!(
                "{} is a `{}` report and {} a `{}` report; merge reports of one scenario",
                first.source,
                first.scenario(),
                r.source,
                r.scenario()
            )));
        }
    }
    for (i, a) in reports.iter().enumerate() {
        if let Some(b) = reports[..i]
            .iter()
            .find(|b| b.instance_id() == a.instance_id())
        {
            return Err(ReportError::Merge(format!(
                "instance `{}` appears twice ({} and {}): its requests would count twice",
                a.instance_id(),
                b.source,
                a.source
            )));
        }
    }

    let mut out = Map::new();
    out.insert("scenario".into(), first.scenario().into());
    let ids: Vec<&str> = reports.iter().map(LoadedReport::instance_id).collect();
    out.insert(
        "instance_id".into(),
        format!("fleet({}): {}", ids.len(), ids.join(", ")).into(),
    );
    out.insert("merged".into(), true.into());
    let (config, differs) = merge_config(reports);
    out.insert("config".into(), Value::Object(config));
    if let Some(start) = reports.iter().filter_map(LoadedReport::start_unix_ms).min() {
        out.insert("start_unix_ms".into(), start.into());
    }
    // windows of instances that ran together overlap: the fleet's window is the longest one
    let duration = reports
        .iter()
        .map(|r| r.f64("duration_s"))
        .fold(0.0, f64::max);
    out.insert("duration_s".into(), duration.into());
    for k in RATE_SUMS {
        if reports.iter().any(|r| r.value.contains_key(*k)) {
            let sum: f64 = reports.iter().map(|r| r.f64(k)).sum();
            out.insert((*k).into(), round3(sum).into());
        }
    }
    for k in COUNTS.iter().chain(REQUEST_COUNTS).chain(FANOUT_SUMS) {
        if reports.iter().any(|r| r.value.contains_key(*k)) {
            let sum: u64 = reports.iter().map(|r| r.u64(k)).sum();
            out.insert((*k).into(), sum.into());
        }
    }
    for k in MAXES {
        if let Some(m) = reports
            .iter()
            .filter_map(|r| r.value.get(*k).and_then(as_count))
            .max()
        {
            out.insert((*k).into(), m.into());
        }
    }
    let ratio = ratio(&out, first.is_fanout());
    out.insert(first.ratio_name().into(), ratio.into());
    if first.is_fanout() && reports.iter().any(|r| r.value.contains_key("match_rate")) {
        // fan-out reports of earlier versions called the delivery ratio match_rate
        out.insert("match_rate".into(), ratio.into());
    }

    let mut latency = hist::empty();
    let mut lag = hist::empty();
    for r in reports {
        hist::merge_into(&mut latency, &r.latency);
        hist::merge_into(&mut lag, &r.schedule_lag);
    }
    out.insert("latency_us".into(), summary_json(&latency));
    out.insert("schedule_lag_us".into(), summary_json(&lag));
    let mut hists = Map::new();
    hists.insert(hist::LATENCY.into(), hist::encode(&latency).into());
    hists.insert(hist::SCHEDULE_LAG.into(), hist::encode(&lag).into());
    out.insert("histograms".into(), Value::Object(hists));

    let per: Vec<Vec<timeline::Row>> = reports.iter().map(timeline::rows).collect();
    if per.iter().any(|rows| !rows.is_empty()) {
        let (rows, align) = timeline::merge(&per);
        out.insert(
            "timeline".into(),
            Value::Array(rows.iter().map(timeline::Row::to_json).collect()),
        );
        out.insert("timeline_alignment".into(), align.name().into());
        // counts per second are exact sums; a second's fleet percentile is not in the rows
        out.insert("timeline_percentiles".into(), "max_of_instances".into());
    }

    let rows = reports
        .iter()
        .zip(differs)
        .map(|(r, d)| instance_row(r, d))
        .collect();
    out.insert("instances".into(), Value::Array(rows));
    Ok(out)
}

/// The fleet's `match_rate` (matched / sent) or fan-out `delivery_ratio` (received / expected),
/// from the summed books.
fn ratio(out: &Map<String, Value>, fanout: bool) -> f64 {
    let get = |k: &str| out.get(k).and_then(as_count).unwrap_or(0) as f64;
    let (num, den) = if fanout {
        (get("received"), get("expected"))
    } else {
        (get("matched"), get("sent"))
    };
    if den > 0.0 {
        (num / den).min(1.0)
    } else {
        0.0
    }
}

/// The settings all instances share; a setting that differs is shown as such at the top and
/// kept with its value in each instance's row.
fn merge_config(reports: &[LoadedReport]) -> (Map<String, Value>, Vec<Map<String, Value>>) {
    let cfg = |r: &LoadedReport| {
        r.value
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let all: Vec<Map<String, Value>> = reports.iter().map(cfg).collect();
    let mut keys: Vec<&String> = all.iter().flat_map(|c| c.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut shared = Map::new();
    let mut differs = vec![Map::new(); all.len()];
    for k in keys {
        let first = all[0].get(k);
        if all.iter().all(|c| c.get(k) == first) {
            if let Some(v) = first {
                shared.insert(k.clone(), v.clone());
            }
        } else {
            shared.insert(k.clone(), "(differs per instance)".into());
            for (d, c) in differs.iter_mut().zip(&all) {
                d.insert(k.clone(), c.get(k).cloned().unwrap_or(Value::Null));
            }
        }
    }
    (shared, differs)
}

fn instance_row(r: &LoadedReport, config_differs: Map<String, Value>) -> Value {
    let mut row = Map::new();
    row.insert("source".into(), r.source.clone().into());
    for k in INSTANCE_FIELDS.iter().chain(COUNTS).chain(REQUEST_COUNTS) {
        if let Some(v) = r.value.get(*k) {
            row.insert((*k).into(), v.clone());
        }
    }
    row.insert("latency_us".into(), summary_json(&r.latency));
    row.insert("schedule_lag_us".into(), summary_json(&r.schedule_lag));
    // each instance's own histograms, as it served them: a merged report can be checked,
    // re-merged or plotted per instance
    if let Some(h) = r.value.get("histograms") {
        row.insert("histograms".into(), h.clone());
    }
    if !config_differs.is_empty() {
        row.insert("config".into(), Value::Object(config_differs));
    }
    Value::Object(row)
}

pub fn summary_json(h: &hdrhistogram::Histogram<u64>) -> Value {
    serde_json::to_value(hist::summary(h)).unwrap_or(Value::Null)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
