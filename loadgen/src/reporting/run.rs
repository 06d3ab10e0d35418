//! What a run does with reports: carries its histograms in the report (`histograms`, filled at
//! the end and for every `GET /report`), and writes `REPORT_HTML` at the end, with the
//! comparison against `REPORT_BASELINE` embedded when that is set.

use super::cli::page_with_baseline;
use super::hist;
use super::load::LoadedReport;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The report's lossless histograms (microseconds), HdrHistogram V2 compressed, base64.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    pub latency_us: String,
    pub schedule_lag_us: String,
}

impl Histograms {
    pub fn of(latency: &Histogram<u64>, schedule_lag: &Histogram<u64>) -> Self {
        Histograms {
            latency_us: hist::encode(latency),
            schedule_lag_us: hist::encode(schedule_lag),
        }
    }
}

/// Writes the HTML report of a finished run to `path` (the comparison with `baseline` embedded
/// when given). Returns a message naming the file on failure.
pub fn write_html<R: Serialize>(
    report: &R,
    path: &Path,
    baseline: Option<&Path>,
) -> Result<(), String> {
    let value = serde_json::to_value(report).map_err(|e| e.to_string())?;
    let loaded = LoadedReport::from_value("this run", value).map_err(|e| e.to_string())?;
    let (page, _) = page_with_baseline(&loaded, baseline, &[]).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display()))
}
