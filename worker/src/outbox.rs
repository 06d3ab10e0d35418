//! Answers on their way out. Workers append encoded answers to one shared buffer, and the buffer
//! leaves in one write per flush, each flush to the next connection in turn (answers spread over
//! the connections over time). On plain TCP a flush writes straight into the socket through the
//! connection's outlet, without a hop through the connection task; nobody awaits a socket.
//!
//! A large flush is spread over several connections, at least [`SPREAD_FROM`] answers each: a
//! broker may read one message per connection per pass of its event loop (mosquitto 2.0 does),
//! so answers piled into one connection would leave the broker one at a time while the
//! requests, spread over the load generators' many connections, come in many per pass.
//!
//! Who flushes: the worker whose answer leaves the request queue empty writes the buffer out at
//! once (at low rates that is every answer, with no added delay). Otherwise the first answer
//! wakes the flusher task, which yields once first: every task ready to run (workers finishing
//! jobs, connections reading requests) runs before it, so the answers of one scheduler pass
//! leave in one write, without a timer.
//!
//! Flow-controlled answers (MQTT `PUB_QOS=1`) also respect each connection's room (with MQTT 5
//! the broker's receive maximum): a connection takes at most as many answers as its link has
//! room for (the link gives them their packet identifiers), and what no connection has room
//! for waits here until acknowledgements free some.

