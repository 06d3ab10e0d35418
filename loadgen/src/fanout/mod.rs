//! Fan-out scenario (`SCENARIO=fanout`), the WebSocket gateway case: `CLIENTS` direct WebSocket
//! subscribers, each with one MQTT session on its own subjects, and a publisher sending
//! `PUBLISH_RATE` stamped messages over `SUBJECTS`; end-to-end latency, loss by sequence gaps,
//! and connection churn are measured and reported. See docs/fanout.md.
//!
//! On the run harness: `connect` opens the publisher links, then ramps the subscribers at
//! `CONNECT_RATE`; at t = 0 the publisher starts its schedule (it opens and closes the measured
//! window itself, between two messages); the drain waits until every expected delivery is
//! received or known lost (exact books), or until deliveries stop arriving; `finish` joins every
//! subscriber and counts what never came as lost.

mod books;
mod config;
mod consumers;
mod endpoints;
mod export;
mod limits;
mod payload;
mod publisher;
mod stats;
mod subscriber;
pub mod timeline;
mod timeline_hook;

pub use config::Role;
pub use limits::OsLimits;

use crate::config::Config;
use crate::error::LoadgenError;
use crate::harness::{DrainRule, Finished, RunClock, RunState, Scenario, Stop};
use crate::report::{delivery_ratio, Books, DeliveryBooks};
use books::{Rules, Subjects, UNSET};
use config::Plan;
use endpoints::FanoutEndpoints;
use payload::{Clock, ClockKind};
use rr_common::link::{Link, SessionSpec};
use rr_common::transport::{self, Encoder};
use rr_common::CancellationToken;
use stats::{get, Live};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subscriber::{ClientEnd, SubscriberCtx};
use tokio::task::{JoinHandle, JoinSet};

/// After the window the books stay open for messages still in flight: until every expected
/// delivery is accounted for (exact books), else until deliveries of the window stop arriving
/// for `DRAIN_QUIET`, at most `DRAIN_MAX`. What has not arrived by then counts as lost.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// The fan-out scenario.
pub(crate) struct Fanout {
    cfg: Config,
    plan: Arc<Plan>,
    live: Arc<Live>,
    endpoints: Arc<FanoutEndpoints>,
    subjects: Arc<Subjects>,
    clock: Clock,
    run_id: u32,
    /// Publisher links (their tasks, in `link_tasks`, stop with `links_stop`).
    links: Vec<Arc<Link>>,
    link_tasks: JoinSet<()>,
    links_stop: CancellationToken,
    ctx: Option<Arc<SubscriberCtx>>,
    clients: Vec<JoinHandle<ClientEnd>>,
    subs_stop: CancellationToken,
    /// The publisher's schedule, and the token that ends it early.
    publisher: Option<JoinHandle<()>>,
    publish_end: CancellationToken,
    /// `KILL_CLIENT_AT`: the stop token of that subscriber alone.
    kill: Option<CancellationToken>,
    rss_before: u64,
    rss_after: u64,
    connected_after_ramp: u64,
    /// CPU seconds of this process when the window opened.
    cpu_mark: Arc<Mutex<Option<(Instant, f64)>>>,
    cpu_task: Option<JoinHandle<()>>,
    cpu_cores: Option<f64>,
    started: bool,
}

impl Fanout {
    /// The plan, checked against the OS limits (a plan that cannot fit fails here, exit 2).
    pub(crate) fn new(cfg: &Config, run: Arc<RunState>) -> Result<Fanout, LoadgenError> {
        let plan = Arc::new(Plan::new(cfg));
        limits::check(&plan, &OsLimits::current())?;
        let live = Arc::new(Live::with_consumers(
            u64::from(plan.clients),
            u64::from(plan.subjects),
            plan.role.name(),
            consumers::Consumers::new(
                if plan.kafka_consumers {
                    plan.clients
                } else {
                    0
                },
                plan.failing_after,
            ),
        ));
        let clock = Clock::new(if plan.role == Role::Both {
            ClockKind::Monotonic
        } else {
            ClockKind::Wall
        });
        Ok(Fanout {
            cfg: cfg.clone(),
            endpoints: Arc::new(FanoutEndpoints::new(
                live.clone(),
                run,
                cfg.offered_rate(),
                cfg.duration(),
            )),
            live,
            subjects: Arc::new(Subjects::new(plan.subjects)),
            plan,
            clock,
            run_id: rand::random::<u32>() | 1,
            links: Vec::new(),
            link_tasks: JoinSet::new(),
            links_stop: CancellationToken::new(),
            ctx: None,
            clients: Vec::new(),
            subs_stop: CancellationToken::new(),
            publisher: None,
            publish_end: CancellationToken::new(),
            kill: None,
            rss_before: 0,
            rss_after: 0,
            connected_after_ramp: 0,
            cpu_mark: Arc::default(),
            cpu_task: None,
            cpu_cores: None,
            started: false,
        })
    }
}

