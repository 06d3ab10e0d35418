//! Real-socket tests of the embedded broker: MQTT 5 request/response, shared subscriptions,
//! MQTT 3.1.1 pub/sub and the WebSocket listener, all on ports picked by the OS.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use rr_broker::{EmbeddedBroker, EmbeddedBrokerConfig, WS_PATH};
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// A v5 test client: one task owns the event loop and forwards incoming packets.
struct Client {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Packet>,
}

impl Client {
    async fn connect(options: MqttOptions) -> Client {
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (tx, mut incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => {
                        if tx.send(packet).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(e) => {
                        eprintln!("test client event loop ended: {e}");
                        return;
                    }
                }
            }
        });
        let first = timeout(WAIT, incoming.recv())
            .await
            .expect("CONNACK in time");
        assert!(
            matches!(first, Some(Packet::ConnAck(_))),
            "expected CONNACK, got {first:?}"
        );
        Client { client, incoming }
    }

    async fn tcp(broker: &EmbeddedBroker, id: &str) -> Client {
        let addr = broker.tcp_addr();
        Client::connect(options(id, &addr.ip().to_string(), addr.port())).await
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        let suback = self.next_matching(|p| matches!(p, Packet::SubAck(_))).await;
        let Packet::SubAck(suback) = suback else {
            unreachable!()
        };
        assert_eq!(suback.return_codes.len(), 1);
        assert!(
            matches!(
                suback.return_codes[0],
                rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_)
            ),
            "subscribe to {filter} refused: {:?}",
            suback.return_codes
        );
    }

    async fn next_matching(&mut self, want: impl Fn(&Packet) -> bool) -> Packet {
        timeout(WAIT, async {
            loop {
                let packet = self.incoming.recv().await.expect("event loop alive");
                if want(&packet) {
                    return packet;
                }
            }
        })
        .await
        .expect("packet in time")
    }

    async fn next_publish(&mut self) -> Publish {
        match self
            .next_matching(|p| matches!(p, Packet::Publish(_)))
            .await
        {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        }
    }
}

fn options(id: &str, host: &str, port: u16) -> MqttOptions {
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_outgoing_inflight_upper_limit(100);
    options.set_max_packet_size(Some(4 * 1024 * 1024));
    options
}

async fn start() -> EmbeddedBroker {
    EmbeddedBroker::start(EmbeddedBrokerConfig::loopback())
        .await
        .unwrap()
}

#[tokio::test]
async fn binds_port_zero_and_reports_the_real_ports() {
    let broker = EmbeddedBroker::start(EmbeddedBrokerConfig::loopback().with_loopback_ws())
        .await
        .unwrap();
    assert_ne!(broker.tcp_addr().port(), 0);
    let ws = broker.ws_addr().expect("ws listener");
    assert_ne!(ws.port(), 0);
    assert_ne!(ws.port(), broker.tcp_addr().port());
    std::net::TcpStream::connect(broker.tcp_addr()).unwrap();
    std::net::TcpStream::connect(ws).unwrap();
    broker.stop().await;
}

#[tokio::test]
async fn taken_port_is_an_error() {
    let broker = start().await;
    let cfg = EmbeddedBrokerConfig {
        tcp_addr: broker.tcp_addr(),
        ws_addr: None,
        ws_extra: Vec::new(),
    };
    assert!(EmbeddedBroker::start(cfg).await.is_err());
    let cfg = EmbeddedBrokerConfig {
        tcp_addr: "127.0.0.1:0".parse().unwrap(),
        ws_addr: Some(broker.tcp_addr()),
        ws_extra: Vec::new(),
    };
    assert!(EmbeddedBroker::start(cfg).await.is_err());
    // a further WebSocket listener on a taken port is an error too (mqtt5 itself only warns)
    let cfg = EmbeddedBrokerConfig {
        tcp_addr: "127.0.0.1:0".parse().unwrap(),
        ws_addr: Some("127.0.0.1:0".parse().unwrap()),
        ws_extra: vec![broker.tcp_addr()],
    };
    let err = EmbeddedBroker::start(cfg).await.unwrap_err();
    assert!(err.to_string().contains("WebSocket listener"), "{err}");
    broker.stop().await;
}

