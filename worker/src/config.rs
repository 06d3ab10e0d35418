//! worker configuration from environment variables (clap derive with `env`), validated once.

use clap::{Parser, ValueEnum};
use rr_common::broker::ConnectOptions;
use rr_common::cli::{ConfigError, HttpOptions, Validate};
use std::time::Duration;

pub use rr_common::cli::Valid;

/// Default port of the worker's HTTP endpoints.
pub const METRICS_PORT: u16 = 8080;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// answer at once
    Health,
    /// wait SLEEP_MS before answering (an I/O-bound backend)
    Sleep,
    /// burn CPU_WORK iterations before answering (a CPU-bound backend)
    Cpu,
}

/// Service side of the request/response benchmark: answers every request on its reply topic.
/// Every option is read from the environment variable shown.
#[derive(Parser, Clone, Debug)]
#[command(name = "worker", version, about, max_term_width = 110)]
pub struct Config {
    #[command(flatten)]
    pub connect: ConnectOptions,
    /// Request topic filter, subscribed as $share/{SHARE_GROUP}/{MQTT_SUB} (NATS: mapped to a subject, req/+ -> req.*, in queue group SHARE_GROUP)
    #[arg(
        long,
        env = "MQTT_SUB",
        default_value = "req/+",
        value_name = "MQTT_SUB"
    )]
    pub mqtt_sub: String,
    /// Shared-subscription group (every worker process in the group shares the requests)
    #[arg(
        long,
        env = "SHARE_GROUP",
        default_value = "workers",
        value_name = "SHARE_GROUP"
    )]
    pub share_group: String,
    /// Subscriber connections
    #[arg(
        long,
        env = "CONNECTIONS",
        default_value_t = 10,
        value_name = "CONNECTIONS"
    )]
    pub connections: u32,
    /// Smallest worker pool
    #[arg(
        long,
        env = "MIN_WORKERS",
        default_value_t = 10,
        value_name = "MIN_WORKERS"
    )]
    pub min_workers: u32,
    /// Largest worker pool
    #[arg(
        long,
        env = "MAX_WORKERS",
        default_value_t = 1000,
        value_name = "MAX_WORKERS"
    )]
    pub max_workers: u32,
    /// Capacity of the request queue between connections and workers
    #[arg(
        long,
        env = "QUEUE_CAP",
        default_value_t = 100_000,
        value_name = "QUEUE_CAP"
    )]
    pub queue_cap: u32,
    /// Busy ratio (busy time / pool time) at or above which the pool grows; also the target utilisation
    #[arg(
        long,
        env = "SCALE_UP_THRESHOLD",
        default_value_t = 0.7,
        value_name = "SCALE_UP_THRESHOLD"
    )]
    pub scale_up_threshold: f64,
    /// Busy ratio below which the pool shrinks (only with an empty queue)
    #[arg(
        long,
        env = "SCALE_DOWN_THRESHOLD",
        default_value_t = 0.2,
        value_name = "SCALE_DOWN_THRESHOLD"
    )]
    pub scale_down_threshold: f64,
    /// Milliseconds between autoscaler decisions
    #[arg(
        long,
        env = "SCALE_INTERVAL_MS",
        default_value_t = 1000,
        value_name = "SCALE_INTERVAL_MS"
    )]
    pub scale_interval_ms: u64,
    /// Smallest step of a scale event (scale-up may jump further to the size the load needs)
    #[arg(
        long,
        env = "WORKERS_PER_SCALE",
        default_value_t = 10,
        value_name = "WORKERS_PER_SCALE"
    )]
    pub workers_per_scale: u32,
    /// What a worker does per request
    #[arg(
        long,
        env = "MODE",
        value_enum,
        default_value = "health",
        value_name = "MODE"
    )]
    pub mode: Mode,
    /// MODE=sleep: milliseconds per request
    #[arg(long, env = "SLEEP_MS", default_value_t = 0, value_name = "SLEEP_MS")]
    pub sleep_ms: u64,
    /// MODE=cpu: iterations of a 64-bit mixing loop per request (about 1 ns each)
    #[arg(long, env = "CPU_WORK", default_value_t = 0, value_name = "CPU_WORK")]
    pub cpu_work: u64,
    /// Drop a request when the queue is full (true) or stop reading until there is room (false)
    #[arg(long, env = "DROP_ON_FULL", default_value_t = true, value_name = "DROP_ON_FULL", action = clap::ArgAction::Set)]
    pub drop_on_full: bool,
    /// QoS of responses (0 or 1)
    #[arg(long, env = "PUB_QOS", default_value_t = 0, value_name = "PUB_QOS", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub pub_qos: u8,
    /// QoS of the request subscription (0 or 1)
    #[arg(long, env = "SUB_QOS", default_value_t = 0, value_name = "SUB_QOS", value_parser = clap::value_parser!(u8).range(0..=1))]
    pub sub_qos: u8,
    /// Read coalescing: at request rates where at least 2 requests arrive within this many
    /// microseconds, wait that long after each wake-up before reading, so a burst is read,
    /// answered and written together (fewer wake-ups and writes, up to this much added latency).
    /// 0 = off: answer at once
    #[arg(
        long,
        env = "COALESCE_US",
        default_value_t = 0,
        value_name = "COALESCE_US"
    )]
    pub coalesce_us: u64,
    #[command(flatten)]
    pub http: HttpOptions<METRICS_PORT>,
    /// Name used in client ids (default: host name)
    #[arg(long, env = "INSTANCE_ID", value_name = "INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl Config {
    pub fn instance_id(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(rr_common::cli::hostname)
    }

    pub fn subscription(&self) -> String {
        format!("$share/{}/{}", self.share_group, self.mqtt_sub)
    }

    pub fn scale_interval(&self) -> Duration {
        Duration::from_millis(self.scale_interval_ms)
    }

    /// Effective settings, typed, secrets redacted.
    pub fn describe(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let own: Vec<(&str, serde_json::Value)> = vec![
            ("MQTT_SUB", self.mqtt_sub.clone().into()),
            ("SHARE_GROUP", self.share_group.clone().into()),
            ("CONNECTIONS", self.connections.into()),
            ("MIN_WORKERS", self.min_workers.into()),
            ("MAX_WORKERS", self.max_workers.into()),
            ("QUEUE_CAP", self.queue_cap.into()),
            ("SCALE_UP_THRESHOLD", self.scale_up_threshold.into()),
            ("SCALE_DOWN_THRESHOLD", self.scale_down_threshold.into()),
            ("SCALE_INTERVAL_MS", self.scale_interval_ms.into()),
            ("WORKERS_PER_SCALE", self.workers_per_scale.into()),
            ("MODE", format!("{:?}", self.mode).to_lowercase().into()),
            ("SLEEP_MS", self.sleep_ms.into()),
            ("CPU_WORK", self.cpu_work.into()),
            ("DROP_ON_FULL", self.drop_on_full.into()),
            ("PUB_QOS", self.pub_qos.into()),
            ("SUB_QOS", self.sub_qos.into()),
            ("COALESCE_US", self.coalesce_us.into()),
            ("INSTANCE_ID", self.instance_id().into()),
        ];
        for (k, v) in self
            .connect
            .describe()
            .into_iter()
            .chain(self.http.describe())
            .chain(own)
        {
            m.insert(k.into(), v);
        }
        serde_json::Value::Object(m)
    }
}

