//! Fan-out scenario (`SCENARIO=fanout`), the WebSocket gateway case: `CLIENTS` direct WebSocket
//! subscribers, each with one MQTT session on its own subjects, and a publisher sending
//! `PUBLISH_RATE` stamped messages over `SUBJECTS`; end-to-end latency, loss by sequence gaps,
//! and connection churn are measured and reported. See docs/fanout.md.

mod books;
mod config;
mod limits;
mod payload;
mod publisher;
mod stats;
mod subscriber;

pub use config::Role;
pub use limits::OsLimits;

use crate::config::Config;
use crate::error::LoadgenError;
use crate::report::Report;
use books::{Rules, Subjects, UNSET};
use config::Plan;
use payload::{Clock, ClockKind};
use rr_common::link::{Link, SessionSpec};
use rr_common::transport::{self, Encoder};
use rr_common::CancellationToken;
use serde_json::Value;
use stats::{get, FanoutEndpoints, Live, Progress};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subscriber::{ClientEnd, SubscriberCtx};
use tokio::task::JoinHandle;

/// After the window the books stay open for messages still in flight: until every expected
/// delivery is accounted for (exact books), else until deliveries of the window stop arriving
/// for `DRAIN_QUIET`, at most `DRAIN_MAX`. What has not arrived by then counts as lost.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
const DRAIN_MAX: Duration = Duration::from_secs(10);

