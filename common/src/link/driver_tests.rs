//! The driver with a toy line-based transport over real loopback sockets (no MQTT anywhere):
//! a transport plugs in by implementing `Transport` alone. The test plays the broker.

use super::*;
use crate::broker::ConnectOptions;
use crate::link::{Framing, Invalid, Message, Sent, SessionError};
use crate::net;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message per line; `ping` is answered with `pong`, `ack` acknowledges one of our
/// flow-controlled messages (lines starting with `F`), `bye` ends the session.
struct Lines;

struct LineDecoder;

impl Decode for LineDecoder {
    fn dispatch<H: Handler>(
        &mut self,
        buf: &mut BytesMut,
        handler: &mut H,
        replies: &mut BytesMut,
        flow: Option<&Flow>,
        now: Instant,
    ) -> Result<(), String> {
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(i + 1);
            match &line[..i] {
                b"ping" => replies.extend_from_slice(b"pong\n"),
                b"pong" => {}
                b"ack" => {
                    if let Some(f) = flow {
                        f.acked(1);
                    }
                    handler.on_room();
                }
                b"bye" => return Err("the broker said bye".into()),
                b"" => handler.on_invalid(Invalid::Malformed),
                payload => handler.on_message(
                    &Message {
                        topic: b"lines",
                        payload,
                        reply_to: None,
                        correlation: None,
                        in_header: false,
                        wire_len: i + 1,
                    },
                    now,
                ),
            }
        }
        Ok(())
    }
}

static LINE_FRAMING: Framing = Framing {
    count_flow: |b| {
        b.split(|&x| x == b'\n')
            .filter(|l| l.first() == Some(&b'F'))
            .count() as u32
    },
    stamp: |_, _| {},
};

impl Transport for Lines {
    type Decoder = LineDecoder;
    const PING: &'static [u8] = b"ping\n";
    const GOODBYE: &'static [u8] = b"bye\n";
    const FRAMING: &'static Framing = &LINE_FRAMING;

    async fn connect(spec: &SessionSpec) -> Result<Session<LineDecoder>, SessionError> {
        let (reader, writer) = net::open(&spec.url, &spec.opts, None, None).await?;
        Ok(Session {
            reader,
            writer,
            pending: BytesMut::new(),
            decoder: LineDecoder,
            flow_limit: 2,
        })
    }
}

#[derive(Default)]
struct Record {
    messages: Vec<Vec<u8>>,
    invalid: usize,
    events: Vec<LinkEvent>,
    room: usize,
}

impl Handler for Record {
    fn on_message(&mut self, m: &Message<'_>, _now: Instant) {
        self.messages.push(m.payload.to_vec());
    }
    fn on_invalid(&mut self, _kind: Invalid) {
        self.invalid += 1;
    }
    fn on_room(&mut self) {
        self.room += 1;
    }
    fn on_link(&mut self, e: LinkEvent) {
        self.events.push(e);
    }
}

#[derive(Parser)]
struct Opts {
    #[command(flatten)]
    connect: ConnectOptions,
}

async fn broker() -> (TcpListener, SessionSpec) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec = SessionSpec {
        url: format!("mqtt://{}", l.local_addr().unwrap())
            .parse()
            .unwrap(),
        opts: Arc::new(Opts::parse_from(["t"]).connect),
        client_id: "t".into(),
        subscriptions: Vec::new(),
        bind: None,
        tls: None,
    };
    (l, spec)
}

/// A spec whose connection is refused (nobody listens on its port).
async fn refused(spec: &SessionSpec) -> SessionSpec {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("mqtt://{}", l.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(l);
    SessionSpec {
        url,
        ..spec.clone()
    }
}

async fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut s));
    read.await.expect("a line in time").expect("read");
    s
}