impl Validate for Config {
    fn check(&self) -> Result<(), ConfigError> {
        self.connect.check()?;
        let range = |var, v: u32, lo: u32, hi: u32| {
            if v < lo || v > hi {
                Err(ConfigError::new(var, format!("'{v}' must be {lo}..={hi}")))
            } else {
                Ok(())
            }
        };
        range("CONNECTIONS", self.connections, 1, 1000)?;
        range("MIN_WORKERS", self.min_workers, 1, 100_000)?;
        range("MAX_WORKERS", self.max_workers, 1, 100_000)?;
        range("QUEUE_CAP", self.queue_cap, 1, 100_000_000)?;
        range("WORKERS_PER_SCALE", self.workers_per_scale, 1, 100_000)?;
        if self.min_workers > self.max_workers {
            return Err(ConfigError::new(
                "MIN_WORKERS",
                format!(
                    "'{}' is larger than MAX_WORKERS ({})",
                    self.min_workers, self.max_workers
                ),
            ));
        }
        for (var, v) in [
            ("SCALE_UP_THRESHOLD", self.scale_up_threshold),
            ("SCALE_DOWN_THRESHOLD", self.scale_down_threshold),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(ConfigError::new(var, format!("'{v}' must be in (0, 1]")));
            }
        }
        if self.scale_down_threshold >= self.scale_up_threshold {
            return Err(ConfigError::new(
                "SCALE_DOWN_THRESHOLD",
                format!(
                    "'{}' must be lower than SCALE_UP_THRESHOLD ({})",
                    self.scale_down_threshold, self.scale_up_threshold
                ),
            ));
        }
        if self.scale_interval_ms < 10 || self.scale_interval_ms > 600_000 {
            return Err(ConfigError::new(
                "SCALE_INTERVAL_MS",
                format!("'{}' must be 10..=600000", self.scale_interval_ms),
            ));
        }
        if self.sleep_ms > 600_000 {
            return Err(ConfigError::new(
                "SLEEP_MS",
                format!("'{}' must be at most 600000", self.sleep_ms),
            ));
        }
        if self.coalesce_us > 100_000 {
            return Err(ConfigError::new(
                "COALESCE_US",
                format!("'{}' must be at most 100000", self.coalesce_us),
            ));
        }
        if self.mqtt_sub.is_empty() || self.mqtt_sub.starts_with("$share/") {
            return Err(ConfigError::new(
                "MQTT_SUB",
                format!(
                    "'{}' must be a non-empty topic filter without $share/ (use SHARE_GROUP)",
                    self.mqtt_sub
                ),
            ));
        }
        rr_common::cli::check_topic_segment("SHARE_GROUP", &self.share_group)?;
        rr_common::cli::check_topic_segment("INSTANCE_ID", &self.instance_id())?;
        if self.connect.broker.scheme.is_kafka()
            && rr_common::kafka::topics::topic_of_filter(&self.mqtt_sub).is_none()
        {
            return Err(ConfigError::new(
                "MQTT_SUB",
                format!(
                    "'{}' names no Kafka topic: it needs a level before its first wildcard (req/+ consumes topic req)",
                    self.mqtt_sub
                ),
            ));
        }
        if self.connect.broker.scheme.is_nats() {
            // the filter becomes a subject, the share group a NATS queue group
            use rr_common::nats::subject::{check_setting, Use};
            check_setting("MQTT_SUB", &self.mqtt_sub, Use::Subscribe)?;
            check_setting("SHARE_GROUP", &self.share_group, Use::Publish)?;
        }
        Ok(())
    }
}
