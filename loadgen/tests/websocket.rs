//! MQTT over WebSocket with the project's own framing (`rr_common::ws`), as the fan-out
//! subscribers run it (the driver's lean mode): against a real mosquitto WebSocket listener
//! (messages in 7-, 16- and 64-bit length frames, in whatever frames mosquitto's websockets
//! write them), and against a tungstenite server that sends what mosquitto does not: a message
//! in fragments with a ping between them, text, a packet over the MQTT limit in a message over
//! the old reader's WebSocket limit (skipped and counted, the session stays up), and a close.

mod support;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rr_common::link::{self, Handler, Invalid, LinkEvent, Message, SessionSpec};
use rr_common::mqtt::codec::{self, OutPublish, Protocol, MAX_PACKET};
use rr_common::mqtt::Mqtt;
use rr_common::transport;
use rr_testkit::{Mosquitto, MosquittoOptions};
use std::sync::Arc;
use std::time::Duration;
use support::loadgen_config;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(20);

#[derive(Debug, PartialEq)]
enum Ev {
    Msg(Vec<u8>),
    Invalid(Invalid),
    Link(LinkEvent),
}

/// A handler that reports what it gets.
struct Collect(mpsc::UnboundedSender<Ev>);

impl Handler for Collect {
    fn on_message(&mut self, m: &Message<'_>, _now: std::time::Instant) {
        let _ = self.0.send(Ev::Msg(m.payload.to_vec()));
    }
    fn on_invalid(&mut self, kind: Invalid) {
        let _ = self.0.send(Ev::Invalid(kind));
    }
    fn on_link(&mut self, e: LinkEvent) {
        let _ = self.0.send(Ev::Link(e));
    }
}

fn spec(url: &str, id: &str, subs: &[&str]) -> SessionSpec {
    let cfg = loadgen_config(url, &[("MQTT_VERSION", "3.1.1")]);
    SessionSpec {
        url: cfg.connect.broker.clone(),
        opts: Arc::new(cfg.connect.clone()),
        client_id: id.into(),
        subscriptions: subs.iter().map(|s| (s.to_string(), 0)).collect(),
        bind: None,
        tls: None,
    }
}