impl Fanout {
    /// The hook that keeps the per-second timeline (`TIMELINE_CSV`: its CSV too).
    pub(crate) fn timeline_hook(
        &self,
        csv: Option<std::path::PathBuf>,
    ) -> timeline_hook::TimelineHook {
        timeline_hook::TimelineHook::new(self.live.clone(), self.cfg.warmup_sec, csv)
    }
}

impl Scenario for Fanout {
    type Live = FanoutEndpoints;

    fn live(&self) -> Arc<FanoutEndpoints> {
        self.endpoints.clone()
    }

    async fn connect(&mut self, shutdown: &CancellationToken) -> Result<(), LoadgenError> {
        let cfg = &self.cfg;
        let plan = self.plan.clone();
        let opts = Arc::new(cfg.connect.clone());
        let needs_tls = plan
            .gateways
            .iter()
            .chain(plan.publish_broker.iter())
            .any(|u| u.scheme.is_tls());
        let tls = if needs_tls {
            Some(rr_common::net::tls_config(&opts).map_err(|e| LoadgenError::Tls(e.to_string()))?)
        } else {
            None
        };
        let template = |url: &rr_common::broker::BrokerUrl| SessionSpec {
            url: url.clone(),
            opts: opts.clone(),
            client_id: String::new(),
            subscriptions: Vec::new(),
            bind: None,
            tls: tls.clone(),
        };
        let instance = cfg.instance_id();
        let budget = Duration::from_millis(cfg.connect.connect_retry_ms);
        let role = plan.role;
        if role.publishes() {
            let per_s = if role.subscribes() {
                format!(
                    ", {:.1} expected deliveries/s ({} clients x {} subjects each over {} subjects)",
                    plan.publish_rate * f64::from(plan.clients) * f64::from(plan.per_client)
                        / f64::from(plan.subjects),
                    plan.clients,
                    plan.per_client,
                    plan.subjects
                )
            } else {
                String::new()
            };
            eprintln!(
                "loadgen {instance} fanout ({}): publishing {:.1} msg/s over {} subjects{per_s}",
                role.name(),
                plan.publish_rate,
                plan.subjects
            );
        }

        // Kafka: the subject topics, made where the cluster lacks them, on the publisher's
        // cluster and the consumers' (FANOUT_ROLE=subscribe starts before any publisher); exit 3
        // if a cluster never answers.
        let kafka = plan
            .publish_broker
            .iter()
            .map(|u| (u, true))
            .chain(plan.gateways.first().map(|u| (u, false)))
            .filter(|(u, _)| u.scheme.is_kafka());
        for (url, publisher) in kafka {
            let topics = plan.kafka_topics(&cfg.fanout.subject_prefix);
            let r = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = transport::prepare(url, &opts, &topics) => r,
            };
            r.map_err(|source| {
                let url = url.to_string();
                if publisher {
                    LoadgenError::Publisher { url, source }
                } else {
                    LoadgenError::Gateway { url, source }
                }
            })?;
        }

