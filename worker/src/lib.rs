//! worker: the service side of the request/response benchmark. Subscriber connections on a
//! shared subscription feed a bounded queue drained by an autoscaled pool of workers, which
//! answer each request on its reply topic with its correlation.

pub mod coalesce;
pub mod config;
pub mod export;
pub mod intake;
pub mod outbox;
pub mod pool;

use config::{Config, Valid};
use pool::{Counters, Policy, Pool, Shared};
use rr_common::http::{self, Endpoints};
use rr_common::link::{Link, SessionError, SessionSpec};
use rr_common::transport::{self, Encoder};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: SessionError },
    #[error("cannot serve HTTP on {addr} (METRICS_ADDR/METRICS_PORT): {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// TLS files that cannot be used (unreadable, not PEM); the message says so.
    #[error("{0}")]
    Tls(String),
}

impl WorkerError {
    pub fn exit_code(&self) -> i32 {
        match self {
            WorkerError::Connect { .. } => rr_common::cli::EXIT_CONNECT,
            WorkerError::Tls(_) => rr_common::cli::EXIT_CONFIG,
            WorkerError::Http { .. } => 1,
        }
    }
}

/// Live state exposed over HTTP and returned at the end.
pub struct WorkerState {
    pub shared: Arc<Shared>,
    pub links: Vec<Arc<Link>>,
    pub queue_cap: u64,
    pub ready: std::sync::atomic::AtomicBool,
    pub config: serde_json::Value,
    /// `/metrics`, registered once.
    pub metrics: export::WorkerMetrics,
    /// Read coalescing (`COALESCE_US`), when the binary installed it on its runtime.
    pub coalesce: std::sync::OnceLock<Arc<coalesce::Coalesce>>,
}

/// Counter snapshot (also the `/stats` JSON).
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Snapshot {
    pub received: u64,
    pub responded: u64,
    pub dropped: u64,
    pub invalid: u64,
    pub errors: u64,
    pub queue_depth: u64,
    pub in_progress: u64,
    pub queue_capacity: u64,
    pub pool_size: u64,
    pub busy_workers: u64,
    pub scale_up_events: u64,
    pub scale_down_events: u64,
    pub connections: u64,
    pub reconnects: u64,
    pub queue_wait_us: serde_json::Value,
    pub processing_us: serde_json::Value,
    /// Wake-ups that waited `COALESCE_US` before reading (0 when it is off).
    pub coalesced_wakeups: u64,
}

impl Snapshot {
    /// received == responded + dropped + invalid + errors + queued + in progress
    pub fn conserved(&self) -> bool {
        self.received
            == self.responded
                + self.dropped
                + self.invalid
                + self.errors
                + self.queue_depth
                + self.in_progress
    }
}

impl WorkerState {
    pub fn snapshot(&self) -> Snapshot {
        let c: &Counters = &self.shared.counters;
        let pct = |b: &rr_common::stats::AtomicBuckets| {
            serde_json::json!({
                "p50": b.quantile_us(0.5), "p99": b.quantile_us(0.99),
                "count": b.count(),
                "mean": if b.count() > 0 { b.sum_us() as f64 / b.count() as f64 } else { 0.0 },
            })
        };
        // Read outcomes before `received`, so a concurrent request can only make
        // the right-hand side look smaller, never larger.
        let in_progress = c.in_progress.load(Relaxed);
        let responded = c.responded.load(Relaxed);
        let dropped = c.dropped.load(Relaxed);
        let invalid = c.invalid.load(Relaxed);
        let errors = c.errors.load(Relaxed);
        let queue_depth = self.shared.queue_depth();
        Snapshot {
            received: c.received.load(Relaxed),
            responded,
            dropped,
            invalid,
            errors,
            queue_depth,
            in_progress,
            queue_capacity: self.queue_cap,
            pool_size: c.pool_size.load(Relaxed),
            busy_workers: in_progress,
            scale_up_events: c.scale_up.load(Relaxed),
            scale_down_events: c.scale_down.load(Relaxed),
            connections: self.links.iter().filter(|l| l.is_up()).count() as u64,
            reconnects: self.links.iter().map(|l| l.reconnects()).sum(),
            queue_wait_us: pct(&c.queue_wait),
            processing_us: pct(&c.processing),
            coalesced_wakeups: self.coalesce.get().map_or(0, |c| c.waited()),
        }
    }
}

impl Endpoints for WorkerState {
    fn metrics(&self) -> String {
        self.metrics.render(&self.snapshot(), &self.shared.counters)
    }

    fn stats(&self) -> String {
        let mut v = serde_json::to_value(self.snapshot()).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("config".into(), self.config.clone());
        }
        v.to_string()
    }

    fn ready(&self) -> bool {
        self.ready.load(Relaxed) && self.links.iter().any(|l| l.is_up())
    }
}

/// A running worker: its state and HTTP address.
pub struct Running {
    pub state: Arc<WorkerState>,
    pub http_addr: SocketAddr,
    /// Cancelled once the worker has drained and every connection has said DISCONNECT.
    pub done: CancellationToken,
}

