//! Answers on their way out: one coalescing buffer per connection, flushed by a small task in
//! one write per wake-up, so workers never await a socket and never send one message per answer
//! through a channel.

use bytes::{Bytes, BytesMut};
use rr_common::mqtt::LinkHandle;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Slot {
    buf: Mutex<BytesMut>,
    notify: Notify,
    link: LinkHandle,
}

/// Routes encoded answers to connections.
pub struct Outbox {
    slots: Vec<Slot>,
}

/// Most bytes a slot holds before answers are refused (the link is down or far behind).
const MAX_PENDING: usize = 64 << 20;

impl Outbox {
    pub fn new(links: Vec<LinkHandle>) -> Outbox {
        Outbox {
            slots: links
                .into_iter()
                .map(|link| Slot {
                    buf: Mutex::new(BytesMut::with_capacity(16 * 1024)),
                    notify: Notify::new(),
                    link,
                })
                .collect(),
        }
    }

    /// Queues `packet` on connection `conn`, or on another live one when it is down.
    /// Returns false when no connection can take it.
    pub fn send(&self, conn: usize, packet: Bytes) -> bool {
        let n = self.slots.len();
        for i in 0..n {
            let slot = &self.slots[(conn + i) % n];
            if !slot.link.status.up.load(Ordering::Acquire) {
                continue;
            }
            let mut buf = slot.buf.lock().unwrap_or_else(|e| e.into_inner());
            if buf.len() + packet.len() > MAX_PENDING {
                continue;
            }
            let was_empty = buf.is_empty();
            buf.extend_from_slice(&packet);
            drop(buf);
            if was_empty {
                slot.notify.notify_one();
            }
            return true;
        }
        false
    }

    /// Runs the flusher of every slot until `stop`.
    pub fn spawn_flushers(self: &std::sync::Arc<Self>, stop: CancellationToken) {
        for i in 0..self.slots.len() {
            let me = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let slot = &me.slots[i];
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = slot.notify.notified() => {}
                    }
                    let batch = {
                        let mut buf = slot.buf.lock().unwrap_or_else(|e| e.into_inner());
                        buf.split().freeze()
                    };
                    if !batch.is_empty() && slot.link.tx.send(batch).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}
