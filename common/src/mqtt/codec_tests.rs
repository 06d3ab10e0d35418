//! Byte-literal, cross-check (against rumqttc's mqttbytes) and property tests of the MQTT codec.

use super::*;
use crate::codec::Correlation;
use crate::mqtt::Encoder;
use bytes::Bytes;
use proptest::prelude::*;
use rumqttc::v5::mqttbytes::v5 as mb5;
use rumqttc::v5::mqttbytes::QoS;

fn decode_one(buf: &[u8], proto: Protocol) -> InPublish<'_> {
    let f = next_frame(buf, 1 << 20).unwrap().unwrap();
    assert_eq!(f.total_len, buf.len());
    decode_publish(buf, f, proto).unwrap()
}

#[test]
fn v4_publish_byte_literal() {
    let mut buf = BytesMut::new();
    encode_publish(
        &mut buf,
        Protocol::V4,
        &OutPublish {
            topic: b"req/1",
            qos: 0,
            pkid: 0,
            response_topic: Some(b"ignored"),
            correlation: None,
            payload: &[b"ab", b"c"],
        },
    );
    assert_eq!(&buf[..], b"\x30\x0a\x00\x05req/1abc");
}

#[test]
fn v5_publish_byte_literal_with_properties() {
    let mut buf = BytesMut::new();
    encode_publish(
        &mut buf,
        Protocol::V5,
        &OutPublish {
            topic: b"t",
            qos: 1,
            pkid: 0x0102,
            response_topic: Some(b"r"),
            correlation: Some(b"\x09"),
            payload: &[b"x"],
        },
    );
    let expected: &[u8] = b"\x32\x0f\x00\x01t\x01\x02\x08\x08\x00\x01r\x09\x00\x01\x09x";
    assert_eq!(&buf[..], expected);
    let p = decode_one(&buf, Protocol::V5);
    assert_eq!(p.topic, b"t");
    assert_eq!(p.qos, 1);
    assert_eq!(p.pkid, 0x0102);
    assert_eq!(p.response_topic, Some(&b"r"[..]));
    assert_eq!(p.correlation, Some(&b"\x09"[..]));
    assert_eq!(p.payload, b"x");
}

#[test]
fn v5_publish_matches_mqttbytes_encoding() {
    let corr = Correlation {
        run: 9,
        client: 123_456,
        seq: 77,
    }
    .to_bytes();
    let body = vec![0xabu8; 300]; // forces a two-byte remaining length
    let mut ours = BytesMut::new();
    encode_publish(
        &mut ours,
        Protocol::V5,
        &OutPublish {
            topic: b"req/17",
            qos: 1,
            pkid: 5,
            response_topic: Some(b"resp/inst/3"),
            correlation: Some(&corr),
            payload: &[&body],
        },
    );
    let props = mb5::PublishProperties {
        response_topic: Some("resp/inst/3".into()),
        correlation_data: Some(Bytes::copy_from_slice(&corr)),
        ..Default::default()
    };
    let mut p = mb5::Publish::new("req/17", QoS::AtLeastOnce, body.clone(), Some(props));
    p.pkid = 5;
    let mut theirs = BytesMut::new();
    mb5::Packet::Publish(p.clone())
        .write(&mut theirs, None)
        .unwrap();
    assert_eq!(ours, theirs);
    // and mqttbytes decodes ours to the same packet
    let back = mb5::Packet::read(&mut ours.clone(), None).unwrap();
    assert_eq!(back, mb5::Packet::Publish(p));
}

