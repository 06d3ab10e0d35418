//! Request/response (and publish-only) scenario: connections, lanes, progress, drain, report.

pub mod books;
pub mod lane;
mod live;
pub mod ticker;

use crate::config::{Config, Scenario};
use crate::error::LoadgenError;
use crate::report::Report;
use books::Books;
use bytes::BytesMut;
use lane::{Batches, Lane, LaneSpec, Topics, Window, BATCH_INITIAL, BATCH_KEEP};
use rr_common::codec::Correlation;
use rr_common::link::{Handler, Invalid, Link, Message, SessionSpec};
use rr_common::stats::Summary;
use rr_common::transport::{self, Encoder};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ticker::Ticker;
use tokio_util::sync::CancellationToken;

pub use live::RrState;

/// How far ahead of the stop decision the last due time lies (see `run_lane`).
const STOP_MARGIN_NS: u64 = 50_000_000;

/// A connection with more bytes than this waiting in its outlet takes no requests this tick.
const BACKLOG_LIMIT: usize = 1 << 20;

/// Replies read by a lane's connections (correlation, arrival in ns since the epoch), matched by
/// the lane at its next tick. Link tasks append once per read under a short lock and the lane
/// swaps the vector out once per tick: a reply costs no channel message, allocation or wake-up.
#[derive(Default)]
struct Inbox(Mutex<Vec<(Correlation, u64)>>);

/// Reader-side handler: decodes correlations, counts garbage, batches for the lane.
struct Replies {
    batch: Vec<(Correlation, u64)>,
    inbox: Arc<Inbox>,
    books: Arc<Books>,
    epoch: Instant,
    measure_from: u64,
    stop_at: Arc<AtomicU64>,
}

impl Replies {
    fn measured_now(&self, now: Instant) -> bool {
        let t = now.duration_since(self.epoch).as_nanos() as u64;
        t >= self.measure_from && t < self.stop_at.load(Relaxed)
    }
}

impl Handler for Replies {
    fn on_message(&mut self, m: &Message<'_>, now: Instant) {
        match m.correlation.map(Correlation::from_bytes) {
            Some(Ok(c)) => self
                .batch
                .push((c, now.duration_since(self.epoch).as_nanos() as u64)),
            _ => self
                .books
                .count(books::Outcome::Invalid, self.measured_now(now)),
        }
    }
    fn on_invalid(&mut self, _kind: Invalid) {
        self.books
            .count(books::Outcome::Invalid, self.measured_now(Instant::now()));
    }
    async fn flush(&mut self) {
        if !self.batch.is_empty() {
            let mut inbox = self.inbox.0.lock().unwrap_or_else(|e| e.into_inner());
            inbox.append(&mut self.batch);
        }
    }
}

/// Shared facts every lane needs at run time.
struct LaneCtx {
    books: Arc<Books>,
    epoch: Instant,
    measure_from: u64,
    stop_at: Arc<AtomicU64>,
    links: Vec<Arc<Link>>,
    inbox: Arc<Inbox>,
}

/// The lane's tick (every 1 ms, or at the next due time for a sparse schedule: see `ticker`):
/// match the replies that arrived, expire, encode what is due into one buffer per connection,
/// and hand each buffer to its connection's outlet (on plain TCP one direct `write` from this
/// task).
async fn run_lane(mut lane: Lane, ctx: LaneCtx) {
    let mut out = Batches::new(ctx.links.len());
    let mut replies = Vec::with_capacity(1024);
    let spacing = lane.spec.interval_ns * u64::from(lane.spec.lanes)
        / u64::from(lane.spec.total_clients.max(1));
    let mut ticker = Ticker::new(Duration::from_nanos(spacing));
    let mut last_merge = Instant::now();
    let ns = |t: Instant| t.duration_since(ctx.epoch).as_nanos() as u64;
    loop {
        ticker
            .wait(ctx.epoch + Duration::from_nanos(lane.next_due()))
            .await;
        // `now` first, then the stop time: a stop set after this load lies in the future of
        // `now` (the controller adds a margin), so nothing due before it is missed and nothing
        // at or after it is sent.
        let now = ns(Instant::now());
        let stop_at = ctx.stop_at.load(Relaxed);
        let win = Window {
            measure_from: ctx.measure_from,
            stop_at,
        };
        // Replies first: an answered request frees its slot before the sends due by now.
        std::mem::swap(
            &mut *ctx.inbox.0.lock().unwrap_or_else(|e| e.into_inner()),
            &mut replies,
        );
        for &(c, at) in &replies {
            lane.on_reply(c, at, &win, &ctx.books);
        }
        replies.clear();
        // connections whose writer is backed up take no more this tick
        for (i, link) in ctx.links.iter().enumerate() {
            out.usable[i] = link.is_up() && link.backlog() < BACKLOG_LIMIT;
            out.counts[i] = 0;
            out.room[i] = link.room();
        }
        // Expire first: a request whose TIMEOUT_MS has passed frees its slot before the
        // sends due by now, so TIMEOUT_MS = INTERVAL_MS never turns a loss into a skip.
        lane.expire(now, &win, &ctx.books);
        lane.run_due(now, &win, &ctx.books, &mut out);
        let flow = lane.flow_controlled();
        for (i, link) in ctx.links.iter().enumerate() {
            if out.bufs[i].is_empty() {
                continue;
            }
            // Refused only when MAX_QUEUED bytes wait already: those requests will time out.
            let _ = link.send_flow(&mut out.bufs[i], if flow { out.counts[i] } else { 0 });
            out.bufs[i].clear();
            // A catch-up burst (a late tick) grew this buffer: give the memory back rather than
            // keep the largest burst's capacity for the rest of the run.
            if out.bufs[i].capacity() > BATCH_KEEP {
                out.bufs[i] = BytesMut::with_capacity(BATCH_INITIAL);
            }
        }
        if last_merge.elapsed() >= Duration::from_millis(100) {
            lane.merge_into(&ctx.books);
            last_merge = Instant::now();
        }
        if stop_at != u64::MAX
            && now >= stop_at
            && (lane.inflight == 0 || now >= stop_at + lane.spec.timeout_ns)
        {
            lane.expire(now.max(stop_at + lane.spec.timeout_ns), &win, &ctx.books);
            break;
        }
    }
    lane.merge_into(&ctx.books);
}

