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

use bytes::BytesMut;
use rr_common::mqtt::LinkHandle;
use rr_common::outlet::Sent;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Most bytes the buffer holds before answers are refused (every link down or far behind).
const MAX_PENDING: usize = 64 << 20;

/// Routes encoded answers to connections.
pub struct Outbox {
    buf: Mutex<BytesMut>,
    notify: Notify,
    links: Vec<LinkHandle>,
    /// Connection of the next flush.
    next: AtomicUsize,
}

impl Outbox {
    pub fn new(links: Vec<LinkHandle>) -> Outbox {
        Outbox {
            buf: Mutex::new(BytesMut::with_capacity(16 * 1024)),
            notify: Notify::new(),
            links,
            next: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BytesMut> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
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
        let mut buf = self.lock();
        if buf.len() + packet.len() > MAX_PENDING {
            return false;
        }
        let was_empty = buf.is_empty();
        buf.extend_from_slice(packet);
        if flush {
            let batch = buf.split();
            drop(buf);
            if !self.write(&batch) {
                self.requeue(&batch);
            }
        } else {
            drop(buf);
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
        self.lock().extend_from_slice(batch);
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
                let batch = me.lock().split();
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
