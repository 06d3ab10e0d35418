//! The broker's own round trip, as a reference for the latency-overhead benchmark: two plain
//! `rumqttc` (MQTT 5, QoS 0) clients on one broker, a requester publishing on a fixed open-loop
//! schedule and an echoer publishing every request back. `latency_us` is the round trip from the
//! moment each request was handed to the client (`arrival - send`); `from_schedule_us` is
//! `arrival - scheduled send`, loadgen's rule, which also counts the 1 ms timer's lateness.
//! Prints one JSON object on stdout.
//!
//! ```text
//! BROKER_HOST=127.0.0.1 BROKER_PORT=1883 RATE=1000 WARMUP_SEC=3 DURATION_SEC=20 PAYLOAD_BYTES=64 \
//!   cargo run --release -p loadgen --example echo_pair
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::NetworkOptions;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Marks probe messages sent before the schedule starts (never recorded).
const PROBE: u64 = u64::MAX;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("error: {name}='{v}' is not valid");
            std::process::exit(2)
        }),
        Err(_) => default,
    }
}

fn options(id: String, host: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, host, port);
    // TCP_NODELAY as loadgen and worker use it (rumqttc leaves Nagle on by default).
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o.set_keep_alive(Duration::from_secs(30))
        .set_outgoing_inflight_upper_limit(u16::MAX)
        .set_request_channel_capacity(65_536);
    o
}

/// Polls an event loop and hands every received payload to `on_publish`. Never publishes itself.
fn poll_forever(mut el: EventLoop, mut on_publish: impl FnMut(Bytes) + Send + 'static) {
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => on_publish(p.payload),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("echo_pair: connection error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

#[tokio::main]
async fn main() {
    let host: String = env_or("BROKER_HOST", "127.0.0.1".to_string());
    let port: u16 = env_or("BROKER_PORT", 1883);
    let rate: f64 = env_or("RATE", 1000.0);
    let warmup = Duration::from_secs(env_or("WARMUP_SEC", 3));
    let duration = Duration::from_secs(env_or("DURATION_SEC", 20));
    let payload_bytes: usize = env_or("PAYLOAD_BYTES", 64).max(24);
    if rate <= 0.0 {
        eprintln!("error: RATE must be positive");
        std::process::exit(2);
    }
    let nonce: u32 = rand::random();
    let req_topic = format!("echo/{nonce:08x}/req");
    let resp_topic = format!("echo/{nonce:08x}/resp");

    // Echoer: its event loop forwards requests to a task that publishes them back.
    let (echo, echo_el) =
        AsyncClient::new(options(format!("echo-e-{nonce:08x}"), &host, port), 65_536);
    let (fwd_tx, mut fwd_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    poll_forever(echo_el, move |p| {
        let _ = fwd_tx.send(p);
    });
    echo.subscribe(req_topic.clone(), QoS::AtMostOnce)
        .await
        .expect("subscribe");
    let back = resp_topic.clone();
    tokio::spawn(async move {
        while let Some(p) = fwd_rx.recv().await {
            if echo
                .publish(back.clone(), QoS::AtMostOnce, false, p)
                .await
                .is_err()
            {
                return;
            }
        }
    });

    // Requester: records arrival - scheduled send of every measured answer.
    let epoch = Instant::now();
    // The measured window (ns since `epoch`), set once the schedule starts.
    let window = Arc::new([AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)]);
    let new_hist =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    // (from send, from schedule)
    let hist = Arc::new(Mutex::new((new_hist(), new_hist())));
    let received = Arc::new(AtomicU64::new(0));
    let echoed = Arc::new(AtomicBool::new(false));
    let (req, req_el) =
        AsyncClient::new(options(format!("echo-r-{nonce:08x}"), &host, port), 65_536);
    {
        let (hist, received, echoed, window) = (
            hist.clone(),
            received.clone(),
            echoed.clone(),
            window.clone(),
        );
        poll_forever(req_el, move |p| {
            let arrival = epoch.elapsed().as_nanos() as u64;
            if p.len() < 24 {
                return;
            }
            let word = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().expect("8 bytes"));
            let (sched, sent) = (word(8), word(16));
            if sched == PROBE {
                echoed.store(true, Relaxed);
            } else if sched >= window[0].load(Relaxed) && sched < window[1].load(Relaxed) {
                received.fetch_add(1, Relaxed);
                let mut h = hist.lock().expect("histogram lock");
                let _ = h.0.record((arrival.saturating_sub(sent) / 1000).max(1));
                let _ = h.1.record((arrival.saturating_sub(sched) / 1000).max(1));
            }
        });
    }
    req.subscribe(resp_topic.clone(), QoS::AtMostOnce)
        .await
        .expect("subscribe");

    let message = |seq: u64, sched: u64| {
        let mut b = BytesMut::with_capacity(payload_bytes);
        b.put_u64(seq);
        b.put_u64(sched);
        b.put_u64(epoch.elapsed().as_nanos() as u64);
        b.resize(payload_bytes, b'x');
        b.freeze()
    };
    // Both subscriptions are in place once a probe comes back.
    let probe_deadline = Instant::now() + Duration::from_secs(10);
    while !echoed.load(Relaxed) {
        if Instant::now() > probe_deadline {
            eprintln!("error: no echo within 10 s");
            std::process::exit(3);
        }
        let _ = req
            .publish(req_topic.clone(), QoS::AtMostOnce, false, message(0, PROBE))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Open-loop schedule: message i is due at start + i / rate; every 1 ms tick sends what is due.
    let start = epoch.elapsed().as_nanos() as u64;
    let measure_from = start + warmup.as_nanos() as u64;
    let stop_at = measure_from + duration.as_nanos() as u64;
    window[1].store(stop_at, Relaxed);
    window[0].store(measure_from, Relaxed);
    let interval_ns = 1e9 / rate;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut seq = 0u64;
    let mut sent = 0u64;
    loop {
        tick.tick().await;
        let now = epoch.elapsed().as_nanos() as u64;
        loop {
            let sched = start + (seq as f64 * interval_ns) as u64;
            if sched > now || sched >= stop_at {
                break;
            }
            let m = message(seq, sched);
            if req
                .publish(req_topic.clone(), QoS::AtMostOnce, false, m)
                .await
                .is_err()
            {
                eprintln!("error: requester channel closed");
                std::process::exit(1);
            }
            if sched >= measure_from {
                sent += 1;
            }
            seq += 1;
        }
        if now >= stop_at {
            break;
        }
    }
    // The measured window's stragglers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (h, hs) = hist.lock().expect("histogram lock").clone();
    let got = received.load(Relaxed);
    let out = serde_json::json!({
        "rate": rate,
        "payload_bytes": payload_bytes,
        "duration_s": duration.as_secs_f64(),
        "sent": sent,
        "received": got,
        "match_rate": if sent > 0 { got as f64 / sent as f64 } else { 0.0 },
        "latency_us": {
            "p50": h.value_at_quantile(0.5),
            "p90": h.value_at_quantile(0.9),
            "p99": h.value_at_quantile(0.99),
            "max": h.max(),
            "mean": h.mean(),
        },
        "from_schedule_us": {
            "p50": hs.value_at_quantile(0.5),
            "p90": hs.value_at_quantile(0.9),
            "p99": hs.value_at_quantile(0.99),
            "max": hs.max(),
            "mean": hs.mean(),
        },
    });
    println!("{out}");
    std::process::exit(0);
}
