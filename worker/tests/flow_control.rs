//! QoS 1 answers respect the broker's receive maximum. mosquitto and the embedded broker accept
//! any number of unacknowledged QoS 1 publishes, so the broker here is a minimal MQTT 5 server
//! written for the test: it announces `receive maximum = 3` in its CONNACK, sends each
//! connection a burst of requests at once, acknowledges answers only every few milliseconds,
//! and records any moment a connection has more than 3 answers unacknowledged, or reuses an
//! identifier still in flight (both protocol errors a strict broker disconnects for).

mod support;

use bytes::{BufMut, BytesMut};
use rr_common::mqtt::codec::{self, OutPublish, Protocol};
use rumqttc::v5::mqttbytes::v5 as mb5;
use rumqttc::v5::mqttbytes::QoS;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const RECEIVE_MAX: usize = 3;
const PER_CONN: u32 = 400;

#[derive(Default, Debug)]
struct Seen {
    answers: HashMap<Vec<u8>, u32>,
    most_unacked: usize,
    violations: Vec<String>,
    connections: usize,
}

fn connack() -> BytesMut {
    let mut b = BytesMut::new();
    mb5::ConnAck {
        session_present: false,
        code: mb5::ConnectReturnCode::Success,
        properties: Some(mb5::ConnAckProperties {
            session_expiry_interval: None,
            receive_max: Some(RECEIVE_MAX as u16),
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        }),
    }
    .write(&mut b)
    .unwrap();
    b
}

/// One connection of the fake broker.
async fn serve(mut sock: TcpStream, conn: u32, seen: Arc<Mutex<Seen>>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut unacked: Vec<u16> = Vec::new();
    let mut next_ack = Instant::now();
    loop {
        // frames first, then read more
        while let Ok(Some(f)) = codec::next_frame(&buf, 1 << 20) {
            let frame = buf.split_to(f.total_len);
            let mut out = BytesMut::new();
            match f.packet_type() {
                1 => out.extend_from_slice(&connack()),
                8 => {
                    let pkid = u16::from_be_bytes([frame[f.header_len], frame[f.header_len + 1]]);
                    mb5::SubAck {
                        pkid,
                        return_codes: vec![mb5::SubscribeReasonCode::Success(QoS::AtMostOnce)],
                        properties: None,
                    }
                    .write(&mut out)
                    .unwrap();
                    // the subscription is in place: a burst of requests, all at once
                    for i in 0..PER_CONN {
                        let corr = format!("c{conn:03}-{i:06}");
                        codec::encode_publish(
                            &mut out,
                            Protocol::V5,
                            &OutPublish {
                                topic: b"req/7",
                                qos: 0,
                                pkid: 0,
                                response_topic: Some(b"resp/fc"),
                                correlation: Some(corr.as_bytes()),
                                payload: &[b"ping"],
                            },
                        );
                    }
                }
                3 => {
                    let p = codec::decode_publish(&frame, f, Protocol::V5).unwrap();
                    let mut s = seen.lock().unwrap();
                    if p.qos != 1 {
                        s.violations.push(format!("answer with QoS {}", p.qos));
                    }
                    if unacked.contains(&p.pkid) {
                        s.violations.push(format!(
                            "conn {conn}: identifier {} reused in flight",
                            p.pkid
                        ));
                    }
                    unacked.push(p.pkid);
                    if unacked.len() > RECEIVE_MAX {
                        s.violations.push(format!(
                            "conn {conn}: {} unacknowledged (receive maximum {RECEIVE_MAX})",
                            unacked.len()
                        ));
                    }
                    s.most_unacked = s.most_unacked.max(unacked.len());
                    *s.answers
                        .entry(p.correlation.unwrap().to_vec())
                        .or_default() += 1;
                }
                12 => out.extend_from_slice(&[0xd0, 0]),
                14 => return,
                _ => {}
            }
            if !out.is_empty() && sock.write_all(&out).await.is_err() {
                return;
            }
        }
        // acknowledge what is in flight every 3 ms: the worker must wait for room meanwhile
        if !unacked.is_empty() && Instant::now() >= next_ack {
            let mut acks = BytesMut::new();
            for pkid in unacked.drain(..) {
                acks.put_u8(0x40);
                acks.put_u8(2);
                acks.put_u16(pkid);
            }
            if sock.write_all(&acks).await.is_err() {
                return;
            }
            next_ack = Instant::now() + Duration::from_millis(3);
        }
        let wait = if unacked.is_empty() {
            Duration::from_secs(3600)
        } else {
            next_ack.saturating_duration_since(Instant::now())
        };
        tokio::select! {
            r = sock.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_answers_stay_within_the_brokers_receive_maximum() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("mqtt://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        let mut conn = 0;
        while let Ok((sock, _)) = listener.accept().await {
            s2.lock().unwrap().connections += 1;
            tokio::spawn(serve(sock, conn, s2.clone()));
            conn += 1;
        }
    });
    let (mut w, addr) = spawn_worker(
        &url,
        &[("PUB_QOS", "1"), ("CONNECTIONS", "2"), ("MIN_WORKERS", "8")],
    );
    wait_ready(&addr).await;
    let expected = 2 * PER_CONN as usize;
    let got = rr_testkit::wait_until_async(Duration::from_secs(20), "all answers", || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().answers.len() >= expected }
    })
    .await;
    let st = stats(&addr).await;
    w.signal("TERM").unwrap();
    let _ = w.wait_timeout(Duration::from_secs(10));
    let s = seen.lock().unwrap();
    eprintln!(
        "connections {}, answers {} (expected {expected}), most unacknowledged on one connection {}, \
         worker responded {} errors {} reconnects {}",
        s.connections,
        s.answers.len(),
        s.most_unacked,
        st["responded"],
        st["errors"],
        st["reconnects"]
    );
    got.unwrap_or_else(|e| panic!("{e}: {s:?}"));
    assert!(
        s.violations.is_empty(),
        "{:?}",
        &s.violations[..s.violations.len().min(10)]
    );
    assert_eq!(s.connections, 2, "the worker never reconnected");
    assert_eq!(s.answers.len(), expected);
    let dupes: HashSet<_> = s.answers.values().filter(|&&n| n != 1).collect();
    assert!(dupes.is_empty(), "answered more than once: {dupes:?}");
    // the flow control was exercised, not idle
    assert_eq!(s.most_unacked, RECEIVE_MAX);
    assert_eq!(st["responded"], expected as u64);
}
