//! Socket-free tests of the connection driver's pieces: backoff jitter, frame dispatch and the
//! skipping of oversized frames.

use super::*;
use crate::codec::OutPublish;

#[derive(Default)]
struct Seen {
    topics: Vec<Vec<u8>>,
    malformed: Vec<codec::CodecError>,
}

impl Inbound for Seen {
    fn on_publish(&mut self, p: &InPublish<'_>, _now: Instant) {
        self.topics.push(p.topic.to_vec());
    }
    fn on_malformed(&mut self, err: codec::CodecError) {
        self.malformed.push(err);
    }
    async fn flush(&mut self) {}
}

fn publish(topic: &str, payload_len: usize) -> Vec<u8> {
    let body = vec![b'x'; payload_len];
    let mut buf = BytesMut::new();
    codec::encode_publish(
        &mut buf,
        Protocol::V4,
        &OutPublish {
            topic: topic.as_bytes(),
            qos: 0,
            pkid: 0,
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
    let (mut buf, mut skip, mut acks) = (BytesMut::new(), 0usize, BytesMut::new());
    let status = LinkStatus::default();
    let mut most_buffered = 0;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        most_buffered = most_buffered.max(buf.len());
        dispatch(
            &mut buf,
            &mut skip,
            Protocol::V4,
            &mut h,
            &mut acks,
            &status,
            Instant::now(),
        )
        .expect("stream stays readable");
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    assert_eq!(skip, 0);
    (h, most_buffered)
}

#[test]
fn oversized_frames_are_counted_and_skipped_without_losing_the_stream() {
    let mut stream = publish("a", 10);
    stream.extend(publish("big", MAX_PACKET + 1000));
    stream.extend(publish("b", 10));
    stream.extend(publish("huge", 2 * MAX_PACKET));
    stream.extend(publish("c", 10));
    for chunk in [997, 16 * 1024, 1 << 20, stream.len()] {
        let (h, most) = feed(&stream, chunk);
        assert_eq!(
            h.topics,
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
            "chunk {chunk}"
        );
        assert_eq!(
            h.malformed,
            [codec::CodecError::TooLarge; 2],
            "chunk {chunk}"
        );
        if chunk < MAX_PACKET {
            // skipped bytes are dropped as they arrive, never accumulated
            assert!(most <= 2 * chunk + 64, "chunk {chunk}: buffered {most}");
        }
    }
}

#[test]
fn announced_len_reads_the_fixed_header() {
    assert_eq!(announced_len(&[0x30, 0x00]), Some(2));
    assert_eq!(announced_len(&[0x30, 0x7f]), Some(129));
    assert_eq!(announced_len(&[0x30, 0x80, 0x01]), Some(3 + 128));
    assert_eq!(
        announced_len(&[0x30, 0xff, 0xff, 0xff, 0x7f]),
        Some(5 + 268_435_455)
    );
    assert_eq!(announced_len(&[0x30, 0x80]), None);
    assert_eq!(announced_len(&[0x30]), None);
}

#[test]
fn a_broken_length_still_resets_the_link() {
    let mut h = Seen::default();
    let mut buf = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
    let mut skip = 0;
    let r = dispatch(
        &mut buf,
        &mut skip,
        Protocol::V4,
        &mut h,
        &mut BytesMut::new(),
        &LinkStatus::default(),
        Instant::now(),
    );
    assert!(r.is_err());
}

#[test]
fn backoff_grows_to_its_cap_with_full_jitter() {
    for attempt in 0..12 {
        let cap = (100u64 << attempt.min(6)).min(5_000);
        let samples: Vec<u64> = (0..200)
            .map(|_| backoff(attempt).as_millis() as u64)
            .collect();
        let (lo, hi) = (
            *samples.iter().min().unwrap(),
            *samples.iter().max().unwrap(),
        );
        assert!(lo >= cap / 4 && hi <= cap, "attempt {attempt}: {lo}..{hi}");
        // spread over most of the range: 100 links never retry in the same millisecond
        assert!(
            hi - lo >= cap / 2,
            "attempt {attempt}: {lo}..{hi} is not spread"
        );
        let mut distinct = samples.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() >= 40,
            "attempt {attempt}: {} distinct",
            distinct.len()
        );
    }
}

#[test]
fn final_errors_are_auth_tls_and_exhausted_budgets() {
    assert!(SessionError::Auth("BadUserNamePassword".into()).is_final());
    assert!(!SessionError::Closed.is_final());
    assert!(!SessionError::Timeout.is_final());
    let gave_up = SessionError::GaveUp {
        budget_ms: 1500,
        last: Box::new(SessionError::Timeout),
    };
    assert!(gave_up.is_final());
    let msg = gave_up.to_string();
    assert!(
        msg.contains("1500 ms") && msg.contains("CONNECT_RETRY_MS"),
        "{msg}"
    );
    let refused = SessionError::Transport(TransportError::Connect {
        addr: "127.0.0.1:1".into(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    });
    assert!(!refused.is_final());
    let untrusted = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    );
    let e = TransportError::Tls {
        addr: "h:1".into(),
        source: untrusted,
    };
    assert!(e.is_final());
    assert!(e.to_string().contains("TLS_CA_FILE"), "{e}");
    let alert = std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
    );
    // wrapped the way a WebSocket read reports it
    let ws = std::io::Error::other(tokio_tungstenite::tungstenite::Error::Io(alert));
    let e = TransportError::Tls {
        addr: "h:1".into(),
        source: ws,
    };
    assert!(e.is_final());
    assert!(e.to_string().contains("TLS_CERT_FILE"), "{e}");
}
