//! The rr and pub scenarios on the run harness: connect every connection (a failed one is an
//! error, exit 3), then at t = 0 drive the links and start the lanes; stop at the planned end
//! (known to the lanes from the start) or a moment after a shutdown; the drain waits for the
//! requests in flight (each lane expires its own at stop + TIMEOUT_MS); every task is joined.

use super::books::Books;
use super::lane::{Lane, LaneSpec, Topics};
use super::live::RrState;
use super::{run_lane, Inbox, LaneCtx, Replies};
use crate::capacity::profile::Profile;
use crate::capacity::tally::Instrument;
use crate::config::{Config, Scenario as Kind};
use crate::error::LoadgenError;
use crate::harness::{DrainRule, Finished, RunClock, RunState, Scenario, Stop};
use crate::report::{Books as ReportBooks, RequestBooks};
use rr_common::link::{Link, SessionError, SessionSpec};
use rr_common::transport::{self, Encoder, Session};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How far ahead of a shutdown the stop lies, so that no lane has already sent a request due
/// after it (see `run_lane`).
const STOP_MARGIN: Duration = Duration::from_millis(50);

/// The rr (or pub) scenario.
pub(crate) struct Rr {
    cfg: Config,
    live: Arc<RrState>,
    books: Arc<Books>,
    statuses: Vec<Arc<Link>>,
    run_id: u32,
    sessions: Vec<(Session, SessionSpec)>,
    epoch: Option<Instant>,
    /// Requests due at or after this (ns since t = 0) are not sent.
    stop_at: Arc<AtomicU64>,
    lanes: JoinSet<()>,
    links: JoinSet<Replies>,
    /// Polls the workers' /stats (RR_WORKER_URLS) until `link_stop`.
    poll: JoinSet<()>,
    /// Stops the link tasks (after the lanes are done) and the worker poll.
    link_stop: CancellationToken,
    /// The load profile the lanes offer, their per-second timeline and the capacity step.
    instrument: Arc<Instrument>,
}

/// What the lanes offer over time: every client (rr, pub), the STAGES profile, or nothing
/// until the capacity search sets its first step.
fn profile(cfg: &Config) -> Profile {
    if cfg.scenario == Kind::Capacity {
        return Profile::constant(0.0);
    }
    cfg.capacity.parsed_stages(&cfg.schedule()).map_or_else(
        || Profile::constant(f64::from(cfg.rr.virtual_clients)),
        |s| s.profile(),
    )
}

impl Rr {
    pub(crate) fn new(cfg: &Config, run: Arc<RunState>) -> Rr {
        let books = Arc::new(Books::default());
        let statuses: Vec<Arc<Link>> = (0..cfg.rr.connections)
            .map(|_| transport::new_link(&cfg.connect.broker))
            .collect();
        let instrument = Arc::new(Instrument::new(
            profile(cfg),
            cfg.rr.publish_workers as usize,
            1000.0 / cfg.rr.interval_ms as f64,
        ));
        let live = Arc::new(RrState::new(
            cfg,
            books.clone(),
            statuses.clone(),
            run,
            instrument.clone(),
        ));
        Rr {
            instrument,
            cfg: cfg.clone(),
            live,
            books,
            statuses,
            run_id: rand::random(),
            sessions: Vec::new(),
            epoch: None,
            stop_at: Arc::new(AtomicU64::new(u64::MAX)),
            lanes: JoinSet::new(),
            links: JoinSet::new(),
            poll: JoinSet::new(),
            link_stop: CancellationToken::new(),
        }
    }

    fn expect_replies(&self) -> bool {
        self.cfg.scenario.expects_replies()
    }

    /// The run's load profile, timeline and capacity step (for the capacity hook).
    pub(crate) fn instrument(&self) -> Arc<Instrument> {
        self.instrument.clone()
    }

    fn connect_error(&self, source: SessionError) -> LoadgenError {
        LoadgenError::Connect {
            url: self.cfg.connect.broker.to_string(),
            source,
        }
    }

    /// ns since t = 0.
    fn ns(&self, t: Instant) -> u64 {
        self.epoch
            .map_or(0, |e| t.saturating_duration_since(e).as_nanos() as u64)
    }
}

impl Scenario for Rr {
    type Live = RrState;

    fn live(&self) -> Arc<RrState> {
        self.live.clone()
    }

