//! The WebSocket unframer and framer on hand-built server frames: every split of a read, extended
//! lengths, fragmented and text messages, ping, pong, close, and frames a server must not send.

use super::*;

/// A server frame (unmasked): `fin`, opcode, payload.
fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![if fin { 0x80 } else { 0 } | op];
    let len = payload.len();
    if len < 126 {
        v.push(len as u8);
    } else if len <= 0xffff {
        v.push(126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// Feeds `wire` to a fresh unframer in reads of the given sizes (cycled); returns the stream
/// bytes it handed on and the unframer.
fn feed(wire: &[u8], sizes: &[usize]) -> (Vec<u8>, Unframer) {
    let mut u = Unframer::default();
    let mut buf = BytesMut::new();
    let (mut at, mut i) = (0, 0);
    while at < wire.len() {
        let n = sizes[i % sizes.len()].min(wire.len() - at);
        i += 1;
        let start = buf.len();
        buf.extend_from_slice(&wire[at..at + n]);
        at += n;
        u.unframe(&mut buf, start).expect("valid frames");
    }
    (buf.to_vec(), u)
}

/// A client frame's payload, unmasked again.
fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
    assert_eq!(frame[0] & 0x80, 0x80, "fin");
    assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
    let (len, at) = match frame[1] & 0x7f {
        126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
        127 => (
            u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask = &frame[at..at + 4];
    let payload = &frame[at + 4..];
    assert_eq!(payload.len(), len, "length");
    let plain = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    (frame[0] & 0x0f, plain)
}

fn mixed_stream() -> (Vec<u8>, Vec<u8>) {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    let mid: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    wire.extend(server_frame(true, OP_BINARY, b"hello"));
    expect.extend_from_slice(b"hello");
    wire.extend(server_frame(true, OP_BINARY, &mid)); // 16-bit length
    expect.extend_from_slice(&mid);
    wire.extend(server_frame(true, OP_PONG, b"p")); // dropped
    wire.extend(server_frame(false, OP_BINARY, &big[..1000])); // fragmented, 64-bit total
    wire.extend(server_frame(true, OP_PING, b"")); // a control frame between fragments
    wire.extend(server_frame(false, OP_CONTINUATION, &big[1000..])); // 64-bit length
    wire.extend(server_frame(true, OP_CONTINUATION, b"")); // empty final fragment
    expect.extend_from_slice(&big);
    wire.extend(server_frame(true, OP_TEXT, b"not mqtt")); // dropped, with its continuation
    wire.extend(server_frame(false, OP_TEXT, b"nor"));
    wire.extend(server_frame(true, OP_CONTINUATION, b" this"));
    wire.extend(server_frame(true, OP_BINARY, b"")); // empty message
    wire.extend(server_frame(true, OP_BINARY, b"end"));
    expect.extend_from_slice(b"end");
    (wire, expect)
}

#[test]
fn payloads_pass_whatever_the_reads_split() {
    let (wire, expect) = mixed_stream();
    for sizes in [
        &[usize::MAX][..],
        &[1],
        &[2],
        &[3, 1, 13],
        &[5, 9],
        &[125, 1, 4096],
        &[16 * 1024],
    ] {
        let (out, mut u) = feed(&wire, sizes);
        assert_eq!(out.len(), expect.len(), "reads of {sizes:?}");
        assert!(out == expect, "reads of {sizes:?}: bytes differ");
        assert!(!u.closed());
        // the ping was answered
        let (op, payload) = unmask(&u.take_reply().expect("a pong"));
        assert_eq!((op, payload.len()), (OP_PONG, 0));
        assert!(u.take_reply().is_none());
    }
}

#[test]
fn every_header_split_point_works() {
    // frames whose headers are 2, 4 and 10 bytes, cut at every byte of the stream
    let mut wire = server_frame(true, OP_BINARY, b"ab");
    wire.extend(server_frame(true, OP_BINARY, &[1u8; 200]));
    wire.extend(server_frame(true, OP_BINARY, &[2u8; 70_000]));
    let mut expect = b"ab".to_vec();
    expect.extend_from_slice(&[1u8; 200]);
    expect.extend_from_slice(&[2u8; 70_000]);
    for cut in 1..220 {
        let mut u = Unframer::default();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&wire[..cut]);
        u.unframe(&mut buf, 0).unwrap();
        let start = buf.len();
        buf.extend_from_slice(&wire[cut..]);
        u.unframe(&mut buf, start).unwrap();
        assert!(buf[..] == expect[..], "cut at {cut}");
    }
}

#[test]
fn a_ping_is_answered_with_its_payload() {
    let mut wire = server_frame(true, OP_PING, b"first");
    wire.extend(server_frame(true, OP_BINARY, b"x"));
    wire.extend(server_frame(true, OP_PING, b"are you there"));
    let (out, mut u) = feed(&wire, &[3]);
    assert_eq!(out, b"x");
    // one pong owed: to the latest ping
    let (op, payload) = unmask(&u.take_reply().expect("pong"));
    assert_eq!(op, OP_PONG);
    assert_eq!(payload, b"are you there");
}

#[test]
fn close_ends_the_stream_and_is_answered() {
    let mut wire = server_frame(true, OP_BINARY, b"last");
    let mut close = 1001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"going away");
    wire.extend(server_frame(true, OP_CLOSE, &close));
    wire.extend(server_frame(true, OP_BINARY, b"after close"));
    let (out, mut u) = feed(&wire, &[usize::MAX]);
    assert_eq!(out, b"last", "nothing after the close counts");
    assert!(u.closed());
    let (op, payload) = unmask(&u.take_reply().expect("close answer"));
    assert_eq!((op, payload), (OP_CLOSE, 1001u16.to_be_bytes().to_vec()));
}

#[test]
fn frames_a_server_must_not_send_are_errors() {
    let masked = [0x82, 0x81, 1, 2, 3, 4, b'x' ^ 1];
    let reserved = [0xC2, 0x01, b'x'];
    let unknown = [0x83, 0x00];
    let long_ping = server_frame(true, OP_PING, &[0u8; 126]);
    let fragmented_ping = server_frame(false, OP_PING, b"p");
    for (name, wire) in [
        ("masked", &masked[..]),
        ("reserved bits", &reserved[..]),
        ("unknown opcode", &unknown[..]),
        ("long ping", &long_ping[..]),
        ("fragmented ping", &fragmented_ping[..]),
    ] {
        let mut u = Unframer::default();
        let mut buf = BytesMut::from(wire);
        let e = u.unframe(&mut buf, 0).expect_err(name);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{name}: {e}");
    }
}

#[test]
fn bytes_before_start_stay_untouched() {
    let mut u = Unframer::default();
    let mut buf = BytesMut::from(&b"kept"[..]);
    buf.extend_from_slice(&server_frame(true, OP_BINARY, b"new"));
    u.unframe(&mut buf, 4).unwrap();
    assert_eq!(&buf[..], b"keptnew");
}

#[test]
fn client_frames_are_masked_with_the_right_length_encoding() {
    for len in [0usize, 1, 125, 126, 65_535, 65_536, 100_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = BytesMut::new();
        frame(&mut out, OP_BINARY, &payload);
        let (op, plain) = unmask(&out);
        assert_eq!(op, OP_BINARY);
        assert!(plain == payload, "length {len}");
    }
}

#[test]
fn the_upgrade_answer_is_checked() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    check_response(ok.as_bytes(), key).expect("RFC 6455's example");
    let lower = ok.replace("Sec-WebSocket-Accept", "sec-websocket-accept");
    check_response(lower.as_bytes(), key).expect("header names are case-insensitive");
    let e = check_response(b"HTTP/1.1 404 Not Found\r\n\r\n", key).unwrap_err();
    assert_eq!(e, "HTTP error: HTTP/1.1 404 Not Found");
    let wrong = ok.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAA");
    assert!(check_response(wrong.as_bytes(), key)
        .unwrap_err()
        .contains("Sec-WebSocket-Accept"));
    let none = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
    assert!(check_response(none.as_bytes(), key).is_err());
}
