//! loadgen configuration: every setting from an environment variable (clap derive with `env`),
//! checked once into a [`Valid`] configuration (the only kind `run`/`start` accept), with the
//! effective values listed, typed and with secrets redacted, for the report. The scenario
//! settings live in `rr` and `fanout`; the broker and HTTP options come from `rr_common`.

pub mod fanout;
pub mod rr;

use crate::capacity::config::{CapacityConfig, Kind, Schedule};
use clap::{Parser, ValueEnum};
use fanout::FanoutConfig;
use rr::RrConfig;
use rr_common::broker::ConnectOptions;
use rr_common::cli::{check_topic_segment, ConfigError, HttpOptions, Validate};
use std::path::PathBuf;
use std::time::Duration;

pub use rr_common::cli::Valid;

/// Default port of the loadgen's HTTP endpoints.
pub const METRICS_PORT: u16 = 8090;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// request/response through the worker
    Rr,
    /// WebSocket fan-out to many subscribers
    Fanout,
    /// publish only, on the rr schedule, expecting no answers
    Pub,
    /// request/response, searching the highest rate that meets the SLO (SLO_*, START_RATE, ...)
    Capacity,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Rr => "rr",
            Scenario::Fanout => "fanout",
            Scenario::Pub => "pub",
            Scenario::Capacity => "capacity",
        }
    }

    /// Whether the scenario runs on the rr schedule (rr, pub and the capacity search).
    pub fn is_rr(self) -> bool {
        self != Scenario::Fanout
    }

    /// Whether requests expect answers (rr and the capacity search).
    pub fn expects_replies(self) -> bool {
        matches!(self, Scenario::Rr | Scenario::Capacity)
    }
}

/// Load generator for MQTT request/response, publish-only and WebSocket fan-out tests.
/// Every option is read from the environment variable shown.
#[derive(Parser, Clone, Debug)]
#[command(name = "loadgen", version, about, max_term_width = 110, after_help = crate::reporting::cli::HELP)]
pub struct Config {
    /// Scenario to run
    #[arg(
        long,
        env = "SCENARIO",
        value_enum,
        default_value = "rr",
        value_name = "SCENARIO"
    )]
    pub scenario: Scenario,
    #[command(flatten)]
    pub connect: ConnectOptions,
    #[command(flatten)]
    pub rr: RrConfig,
    #[command(flatten)]
    pub fanout: FanoutConfig,
    #[command(flatten)]
    pub capacity: CapacityConfig,
    /// Bytes of request body (rr/pub) or message size (fanout); default 64 for rr/pub, 512 for fanout
    #[arg(long, env = "PAYLOAD_BYTES", value_name = "PAYLOAD_BYTES")]
    pub payload_bytes: Option<u32>,
    /// Seconds at the start left out of the statistics
    #[arg(
        long,
        env = "WARMUP_SEC",
        default_value_t = 5,
        value_name = "WARMUP_SEC"
    )]
    pub warmup_sec: u64,
    /// Seconds of measurement after warm-up; 0 runs until SIGINT/SIGTERM
    #[arg(
        long,
        env = "DURATION_SEC",
        default_value_t = 0,
        value_name = "DURATION_SEC"
    )]
    pub duration_sec: u64,
    /// Wall-clock second at which the schedule and the measured window start (after connecting):
    /// next-minute, an RFC 3339 time or Unix seconds; instances given the same one line up
    /// (unset = as soon as connected)
    #[arg(long, env = "START_AT", value_name = "START_AT")]
    pub start_at: Option<crate::reporting::start_at::StartAt>,
    /// Name of this instance; response topics are private to it (default: host name)
    #[arg(long, env = "INSTANCE_ID", value_name = "INSTANCE_ID")]
    pub instance_id: Option<String>,
    #[command(flatten)]
    pub http: HttpOptions<METRICS_PORT>,
    /// Path of the final JSON report (unset = none)
    #[arg(long, env = "REPORT_JSON", value_name = "REPORT_JSON")]
    pub report_json: Option<PathBuf>,
    /// Path of the self-contained HTML report written at the end (unset = none)
    #[arg(long, env = "REPORT_HTML", value_name = "REPORT_HTML")]
    pub report_html: Option<PathBuf>,
    /// A baseline JSON report: the HTML report embeds the comparison with it
    #[arg(long, env = "REPORT_BASELINE", value_name = "REPORT_BASELINE")]
    pub report_baseline: Option<PathBuf>,
    /// Seconds between live progress lines on stderr (0 = off)
    #[arg(
        long,
        env = "PROGRESS_SEC",
        default_value_t = 1,
        value_name = "PROGRESS_SEC"
    )]
    pub progress_sec: u64,
    /// Worker /stats addresses (host:port, comma separated) shown on the dashboard
    #[arg(
        long,
        env = "WORKER_STATS_URLS",
        value_delimiter = ',',
        value_name = "WORKER_STATS_URLS"
    )]
    pub worker_stats_urls: Vec<String>,
}

