//! What a running rr/pub scenario shows while it runs: `/metrics`, `/stats`, the web dashboard,
//! the live progress line, and the worker pool size polled from `WORKER_STATS_URLS`.

use super::books::{Books, CountsSnapshot};
use crate::config::{Config, Scenario};
use crate::error::LoadgenError;
use rr_common::http::{self, Endpoints};
use rr_common::link::Link;
use rr_common::stats::{PromWriter, Summary};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const PHASE_RUNNING: u8 = 0;
pub const PHASE_DRAINING: u8 = 1;
pub const PHASE_DONE: u8 = 2;

use crate::web::DASHBOARD_HTML;

#[derive(Clone, Default, serde::Serialize)]
struct Recent {
    window_s: f64,
    sent_per_s: f64,
    matched_per_s: f64,
    timeouts_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    lag_p99_us: u64,
}

pub struct RrState {
    pub books: Arc<Books>,
    pub links: Vec<Arc<Link>>,
    pub epoch: Instant,
    pub ready: AtomicBool,
    pub started: AtomicBool,
    pub phase: AtomicU8,
    scenario: Scenario,
    instance_id: String,
    virtual_clients: u32,
    offered_rate: f64,
    warmup: Duration,
    recent: Mutex<Recent>,
    worker: Mutex<Option<serde_json::Value>>,
    worker_urls: Vec<String>,
}

impl RrState {
    pub fn new(cfg: &Config, books: Arc<Books>, links: Vec<Arc<Link>>, epoch: Instant) -> Self {
        RrState {
            books,
            links,
            epoch,
            ready: AtomicBool::new(false),
            started: AtomicBool::new(false),
            phase: AtomicU8::new(PHASE_RUNNING),
            scenario: cfg.scenario,
            instance_id: cfg.instance_id(),
            virtual_clients: cfg.rr.virtual_clients,
            offered_rate: cfg.offered_rate(),
            warmup: cfg.warmup(),
            recent: Mutex::new(Recent::default()),
            worker: Mutex::new(None),
            worker_urls: cfg.worker_stats_urls.clone(),
        }
    }

    pub async fn serve(
        self: Arc<Self>,
        cfg: &Config,
        shutdown: CancellationToken,
    ) -> Result<SocketAddr, LoadgenError> {
        let addr = cfg.http.socket();
        let bound = http::serve(addr, self.clone(), shutdown.clone())
            .await
            .map_err(|source| LoadgenError::Http { addr, source })?;
        if !self.worker_urls.is_empty() {
            tokio::spawn(self.poll_workers(shutdown));
        }
        Ok(bound)
    }

    fn connections_up(&self) -> usize {
        self.links.iter().filter(|l| l.is_up()).count()
    }

    fn reconnects(&self) -> u64 {
        self.links.iter().map(|l| l.reconnects()).sum()
    }

    fn phase_name(&self) -> &'static str {
        match self.phase.load(Relaxed) {
            PHASE_DRAINING => "draining",
            PHASE_DONE => "done",
            _ if self.epoch.elapsed() < self.warmup => "warmup",
            _ => "running",
        }
    }

    /// Polls worker `/stats` every second and keeps the sum of pool sizes and queues.
    async fn poll_workers(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut sum = serde_json::json!({"pool_size": 0, "busy_workers": 0, "queue_depth": 0, "workers": 0});
            let mut any = false;
            for url in &self.worker_urls {
                let hostport = url
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or("");
                if let Ok((200, body)) =
                    http::get(hostport, "/stats", Duration::from_millis(800)).await
                {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                        any = true;
                        for k in ["pool_size", "busy_workers", "queue_depth"] {
                            let add = v[k].as_u64().unwrap_or(0);
                            sum[k] = (sum[k].as_u64().unwrap_or(0) + add).into();
                        }
                        sum["workers"] = (sum["workers"].as_u64().unwrap_or(0) + 1).into();
                    }
                }
            }
            *self.worker.lock().unwrap_or_else(|e| e.into_inner()) = any.then_some(sum);
        }
    }

    /// Prints a progress line every `every_s` seconds and refreshes the recent-window figures.
    /// Never returns on its own.
    pub async fn progress_loop(self: Arc<Self>, every_s: u64, shutdown: CancellationToken) {
        let period = Duration::from_secs(every_s.max(1));
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        let mut last = self.books.total.snapshot();
        let mut last_t = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => std::future::pending::<()>().await,
                _ = tick.tick() => {}
            }
            let now = self.books.total.snapshot();
            let dt = last_t.elapsed().as_secs_f64();
            last_t = Instant::now();
            let lat = Summary::of(&self.books.latency_recent.take());
            let lag = Summary::of(&self.books.lag_recent.take());
            let r = Recent {
                window_s: dt,
                sent_per_s: (now.sent - last.sent) as f64 / dt,
                matched_per_s: (now.matched - last.matched) as f64 / dt,
                timeouts_per_s: (now.timeouts - last.timeouts) as f64 / dt,
                p50_us: lat.p50,
                p99_us: lat.p99,
                lag_p99_us: lag.p99,
            };
            last = now;
            let w = self.books.window.snapshot();
            if every_s > 0 {
                eprintln!(
                    "[{:>6.1}s {}] sent/s {:>8.0}  matched/s {:>8.0}  p50 {:>7.2} ms  p99 {:>7.2} ms  match {}  timeouts {}  inflight {}  conns {}/{}  lag p99 {:.2} ms",
                    self.epoch.elapsed().as_secs_f64(),
                    self.phase_name(),
                    r.sent_per_s,
                    r.matched_per_s,
                    r.p50_us as f64 / 1e3,
                    r.p99_us as f64 / 1e3,
                    match_rate(&w).map_or("-".to_string(), |m| format!("{m:.5}")),
                    w.timeouts,
                    self.books.inflight.load(Relaxed),
                    self.connections_up(),
                    self.links.len(),
                    r.lag_p99_us as f64 / 1e3,
                );
            }
            *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = r;
        }
    }
}