#[test]
fn v4_publish_matches_mqttbytes_encoding() {
    use rumqttc::mqttbytes::v4 as mb4;
    let mut ours = BytesMut::new();
    encode_publish(
        &mut ours,
        Protocol::V4,
        &OutPublish {
            topic: b"req/0",
            qos: 0,
            pkid: 0,
            response_topic: None,
            correlation: None,
            payload: &[b"hello"],
        },
    );
    let p = mb4::Publish::new("req/0", rumqttc::QoS::AtMostOnce, "hello");
    let mut theirs = BytesMut::new();
    mb4::Packet::Publish(p).write(&mut theirs, 1 << 20).unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn header_byte_literal_and_reply_to() {
    let mut buf = BytesMut::new();
    encode_header(&mut buf, b"resp/a/0", &[1, 2]);
    buf.extend_from_slice(b"body");
    assert_eq!(&buf[..], b"RR\x01\x00\x08resp/a/0\x02\x01\x02body");
    let h = decode_header(&buf).unwrap();
    assert_eq!(h.reply_topic, b"resp/a/0");
    assert_eq!(h.correlation, &[1, 2]);
    assert_eq!(h.body, b"body");
    let p = InPublish {
        topic: b"req/1",
        qos: 0,
        pkid: 0,
        response_topic: None,
        correlation: None,
        payload: &buf,
    };
    let m = to_message(&p, 99).unwrap();
    assert!(m.in_header);
    assert_eq!(m.reply_to, Some(&b"resp/a/0"[..]));
    assert_eq!(m.correlation, Some(&[1u8, 2][..]));
    assert_eq!(m.payload, b"body");
    assert_eq!(m.wire_len, 99);
}

#[test]
fn bad_headers_are_errors() {
    for bad in [
        &b""[..],
        b"R",
        b"XX\x01\x00\x00\x00",
        b"RR\x02\x00\x00\x00",
        b"RR\x01\x00\x05abc",
        b"RR\x01\x00\x00\x05ab",
    ] {
        assert_eq!(decode_header(bad), Err(CodecError::BadHeader), "{bad:?}");
    }
    // header present but empty reply topic: no reply address (an answer's header)
    let p = InPublish {
        topic: b"req/1",
        qos: 0,
        pkid: 0,
        response_topic: None,
        correlation: None,
        payload: b"RR\x01\x00\x00\x00",
    };
    let m = to_message(&p, 8).unwrap();
    assert_eq!((m.reply_to, m.correlation), (None, Some(&b""[..])));
    // a payload that opens with the header magic must carry a whole header
    for bad in [
        &b"RR\x01"[..],
        b"RR\x01\x00\x05abc",
        b"RR\x01\x00\x00\x05ab",
    ] {
        let p = InPublish { payload: bad, ..p };
        assert_eq!(to_message(&p, 8), Err(CodecError::BadHeader), "{bad:?}");
    }
    // anything else is a plain message, without reply address or correlation
    for plain in [&b""[..], b"R", b"RR", b"RR\x02\x00\x00\x00", b"body"] {
        let m = to_message(
            &InPublish {
                payload: plain,
                ..p
            },
            8,
        )
        .unwrap();
        assert_eq!(
            (m.reply_to, m.correlation, m.payload),
            (None, None, plain),
            "{plain:?}"
        );
        assert!(!m.in_header);
    }
}

#[test]
fn response_roundtrip_v5_and_v4() {
    let corr = Correlation {
        run: 1,
        client: 2,
        seq: 3,
    };
    for (proto, in_header) in [
        (Protocol::V5, false),
        (Protocol::V5, true),
        (Protocol::V4, true),
    ] {
        let req = Message {
            topic: b"req/1",
            payload: b"",
            reply_to: Some(b"resp/x/1"),
            correlation: Some(&corr.to_bytes()),
            in_header,
            wire_len: 0,
        };
        let mut buf = BytesMut::new();
        Encoder { proto }.answer(&mut buf, &req, b"ok", 0);
        let p = decode_one(&buf, proto);
        assert_eq!(p.topic, b"resp/x/1");
        let m = to_message(&p, buf.len()).unwrap();
        assert_eq!(
            Correlation::from_bytes(m.correlation.unwrap()).unwrap(),
            corr
        );
        assert_eq!(m.payload, b"ok");
        assert_eq!(m.in_header, in_header);
    }
}

#[test]
fn requests_carry_reply_topic_and_correlation_in_properties_or_the_header() {
    let corr = [7u8; 12];
    for proto in [Protocol::V5, Protocol::V4] {
        let mut buf = BytesMut::new();
        Encoder { proto }.request(&mut buf, b"req/3", b"resp/h/0", &corr, b"body", 0);
        let p = decode_one(&buf, proto);
        assert_eq!(p.topic, b"req/3");
        if proto == Protocol::V4 {
            // the payload is exactly the header as encode_header writes it, then the body
            let mut expected = BytesMut::new();
            encode_header(&mut expected, b"resp/h/0", &corr);
            expected.extend_from_slice(b"body");
            assert_eq!(p.payload, &expected[..]);
        }
        let m = to_message(&p, buf.len()).unwrap();
        assert_eq!(m.reply_to, Some(&b"resp/h/0"[..]));
        assert_eq!(m.correlation, Some(&corr[..]));
        assert_eq!(m.payload, b"body");
        assert_eq!(m.in_header, proto == Protocol::V4);
    }
    // a reply topic longer than 256 bytes is carried whole
    let long = vec![b't'; 1000];
    let mut buf = BytesMut::new();
    Encoder {
        proto: Protocol::V4,
    }
    .request(&mut buf, b"req/3", &long, &corr, b"", 1);
    let p = decode_one(&buf, Protocol::V4);
    assert_eq!(to_message(&p, 0).unwrap().reply_to, Some(&long[..]));
}

#[test]
fn frames_need_all_bytes() {
    assert_eq!(next_frame(b"", 100), Ok(None));
    assert_eq!(next_frame(b"\x30", 100), Ok(None));
    assert_eq!(next_frame(b"\x30\x05ab", 100), Ok(None));
    assert_eq!(next_frame(b"\x30\x80", 100), Ok(None));
    assert_eq!(
        next_frame(b"\x30\xff\xff\xff\xff\x01", 1 << 30),
        Err(CodecError::BadLength)
    );
    assert_eq!(next_frame(b"\x30\x7f", 10), Err(CodecError::TooLarge));
    let f = next_frame(b"\xd0\x00rest", 100).unwrap().unwrap();
    assert_eq!((f.packet_type(), f.header_len, f.total_len), (13, 2, 2));
}

#[test]
fn unknown_property_is_an_error() {
    // PUBLISH v5, topic "t", props len 2: id 0x7f (unknown)
    let buf = b"\x30\x06\x00\x01t\x02\x7f\x00";
    let f = next_frame(buf, 100).unwrap().unwrap();
    assert_eq!(
        decode_publish(buf, f, Protocol::V5),
        Err(CodecError::BadProperty)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn publish_roundtrip(
        topic in proptest::collection::vec(any::<u8>(), 0..300),
        qos in 0u8..2,
        pkid in any::<u16>(),
        rt in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        corr in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        v5 in any::<bool>(),
    ) {
        let proto = if v5 { Protocol::V5 } else { Protocol::V4 };
        let mut buf = BytesMut::new();
        let out = OutPublish {
            topic: &topic, qos, pkid,
            response_topic: rt.as_deref(), correlation: corr.as_deref(),
            payload: &[&payload],
        };
        encode_publish(&mut buf, proto, &out);
        let p = decode_one(&buf, proto);
        prop_assert_eq!(p.topic, &topic[..]);
        prop_assert_eq!(p.qos, qos);
        if qos > 0 { prop_assert_eq!(p.pkid, pkid); }
        prop_assert_eq!(p.payload, &payload[..]);
        if v5 {
            prop_assert_eq!(p.response_topic, rt.as_deref());
            prop_assert_eq!(p.correlation, corr.as_deref());
        }
    }

    #[test]
    fn header_roundtrip(
        topic in proptest::collection::vec(any::<u8>(), 0..500),
        corr in proptest::collection::vec(any::<u8>(), 0..255),
        body in proptest::collection::vec(any::<u8>(), 0..500),
    ) {
        let mut buf = BytesMut::new();
        encode_header(&mut buf, &topic, &corr);
        buf.extend_from_slice(&body);
        let h = decode_header(&buf).unwrap();
        prop_assert_eq!(h.reply_topic, &topic[..]);
        prop_assert_eq!(h.correlation, &corr[..]);
        prop_assert_eq!(h.body, &body[..]);
    }

    #[test]
    fn any_bytes_decode_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..400), v5 in any::<bool>()) {
        let proto = if v5 { Protocol::V5 } else { Protocol::V4 };
        if let Ok(Some(f)) = next_frame(&bytes, 1 << 20) {
            if let Ok(p) = decode_publish(&bytes, f, proto) {
                let _ = to_message(&p, f.total_len);
            }
        }
        let _ = decode_header(&bytes);
        // also as a PUBLISH body behind a valid fixed header
        let mut framed = BytesMut::new();
        framed.extend_from_slice(&[0x30]);
        put_varint(&mut framed, bytes.len());
        framed.extend_from_slice(&bytes);
        let f = next_frame(&framed, 1 << 20).unwrap().unwrap();
        if let Ok(p) = decode_publish(&framed, f, proto) {
            let _ = to_message(&p, f.total_len);
        }
    }
}

