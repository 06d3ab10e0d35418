//! One fan-out subscriber: a direct WebSocket connection with one MQTT session, kept lean (no
//! channel, no write buffer, a read buffer only while bytes are pending) so a process holds
//! hundreds of thousands. It reconnects with backoff and resubscribes; the books it keeps per
//! subject reveal what it missed meanwhile.

use super::books::{Rules, Slot, Subjects, Verdict};
use super::config::Plan;
use super::payload::{Clock, Stamp};
use super::stats::{add, Live};
use bytes::{Bytes, BytesMut};
use rr_common::codec::{self, Protocol};
use rr_common::mqtt::{self, Session, SessionError, SessionSpec, MAX_PACKET};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PINGREQ: &[u8] = &[0xC0, 0x00];
const DISCONNECT: &[u8] = &[0xE0, 0x00];
/// A read buffer larger than this is released once it has been drained.
const KEEP_BUF: usize = 2048;

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
}

impl SubscriberCtx {
    /// The session spec of client `idx` (its gateway, source address and subjects).
    pub fn spec_for(&self, idx: u32, slots: &[Slot]) -> SessionSpec {
        let mut spec = self.templates[self.plan.gateway_of(idx)].clone();
        spec.client_id = format!("{}{idx}", self.client_id_prefix);
        spec.subscriptions = slots
            .iter()
            .map(|s| (format!("{}{}", self.subject_prefix, s.subject), 0))
            .collect();
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

/// Opens the session of client `idx` (connect, CONNACK, SUBSCRIBE, SUBACK).
pub async fn establish(
    ctx: &SubscriberCtx,
    idx: u32,
    slots: &[Slot],
) -> Result<Session, SessionError> {
    let spec = ctx.spec_for(idx, slots);
    // Boxed: the handshake's state is large and needed only while connecting, so it must not
    // be part of every idle task.
    Box::pin(mqtt::establish(&spec)).await
}

enum Ended {
    Shutdown,
    Lost(String),
}

/// Runs client `idx` until `stop`: connects (or starts from `first`), then reads and accounts
/// every message, pings, and reconnects after a loss.
pub async fn run_client(
    ctx: Arc<SubscriberCtx>,
    idx: u32,
    first: Option<Session>,
    stop: CancellationToken,
) -> ClientEnd {
    let mut end = ClientEnd {
        slots: ctx.slots_for(idx),
        lost_window: 0,
        joined: false,
    };
    let mut session = first;
    let mut attempt = 0u32;
    loop {
        let s = match session.take() {
            Some(s) => s,
            None => {
                if attempt > 0 || end.joined {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(mqtt::backoff(attempt)) => {}
                    }
                }
                let r = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = establish(&ctx, idx, &end.slots) => r,
                };
                match r {
                    Ok(s) => s,
                    Err(e) => {
                        attempt = attempt.saturating_add(1);
                        add(&ctx.live.c.connect_failures, 1);
                        tracing::debug!(client = idx, "connect failed: {e}");
                        continue;
                    }
                }
            }
        };
        attempt = 0;
        if end.joined {
            add(&ctx.live.c.reconnects, 1);
        } else {
            end.joined = true;
            if ctx.rules.exact_run.is_some() {
                for slot in end.slots.iter_mut() {
                    Rules::joined(slot, ctx.subjects.join(slot.subject));
                }
            }
            add(&ctx.live.c.joined, 1);
        }
        ctx.live.c.connections.fetch_add(1, Ordering::Relaxed);
        let ended = serve(&ctx, idx, s, &mut end, &stop).await;
        ctx.live.c.connections.fetch_sub(1, Ordering::Relaxed);
        match ended {
            Ended::Shutdown => break,
            Ended::Lost(why) => {
                add(&ctx.live.c.disconnects, 1);
                tracing::debug!(client = idx, "connection lost: {why}; reconnecting");
            }
        }
    }
    end
}