/// Waits until `cond` holds (the driver runs in another task).
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_shared_link_sends_receives_reconnects_and_says_goodbye() {
    let (listener, spec) = broker().await;
    let first = crate::link::establish::<Lines>(&spec).await.unwrap();
    let (sock, _) = listener.accept().await.unwrap();
    let mut peer = BufReader::new(sock);
    let link = Arc::new(Link::new(Lines::FRAMING));
    let stop = CancellationToken::new();
    let target = Arc::new(std::sync::Mutex::new(spec.clone()));
    let connect_to = target.clone();
    let task = tokio::spawn(drive::<Lines, _, _, _>(
        move || connect_to.lock().unwrap().clone(),
        Some(Box::new(first)),
        Record::default(),
        Shared::new(link.clone()),
        Duration::from_secs(30),
        stop.clone(),
    ));
    until("the link to come up", || link.is_up()).await;
    assert_eq!(link.room(), 2);
    // engines write through the link; flow-controlled messages take room until acknowledged
    assert_eq!(link.send(b"hello\n"), Sent::Written);
    assert_eq!(link.send_flow(&mut b"F1\n".to_vec(), 1), Sent::Written);
    assert_eq!(link.room(), 1);
    assert_eq!(line(&mut peer).await, "hello\n");
    assert_eq!(line(&mut peer).await, "F1\n");
    peer.get_mut()
        .write_all(b"m1\n\nack\nping\n")
        .await
        .unwrap();
    // the driver answers the ping itself
    assert_eq!(line(&mut peer).await, "pong\n");
    until("the acknowledgement", || link.room() == 2).await;
    // the broker drops the connection (and refuses the first reconnects): bytes sent meanwhile
    // wait for the next session, whose count starts from the flow-controlled ones among them
    *target.lock().unwrap() = refused(&spec).await;
    drop(peer);
    until("the link to go down", || !link.is_up()).await;
    assert_eq!(link.send(b"queued\n"), Sent::Queued);
    assert_eq!(link.send_flow(&mut b"F2\n".to_vec(), 1), Sent::Queued);
    *target.lock().unwrap() = spec.clone();
    let (sock, _) = listener.accept().await.unwrap();
    let mut peer = BufReader::new(sock);
    assert_eq!(line(&mut peer).await, "queued\n");
    assert_eq!(line(&mut peer).await, "F2\n");
    until("the link to come back", || link.is_up()).await;
    assert_eq!((link.reconnects(), link.disconnects()), (1, 1));
    assert_eq!(link.room(), 1);
    // shutdown: goodbye, flushed, the connection closed, then the driver returns its handler
    stop.cancel();
    assert_eq!(line(&mut peer).await, "bye\n");
    assert_eq!(line(&mut peer).await, "", "closed after the goodbye");
    let h = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the driver returns")
        .unwrap();
    assert_eq!(h.messages, [b"m1".to_vec()]);
    assert_eq!((h.invalid, h.room), (1, 1));
    let events: Vec<_> = h
        .events
        .iter()
        .filter(|e| **e != LinkEvent::ConnectFailed)
        .collect();
    assert_eq!(
        events,
        [
            &LinkEvent::Up,
            &LinkEvent::Down { lost: true },
            &LinkEvent::Up,
            &LinkEvent::Down { lost: false }
        ]
    );
    assert!(!link.is_up());
}

#[tokio::test]
async fn a_lean_link_connects_itself_answers_pings_and_retries_failures() {
    let (listener, spec) = broker().await;
    // the first attempt is refused and reported; the next one connects
    let bad = refused(&spec).await;
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let stop = CancellationToken::new();
    let task = tokio::spawn(drive::<Lines, _, _, _>(
        move || match attempts.fetch_add(1, Relaxed) {
            0 => bad.clone(),
            _ => spec.clone(),
        },
        None,
        Record::default(),
        Lean::default(),
        Duration::from_secs(30),
        stop.clone(),
    ));
    let (sock, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the driver retries")
        .unwrap();
    let mut peer = BufReader::new(sock);
    peer.get_mut().write_all(b"ping\nm\n").await.unwrap();
    assert_eq!(line(&mut peer).await, "pong\n");
    stop.cancel();
    assert_eq!(line(&mut peer).await, "bye\n");
    let h = task.await.unwrap();
    assert_eq!(h.messages, [b"m".to_vec()]);
    assert_eq!(
        h.events,
        [
            LinkEvent::ConnectFailed,
            LinkEvent::Up,
            LinkEvent::Down { lost: false }
        ]
    );
}