#[test]
fn set_publish_pkid_rewrites_only_the_identifier() {
    for proto in [Protocol::V4, Protocol::V5] {
        let mut buf = BytesMut::new();
        encode_publish(
            &mut buf,
            proto,
            &OutPublish {
                topic: b"resp/some/where",
                qos: 1,
                pkid: 7,
                response_topic: None,
                correlation: Some(b"0123456789ab"),
                payload: &[b"body"],
            },
        );
        let before = buf.clone();
        set_publish_pkid(&mut buf, 0x1234).unwrap();
        let p = decode_one(&buf, proto);
        assert_eq!(p.pkid, 0x1234);
        assert_eq!(p.topic, b"resp/some/where");
        assert_eq!(p.payload, b"body");
        // exactly two bytes changed
        let diff = buf
            .iter()
            .zip(before.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(diff, 2);
        // QoS 0 has no identifier; truncated packets are refused
        let mut q0 = BytesMut::new();
        encode_publish(
            &mut q0,
            proto,
            &OutPublish {
                topic: b"t",
                qos: 0,
                pkid: 0,
                response_topic: None,
                correlation: None,
                payload: &[b"x"],
            },
        );
        assert_eq!(
            set_publish_pkid(&mut q0, 1),
            Err(CodecError::UnexpectedPacket)
        );
        let n = buf.len();
        assert!(set_publish_pkid(&mut buf[..n - 1], 1).is_err());
    }
}

#[test]
fn fixed_header_reads_the_remaining_length_whatever_the_size() {
    let total = |b: &[u8]| fixed_header(b).unwrap().map(|f| f.total_len);
    assert_eq!(total(&[0x30, 0x00]), Some(2));
    assert_eq!(total(&[0x30, 0x7f]), Some(129));
    assert_eq!(total(&[0x30, 0x80, 0x01]), Some(3 + 128));
    assert_eq!(
        total(&[0x30, 0xff, 0xff, 0xff, 0x7f]),
        Some(5 + 268_435_455)
    );
    assert_eq!(total(&[0x30, 0x80]), None);
    assert_eq!(total(&[0x30]), None);
    assert_eq!(total(&[]), None);
    assert_eq!(
        fixed_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
        Err(CodecError::BadLength)
    );
}

fn qos_publishes(proto: Protocol) -> BytesMut {
    let mut b = BytesMut::new();
    for (qos, pkid) in [(1, 7), (0, 0), (1, 8)] {
        encode_publish(
            &mut b,
            proto,
            &OutPublish {
                topic: b"t",
                qos,
                pkid,
                response_topic: None,
                correlation: None,
                payload: &[b"x"],
            },
        );
    }
    b.extend_from_slice(PINGREQ);
    b
}

#[test]
fn qos1_publishes_are_counted_and_stamped_with_consecutive_identifiers() {
    for proto in [Protocol::V4, Protocol::V5] {
        let mut b = qos_publishes(proto);
        // what a new session inherits from a queue: the QoS 1 publishes, not QoS 0 or pings
        assert_eq!(flow_publishes(&b), 2);
        let before = b.clone();
        stamp_publishes(&mut b, 41);
        let mut rest = &b[..];
        let mut ids = Vec::new();
        while let Some(f) = next_frame(rest, 1 << 20).unwrap() {
            if f.packet_type() == 3 {
                ids.push(decode_publish(rest, f, proto).unwrap().pkid);
            }
            rest = &rest[f.total_len..];
        }
        assert_eq!(ids, [42, 0, 43]);
        // only the identifiers changed
        let diff = b.iter().zip(before.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 2);
        // the sequence wraps past 65535 without ever using 0
        stamp_publishes(&mut b, 65_534);
        let f = next_frame(&b, 1 << 20).unwrap().unwrap();
        assert_eq!(decode_publish(&b, f, proto).unwrap().pkid, 65_535);
        stamp_publishes(&mut b, 65_535);
        assert_eq!(decode_publish(&b, f, proto).unwrap().pkid, 1);
    }
}
