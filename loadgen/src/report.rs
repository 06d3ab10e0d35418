//! The final report: one JSON object (`REPORT_JSON`, schema in `schemas/report.schema.json`)
//! and the same figures as text on stdout.

use rr_common::stats::Summary;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub instance_id: String,
    /// Every effective setting, secrets redacted.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Measured window in seconds (warm-up excluded).
    pub duration_s: f64,
    pub offered_rate: f64,
    /// Requests (or messages) sent per second over the measured window.
    pub achieved_rate: f64,
    pub sent: u64,
    pub matched: u64,
    pub timeouts: u64,
    pub late: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub skipped: u64,
    pub publish_errors: u64,
    pub reconnects: u64,
    /// matched / sent after the drain (0 when nothing was sent).
    pub match_rate: f64,
    pub latency_us: Summary,
    /// How far behind its schedule the generator itself ran, in microseconds.
    pub schedule_lag_us: Summary,
    /// Requests still unresolved when the report was written (0 after a full drain).
    pub unresolved: u64,
    /// Scenario-specific fields (fanout: clients, subjects, received, bytes_received, lost, ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text + "\n")
    }

    /// The text summary printed on stdout at the end of a run.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let mut s = format!(
            "== loadgen {} report ({}) ==\n\
             measured window : {:.1} s (warm-up excluded)\n\
             offered rate    : {:.1}/s   achieved: {:.1}/s\n\
             sent            : {}\n\
             matched         : {}   match rate: {:.5}\n\
             timeouts        : {}   (late answers among them: {})\n\
             duplicates      : {}   invalid: {}   skipped: {}   publish errors: {}\n\
             reconnects      : {}   unresolved: {}\n\
             latency (us)    : min {} mean {:.1} p50 {} p90 {} p99 {} p99.9 {} max {}\n\
             schedule lag(us): p50 {} p99 {} max {}\n",
            self.scenario,
            self.instance_id,
            self.duration_s,
            self.offered_rate,
            self.achieved_rate,
            self.sent,
            self.matched,
            self.match_rate,
            self.timeouts,
            self.late,
            self.duplicates,
            self.invalid,
            self.skipped,
            self.publish_errors,
            self.reconnects,
            self.unresolved,
            l.min,
            l.mean,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.schedule_lag_us.p50,
            self.schedule_lag_us.p99,
            self.schedule_lag_us.max,
        );
        for (k, v) in &self.extra {
            s.push_str(&format!("{k:<16}: {v}\n"));
        }
        s
    }
}
