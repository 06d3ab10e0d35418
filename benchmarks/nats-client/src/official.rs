//! The async-nats side: the official client used the way its documentation shows, given the
//! same advantage as the lean side (each tick's requests go to one connection, whose handler
//! task batches them into its writes); replies read from one subscription per connection.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rr_common::nats::codec::decode_hex;
use tokio::sync::watch;

use crate::{correlation, new_histogram, reply_subject, request_subject, seq_of, Shared};

const HEADER: &str = "RR-Correlation";

/// The async-nats requester; `measure` times the window while requests flow.
pub async fn request<W>(
    port: u16,
    conns: usize,
    payload: usize,
    shared: Arc<Shared>,
    measure: impl Future<Output = anyhow::Result<W>>,
) -> anyhow::Result<(W, Histogram<u64>)> {
    let url = format!("nats://127.0.0.1:{port}");
    let (stop_sending, stop) = watch::channel(false);
    let (stop_reading, read_stop) = watch::channel(false);
    let mut clients = Vec::new();
    let mut readers = Vec::new();
    for i in 0..conns {
        let client = async_nats::connect(&url).await?;
        let sub = client.subscribe(reply_subject(i)).await?;
        client.flush().await?;
        readers.push(tokio::spawn(read_replies(
            sub,
            shared.clone(),
            read_stop.clone(),
        )));
        clients.push(client);
    }
    let sender = tokio::spawn(send(clients.clone(), payload, shared, stop));
    let window = measure.await?;
    stop_sending.send(true)?;
    sender.await??;
    tokio::time::sleep(Duration::from_secs(1)).await; // answers in flight
    stop_reading.send(true)?;
    let mut hist = new_histogram();
    for r in readers {
        hist.add(r.await??)?;
    }
    Ok((window, hist))
}

async fn send(
    clients: Vec<async_nats::Client>,
    payload: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let subjects: Vec<async_nats::Subject> = (0..crate::SHARDS)
        .map(|s| request_subject(s).as_str().into())
        .collect();
    let replies: Vec<async_nats::Subject> = (0..clients.len())
        .map(|c| reply_subject(c).as_str().into())
        .collect();
    let body = Bytes::from(vec![b'x'; payload]);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut conn = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        let due = shared.due_by(Instant::now());
        let mut n = shared.sent.load(Relaxed);
        if n >= due {
            continue;
        }
        while n < due {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(HEADER, hex(&correlation(n)));
            clients[conn]
                .publish_with_reply_and_headers(
                    subjects[(n % crate::SHARDS) as usize].clone(),
                    replies[conn].clone(),
                    headers,
                    body.clone(),
                )
                .await?;
            n += 1;
        }
        shared.sent.store(n, Relaxed);
        conn = (conn + 1) % clients.len();
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(24), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

async fn read_replies(
    mut sub: async_nats::Subscriber,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = new_histogram();
    let mut out = [0u8; 32];
    loop {
        let msg = tokio::select! {
            m = sub.next() => m.context("subscription ended")?,
            _ = stop.changed() => return Ok(hist),
        };
        let now = Instant::now();
        let seq = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER))
            .and_then(|v| decode_hex(AsRef::<str>::as_ref(v).as_bytes(), &mut out))
            .and_then(seq_of)
            .context("reply without correlation")?;
        hist.saturating_record(shared.latency_us(seq, now));
        shared.received.fetch_add(1, Relaxed);
    }
}