        // Publisher links first: an unreachable publish broker fails before any client connects.
        if let Some(url) = &plan.publish_broker {
            let prefix = format!("{instance}-fopub-{:08x}-", self.run_id);
            let mut spec = template(url);
            if url.scheme.is_kafka() {
                // per-subject sequences must stay in order: an idempotent producer neither
                // duplicates nor reorders a batch it retries (KAFKA_CONFIG, applied after, may
                // say otherwise)
                let mut o = (*opts).clone();
                o.kafka_config = format!("enable.idempotence=true,{}", o.kafka_config);
                spec.opts = Arc::new(o);
            }
            let r = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                r = publisher::connect(
                    &spec,
                    &prefix,
                    plan.publish_connections,
                    budget,
                    &self.links_stop,
                    &mut self.link_tasks,
                ) => r,
            };
            self.links = r.map_err(|source| LoadgenError::Publisher {
                url: url.to_string(),
                source,
            })?;
        }

        let ctx = Arc::new(SubscriberCtx {
            plan: plan.clone(),
            templates: plan.gateways.iter().map(template).collect(),
            subject_prefix: cfg.fanout.subject_prefix.clone(),
            // (a Kafka consumer's id names its own group: new every run)
            client_id_prefix: if plan.kafka_consumers {
                format!("{instance}-fo-{:08x}-", self.run_id)
            } else {
                format!("{instance}-fo-")
            },
            live: self.live.clone(),
            subjects: self.subjects.clone(),
            rules: Rules::for_role(role, self.run_id),
            clock: self.clock,
            keep_alive: Duration::from_secs(u64::from(cfg.connect.keep_alive_sec.max(1))),
            group: plan
                .consumer_group
                .as_ref()
                .filter(|_| plan.kafka_consumers)
                .map(|_| {
                    std::sync::Mutex::new(ClientEnd {
                        slots: (0..plan.subjects).map(books::Slot::new).collect(),
                        lost_window: 0,
                        joined: false,
                    })
                }),
        });
        self.ctx = Some(ctx.clone());
        self.rss_before = rr_common::cli::rss_bytes();
        if plan.kill.is_some() {
            self.kill = Some(self.subs_stop.child_token());
        }
        let stops = Stops {
            all: &self.subs_stop,
            kill: plan.kill.map(|(i, _)| i).zip(self.kill.clone()),
        };
        ramp(&ctx, budget, &stops, shutdown, &mut self.clients).await?;
        self.connected_after_ramp = self.live.connections();
        self.rss_after = rr_common::cli::rss_bytes();
        Ok(())
    }

    fn start(&mut self, clock: RunClock) {
        self.started = true;
        let mark = self.cpu_mark.clone();
        let warmup = clock.warmup;
        // t = 0 on the payload clock: the timeline's seconds, and the window opens at a whole
        // second of them (WARMUP_SEC)
        let epoch_ns = self.clock.ns_at(clock.epoch);
        self.live.seconds.set_epoch(epoch_ns, warmup.as_secs());
        if let (Some((idx, sec)), Some(kill)) = (self.plan.kill, self.kill.clone()) {
            let at = clock.epoch + Duration::from_secs(sec);
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                eprintln!("KILL_CLIENT_AT: subscriber {idx} stops now");
                kill.cancel();
            });
        }
        self.cpu_task = Some(tokio::spawn(async move {
            tokio::time::sleep_until((clock.epoch + warmup).into()).await;
            if let Some(cpu) = stats::process_cpu_seconds() {
                *mark.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), cpu));
            }
        }));
        if self.plan.role.publishes() {
            let sch = publisher::Schedule {
                plan: self.plan.clone(),
                live: self.live.clone(),
                subjects: self.subjects.clone(),
                clock: self.clock,
                run: self.run_id,
                encoder: Encoder::fanout(
                    self.plan
                        .publish_broker
                        .as_ref()
                        .unwrap_or(&self.cfg.connect.broker),
                    &self.cfg.connect,
                    &self.plan.subject_topics,
                ),
                prefix: self.cfg.fanout.subject_prefix.clone(),
                epoch: clock.epoch,
                warmup,
                duration: clock.duration,
            };
            self.publisher = Some(tokio::spawn(publisher::run_schedule(
                sch,
                self.links.clone(),
                self.publish_end.clone(),
            )));
        } else {
            self.subjects
                .set_window_times(Some(epoch_ns + warmup.as_nanos() as u64), None);
        }
    }

    async fn stop(&mut self, how: Stop) {
        if let Some(t) = self.cpu_task.take() {
            t.abort();
        }
        match self.publisher.take() {
            Some(p) => {
                // At the planned end the publisher closes the window itself, between two
                // messages; otherwise it closes it now.
                if how == Stop::Now {
                    self.publish_end.cancel();
                }
                let _ = p.await;
            }
            None if self.started => {
                let (t0, _) = self.subjects.window();
                let now = self.clock.now_ns();
                self.subjects
                    .set_window_times(None, Some(if t0 == UNSET { now } else { now.max(t0) }));
            }
            None => {
                let now = self.clock.now_ns();
                self.subjects.set_window_times(Some(now), Some(now));
            }
        }
        let start = *self.cpu_mark.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((at, cpu0)), Some(cpu1)) = (start, stats::process_cpu_seconds()) {
            let wall = at.elapsed().as_secs_f64();
            if wall > 0.5 {
                self.cpu_cores = Some(((cpu1 - cpu0) / wall * 1000.0).round() / 1000.0);
            }
        }
    }

    fn drain_rule(&self) -> DrainRule {
        DrainRule {
            max: if self.clients.is_empty() {
                Duration::ZERO
            } else {
                DRAIN_MAX
            },
            quiet: Some(DRAIN_QUIET),
        }
    }

    async fn finish(mut self) -> Result<Finished, LoadgenError> {
        let c = &self.live.c;
        let connected_at_end = self.live.connections();
        self.live.consumers.freeze();
        self.subs_stop.cancel();
        let mut tail = 0u64;
        let mut clients_with_loss = 0u64;
        let mut failed = None;
        for h in self.clients {
            match h.await {
                Ok(end) => {
                    let t: u64 = match &self.ctx {
                        Some(ctx) => end
                            .slots
                            .iter()
                            .map(|s| ctx.rules.tail(s, &self.subjects))
                            .sum(),
                        None => 0,
                    };
                    tail += t;
                    clients_with_loss += u64::from(end.lost_window + t > 0);
                }
                Err(e) => {
                    failed.get_or_insert(format!("subscriber task: {e}"));
                }
            }
        }
        if let Some(g) = self.ctx.as_ref().and_then(|c| c.group.as_ref()) {
            // CONSUMER_GROUP: one book for the group
            let end = g.lock().unwrap_or_else(|e| e.into_inner());
            let rules = self.ctx.as_ref().map(|c| c.rules);
            let t: u64 = rules.map_or(0, |r| {
                end.slots.iter().map(|s| r.tail(s, &self.subjects)).sum()
            });
            tail += t;
            clients_with_loss += u64::from(end.lost_window + t > 0);
        }
        // the publisher links say goodbye after writing out what they hold
        self.links_stop.cancel();
        while let Some(j) = self.link_tasks.join_next().await {
            if let Err(e) = j {
                failed.get_or_insert(format!("publisher link task: {e}"));
            }
        }
        if let Some(e) = failed {
            return Err(LoadgenError::Internal(e));
        }
        let link_reconnects: u64 = self.links.iter().map(|l| l.reconnects()).sum();
        let (t0, t1) = self.subjects.window();
        let duration_s = if t0 == UNSET || t1 == UNSET {
            0.0
        } else {
            t1.saturating_sub(t0) as f64 / 1e9
        };
        let duration_s = (duration_s * 1000.0).round() / 1000.0;
        if tail > 0 && t1 != UNSET && t1 > t0 {
            // the tail in the timeline: in the window's last second
            let sec = self.live.seconds.of(t1 - 1).unwrap_or(0);
            let last = sec.max(self.live.seconds.first_window());
            let c = timeline::Counts {
                lost: tail,
                ..timeline::Counts::default()
            };
            self.live.lat.count_at(last, &c);
        }
        let sent = get(&c.published_window);
        let received = get(&c.received_window);
        let lost = get(&c.lost_window) + tail;
        let exact = self.plan.role == Role::Both;
        let expected = if exact {
            get(&c.expected_window)
        } else {
            received + lost
        };
        if exact && received + lost != expected {
            tracing::warn!(
                "books do not close: expected {expected}, received {received}, lost {lost}"
            );
        }
        let per_s = |n: u64| {
            if duration_s > 0.0 {
                round1(n as f64 / duration_s)
            } else {
                0.0
            }
        };
        let plan = &self.plan;
        let (latency, schedule_lag) = self.live.lat.window_histograms();
        let books = DeliveryBooks {
            role: plan.role.name().into(),
            clients: u64::from(plan.clients),
            subjects: u64::from(plan.subjects),
            expected,
            received,
            bytes_received: get(&c.bytes_window),
            lost,
            clients_with_loss,
            delivery_ratio: delivery_ratio(received, expected),
            unresolved: expected.saturating_sub(received + lost),
            connections: connected_at_end,
            connections_after_ramp: self.connected_after_ramp,
            disconnects: get(&c.disconnects),
            connect_failures: get(&c.connect_failures),
            delivered_rate: per_s(received),
            bytes_per_s: per_s(get(&c.bytes_window)),
            rss_bytes_before_ramp: self.rss_before,
            rss_bytes_after_ramp: self.rss_after,
            memory_per_connection_bytes: self.rss_after.saturating_sub(self.rss_before)
                / self.connected_after_ramp.max(1),
            cpu_cores_in_window: self.cpu_cores,
            clock: (!exact).then(|| "wall".into()),
            clock_skewed: (!exact).then(|| get(&c.skewed)),
            kafka_consumers: self.live.kafka_books(),
        };
        Ok(Finished {
            duration_s,
            offered_rate: self.cfg.offered_rate(),
            sent,
            duplicates: get(&c.duplicates),
            invalid: get(&c.invalid),
            skipped: get(&c.skipped_window),
            publish_errors: get(&c.publish_errors),
            reconnects: get(&c.reconnects) + link_reconnects,
            latency,
            schedule_lag,
            books: Books::Deliveries(books),
        })
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The subscribers' stop tokens: all of them, and `KILL_CLIENT_AT`'s subscriber's own.
struct Stops<'a> {
    all: &'a CancellationToken,
    kill: Option<(u32, CancellationToken)>,
}

