//! The Kafka connection driver: runs a session ([`super::link::Session`]) that engines write to
//! through their link, hands fetched records to the engine's handler as the seam's messages,
//! and books the link's state.
//!
//! - **Sending.** The link's [`ProducerSink`] turns each record descriptor of a batch into one
//!   `produce` call in the sender's own task; librdkafka batches per partition and writes.
//! - **Receiving.** One task per consumer: it awaits a record, drains every record already
//!   fetched, hands each to the handler, then flushes the handler once. Each tick it tells the
//!   handler the consumer's lag, rebalances, and the records handed on again or jumped over
//!   (by their offsets, `super::offsets`).
//! - **Loss and reconnect.** librdkafka reconnects by itself, but a cluster that comes back
//!   without its topics (a restarted memory broker) makes them again with new topic ids, which
//!   librdkafka's metadata cache does not survive (confluentinc/librdkafka#4964). So, as the
//!   byte-level driver does, a loss ("all brokers down") ends the session: the link goes down,
//!   the old clients are dropped on a thread of their own (what they still held ends as
//!   timeouts), and once the cluster answers again the run's topics are made where missing and a
//!   new session (new clients) is set up, with backoff.

use super::client::KafkaContext;
use super::encoder::reply_address;
use super::headers::{self, REPLY_TOPIC};
use super::link::{self as klink, Consumer_, Session};
use super::offsets::Offsets;
use super::records;
use crate::link::{
    backoff, ConsumerProgress, Handler, Invalid, Link, LinkEvent, Message, Sent, SessionError,
    SessionSpec,
};
use futures_util::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Records handed to the handler per wake-up before it flushes.
const DRAIN: usize = 1024;
/// How often the driver serves the producer's events and checks for a loss.
const TICK: Duration = Duration::from_millis(100);
/// How long a shutdown waits for produced records to leave.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// A link's producer: each record descriptor of a batch becomes one `produce` call. Empty
/// while the link is down (batches are refused).
#[derive(Default)]
pub struct ProducerSink {
    producer: RwLock<Option<Arc<BaseProducer<KafkaContext>>>>,
}

impl ProducerSink {
    fn set(&self, p: Option<Arc<BaseProducer<KafkaContext>>>) {
        *self.producer.write().unwrap_or_else(|e| e.into_inner()) = p;
    }
}

impl crate::link::Sink for ProducerSink {
    fn send(&self, batch: &[u8]) -> Sent {
        let guard = self.producer.read().unwrap_or_else(|e| e.into_inner());
        let Some(producer) = guard.as_ref() else {
            return Sent::Full;
        };
        let (mut sent, mut refused) = (0usize, 0usize);
        for r in records::iter(batch) {
            let Ok(r) = r else {
                tracing::error!("damaged Kafka record batch (an encoder bug)");
                break;
            };
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(r.topic).payload(r.value);
            if let Some(k) = r.key {
                rec = rec.key(k);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p);
            }
            if !r.headers().is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(r.headers().len());
                for (key, value) in r.headers() {
                    h = h.insert(Header {
                        key,
                        value: Some(*value),
                    });
                }
                rec = rec.headers(h);
            }
            match producer.send(rec) {
                Ok(()) => sent += 1,
                Err((e, _)) => {
                    refused += 1;
                    tracing::debug!("produce refused: {e}");
                }
            }
        }
        match (sent, refused) {
            (_, 0) => Sent::Written,
            (0, _) => Sent::Full,
            _ => {
                tracing::warn!("{refused} records refused by the producer queue");
                Sent::Queued
            }
        }
    }

    fn backlog(&self) -> usize {
        let guard = self.producer.read().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .map_or(0, |p| p.in_flight_count().max(0) as usize)
    }
}

/// Hands one fetched record to `handler`: a request (it names a reply topic: reply address
/// `topic[:partition]` and correlation from Spring's headers) or a reply (its correlation).
fn dispatch<H: Handler>(
    m: &impl rdkafka::message::Message,
    handler: &mut H,
    addr: &mut Vec<u8>,
    now: Instant,
) {
    let mut hs: [(&str, Option<&[u8]>); 8] = [("", None); 8];
    let mut n = 0;
    let mut asks = false;
    if let Some(h) = m.headers() {
        for i in 0..h.count() {
            let Some(x) = h.try_get(i) else { break };
            asks |= x.key == REPLY_TOPIC;
            if n < hs.len() {
                hs[n] = (x.key, x.value);
                n += 1;
            }
        }
    }
    let payload = m.payload().unwrap_or_default();
    let wire_len = payload.len() + m.key().map_or(0, <[u8]>::len);
    let (reply_to, correlation) = if asks {
        match headers::reply_to(hs[..n].iter().copied()) {
            Ok(to) => {
                reply_address(to.topic.as_bytes(), to.partition, addr);
                (Some(&addr[..]), Some(to.correlation))
            }
            Err(_) => return handler.on_invalid(Invalid::Malformed),
        }
    } else {
        (None, headers::correlation_of(hs[..n].iter().copied()).ok())
    };
    handler.on_message(
        &Message {
            topic: m.topic().as_bytes(),
            payload,
            reply_to,
            correlation,
            in_header: false,
            wire_len,
        },
        now,
    );
}

/// Hands one fetched record of consumer `c` on, noting its offset.
fn hand_on<H: Handler>(
    c: &Consumer_,
    m: &impl rdkafka::message::Message,
    handler: &mut H,
    addr: &mut Vec<u8>,
    offsets: &mut Offsets,
    now: Instant,
) {
    offsets.see(
        c.context().generation(),
        m.topic(),
        m.partition(),
        m.offset(),
    );
    dispatch(m, handler, addr, now);
}