use bytes::{Buf, BytesMut};
use rr_common::link::{Link, Sent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most bytes the buffer holds before answers are refused (every link down or far behind).
const MAX_PENDING: usize = 64 << 20;

/// Fewest answers per write when a flush is spread over connections (see the module docs): a
/// flush of fewer than twice this many goes out in one write, so at moderate rates the worker
/// writes as seldom as it would without spreading.
pub const SPREAD_FROM: usize = 8;

/// Routes encoded answers to connections.
pub struct Outbox {
    buf: Mutex<Pending>,
    notify: Notify,
    links: Vec<Arc<Link>>,
    /// Connection of the next flush.
    next: AtomicUsize,
    /// The answers are flow-controlled (they wait for room).
    flow: bool,
    /// Flow-controlled answers wait for acknowledgements to free room.
    waiting_room: AtomicBool,
    /// Woken whenever the buffer has been handed out completely (a stopping worker waits on it).
    emptied: Notify,
}

/// Answers not handed to a connection yet.
struct Pending {
    bytes: BytesMut,
    /// The length of each answer in `bytes`, in order (for flow control and for spreading).
    lens: VecDeque<usize>,
}

impl Pending {
    /// Takes every pending answer (not flow-controlled) out, with where the parts of its writes
    /// end: one part below `2 * SPREAD_FROM` answers, else as many parts of at least
    /// `SPREAD_FROM` answers as there are `links`, at most, answers shared out evenly.
    fn take_spread(&mut self, links: usize) -> (BytesMut, Vec<usize>) {
        let k = self.lens.len();
        let parts = (k / SPREAD_FROM).clamp(1, links.max(1));
        let mut cuts = Vec::with_capacity(parts);
        let mut end = 0;
        let mut taken = 0;
        for part in 1..=parts {
            let upto = k * part / parts;
            end += self.lens.range(taken..upto).sum::<usize>();
            taken = upto;
            cuts.push(end);
        }
        // (every byte has its length recorded; the last part ends at the end regardless)
        if let Some(last) = cuts.last_mut() {
            *last = self.bytes.len();
        }
        self.lens.clear();
        (self.bytes.split(), cuts)
    }
}

impl Outbox {
    /// An outbox writing to `links`; `flow`: the answers are flow-controlled
    /// (`Encoder::flow_controlled`).
    pub fn new(links: Vec<Arc<Link>>, flow: bool) -> Outbox {
        Outbox {
            buf: Mutex::new(Pending {
                bytes: BytesMut::with_capacity(16 * 1024),
                lens: VecDeque::new(),
            }),
            notify: Notify::new(),
            links,
            next: AtomicUsize::new(0),
            flow,
            waiting_room: AtomicBool::new(false),
            emptied: Notify::new(),
        }
    }

    /// Resolves at the next moment the buffer has been handed out completely. Create it (and
    /// `enable` it) before checking [`Outbox::is_empty`], so that moment is not missed.
    pub fn emptied(&self) -> tokio::sync::futures::Notified<'_> {
        self.emptied.notified()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No answer waits here (flow-controlled answers may wait for room).
    pub fn is_empty(&self) -> bool {
        self.lock().bytes.is_empty()
    }

    /// A connection received acknowledgements, or a new session began: answers waiting for
    /// room may go now.
    pub fn room_freed(&self) {
        if self.waiting_room.swap(false, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Flow-controlled answers: hands the pending answers to live connections, each at most as
    /// many as its room allows. True when nothing is left.
    fn hand_out(&self, p: &mut Pending) -> bool {
        let n = self.links.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for link in (0..n).map(|k| &self.links[(start + k) % n]) {
            if p.lens.is_empty() {
                break;
            }
            if !link.is_up() {
                continue;
            }
            let count = (link.room() as usize).min(p.lens.len());
            if count == 0 {
                continue;
            }
            let end: usize = p.lens.iter().take(count).sum();
            if link.send_flow(&mut p.bytes[..end], count as u32) == Sent::Full {
                continue;
            }
            p.bytes.advance(end);
            p.lens.drain(..count);
        }
        if !p.lens.is_empty() {
            self.waiting_room.store(true, Ordering::Release);
            return false;
        }
        self.emptied.notify_waiters();
        true
    }

    /// Queues one encoded answer; `flush` writes the buffer out now (the caller saw no more
    /// requests waiting). Returns false when no connection is up or the buffer is full.
    pub fn send(&self, packet: &[u8], flush: bool) -> bool {
        if !self.links.iter().any(|l| l.is_up()) {
            return false;
        }
        let mut pending = self.lock();
        let buf = &mut pending.bytes;
        if buf.len() + packet.len() > MAX_PENDING {
            return false;
        }
        let was_empty = buf.is_empty();
        buf.extend_from_slice(packet);
        pending.lens.push_back(packet.len());
        if self.flow {
            // what finds no room now is the flusher's: it retries until everything left
            if flush && !self.hand_out(&mut pending) || !flush && was_empty {
                drop(pending);
                self.notify.notify_one();
            }
            return true;
        }
        if flush {
            let (batch, cuts) = pending.take_spread(self.links.len());
            drop(pending);
            self.write_spread(&batch, &cuts);
        } else {
            drop(pending);
            if was_empty {
                self.notify.notify_one();
            }
        }
        true
    }

    /// Hands `batch` to the next connection that takes it (a live one first; a link that is
    /// down keeps the bytes in its outlet for the reconnect). False when every outlet is full.
    fn write(&self, batch: &[u8]) -> bool {
        let n = self.links.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let live = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| self.links[i].is_up());
        let rest = (0..n).map(|i| (start + i) % n);
        for i in live.chain(rest) {
            if self.links[i].send(batch) != Sent::Full {
                return true;
            }
        }
        false
    }

    /// Writes `batch` in the parts that end at `cuts` (see [`Pending::take_spread`]), each to the next
    /// connection that takes it; what no outlet takes goes back for the flusher to retry. True
    /// when everything went.
    fn write_spread(&self, batch: &[u8], cuts: &[usize]) -> bool {
        let mut start = 0;
        for &end in cuts {
            if end == start {
                continue;
            }
            if !self.write(&batch[start..end]) {
                self.requeue(&batch[start..]);
                return false;
            }
            start = end;
        }
        self.emptied.notify_waiters();
        true
    }

    /// Puts bytes that no outlet took back (as one part), for the flusher to retry.
    fn requeue(&self, rest: &[u8]) {
        let mut p = self.lock();
        p.bytes.extend_from_slice(rest);
        p.lens.push_back(rest.len());
        drop(p);
        self.notify.notify_one();
    }

    /// Runs the flusher until `stop`.
    pub fn spawn_flusher(self: &std::sync::Arc<Self>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            if me.links.is_empty() {
                return;
            }
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = me.notify.notified() => {}
                }
                // Let the answers being produced now join this write.
                tokio::task::yield_now().await;
                if me.flow {
                    // What finds no room waits for acknowledgements (`room_freed`), or at most
                    // 10 ms.
                    while !me.hand_out(&mut me.lock()) {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = me.notify.notified() => {}
                            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                        }
                    }
                    continue;
                }
                let (batch, cuts) = me.lock().take_spread(me.links.len());
                // Refused only while every outlet holds MAX_QUEUED bytes: the rest is queued
                // again, and retried after a pause (or as soon as new answers wake us).
                if !me.write_spread(&batch, &cuts) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rr_common::link::Transport;
    use rr_common::mqtt::Mqtt;

    /// `n` links that are up with no session: what they are given waits in their outlets.
    fn outbox(n: usize) -> (Outbox, Vec<Arc<Link>>) {
        let links: Vec<Arc<Link>> = (0..n)
            .map(|_| {
                let l = Arc::new(Link::new(Mqtt::FRAMING));
                l.set_up(true, false);
                l
            })
            .collect();
        (Outbox::new(links.clone(), false), links)
    }

    /// Answers (of 10 bytes) each link was given.
    fn given(links: &[Arc<Link>]) -> Vec<usize> {
        links.iter().map(|l| l.backlog() / 10).collect()
    }

    fn answers(o: &Outbox, k: usize) {
        for i in 0..k {
            assert!(o.send(&[i as u8; 10], i + 1 == k));
        }
    }

    #[test]
    fn a_small_flush_leaves_in_one_write() {
        let (o, links) = outbox(4);
        answers(&o, 2 * SPREAD_FROM - 1);
        let mut g = given(&links);
        g.sort();
        assert_eq!(g, [0, 0, 0, 2 * SPREAD_FROM - 1]);
        assert!(o.is_empty());
    }

    #[test]
    fn a_large_flush_is_spread_over_the_connections() {
        // three parts of SPREAD_FROM: three connections, one left out
        let (o, links) = outbox(4);
        answers(&o, 3 * SPREAD_FROM);
        let mut g = given(&links);
        g.sort();
        assert_eq!(g, [0, SPREAD_FROM, SPREAD_FROM, SPREAD_FROM]);
        // more than every connection's share: all of them, evenly, whole answers in order
        let (o, links) = outbox(4);
        answers(&o, 41);
        let mut g = given(&links);
        g.sort();
        assert_eq!(g, [10, 10, 10, 11]);
        assert!(o.is_empty());
    }

    #[test]
    fn answers_the_outlets_refuse_wait_for_the_flusher() {
        // one link, its outlet full: the answers stay in the outbox, lengths and all
        let (o, links) = outbox(1);
        let big = vec![7u8; 1 << 20];
        let mut refused = false;
        for _ in 0..=rr_common::link::MAX_QUEUED >> 20 {
            if links[0].send(&big) == Sent::Full {
                refused = true;
                break;
            }
        }
        assert!(refused, "the outlet never filled");
        answers(&o, 3);
        assert!(!o.is_empty());
        assert_eq!(o.lock().bytes.len(), 30);
        assert_eq!(o.lock().lens.iter().sum::<usize>(), 30);
    }
}
