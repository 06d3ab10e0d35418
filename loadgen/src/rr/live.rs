//! What a running rr/pub scenario shows while it runs: `/metrics`, `/stats`, the web dashboard,
//! the counters the harness's tick and progress line read, and the worker pool size polled
//! from `WORKER_STATS_URLS`.
//!
//! `/stats` shows the window's books so far with the report's match rate, `matched / sent`:
//! requests still in flight count as not (yet) matched, so while a run is going it reads low by
//! about `inflight / sent`, and after the drain it is the report's figure. `recent` holds the
//! last second's rates (and `recent.matched_per_s / recent.sent_per_s` the last second's ratio).

use super::books::Books;
use super::export::RrMetrics;
use crate::capacity::tally::Instrument;
use crate::config::Config;
use crate::harness::{Finished, Live, Outstanding, RunState, Sample, Words};
use crate::report::{self, match_rate, RequestBooks};
use crate::web::DASHBOARD_HTML;
use rr_common::http::{self, Endpoints};
use rr_common::link::Link;
use rr_common::stats::Summary;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct RrState {
    pub books: Arc<Books>,
    pub links: Vec<Arc<Link>>,
    pub run: Arc<RunState>,
    virtual_clients: u32,
    offered_rate: f64,
    /// The planned measured window (`None`: until stopped).
    window: Option<Duration>,
    /// The load profile (STAGES, the capacity search): the current target.
    instrument: Arc<Instrument>,
    worker: Mutex<Option<serde_json::Value>>,
    worker_urls: Vec<String>,
    /// `/metrics`: this run's own exporter.
    metrics: RrMetrics,
}

impl RrState {
    pub fn new(
        cfg: &Config,
        books: Arc<Books>,
        links: Vec<Arc<Link>>,
        run: Arc<RunState>,
        instrument: Arc<Instrument>,
    ) -> Self {
        RrState {
            books,
            links,
            run,
            virtual_clients: cfg.rr.virtual_clients,
            offered_rate: cfg.offered_rate(),
            window: cfg.duration(),
            instrument,
            worker: Mutex::new(None),
            worker_urls: cfg.worker_stats_urls.clone(),
            metrics: RrMetrics::new(cfg.rr.virtual_clients, cfg.offered_rate()),
        }
    }

    fn connections_up(&self) -> usize {
        self.links.iter().filter(|l| l.is_up()).count()
    }

    fn reconnects(&self) -> u64 {
        self.links.iter().map(|l| l.reconnects()).sum()
    }

    /// The current target: offered requests per second and active virtual clients (the
    /// profile's value now; before t = 0, its value at t = 0).
    pub fn target(&self) -> (f64, f64) {
        let t = self.run.elapsed().as_nanos() as u64;
        (
            self.instrument.target_rate(t),
            self.instrument.active_clients(t),
        )
    }

    /// Sum of the polled workers' pool sizes (WORKER_STATS_URLS), when known.
    pub fn worker_pool(&self) -> Option<u64> {
        self.worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|w| w["pool_size"].as_u64())
    }

    /// Whether worker `/stats` are polled at all.
    pub fn polls_workers(&self) -> bool {
        !self.worker_urls.is_empty()
    }

    /// Polls worker `/stats` every second until `stop` and keeps the sum of pool sizes and queues.
    pub async fn poll_workers(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
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
}

impl Live for RrState {
    fn sample(&self) -> Sample {
        let t = self.books.total.snapshot();
        Sample {
            sent: t.sent,
            done: t.matched,
            failed: t.timeouts,
            inflight: Some(self.books.inflight.load(Relaxed)),
            connections: self.connections_up() as u64,
            connections_planned: self.links.len() as u64,
            reconnects: self.reconnects(),
            worker_pool: self.worker_pool(),
        }
    }

    fn take_recent(&self) -> (Summary, Summary) {
        (
            Summary::of(&self.books.latency_recent.take()),
            Summary::of(&self.books.lag_recent.take()),
        )
    }

    fn words(&self) -> Words {
        Words {
            sent: "sent",
            done: "matched",
            failed: "timeouts",
        }
    }

    fn progress_extra(&self) -> String {
        let w = self.books.window.snapshot();
        let (rate, active) = self.target();
        format!(
            "match {:.5}  target {rate:.0}/s ({active:.0} clients)",
            match_rate(w.matched, w.sent)
        )
    }

    fn so_far(&self) -> Finished {
        let w = self.books.window.snapshot();
        let measured = self.run.measured_s();
        let duration_s = self
            .window
            .map_or(measured, |d| measured.min(d.as_secs_f64()));
        Finished {
            duration_s,
            offered_rate: self.offered_rate,
            sent: w.sent,
            duplicates: w.duplicates,
            invalid: w.invalid,
            skipped: w.skipped,
            publish_errors: w.publish_errors,
            reconnects: self.reconnects(),
            latency: self.books.latency_window.snapshot(),
            schedule_lag: self.books.lag_window.snapshot(),
            // requests of the window not yet answered or timed out are the unresolved ones
            books: report::Books::Requests(RequestBooks::new(
                w.sent,
                w.matched,
                w.timeouts,
                w.late,
                w.sent.saturating_sub(w.matched + w.timeouts),
            )),
        }
    }

    fn outstanding(&self) -> Outstanding {
        let t = self.books.total.snapshot();
        Outstanding {
            pending: Some(self.books.inflight.load(Relaxed)),
            progress: t.matched + t.timeouts,
        }
    }
}

impl Endpoints for RrState {
    fn metrics(&self) -> String {
        let (rate, active) = self.target();
        self.metrics.set_target(rate, active);
        self.metrics
            .render(&self.books, self.connections_up(), self.reconnects())
    }

    fn stats(&self) -> String {
        let w = self.books.window.snapshot();
        let measured_s = self.run.measured_s();
        let mut v = self.run.stats_head();
        let rest = serde_json::json!({
            "offered_rate": self.target().0,
            "active_clients": self.target().1,
            "achieved_rate": if measured_s > 0.0 { w.sent as f64 / measured_s } else { 0.0 },
            "virtual_clients": self.virtual_clients,
            "connections": self.connections_up(),
            "inflight": self.books.inflight.load(Relaxed),
            "sent": w.sent, "matched": w.matched, "timeouts": w.timeouts, "late": w.late,
            "duplicates": w.duplicates, "invalid": w.invalid, "skipped": w.skipped,
            "publish_errors": w.publish_errors, "reconnects": self.reconnects(),
            "match_rate": match_rate(w.matched, w.sent),
            "latency_us": self.books.latency_window.summary(),
            "recent": self.run.recent(),
            "schedule_lag_us": Summary::of(&self.books.lag_window.snapshot()),
            "worker": self.worker.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "totals": self.books.total.snapshot(),
        });
        if let serde_json::Value::Object(m) = rest {
            v.extend(m);
        }
        serde_json::Value::Object(v).to_string()
    }

    fn ready(&self) -> bool {
        self.run.is_ready() && self.connections_up() > 0
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