impl Config {
    pub fn instance_id(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(rr_common::cli::hostname)
    }

    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes.unwrap_or(match self.scenario {
            Scenario::Fanout => 512,
            _ => 64,
        }) as usize
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup_sec)
    }

    /// The measured window's planned length; `None` runs until shutdown. With `STAGES` the run
    /// lasts their sum (warm-up included) and `DURATION_SEC` is ignored; a capacity search
    /// ends when it has its answer.
    pub fn duration(&self) -> Option<Duration> {
        if self.scenario == Scenario::Capacity {
            return None;
        }
        if let Some(st) = self.capacity.parsed_stages(&self.schedule()) {
            let total = Duration::from_nanos(st.total_ns());
            return Some(total.saturating_sub(self.warmup()));
        }
        (self.duration_sec > 0).then(|| Duration::from_secs(self.duration_sec))
    }

    /// The rr/pub schedule's size, for the capacity settings' checks.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            virtual_clients: self.rr.virtual_clients,
            interval_ms: self.rr.interval_ms,
            warmup_sec: self.warmup_sec,
        }
    }

    /// Which scenario the capacity settings apply to.
    pub fn capacity_kind(&self) -> Kind {
        match self.scenario {
            Scenario::Rr => Kind::Rr,
            Scenario::Pub => Kind::Pub,
            Scenario::Fanout => Kind::Fanout,
            Scenario::Capacity => Kind::Capacity,
        }
    }

    /// Offered rate: requests per second of the rr/pub schedule, messages per second of the
    /// fan-out publisher (0 when this process does not publish).
    pub fn offered_rate(&self) -> f64 {
        match self.scenario {
            Scenario::Rr | Scenario::Pub | Scenario::Capacity => self.rr.offered_rate(),
            Scenario::Fanout if self.fanout.fanout_role.publishes() => self.fanout.publish_rate,
            Scenario::Fanout => 0.0,
        }
    }

    /// Every effective setting, typed, secrets redacted, for the report's `config` object.
    pub fn describe(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut m = serde_json::Map::new();
        m.insert("SCENARIO".into(), self.scenario.name().into());
        let common: Vec<(&str, Value)> = vec![
            ("PAYLOAD_BYTES", self.payload_bytes().into()),
            ("WARMUP_SEC", self.warmup_sec.into()),
            ("DURATION_SEC", self.duration_sec.into()),
            ("INSTANCE_ID", self.instance_id().into()),
            (
                "START_AT",
                self.start_at
                    .map(|s| s.to_string())
                    .unwrap_or_default()
                    .into(),
            ),
            (
                "REPORT_JSON",
                self.report_json
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
                    .into(),
            ),
            ("REPORT_HTML", path_text(&self.report_html).into()),
            ("REPORT_BASELINE", path_text(&self.report_baseline).into()),
            ("PROGRESS_SEC", self.progress_sec.into()),
            ("WORKER_STATS_URLS", self.worker_stats_urls.join(",").into()),
        ];
        let scenario = match self.scenario {
            Scenario::Fanout => self.fanout.describe(&self.connect.broker),
            Scenario::Rr | Scenario::Pub | Scenario::Capacity => self.rr.describe(),
        };
        for (k, v) in self
            .connect
            .describe()
            .into_iter()
            .chain(common)
            .chain(self.http.describe())
            .chain(scenario)
            .chain(
                self.capacity
                    .describe(self.capacity_kind(), Some(&self.schedule())),
            )
        {
            m.insert(k.to_string(), v);
        }
        m
    }
}

