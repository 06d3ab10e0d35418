//! Socket-free tests of the MQTT read side: dispatch of messages, acknowledgements, flow
//! control and the skipping of oversized frames.

use super::*;
use crate::link::{Link, Message, Transport};
use crate::mqtt::codec::OutPublish;
use crate::mqtt::Mqtt;

#[derive(Default)]
struct Seen {
    topics: Vec<Vec<u8>>,
    invalid: Vec<Invalid>,
    room: u32,
}

impl Handler for Seen {
    fn on_message(&mut self, m: &Message<'_>, _now: Instant) {
        self.topics.push(m.topic.to_vec());
    }
    fn on_invalid(&mut self, kind: Invalid) {
        self.invalid.push(kind);
    }
    fn on_room(&mut self) {
        self.room += 1;
    }
}

fn publish(topic: &str, payload_len: usize, qos: u8) -> Vec<u8> {
    let body = vec![b'x'; payload_len];
    let mut buf = BytesMut::new();
    codec::encode_publish(
        &mut buf,
        Protocol::V4,
        &OutPublish {
            topic: topic.as_bytes(),
            qos,
            pkid: 9,
            response_topic: None,
            correlation: None,
            payload: &[&body],
        },
    );
    buf.to_vec()
}

/// Feeds `stream` in chunks of `chunk` bytes, as reads would deliver it.
fn feed(stream: &[u8], chunk: usize) -> (Seen, usize) {
    let mut h = Seen::default();
    let (mut buf, mut acks) = (BytesMut::new(), BytesMut::new());
    let mut d = Decoder::new(Protocol::V4);
    let mut most_buffered = 0;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        most_buffered = most_buffered.max(buf.len());
        d.dispatch(&mut buf, &mut h, &mut acks, None, Instant::now())
            .expect("stream stays readable");
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(d.skip, 0);
    (h, most_buffered)
}

#[test]
fn oversized_frames_are_counted_and_skipped_without_losing_the_stream() {
    let mut stream = publish("a", 10, 0);
    stream.extend(publish("big", MAX_PACKET + 1000, 0));
    stream.extend(publish("b", 10, 0));
    stream.extend(publish("huge", 2 * MAX_PACKET, 0));
    stream.extend(publish("c", 10, 0));
    for chunk in [997, 16 * 1024, 1 << 20, stream.len()] {
        let (h, most) = feed(&stream, chunk);
        assert_eq!(
            h.topics,
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            "chunk {chunk}"
        );
        assert_eq!(h.invalid, [Invalid::TooLarge; 2], "chunk {chunk}");
        if chunk < MAX_PACKET {
            // skipped bytes are dropped as they arrive, never accumulated
            assert!(most <= 2 * chunk + 64, "chunk {chunk}: buffered {most}");
        }
    }
}

#[test]
fn a_broken_length_still_resets_the_link() {
    let mut h = Seen::default();
    let mut buf = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
    let r = Decoder::new(Protocol::V4).dispatch(
        &mut buf,
        &mut h,
        &mut BytesMut::new(),
        None,
        Instant::now(),
    );
    assert!(r.is_err());
}

#[test]
fn qos1_publishes_are_acknowledged_and_pubacks_free_room() {
    let mut h = Seen::default();
    let mut stream = publish("q", 3, 1);
    stream.extend_from_slice(&[0x40, 0x02, 0x00, 0x05]); // PUBACK 5
    stream.extend_from_slice(&[0x40, 0x02, 0x00, 0x06]); // PUBACK 6
    stream.extend_from_slice(&[0x20, 0x00]); // CONNACK: not expected now
    let mut buf = BytesMut::from(&stream[..]);
    let mut acks = BytesMut::new();
    // three QoS 1 publishes of ours wait for their acknowledgements
    let link = Link::new(Mqtt::FRAMING);
    let mut ours: Vec<u8> = (0..3).flat_map(|_| publish("r", 1, 1)).collect();
    link.send_flow(&mut ours, 3);
    assert_eq!(link.room(), u32::MAX - 3);
    Decoder::new(Protocol::V4)
        .dispatch(
            &mut buf,
            &mut h,
            &mut acks,
            Some(link.flow()),
            Instant::now(),
        )
        .unwrap();
    assert_eq!(&acks[..], &[0x40, 0x02, 0x00, 0x09]);
    assert_eq!(h.topics, [b"q".to_vec()]);
    assert_eq!(h.room, 2);
    assert_eq!(h.invalid, [Invalid::Unexpected]);
    assert_eq!(link.room(), u32::MAX - 1);
}
