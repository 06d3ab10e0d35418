//! Byte-literal, cross-check (against rumqttc's mqttbytes) and property tests of the wire codec.

use super::*;
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
fn correlation_bytes_are_big_endian() {
    let c = Correlation {
        run: 0x01020304,
        client: 7,
        seq: 0x0a0b0c0d,
    };
    assert_eq!(
        c.to_bytes(),
        [1, 2, 3, 4, 0, 0, 0, 7, 0x0a, 0x0b, 0x0c, 0x0d]
    );
    assert_eq!(Correlation::from_bytes(&c.to_bytes()).unwrap(), c);
    assert_eq!(
        Correlation::from_bytes(&[1, 2, 3]),
        Err(CodecError::BadCorrelation)
    );
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
    let r = reply_to(&p).unwrap();
    assert!(r.header_style);
    assert_eq!(r.topic, b"resp/a/0");
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
    // header present but empty reply topic
    let p = InPublish {
        topic: b"req/1",
        qos: 0,
        pkid: 0,
        response_topic: None,
        correlation: None,
        payload: b"RR\x01\x00\x00\x00",
    };
    assert_eq!(reply_to(&p), Err(CodecError::NoReplyTopic));
}

#[test]
fn response_roundtrip_v5_and_v4() {
    let corr = Correlation {
        run: 1,
        client: 2,
        seq: 3,
    };
    for (proto, header_style) in [
        (Protocol::V5, false),
        (Protocol::V5, true),
        (Protocol::V4, true),
    ] {
        let req = ReplyTo {
            topic: b"resp/x/1",
            correlation: &corr.to_bytes(),
            header_style,
            body: b"",
        };
        let mut buf = BytesMut::new();
        encode_response(&mut buf, proto, &req, 0, 0, b"ok");
        let p = decode_one(&buf, proto);
        assert_eq!(p.topic, b"resp/x/1");
        assert_eq!(response_correlation(&p).unwrap(), corr);
    }
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
                let _ = reply_to(&p);
                let _ = response_correlation(&p);
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
            let _ = reply_to(&p);
            let _ = response_correlation(&p);
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