fn path_text(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

impl Config {
    /// NATS: the names that become subjects are valid ones; fan-out is MQTT over WebSocket.
    fn check_nats(&self) -> Result<(), ConfigError> {
        use rr_common::nats::subject::{check_setting, Use};
        if self.scenario == Scenario::Fanout {
            return Err(ConfigError::new(
                "BROKER",
                format!(
                    "'{}' is NATS; SCENARIO=fanout measures MQTT over WebSocket (NATS runs rr and pub)",
                    self.connect.broker
                ),
            ));
        }
        let prefix = &self.rr.req_topic_prefix;
        check_setting("REQ_TOPIC_PREFIX", &format!("{prefix}/0"), Use::Publish)?;
        let reply = format!("resp/{}/0", self.instance_id());
        check_setting("INSTANCE_ID", &reply, Use::Publish)?;
        Ok(())
    }
}

impl Validate for Config {
    /// What clap cannot check: ranges and combinations, naming the variable.
    fn check(&self) -> Result<(), ConfigError> {
        self.connect.check()?;
        check_topic_segment("INSTANCE_ID", &self.instance_id())?;
        if let Some(base) = &self.report_baseline {
            // checked now, not after a long run: the HTML report compares against it
            crate::reporting::LoadedReport::from_file(base)
                .map_err(|e| ConfigError::new("REPORT_BASELINE", e.to_string()))?;
        }
        if self.connect.broker.scheme.is_nats() {
            self.check_nats()?;
        }
        if self.payload_bytes() > 256 * 1024 {
            return Err(ConfigError::new(
                "PAYLOAD_BYTES",
                format!("'{}' must be at most 262144", self.payload_bytes()),
            ));
        }
        match self.scenario {
            Scenario::Rr | Scenario::Pub | Scenario::Capacity => self.rr.check()?,
            Scenario::Fanout => self
                .fanout
                .check(&self.connect.broker, self.payload_bytes())?,
        }
        self.capacity
            .check(self.capacity_kind(), Some(&self.schedule()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let v = std::iter::once("loadgen").chain(args.iter().copied());
        Config::try_parse_from(v).expect("parse")
    }

    fn fanout(args: &[&str]) -> Config {
        let mut v = vec!["--scenario", "fanout"];
        v.extend_from_slice(args);
        parse(&v)
    }

    #[test]
    fn defaults_validate_and_describe_typed_values() {
        let c = parse(&["--instance-id=t"])
            .validate()
            .expect("defaults are valid");
        let d = c.describe();
        assert_eq!(d["VIRTUAL_CLIENTS"], 100_000);
        assert_eq!(d["CONNECT_RETRY_MS"], 30_000);
        assert_eq!(d["TLS_INSECURE"], false);
        assert_eq!(d["METRICS_PORT"], 8090);
        assert_eq!(d["BROKER"], "mqtt://127.0.0.1:1883");
        assert_eq!(d["SCENARIO"], "rr");
        assert_eq!(c.offered_rate(), 50_000.0);
    }

    #[test]
    fn rr_ranges_name_the_variable_and_the_value() {
        for (args, var) in [
            (vec!["--virtual-clients=0"], "VIRTUAL_CLIENTS"),
            (vec!["--connections=0"], "CONNECTIONS"),
            (vec!["--shards=0"], "SHARDS"),
            (vec!["--interval-ms=0"], "INTERVAL_MS"),
            (
                vec!["--max-inflight-per-client=65"],
                "MAX_INFLIGHT_PER_CLIENT",
            ),
            (vec!["--timeout-ms=0"], "TIMEOUT_MS"),
            (
                vec!["--connections=2", "--publish-workers=3"],
                "PUBLISH_WORKERS",
            ),
            (vec!["--batch-size=0"], "BATCH_SIZE"),
            (vec!["--req-topic-prefix=a/#"], "REQ_TOPIC_PREFIX"),
            (vec!["--payload-bytes=300000"], "PAYLOAD_BYTES"),
            (vec!["--instance-id=a/b"], "INSTANCE_ID"),
            (vec!["--keep-alive-sec=0"], "KEEP_ALIVE_SEC"),
        ] {
            let e = parse(&args).validate().map(|_| ()).unwrap_err();
            assert_eq!(e.var, var, "{args:?}");
            assert!(
                e.to_string().starts_with(&format!("invalid {var}: ")),
                "{e}"
            );
        }
        let e = parse(&["--virtual-clients=0"]).check().unwrap_err();
        assert!(e.to_string().contains("'0' must be 1..=10000000"), "{e}");
    }

    #[test]
    fn fanout_gateways_default_to_a_websocket_broker() {
        let c = fanout(&["--broker", "ws://10.1.2.3:8080/mqtt"]);
        assert_eq!(c.check(), Ok(()));
        let d = c.describe();
        assert_eq!(d["GATEWAY_URLS"], "ws://10.1.2.3:8080/mqtt");
        assert_eq!(d["PUBLISH_BROKER"], "mqtt://10.1.2.3:1883");
        let c = fanout(&["--broker", "mqtt://h:1883"]);
        let e = c.check().unwrap_err();
        assert_eq!(e.var, "GATEWAY_URLS");
        assert!(e.to_string().contains("not a ws://"), "{e}");
    }

    #[test]
    fn fanout_rejects_bad_values_naming_the_variable() {
        let gw = "--gateway-urls=ws://a:1/mqtt,ws://b:2/mqtt";
        for (args, var) in [
            (vec![gw, "--clients", "0"], "CLIENTS"),
            (vec![gw, "--subjects", "0"], "SUBJECTS"),
            (
                vec![gw, "--subjects", "3", "--subjects-per-client", "4"],
                "SUBJECTS_PER_CLIENT",
            ),
            (vec![gw, "--subject-prefix", "a/+"], "SUBJECT_PREFIX"),
            (vec![gw, "--publish-rate", "0"], "PUBLISH_RATE"),
            (vec![gw, "--payload-bytes", "8"], "PAYLOAD_BYTES"),
            (vec![gw, "--connect-rate", "0"], "CONNECT_RATE"),
            (vec!["--gateway-urls", "mqtt://a:1"], "GATEWAY_URLS"),
        ] {
            let c = fanout(&args);
            assert_eq!(c.check().map_err(|e| e.var), Err(var), "{args:?}");
        }
        let c = fanout(&[gw, "--source-addrs", "127.0.0.2,127.0.0.3"]);
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.fanout.source_addrs.len(), 2);
        assert_eq!(c.fanout.gateway_urls.len(), 2);
    }

    #[test]
    fn parse_errors_name_the_variable_not_a_flag() {
        let e = Config::try_parse_from(["loadgen", "--virtual-clients=abc"]).unwrap_err();
        let line = rr_common::cli::parse_error_line::<Config>(&e);
        assert!(line.starts_with("invalid VIRTUAL_CLIENTS: 'abc'"), "{line}");
        let e = Config::try_parse_from(["loadgen", "--start-at=soon"]).unwrap_err();
        let line = rr_common::cli::parse_error_line::<Config>(&e);
        assert!(line.starts_with("invalid START_AT: 'soon'"), "{line}");
        assert!(line.contains("accepted: next-minute"), "{line}");
        let c = parse(&["--start-at=2025-08-01T12:00:00Z"]);
        assert_eq!(c.describe()["START_AT"], "2025-08-01T12:00:00Z");
        let e = parse(&["--report-baseline=/nonexistent/base.json"])
            .check()
            .unwrap_err();
        assert_eq!(e.var, "REPORT_BASELINE");
        assert!(e.to_string().contains("/nonexistent/base.json"), "{e}");
        let e = Config::try_parse_from(["loadgen", "--scenario=bogus"]).unwrap_err();
        let line = rr_common::cli::parse_error_line::<Config>(&e);
        assert_eq!(
            line,
            "invalid SCENARIO: 'bogus' is not accepted (accepted: rr, fanout, pub, capacity)"
        );
    }
}
