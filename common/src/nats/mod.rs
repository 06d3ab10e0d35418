//! NATS as a second transport: the protocol codec ([`codec`], pure, no I/O) and the subject
//! rules ([`subject`]: validation and the mapping from the MQTT topic layout).
//!
//! # Wire layout of a request/reply over NATS
//! - The loadgen publishes each request with `HPUB {REQ_TOPIC_PREFIX}.{shard} resp.{INSTANCE_ID}.{n}`
//!   (the reply subject is private to the loadgen instance and its connection `n`), and the
//!   correlation in one header, so the payload stays the user's:
//!   `NATS/1.0\r\nRR-Correlation: <lowercase hex>\r\n\r\n` (see [`codec::CORRELATION_HEADER`]).
//! - The worker subscribes with a queue group (`SUB req.* {SHARE_GROUP} {sid}`), the NATS
//!   counterpart of MQTT's `$share/{group}/req/+`, and answers on the message's reply subject with
//!   the same header echoed. A request without the header (any NATS requester's `request()`) gets
//!   a plain `PUB` answer on its reply subject.

pub mod codec;
pub mod link;
mod session;
pub mod subject;

use crate::link::{Framing, Message, Session, SessionError, SessionSpec, Transport};
use bytes::BytesMut;
use codec::{encode_publish, Publish};

/// The NATS transport.
pub struct Nats;

/// NATS core has no acknowledgements: nothing is flow-controlled.
static FRAMING: Framing = Framing {
    count_flow: |_| 0,
    stamp: |_, _| {},
};

impl Transport for Nats {
    type Decoder = link::Decoder;
    const PING: &'static [u8] = codec::PING;
    /// NATS has no goodbye verb: the connection just closes.
    const GOODBYE: &'static [u8] = b"";
    const FRAMING: &'static Framing = &FRAMING;

    async fn connect(spec: &SessionSpec) -> Result<Session<link::Decoder>, SessionError> {
        session::connect(spec).await
    }
}

/// Subjects up to this long are mapped on the stack.
const SUBJECT_STACK: usize = 256;

/// Calls `f` with `topic` as a NATS subject: the MQTT level separator `/` becomes `.`, so the
/// engines' topic layout (`req/{shard}`, `resp/{INSTANCE_ID}/{n}`) maps to subjects
/// (`req.{shard}`, `resp.{INSTANCE_ID}.{n}`) without an allocation per message.
fn with_subject<R>(topic: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let map = |b: &u8| if *b == b'/' { b'.' } else { *b };
    if !topic.contains(&b'/') {
        return f(topic);
    }
    if topic.len() <= SUBJECT_STACK {
        let mut s = [0u8; SUBJECT_STACK];
        for (d, b) in s.iter_mut().zip(topic) {
            *d = map(b);
        }
        return f(&s[..topic.len()]);
    }
    let s: Vec<u8> = topic.iter().map(map).collect();
    f(&s)
}

/// Encodes what engines send over NATS: requests as `HPUB` with the reply subject and the
/// correlation header, answers to the subject the request named (verbatim: it is already a
/// NATS subject) with its correlation echoed, plain publishes as `PUB`. QoS has no meaning in
/// NATS core and is ignored. Sizes are checked against the server's `max_payload` once, at
/// start-up (with [`Encoder::message_len`]), not per message.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Encoder;

impl Encoder {
    /// Nothing is flow-controlled in NATS core.
    pub fn flow_controlled(&self, _qos: u8) -> bool {
        false
    }

    /// Bytes of a request's headers and payload, which the server's `max_payload` limits.
    pub fn message_len(&self, correlation_len: usize, body_len: usize) -> usize {
        codec::header_block_len(correlation_len) + body_len
    }

    /// A request to `topic` asking for an answer on `reply_to` that echoes `correlation`.
    pub fn request(
        &self,
        buf: &mut BytesMut,
        topic: &[u8],
        reply_to: &[u8],
        correlation: &[u8],
        body: &[u8],
    ) {
        with_subject(topic, |subject| {
            with_subject(reply_to, |reply| {
                let p = Publish {
                    subject,
                    reply: Some(reply),
                    correlation: Some(correlation),
                    payload: &[body],
                };
                // only a correlation over 255 bytes is refused; ours are 12
                let _ = encode_publish(buf, &p, usize::MAX);
            })
        })
    }

    /// The answer to `req` (its `reply_to` must be set; nothing is encoded otherwise), with
    /// the request's correlation header when it had one (a plain `PUB` otherwise, as any NATS
    /// requester's `request()` expects).
    pub fn answer(&self, buf: &mut BytesMut, req: &Message<'_>, body: &[u8]) {
        let Some(reply) = req.reply_to else {
            return;
        };
        let p = Publish {
            subject: reply,
            reply: None,
            correlation: req.correlation,
            payload: &[body],
        };
        let _ = encode_publish(buf, &p, usize::MAX);
    }

    /// A message to `topic` that asks for no answer, its payload given in pieces.
    pub fn publish(&self, buf: &mut BytesMut, topic: &[u8], payload: &[&[u8]]) {
        with_subject(topic, |subject| {
            let p = Publish {
                subject,
                reply: None,
                correlation: None,
                payload,
            };
            let _ = encode_publish(buf, &p, usize::MAX);
        })
    }
}