/// Longest a stopping worker keeps answering what it already holds.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Connects, subscribes, and starts serving. Returns once every connection is up; the worker
/// keeps running until `shutdown` is cancelled, then answers what it holds (until nothing is
/// queued, in hand or in the outbox, at most [`DRAIN_LIMIT`]), then stops its tasks and joins
/// its connections (each flushes what it holds and says DISCONNECT) before `done`.
pub async fn start(
    cfg: Valid<Config>,
    shutdown: CancellationToken,
) -> Result<Running, WorkerError> {
    let stopped = CancellationToken::new();
    let (running, mut links) = start_inner(&cfg, stopped.clone()).await?;
    let state = running.state.clone();
    let done = running.done.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        if !state.shared.wait_idle(deadline).await {
            tracing::warn!(
                "stopping with requests unanswered after {DRAIN_LIMIT:?}: {:?}",
                state.snapshot()
            );
        }
        stopped.cancel();
        // every connection writes out what it holds, says DISCONNECT and closes
        while links.join_next().await.is_some() {}
        done.cancel();
    });
    Ok(running)
}

/// The link tasks of a running worker.
type Links = tokio::task::JoinSet<intake::Intake>;

async fn start_inner(
    cfg: &Config,
    shutdown: CancellationToken,
) -> Result<(Running, Links), WorkerError> {
    let opts = Arc::new(cfg.connect.clone());
    let encoder = Encoder::new(&cfg.connect.broker, &opts);
    let tls = if cfg.connect.broker.scheme.is_tls() {
        Some(rr_common::net::tls_config(&opts).map_err(|e| WorkerError::Tls(e.to_string()))?)
    } else {
        None
    };
    let n = cfg.connections as usize;
    let instance = cfg.instance_id();
    let nonce: u32 = rand::random();
    let statuses: Vec<Arc<Link>> = (0..n)
        .map(|_| transport::new_link(&cfg.connect.broker))
        .collect();
    let shared = Arc::new(Shared::new(
        Counters::default(),
        cfg.queue_cap as usize,
        Arc::new(outbox::Outbox::new(
            statuses.clone(),
            encoder.flow_controlled(cfg.pub_qos),
        )),
    ));
    let state = Arc::new(WorkerState {
        shared: shared.clone(),
        links: statuses.clone(),
        queue_cap: u64::from(cfg.queue_cap),
        ready: false.into(),
        config: cfg.describe(),
        metrics: Default::default(),
        coalesce: Default::default(),
    });
    let http_bind = cfg.http.socket();
    let http_addr = http::serve(http_bind, state.clone(), shutdown.clone())
        .await
        .map_err(|source| WorkerError::Http {
            addr: http_bind,
            source,
        })?;
    tracing::info!("metrics on http://{http_addr}/metrics, stats on http://{http_addr}/stats");

    let pool = Pool::new(shared.clone(), cfg, shutdown.clone());
    tokio::spawn(pool::autoscale(
        pool,
        Policy::from_config(cfg),
        cfg.scale_interval(),
        shutdown.clone(),
    ));
    shared.outbox.spawn_flusher(shutdown.clone());

    let subscription = cfg.subscription();
    // Kafka: the cluster answers and has the request topic.
    let topics: Vec<(String, u32)> = rr_common::kafka::topics::topic_of_filter(&cfg.mqtt_sub)
        .map(|t| (t, cfg.connect.kafka_partitions))
        .into_iter()
        .collect();
    transport::prepare(&cfg.connect.broker, &opts, &topics)
        .await
        .map_err(|source| WorkerError::Connect {
            url: cfg.connect.broker.to_string(),
            source,
        })?;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let spec = SessionSpec {
            url: cfg.connect.broker.clone(),
            opts: opts.clone(),
            client_id: format!("worker-{instance}-{nonce:08x}-{i}"),
            subscriptions: vec![(subscription.clone(), cfg.sub_qos)],
            bind: None,
            tls: tls.clone(),
        };
        let budget = Duration::from_millis(cfg.connect.connect_retry_ms);
        set.spawn(async move {
            let r = transport::establish_with_retry(&spec, budget).await;
            (i, r, spec)
        });
    }
    let connect_error = |source| WorkerError::Connect {
        url: cfg.connect.broker.to_string(),
        source,
    };
    let mut links = Links::new();
    while let Some(joined) = set.join_next().await {
        let (i, result, spec) =
            joined.map_err(|e| connect_error(SessionError::Task(e.to_string())))?;
        let session = result.map_err(connect_error)?;
        let intake = intake::Intake::new(shared.clone(), i, encoder, cfg.pub_qos, cfg.drop_on_full);
        links.spawn(transport::drive(
            spec,
            session,
            intake,
            statuses[i].clone(),
            shutdown.clone(),
        ));
    }
    state.ready.store(true, Relaxed);
    tracing::info!(
        "worker ready: {n} connections on {} subscribed to {subscription}, mode {:?}",
        cfg.connect.broker,
        cfg.mode
    );
    let running = Running {
        state,
        http_addr,
        done: CancellationToken::new(),
    };
    Ok((running, links))
}

/// Runs until `shutdown`, then lets in-flight work finish briefly. Returns the final snapshot.
/// `coalesce`: the read coalescing installed on the runtime this runs on (`COALESCE_US`), which
/// takes its request rate from this worker.
pub async fn run(
    cfg: Valid<Config>,
    shutdown: CancellationToken,
    coalesce: Option<Arc<coalesce::Coalesce>>,
) -> Result<Snapshot, WorkerError> {
    let running = start(cfg, shutdown).await?;
    if let Some(c) = coalesce {
        c.attach(running.state.shared.clone());
        let _ = running.state.coalesce.set(c);
    }
    running.done.cancelled().await;
    Ok(running.state.snapshot())
}