/// Starts a lean (fan-out subscriber) driver on `spec`; events arrive on the receiver.
async fn lean(
    spec: SessionSpec,
    stop: &CancellationToken,
) -> (
    mpsc::UnboundedReceiver<Ev>,
    tokio::task::JoinHandle<Collect>,
) {
    let first = tokio::time::timeout(T, transport::establish(&spec))
        .await
        .expect("handshake in time")
        .expect("session over WebSocket");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(transport::drive_lean(
        move || spec.clone(),
        Some(first),
        Collect(tx),
        Duration::from_secs(30),
        stop.clone(),
    ));
    (rx, task)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Ev>) -> Ev {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("an event in time")
        .expect("driver running")
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_ws_messages_of_every_size_pass() {
    let broker = Mosquitto::start(MosquittoOptions::new().ws_listeners(1)).expect("mosquitto");
    let ws = broker.ws_urls()[0].clone();
    let stop = CancellationToken::new();
    let (mut rx, task) = lean(spec(&ws, "ws-sub", &["big/#"]), &stop).await;
    assert_eq!(next(&mut rx).await, Ev::Link(LinkEvent::Up));

    // The publisher: plain TCP, MQTT 3.1.1. (mosquitto's websockets write large messages
    // slowly, in pieces per service call: packets over MAX_PACKET are the scripted server's
    // test below.)
    let mut publisher = link::establish::<Mqtt>(&spec(&broker.url(), "ws-pub", &[]))
        .await
        .expect("publisher session");
    let sizes = [5, 125, 200, 65_535, 70_000, 150_000, 64];
    for (i, &len) in sizes.iter().enumerate() {
        let mut out = BytesMut::new();
        let body = payload(len, i as u8);
        codec::encode_publish(
            &mut out,
            Protocol::V4,
            &OutPublish {
                topic: b"big/t",
                qos: 0,
                pkid: 0,
                response_topic: None,
                correlation: None,
                payload: &[&body],
            },
        );
        publisher
            .writer
            .write_all(out.freeze())
            .await
            .expect("publish");
    }
    for (i, &len) in sizes.iter().enumerate() {
        let ev = match tokio::time::timeout(T, rx.recv()).await {
            Ok(Some(ev)) => ev,
            _ => panic!("message {i}: nothing; broker log:\n{}", broker.log()),
        };
        match ev {
            Ev::Msg(p) => assert!(p == payload(len, i as u8), "message {i} ({len} bytes)"),
            other => panic!("message {i} ({len} bytes): got {other:?}"),
        }
    }
    stop.cancel();
    tokio::time::timeout(T, task)
        .await
        .expect("ends")
        .expect("joins");
    // the session stayed up throughout: no loss, one Up, then the shutdown
    assert_eq!(
        rx.recv().await,
        Some(Ev::Link(LinkEvent::Down { lost: false }))
    );
}

fn v4_publish(body: &[u8]) -> Vec<u8> {
    let mut v = vec![0x30, (4 + body.len()) as u8, 0, 2, b't', b'/'];
    v.extend_from_slice(body);
    v
}

type ServerWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn recv_binary(ws: &mut ServerWs) -> Vec<u8> {
    loop {
        match ws.next().await.expect("open").expect("frame") {
            WsMessage::Binary(b) => return b.to_vec(),
            _ => continue,
        }
    }
}

/// A tungstenite server that plays a broker: CONNACK, SUBACK, then fragments, pings, text and a
/// close. Returns the pong payloads and whether the client answered the close.
async fn scripted_server(listener: tokio::net::TcpListener) -> (Vec<Vec<u8>>, bool) {
    let (tcp, _) = listener.accept().await.expect("accept");
    let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
    let connect = recv_binary(&mut ws).await;
    assert_eq!(connect[0], 0x10, "CONNECT");
    ws.send(WsMessage::Binary(vec![0x20, 2, 0, 0].into()))
        .await
        .unwrap();
    let sub = recv_binary(&mut ws).await;
    assert_eq!(sub[0], 0x82, "SUBSCRIBE");
    ws.send(WsMessage::Binary(vec![0x90, 3, sub[2], sub[3], 0].into()))
        .await
        .unwrap();
    // one PUBLISH in three fragments, a ping between them, the last one empty
    let one = v4_publish(b"one");
    let frames = [
        Frame::message(one[..3].to_vec(), OpCode::Data(Data::Binary), false),
        Frame::message(one[3..].to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(Vec::new(), OpCode::Data(Data::Continue), true),
    ];
    let [f1, f2, f3] = frames;
    ws.send(WsMessage::Frame(f1)).await.unwrap();
    ws.send(WsMessage::Ping(b"between".to_vec().into()))
        .await
        .unwrap();
    ws.send(WsMessage::Frame(f2)).await.unwrap();
    ws.send(WsMessage::Frame(f3)).await.unwrap();
    ws.send(WsMessage::Text("not MQTT".into())).await.unwrap();
    // two PUBLISHes in one message
    let mut two = v4_publish(b"two");
    two.extend(v4_publish(b"three"));
    ws.send(WsMessage::Binary(two.into())).await.unwrap();
    // a packet over MAX_PACKET in one message over twice that (the old reader's limit), in
    // fragments: skipped as it arrives, counted, and the next packet still comes
    let huge = 2 * MAX_PACKET + 1000;
    let remaining = 4 + huge;
    let mut head = vec![0x30];
    let mut x = remaining;
    loop {
        let b = (x % 128) as u8;
        x /= 128;
        head.push(if x > 0 { b | 0x80 } else { b });
        if x == 0 {
            break;
        }
    }
    head.extend_from_slice(&[0, 2, b't', b'/']);
    head.extend_from_slice(&vec![7u8; 1 << 20]);
    let body_left = huge - (1 << 20);
    ws.send(WsMessage::Frame(Frame::message(
        head,
        OpCode::Data(Data::Binary),
        false,
    )))
    .await
    .unwrap();
    let mut tail = vec![9u8; body_left];
    tail.extend(v4_publish(b"four"));
    ws.send(WsMessage::Frame(Frame::message(
        tail,
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    ws.send(WsMessage::Ping(b"last".to_vec().into()))
        .await
        .unwrap();
    let mut pongs = Vec::new();
    while pongs.last().map(|p: &Vec<u8>| &p[..]) != Some(b"last") {
        match ws.next().await.expect("open").expect("frame") {
            WsMessage::Pong(p) => pongs.push(p.to_vec()),
            WsMessage::Binary(_) => {} // a PINGREQ, if the keep-alive came due
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.send(WsMessage::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let mut answered = false;
    while let Some(Ok(m)) = ws.next().await {
        if let WsMessage::Close(c) = m {
            answered = c.map(|c| c.code) == Some(CloseCode::Away);
        }
    }
    (pongs, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_pings_text_oversized_packets_and_close_from_a_websocket_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/mqtt", listener.local_addr().unwrap());
    let server = tokio::spawn(scripted_server(listener));
    let stop = CancellationToken::new();
    let (mut rx, task) = lean(spec(&url, "scripted", &["t/#"]), &stop).await;
    assert_eq!(next(&mut rx).await, Ev::Link(LinkEvent::Up));
    for want in [&b"one"[..], b"two", b"three"] {
        assert_eq!(next(&mut rx).await, Ev::Msg(want.to_vec()));
    }
    assert_eq!(next(&mut rx).await, Ev::Invalid(Invalid::TooLarge));
    assert_eq!(next(&mut rx).await, Ev::Msg(b"four".to_vec()));
    // the close ends the session (a reconnect follows, which this server never answers)
    assert_eq!(
        next(&mut rx).await,
        Ev::Link(LinkEvent::Down { lost: true })
    );
    let (pongs, answered) = tokio::time::timeout(T, server)
        .await
        .expect("server done")
        .expect("server ok");
    assert!(pongs.contains(&b"last".to_vec()), "pongs: {pongs:?}");
    assert!(
        pongs.iter().all(|p| p == b"between" || p == b"last"),
        "{pongs:?}"
    );
    assert!(answered, "the client answers a close with a close");
    stop.cancel();
    tokio::time::timeout(T, task)
        .await
        .expect("ends")
        .expect("joins");
}
