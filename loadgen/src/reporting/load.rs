//! Reading a JSON report back: checks it is a report this version can merge, compare and
//! render (it carries its histograms), decodes them, and gives typed access to its figures.
//! Older reports are refused with a message that says what is missing and what to do.

use super::hist::{self, HistError};
use hdrhistogram::Histogram;
use serde_json::{Map, Value};

/// Why a report could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{source_name}: cannot read: {error}")]
    Io { source_name: String, error: String },
    #[error("{source_name}: not a JSON report: {error}")]
    Json { source_name: String, error: String },
    #[error(
        "{source_name}: this report has no `{field}`: it was written by an older loadgen, before \
         reports carried their histograms (HdrHistogram V2, base64), so it cannot be merged, \
         compared or rendered exactly; re-run with this loadgen to get one"
    )]
    Old { source_name: String, field: String },
    #[error("{source_name}: field `{field}` {problem}")]
    Field {
        source_name: String,
        field: String,
        problem: String,
    },
    #[error("{source_name}: histogram `{field}` {error}")]
    Histogram {
        source_name: String,
        field: String,
        error: HistError,
    },
    #[error("cannot merge: {0}")]
    Merge(String),
}

/// Counters every report has; merged reports sum them.
pub const COUNTS: &[&str] = &[
    "sent",
    "duplicates",
    "invalid",
    "skipped",
    "publish_errors",
    "reconnects",
];

/// The request books of rr and pub reports (`sent = matched + timeouts` after the drain).
pub const REQUEST_COUNTS: &[&str] = &["matched", "timeouts", "late"];

/// The delivery books of fan-out reports (`received + lost = expected`).
pub const DELIVERY_COUNTS: &[&str] = &["expected", "received", "lost"];

/// A report read back and checked, with its histograms decoded.
#[derive(Clone, Debug)]
pub struct LoadedReport {
    /// Where it came from (a path or URL), for messages.
    pub source: String,
    pub value: Map<String, Value>,
    pub latency: Histogram<u64>,
    pub schedule_lag: Histogram<u64>,
}

impl LoadedReport {
    /// Parses and checks a report's JSON text.
    pub fn from_text(source: &str, text: &str) -> Result<Self, ReportError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ReportError::Json {
            source_name: source.to_string(),
            error: e.to_string(),
        })?;
        Self::from_value(source, value)
    }

    /// Reads and checks a report file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ReportError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::Io {
            source_name: name.clone(),
            error: e.to_string(),
        })?;
        Self::from_text(&name, &text)
    }

    /// Checks a report already parsed as JSON.
    pub fn from_value(source: &str, value: Value) -> Result<Self, ReportError> {
        let Value::Object(map) = value else {
            return Err(field_err(source, "(top level)", "is not a JSON object"));
        };
        for f in ["scenario", "instance_id"] {
            if !map.get(f).is_some_and(Value::is_string) {
                return Err(field_err(source, f, "is missing or not a string"));
            }
        }
        let books = if map.get("scenario").and_then(Value::as_str) == Some("fanout") {
            DELIVERY_COUNTS
        } else {
            REQUEST_COUNTS
        };
        for f in COUNTS
            .iter()
            .chain(books)
            .chain(&["duration_s", "offered_rate"])
        {
            if !map.get(*f).is_some_and(Value::is_number) {
                return Err(field_err(source, f, "is missing or not a number"));
            }
        }
        let hists = match map.get("histograms") {
            Some(Value::Object(h)) => h,
            Some(_) => return Err(field_err(source, "histograms", "is not an object")),
            None => {
                return Err(ReportError::Old {
                    source_name: source.to_string(),
                    field: "histograms".into(),
                })
            }
        };
        let decode = |key: &str| -> Result<Histogram<u64>, ReportError> {
            let text = match hists.get(key) {
                Some(Value::String(s)) => s,
                Some(_) => {
                    return Err(field_err(
                        source,
                        &format!("histograms.{key}"),
                        "is not a string",
                    ))
                }
                None => {
                    return Err(ReportError::Old {
                        source_name: source.to_string(),
                        field: format!("histograms.{key}"),
                    })
                }
            };
            hist::decode(text).map_err(|error| ReportError::Histogram {
                source_name: source.to_string(),
                field: key.to_string(),
                error,
            })
        };
        let latency = decode(hist::LATENCY)?;
        let schedule_lag = decode(hist::SCHEDULE_LAG)?;
        if let Some(t) = map.get("timeline") {
            if !t.is_array() {
                return Err(field_err(source, "timeline", "is not an array"));
            }
        }
        Ok(LoadedReport {
            source: source.to_string(),
            value: map,
            latency,
            schedule_lag,
        })
    }

    pub fn str(&self, key: &str) -> &str {
        self.value.get(key).and_then(Value::as_str).unwrap_or("")
    }

    pub fn f64(&self, key: &str) -> f64 {
        self.value.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.value.get(key).and_then(as_count).unwrap_or(0)
    }

    pub fn scenario(&self) -> &str {
        self.str("scenario")
    }

    pub fn instance_id(&self) -> &str {
        self.str("instance_id")
    }

    /// The timeline rows (empty when the report has none).
    pub fn timeline(&self) -> &[Value] {
        self.value
            .get("timeline")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Wall-clock time (Unix ms) of the run's t = 0, when the report says.
    pub fn start_unix_ms(&self) -> Option<u64> {
        self.value.get("start_unix_ms").and_then(as_count)
    }

    pub fn is_fanout(&self) -> bool {
        self.scenario() == "fanout"
    }

    /// What was answered or delivered: `matched` (rr, pub) or `received` (fan-out).
    pub fn resolved_ok(&self) -> u64 {
        self.u64(if self.is_fanout() {
            "received"
        } else {
            "matched"
        })
    }

    /// The run's success ratio: `match_rate = matched / sent` (rr, pub) or
    /// `delivery_ratio = received / expected` (fan-out), computed from the books.
    pub fn ratio(&self) -> f64 {
        let (num, den) = if self.is_fanout() {
            (self.u64("received"), self.u64("expected"))
        } else {
            (self.u64("matched"), self.u64("sent"))
        };
        if den == 0 {
            0.0
        } else {
            (num as f64 / den as f64).min(1.0)
        }
    }

    /// The name of that ratio in reports.
    pub fn ratio_name(&self) -> &'static str {
        if self.is_fanout() {
            "delivery_ratio"
        } else {
            "match_rate"
        }
    }

    /// Answers (rr, pub) or deliveries (fan-out) per second over the measured window.
    pub fn matched_rate(&self) -> f64 {
        let d = self.f64("duration_s");
        if d > 0.0 {
            self.resolved_ok() as f64 / d
        } else {
            0.0
        }
    }
}

/// A count, accepting integral floats (some writers emit `12.0`).
pub fn as_count(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

fn field_err(source: &str, field: &str, problem: &str) -> ReportError {
    ReportError::Field {
        source_name: source.to_string(),
        field: field.to_string(),
        problem: problem.to_string(),
    }
}