async fn next(c: Option<&Arc<Consumer_>>) -> Result<BorrowedMessage<'_>, KafkaError> {
    match c {
        Some(c) => c.recv().await,
        None => std::future::pending().await,
    }
}

/// Drops a session (its clients close on a thread of their own, see `Session`'s `Drop`).
fn retire(s: Session) {
    drop(s);
}

/// A new session after a loss: the cluster answers, the run's topics exist, the clients are new.
async fn reconnect(spec: &SessionSpec) -> Result<Session, SessionError> {
    let c = klink::config(&spec.url, &spec.opts, "rr-reconnect", &[])
        .map_err(SessionError::Protocol)?;
    klink::ensure(&c, &spec.url.path, spec.opts.connect_timeout()).await?;
    klink::establish(spec).await
}

/// Drives a Kafka connection that engines write to through `link`, starting with `first`,
/// until `shutdown`; then produced records get up to 2 s to leave, and the handler is returned.
pub async fn drive<H: Handler>(
    spec: SessionSpec,
    first: Session,
    mut handler: H,
    link: Arc<Link>,
    shutdown: CancellationToken,
) -> H {
    let sink = Arc::new(ProducerSink::default());
    link.attach_sink(sink.clone());
    let mut addr = Vec::with_capacity(64);
    let mut cur: Option<Session> = None;
    let mut again = false;
    let mut attempt = 0u32;
    let mut next_try = tokio::time::Instant::now();
    let mut start = Some(first);
    // the current producer's undelivered records, as last reported
    let mut undelivered = 0u64;
    let mut offsets = Offsets::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(mut s) = start.take() {
            sink.set(s.producer.clone());
            link.set_up(true, again);
            handler.on_link(LinkEvent::Up);
            let now = Instant::now();
            // (a new session's offsets start again: a re-created topic starts at 0)
            offsets = Offsets::default();
            if let Some(c) = s.consumer.clone() {
                for m in std::mem::take(&mut s.pending) {
                    hand_on(&c, &m, &mut handler, &mut addr, &mut offsets, now);
                }
            }
            handler.flush().await;
            undelivered = 0;
            cur = Some(s);
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = next(cur.as_ref().and_then(|s| s.consumer.as_ref())) => {
                let now = Instant::now();
                if let Some(c) = cur.as_ref().and_then(|s| s.consumer.as_ref()) {
                    match r {
                        Ok(m) => hand_on(c, &m, &mut handler, &mut addr, &mut offsets, now),
                        Err(e) => tracing::debug!("consumer: {e}"),
                    }
                    drain(c, &mut handler, &mut addr, &mut offsets, now);
                }
                handler.flush().await;
            }
            _ = tick.tick() => match &cur {
                Some(s) => {
                    if let Some(p) = &s.producer {
                        p.poll(Duration::ZERO);
                    }
                    let lost = s.producer.as_ref().map_or(0, |p| p.context().undelivered());
                    if lost > undelivered {
                        // (requests among them end as timeouts; plain publishes only here)
                        tracing::warn!(client = %spec.client_id, "{} records not delivered (librdkafka gave up on them)", lost - undelivered);
                        undelivered = lost;
                    }
                    if let Some(c) = &s.consumer {
                        let (redelivered, skipped) = offsets.take();
                        handler.on_consumer(ConsumerProgress {
                            lag: c.context().consumer_lag(),
                            rebalances: c.context().take_rebalances(),
                            redelivered,
                            skipped,
                        });
                    }
                    let down = s.producer.as_ref().is_some_and(|p| p.context().take_down())
                        | s.consumer.as_ref().is_some_and(|c| c.context().take_down());
                    if down {
                        tracing::warn!(client = %spec.client_id, "Kafka cluster unreachable; reconnecting");
                        sink.set(None);
                        link.set_up(false, true);
                        handler.on_link(LinkEvent::Down { lost: true });
                        if let Some(s) = cur.take() {
                            retire(s);
                        }
                        again = true;
                        attempt = 0;
                        next_try = tokio::time::Instant::now() + backoff(0);
                    }
                }
                None if tokio::time::Instant::now() >= next_try => {
                    let r = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = reconnect(&spec) => r,
                    };
                    match r {
                        Ok(s) => start = Some(s),
                        Err(e) => {
                            tracing::debug!(client = %spec.client_id, "Kafka reconnect: {e}");
                            handler.on_link(LinkEvent::ConnectFailed);
                            attempt = attempt.saturating_add(1);
                            next_try = tokio::time::Instant::now() + backoff(attempt);
                        }
                    }
                }
                None => {}
            }
        }
    }
    sink.set(None);
    let was_up = cur.is_some();
    link.set_up(false, false);
    if was_up {
        handler.on_link(LinkEvent::Down { lost: false });
    }
    if let Some(s) = cur {
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(p) = &s.producer {
                let _ = p.flush(FLUSH_LIMIT);
            }
            drop(s);
        })
        .await;
    }
    handler
}

/// Hands on every record already fetched (up to [`DRAIN`]) without waiting.
fn drain<H: Handler>(
    c: &StreamConsumer<KafkaContext>,
    handler: &mut H,
    addr: &mut Vec<u8>,
    offsets: &mut Offsets,
    now: Instant,
) {
    for _ in 0..DRAIN {
        match c.recv().now_or_never() {
            Some(Ok(m)) => hand_on(c, &m, handler, addr, offsets, now),
            Some(Err(e)) => tracing::debug!("consumer: {e}"),
            None => break,
        }
    }
}