/// Runs the rr or pub scenario to the end and returns its report.
pub(crate) async fn run(
    cfg: &Config,
    shutdown: CancellationToken,
    bound: tokio::sync::oneshot::Sender<std::net::SocketAddr>,
) -> Result<Report, LoadgenError> {
    let rr = &cfg.rr;
    let expect_replies = cfg.scenario == Scenario::Rr;
    let instance = cfg.instance_id();
    let run_id: u32 = rand::random();
    let n_conn = rr.connections as usize;
    let lanes = rr.publish_workers as usize;
    let opts = Arc::new(cfg.connect.clone());
    let tls = if cfg.connect.broker.scheme.is_tls() {
        Some(rr_common::net::tls_config(&opts).map_err(|e| LoadgenError::Tls(e.to_string()))?)
    } else {
        None
    };
    let books = Arc::new(Books::default());
    let epoch = Instant::now();
    let warmup_ns = cfg.warmup().as_nanos() as u64;
    let stop_at = Arc::new(AtomicU64::new(u64::MAX));
    let statuses: Vec<Arc<Link>> = (0..n_conn)
        .map(|_| transport::new_link(&cfg.connect.broker))
        .collect();
    let state = Arc::new(RrState::new(cfg, books.clone(), statuses.clone(), epoch));
    let http_addr = state.clone().serve(cfg, shutdown.clone()).await?;
    let _ = bound.send(http_addr);
    tracing::info!("metrics on http://{http_addr}/metrics, stats on http://{http_addr}/stats, dashboard on http://{http_addr}/");
    eprintln!(
        "loadgen {}: {} virtual clients over {} connections, {} shards, interval {} ms -> offered rate {:.1} req/s",
        instance,
        rr.virtual_clients,
        n_conn,
        rr.shards,
        rr.interval_ms,
        cfg.offered_rate()
    );

    // Establish every connection first (start-up errors are final, exit 3).
    let budget = Duration::from_millis(cfg.connect.connect_retry_ms);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n_conn {
        let reply = format!("resp/{instance}/{i}");
        let spec = SessionSpec {
            url: cfg.connect.broker.clone(),
            opts: opts.clone(),
            client_id: format!("lg-{instance}-{run_id:08x}-{i}"),
            subscriptions: if expect_replies {
                vec![(reply, rr.resp_qos)]
            } else {
                vec![]
            },
            bind: None,
            tls: tls.clone(),
        };
        set.spawn(async move {
            let r = transport::establish_with_retry(&spec, budget).await;
            (i, r, spec)
        });
    }
    let mut sessions: Vec<Option<(transport::Session, SessionSpec)>> =
        (0..n_conn).map(|_| None).collect();
    while let Some(j) = set.join_next().await {
        let (i, r, spec) = j.map_err(|e| LoadgenError::Internal(format!("connect task: {e}")))?;
        let s = r.map_err(|source| LoadgenError::Connect {
            url: cfg.connect.broker.to_string(),
            source,
        })?;
        sessions[i] = Some((s, spec));
    }
    state.ready.store(true, Relaxed);

    // Lanes: connection c and client g belong to lane (c % lanes) and (g % lanes).
    let payload = cfg.payload_bytes();
    let request_topics: Vec<Vec<u8>> = (0..rr.shards)
        .map(|s| format!("{}/{s}", rr.req_topic_prefix).into_bytes())
        .collect();
    let mut lane_tasks = Vec::new();
    let link_shutdown = CancellationToken::new();
    let mut link_tasks = tokio::task::JoinSet::new();
    let encoder = Encoder::new(&cfg.connect.broker, &opts);
    let mut lane_links: Vec<Vec<usize>> = vec![Vec::new(); lanes];
    for c in 0..n_conn {
        lane_links[c % lanes].push(c);
    }
    for (l, conns) in lane_links.iter().enumerate() {
        let inbox = Arc::new(Inbox::default());
        let mut links = Vec::new();
        for &c in conns {
            let Some((session, spec)) = sessions[c].take() else {
                let e = format!("connection {c} was not established");
                return Err(LoadgenError::Internal(e));
            };
            let handler = Replies {
                batch: Vec::with_capacity(64),
                inbox: inbox.clone(),
                books: books.clone(),
                epoch,
                measure_from: warmup_ns,
                stop_at: stop_at.clone(),
            };
            link_tasks.spawn(transport::drive(
                spec,
                session,
                handler,
                statuses[c].clone(),
                link_shutdown.clone(),
            ));
            links.push(statuses[c].clone());
        }
        let spec = LaneSpec {
            lane: l as u32,
            lanes: lanes as u32,
            total_clients: rr.virtual_clients,
            interval_ns: rr.interval_ms * 1_000_000,
            timeout_ns: rr.timeout_ms * 1_000_000,
            max_inflight: rr.max_inflight_per_client,
            run_id,
            encoder,
            qos: rr.req_qos,
            shards: rr.shards,
            expect_replies,
            batch_size: rr.batch_size,
        };
        let topics = Topics {
            request: request_topics.clone(),
            reply: conns
                .iter()
                .map(|c| format!("resp/{instance}/{c}").into_bytes())
                .collect(),
        };
        let lane = Lane::new(spec, topics, payload);
        let ctx = LaneCtx {
            books: books.clone(),
            epoch,
            measure_from: warmup_ns,
            stop_at: stop_at.clone(),
            links,
            inbox,
        };
        lane_tasks.push(tokio::spawn(run_lane(lane, ctx)));
    }
    state.started.store(true, Relaxed);

    // Run until the duration passes or shutdown is requested, printing progress.
    let progress = state
        .clone()
        .progress_loop(cfg.progress_sec, shutdown.clone());
    let end = async {
        if cfg.duration_sec == 0 {
            shutdown.cancelled().await;
        } else {
            let until = epoch + cfg.warmup() + Duration::from_secs(cfg.duration_sec);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
    };
    tokio::select! {
        _ = end => {}
        _ = progress => {}
    }
    // The stop lies slightly ahead so that no lane has already sent a request due after it.
    let stop = epoch.elapsed().as_nanos() as u64 + STOP_MARGIN_NS;
    stop_at.store(stop, Relaxed);
    state.phase.store(live::PHASE_DRAINING, Relaxed);
    eprintln!(
        "stopping: no new requests; draining for up to {} ms",
        rr.timeout_ms
    );
    for t in lane_tasks {
        let _ = t.await;
    }
    // Every link says goodbye after flushing what it holds.
    link_shutdown.cancel();
    while link_tasks.join_next().await.is_some() {}
    state.phase.store(live::PHASE_DONE, Relaxed);

    let w = books.window.snapshot();
    let duration_s = (stop.saturating_sub(warmup_ns)) as f64 / 1e9;
    let reconnects = statuses.iter().map(|s| s.reconnects()).sum();
    let report = Report {
        scenario: match cfg.scenario {
            Scenario::Pub => "pub".into(),
            _ => "rr".into(),
        },
        instance_id: instance,
        config: cfg.describe(),
        duration_s,
        offered_rate: cfg.offered_rate(),
        achieved_rate: if duration_s > 0.0 {
            w.sent as f64 / duration_s
        } else {
            0.0
        },
        sent: w.sent,
        matched: w.matched,
        timeouts: w.timeouts,
        late: w.late,
        duplicates: w.duplicates,
        invalid: w.invalid,
        skipped: w.skipped,
        publish_errors: w.publish_errors,
        reconnects,
        match_rate: if w.sent > 0 {
            w.matched as f64 / w.sent as f64
        } else {
            0.0
        },
        latency_us: books.latency_window.summary(),
        schedule_lag_us: Summary::of(&books.lag_window.snapshot()),
        unresolved: books.inflight.load(Relaxed),
        extra: serde_json::Map::new(),
    };
    Ok(report)
}
