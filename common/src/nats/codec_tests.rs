//! Byte-literal and property tests of the NATS protocol codec.

use super::*;
use proptest::prelude::*;

fn publish(p: &Publish<'_>) -> Vec<u8> {
    let mut b = BytesMut::new();
    let n = encode_publish(&mut b, p, DEFAULT_MAX_PAYLOAD).unwrap();
    assert_eq!(n, b.len());
    b.to_vec()
}

/// What nats-server does to a client's `PUB`/`HPUB`: the same header and payload bytes, as
/// `MSG`/`HMSG` with the subscription id inserted after the subject.
fn as_delivered(pub_frame: &[u8], sid: &str) -> Vec<u8> {
    let nl = pub_frame.iter().position(|&b| b == b'\n').unwrap();
    let line = std::str::from_utf8(&pub_frame[..nl - 1]).unwrap();
    let mut args: Vec<&str> = line.split(' ').collect();
    args[0] = if args[0] == "HPUB" { "HMSG" } else { "MSG" };
    args.insert(2, sid);
    let mut out = args.join(" ").into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&pub_frame[nl + 1..]);
    out
}

fn one(buf: &[u8]) -> Op<'_> {
    let (op, len) = next_op(buf, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
    assert_eq!(len, buf.len(), "the whole frame is taken");
    op
}

