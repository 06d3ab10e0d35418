//! Answers on their way out. Workers append encoded answers to one shared buffer, and the buffer
//! leaves in one write per flush, each flush to the next connection in turn (answers spread over
//! the connections over time). On plain TCP a flush writes straight into the socket through the
//! connection's outlet, without a hop through the connection task; nobody awaits a socket.
//!
//! Who flushes: the worker whose answer leaves the request queue empty writes the buffer out at
//! once (at low rates that is every answer, with no added delay). Otherwise the first answer
//! wakes the flusher task, which yields once first: every task ready to run (workers finishing
//! jobs, connections reading requests) runs before it, so the answers of one scheduler pass
//! leave in one write, without a timer.
//!
//! QoS 1 answers (`PUB_QOS=1`) also respect each connection's MQTT 5 receive maximum: a
//! connection takes at most as many answers as the broker still allows unacknowledged, each
//! gets its packet identifier from that connection's own sequence (rewritten in the encoded
//! packet), and what no connection has room for waits here until PUBACKs free some.

use bytes::{Buf, BytesMut};
use rr_common::codec;
use rr_common::mqtt::LinkHandle;
use rr_common::outlet::Sent;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most bytes the buffer holds before answers are refused (every link down or far behind).
const MAX_PENDING: usize = 64 << 20;

/// Routes encoded answers to connections.
pub struct Outbox {
    buf: Mutex<Pending>,
    notify: Notify,
    links: Vec<LinkHandle>,
    /// Connection of the next flush.
    next: AtomicUsize,
    /// QoS of the answers.
    qos: u8,
    /// QoS 1: answers wait for a PUBACK to free room.
    waiting_room: AtomicBool,
}

/// Answers not handed to a connection yet.
struct Pending {
    bytes: BytesMut,
    /// QoS 1: the last packet identifier used on each connection.
    pkids: Vec<u16>,
}

impl Outbox {
    pub fn new(links: Vec<LinkHandle>, qos: u8) -> Outbox {
        Outbox {
            buf: Mutex::new(Pending {
                bytes: BytesMut::with_capacity(16 * 1024),
                pkids: vec![0; links.len()],
            }),
            notify: Notify::new(),
            links,
            next: AtomicUsize::new(0),
            qos,
            waiting_room: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No answer waits here (QoS 1 answers may wait for room).
    pub fn is_empty(&self) -> bool {
        self.lock().bytes.is_empty()
    }

    /// A connection received a PUBACK, or a new session began: answers waiting for room may
    /// go now.
    pub fn room_freed(&self) {
        if self.waiting_room.swap(false, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// QoS 1: hands the pending answers to live connections, each at most as many as its
    /// receive maximum still allows, with identifiers from its own sequence. True when
    /// nothing is left.
    fn hand_out(&self, p: &mut Pending) -> bool {
        let n = self.links.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in (0..n).map(|k| (start + k) % n) {
            if p.bytes.is_empty() {
                break;
            }
            let st = &self.links[i].status;
            if !st.up.load(Ordering::Acquire) {
                continue;
            }
            let room = st
                .receive_max
                .load(Ordering::Relaxed)
                .saturating_sub(st.unacked.load(Ordering::Relaxed));
            let (mut end, mut count, mut pkid) = (0, 0u32, p.pkids[i]);
            while end < p.bytes.len() && count < room {
                let Ok(Some(f)) = codec::next_frame(&p.bytes[end..], usize::MAX) else {
                    break;
                };
                pkid = pkid.wrapping_add(1).max(1);
                // our own encoding: a QoS 1 PUBLISH, always rewritable
                let _ = codec::set_publish_pkid(&mut p.bytes[end..end + f.total_len], pkid);
                end += f.total_len;
                count += 1;
            }
            if count == 0 {
                continue;
            }
            // only this function (under the lock) adds; PUBACKs subtract
            st.unacked.fetch_add(count, Ordering::Relaxed);
            if st.outlet.send(&p.bytes[..end]) == Sent::Full {
                st.unacked.fetch_sub(count, Ordering::Relaxed);
                continue;
            }
            p.pkids[i] = pkid;
            p.bytes.advance(end);
        }
        if !p.bytes.is_empty() {
            self.waiting_room.store(true, Ordering::Release);
        }
        p.bytes.is_empty()
    }

    /// Queues one encoded answer; `flush` writes the buffer out now (the caller saw no more
    /// requests waiting). Returns false when no connection is up or the buffer is full.
    pub fn send(&self, packet: &[u8], flush: bool) -> bool {
        if !self
            .links
            .iter()
            .any(|l| l.status.up.load(Ordering::Acquire))
        {
            return false;
        }
        let mut pending = self.lock();
        let buf = &mut pending.bytes;
        if buf.len() + packet.len() > MAX_PENDING {
            return false;
        }
        let was_empty = buf.is_empty();
        buf.extend_from_slice(packet);
        if self.qos > 0 {
            // what finds no room now is the flusher's: it retries until everything left
            if flush && !self.hand_out(&mut pending) || !flush && was_empty {
                drop(pending);
                self.notify.notify_one();
            }
            return true;
        }
        if flush {
            let batch = buf.split();
            drop(pending);
            if !self.write(&batch) {
                self.requeue(&batch);
            }
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
            .filter(|&i| self.links[i].status.up.load(Ordering::Acquire));
        let rest = (0..n).map(|i| (start + i) % n);
        for i in live.chain(rest) {
            if self.links[i].status.outlet.send(batch) != Sent::Full {
                return true;
            }
        }
        false
    }

    /// Puts a batch that no outlet took back, for the flusher to retry.
    fn requeue(&self, batch: &[u8]) {
        self.lock().bytes.extend_from_slice(batch);
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
                if me.qos > 0 {
                    // What finds no room waits for a PUBACK (`room_freed`), or at most 10 ms.
                    while !me.hand_out(&mut me.lock()) {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = me.notify.notified() => {}
                            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                        }
                    }
                    continue;
                }
                let batch = me.lock().bytes.split();
                // Refused only while every outlet holds MAX_QUEUED bytes: wait for room.
                while !batch.is_empty() && !me.write(&batch) {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
            }
        });
    }
}
