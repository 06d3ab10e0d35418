//! The final report of every scenario: one type, one JSON object (`REPORT_JSON`, schema in
//! `schemas/report.schema.json`) and the same figures as text on stdout. Common fields first,
//! then the scenario's books ([`Books`]: requests for rr/pub, deliveries for fan-out), then
//! optional [`Sections`] that later parts of a run add (the extension point).
//!
//! One definition of the match rate everywhere: `match_rate = matched / sent` over the
//! requests scheduled in the measured window, after the drain (0 when nothing was sent). Fan-out
//! has no requests: its ratio is `delivery_ratio = received / expected`.

use rr_common::stats::Summary;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A finished run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// `rr`, `pub` or `fanout`.
    pub scenario: String,
    pub instance_id: String,
    /// Every effective setting, typed, secrets redacted.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Measured window in seconds (warm-up excluded).
    pub duration_s: f64,
    /// Requests (rr, pub) or messages (fan-out publisher) per second the schedule offered.
    pub offered_rate: f64,
    /// Requests (or messages) sent per second over the measured window.
    pub achieved_rate: f64,
    /// Requests (or messages) sent in the measured window.
    pub sent: u64,
    /// Second and further answers to one request (fan-out: deliveries of one message twice).
    pub duplicates: u64,
    /// Messages that could not be matched or parsed.
    pub invalid: u64,
    /// Due sends not made: the client was at its inflight cap (fan-out: its link was down).
    pub skipped: u64,
    /// Due sends that could not be handed to any connection.
    pub publish_errors: u64,
    pub reconnects: u64,
    /// Latency of the measured answers (fan-out: publish-to-receipt), microseconds.
    pub latency_us: Summary,
    /// How far behind its schedule the generator itself ran, in microseconds.
    pub schedule_lag_us: Summary,
    /// The scenario's own books.
    #[serde(flatten)]
    pub books: Books,
    /// Later additions (timeline, histograms, thresholds, capacity, ...).
    #[serde(flatten)]
    pub sections: Sections,
}

/// What a scenario counts besides the common fields.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Books {
    /// rr and pub: every request scheduled in the window is matched or timed out.
    Requests(RequestBooks),
    /// fan-out: every expected delivery of a message published in the window is received or
    /// lost.
    Deliveries(DeliveryBooks),
}

/// Request/response books: after the drain `sent = matched + timeouts`; `late` answers are a
/// subset of the timeouts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestBooks {
    pub matched: u64,
    pub timeouts: u64,
    pub late: u64,
    /// matched / sent after the drain (0 when nothing was sent).
    pub match_rate: f64,
    /// Requests still unresolved when the report was written (0 after a full drain).
    pub unresolved: u64,
}

impl RequestBooks {
    /// The books with their match rate computed from `sent`.
    pub fn new(sent: u64, matched: u64, timeouts: u64, late: u64, unresolved: u64) -> Self {
        RequestBooks {
            matched,
            timeouts,
            late,
            match_rate: match_rate(matched, sent),
            unresolved,
        }
    }
}

/// `matched / sent`, 0 when nothing was sent: the one definition of the match rate.
pub fn match_rate(matched: u64, sent: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        matched as f64 / sent as f64
    }
}

/// `received / expected` (at most 1), 0 when nothing was expected: the fan-out ratio.
pub fn delivery_ratio(received: u64, expected: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        (received as f64 / expected as f64).min(1.0)
    }
}

