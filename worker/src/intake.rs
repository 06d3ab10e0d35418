//! The connection side of the worker: turns each received request into a queued job whose
//! answer is already encoded, or counts it as invalid or dropped.

use crate::pool::{Job, Shared};
use bytes::BytesMut;
use rr_common::codec::{self, CodecError, InPublish, Protocol};
use rr_common::mqtt::Inbound;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Body of every answer.
pub const RESPONSE_BODY: &[u8] = b"ok";

/// Per-connection request intake (owned by that connection's task).
pub struct Intake {
    pub shared: Arc<Shared>,
    pub conn: usize,
    pub proto: Protocol,
    pub qos: u8,
    pub drop_on_full: bool,
    arena: BytesMut,
    batch: Vec<Job>,
    pkid: u16,
}

impl Intake {
    pub fn new(
        shared: Arc<Shared>,
        conn: usize,
        proto: Protocol,
        qos: u8,
        drop_on_full: bool,
    ) -> Self {
        Intake {
            shared,
            conn,
            proto,
            qos,
            drop_on_full,
            arena: BytesMut::with_capacity(64 * 1024),
            batch: Vec::with_capacity(256),
            pkid: 0,
        }
    }
}

/// A reply topic we may publish to: non-empty UTF-8 without wildcards or NUL.
pub fn valid_reply_topic(t: &[u8]) -> bool {
    !t.is_empty()
        && !t.iter().any(|b| matches!(b, b'+' | b'#' | 0))
        && std::str::from_utf8(t).is_ok()
}

impl Inbound for Intake {
    fn on_publish(&mut self, p: &InPublish<'_>, now: Instant) {
        let c = &self.shared.counters;
        c.received.fetch_add(1, Relaxed);
        let reply = match codec::reply_to(p) {
            Ok(r) if valid_reply_topic(r.topic) && r.correlation.len() <= 255 => r,
            _ => {
                c.invalid.fetch_add(1, Relaxed);
                return;
            }
        };
        let pkid = if self.qos > 0 {
            self.pkid = self.pkid.wrapping_add(1).max(1);
            self.pkid
        } else {
            0
        };
        if self.arena.capacity() - self.arena.len() < 1024 {
            self.arena.reserve(64 * 1024);
        }
        codec::encode_response(
            &mut self.arena,
            self.proto,
            &reply,
            self.qos,
            pkid,
            RESPONSE_BODY,
        );
        self.batch.push(Job {
            response: self.arena.split().freeze(),
            enqueued: now,
            conn: self.conn,
        });
    }

    fn on_puback(&mut self, _pkid: u16) {
        self.shared.outbox.room_freed();
    }

    fn on_link(&mut self, up: bool) {
        if up {
            // a new session starts with all its room free
            self.shared.outbox.room_freed();
        }
    }

    fn on_malformed(&mut self, _err: CodecError) {
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
