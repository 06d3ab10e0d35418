//! One fan-out subscriber: a direct WebSocket connection with one MQTT session, run by the
//! connection driver in its lean mode (no outlet, no write buffer, a read buffer only while bytes
//! are pending) so a process holds hundreds of thousands. The driver reconnects with backoff and
//! resubscribes; the books this handler keeps per subject reveal what it missed meanwhile.

use super::books::{Rules, Slot, Subjects, Verdict};
use super::config::Plan;
use super::payload::{Clock, Stamp};
use super::stats::{add, Live};
use futures_util::FutureExt;
use rr_common::kafka::link::consume_filter;
use rr_common::link::{ConsumerProgress, Handler, Invalid, LinkEvent, Message, SessionSpec};
use rr_common::transport::{self, Session};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What every subscriber task shares.
pub struct SubscriberCtx {
    pub plan: Arc<Plan>,
    /// Per gateway: URL, options and TLS config; client id, subscriptions and bind are set
    /// per connection attempt.
    pub templates: Vec<SessionSpec>,
    pub subject_prefix: String,
    pub client_id_prefix: String,
    pub live: Arc<Live>,
    pub subjects: Arc<Subjects>,
    pub rules: Rules,
    pub clock: Clock,
    pub keep_alive: Duration,
    /// `CONSUMER_GROUP`: the group's books, shared by its consumers (each message is expected
    /// once per group, whichever member the group gives its partition to).
    pub group: Option<std::sync::Mutex<ClientEnd>>,
}

impl SubscriberCtx {
    /// The session spec of client `idx` (its gateway, source address and subjects), built per
    /// connection attempt so an idle client keeps none.
    pub fn spec_for(&self, idx: u32) -> SessionSpec {
        let mut spec = self.templates[self.plan.gateway_of(idx)].clone();
        spec.client_id = format!("{}{idx}", self.client_id_prefix);
        let names = self
            .plan
            .subjects_of(idx)
            .into_iter()
            .map(|s| format!("{}{s}", self.subject_prefix));
        spec.subscriptions = if self.plan.kafka_consumers {
            // the topics of its subjects, in its own group (or CONSUMER_GROUP)
            let group = self.plan.consumer_group.as_ref().unwrap_or(&spec.client_id);
            let names: Vec<String> = names.collect();
            self.plan
                .subject_topics
                .topics(names.iter().map(String::as_str))
                .into_iter()
                .map(|t| (consume_filter(group, &t), 0))
                .collect()
        } else {
            names.map(|n| (n, 0)).collect()
        };
        spec.bind = self.plan.source_of(idx);
        spec
    }

    pub fn slots_for(&self, idx: u32) -> Box<[Slot]> {
        self.plan
            .subjects_of(idx)
            .into_iter()
            .map(Slot::new)
            .collect()
    }
}

/// A client's books when it stops.
pub struct ClientEnd {
    pub slots: Box<[Slot]>,
    /// Losses counted in the measured window (gaps; the tail is added by the caller).
    pub lost_window: u64,
    pub joined: bool,
}

/// The handler of one subscriber: accounts every message in its books and the shared counters.
struct Client {
    ctx: Arc<SubscriberCtx>,
    idx: u32,
    end: ClientEnd,
}

impl Handler for Client {
    fn on_message(&mut self, m: &Message<'_>, now: Instant) {
        self.ctx.live.consumers.progressed(self.idx, now);
        match Stamp::decode(m.payload) {
            Ok(stamp) => {
                let now_ns = self.ctx.clock.ns_at(now);
                let len = m.wire_len as u64;
                let ctx = &*self.ctx;
                match &ctx.group {
                    Some(g) => {
                        let mut end = g.lock().unwrap_or_else(|e| e.into_inner());
                        account(ctx, &mut end, &stamp, len, now_ns, self.idx as usize);
                    }
                    None => account(ctx, &mut self.end, &stamp, len, now_ns, self.idx as usize),
                }
            }
            Err(_) => add(&self.ctx.live.c.invalid, 1),
        }
    }

    fn on_invalid(&mut self, _kind: Invalid) {
        add(&self.ctx.live.c.invalid, 1);
    }

    fn on_consumer(&mut self, p: ConsumerProgress) {
        self.ctx.live.consumers.progress(self.idx, p);
    }

