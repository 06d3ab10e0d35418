//! Tests of the seam's shared pieces: reconnect backoff, which errors are final, and a link's
//! flow control as engines see it.

use super::*;
use crate::net::TransportError;

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

/// A transport hook for the tests: every `F` byte is a flow-controlled message.
static TEST_FRAMING: Framing = Framing {
    count_flow: |b| b.iter().filter(|&&x| x == b'F').count() as u32,
    stamp: |_, _| {},
};

#[test]
fn room_is_the_limit_minus_what_waits_for_acknowledgement() {
    let link = Link::new(&TEST_FRAMING);
    assert!(!link.is_up());
    assert_eq!(link.room(), u32::MAX);
    link.flow.limit.store(10, Relaxed);
    // a batch of plain messages takes no room
    assert_eq!(link.send(b"abc"), Sent::Queued);
    assert_eq!(link.room(), 10);
    // flow-controlled messages do, until acknowledged
    assert_eq!(link.send_flow(&mut b"F.F.F".to_vec(), 3), Sent::Queued);
    assert_eq!(link.room(), 7);
    link.flow.acked(2);
    assert_eq!(link.room(), 9);
    // acknowledgements never take the count below zero
    link.flow.acked(5);
    assert_eq!(link.room(), 10);
    // more outstanding than the limit (a new session with a smaller one): no room, no wrap
    link.flow.unacked.store(12, Relaxed);
    assert_eq!(link.room(), 0);
    assert_eq!(link.backlog(), 8);
}

#[test]
fn flow_controlled_messages_get_consecutive_identifiers_from_the_link() {
    static SEEN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());
    static RECORDING: Framing = Framing {
        count_flow: |_| 0,
        stamp: |b, first| SEEN.lock().unwrap().push(first + b.len() as u32 * 1000),
    };
    let link = Link::new(&RECORDING);
    link.send_flow(&mut [0u8; 2], 2);
    link.send_flow(&mut [0u8; 3], 3);
    // nothing flow-controlled: nothing stamped
    link.send_flow(&mut [0u8; 1], 0);
    link.send(&[0u8; 4]);
    assert_eq!(*SEEN.lock().unwrap(), [2000, 3002]);
    assert_eq!(link.room(), u32::MAX - 5);
}

#[test]
fn refused_bytes_take_no_room() {
    let link = Link::new(&TEST_FRAMING);
    let big = vec![b'.'; MAX_QUEUED];
    assert_eq!(link.send(&big), Sent::Queued);
    assert_eq!(link.send_flow(&mut b"FF".to_vec(), 2), Sent::Full);
    assert_eq!(link.room(), u32::MAX);
}
