//! The connection side of the worker: turns each received request into a queued job whose
//! answer is already encoded, or counts it as invalid or dropped.

use crate::pool::{Job, Shared};
use bytes::BytesMut;
use rr_common::link::{Handler, Invalid, LinkEvent, Message};
use rr_common::transport::Encoder;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Body of every answer.
pub const RESPONSE_BODY: &[u8] = b"ok";

/// Per-connection request intake (owned by that connection's task).
pub struct Intake {
    pub shared: Arc<Shared>,
    pub conn: usize,
    pub encoder: Encoder,
    pub qos: u8,
    pub drop_on_full: bool,
    arena: BytesMut,
    batch: Vec<Job>,
}

impl Intake {
    pub fn new(
        shared: Arc<Shared>,
        conn: usize,
        encoder: Encoder,
        qos: u8,
        drop_on_full: bool,
    ) -> Self {
        Intake {
            shared,
            conn,
            encoder,
            qos,
            drop_on_full,
            arena: BytesMut::with_capacity(64 * 1024),
            batch: Vec::with_capacity(256),
        }
    }
}

/// A reply topic we may publish to: non-empty UTF-8 without wildcards or NUL.
pub fn valid_reply_topic(t: &[u8]) -> bool {
    !t.is_empty()
        && !t.iter().any(|b| matches!(b, b'+' | b'#' | 0))
        && std::str::from_utf8(t).is_ok()
}

impl Handler for Intake {
    fn on_message(&mut self, m: &Message<'_>, now: Instant) {
        let c = &self.shared.counters;
        c.received.fetch_add(1, Relaxed);
        let valid = m.reply_to.is_some_and(valid_reply_topic)
            && m.correlation.unwrap_or_default().len() <= 255;
        if !valid {
            c.invalid.fetch_add(1, Relaxed);
            return;
        }
        if self.arena.capacity() - self.arena.len() < 1024 {
            self.arena.reserve(64 * 1024);
        }
        self.encoder
            .answer(&mut self.arena, m, RESPONSE_BODY, self.qos);
        self.batch.push(Job {
            response: self.arena.split().freeze(),
            enqueued: now,
            conn: self.conn,
        });
    }

    fn on_room(&mut self) {
        self.shared.outbox.room_freed();
    }

    fn on_link(&mut self, e: LinkEvent) {
        if e == LinkEvent::Up {
            // a new session starts with all its room free
            self.shared.outbox.room_freed();
        }
    }

    fn on_invalid(&mut self, _kind: Invalid) {
        let c = &self.shared.counters;
        c.received.fetch_add(1, Relaxed);
        c.invalid.fetch_add(1, Relaxed);
    }

    async fn flush(&mut self) {
        for job in self.batch.drain(..) {
            if self.drop_on_full {
                if self.shared.tx.try_send(job).is_err() {
                    self.shared.counters.dropped.fetch_add(1, Relaxed);
                }
            } else if self.shared.tx.send(job).await.is_err() {
                self.shared.counters.errors.fetch_add(1, Relaxed);
            }
        }
    }
}
