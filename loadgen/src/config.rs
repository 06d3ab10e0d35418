//! loadgen configuration: every setting from an environment variable (clap derive with `env`),
//! validated once, with the effective values listed for the report (secrets redacted).

use crate::fanout::FanoutConfig;
use clap::{Args, Parser, ValueEnum};
use rr_common::broker::{BrokerUrl, ConnectOptions};
use rr_common::cli::{check_topic_segment, ConfigError};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// request/response through the worker
    Rr,
    /// WebSocket fan-out to many subscribers
    Fanout,
    /// publish only, on the rr schedule, expecting no answers
    Pub,
}

/// Load generator for MQTT request/response, publish-only and WebSocket fan-out tests.
/// Every option is read from the environment variable shown.
#[derive(Parser, Clone, Debug)]
#[command(name = "loadgen", version, about, max_term_width = 110)]
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
    /// Broker URL: mqtt://host:port (tcp://), mqtts:// (ssl://), ws://host:port/path, wss://
    #[arg(
        long,
        env = "BROKER",
        default_value = "mqtt://127.0.0.1:1883",
        value_name = "BROKER"
    )]
    pub broker: BrokerUrl,
    #[command(flatten)]
    pub connect: ConnectOptions,
    #[command(flatten)]
    pub rr: RrConfig,
    #[command(flatten)]
    pub fanout: FanoutConfig,
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
    /// Name of this instance; response topics are private to it (default: host name)
    #[arg(long, env = "INSTANCE_ID", value_name = "INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Port of /metrics, /stats, /health, /ready and the web dashboard (0 = any free port)
    #[arg(
        long,
        env = "METRICS_PORT",
        default_value_t = 8090,
        value_name = "METRICS_PORT"
    )]
    pub metrics_port: u16,
    /// Address the HTTP endpoints bind to
    #[arg(
        long,
        env = "METRICS_ADDR",
        default_value = "0.0.0.0",
        value_name = "METRICS_ADDR"
    )]
    pub metrics_addr: IpAddr,
    /// Path of the final JSON report (unset = none)
    #[arg(long, env = "REPORT_JSON", value_name = "REPORT_JSON")]
    pub report_json: Option<PathBuf>,
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

/// Request/response (and publish-only) settings.
#[derive(Args, Clone, Debug)]
pub struct RrConfig {
    /// Simulated clients, multiplexed over CONNECTIONS
    #[arg(
        long,
        env = "VIRTUAL_CLIENTS",
        default_value_t = 100_000,
        value_name = "VIRTUAL_CLIENTS"
    )]
    pub virtual_clients: u32,
    /// MQTT connections carrying the virtual clients
    #[arg(
        long,
        env = "CONNECTIONS",
        default_value_t = 100,
        value_name = "CONNECTIONS"
    )]
    pub connections: u32,
    /// Request topic shards req/{0..SHARDS}
    #[arg(long, env = "SHARDS", default_value_t = 256, value_name = "SHARDS")]
    pub shards: u32,
    /// Each virtual client sends one request per interval (ms); offered rate = VIRTUAL_CLIENTS*1000/INTERVAL_MS
    #[arg(
        long,
        env = "INTERVAL_MS",
        default_value_t = 2000,
        value_name = "INTERVAL_MS"
    )]
    pub interval_ms: u64,
    /// Requests a virtual client may have unanswered; a due send beyond it is counted as skipped
    #[arg(
        long,
        env = "MAX_INFLIGHT_PER_CLIENT",
        default_value_t = 1,
        value_name = "MAX_INFLIGHT_PER_CLIENT"
    )]
    pub max_inflight_per_client: u32,
    /// A request without answer after this many ms is a timeout
    #[arg(
        long,
        env = "TIMEOUT_MS",
        default_value_t = 5000,
        value_name = "TIMEOUT_MS"
    )]
    pub timeout_ms: u64,
    /// QoS of requests (0 or 1)
    #[arg(long, env = "REQ_QOS", default_value_t = 0, value_name = "REQ_QOS", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub req_qos: u8,
    /// QoS of the response subscription (0 or 1)
    #[arg(long, env = "RESP_QOS", default_value_t = 0, value_name = "RESP_QOS", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub resp_qos: u8,
    /// Scheduler lanes (tasks), each owning a share of clients and connections; tuning only, never changes the rate
    #[arg(
        long,
        env = "PUBLISH_WORKERS",
        default_value_t = 1,
        value_name = "PUBLISH_WORKERS"
    )]
    pub publish_workers: u32,
    /// Most requests encoded into one write; tuning only, never changes the rate
    #[arg(
        long,
        env = "BATCH_SIZE",
        default_value_t = 512,
        value_name = "BATCH_SIZE"
    )]
    pub batch_size: u32,
    /// Prefix of request topics
    #[arg(
        long,
        env = "REQ_TOPIC_PREFIX",
        default_value = "req",
        value_name = "REQ_TOPIC_PREFIX"
    )]
    pub req_topic_prefix: String,
}

