//! The fan-out publisher: `PUBLISH_RATE` messages per second spread evenly over the subjects,
//! stamped with their scheduled time and per-subject sequence. Each 1 ms tick's messages are
//! encoded into one buffer per publisher connection and handed to its link at once; a subject always uses
//! the same connection, so its messages stay in order. It also opens and closes the measured
//! window between two messages, so every message is either in it or not.

use super::books::{Subjects, UNSET};
use super::config::Plan;
use super::payload::{Clock, Stamp};
use super::stats::{add, Live};
use bytes::BytesMut;
use rr_common::link::{Handler, Invalid, Link, Message, Sent, SessionError, SessionSpec};
use rr_common::transport::{self, Encoder};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Bytes a publisher link may hold unwritten before a tick's share for it is skipped.
const BACKLOG_LIMIT: usize = 1 << 20;
const TICK: Duration = Duration::from_millis(1);

/// The publisher reads nothing but PINGRESPs.
struct Quiet;

impl Handler for Quiet {
    fn on_message(&mut self, _m: &Message<'_>, _now: Instant) {}
    fn on_invalid(&mut self, _kind: Invalid) {}
}

/// Connects the publisher links (retrying for `budget`), each driven by a task in `tasks` until
/// `stop`.
pub async fn connect(
    template: &SessionSpec,
    client_id_prefix: &str,
    n: u32,
    budget: Duration,
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Vec<Arc<Link>>, SessionError> {
    let mut links = Vec::with_capacity(n as usize);
    for j in 0..n {
        let mut spec = template.clone();
        spec.client_id = format!("{client_id_prefix}{j}");
        let session = transport::establish_with_retry(&spec, budget).await?;
        let link = transport::new_link(&spec.url);
        let driven = transport::drive(spec, session, Quiet, link.clone(), stop.clone());
        tasks.spawn(async move {
            driven.await;
        });
        links.push(link);
    }
    Ok(links)
}

/// What the schedule needs.
pub struct Schedule {
    pub plan: Arc<Plan>,
    pub live: Arc<Live>,
    pub subjects: Arc<Subjects>,
    pub clock: Clock,
    pub run: u32,
    /// Encodes the messages for the links' transport.
    pub encoder: Encoder,
    pub prefix: String,
    /// t = 0 of the run: the schedule (and the timeline's seconds) start here.
    pub epoch: Instant,
    /// The window opens this long after t = 0 (whole seconds).
    pub warmup: Duration,
    /// The window lasts this long; `None` until `end` is cancelled.
    pub duration: Option<Duration>,
}

/// Topic bytes of every subject, precomputed once.
struct Topics {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Topics {
    fn new(prefix: &str, n: u32) -> Topics {
        let mut bytes = Vec::new();
        let mut ends = Vec::with_capacity(n as usize);
        for s in 0..n {
            bytes.extend_from_slice(prefix.as_bytes());
            bytes.extend_from_slice(s.to_string().as_bytes());
            ends.push(bytes.len());
        }
        Topics { bytes, ends }
    }

    fn get(&self, s: u32) -> &[u8] {
        let s = s as usize;
        let start = if s == 0 { 0 } else { self.ends[s - 1] };
        &self.bytes[start..self.ends[s]]
    }
}

/// Publishes on schedule until the window has closed (after `duration`, or as soon as `end` is
/// cancelled). Returns when the last message of the window has been handed to its link.
pub async fn run_schedule(sch: Schedule, links: Vec<Arc<Link>>, end: CancellationToken) {
    let plan = &sch.plan;
    let c = &sch.live.c;
    let topics = Topics::new(&sch.prefix, plan.subjects);
    let padding = vec![0u8; plan.payload_bytes - super::payload::HEADER_LEN];
    let n_links = links.len().max(1);
    let mut bufs: Vec<BytesMut> = (0..n_links).map(|_| BytesMut::new()).collect();
    let mut counts = vec![0u64; n_links];
    let mut ok = vec![false; n_links];
    let ns_per_msg = 1e9 / plan.publish_rate;
    let offset = |k: u64| (k as f64 * ns_per_msg) as u64;
    let start = sch.epoch;
    let start_ns = sch.clock.ns_at(start);
    // messages published per second of the run, handed to the timeline once per tick
    let mut per_second: Option<(u64, u64)> = None;
    let flush = |p: &mut Option<(u64, u64)>| {
        if let Some((sec, n)) = p.take() {
            sch.live.lat.count(0, |r| r.at(sec).published += n);
        }
    };
    let t0_off = sch.warmup.as_nanos() as u64;
    let t1_off = sch.duration.map_or(UNSET, |d| t0_off + d.as_nanos() as u64);
    let mut opened = false;
    let mut k: u64 = 0;
    let mut next_tick = tokio::time::Instant::from_std(start);
    loop {
        let stop_now = tokio::select! {
            biased;
            _ = end.cancelled() => true,
            _ = tokio::time::sleep_until(next_tick) => false,
        };
        if stop_now {
            // Everything published so far is stamped before the next message's time.
            let at = start_ns + offset(k);
            if !opened {
                sch.subjects.open_window(at);
            }
            sch.subjects.close_window(at);
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(start).as_nanos() as u64;
        next_tick += TICK;
        if next_tick < tokio::time::Instant::now() {
            next_tick = tokio::time::Instant::now() + TICK;
        }
        for (j, l) in links.iter().enumerate() {
            ok[j] = l.is_up() && l.backlog() < BACKLOG_LIMIT;
        }
        let first_due = k;
        let mut closed = false;
        while offset(k) <= elapsed {
            let off = offset(k);
            if !opened && off >= t0_off {
                sch.subjects.open_window(start_ns + t0_off);
                opened = true;
            }
            if off >= t1_off {
                closed = true;
                break;
            }
            let in_window = opened;
            let subject = (k % u64::from(plan.subjects)) as u32;
            k += 1;
            let j = subject as usize % n_links;
            if !ok[j] {
                add(&c.skipped, 1);
                if in_window {
                    add(&c.skipped_window, 1);
                }
                continue;
            }
            let (seq, subscribers) = sch.subjects.take_seq(subject);
            let stamp = Stamp {
                clock: sch.clock.kind,
                run: sch.run,
                subject,
                seq,
                ts_ns: start_ns + off,
            }
            .to_bytes();
            let payload: [&[u8]; 2] = [&stamp, &padding];
            sch.encoder
                .publish(&mut bufs[j], topics.get(subject), &payload, 0);
            counts[j] += 1;
            add(&c.published, 1);
            let sec = off / super::timeline::NS_PER_S;
            match &mut per_second {
                Some((s, n)) if *s == sec => *n += 1,
                p => {
                    flush(p);
                    *p = Some((sec, 1));
                }
            }
            if in_window {
                add(&c.published_window, 1);
                add(&c.expected_window, u64::from(subscribers));
            }
        }
        flush(&mut per_second);
        if k > first_due && opened {
            sch.live
                .lat
                .record_lag(elapsed.saturating_sub(offset(first_due)) / 1000);
        }
        for (j, l) in links.iter().enumerate() {
            if bufs[j].is_empty() {
                continue;
            }
            // Refused only when MAX_QUEUED bytes wait already.
            if l.send(&bufs[j]) == Sent::Full {
                add(&c.publish_errors, counts[j]);
            }
            bufs[j].clear();
            counts[j] = 0;
        }
        if !opened && elapsed >= t0_off {
            sch.subjects.open_window(start_ns + t0_off);
            opened = true;
        }
        if closed || elapsed >= t1_off {
            sch.subjects.close_window(start_ns + t1_off);
            return;
        }
    }
}
