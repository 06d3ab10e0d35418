//! Helpers of the fan-out integration tests (`fanout.rs`, `kafka_fanout.rs`): a fan-out
//! configuration from `--flag=value` pairs, a run in this process, its delivery books and the
//! report schema.
#![allow(dead_code)]

use loadgen::config::{Config, Valid};
use loadgen::report::Report;
use rr_common::cli::Validate;
use rr_common::CancellationToken;
use std::time::Duration;

/// A fan-out configuration: a baseline (free metrics port, no progress line, instance
/// `fanout-test`, CONNECT_RETRY_MS 5 s) with `args` (`("clients", "10")`) over it.
pub fn fanout_config(args: &[(&str, String)]) -> Valid<Config> {
    let mut argv = vec![
        "loadgen".to_string(),
        "--scenario=fanout".to_string(),
        "--progress-sec=0".to_string(),
        "--metrics-addr=127.0.0.1".to_string(),
        "--metrics-port=0".to_string(),
        "--connect-retry-ms=5000".to_string(),
        "--instance-id=fanout-test".to_string(),
    ];
    // a test's own value replaces the baseline's
    argv.retain(|a| !args.iter().any(|(k, _)| a.starts_with(&format!("--{k}="))));
    argv.extend(args.iter().map(|(k, v)| format!("--{k}={v}")));
    <Config as clap::Parser>::try_parse_from(argv)
        .expect("valid test config")
        .validate()
        .expect("config validates")
}

/// Starts a fan-out run in this process; its endpoints listen on a free port.
pub async fn start(cfg: Valid<Config>) -> loadgen::Running {
    loadgen::start(cfg, CancellationToken::new())
        .await
        .expect("fan-out run starts")
}

/// Runs a fan-out configuration to its end, within `limit`.
pub async fn run_within(limit: Duration, cfg: Valid<Config>) -> Report {
    tokio::time::timeout(limit, start(cfg).await.report())
        .await
        .expect("run ends in time")
        .expect("fan-out run succeeds")
}

/// The fan-out books of a report.
pub fn dv(r: &Report) -> &loadgen::report::DeliveryBooks {
    r.deliveries()
        .unwrap_or_else(|| panic!("a fan-out report has delivery books: {r:#?}"))
}

/// The report is valid against schemas/report.schema.json.
pub fn validate_schema(r: &Report) {
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("schema file"))
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let doc = serde_json::to_value(r).expect("report serializes");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "report violates the schema: {errors:?}");
}

/// GET `path` of the endpoints at `addr`: the body of a 200, else `None`.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    match rr_common::http::get(&addr.to_string(), path, Duration::from_secs(2)).await {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}
