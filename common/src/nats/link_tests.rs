//! Socket-free tests of the NATS read side: messages with their reply subject and correlation,
//! PONGs for PINGs, malformed headers counted, oversized messages skipped across reads.

use super::*;
use crate::nats::codec::{encode_publish, Publish};

/// (subject, reply, correlation, payload)
type Got = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>);

#[derive(Default)]
struct Seen {
    messages: Vec<Got>,
    invalid: Vec<Invalid>,
}

impl Handler for Seen {
    fn on_message(&mut self, m: &Message<'_>, _now: Instant) {
        assert!(!m.in_header);
        self.messages.push((
            m.topic.to_vec(),
            m.reply_to.map(<[u8]>::to_vec),
            m.correlation.map(<[u8]>::to_vec),
            m.payload.to_vec(),
        ));
    }
    fn on_invalid(&mut self, kind: Invalid) {
        self.invalid.push(kind);
    }
}

/// A message as nats-server delivers what `p` publishes (sid 1).
fn delivered(p: &Publish<'_>) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_publish(&mut b, p, usize::MAX).unwrap();
    let text = b.to_vec();
    let nl = text.iter().position(|&c| c == b'\n').unwrap();
    let line = String::from_utf8(text[..nl - 1].to_vec()).unwrap();
    let mut args: Vec<&str> = line.split(' ').collect();
    args[0] = if args[0] == "HPUB" { "HMSG" } else { "MSG" };
    args.insert(2, "1");
    let mut out = args.join(" ").into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&text[nl + 1..]);
    out
}

fn msg(subject: &str, payload_len: usize) -> Vec<u8> {
    let body = vec![b'x'; payload_len];
    delivered(&Publish {
        subject: subject.as_bytes(),
        reply: None,
        correlation: None,
        payload: &[&body],
    })
}

/// Feeds `stream` in chunks of `chunk` bytes; returns what the handler saw, the replies and
/// the most bytes ever buffered.
fn feed(stream: &[u8], chunk: usize, max_payload: usize) -> (Seen, Vec<u8>, usize) {
    let mut h = Seen::default();
    let (mut buf, mut replies) = (BytesMut::new(), BytesMut::new());
    let mut d = Decoder::new(max_payload);
    let mut most = 0;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        most = most.max(buf.len());
        d.dispatch(&mut buf, &mut h, &mut replies, None, Instant::now())
            .expect("stream stays readable");
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(d.skip, 0);
    (h, replies.to_vec(), most)
}

#[test]
fn requests_arrive_with_reply_subject_and_correlation_and_pings_get_pongs() {
    let mut stream = delivered(&Publish {
        subject: b"req.3",
        reply: Some(b"resp.h.0"),
        correlation: Some(&[1, 2, 3]),
        payload: &[b"body"],
    });
    stream.extend_from_slice(b"PING\r\n");
    stream.extend(msg("plain", 2));
    stream.extend_from_slice(b"INFO {\"max_payload\":2048}\r\n-ERR 'Permissions Violation'\r\n");
    for chunk in [1, 7, stream.len()] {
        let (h, replies, _) = feed(&stream, chunk, 1 << 20);
        assert_eq!(
            h.messages,
            [
                (
                    b"req.3".to_vec(),
                    Some(b"resp.h.0".to_vec()),
                    Some(vec![1, 2, 3]),
                    b"body".to_vec()
                ),
                (b"plain".to_vec(), None, None, b"xx".to_vec()),
            ],
            "chunk {chunk}"
        );
        assert_eq!(replies, b"PONG\r\n");
        assert!(h.invalid.is_empty());
    }
}

#[test]
fn a_malformed_header_is_counted_and_the_link_stays_up() {
    let mut stream = b"HMSG s 1 r 6 8\r\nJUNK\r\nab\r\n".to_vec();
    stream.extend(b"HMSG s 1 r 34 34\r\nNATS/1.0\r\nRR-Correlation: 0xzz\r\n\r\n\r\n");
    stream.extend(msg("after", 1));
    let (h, _, _) = feed(&stream, 5, 1 << 20);
    assert_eq!(h.invalid, [Invalid::Malformed; 2]);
    assert_eq!(h.messages.len(), 1);
}

#[test]
fn oversized_messages_are_counted_and_skipped_without_losing_the_stream() {
    let max = 64 * 1024;
    let mut stream = msg("a", 10);
    stream.extend(msg("big", max + 1000));
    stream.extend(msg("b", 10));
    stream.extend(msg("huge", 4 * max));
    stream.extend(msg("c", 10));
    for chunk in [997, 16 * 1024, stream.len()] {
        let (h, _, most) = feed(&stream, chunk, max);
        let subjects: Vec<Vec<u8>> = h.messages.iter().map(|m| m.0.clone()).collect();
        assert_eq!(subjects, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(h.invalid, [Invalid::TooLarge; 2], "chunk {chunk}");
        if chunk < max {
            // skipped bytes are dropped as they arrive, never accumulated
            assert!(most <= 2 * chunk + 64, "chunk {chunk}: buffered {most}");
        }
    }
}

#[test]
fn an_info_update_changes_the_limit() {
    let mut stream = b"INFO {\"max_payload\":100}\r\n".to_vec();
    stream.extend(msg("fits", 100));
    stream.extend(msg("now-too-big", 101));
    let (h, _, _) = feed(&stream, stream.len(), 1 << 20);
    assert_eq!(h.messages.len(), 1);
    assert_eq!(h.invalid, [Invalid::TooLarge]);
}

#[test]
fn broken_framing_is_an_error() {
    let mut h = Seen::default();
    let (mut buf, mut replies) = (BytesMut::from(&b"WHAT\r\n"[..]), BytesMut::new());
    let err = Decoder::new(1 << 20)
        .dispatch(&mut buf, &mut h, &mut replies, None, Instant::now())
        .unwrap_err();
    assert!(err.contains("unknown protocol operation"), "{err}");
}
