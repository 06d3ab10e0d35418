//! Fuzzing of the MQTT codec with proptest, in the normal test suite: more than 100,000 cases of
//! arbitrary bytes and of mutated valid frames go through `next_frame`, `decode_publish`,
//! `to_message` and `decode_header`. Each must return a value or an error, never panic, and
//! every value must stay inside the bytes it was decoded from.

use bytes::BytesMut;
use proptest::prelude::*;
use rr_common::codec::{Correlation, CORRELATION_LEN};
use rr_common::mqtt::codec::{
    decode_header, decode_publish, encode_header, encode_publish, next_frame, to_message, Frame,
    InPublish, OutPublish, Protocol,
};

const MAX: usize = 1 << 20;

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fn check_frame(buf: &[u8], f: Frame) {
    assert!((2..=5).contains(&f.header_len), "{f:?}");
    assert!(
        f.total_len >= f.header_len && f.total_len <= buf.len(),
        "{f:?}"
    );
    assert_eq!(f.first_byte, buf[0]);
}

fn check_publish(frame: &[u8], p: &InPublish<'_>) {
    assert!(p.qos < 3);
    for part in [
        Some(p.topic),
        p.response_topic,
        p.correlation,
        Some(p.payload),
    ]
    .into_iter()
    .flatten()
    {
        assert!(within(frame, part), "decoded slice outside the frame");
    }
    if let Ok(m) = to_message(p, frame.len()) {
        for part in [Some(m.topic), m.reply_to, m.correlation, Some(m.payload)]
            .into_iter()
            .flatten()
        {
            assert!(within(frame, part), "message slice outside the frame");
        }
        assert!(m.reply_to.is_none_or(|t| !t.is_empty()));
        if m.in_header {
            let h = decode_header(p.payload).unwrap();
            assert_eq!(m.payload, h.body);
            assert_eq!(m.correlation, Some(p.correlation.unwrap_or(h.correlation)));
        } else {
            assert_eq!((m.payload, m.correlation), (p.payload, p.correlation));
        }
    }
}

fn check_header(payload: &[u8]) {
    if let Ok(h) = decode_header(payload) {
        assert_eq!(
            6 + h.reply_topic.len() + h.correlation.len() + h.body.len(),
            payload.len()
        );
        assert!(within(payload, h.reply_topic) && within(payload, h.body));
    }
}

/// Runs every decoder over `bytes` as a stream of frames, as a connection would.
fn exercise(bytes: &[u8], proto: Protocol) {
    check_header(bytes);
    let mut rest = bytes;
    while let Ok(Some(f)) = next_frame(rest, MAX) {
        check_frame(rest, f);
        let frame = &rest[..f.total_len];
        if let Ok(p) = decode_publish(frame, f, proto) {
            check_publish(frame, &p);
            check_header(p.payload);
        }
        // a frame descriptor that lies about the lengths must not make the decoder read out of bounds
        let lying = Frame {
            total_len: f.total_len + 7,
            ..f
        };
        let _ = decode_publish(frame, lying, proto);
        rest = &rest[f.total_len..];
    }
}

fn proto_of(v5: bool) -> Protocol {
    if v5 {
        Protocol::V5
    } else {
        Protocol::V4
    }
}

/// A valid request or response frame, as the loadgen or the worker would send it.
fn valid_frame(
    v5: bool,
    topic: &[u8],
    reply: &[u8],
    corr: &[u8],
    body: &[u8],
    qos: u8,
    header_style: bool,
) -> Vec<u8> {
    let proto = proto_of(v5);
    let mut head = BytesMut::new();
    if header_style || !v5 {
        encode_header(&mut head, reply, corr);
    }
    let mut buf = BytesMut::new();
    encode_publish(
        &mut buf,
        proto,
        &OutPublish {
            topic,
            qos,
            pkid: 7,
            response_topic: (v5 && !header_style).then_some(reply),
            correlation: (v5 && !header_style).then_some(corr),
            payload: &[&head, body],
        },
    );
    buf.to_vec()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if v.is_empty() {
            break;
        }
        match *m {
            Mutation::Flip(i, b) => {
                let n = v.len();
                v[i % n] ^= b | 1;
            }
            Mutation::Truncate(i) => v.truncate(i % v.len()),
            Mutation::Insert(i, b) => {
                let n = v.len();
                v.insert(i % (n + 1), b);
            }
            Mutation::Remove(i) => {
                let n = v.len();
                v.remove(i % n);
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60_000))]

    /// Arbitrary bytes, with a PUBLISH first byte half of the time so decoding goes deep.
    #[test]
    fn arbitrary_bytes_never_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..512),
        publish_first in any::<bool>(),
        flags in 0u8..16,
        v5 in any::<bool>(),
    ) {
        if publish_first && !bytes.is_empty() {
            bytes[0] = 0x30 | flags;
            if bytes.len() > 1 {
                // a remaining length that fits, so the frame is complete
                let len = (bytes.len() - 2).min(127) as u8;
                bytes[1] = len;
            }
        }
        exercise(&bytes, proto_of(v5));
        exercise(&bytes, proto_of(!v5));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40_000))]

    /// Valid loadgen/worker frames with random mutations (flipped, inserted, removed bytes,
    /// truncation): the decoders must reject or decode, never panic.
    #[test]
    fn mutated_frames_never_panic(
        v5 in any::<bool>(),
        topic in proptest::collection::vec(any::<u8>(), 0..40),
        reply in proptest::collection::vec(any::<u8>(), 0..40),
        corr in proptest::collection::vec(any::<u8>(), 0..20),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        qos in 0u8..2,
        header_style in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let frame = valid_frame(v5, &topic, &reply, &corr, &body, qos, header_style);
        // unmutated: decodes back to what was encoded
        let f = next_frame(&frame, MAX).unwrap().unwrap();
        prop_assert_eq!(f.total_len, frame.len());
        let p = decode_publish(&frame, f, proto_of(v5)).unwrap();
        prop_assert_eq!(p.topic, &topic[..]);
        // every strict prefix is incomplete, never an error or a frame
        for cut in [0, 1, frame.len() / 2, frame.len() - 1] {
            prop_assert_eq!(next_frame(&frame[..cut], MAX), Ok(None));
        }
        let mutated = apply(frame, &muts);
        exercise(&mutated, Protocol::V5);
        exercise(&mutated, Protocol::V4);
    }

    /// Responses carrying a real correlation decode back to it; damaged ones never match
    /// a different request silently through a panic or an out-of-range read.
    #[test]
    fn correlations_survive_or_fail_cleanly(
        run in any::<u32>(), client in any::<u32>(), seq in any::<u32>(),
        v5 in any::<bool>(),
        cut in 0usize..(6 + CORRELATION_LEN),
    ) {
        let c = Correlation { run, client, seq };
        let frame = valid_frame(v5, b"resp/x/0", b"", &c.to_bytes(), b"ok", 0, !v5);
        let f = next_frame(&frame, MAX).unwrap().unwrap();
        let p = decode_publish(&frame, f, proto_of(v5)).unwrap();
        let m = to_message(&p, frame.len()).unwrap();
        prop_assert_eq!(Correlation::from_bytes(m.correlation.unwrap()), Ok(c));
        let mut head = BytesMut::new();
        encode_header(&mut head, b"", &c.to_bytes());
        let truncated = &head[..cut];
        prop_assert!(decode_header(truncated).is_err());
    }
}