/// Runs the fan-out scenario until `DURATION_SEC` after warm-up, or until `shutdown`.
pub(crate) async fn run(
    cfg: &Config,
    shutdown: CancellationToken,
    on_bound: tokio::sync::oneshot::Sender<std::net::SocketAddr>,
) -> Result<Report, LoadgenError> {
    let plan = Arc::new(Plan::new(cfg));
    limits::check(&plan, &OsLimits::current())?;
    let role = plan.role;
    let clock = Clock::new(if role == Role::Both {
        ClockKind::Monotonic
    } else {
        ClockKind::Wall
    });
    let run_id = rand::random::<u32>() | 1;
    let live = Arc::new(Live::new(
        u64::from(plan.clients),
        u64::from(plan.subjects),
        role.name(),
    ));
    let subjects = Arc::new(Subjects::new(plan.subjects));

    // Everything this run spawns stops when it returns, error or not.
    let done = CancellationToken::new();
    let _stop_on_return = done.clone().drop_guard();
    let addr = cfg.http.socket();
    let bound = rr_common::http::serve(addr, Arc::new(FanoutEndpoints(live.clone())), done.clone())
        .await
        .map_err(|source| LoadgenError::Http { addr, source })?;
    tracing::info!("metrics on http://{bound}/metrics");
    let _ = on_bound.send(bound);
    spawn_progress(live.clone(), cfg.progress_sec, done.clone());

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

    // Publisher links first: an unreachable publish broker fails before any client connects.
    let mut link_tasks = tokio::task::JoinSet::new();
    let links: Vec<Arc<Link>> = match &plan.publish_broker {
        Some(url) => {
            live.set_phase("connect");
            let prefix = format!("{instance}-fopub-{run_id:08x}-");
            let spec = template(url);
            let n = plan.publish_connections;
            let r = tokio::select! {
                _ = shutdown.cancelled() => None,
                r = publisher::connect(&spec, &prefix, n, budget, &done, &mut link_tasks) => Some(r),
            };
            match r {
                None => Vec::new(),
                Some(r) => r.map_err(|source| LoadgenError::Publisher {
                    url: url.to_string(),
                    source,
                })?,
            }
        }
        None => Vec::new(),
    };

    let ctx = Arc::new(SubscriberCtx {
        plan: plan.clone(),
        templates: plan.gateways.iter().map(template).collect(),
        subject_prefix: cfg.fanout.subject_prefix.clone(),
        client_id_prefix: format!("{instance}-fo-"),
        live: live.clone(),
        subjects: subjects.clone(),
        rules: Rules::for_role(role, run_id),
        clock,
        keep_alive: Duration::from_secs(u64::from(cfg.connect.keep_alive_sec.max(1))),
    });
    let subs_stop = CancellationToken::new();
    let _stop_subs_on_return = subs_stop.clone().drop_guard();
    let rss_before = rr_common::cli::rss_bytes();
    let clients = ramp(&ctx, budget, &subs_stop, &shutdown).await?;
    let connected_after_ramp = live.connections();
    let rss_after = rr_common::cli::rss_bytes();
    live.ready.store(true, Ordering::Relaxed);

    // Warm-up and the measured window.
    let warmup = cfg.warmup();
    let duration = (cfg.duration_sec > 0).then(|| Duration::from_secs(cfg.duration_sec));
    // CPU of this process over the measured window: (wall, cpu seconds) at its start.
    let cpu_mark: Arc<std::sync::Mutex<Option<(Instant, f64)>>> = Arc::default();
    let mut cpu_cores = None;
    if !shutdown.is_cancelled() {
        live.set_phase("warmup");
        let phase = spawn_phase_marker(live.clone(), warmup, cpu_mark.clone(), done.clone());
        if role.publishes() {
            let sch = publisher::Schedule {
                plan: plan.clone(),
                live: live.clone(),
                subjects: subjects.clone(),
                clock,
                run: run_id,
                encoder: Encoder::new(
                    plan.publish_broker.as_ref().unwrap_or(&cfg.connect.broker),
                    &opts,
                ),
                prefix: cfg.fanout.subject_prefix.clone(),
                warmup,
                duration,
            };
            publisher::run_schedule(sch, links.clone(), shutdown.clone()).await;
        } else {
            subjects.set_window_times(Some(clock.now_ns() + warmup.as_nanos() as u64), None);
            match duration {
                Some(d) => tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(warmup + d) => {}
                },
                None => shutdown.cancelled().await,
            }
            let (t0, _) = subjects.window();
            subjects.set_window_times(None, Some(clock.now_ns().max(t0)));
        }
        phase.abort();
        let start = *cpu_mark.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((at, cpu0)), Some(cpu1)) = (start, stats::process_cpu_seconds()) {
            let wall = at.elapsed().as_secs_f64();
            if wall > 0.5 {
                cpu_cores = Some(((cpu1 - cpu0) / wall * 1000.0).round() / 1000.0);
            }
        }
    } else {
        subjects.set_window_times(Some(clock.now_ns()), Some(clock.now_ns()));
    }

    // Drain: messages of the window still in flight.
    live.set_phase("drain");
    if !clients.is_empty() {
        drain(&live.c, role == Role::Both).await;
    }
    let c = &live.c;
    let connected_at_end = live.connections();
    live.set_phase("stopping");
    subs_stop.cancel();
    let mut tail = 0u64;
    let mut clients_with_loss = 0u64;
    for h in clients {
        if let Ok(end) = h.await {
            let t: u64 = end.slots.iter().map(|s| ctx.rules.tail(s, &subjects)).sum();
            tail += t;
            clients_with_loss += u64::from(end.lost_window + t > 0);
        }
    }
    done.cancel();
    // the publisher links say goodbye after writing out what they hold
    while link_tasks.join_next().await.is_some() {}
    let link_reconnects: u64 = links.iter().map(|l| l.reconnects()).sum();
    live.set_phase("done");

    let (t0, t1) = subjects.window();
    let duration_s = if t0 == UNSET || t1 == UNSET {
        0.0
    } else {
        t1.saturating_sub(t0) as f64 / 1e9
    };
    let sent = get(&c.published_window);
    let received = get(&c.received_window);
    let lost = get(&c.lost_window) + tail;
    let expected = if role == Role::Both {
        get(&c.expected_window)
    } else {
        received + lost
    };
    if role == Role::Both && received + lost != expected {
        tracing::warn!("books do not close: expected {expected}, received {received}, lost {lost}");
    }
    let per_s = |n: u64| {
        if duration_s > 0.0 {
            n as f64 / duration_s
        } else {
            0.0
        }
    };
    let mut extra = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        extra.insert(k.to_string(), v);
    };
    put("role", Value::from(role.name()));
    put("clients", Value::from(plan.clients));
    put("subjects", Value::from(plan.subjects));
    put("received", Value::from(received));
    put("bytes_received", Value::from(get(&c.bytes_window)));
    put("lost", Value::from(lost));
    put("clients_with_loss", Value::from(clients_with_loss));
    put("expected", Value::from(expected));
    put("connections", Value::from(connected_at_end));
    put("connections_after_ramp", Value::from(connected_after_ramp));
    put("disconnects", Value::from(get(&c.disconnects)));
    put("connect_failures", Value::from(get(&c.connect_failures)));
    put("delivered_rate", Value::from(round1(per_s(received))));
    put(
        "bytes_per_s",
        Value::from(round1(per_s(get(&c.bytes_window)))),
    );
    put("rss_bytes_before_ramp", Value::from(rss_before));
    put("rss_bytes_after_ramp", Value::from(rss_after));
    put(
        "memory_per_connection_bytes",
        Value::from(rss_after.saturating_sub(rss_before) / connected_after_ramp.max(1)),
    );
    if let Some(c) = cpu_cores {
        put("cpu_cores_in_window", Value::from(c));
    }
    if role != Role::Both {
        put("clock", Value::from("wall"));
        put("clock_skewed", Value::from(get(&c.skewed)));
    }
    Ok(Report {
        scenario: "fanout".into(),
        instance_id: instance,
        config: cfg.describe(),
        duration_s: (duration_s * 1000.0).round() / 1000.0,
        offered_rate: if role.publishes() {
            plan.publish_rate
        } else {
            0.0
        },
        achieved_rate: round1(per_s(sent)),
        sent,
        matched: received,
        timeouts: lost,
        late: 0,
        duplicates: get(&c.duplicates),
        invalid: get(&c.invalid),
        skipped: get(&c.skipped_window),
        publish_errors: get(&c.publish_errors),
        reconnects: get(&c.reconnects) + link_reconnects,
        match_rate: if expected > 0 {
            (received as f64 / expected as f64).min(1.0)
        } else {
            0.0
        },
        latency_us: live.lat.window(),
        schedule_lag_us: live.lat.lag(),
        unresolved: expected.saturating_sub(received + lost),
        extra,
    })
}

