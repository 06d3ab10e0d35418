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
pub mod subject;
