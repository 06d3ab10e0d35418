//! What engines send, as Kafka records (into the batch buffer, see [`super::records`]), with the
//! topic layout of docs/kafka.md applied on the way:
//!
//! - a request to `req/{shard}` answered on `resp/{instance}/{n}` → topic `req`, key `{shard}`,
//!   headers `kafka_replyTopic: resp.{instance}`, `kafka_replyPartition: n`,
//!   `kafka_correlationId`;
//! - an answer → the request's reply topic (and partition), header `kafka_correlationId`;
//! - a fan-out message to subject `u/s17` → the `SUBJECT_TOPIC` topic, key `u/s17`;
//! - a plain publish of rr's `pub` scenario (no `SUBJECT_TOPIC`: [`Encoder::levels`]) to
//!   `req/{shard}` → topic `req`, key `{shard}`, as a request without its reply headers.
//!
//! Partitions of requests and fan-out messages are left to the producer's partitioner
//! (`murmur2_random`, as Java clients hash keys): one key, one partition. Nothing here allocates.

use super::headers::{CORRELATION_ID, REPLY_PARTITION, REPLY_TOPIC};
use super::records::{self, Head};
use super::topics::{self, MAX_TOPIC_LEN, SUBJECT_PLACEHOLDER};
use crate::link::Message;
use bytes::BytesMut;
use std::sync::Mutex;

/// Separates the reply topic from its partition in a received request's reply address (`:` is
/// not legal in topic names); see [`reply_address`].
pub const PARTITION_SEPARATOR: u8 = b':';

/// The Kafka encoder. `Copy`: the `SUBJECT_TOPIC` template is interned for the process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Encoder {
    /// `SUBJECT_TOPIC`, checked (see [`topics::SubjectTopics`]); `None`: publishes map level by
    /// level, as requests do.
    subject_topic: Option<&'static str>,
}

/// Templates live as long as the process; each distinct one is stored once.
fn intern(s: &str) -> &'static str {
    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = seen.iter().find(|t| **t == s) {
        return t;
    }
    let t: &'static str = Box::leak(s.to_string().into_boxed_str());
    seen.push(t);
    t
}

impl Encoder {
    /// An encoder producing fan-out subjects to `subject_topic` (a checked `SUBJECT_TOPIC`).
    pub fn new(subject_topic: &topics::SubjectTopics) -> Encoder {
        Encoder {
            subject_topic: Some(intern(&subject_topic.to_string())),
        }
    }

    /// An encoder whose publishes map like requests: the last level of the topic is the key,
    /// the levels before it the topic (rr's `pub` scenario, `req/{shard}`).
    pub fn levels() -> Encoder {
        Encoder {
            subject_topic: None,
        }
    }

    /// A request to `topic` (`req/{shard}`) asking for an answer on `reply_to`
    /// (`resp/{instance}/{n}`) that echoes `correlation`.
    pub fn request(
        &self,
        buf: &mut BytesMut,
        topic: &[u8],
        reply_to: &[u8],
        correlation: &[u8],
        body: &[u8],
    ) {
        let (prefix, key) = topics::split_last(topic);
        let mut t = [0u8; MAX_TOPIC_LEN];
        let tn = topics::sanitize_into(prefix, &mut t);
        let (reply_prefix, reply_last) = topics::split_last(reply_to);
        let partition = reply_last.and_then(topics::parse_partition);
        let mut r = [0u8; MAX_TOPIC_LEN];
        let rn = topics::sanitize_into(
            if partition.is_some() {
                reply_prefix
            } else {
                reply_to
            },
            &mut r,
        );
        let p = partition.unwrap_or(0).to_be_bytes();
        let with_partition = [
            (REPLY_TOPIC, &r[..rn]),
            (REPLY_PARTITION, &p[..]),
            (CORRELATION_ID, correlation),
        ];
        let headers: &[(&str, &[u8])] = if partition.is_some() {
            &with_partition
        } else {
            &[(REPLY_TOPIC, &r[..rn]), (CORRELATION_ID, correlation)]
        };
        records::put(
            buf,
            &Head {
                topic: &t[..tn],
                partition: None,
                key,
                headers,
            },
            &[body],
        );
    }

    /// The answer to `req`, whose reply address came from its headers ([`reply_address`]).
    pub fn answer(&self, buf: &mut BytesMut, req: &Message<'_>, body: &[u8]) {
        let Some(reply) = req.reply_to else {
            return;
        };
        let (topic, partition) = split_reply_address(reply);
        let corr = req.correlation.unwrap_or_default();
        records::put(
            buf,
            &Head {
                topic,
                partition,
                key: None,
                headers: &[(CORRELATION_ID, corr)],
            },
            &[body],
        );
    }

    /// A fan-out message to subject `topic` (`u/s17`): the `SUBJECT_TOPIC` topic, keyed by the
    /// subject's name.
    pub fn publish(&self, buf: &mut BytesMut, topic: &[u8], payload: &[&[u8]]) {
        let mut t = [0u8; MAX_TOPIC_LEN];
        let Some(subject_topic) = self.subject_topic else {
            let (prefix, key) = topics::split_last(topic);
            let tn = topics::sanitize_into(prefix, &mut t);
            records::put(
                buf,
                &Head {
                    topic: &t[..tn],
                    partition: None,
                    key,
                    headers: &[],
                },
                payload,
            );
            return;
        };
        let tn = match subject_topic.split_once(SUBJECT_PLACEHOLDER) {
            None => {
                let fixed = subject_topic.as_bytes();
                t[..fixed.len()].copy_from_slice(fixed);
                fixed.len()
            }
            Some((before, after)) => {
                let mut s = [0u8; MAX_TOPIC_LEN];
                let sn = topics::sanitize_into(topic, &mut s);
                let mut n = 0;
                for b in before
                    .bytes()
                    .chain(s[..sn].iter().copied())
                    .chain(after.bytes())
                {
                    if n == MAX_TOPIC_LEN {
                        break;
                    }
                    t[n] = b;
                    n += 1;
                }
                n
            }
        };
        records::put(
            buf,
            &Head {
                topic: &t[..tn],
                partition: None,
                key: Some(topic),
                headers: &[],
            },
            payload,
        );
    }
}

