//! Fan-out start-up failures, each one clear line before any client connects:
//! c. `CLIENTS` beyond the open-file limit (lowered for this test process with `prlimit`);
//!    an unreachable gateway (exit status 3); a non-WebSocket gateway (exit status 2).
//! This file is its own test process, so lowering its limit affects no other test.

use loadgen::config::Config;
use rr_common::cli::Validate;
use rr_common::CancellationToken;
use std::time::{Duration, Instant};

fn fanout_config(args: &[&str]) -> Config {
    let mut argv = vec![
        "loadgen",
        "--scenario=fanout",
        "--progress-sec=0",
        "--metrics-addr=127.0.0.1",
        "--metrics-port=0",
    ];
    argv.extend_from_slice(args);
    <Config as clap::Parser>::try_parse_from(argv).expect("parses")
}

/// A TCP port nothing listens on (bound, read back, released).
fn closed_port() -> u16 {
    rr_testkit::free_port()
}

#[tokio::test]
async fn c_clients_beyond_the_open_file_limit_fail_fast_with_the_numbers() {
    // Lower this process's soft limit to 256 (the hard limit stays).
    let pid = std::process::id().to_string();
    let hard = rr_common::cli::open_file_limit().expect("limit");
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile=256:{}", hard.max(256))])
        .status()
        .expect("prlimit (util-linux) is installed");
    assert!(status.success());
    assert_eq!(rr_common::cli::open_file_limit(), Some(256));

    // Nothing listens on the gateway: had the ramp started, this would be a connect error.
    let gw = format!("--gateway-urls=ws://127.0.0.1:{}/mqtt", closed_port());
    let pb = format!("--publish-broker=mqtt://127.0.0.1:{}", closed_port());
    let cfg = fanout_config(&[&gw, &pb, "--clients=1000"]);
    let started = Instant::now();
    let err = loadgen::run(&cfg.validate().expect("valid"), CancellationToken::new())
        .await
        .expect_err("1000 clients cannot fit 256 open files");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let msg = err.to_string();
    eprintln!("{msg}");
    assert_eq!(err.exit_code(), 2);
    assert!(!msg.contains('\n'), "one line: {msg}");
    for part in [
        "CLIENTS=1000",
        "1066 open files",
        "limit is 256",
        "ulimit -n 1066",
    ] {
        assert!(msg.contains(part), "'{part}' missing in: {msg}");
    }

    // Within the limit, the same run gets past the check and fails on the gateway instead.
    let cfg = fanout_config(&[&gw, &pb, "--clients=100", "--connect-retry-ms=300"]);
    let err = loadgen::run(&cfg.validate().expect("valid"), CancellationToken::new())
        .await
        .expect_err("nothing listens");
    assert_eq!(err.exit_code(), 3, "{err}");
}

#[tokio::test]
async fn unreachable_gateway_and_bad_urls_are_one_line_errors() {
    let gw = format!("--gateway-urls=ws://127.0.0.1:{}/mqtt", closed_port());
    let cfg = fanout_config(&[
        &gw,
        "--fanout-role=subscribe",
        "--clients=10",
        "--connect-retry-ms=300",
    ]);
    let started = Instant::now();
    let err = loadgen::run(&cfg.validate().expect("valid"), CancellationToken::new())
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 3, "{msg}");
    assert!(
        msg.starts_with("cannot connect to gateway ws://127.0.0.1:"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");

    // a configuration without a WebSocket gateway never gets to run (exit 2 in the binary)
    let err = fanout_config(&["--broker=mqtt://127.0.0.1:1883"])
        .validate()
        .map(|_| ())
        .expect_err("no WebSocket gateway");
    assert_eq!(err.var, "GATEWAY_URLS");
    assert!(
        err.to_string().starts_with("invalid GATEWAY_URLS: "),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_clear()
        .env("SCENARIO", "fanout")
        .env("BROKER", "mqtt://127.0.0.1:1883")
        .env("METRICS_PORT", "0")
        .output()
        .expect("loadgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: invalid GATEWAY_URLS: ") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}
