//! Measures the NATS client choice: a requester built on the official `async-nats` client
//! against one built on rr-common's lean NATS codec (each tick's requests encoded into one
//! buffer and written with one `write`), both at a fixed request rate through a real
//! nats-server to one lean responder process, comparing the requester's CPU time with
//! nats-server's over the same window (from /proc). See README.md beside this file.
//!
//! ```text
//! nats-client-bench [RUNS] [RATE] [SECS]         # orchestrate: RUNS × {lean, async-nats}
//! nats-client-bench respond PORT CONNS           # (child) the responder
//! nats-client-bench request KIND PORT ...        # (child) one measured requester
//! ```

mod lean;
mod official;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rr_testkit::{cpu_seconds, NatsOptions, NatsServer};

/// Requester connections (as the loadgen's `CONNECTIONS` would be for 10k req/s).
const CONNS: usize = 20;
/// Responder connections (one queue group).
const RESPONDER_CONNS: usize = 4;
const PAYLOAD: usize = 64;
const WARMUP: Duration = Duration::from_secs(3);
/// Shards of the request subject `req.{n % SHARDS}`.
const SHARDS: u64 = 256;

/// What both requesters share: the schedule, the counters, the latency histograms.
pub struct Shared {
    pub start: Instant,
    pub rate: f64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Shared {
    /// Requests due by `now` (open loop, evenly spaced).
    pub fn due_by(&self, now: Instant) -> u64 {
        (now.duration_since(self.start).as_secs_f64() * self.rate) as u64
    }

    /// Latency of reply `seq` arriving `now`, from its scheduled send time, in µs.
    pub fn latency_us(&self, seq: u64, now: Instant) -> u64 {
        let sched = self.start + Duration::from_secs_f64(seq as f64 / self.rate);
        now.saturating_duration_since(sched).as_micros() as u64
    }
}

/// The 12 correlation bytes of request `seq` (as rr-common's `Correlation`: run 0, then seq).
pub fn correlation(seq: u64) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[4..].copy_from_slice(&seq.to_be_bytes());
    c
}

/// `seq` back from correlation bytes.
pub fn seq_of(c: &[u8]) -> Option<u64> {
    (c.len() == 12).then(|| u64::from_be_bytes(c[4..].try_into().unwrap_or_default()))
}

pub fn request_subject(seq: u64) -> String {
    format!("req.{}", seq % SHARDS)
}

pub fn reply_subject(conn: usize) -> String {
    format!("resp.bench.{conn}")
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("respond") => {
            let port: u16 = args.get(1).context("PORT")?.parse()?;
            let conns: usize = args.get(2).context("CONNS")?.parse()?;
            runtime(1)?.block_on(lean::respond(port, conns))
        }
        Some("request") => request(&args[1..]),
        _ => orchestrate(&args),
    }
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?)
}

/// One measured requester: `KIND PORT RATE SECS SERVER_PID RESPONDER_PID`. Prints one
/// `RESULT key=value ...` line.
fn request(args: &[String]) -> anyhow::Result<()> {
    let [kind, port, rate, secs, server_pid, responder_pid] = args else {
        bail!("request KIND PORT RATE SECS SERVER_PID RESPONDER_PID");
    };
    let port: u16 = port.parse()?;
    let secs: f64 = secs.parse()?;
    let pids: [u32; 2] = [server_pid.parse()?, responder_pid.parse()?];
    let shared = Arc::new(Shared {
        start: Instant::now(),
        rate: rate.parse()?,
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    });
    let rt = runtime(2)?;
    let window = Duration::from_secs_f64(secs);
    let kind = kind.clone();
    let outcome = rt.block_on(async move {
        let measure = async {
            tokio::time::sleep(WARMUP).await;
            let before = snapshot(&pids, &shared)?;
            tokio::time::sleep(window).await;
            let after = snapshot(&pids, &shared)?;
            anyhow::Ok((before, after))
        };
        match kind.as_str() {
            "lean" => lean::request(port, CONNS, PAYLOAD, shared.clone(), measure).await,
            "async-nats" => official::request(port, CONNS, PAYLOAD, shared.clone(), measure).await,
            other => bail!("unknown client {other}"),
        }
        .map(|(w, hist)| (w, hist, shared))
    })?;
    let ((before, after), hist, shared) = outcome;
    let d = |i: usize| after.cpu[i] - before.cpu[i];
    let secs = after.at.duration_since(before.at).as_secs_f64();
    println!(
        "RESULT client={} rate={} window_s={secs:.2} sent={} received={} window_received={} \
         client_cpu_s={:.3} server_cpu_s={:.3} responder_cpu_s={:.3} ratio={:.3} \
         responder_ratio={:.3} p50_us={} p99_us={}",
        args[0],
        shared.rate,
        shared.sent.load(Relaxed),
        shared.received.load(Relaxed),
        after.received - before.received,
        d(0),
        d(1),
        d(2),
        d(0) / d(1),
        d(2) / d(1),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
    );
    Ok(())
}