fn msg(buf: &[u8]) -> Msg<'_> {
    match one(buf) {
        Op::Msg(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn pub_byte_literals() {
    let plain = Publish {
        subject: b"req.1",
        reply: None,
        correlation: None,
        payload: &[b"ab", b"c"],
    };
    assert_eq!(publish(&plain), b"PUB req.1 3\r\nabc\r\n");
    let with_reply = Publish {
        reply: Some(b"resp.a.0"),
        ..plain
    };
    assert_eq!(publish(&with_reply), b"PUB req.1 resp.a.0 3\r\nabc\r\n");
    let empty = Publish {
        payload: &[],
        ..plain
    };
    assert_eq!(publish(&empty), b"PUB req.1 0\r\n\r\n");
}

#[test]
fn hpub_byte_literal_carries_the_correlation_in_hex() {
    let p = Publish {
        subject: b"req.1",
        reply: Some(b"resp"),
        correlation: Some(&[0x0a, 0xff]),
        payload: &[b"abc"],
    };
    let expected: &[u8] =
        b"HPUB req.1 resp 34 37\r\nNATS/1.0\r\nRR-Correlation: 0aff\r\n\r\nabc\r\n";
    assert_eq!(publish(&p), expected);
    assert_eq!(header_block_len(2), 34);
    // an empty correlation is still a header (with an empty value), not a missing one
    let empty = publish(&Publish {
        correlation: Some(&[]),
        ..p
    });
    let delivered = as_delivered(&empty, "1");
    let mut out = [0u8; MAX_CORRELATION];
    assert_eq!(msg(&delivered).correlation(&mut out), Ok(Some(&[][..])));
}

#[test]
fn encode_respects_max_payload_and_correlation_length() {
    let mut b = BytesMut::from(&b"kept"[..]);
    let p = Publish {
        subject: b"s",
        reply: None,
        correlation: None,
        payload: &[&[0u8; 100]],
    };
    assert_eq!(encode_publish(&mut b, &p, 100), Ok(113));
    b.truncate(4);
    assert_eq!(
        encode_publish(&mut b, &p, 99),
        Err(NatsError::PayloadTooLarge)
    );
    // headers count against the limit too
    let h = Publish {
        correlation: Some(&[1]),
        ..p
    };
    assert_eq!(
        encode_publish(&mut b, &h, 100 + header_block_len(1) - 1),
        Err(NatsError::PayloadTooLarge)
    );
    let long = [0u8; MAX_CORRELATION + 1];
    let h = Publish {
        correlation: Some(&long),
        ..p
    };
    assert_eq!(
        encode_publish(&mut b, &h, usize::MAX),
        Err(NatsError::BadCorrelation)
    );
    assert_eq!(&b[..], b"kept", "a refused message appends nothing");
}

#[test]
fn connect_sub_unsub_ping_byte_literals() {
    let mut b = BytesMut::new();
    encode_sub(&mut b, b"req.*", Some(b"workers"), 1);
    encode_sub(&mut b, b"resp.h.12", None, 12);
    encode_unsub(&mut b, 12, None);
    encode_unsub(&mut b, 1, Some(5));
    b.put_slice(PING);
    b.put_slice(PONG);
    assert_eq!(
        &b[..],
        b"SUB req.* workers 1\r\nSUB resp.h.12 12\r\nUNSUB 12\r\nUNSUB 1 5\r\nPING\r\nPONG\r\n"
    );
}

#[test]
fn connect_asks_for_headers_and_quiet_mode() {
    let mut b = BytesMut::new();
    let c = Connect {
        name: "loadgen-1",
        user: Some("u\"ser"),
        pass: Some("hunter2"),
        tls_required: true,
    };
    encode_connect(&mut b, &c);
    assert!(b.starts_with(b"CONNECT {") && b.ends_with(b"}\r\n"));
    let json: serde_json::Value = serde_json::from_slice(&b[8..b.len() - 2]).unwrap();
    for (k, v) in [
        ("verbose", false),
        ("pedantic", false),
        ("headers", true),
        ("no_responders", false),
        ("tls_required", true),
    ] {
        assert_eq!(json[k], v, "{k}");
    }
    assert_eq!(json["user"], "u\"ser");
    assert_eq!(json["pass"], "hunter2");
    assert_eq!(json["name"], "loadgen-1");
    assert!(!format!("{c:?}").contains("hunter2"));
    b.clear();
    encode_connect(&mut b, &Connect::default());
    let json: serde_json::Value = serde_json::from_slice(&b[8..b.len() - 2]).unwrap();
    assert!(json.get("user").is_none() && json.get("pass").is_none());
}

#[test]
fn parses_info_from_nats_server() {
    let line =
        b"INFO {\"server_id\":\"NB7\",\"server_name\":\"NB7\",\"version\":\"2.9.10\",\"proto\":1,\
\"go\":\"go1.19.8\",\"host\":\"0.0.0.0\",\"port\":4222,\"headers\":true,\"auth_required\":true,\
\"max_payload\":1048576,\"client_id\":5,\"client_ip\":\"127.0.0.1\"} \r\n";
    let Op::Info(json) = one(line) else {
        panic!("INFO")
    };
    let info = parse_info(json).unwrap();
    assert_eq!(info.version, "2.9.10");
    assert!(info.headers && info.auth_required && !info.tls_required);
    assert_eq!(info.max_payload(), 1 << 20);
    assert_eq!(
        parse_info(b"{}").unwrap().max_payload(),
        DEFAULT_MAX_PAYLOAD
    );
    assert_eq!(parse_info(b"{oops"), Err(NatsError::BadInfo));
    assert_eq!(next_op(b"INFO\r\n", 10), Err(NatsError::BadArgs));
}

#[test]
fn parses_msg_and_hmsg() {
    let m = msg(b"MSG req.3 7 5\r\nhello\r\n");
    assert_eq!(
        (m.subject, m.sid, m.reply, m.headers, m.payload),
        (&b"req.3"[..], &b"7"[..], None, &b""[..], &b"hello"[..])
    );
    let m = msg(b"MSG req.3 7 _INBOX.x 0\r\n\r\n");
    assert_eq!((m.reply, m.payload), (Some(&b"_INBOX.x"[..]), &b""[..]));
    // verbs are case-insensitive, fields may be separated by tabs and repeated spaces
    let m = msg(b"msg\treq.3  7\t 2\r\nhi\r\n");
    assert_eq!((m.subject, m.payload), (&b"req.3"[..], &b"hi"[..]));
    let frame = b"HMSG resp.h.0 1 34 37\r\nNATS/1.0\r\nRR-Correlation: 0AfF\r\n\r\nabc\r\n";
    let m = msg(frame);
    assert_eq!(m.payload, b"abc");
    assert_eq!(m.headers.len(), 34);
    let mut out = [0u8; MAX_CORRELATION];
    assert_eq!(m.correlation(&mut out), Ok(Some(&[0x0a, 0xff][..])));
    let m = msg(b"HMSG s 1 r 12 12\r\nNATS/1.0\r\n\r\n\r\n");
    assert_eq!((m.reply, m.payload), (Some(&b"r"[..]), &b""[..]));
    assert_eq!(m.correlation(&mut out), Ok(None));
}

#[test]
fn control_operations() {
    assert_eq!(one(b"PING\r\n"), Op::Ping);
    assert_eq!(one(b"pong\r\n"), Op::Pong);
    assert_eq!(one(b"+OK\r\n"), Op::Ok);
    assert_eq!(
        one(b"-ERR 'Authorization Violation'\r\n"),
        Op::Err(b"Authorization Violation")
    );
    assert_eq!(one(b"-ERR unquoted\r\n"), Op::Err(b"unquoted"));
    assert_eq!(next_op(b"PING x\r\n", 10), Err(NatsError::BadArgs));
    // several operations in one read, taken one at a time
    let buf = b"PING\r\nMSG a 1 1\r\nx\r\nPONG\r\n";
    let (op, n) = next_op(buf, 10).unwrap().unwrap();
    assert_eq!((op, n), (Op::Ping, 6));
    let (op, m) = next_op(&buf[n..], 10).unwrap().unwrap();
    assert!(matches!(op, Op::Msg(Msg { payload: b"x", .. })));
    assert_eq!(next_op(&buf[n + m..], 10).unwrap().unwrap().0, Op::Pong);
}

#[test]
fn headers_status_and_lookup() {
    let h = Headers::parse(b"NATS/1.0 503\r\n\r\n").unwrap();
    assert_eq!(h.status(), Some(503));
    assert_eq!(h.get(b"anything"), None);
    let h = Headers::parse(b"NATS/1.0\r\nA: 1\r\nrr-correlation:  beef \r\nA: 2\r\n\r\n").unwrap();
    assert_eq!(h.status(), None);
    assert_eq!(h.get(b"a"), Some(&b"1"[..]));
    assert_eq!(h.get(CORRELATION_HEADER), Some(&b"beef"[..]));
    assert_eq!(h.get(b"missing"), None);
    for bad in [
        &b""[..],
        b"NATS/1.0\r\n",
        b"HTTP/1.0\r\n\r\n",
        b"NATS/1.01\r\n\r\n",
        b"NATS/1.0\r\nno colon\r\n\r\n",
        b"NATS/1.0\r\nA: 1\nB: 2\r\n\r\n",
    ] {
        assert_eq!(Headers::parse(bad), Err(NatsError::BadHeader), "{bad:?}");
    }
}

#[test]
fn a_malformed_header_is_an_invalid_message_not_a_broken_stream() {
    let mut out = [0u8; MAX_CORRELATION];
    let m = msg(b"HMSG s 1 4 6\r\nJUNKab\r\n");
    assert_eq!(m.payload, b"ab");
    assert_eq!(m.correlation(&mut out), Err(NatsError::BadHeader));
    let m = msg(b"HMSG s 1 34 34\r\nNATS/1.0\r\nRR-Correlation: 0xzz\r\n\r\n\r\n");
    assert_eq!(m.correlation(&mut out), Err(NatsError::BadCorrelation));
    let odd = b"HMSG s 1 33 33\r\nNATS/1.0\r\nRR-Correlation: abc\r\n\r\n\r\n";
    assert_eq!(
        msg(odd).correlation(&mut out),
        Err(NatsError::BadCorrelation)
    );
}

#[test]
fn broken_framing_is_an_error() {
    let cases: &[(&[u8], NatsError)] = &[
        (b"MSG a 1 3\r\nabcXY", NatsError::BadTerminator),
        (b"MSG a 1\r\n", NatsError::BadArgs),
        (b"MSG a 1 b c d\r\n", NatsError::BadArgs),
        (b"MSG a 1 -3\r\n", NatsError::BadNumber),
        (b"MSG a 1 99999999999999999999\r\n", NatsError::BadNumber),
        (b"HMSG a 1 5 4\r\n", NatsError::BadArgs),
        (b"HMSG a 1 4\r\n", NatsError::BadArgs),
        (b"FOO bar\r\n", NatsError::UnknownOp),
        (b"PING\n", NatsError::BadLineEnd),
        (b"\n", NatsError::BadLineEnd),
    ];
    for (buf, err) in cases {
        assert_eq!(next_op(buf, 1 << 20), Err(*err), "{buf:?}");
    }
    let long = vec![b'x'; MAX_CONTROL_LINE + 2];
    assert_eq!(next_op(&long, 10), Err(NatsError::ControlLineTooLong));
    assert_eq!(next_op(&long[..MAX_CONTROL_LINE], 10), Ok(None));
}

#[test]
fn an_oversized_message_names_its_frame_length_to_skip() {
    // the header alone is enough to tell, before the payload arrives
    assert_eq!(
        next_op(b"MSG a 1 11\r\n", 10),
        Err(NatsError::TooLarge(12 + 11 + 2))
    );
    assert_eq!(
        next_op(b"HMSG a 1 2 11\r\n", 10),
        Err(NatsError::TooLarge(15 + 11 + 2))
    );
    assert!(next_op(b"MSG a 1 10\r\n", 10).unwrap().is_none());
}

#[test]
fn every_prefix_of_a_frame_needs_more() {
    let frame = b"HMSG resp.h.0 1 r 34 37\r\nNATS/1.0\r\nRR-Correlation: 0aff\r\n\r\nabc\r\n";
    for i in 0..frame.len() {
        assert_eq!(next_op(&frame[..i], 1 << 20), Ok(None), "prefix {i}");
    }
    assert!(next_op(frame, 1 << 20).unwrap().is_some());
}

#[test]
fn decode_hex_limits() {
    let mut out = [0u8; 2];
    assert_eq!(decode_hex(b"", &mut out), Some(&[][..]));
    assert_eq!(decode_hex(b"0102", &mut out), Some(&[1, 2][..]));
    assert_eq!(decode_hex(b"010203", &mut out), None);
    assert_eq!(decode_hex(b"0g", &mut out), None);
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,8}"
}

fn subject() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 1..4).prop_map(|t| t.join("."))
}

