//! The read side of a NATS link: operations parsed in place from the read buffer, `MSG`/`HMSG`
//! handed to the engine's handler as messages (correlation decoded from the `RR-Correlation`
//! header), `PONG` answered to the server's `PING`, oversized messages skipped and counted
//! without losing the connection, `INFO` updates followed.

use super::codec::{self, NatsError, Op, MAX_CORRELATION, PONG};
use crate::link::{Decode, Flow, Handler, Invalid, Message};
use bytes::{BufMut, BytesMut};
use std::time::Instant;

/// Reader state of one NATS session.
pub struct Decoder {
    /// Largest message accepted (the server's `max_payload`, from INFO).
    max_payload: usize,
    /// Bytes of an oversized message still to drop as they arrive.
    skip: usize,
    /// `-ERR` lines seen this session (the first is logged).
    errors: u64,
    /// The decoded correlation of the message being handed on (boxed: sessions move around
    /// by value before their driver runs them).
    correlation: Box<[u8; MAX_CORRELATION]>,
}

impl Decoder {
    pub fn new(max_payload: usize) -> Decoder {
        Decoder {
            max_payload,
            skip: 0,
            errors: 0,
            correlation: Box::new([0; MAX_CORRELATION]),
        }
    }

    /// The largest message the server accepts (from its latest INFO).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }
}

impl Decode for Decoder {
    /// An error means a broken stream (framing lost); the driver then resets the link. A
    /// message whose header block or correlation is malformed is counted as invalid and the
    /// link stays up. The server closes the connection itself after a fatal `-ERR`; a
    /// non-fatal one (a permissions violation) is logged once per session.
    fn dispatch<H: Handler>(
        &mut self,
        buf: &mut BytesMut,
        handler: &mut H,
        replies: &mut BytesMut,
        _flow: Option<&Flow>,
        now: Instant,
    ) -> Result<(), String> {
        let mut consumed = self.skip.min(buf.len());
        self.skip -= consumed;
        let result = loop {
            if self.skip > 0 {
                break Ok(());
            }
            let rest = &buf[consumed..];
            let (op, len) = match codec::next_op(rest, self.max_payload) {
                Ok(Some(found)) => found,
                Ok(None) => break Ok(()),
                Err(NatsError::TooLarge(frame_len)) => {
                    handler.on_invalid(Invalid::TooLarge);
                    let now_dropped = frame_len.min(rest.len());
                    consumed += now_dropped;
                    self.skip = frame_len - now_dropped;
                    continue;
                }
                Err(e) => break Err(format!("unreadable NATS operation: {e}")),
            };
            match op {
                Op::Msg(m) => match m.correlation(&mut self.correlation) {
                    Ok(correlation) => handler.on_message(
                        &Message {
                            topic: m.subject,
                            payload: m.payload,
                            reply_to: m.reply,
                            correlation,
                            in_header: false,
                            wire_len: len,
                        },
                        now,
                    ),
                    Err(_) => handler.on_invalid(Invalid::Malformed),
                },
                Op::Ping => replies.put_slice(PONG),
                Op::Pong | Op::Ok => {}
                Op::Info(json) => {
                    if let Ok(info) = codec::parse_info(json) {
                        self.max_payload = info.max_payload();
                    }
                }
                Op::Err(text) => {
                    self.errors += 1;
                    if self.errors == 1 {
                        tracing::warn!("nats-server: -ERR '{}'", String::from_utf8_lossy(text));
                    }
                }
            }
            consumed += len;
        };
        let _ = buf.split_to(consumed);
        result
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