async fn drain(c: &stats::Counters, exact: bool) {
    let end = Instant::now() + DRAIN_MAX;
    let mut last = get(&c.received_window);
    let mut last_change = Instant::now();
    while Instant::now() < end {
        let received = get(&c.received_window);
        if exact && received + get(&c.lost_window) >= get(&c.expected_window) {
            return;
        }
        if received != last {
            (last, last_change) = (received, Instant::now());
        } else if last_change.elapsed() >= DRAIN_QUIET {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Opens the subscriber connections at `CONNECT_RATE`. The first client of each gateway is
/// connected before the others (retrying for `budget`), so an unreachable gateway fails the run
/// at once. Returns when every client has subscribed once, or the ramp's deadline passed.
async fn ramp(
    ctx: &Arc<SubscriberCtx>,
    budget: Duration,
    stop: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<Vec<JoinHandle<ClientEnd>>, LoadgenError> {
    let plan = &ctx.plan;
    let live = &ctx.live;
    let mut handles = Vec::with_capacity(plan.clients as usize);
    if plan.clients == 0 {
        return Ok(handles);
    }
    live.set_phase("ramp");
    let probes = (plan.gateways.len() as u32).min(plan.clients);
    for idx in 0..probes {
        let spec = ctx.spec_for(idx);
        let r = tokio::select! {
            _ = shutdown.cancelled() => return Ok(handles),
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
            stop.clone(),
        )));
    }
    let start = tokio::time::Instant::now();
    let per = Duration::from_secs_f64(1.0 / f64::from(plan.connect_rate));
    for idx in probes..plan.clients {
        let at = start + per.mul_f64(f64::from(idx - probes));
        if at > tokio::time::Instant::now() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(handles),
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        handles.push(tokio::spawn(subscriber::run_client(
            ctx.clone(),
            idx,
            None,
            stop.clone(),
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
    Ok(handles)
}

/// Prints a progress line every `every_s` seconds on stderr until `done`.
fn spawn_progress(live: Arc<Live>, every_s: u64, done: CancellationToken) {
    if every_s == 0 {
        return;
    }
    tokio::spawn(async move {
        let started = Instant::now();
        let mut p = Progress::new(&live);
        let mut tick = tokio::time::interval(Duration::from_secs(every_s));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = done.cancelled() => return,
                _ = tick.tick() => {}
            }
            eprintln!("{}", p.line(&live, started.elapsed().as_secs()));
        }
    });
}

/// Switches the phase shown in progress lines from "warmup" to "measure" after `warmup`, and
/// notes the CPU time used so far.
fn spawn_phase_marker(
    live: Arc<Live>,
    warmup: Duration,
    cpu_mark: Arc<std::sync::Mutex<Option<(Instant, f64)>>>,
    done: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = done.cancelled() => {}
            _ = tokio::time::sleep(warmup) => {
                if let Some(cpu) = stats::process_cpu_seconds() {
                    *cpu_mark.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), cpu));
                }
                live.set_phase("measure");
            }
        }
    })
}