/// Fan-out books: `received + lost = expected` (exact with `FANOUT_ROLE=both`; with split roles
/// `expected` is what the subscribers could tell: received + gaps).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeliveryBooks {
    /// `both`, `publish` or `subscribe`.
    pub role: String,
    /// Subscriber connections planned (`CLIENTS`).
    pub clients: u64,
    pub subjects: u64,
    /// Deliveries the window's messages should have made (one per subscriber of its subject).
    pub expected: u64,
    pub received: u64,
    pub bytes_received: u64,
    /// Expected deliveries that never arrived (sequence gaps and the tail after the window).
    pub lost: u64,
    pub clients_with_loss: u64,
    /// received / expected (0 when nothing was expected).
    pub delivery_ratio: f64,
    /// Deliveries neither received nor known lost when the report was written.
    pub unresolved: u64,
    /// Subscriber connections up at the end, and right after the ramp.
    pub connections: u64,
    pub connections_after_ramp: u64,
    pub disconnects: u64,
    pub connect_failures: u64,
    /// Deliveries per second over the window.
    pub delivered_rate: f64,
    pub bytes_per_s: f64,
    pub rss_bytes_before_ramp: u64,
    pub rss_bytes_after_ramp: u64,
    pub memory_per_connection_bytes: u64,
    /// CPU cores this process used over the window, when measurable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores_in_window: Option<f64>,
    /// `wall` when publisher and subscribers are different processes (latency across clocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// Wall-clock latencies below zero (clock skew), recorded as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skewed: Option<u64>,
    /// Kafka consumers (`GATEWAY_URLS=kafka://...`): lag and failing consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_consumers: Option<Box<KafkaConsumerBooks>>,
}

/// The Kafka consumers of the scaling-test shape (docs/kafka.md): a consumer is failing when it
/// made no progress for `FAILING_AFTER_SEC` while it had lag or was down; every message it did
/// not receive is lost in the books.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KafkaConsumerBooks {
    /// Consumers failing at the last sample (the end of the run).
    pub failing_clients: u64,
    /// Consumers that were failing at any time.
    pub failed_clients: u64,
    /// Largest lag of the most-behind consumer, sampled once a second (records).
    pub consumer_lag_max: u64,
    /// Lag summed over the consumers that were up at the end.
    pub consumer_lag_end: u64,
    /// Group rebalances the consumers went through (revocations of a consumer's partitions),
    /// summed, and the consumers that went through any.
    #[serde(default)]
    pub rebalances: u64,
    #[serde(default)]
    pub clients_rebalanced: u64,
    /// Records a consumer's client handed on again at an offset it had already handed on
    /// since its partitions were assigned, summed (the books count each as a duplicate; see
    /// docs/kafka.md, "Duplicates and gaps"), and the consumers that had any.
    #[serde(default)]
    pub redelivered: u64,
    #[serde(default)]
    pub clients_redelivered: u64,
    /// Offsets a consumer's client jumped over (records of its partitions it never got; the
    /// books count each as lost), summed, and the consumers that had any.
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub clients_skipped: u64,
}

/// Optional parts of a report, added by what runs besides the scenario (the per-second
/// timeline, lossless histograms, thresholds, a capacity search). Each is an `Option` that is
/// left out of the JSON when unset, so a report without them stays valid and older reports
/// still parse. This is the extension point: a new part is a new field here plus its entry in
/// the schema, filled by a [`crate::harness::RunHook`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Sections {
    /// Wall-clock time (Unix ms) of the run's t = 0 (the start of its schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_unix_ms: Option<u64>,
    /// When, where and with what the run happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunMeta>,
    /// Latency and schedule lag, lossless (HdrHistogram V2 compressed, base64), so reports
    /// merge and compare exactly (`loadgen merge`, `loadgen compare`, the HTML report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<crate::reporting::run::Histograms>,
    /// One row per second of the run, warm-up included and marked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
    /// The answer of a capacity search (`SCENARIO=capacity`) and its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::capacity::search::Outcome>,
    /// `THRESHOLDS`, each with its value and whether it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<crate::capacity::thresholds::Verdict>>,
}

/// The per-second timeline: request rows (rr, pub, capacity) or delivery rows (fan-out).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Timeline {
    Requests(Vec<crate::capacity::timeline::Row>),
    Deliveries(Vec<crate::fanout::timeline::Row>),
}

impl Timeline {
    /// The rows of an rr/pub/capacity run.
    pub fn requests(&self) -> Option<&[crate::capacity::timeline::Row]> {
        match self {
            Timeline::Requests(r) => Some(r),
            Timeline::Deliveries(_) => None,
        }
    }

