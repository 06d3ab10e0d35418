//! The lean side: rr-common's NATS codec over plain tokio sockets, used as the loadgen and
//! worker would use it: each tick's requests encoded into one buffer and written with one
//! `write` to one connection (the next tick takes the next connection); each read's answers
//! written with one `write`.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, BytesMut};
use hdrhistogram::Histogram;
use rr_common::nats::codec::{self, Connect, Op, Publish, MAX_CORRELATION};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::{correlation, new_histogram, reply_subject, request_subject, seq_of, Shared};

struct Conn {
    reader: OwnedReadHalf,
    writer: Arc<OwnedWriteHalf>,
    buf: BytesMut,
    max_payload: usize,
}

async fn read_more(r: &mut OwnedReadHalf, buf: &mut BytesMut) -> anyhow::Result<()> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    if r.read_buf(buf).await? == 0 {
        bail!("nats-server closed the connection");
    }
    Ok(())
}

/// Writes all of `data`, waiting for the socket when it is full.
async fn write_all(w: &OwnedWriteHalf, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match w.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => w.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// INFO, CONNECT, the subscriptions, PING; returns once the PONG confirms them.
async fn connect(port: u16, subs: &[(&str, Option<&str>)]) -> anyhow::Result<Conn> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let (mut reader, writer) = tcp.into_split();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let info = loop {
        if let Some((op, len)) = codec::next_op(&buf, codec::DEFAULT_MAX_PAYLOAD)? {
            let Op::Info(json) = op else {
                bail!("expected INFO, got {op:?}")
            };
            let info = codec::parse_info(json)?;
            buf.advance(len);
            break info;
        }
        read_more(&mut reader, &mut buf).await?;
    };
    let mut out = BytesMut::new();
    codec::encode_connect(
        &mut out,
        &Connect {
            name: "nats-client-bench",
            ..Connect::default()
        },
    );
    for (sid, (subject, queue)) in subs.iter().enumerate() {
        codec::encode_sub(
            &mut out,
            subject.as_bytes(),
            queue.map(str::as_bytes),
            sid as u64 + 1,
        );
    }
    out.put_slice(codec::PING);
    write_all(&writer, &out).await?;
    loop {
        while let Some((op, len)) = codec::next_op(&buf, info.max_payload())? {
            let done = match op {
                Op::Pong => true,
                Op::Err(e) => bail!("-ERR {}", String::from_utf8_lossy(e)),
                _ => false,
            };
            buf.advance(len);
            if done {
                return Ok(Conn {
                    reader,
                    writer: Arc::new(writer),
                    buf,
                    max_payload: info.max_payload(),
                });
            }
        }
        read_more(&mut reader, &mut buf).await?;
    }
}

/// The responder: `conns` connections in queue group `workers` on `req.*`, each answering on
/// the reply subject with the correlation header and the payload echoed. Runs until killed.
pub async fn respond(port: u16, conns: usize) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let c = connect(port, &[("req.*", Some("workers"))]).await?;
        tasks.push(tokio::spawn(answer(c)));
    }
    println!("ready");
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn answer(mut c: Conn) -> anyhow::Result<()> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut corr = [0u8; MAX_CORRELATION];
    loop {
        read_more(&mut c.reader, &mut c.buf).await?;
        let mut used = 0;
        while let Some((op, len)) = codec::next_op(&c.buf[used..], c.max_payload)? {
            match op {
                Op::Msg(m) => {
                    if let Some(reply) = m.reply {
                        let answer = Publish {
                            subject: reply,
                            reply: None,
                            correlation: m.correlation(&mut corr).ok().flatten(),
                            payload: &[m.payload],
                        };
                        codec::encode_publish(&mut out, &answer, c.max_payload)?;
                    }
                }
                Op::Ping => out.put_slice(codec::PONG),
                _ => {}
            }
            used += len;
        }
        c.buf.advance(used);
        if !out.is_empty() {
            write_all(&c.writer, &out).await?;
            out.clear();
        }
    }
}

/// The lean requester; `measure` times the window while requests flow.
pub async fn request<W>(
    port: u16,
    conns: usize,
    payload: usize,
    shared: Arc<Shared>,
    measure: impl Future<Output = anyhow::Result<W>>,
) -> anyhow::Result<(W, Histogram<u64>)> {
    let (stop_sending, stop) = watch::channel(false);
    let (stop_reading, read_stop) = watch::channel(false);
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    let mut max_payload = usize::MAX;
    for i in 0..conns {
        let c = connect(port, &[(&reply_subject(i), None)]).await?;
        writers.push(c.writer.clone());
        max_payload = max_payload.min(c.max_payload);
        readers.push(tokio::spawn(read_replies(
            c,
            shared.clone(),
            read_stop.clone(),
        )));
    }
    let sender = tokio::spawn(send(writers, payload, max_payload, shared, stop));
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
    writers: Vec<Arc<OwnedWriteHalf>>,
    payload: usize,
    max_payload: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let subjects: Vec<Vec<u8>> = (0..crate::SHARDS)
        .map(|s| request_subject(s).into_bytes())
        .collect();
    let replies: Vec<Vec<u8>> = (0..writers.len())
        .map(|c| reply_subject(c).into_bytes())
        .collect();
    let body = vec![b'x'; payload];
    let mut out = BytesMut::with_capacity(16 * 1024);
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
        while n < due {
            let p = Publish {
                subject: &subjects[(n % crate::SHARDS) as usize],
                reply: Some(&replies[conn]),
                correlation: Some(&correlation(n)),
                payload: &[&body],
            };
            codec::encode_publish(&mut out, &p, max_payload)?;
            n += 1;
        }
        shared.sent.store(n, Relaxed);
        if !out.is_empty() {
            write_all(&writers[conn], &out).await?;
            out.clear();
            conn = (conn + 1) % writers.len();
        }
    }
}

async fn read_replies(
    mut c: Conn,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = new_histogram();
    let mut corr = [0u8; MAX_CORRELATION];
    loop {
        tokio::select! {
            r = read_more(&mut c.reader, &mut c.buf) => r?,
            _ = stop.changed() => return Ok(hist),
        }
        let now = Instant::now();
        let mut used = 0;
        while let Some((op, len)) = codec::next_op(&c.buf[used..], c.max_payload)? {
            match op {
                Op::Msg(m) => {
                    let seq = m
                        .correlation(&mut corr)?
                        .and_then(seq_of)
                        .context("reply without correlation")?;
                    hist.saturating_record(shared.latency_us(seq, now));
                    shared.received.fetch_add(1, Relaxed);
                }
                Op::Ping => write_all(&c.writer, codec::PONG).await?,
                _ => {}
            }
            used += len;
        }
        c.buf.advance(used);
    }
}