/// The reply address a received request hands the engines: `topic`, or `topic:partition`
/// when the request names a partition. Written into `out`; returns its length.
pub fn reply_address(topic: &[u8], partition: Option<i32>, out: &mut Vec<u8>) -> usize {
    out.clear();
    out.extend_from_slice(topic);
    if let Some(p) = partition {
        out.push(PARTITION_SEPARATOR);
        out.extend_from_slice(p.to_string().as_bytes());
    }
    out.len()
}

/// Splits a reply address made by [`reply_address`].
pub fn split_reply_address(reply: &[u8]) -> (&[u8], Option<i32>) {
    match reply.iter().rposition(|b| *b == PARTITION_SEPARATOR) {
        Some(i) => match topics::parse_partition(&reply[i + 1..]) {
            Some(p) => (&reply[..i], Some(p)),
            None => (reply, None),
        },
        None => (reply, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::headers;

    fn one(buf: &BytesMut) -> records::Record<'_> {
        let mut it = records::iter(buf);
        let r = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        r
    }

    #[test]
    fn requests_follow_the_layout_and_springs_headers() {
        let e = Encoder::new(&topics::SubjectTopics::parse("fanout").unwrap());
        let mut b = BytesMut::new();
        e.request(&mut b, b"req/17", b"resp/lg 1/3", b"corr", b"body");
        let r = one(&b);
        assert_eq!(
            (r.topic, r.key, r.partition),
            ("req", Some(&b"17"[..]), None)
        );
        assert_eq!(r.value, b"body");
        let hs = r.headers().iter().map(|(n, v)| (*n, Some(*v)));
        let to = headers::reply_to(hs).unwrap();
        assert_eq!(
            (to.topic, to.partition, to.correlation),
            ("resp.lg_1", Some(3), &b"corr"[..])
        );
        // A reply topic whose last level is no partition is all topic.
        b.clear();
        e.request(&mut b, b"req", b"replies/x", b"c", b"");
        let r = one(&b);
        assert_eq!((r.topic, r.key), ("req", None));
        let to = headers::reply_to(r.headers().iter().map(|(n, v)| (*n, Some(*v)))).unwrap();
        assert_eq!((to.topic, to.partition), ("replies.x", None));
    }

    #[test]
    fn answers_go_where_the_request_said() {
        let e = Encoder::new(&topics::SubjectTopics::parse("fanout").unwrap());
        let mut addr = Vec::new();
        reply_address(b"resp.lg", Some(7), &mut addr);
        assert_eq!(addr, b"resp.lg:7");
        assert_eq!(split_reply_address(&addr), (&b"resp.lg"[..], Some(7)));
        assert_eq!(split_reply_address(b"resp.lg"), (&b"resp.lg"[..], None));
        let req = Message {
            topic: b"req",
            payload: b"q",
            reply_to: Some(&addr),
            correlation: Some(b"c12"),
            in_header: false,
            wire_len: 0,
        };
        let mut b = BytesMut::new();
        e.answer(&mut b, &req, b"ok");
        let r = one(&b);
        assert_eq!(
            (r.topic, r.partition, r.value),
            ("resp.lg", Some(7), &b"ok"[..])
        );
        assert_eq!(r.headers(), &[(CORRELATION_ID, &b"c12"[..])]);
        // No reply address: nothing to answer.
        b.clear();
        e.answer(
            &mut b,
            &Message {
                reply_to: None,
                ..req
            },
            b"ok",
        );
        assert!(b.is_empty());
    }

    #[test]
    fn subjects_go_to_their_topic_keyed_by_name() {
        let one_topic = Encoder::new(&topics::SubjectTopics::parse("fanout").unwrap());
        let each = Encoder::new(&topics::SubjectTopics::parse("s.{subject}.v1").unwrap());
        let mut b = BytesMut::new();
        one_topic.publish(&mut b, b"u/s17", &[b"FO", b"pad"]);
        each.publish(&mut b, b"u/s17", &[b"x"]);
        let recs: Vec<_> = records::iter(&b).map(|r| r.unwrap()).collect();
        assert_eq!(
            (recs[0].topic, recs[0].key, recs[0].value),
            ("fanout", Some(&b"u/s17"[..]), &b"FOpad"[..])
        );
        assert_eq!(
            (recs[1].topic, recs[1].key),
            ("s.u.s17.v1", Some(&b"u/s17"[..]))
        );
        assert!(std::ptr::eq(
            intern("fanout"),
            intern(&String::from("fanout"))
        ));
        // rr's pub scenario: level by level, as requests
        b.clear();
        Encoder::levels().publish(&mut b, b"req/17", &[b"p"]);
        let r = one(&b);
        assert_eq!(
            (r.topic, r.key, r.value, r.headers().len()),
            ("req", Some(&b"17"[..]), &b"p"[..], 0)
        );
    }
}