impl Stops<'_> {
    fn of(&self, idx: u32) -> CancellationToken {
        match &self.kill {
            Some((i, t)) if *i == idx => t.clone(),
            _ => self.all.clone(),
        }
    }
}

/// Opens the subscriber connections at `CONNECT_RATE`. The first client of each gateway is
/// connected before the others (retrying for `budget`), so an unreachable gateway fails the run
/// at once. Returns when every client has subscribed once, or the ramp's deadline passed.
async fn ramp(
    ctx: &Arc<SubscriberCtx>,
    budget: Duration,
    stop: &Stops<'_>,
    shutdown: &CancellationToken,
    handles: &mut Vec<JoinHandle<ClientEnd>>,
) -> Result<(), LoadgenError> {
    let plan = &ctx.plan;
    let live = &ctx.live;
    handles.reserve(plan.clients as usize);
    if plan.clients == 0 {
        return Ok(());
    }
    let probes = (plan.gateways.len() as u32).min(plan.clients);
    for idx in 0..probes {
        let spec = ctx.spec_for(idx);
        let r = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = transport::establish_with_retry(&spec, budget) => r,
        };
        let session = r.map_err(|source| LoadgenError::Gateway {
            url: spec.url.to_string(),
            source,
        })?;
        handles.push(tokio::spawn(subscriber::run_client(
            ctx.clone(),
            idx,
            Some(session),
            stop.of(idx),
        )));
    }
    let start = tokio::time::Instant::now();
    let per = Duration::from_secs_f64(1.0 / f64::from(plan.connect_rate));
    for idx in probes..plan.clients {
        let at = start + per.mul_f64(f64::from(idx - probes));
        if at > tokio::time::Instant::now() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        handles.push(tokio::spawn(subscriber::run_client(
            ctx.clone(),
            idx,
            None,
            stop.of(idx),
        )));
    }
    // Wait for the stragglers: a few connect timeouts past the last spawn.
    let deadline = tokio::time::Instant::now()
        + ctx.templates[0].opts.connect_timeout() * 3
        + Duration::from_secs(2);
    while get(&live.c.joined) < u64::from(plan.clients) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "{} of {} clients subscribed by the end of the ramp; continuing (failures: {})",
                get(&live.c.joined),
                plan.clients,
                get(&live.c.connect_failures)
            );
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    Ok(())
}