/// CPU seconds of this process, the server and the responder, at one instant.
pub struct Snapshot {
    at: Instant,
    cpu: [f64; 3],
    received: u64,
}

fn snapshot(pids: &[u32; 2], shared: &Shared) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        at: Instant::now(),
        cpu: [
            cpu_seconds(std::process::id())?,
            cpu_seconds(pids[0])?,
            cpu_seconds(pids[1])?,
        ],
        received: shared.received.load(Relaxed),
    })
}

fn orchestrate(args: &[String]) -> anyhow::Result<()> {
    let runs: usize = args.first().map_or(Ok(3), |s| s.parse())?;
    let rate: u64 = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let secs: u64 = args.get(2).map_or(Ok(15), |s| s.parse())?;
    let exe = std::env::current_exe()?;
    let server = NatsServer::start(NatsOptions::new())?;
    let port = server.port().to_string();
    let mut lines = Vec::new();
    for run in 0..runs {
        // alternate the order, so a trend in the machine's load hits both alike
        let kinds = if run % 2 == 0 {
            ["lean", "async-nats"]
        } else {
            ["async-nats", "lean"]
        };
        for kind in kinds {
            let mut responder = Command::new(&exe)
                .args(["respond", &port, &RESPONDER_CONNS.to_string()])
                .stdout(Stdio::piped())
                .spawn()?;
            let mut ready = String::new();
            BufReader::new(responder.stdout.take().context("responder stdout")?)
                .read_line(&mut ready)?;
            if ready.trim() != "ready" {
                bail!("responder did not start: {ready:?}");
            }
            let out = Command::new(&exe)
                .args(["request", kind, &port, &rate.to_string(), &secs.to_string()])
                .arg(server.pid().to_string())
                .arg(responder.id().to_string())
                .stderr(Stdio::inherit())
                .output()?;
            let _ = responder.kill();
            let _ = responder.wait();
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text
                .lines()
                .find(|l| l.starts_with("RESULT "))
                .with_context(|| format!("{kind} requester printed no result: {text}"))?
                .to_string();
            println!("{line}");
            std::io::stdout().flush()?;
            lines.push(line);
        }
    }
    println!("\n{}", summary(&lines));
    Ok(())
}

/// min / median / max of the ratios per client.
fn summary(lines: &[String]) -> String {
    let field = |l: &str, k: &str| -> Option<String> {
        l.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")[..]).map(str::to_string))
    };
    let mut out =
        String::from("client      runs  ratio min / median / max   responder/server median\n");
    for kind in ["lean", "async-nats"] {
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| field(l, "client").as_deref() == Some(kind))
            .collect();
        let mut ratio: Vec<f64> = mine
            .iter()
            .filter_map(|l| field(l, "ratio")?.parse().ok())
            .collect();
        let mut resp: Vec<f64> = mine
            .iter()
            .filter_map(|l| field(l, "responder_ratio")?.parse().ok())
            .collect();
        if ratio.is_empty() {
            continue;
        }
        ratio.sort_by(f64::total_cmp);
        resp.sort_by(f64::total_cmp);
        out.push_str(&format!(
            "{kind:<11} {:>4}  {:.3} / {:.3} / {:.3}          {:.3}\n",
            ratio.len(),
            ratio[0],
            ratio[ratio.len() / 2],
            ratio[ratio.len() - 1],
            resp[resp.len() / 2],
        ));
    }
    out
}