    /// The rows of a fan-out run.
    pub fn deliveries(&self) -> Option<&[crate::fanout::timeline::Row]> {
        match self {
            Timeline::Deliveries(r) => Some(r),
            Timeline::Requests(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Timeline::Requests(r) => r.len(),
            Timeline::Deliveries(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// When, where and with what a run happened, so a report file found later says what it is.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    /// The schedule's t = 0, RFC 3339 UTC.
    pub started_at: String,
    /// When the report was made (after the drain), RFC 3339 UTC.
    pub ended_at: String,
    /// The loadgen's source revision (`git describe --always --dirty` at build time, or
    /// `GIT_REVISION` given to the build; `unknown` without either).
    pub git_revision: String,
    /// The loadgen's version.
    pub version: String,
    /// The host the loadgen ran on.
    pub host: String,
    /// The broker (or gateway) URL the run measured; no credentials.
    pub broker: String,
}

impl RunMeta {
    /// The facts of a run that started at `start` (its schedule's t = 0) and ends now.
    pub fn new(start: std::time::SystemTime, broker: String) -> RunMeta {
        let stamp = |t| humantime::format_rfc3339_seconds(t).to_string();
        RunMeta {
            started_at: stamp(start),
            ended_at: stamp(std::time::SystemTime::now()),
            git_revision: env!("RR_GIT_REVISION").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: rr_common::cli::hostname(),
            broker,
        }
    }
}

impl Sections {
    /// Whether a threshold failed (the process then exits 99).
    pub fn thresholds_failed(&self) -> bool {
        self.thresholds
            .as_deref()
            .is_some_and(|v| !crate::capacity::thresholds::all_passed(v))
    }
}

impl Report {
    /// The request books (rr, pub), if this is such a report.
    pub fn requests(&self) -> Option<&RequestBooks> {
        match &self.books {
            Books::Requests(b) => Some(b),
            Books::Deliveries(_) => None,
        }
    }

    /// The delivery books (fan-out), if this is such a report.
    pub fn deliveries(&self) -> Option<&DeliveryBooks> {
        match &self.books {
            Books::Deliveries(b) => Some(b),
            Books::Requests(_) => None,
        }
    }

    /// Requests or deliveries not yet resolved (0 after a full drain).
    pub fn unresolved(&self) -> u64 {
        match &self.books {
            Books::Requests(b) => b.unresolved,
            Books::Deliveries(b) => b.unresolved,
        }
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text + "\n")
    }

    /// The text summary printed on stdout at the end of a run, in the scenario's own words.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let lag = &self.schedule_lag_us;
        let mut s = format!(
            "== loadgen {} report ({}) ==\n",
            self.scenario, self.instance_id
        );
        if let Some(m) = &self.sections.run {
            s.push_str(&format!(
                "run             : {} .. {}   host {}   loadgen {} ({})\n\
                 broker          : {}\n",
                m.started_at, m.ended_at, m.host, m.version, m.git_revision, m.broker
            ));
        }
        s.push_str(&format!(
            "measured window : {:.1} s (warm-up excluded)\n",
            self.duration_s
        ));
        match &self.books {
            Books::Requests(b) => s.push_str(&format!(
                "offered rate    : {:.1}/s   achieved: {:.1}/s\n\
                 sent            : {}\n\
                 matched         : {}   match rate: {:.5}\n\
                 timeouts        : {}   (late answers among them: {})\n\
                 duplicates      : {}   invalid: {}   skipped: {}   publish errors: {}\n\
                 reconnects      : {}   unresolved: {}\n\
                 latency (us)    : min {} mean {:.1} p50 {} p90 {} p99 {} p99.9 {} max {}\n",
                self.offered_rate,
                self.achieved_rate,
                self.sent,
                b.matched,
                b.match_rate,
                b.timeouts,
                b.late,
                self.duplicates,
                self.invalid,
                self.skipped,
                self.publish_errors,
                self.reconnects,
                b.unresolved,
                l.min,
                l.mean,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
            )),
            Books::Deliveries(b) => {
                let per_msg = if self.sent > 0 {
                    format!(" ({:.2} per message)", b.expected as f64 / self.sent as f64)
                } else {
                    String::new()
                };
                s.push_str(&format!(
                    "role            : {}   clients: {}   subjects: {}\n\
                     published       : {}   ({:.1}/s offered, {:.1}/s achieved)\n\
                     expected        : {} deliveries{}\n\
                     delivered       : {}   ({:.1}/s, {} bytes)\n\
                     lost            : {}   clients with loss: {}\n\
                     delivery ratio  : {:.5}\n\
                     duplicates      : {}   invalid: {}   skipped: {}   publish errors: {}\n\
                     connections     : {}   disconnects: {}   reconnects: {}   connect failures: {}\n\
                     latency (us)    : min {} mean {:.1} p50 {} p90 {} p99 {} p99.9 {} max {}\n",
                    b.role,
                    b.clients,
                    b.subjects,
                    self.sent,
                    self.offered_rate,
                    self.achieved_rate,
                    b.expected,
                    per_msg,
                    b.received,
                    b.delivered_rate,
                    b.bytes_received,
                    b.lost,
                    b.clients_with_loss,
                    b.delivery_ratio,
                    self.duplicates,
                    self.invalid,
                    self.skipped,
                    self.publish_errors,
                    b.connections,
                    b.disconnects,
                    self.reconnects,
                    b.connect_failures,
                    l.min,
                    l.mean,
                    l.p50,
                    l.p90,
                    l.p99,
                    l.p999,
                    l.max,
                ));
            }
        }
        s.push_str(&format!(
            "schedule lag(us): p50 {} p99 {} max {}\n",
            lag.p50, lag.p99, lag.max
        ));
        if let Some(c) = &self.sections.capacity {
            s.push_str(&format!("{}\n", c.verdict));
        }
        if let Some(t) = &self.sections.thresholds {
            s.push_str("thresholds      :\n");
            for v in t {
                s.push_str(&format!("  {}\n", v.line));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(books: Books) -> Report {
        Report {
            scenario: "rr".into(),
            instance_id: "t".into(),
            config: serde_json::Map::new(),
            duration_s: 10.0,
            offered_rate: 100.0,
            achieved_rate: 100.0,
            sent: 1000,
            duplicates: 0,
            invalid: 0,
            skipped: 0,
            publish_errors: 0,
            reconnects: 0,
            latency_us: Summary::default(),
            schedule_lag_us: Summary::default(),
            books,
            sections: Sections::default(),
        }
    }

    #[test]
    fn request_reports_round_trip_with_one_match_rate() {
        let r = report(Books::Requests(RequestBooks::new(1000, 990, 10, 3, 0)));
        assert_eq!(r.requests().map(|b| b.match_rate), Some(0.99));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["matched"], 990);
        assert_eq!(v["match_rate"], 0.99);
        assert!(
            v.get("start_unix_ms").is_none(),
            "unset sections are left out"
        );
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.books, r.books);
        assert!(r.text().contains("match rate: 0.99000"));
        assert_eq!(match_rate(0, 0), 0.0);
    }

    #[test]
    fn delivery_reports_have_no_request_books_and_their_own_words() {
        let b = DeliveryBooks {
            role: "both".into(),
            expected: 2000,
            received: 1990,
            lost: 10,
            delivery_ratio: 0.995,
            ..DeliveryBooks::default()
        };
        let mut r = report(Books::Deliveries(b.clone()));
        r.scenario = "fanout".into();
        r.sections.start_unix_ms = Some(1);
        let v = serde_json::to_value(&r).unwrap();
        for absent in ["matched", "timeouts", "late", "match_rate"] {
            assert!(v.get(absent).is_none(), "{absent} in a fan-out report: {v}");
        }
        assert_eq!(v["lost"], 10);
        assert_eq!(v["start_unix_ms"], 1);
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.deliveries(), Some(&b));
        let text = r.text();
        for words in [
            "published",
            "expected",
            "deliveries",
            "delivered",
            "lost",
            "delivery ratio",
        ] {
            assert!(text.contains(words), "{words}: {text}");
        }
        assert!(
            !text.contains("timeouts") && !text.contains("match rate"),
            "{text}"
        );
    }
}
