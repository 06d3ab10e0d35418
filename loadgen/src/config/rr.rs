//! Request/response and publish-only settings (`SCENARIO=rr` and `pub`): the variables, their
//! checks and their report entries. Knows nothing of the rest of the loadgen.

use clap::Args;
use rr_common::cli::ConfigError;
use serde_json::Value;

/// Most shards accepted (topic strings are precomputed per shard).
pub const MAX_SHARDS: u32 = 65_536;
/// Most virtual clients per process.
pub const MAX_VIRTUAL_CLIENTS: u32 = 10_000_000;

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
    /// Read answers at the lanes' ticks with the kernel's receive timestamps instead of waking
    /// for each arrival (plain TCP on Linux): far fewer wake-ups; an answer's arrival is then the
    /// kernel's receipt of the last segment read with it (false: the time the read returned)
    #[arg(long, env = "READ_AT_TICK", default_value_t = true, value_name = "READ_AT_TICK", action = clap::ArgAction::Set)]
    pub read_at_tick: bool,
    /// Prefix of request topics: {REQ_TOPIC_PREFIX}/{shard} (NATS: {REQ_TOPIC_PREFIX}.{shard})
    #[arg(
        long,
        env = "REQ_TOPIC_PREFIX",
        default_value = "req",
        value_name = "REQ_TOPIC_PREFIX"
    )]
    pub req_topic_prefix: String,
}

/// `Err` naming `var` unless `lo <= v <= hi`.
fn range<T: PartialOrd + std::fmt::Display>(
    var: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(var, format!("'{v}' must be {lo}..={hi}")));
    }
    Ok(())
}

impl RrConfig {
    /// Offered request rate of the schedule, per second.
    pub fn offered_rate(&self) -> f64 {
        f64::from(self.virtual_clients) * 1000.0 / self.interval_ms as f64
    }

    /// Ranges and combinations, naming the variable.
    pub fn check(&self) -> Result<(), ConfigError> {
        range(
            "VIRTUAL_CLIENTS",
            self.virtual_clients,
            1,
            MAX_VIRTUAL_CLIENTS,
        )?;
        range("CONNECTIONS", self.connections, 1, 10_000)?;
        range("SHARDS", self.shards, 1, MAX_SHARDS)?;
        range("INTERVAL_MS", self.interval_ms, 1, 3_600_000)?;
        range(
            "MAX_INFLIGHT_PER_CLIENT",
            self.max_inflight_per_client,
            1,
            64,
        )?;
        range("TIMEOUT_MS", self.timeout_ms, 1, 600_000)?;
        let lanes_max = self.connections.min(64);
        if self.publish_workers == 0 || self.publish_workers > lanes_max {
            return Err(ConfigError::new(
                "PUBLISH_WORKERS",
                format!(
                    "'{}' must be 1..={lanes_max} (at most CONNECTIONS and 64)",
                    self.publish_workers
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::new("BATCH_SIZE", "'0' must be at least 1"));
        }
        if self.req_topic_prefix.is_empty() || self.req_topic_prefix.contains(['+', '#']) {
            return Err(ConfigError::new(
                "REQ_TOPIC_PREFIX",
                format!(
                    "'{}' must be non-empty without wildcards",
                    self.req_topic_prefix
                ),
            ));
        }
        Ok(())
    }

    /// Settings for the report's `config`, typed.
    pub fn describe(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("VIRTUAL_CLIENTS", self.virtual_clients.into()),
            ("CONNECTIONS", self.connections.into()),
            ("SHARDS", self.shards.into()),
            ("INTERVAL_MS", self.interval_ms.into()),
            (
                "MAX_INFLIGHT_PER_CLIENT",
                self.max_inflight_per_client.into(),
            ),
            ("TIMEOUT_MS", self.timeout_ms.into()),
            ("REQ_QOS", self.req_qos.into()),
            ("RESP_QOS", self.resp_qos.into()),
            ("PUBLISH_WORKERS", self.publish_workers.into()),
            ("BATCH_SIZE", self.batch_size.into()),
            ("READ_AT_TICK", self.read_at_tick.into()),
            ("REQ_TOPIC_PREFIX", self.req_topic_prefix.clone().into()),
        ]
    }
}