proptest! {
    #[test]
    fn any_bytes_parse_to_an_op_more_or_an_error(buf in prop::collection::vec(any::<u8>(), 0..300), max in 0usize..64) {
        if let Ok(Some((_, len))) = next_op(&buf, max) {
            prop_assert!(len > 0 && len <= buf.len());
        }
    }

    #[test]
    fn any_bytes_after_a_verb_never_panic(verb in prop::sample::select(vec!["MSG ", "HMSG ", "INFO ", "-ERR ", "PING", "+OK"]), tail in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = verb.as_bytes().to_vec();
        buf.extend_from_slice(&tail);
        if let Ok(Some((Op::Msg(m), _))) = next_op(&buf, 1 << 20) {
            let mut out = [0u8; MAX_CORRELATION];
            let _ = m.correlation(&mut out);
        }
    }

    #[test]
    fn any_header_block_parses_or_errs(block in prop::collection::vec(any::<u8>(), 0..120)) {
        let mut b = HEADER_VERSION.to_vec();
        b.extend_from_slice(&block);
        if let Ok(h) = Headers::parse(&b) {
            let _ = (h.status(), h.get(CORRELATION_HEADER));
        }
    }

    #[test]
    fn what_we_publish_is_what_a_subscriber_receives(
        subj in subject(),
        reply in prop::option::of(subject()),
        corr in prop::option::of(prop::collection::vec(any::<u8>(), 0..=MAX_CORRELATION)),
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4),
        split in any::<prop::sample::Index>(),
    ) {
        let parts: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let frame = publish(&Publish {
            subject: subj.as_bytes(),
            reply: reply.as_deref().map(str::as_bytes),
            correlation: corr.as_deref(),
            payload: &parts,
        });
        let delivered = as_delivered(&frame, "42");
        // split anywhere: the first part needs more (or is the whole frame)
        let at = split.index(delivered.len());
        prop_assert_eq!(next_op(&delivered[..at], 1 << 20), Ok(None));
        let m = msg(&delivered);
        prop_assert_eq!(m.subject, subj.as_bytes());
        prop_assert_eq!(m.sid, b"42");
        prop_assert_eq!(m.reply, reply.as_deref().map(str::as_bytes));
        prop_assert_eq!(m.payload, pieces.concat());
        let mut out = [0u8; MAX_CORRELATION];
        prop_assert_eq!(m.correlation(&mut out).unwrap(), corr.as_deref());
    }
}