fn match_rate(w: &CountsSnapshot) -> Option<f64> {
    // while requests are still in flight, matched/sent understates; resolved ones give the rate
    let resolved = w.matched + w.timeouts;
    (resolved > 0).then(|| w.matched as f64 / resolved as f64)
}

impl Endpoints for RrState {
    fn metrics(&self) -> String {
        let t = self.books.total.snapshot();
        let mut w = PromWriter::new();
        w.counter("loadgen_requests_sent_total", "Requests published", t.sent);
        w.counter(
            "loadgen_responses_matched_total",
            "Responses matched to their request in time",
            t.matched,
        );
        w.counter(
            "loadgen_requests_timeout_total",
            "Requests without a response within TIMEOUT_MS",
            t.timeouts,
        );
        w.counter(
            "loadgen_responses_late_total",
            "Responses that arrived after their request timed out",
            t.late,
        );
        w.counter(
            "loadgen_responses_duplicate_total",
            "Second and further responses to one request",
            t.duplicates,
        );
        w.counter(
            "loadgen_responses_invalid_total",
            "Messages on reply topics that could not be matched",
            t.invalid,
        );
        w.counter(
            "loadgen_requests_skipped_total",
            "Due sends skipped because the client was at its inflight cap",
            t.skipped,
        );
        w.counter(
            "loadgen_publish_errors_total",
            "Due sends that could not be published (no connection up, or every connection's send queue full)",
            t.publish_errors,
        );
        w.gauge(
            "loadgen_requests_inflight",
            "Requests sent and not yet resolved",
            self.books.inflight.load(Relaxed) as f64,
        );
        w.gauge(
            "loadgen_virtual_clients",
            "Virtual clients simulated",
            f64::from(self.virtual_clients),
        );
        w.gauge(
            "loadgen_connections",
            "MQTT connections up",
            self.connections_up() as f64,
        );
        w.counter(
            "loadgen_reconnects_total",
            "Reconnects after a lost connection",
            self.reconnects(),
        );
        w.gauge(
            "loadgen_offered_rate",
            "Offered request rate (requests per second)",
            self.offered_rate,
        );
        w.histogram_us(
            "loadgen_response_latency_seconds",
            "Response latency from scheduled send to arrival",
            &self.books.latency_all.snapshot(),
        );
        w.histogram_us(
            "loadgen_schedule_lag_seconds",
            "How late the generator sent requests against their schedule (measured window)",
            &self.books.lag_window.snapshot(),
        );
        w.finish()
    }

    fn stats(&self) -> String {
        let w = self.books.window.snapshot();
        let elapsed = self.epoch.elapsed();
        let measured_s = elapsed.saturating_sub(self.warmup).as_secs_f64();
        let lag = Summary::of(&self.books.lag_window.snapshot());
        let v = serde_json::json!({
            "scenario": match self.scenario { Scenario::Pub => "pub", _ => "rr" },
            "instance_id": self.instance_id,
            "phase": self.phase_name(),
            "elapsed_s": elapsed.as_secs_f64(),
            "measured_s": measured_s,
            "offered_rate": self.offered_rate,
            "achieved_rate": if measured_s > 0.0 { w.sent as f64 / measured_s } else { 0.0 },
            "virtual_clients": self.virtual_clients,
            "connections": self.connections_up(),
            "inflight": self.books.inflight.load(Relaxed),
            "sent": w.sent, "matched": w.matched, "timeouts": w.timeouts, "late": w.late,
            "duplicates": w.duplicates, "invalid": w.invalid, "skipped": w.skipped,
            "publish_errors": w.publish_errors, "reconnects": self.reconnects(),
            "match_rate": match_rate(&w),
            "latency_us": self.books.latency_window.summary(),
            "recent": self.recent.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "schedule_lag_us": {"p99": lag.p99, "max": lag.max},
            "worker": self.worker.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "totals": self.books.total.snapshot(),
        });
        v.to_string()
    }

    fn ready(&self) -> bool {
        self.ready.load(Relaxed) && self.connections_up() > 0
    }

    fn other(&self, path: &str) -> Option<(&'static str, Vec<u8>)> {
        match path {
            "/" | "/index.html" | "/dashboard" => Some((
                "text/html; charset=utf-8",
                DASHBOARD_HTML.as_bytes().to_vec(),
            )),
            _ => None,
        }
    }
}
