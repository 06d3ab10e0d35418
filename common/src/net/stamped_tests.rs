use super::*;
use crate::net::{WireReader, WireWriter};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream as TokioTcp};

async fn pair() -> (TokioTcp, TokioTcp) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TokioTcp::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// A plain-TCP session as `net::over` makes it, turned into one read at the set's ticks.
fn stamped_session(a: TokioTcp, set: &ReadSet) -> (WireReader, WireWriter, Arc<Notify>) {
    let (r, w) = a.into_split();
    let mut reader = WireReader::Tcp(r);
    let mut writer = WireWriter::Tcp(Arc::new(crate::net::TcpOut::Split(w)));
    let due = Arc::new(Notify::new());
    let token = set.join(due.clone());
    assert!(reader.read_at_ticks(&mut writer, set, token, &due));
    (reader, writer, due)
}

#[tokio::test]
async fn bytes_are_read_when_the_set_is_polled_with_the_time_they_arrived() {
    let set = ReadSet::new().unwrap();
    let (a, mut b) = pair().await;
    let (mut reader, _writer, _due) = stamped_session(a, &set);
    let mut buf = BytesMut::new();
    // nothing arrived: the set reports nothing and the reader waits
    assert_eq!(set.poll(), 0);
    let waited = tokio::time::timeout(Duration::from_millis(50), reader.read_into(&mut buf)).await;
    assert!(waited.is_err(), "read before the set reported data");
    let sent = Instant::now();
    b.write_all(b"hello").await.unwrap();
    // the bytes are not read on arrival: only when the set is polled
    tokio::time::sleep(Duration::from_millis(30)).await;
    let read_at = Instant::now();
    assert_eq!(set.poll(), 1);
    let n = tokio::time::timeout(Duration::from_secs(5), reader.read_into(&mut buf))
        .await
        .expect("read after the poll")
        .unwrap();
    assert_eq!(&buf[..n], b"hello");
    let at = reader.arrival().expect("a kernel receive timestamp");
    // the kernel's arrival, not the read 30 ms later
    assert!(
        at >= sent - Duration::from_millis(2),
        "arrival before the send"
    );
    assert!(
        at + Duration::from_millis(20) < read_at,
        "arrival {:?} before the read, expected the kernel's time",
        read_at - at
    );
}

#[tokio::test]
async fn a_closed_connection_is_found_at_the_next_poll() {
    let set = ReadSet::new().unwrap();
    let (a, b) = pair().await;
    let (mut reader, _writer, _due) = stamped_session(a, &set);
    drop(b);
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while set.poll() == 0 {
        assert!(Instant::now() < deadline, "close never reported");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(reader.read_into(&mut buf).await.unwrap(), 0);
}

#[tokio::test]
async fn writes_go_out_through_the_stamped_socket() {
    let set = ReadSet::new().unwrap();
    let (a, mut b) = pair().await;
    let (_reader, mut writer, _due) = stamped_session(a, &set);
    writer
        .write_all(bytes::Bytes::from_static(b"ping"))
        .await
        .unwrap();
    let mut got = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut b, &mut got)
        .await
        .unwrap();
    assert_eq!(&got, b"ping");
}

#[test]
fn a_timestamp_ahead_of_the_clock_counts_as_now() {
    let future = SystemTime::now() + Duration::from_secs(60);
    let d = future.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let before = Instant::now();
    let at = to_instant(d.as_secs() as i64, i64::from(d.subsec_nanos()));
    assert!(at >= before);
    let past = SystemTime::now() - Duration::from_millis(200);
    let d = past.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let at = to_instant(d.as_secs() as i64, i64::from(d.subsec_nanos()));
    let age = Instant::now() - at;
    assert!(age >= Duration::from_millis(200) && age < Duration::from_millis(300));
}