async fn serve(
    ctx: &SubscriberCtx,
    idx: u32,
    s: Session,
    end: &mut ClientEnd,
    stop: &CancellationToken,
) -> Ended {
    let Session {
        mut reader,
        mut writer,
        pending,
        protocol,
        ..
    } = s;
    let mut buf = if pending.is_empty() {
        BytesMut::new()
    } else {
        BytesMut::from(&pending[..])
    };
    drop(pending);
    let mut acks = BytesMut::new();
    let shard = idx as usize;
    if let Err(e) = dispatch(ctx, end, &mut buf, protocol, shard, &mut acks) {
        return Ended::Lost(e);
    }
    // Pings at half the keep-alive, the first one at a random phase so clients spread out.
    let every = ctx.keep_alive / 2;
    let first = every.mul_f64(rand::random_range(0.5..1.0));
    let ping = tokio::time::sleep(first);
    tokio::pin!(ping);
    let mut last_rx = Instant::now();
    loop {
        // Rare writes are boxed so their state is not part of every idle task.
        if !acks.is_empty() {
            if let Err(e) = Box::pin(writer.write_all(acks.split().freeze())).await {
                return Ended::Lost(e.to_string());
            }
            acks = BytesMut::new();
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => {
                let bye = async {
                    let _ = writer.write_all(Bytes::from_static(DISCONNECT)).await;
                    writer.shutdown().await;
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), Box::pin(bye)).await;
                return Ended::Shutdown;
            }
            r = reader.read_into(&mut buf) => match r {
                Ok(0) => return Ended::Lost("closed by the gateway".into()),
                Ok(_) => {
                    last_rx = Instant::now();
                    if let Err(e) = dispatch(ctx, end, &mut buf, protocol, shard, &mut acks) {
                        return Ended::Lost(e);
                    }
                    if buf.is_empty() && buf.capacity() > KEEP_BUF {
                        buf = BytesMut::new();
                    }
                }
                Err(e) => return Ended::Lost(e.to_string()),
            },
            _ = &mut ping => {
                if last_rx.elapsed() > ctx.keep_alive * 2 {
                    return Ended::Lost("nothing from the gateway within 2x keep-alive".into());
                }
                if let Err(e) = Box::pin(writer.write_all(Bytes::from_static(PINGREQ))).await {
                    return Ended::Lost(e.to_string());
                }
                ping.as_mut().reset(tokio::time::Instant::now() + every);
            }
        }
    }
}

/// Accounts every complete frame in `buf`; an error means the stream is unusable.
fn dispatch(
    ctx: &SubscriberCtx,
    end: &mut ClientEnd,
    buf: &mut BytesMut,
    proto: Protocol,
    shard: usize,
    acks: &mut BytesMut,
) -> Result<(), String> {
    let c = &ctx.live.c;
    let mut consumed = 0;
    let mut now_ns = None;
    let result = loop {
        let rest = &buf[consumed..];
        let f = match codec::next_frame(rest, MAX_PACKET) {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(format!("unreadable frame: {e}")),
        };
        let frame = &rest[..f.total_len];
        consumed += f.total_len;
        match f.packet_type() {
            3 => {
                let Ok(p) = codec::decode_publish(frame, f, proto) else {
                    add(&c.invalid, 1);
                    continue;
                };
                if p.qos == 1 {
                    mqtt::encode_puback(acks, p.pkid);
                }
                let Ok(stamp) = Stamp::decode(p.payload) else {
                    add(&c.invalid, 1);
                    continue;
                };
                let now = *now_ns.get_or_insert_with(|| ctx.clock.now_ns());
                account(ctx, end, &stamp, frame.len() as u64, now, shard);
            }
            9 | 11 | 13 => {} // SUBACK, UNSUBACK, PINGRESP
            14 => break Err("gateway sent DISCONNECT".into()),
            _ => add(&c.invalid, 1),
        }
    };
    let _ = buf.split_to(consumed);
    result
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
            ctx.live.lat.record(shard, us, in_window);
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
        });
        let fut = run_client(ctx, 0, None, CancellationToken::new());
        let size = std::mem::size_of_val(&fut);
        eprintln!("client task future: {size} bytes");
        assert!(size <= 1280, "client task future grew to {size} bytes");
    }
}