    fn on_link(&mut self, e: LinkEvent) {
        let (c, end) = (&self.ctx.live.c, &mut self.end);
        if let LinkEvent::Up | LinkEvent::Down { .. } = e {
            let up = matches!(e, LinkEvent::Up);
            self.ctx.live.consumers.link(self.idx, up, Instant::now());
        }
        match e {
            LinkEvent::Up => {
                if end.joined {
                    add(&c.reconnects, 1);
                } else {
                    end.joined = true;
                    let mut group = self
                        .ctx
                        .group
                        .as_ref()
                        .map(|g| g.lock().unwrap_or_else(|e| e.into_inner()));
                    // the group's books join once, with its first member
                    let books = match group.as_deref_mut() {
                        Some(g) if g.joined => None,
                        Some(g) => {
                            g.joined = true;
                            Some(g)
                        }
                        None => Some(end),
                    };
                    if let (Some(b), Some(_)) = (books, self.ctx.rules.exact_run) {
                        for slot in b.slots.iter_mut() {
                            Rules::joined(slot, self.ctx.subjects.join(slot.subject));
                        }
                    }
                    add(&c.joined, 1);
                }
                c.connections.fetch_add(1, Ordering::Relaxed);
            }
            LinkEvent::Down { lost } => {
                c.connections.fetch_sub(1, Ordering::Relaxed);
                if lost {
                    add(&c.disconnects, 1);
                }
            }
            LinkEvent::ConnectFailed => add(&c.connect_failures, 1),
        }
    }
}

/// Runs client `idx` until `stop`: connects (or starts from `first`), then reads and accounts
/// every message, pings, and reconnects after a loss.
pub fn run_client(
    ctx: Arc<SubscriberCtx>,
    idx: u32,
    first: Option<Session>,
    stop: CancellationToken,
) -> impl Future<Output = ClientEnd> + Send {
    let keep_alive = ctx.keep_alive;
    let client = Client {
        end: ClientEnd {
            // (a group member keeps no books of its own)
            slots: if ctx.group.is_some() {
                Box::default()
            } else {
                ctx.slots_for(idx)
            },
            lost_window: 0,
            joined: false,
        },
        ctx: ctx.clone(),
        idx,
    };
    let connect = move || ctx.spec_for(idx);
    transport::drive_lean(connect, first, client, keep_alive, stop).map(|c| c.end)
}

fn account(
    ctx: &SubscriberCtx,
    end: &mut ClientEnd,
    m: &Stamp,
    len: u64,
    now_ns: u64,
    shard: usize,
) {
    let c = &ctx.live.c;
    match ctx.rules.on_message(&mut end.slots, m, &ctx.subjects) {
        Verdict::Delivered {
            in_window,
            lost,
            lost_in_window,
        } => {
            add(&c.received, 1);
            add(&c.bytes, len);
            if in_window {
                add(&c.received_window, 1);
                add(&c.bytes_window, len);
            }
            if lost > 0 {
                add(&c.lost, lost);
            }
            if lost_in_window > 0 {
                add(&c.lost_window, lost_in_window);
                end.lost_window += lost_in_window;
            }
            let us = match now_ns.checked_sub(m.ts_ns) {
                Some(d) => d / 1000,
                None => {
                    add(&c.skewed, 1);
                    0
                }
            };
            // the timeline: this delivery in the second its message was published, a loss in
            // the second of the message that revealed it (a window loss in a window second)
            let live = &ctx.live;
            let sec = live
                .seconds
                .of(m.ts_ns)
                .filter(|_| ctx.subjects.before_end(m.ts_ns));
            live.lat.record(shard, us, in_window, |secs| {
                if let Some(s) = sec {
                    let row = secs.at(s);
                    row.received += 1;
                    row.bytes += len;
                    if !in_window {
                        row.lost += lost - lost_in_window;
                    }
                }
                if lost_in_window > 0 {
                    let s = sec.filter(|_| in_window);
                    secs.at(s.unwrap_or_else(|| live.seconds.first_window()))
                        .lost += lost_in_window;
                }
            });
        }
        Verdict::Duplicate => add(&c.duplicates, 1),
        Verdict::Early => {}
        Verdict::Foreign => add(&c.invalid, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::fanout::config::Role;
    use crate::fanout::payload::ClockKind;
    use clap::Parser;

    #[test]
    fn an_idle_client_task_is_small() {
        let cfg = Config::try_parse_from([
            "loadgen",
            "--scenario=fanout",
            "--gateway-urls=ws://127.0.0.1:1/mqtt",
        ])
        .expect("parse");
        let plan = Arc::new(Plan::new(&cfg));
        let ctx = Arc::new(SubscriberCtx {
            templates: plan
                .gateways
                .iter()
                .map(|u| SessionSpec {
                    url: u.clone(),
                    opts: Arc::new(cfg.connect.clone()),
                    client_id: String::new(),
                    subscriptions: Vec::new(),
                    bind: None,
                    tls: None,
                })
                .collect(),
            plan,
            subject_prefix: "u/s".into(),
            client_id_prefix: "t-".into(),
            live: Arc::new(Live::new(1, 1, "both")),
            subjects: Arc::new(Subjects::new(10)),
            rules: Rules::for_role(Role::Both, 1),
            clock: Clock::new(ClockKind::Monotonic),
            keep_alive: Duration::from_secs(30),
            group: None,
        });
        let fut = run_client(ctx, 0, None, CancellationToken::new());
        let size = std::mem::size_of_val(&fut);
        eprintln!("client task future: {size} bytes");
        assert!(size <= 1280, "client task future grew to {size} bytes");
    }
}