/// Most shards accepted (topic strings are precomputed per shard).
pub const MAX_SHARDS: u32 = 65_536;
/// Most virtual clients per process.
pub const MAX_VIRTUAL_CLIENTS: u32 = 10_000_000;

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

    /// Offered request rate of the rr/pub schedule, per second.
    pub fn offered_rate(&self) -> f64 {
        f64::from(self.rr.virtual_clients) * 1000.0 / self.rr.interval_ms as f64
    }

    /// Checks what clap cannot: ranges and combinations, naming the variable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rr = &self.rr;
        if let Err((var, msg)) = self.connect.validate() {
            return Err(ConfigError::new(var, msg));
        }
        check_topic_segment("INSTANCE_ID", &self.instance_id())?;
        if self.payload_bytes() > 256 * 1024 {
            return Err(ConfigError::new("PAYLOAD_BYTES", "must be at most 262144"));
        }
        match self.scenario {
            Scenario::Rr | Scenario::Pub => {
                if rr.virtual_clients == 0 || rr.virtual_clients > MAX_VIRTUAL_CLIENTS {
                    return Err(ConfigError::new(
                        "VIRTUAL_CLIENTS",
                        format!("'{}' must be 1..={MAX_VIRTUAL_CLIENTS}", rr.virtual_clients),
                    ));
                }
                if rr.connections == 0 || rr.connections > 10_000 {
                    return Err(ConfigError::new(
                        "CONNECTIONS",
                        format!("'{}' must be 1..=10000", rr.connections),
                    ));
                }
                if rr.shards == 0 || rr.shards > MAX_SHARDS {
                    return Err(ConfigError::new(
                        "SHARDS",
                        format!("'{}' must be 1..={MAX_SHARDS}", rr.shards),
                    ));
                }
                if rr.interval_ms == 0 || rr.interval_ms > 3_600_000 {
                    return Err(ConfigError::new(
                        "INTERVAL_MS",
                        format!("'{}' must be 1..=3600000", rr.interval_ms),
                    ));
                }
                if rr.max_inflight_per_client == 0 || rr.max_inflight_per_client > 64 {
                    return Err(ConfigError::new(
                        "MAX_INFLIGHT_PER_CLIENT",
                        format!("'{}' must be 1..=64", rr.max_inflight_per_client),
                    ));
                }
                if rr.timeout_ms == 0 || rr.timeout_ms > 600_000 {
                    return Err(ConfigError::new(
                        "TIMEOUT_MS",
                        format!("'{}' must be 1..=600000", rr.timeout_ms),
                    ));
                }
                if rr.publish_workers == 0 || rr.publish_workers > rr.connections.min(64) {
                    return Err(ConfigError::new(
                        "PUBLISH_WORKERS",
                        format!(
                            "'{}' must be 1..={} (at most CONNECTIONS and 64)",
                            rr.publish_workers,
                            rr.connections.min(64)
                        ),
                    ));
                }
                if rr.batch_size == 0 {
                    return Err(ConfigError::new("BATCH_SIZE", "must be at least 1"));
                }
                if rr.req_topic_prefix.is_empty() || rr.req_topic_prefix.contains(['+', '#']) {
                    return Err(ConfigError::new(
                        "REQ_TOPIC_PREFIX",
                        "must be non-empty without wildcards",
                    ));
                }
            }
            Scenario::Fanout => self.fanout.validate(self)?,
        }
        Ok(())
    }

    /// Every effective setting, secrets redacted, for the report's `config` object.
    pub fn describe(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let rr = &self.rr;
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        put(
            "SCENARIO",
            serde_json::to_value(self.scenario).unwrap_or_default(),
        );
        put("BROKER", Value::from(self.broker.to_string()));
        for (k, v) in self.connect.describe() {
            put(k, Value::from(v));
        }
        put("PAYLOAD_BYTES", Value::from(self.payload_bytes()));
        put("WARMUP_SEC", Value::from(self.warmup_sec));
        put("DURATION_SEC", Value::from(self.duration_sec));
        put("INSTANCE_ID", Value::from(self.instance_id()));
        put("METRICS_PORT", Value::from(self.metrics_port));
        put("METRICS_ADDR", Value::from(self.metrics_addr.to_string()));
        put(
            "REPORT_JSON",
            Value::from(
                self.report_json
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        );
        if self.scenario == Scenario::Fanout {
            for (k, v) in self.fanout.describe() {
                put(k, v);
            }
        } else {
            put("VIRTUAL_CLIENTS", Value::from(rr.virtual_clients));
            put("CONNECTIONS", Value::from(rr.connections));
            put("SHARDS", Value::from(rr.shards));
            put("INTERVAL_MS", Value::from(rr.interval_ms));
            put(
                "MAX_INFLIGHT_PER_CLIENT",
                Value::from(rr.max_inflight_per_client),
            );
            put("TIMEOUT_MS", Value::from(rr.timeout_ms));
            put("REQ_QOS", Value::from(rr.req_qos));
            put("RESP_QOS", Value::from(rr.resp_qos));
            put("PUBLISH_WORKERS", Value::from(rr.publish_workers));
            put("BATCH_SIZE", Value::from(rr.batch_size));
            put("REQ_TOPIC_PREFIX", Value::from(rr.req_topic_prefix.clone()));
        }
        m
    }
}