#[tokio::test]
async fn mqtt5_request_response_keeps_response_topic_and_correlation() {
    let broker = start().await;
    let mut responder = Client::tcp(&broker, "responder").await;
    responder.subscribe("req/+", QoS::AtMostOnce).await;
    let mut requester = Client::tcp(&broker, "requester").await;
    requester.subscribe("resp/test/3", QoS::AtMostOnce).await;

    let props = PublishProperties {
        response_topic: Some("resp/test/3".into()),
        correlation_data: Some(Bytes::from_static(b"vc7-seq42")),
        ..Default::default()
    };
    requester
        .client
        .publish_with_properties("req/3", QoS::AtMostOnce, false, "ping", props)
        .await
        .unwrap();

    let request = responder.next_publish().await;
    assert_eq!(&request.topic[..], b"req/3");
    assert_eq!(&request.payload[..], b"ping");
    let props = request.properties.expect("request properties");
    let reply_to = props.response_topic.expect("response topic");
    let correlation = props.correlation_data.expect("correlation data");
    let reply = PublishProperties {
        correlation_data: Some(correlation),
        ..Default::default()
    };
    responder
        .client
        .publish_with_properties(reply_to, QoS::AtMostOnce, false, "pong", reply)
        .await
        .unwrap();

    let response = requester.next_publish().await;
    assert_eq!(&response.topic[..], b"resp/test/3");
    assert_eq!(&response.payload[..], b"pong");
    let correlation = response.properties.and_then(|p| p.correlation_data);
    assert_eq!(correlation.as_deref(), Some(&b"vc7-seq42"[..]));
    broker.stop().await;
}