    async fn connect(&mut self, _shutdown: &CancellationToken) -> Result<(), LoadgenError> {
        let cfg = &self.cfg;
        let rr = &cfg.rr;
        let instance = cfg.instance_id();
        let opts = Arc::new(cfg.connect.clone());
        let tls = if cfg.connect.broker.scheme.is_tls() {
            Some(rr_common::net::tls_config(&opts).map_err(|e| LoadgenError::Tls(e.to_string()))?)
        } else {
            None
        };
        eprintln!(
            "loadgen {}: {} virtual clients over {} connections, {} shards, interval {} ms -> offered rate {:.1} req/s",
            instance,
            rr.virtual_clients,
            rr.connections,
            rr.shards,
            rr.interval_ms,
            cfg.offered_rate()
        );
        if let Some(st) = cfg.capacity.parsed_stages(&cfg.schedule()) {
            eprintln!(
                "STAGES: {} stages, {} s in all (peak {:.1} req/s); the run lasts their sum{}",
                st.stages.len(),
                st.total_ns() / 1_000_000_000,
                st.rate_of(st.profile().max()),
                if cfg.duration_sec > 0 {
                    format!(" (DURATION_SEC={} is ignored)", cfg.duration_sec)
                } else {
                    String::new()
                }
            );
        }
        // Kafka: the cluster answers and has the request topic and this instance's reply topic
        // (a partition per connection).
        let mut topics = vec![(rr.req_topic_prefix.clone(), cfg.connect.kafka_partitions)];
        if self.expect_replies() {
            topics.push((format!("resp/{instance}"), rr.connections));
        }
        transport::prepare(&cfg.connect.broker, &opts, &topics)
            .await
            .map_err(|e| self.connect_error(e))?;
        let budget = Duration::from_millis(cfg.connect.connect_retry_ms);
        let mut set = JoinSet::new();
        for i in 0..rr.connections as usize {
            let spec = SessionSpec {
                url: cfg.connect.broker.clone(),
                opts: opts.clone(),
                client_id: format!("lg-{instance}-{:08x}-{i}", self.run_id),
                subscriptions: if self.expect_replies() {
                    vec![(format!("resp/{instance}/{i}"), rr.resp_qos)]
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
        let mut sessions: Vec<Option<(Session, SessionSpec)>> =
            (0..rr.connections).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            let (i, r, spec) =
                joined.map_err(|e| LoadgenError::Internal(format!("connect task: {e}")))?;
            sessions[i] = Some((r.map_err(|e| self.connect_error(e))?, spec));
        }
        self.sessions = sessions.into_iter().flatten().collect();
        // A broker that names its largest message (NATS max_payload) never gets a larger one.
        let payload = cfg.payload_bytes();
        let largest = Encoder::new(&cfg.connect.broker, &opts)
            .message_len(rr_common::codec::CORRELATION_LEN, payload);
        if let Some(max) = self.sessions.iter().find_map(|(s, _)| s.max_message()) {
            if largest > max {
                return Err(LoadgenError::Limit(format!(
                    "invalid PAYLOAD_BYTES: '{payload}' makes messages of {largest} bytes; \
                     the broker takes at most {max} (its max_payload)"
                )));
            }
        }
        Ok(())
    }

    fn start(&mut self, clock: RunClock) {
        let cfg = &self.cfg;
        let rr = &cfg.rr;
        let instance = cfg.instance_id();
        let lanes = rr.publish_workers as usize;
        let n_conn = self.sessions.len();
        self.epoch = Some(clock.epoch);
        let measure_from = clock.warmup.as_nanos() as u64;
        if let Some(d) = clock.duration {
            // The planned end is known now: no lane ever sends a request due after it.
            self.stop_at
                .store(measure_from + d.as_nanos() as u64, Relaxed);
        }
        if self.live.polls_workers() {
            let live = self.live.clone();
            let stop = self.link_stop.clone();
            self.poll.spawn(live.poll_workers(stop));
        }
        let encoder = Encoder::new(&cfg.connect.broker, &cfg.connect);
        let request_topics: Vec<Vec<u8>> = (0..rr.shards)
            .map(|s| format!("{}/{s}", rr.req_topic_prefix).into_bytes())
            .collect();
        // Lanes: connection c and client g belong to lane (c % lanes) and (g % lanes).
        let mut lane_links: Vec<Vec<usize>> = vec![Vec::new(); lanes];
        for c in 0..n_conn {
            lane_links[c % lanes].push(c);
        }
        let mut sessions: Vec<Option<(Session, SessionSpec)>> = std::mem::take(&mut self.sessions)
            .into_iter()
            .map(Some)
            .collect();
        for (l, conns) in lane_links.iter().enumerate() {
            let inbox = Arc::new(Inbox::default());
            // Answers wake no one: the lane reads its connections at its ticks.
            #[cfg(target_os = "linux")]
            let reads = rr
                .read_at_tick
                .then(|| {
                    rr_common::net::stamped::ReadSet::new()
                        .map_err(|e| tracing::debug!("no read set ({e}): answers read on arrival"))
                        .ok()
                })
                .flatten();
            let mut links = Vec::new();
            for &c in conns {
                let Some((session, spec)) = sessions[c].take() else {
                    continue;
                };
                let handler = Replies {
                    batch: Vec::with_capacity(64),
                    inbox: inbox.clone(),
                    books: self.books.clone(),
                    epoch: clock.epoch,
                    measure_from,
                    stop_at: self.stop_at.clone(),
                    run: self.instrument.clone(),
                };
                #[cfg(target_os = "linux")]
                if let Some(r) = &reads {
                    self.statuses[c].read_at_ticks(r);
                }
                self.links.spawn(transport::drive(
                    spec,
                    session,
                    handler,
                    self.statuses[c].clone(),
                    self.link_stop.clone(),
                ));
                links.push(self.statuses[c].clone());
            }
            let spec = LaneSpec {
                lane: l as u32,
                lanes: lanes as u32,
                total_clients: rr.virtual_clients,
                interval_ns: rr.interval_ms * 1_000_000,
                timeout_ns: rr.timeout_ms * 1_000_000,
                max_inflight: rr.max_inflight_per_client,
                run_id: self.run_id,
                encoder,
                qos: rr.req_qos,
                shards: rr.shards,
                expect_replies: self.expect_replies(),
                batch_size: rr.batch_size,
            };
            let topics = Topics {
                request: request_topics.clone(),
                reply: conns
                    .iter()
                    .map(|c| format!("resp/{instance}/{c}").into_bytes())
                    .collect(),
            };
            let lane =
                Lane::with_instrument(spec, topics, cfg.payload_bytes(), self.instrument.clone());
            let ctx = LaneCtx {
                books: self.books.clone(),
                epoch: clock.epoch,
                measure_from,
                stop_at: self.stop_at.clone(),
                links,
                inbox,
                #[cfg(target_os = "linux")]
                reads,
            };
            self.lanes.spawn(run_lane(lane, ctx));
        }
    }

    async fn stop(&mut self, how: Stop) {
        if how == Stop::Now && self.epoch.is_some() {
            // A little ahead, so that no lane has already sent a request due after it.
            let at = self.ns(Instant::now() + STOP_MARGIN);
            self.stop_at.fetch_min(at, Relaxed);
        }
        let stop = self.stop_at.load(Relaxed);
        if stop != u64::MAX {
            // a profile (STAGES, a capacity search) plans nothing after the stop, so the
            // timeline's seconds of the drain show no target
            let vc = f64::from(self.cfg.rr.virtual_clients);
            if !self.instrument.profile.get().always_at_least(vc) {
                self.instrument.set_rate_from(stop, 0.0);
            }
            // nothing due after the stop is sent: wait until the lanes are past it
            if let Some(e) = self.epoch {
                tokio::time::sleep_until((e + Duration::from_nanos(stop)).into()).await;
            }
        }
        eprintln!(
            "stopping: no new requests; draining for up to {} ms",
            self.cfg.rr.timeout_ms
        );
    }

    fn drain_rule(&self) -> DrainRule {
        // each lane expires what is left at stop + TIMEOUT_MS, on a tick at most
        // ticker::MAX_SLEEP later
        DrainRule {
            max: Duration::from_millis(self.cfg.rr.timeout_ms) + Duration::from_millis(100),
            quiet: None,
        }
    }

    async fn finish(mut self) -> Result<Finished, LoadgenError> {
        let mut failed = None;
        // Lanes end on their own once past the stop with nothing in flight (or its timeout).
        while let Some(j) = self.lanes.join_next().await {
            if let Err(e) = j {
                failed.get_or_insert(format!("lane task: {e}"));
            }
        }
        // Then the links say DISCONNECT and end.
        self.link_stop.cancel();
        while let Some(j) = self.links.join_next().await {
            if let Err(e) = j {
                failed.get_or_insert(format!("link task: {e}"));
            }
        }
        while let Some(j) = self.poll.join_next().await {
            if let Err(e) = j {
                failed.get_or_insert(format!("worker poll task: {e}"));
            }
        }
        if let Some(e) = failed {
            return Err(LoadgenError::Internal(e));
        }
        let stop = self.stop_at.load(Relaxed);
        let measure_from = self.cfg.warmup().as_nanos() as u64;
        let duration_s = if self.epoch.is_none() || stop == u64::MAX {
            0.0
        } else {
            stop.saturating_sub(measure_from) as f64 / 1e9
        };
        let w = self.books.window.snapshot();
        let reconnects = self.statuses.iter().map(|s| s.reconnects()).sum();
        // what the profile offered over the window, per second (the schedule's rate when every
        // client is active)
        let profile = self.instrument.profile.get();
        let offered_rate = if duration_s > 0.0
            && !profile.always_at_least(f64::from(self.cfg.rr.virtual_clients))
        {
            profile.integral(measure_from, stop)
                / (self.cfg.rr.interval_ms * 1_000_000) as f64
                / duration_s
        } else {
            self.cfg.offered_rate()
        };
        Ok(Finished {
            duration_s,
            offered_rate,
            sent: w.sent,
            duplicates: w.duplicates,
            invalid: w.invalid,
            skipped: w.skipped,
            publish_errors: w.publish_errors,
            reconnects,
            latency: self.books.latency_window.snapshot(),
            schedule_lag: self.books.lag_window.snapshot(),
            books: ReportBooks::Requests(RequestBooks::new(
                w.sent,
                w.matched,
                w.timeouts,
                w.late,
                self.books.inflight.load(Relaxed),
            )),
        })
    }
}