#[tokio::test]
async fn shared_subscription_delivers_each_message_exactly_once() {
    const N: usize = 400;
    let broker = start().await;
    let mut members = Vec::new();
    for id in ["member-a", "member-b"] {
        let mut member = Client::tcp(&broker, id).await;
        member.subscribe("$share/g/req/+", QoS::AtMostOnce).await;
        // Plain subscription used as a fence: the publisher sends it last, so once a member has
        // it, every shared message meant for that member has arrived (one lane, in order).
        member.subscribe("fence", QoS::AtMostOnce).await;
        members.push(member);
    }
    let publisher = Client::tcp(&broker, "publisher").await;
    for i in 0..N {
        let topic = format!("req/{}", i % 7);
        publisher
            .client
            .publish(topic, QoS::AtMostOnce, false, i.to_string())
            .await
            .unwrap();
    }
    publisher
        .client
        .publish("fence", QoS::AtMostOnce, false, "end")
        .await
        .unwrap();

    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut per_member = Vec::new();
    for member in &mut members {
        let mut count = 0;
        loop {
            let publish = member.next_publish().await;
            if &publish.topic[..] == b"fence" {
                break;
            }
            let i: usize = std::str::from_utf8(&publish.payload)
                .unwrap()
                .parse()
                .unwrap();
            *seen.entry(i).or_default() += 1;
            count += 1;
        }
        per_member.push(count);
    }
    eprintln!("shared subscription split: {per_member:?}");
    assert_eq!(
        seen.len(),
        N,
        "every message delivered (per member: {per_member:?})"
    );
    assert!(
        seen.values().all(|&n| n == 1),
        "a message was delivered twice"
    );
    assert!(
        per_member.iter().all(|&n| n > 0),
        "both members get a share: {per_member:?}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn mqtt311_connect_and_pub_sub_also_reaches_v5_subscribers() {
    use rumqttc::{AsyncClient as Client311, Event as Event311, Packet as Packet311};

    let broker = start().await;
    let addr = broker.tcp_addr();
    let mut v5_sub = Client::tcp(&broker, "v5-sub").await;
    v5_sub.subscribe("t311/+", QoS::AtMostOnce).await;

    let mut options = rumqttc::MqttOptions::new("v311", addr.ip().to_string(), addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(100);
    let (client, mut eventloop) = Client311::new(options, 100);
    let (tx, mut incoming) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event311::Incoming(packet) = event {
                if tx.send(packet).is_err() {
                    return;
                }
            }
        }
    });
    let connack = next311(&mut incoming, |p| matches!(p, Packet311::ConnAck(_))).await;
    let Packet311::ConnAck(connack) = connack else {
        unreachable!()
    };
    assert_eq!(connack.code, rumqttc::ConnectReturnCode::Success);

    client
        .subscribe("t311/+", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    next311(&mut incoming, |p| matches!(p, Packet311::SubAck(_))).await;
    // Shared subscriptions work for 3.1.1 clients too (the worker's MQTT_VERSION=3 mode).
    client
        .subscribe("$share/g311/s311/+", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    next311(&mut incoming, |p| matches!(p, Packet311::SubAck(_))).await;
    client
        .publish("s311/x", rumqttc::QoS::AtMostOnce, false, "shared")
        .await
        .unwrap();
    let Packet311::Publish(publish) =
        next311(&mut incoming, |p| matches!(p, Packet311::Publish(_))).await
    else {
        unreachable!()
    };
    assert_eq!(publish.topic, "s311/x");
    assert_eq!(&publish.payload[..], b"shared");

    client
        .publish("t311/a", rumqttc::QoS::AtLeastOnce, false, "hello")
        .await
        .unwrap();
    let Packet311::Publish(publish) =
        next311(&mut incoming, |p| matches!(p, Packet311::Publish(_))).await
    else {
        unreachable!()
    };
    assert_eq!(publish.topic, "t311/a");
    assert_eq!(&publish.payload[..], b"hello");

    let from_311 = v5_sub.next_publish().await;
    assert_eq!(&from_311.topic[..], b"t311/a");
    assert_eq!(&from_311.payload[..], b"hello");
    broker.stop().await;
}

async fn next311(
    incoming: &mut mpsc::UnboundedReceiver<rumqttc::Packet>,
    want: fn(&rumqttc::Packet) -> bool,
) -> rumqttc::Packet {
    timeout(WAIT, async {
        loop {
            let p = incoming.recv().await.expect("3.1.1 event loop alive");
            if want(&p) {
                return p;
            }
        }
    })
    .await
    .expect("3.1.1 packet in time")
}

#[tokio::test]
async fn websocket_listener_serves_mqtt5() {
    let broker = EmbeddedBroker::start(EmbeddedBrokerConfig::loopback().with_loopback_ws())
        .await
        .unwrap();
    let ws = broker.ws_addr().unwrap();
    let mut options = options("ws-client", &format!("ws://{ws}{WS_PATH}"), ws.port());
    options.set_transport(rumqttc::Transport::Ws);
    let mut client = Client::connect(options).await;
    client.subscribe("ws/t", QoS::AtMostOnce).await;
    client
        .client
        .publish("ws/t", QoS::AtMostOnce, false, "over ws")
        .await
        .unwrap();
    let publish = client.next_publish().await;
    assert_eq!(&publish.payload[..], b"over ws");
    broker.stop().await;
}

#[tokio::test]
async fn several_websocket_listeners_serve_one_broker() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let broker = EmbeddedBroker::start(EmbeddedBrokerConfig {
        ws_extra: vec![free(), free()],
        ..EmbeddedBrokerConfig::loopback().with_loopback_ws()
    })
    .await
    .unwrap();
    let ws = broker.ws_addrs().to_vec();
    assert_eq!(ws.len(), 3);
    assert!(ws.iter().all(|a| a.port() != 0));
    // a subscriber on each listener; a publish on the last reaches all three
    let mut subs = Vec::new();
    for (i, a) in ws.iter().enumerate() {
        let mut o = options(&format!("ws-{i}"), &format!("ws://{a}{WS_PATH}"), a.port());
        o.set_transport(rumqttc::Transport::Ws);
        let mut c = Client::connect(o).await;
        c.subscribe("ws/many", QoS::AtMostOnce).await;
        subs.push(c);
    }
    subs[2]
        .client
        .publish("ws/many", QoS::AtMostOnce, false, "to all")
        .await
        .unwrap();
    for c in &mut subs {
        assert_eq!(&c.next_publish().await.payload[..], b"to all");
    }
    broker.stop().await;
}

#[tokio::test]
async fn large_payload_passes() {
    let broker = start().await;
    let mut client = Client::tcp(&broker, "big").await;
    client.subscribe("big", QoS::AtMostOnce).await;
    let payload = vec![7u8; 1024 * 1024];
    client
        .client
        .publish("big", QoS::AtMostOnce, false, payload.clone())
        .await
        .unwrap();
    let publish = client.next_publish().await;
    assert_eq!(publish.payload.len(), payload.len());
    broker.stop().await;
}
