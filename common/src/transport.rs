//! The engines' entry to the seam: establishes sessions, creates links and runs drivers on the
//! transport a broker URL names, and encodes what engines send with that transport's encoder.
//! A new transport adds its variant here and its module beside `mqtt`; the engines do not change.

use crate::broker::{BrokerUrl, ConnectOptions};
use crate::kafka;
use crate::link::driver::{self, Lean, Shared};
use crate::link::{self, Handler, Link, Message, SessionError, SessionSpec, Transport};
use crate::mqtt::{self, Mqtt};
use crate::nats::{self, Nats};
use bytes::BytesMut;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An established session, of whichever transport, before its driver runs it.
pub enum Session {
    Mqtt(link::Session<mqtt::link::Decoder>),
    Nats(link::Session<nats::link::Decoder>),
    /// librdkafka's clients: no bytes of ours, so no byte-level session.
    Kafka(Box<kafka::link::Session>),
}

impl Session {
    /// The largest message (headers and payload) the broker accepts, when it says
    /// (NATS `max_payload`).
    pub fn max_message(&self) -> Option<usize> {
        match self {
            Session::Mqtt(_) | Session::Kafka(_) => None,
            Session::Nats(s) => Some(s.decoder.max_payload()),
        }
    }
}

/// Opens a session within CONNECT_TIMEOUT_MS: transport, handshake, subscriptions.
pub async fn establish(spec: &SessionSpec) -> Result<Session, SessionError> {
    if spec.url.scheme.is_kafka() {
        return match tokio::time::timeout(
            spec.opts.connect_timeout() * 2,
            kafka::link::establish(spec),
        )
        .await
        {
            Ok(s) => Ok(Session::Kafka(Box::new(s?))),
            Err(_) => Err(SessionError::Timeout),
        };
    }
    if spec.url.scheme.is_nats() {
        return Ok(Session::Nats(link::establish::<Nats>(spec).await?));
    }
    Ok(Session::Mqtt(link::establish::<Mqtt>(spec).await?))
}

/// [`establish`], retrying transient failures for up to `budget` (see
/// [`link::establish_with_retry`]).
pub async fn establish_with_retry(
    spec: &SessionSpec,
    budget: Duration,
) -> Result<Session, SessionError> {
    if spec.url.scheme.is_kafka() {
        // (the cluster answered `prepare` already; this retries what is left to set up)
        let deadline = std::time::Instant::now() + budget;
        loop {
            match establish(spec).await {
                Ok(s) => return Ok(s),
                Err(e) if e.is_final() => return Err(e),
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(SessionError::GaveUp {
                        budget_ms: budget.as_millis() as u64,
                        last: Box::new(e),
                    })
                }
                Err(e) => {
                    tracing::debug!(client = %spec.client_id, "Kafka session: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    if spec.url.scheme.is_nats() {
        return Ok(Session::Nats(
            link::establish_with_retry::<Nats>(spec, budget).await?,
        ));
    }
    Ok(Session::Mqtt(
        link::establish_with_retry::<Mqtt>(spec, budget).await?,
    ))
}

/// Prepares the broker for a run: for Kafka, waits (up to CONNECT_RETRY_MS) until the cluster
/// answers and creates the topics the run needs that it lacks (`(name in the MQTT layout,
/// partitions)`, such as `("req", KAFKA_PARTITIONS)`), again whenever a restarted cluster has
/// lost them. Nothing to do for MQTT and NATS.
pub async fn prepare(
    url: &BrokerUrl,
    opts: &ConnectOptions,
    topics: &[(String, u32)],
) -> Result<(), SessionError> {
    if url.scheme.is_kafka() {
        return kafka::link::prepare(url, opts, topics).await;
    }
    Ok(())
}

/// A new link (down until its driver runs) for connections to `url`.
pub fn new_link(url: &BrokerUrl) -> Arc<Link> {
    // (a Kafka link's batches go to its producer: the MQTT framing hooks are never used)
    Arc::new(Link::new(if url.scheme.is_nats() {
        Nats::FRAMING
    } else {
        Mqtt::FRAMING
    }))
}

/// Drives a connection that engines write to through `link`, starting with `first`, until
/// `shutdown` (then it says goodbye, flushes, and returns the handler).
pub fn drive<H: Handler>(
    spec: SessionSpec,
    first: Session,
    handler: H,
    link: Arc<Link>,
    shutdown: CancellationToken,
) -> impl Future<Output = H> + Send {
    let keep_alive = Duration::from_secs(u64::from(spec.opts.keep_alive_sec));
    let side = Shared::new(link.clone());
    async move {
        match first {
            Session::Kafka(s) => kafka::driver::drive(spec, *s, handler, link, shutdown).await,
            Session::Mqtt(s) => {
                let connect = move || spec.clone();
                driver::drive::<Mqtt, _, _, _>(
                    connect,
                    Some(Box::new(s)),
                    handler,
                    side,
                    keep_alive,
                    shutdown,
                )
                .await
            }
            Session::Nats(s) => {
                let connect = move || spec.clone();
                driver::drive::<Nats, _, _, _>(
                    connect,
                    Some(Box::new(s)),
                    handler,
                    side,
                    keep_alive,
                    shutdown,
                )
                .await
            }
        }
    }
}

/// Drives an idle subscriber connection in the driver's lean mode (no outlet, no write buffer,
/// no read buffer between reads). `connect` gives the spec of each (re)connect attempt; without
/// `first`, the first attempt is made at once.
pub fn drive_lean<H, C>(
    connect: C,
    first: Option<Session>,
    handler: H,
    keep_alive: Duration,
    shutdown: CancellationToken,
) -> impl Future<Output = H> + Send
where
    H: Handler,
    C: Fn() -> SessionSpec + Send,
{
    let (nats, kafka) = match &first {
        Some(s) => (
            matches!(s, Session::Nats(_)),
            matches!(s, Session::Kafka(_)),
        ),
        None => {
            let scheme = connect().url.scheme;
            (scheme.is_nats(), scheme.is_kafka())
        }
    };
    async move {
        if kafka {
            // (Kafka subscribers are few: a link of their own; boxed, so an MQTT subscriber's
            // task carries none of its state)
            let spec = connect();
            return Box::pin(drive_kafka(spec, first, handler, shutdown)).await;
        }
        if nats {
            let first = first.and_then(|s| match s {
                Session::Nats(s) => Some(Box::new(s)),
                Session::Mqtt(_) | Session::Kafka(_) => None,
            });
            driver::drive::<Nats, _, _, _>(
                connect,
                first,
                handler,
                Lean::default(),
                keep_alive,
                shutdown,
            )
            .await
        } else {
            let first = first.and_then(|s| match s {
                Session::Mqtt(s) => Some(Box::new(s)),
                Session::Nats(_) | Session::Kafka(_) => None,
            });
            driver::drive::<Mqtt, _, _, _>(
                connect,
                first,
                handler,
                Lean::default(),
                keep_alive,
                shutdown,
            )
            .await
        }
    }
}

/// A Kafka subscriber: its first session (`first`, or established here with the seam's backoff,
/// each failure told to the handler), then the Kafka driver.
async fn drive_kafka<H: Handler>(
    spec: SessionSpec,
    first: Option<Session>,
    mut handler: H,
    shutdown: CancellationToken,
) -> H {
    let mut attempt = 0u32;
    let session = match first {
        Some(Session::Kafka(s)) => *s,
        _ => loop {
            let r = tokio::select! {
                _ = shutdown.cancelled() => return handler,
                r = establish(&spec) => r,
            };
            match r {
                Ok(Session::Kafka(s)) => break *s,
                Ok(_) => return handler,
                Err(e) => {
                    tracing::debug!(client = %spec.client_id, "Kafka session: {e}");
                    handler.on_link(link::LinkEvent::ConnectFailed);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => return handler,
                        _ = tokio::time::sleep(link::backoff(attempt)) => {}
                    }
                }
            }
        },
    };
    let link = new_link(&spec.url);
    kafka::driver::drive(spec, session, handler, link, shutdown).await
}

/// Encodes what engines send (requests, answers, plain publishes) for one transport, into the
/// caller's buffer: one buffer per connection per tick, no allocation per message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Encoder {
    Mqtt(mqtt::Encoder),
    Nats(nats::Encoder),
    Kafka(kafka::encoder::Encoder),
}

impl Encoder {
    /// The encoder for connections to `url` with `opts`.
    pub fn new(url: &BrokerUrl, opts: &ConnectOptions) -> Encoder {
        if url.scheme.is_nats() {
            return Encoder::Nats(nats::Encoder);
        }
        if url.scheme.is_kafka() {
            return Encoder::Kafka(kafka::encoder::Encoder::levels());
        }
        Encoder::Mqtt(mqtt::Encoder {
            proto: opts.protocol(),
        })
    }

    /// The encoder of the fan-out publisher: as [`Encoder::new`], except that Kafka produces
    /// every subject to the topic `SUBJECT_TOPIC` names, keyed by the subject.
    pub fn fanout(
        url: &BrokerUrl,
        opts: &ConnectOptions,
        subject_topics: &kafka::topics::SubjectTopics,
    ) -> Encoder {
        if url.scheme.is_kafka() {
            return Encoder::Kafka(kafka::encoder::Encoder::new(subject_topics));
        }
        Encoder::new(url, opts)
    }

    /// Whether messages sent with `qos` count against a link's room (send them with
    /// `Link::send_flow`).
    #[inline]
    pub fn flow_controlled(&self, qos: u8) -> bool {
        match self {
            Encoder::Mqtt(e) => e.flow_controlled(qos),
            Encoder::Nats(e) => e.flow_controlled(qos),
            Encoder::Kafka(_) => false,
        }
    }

    /// Bytes of a request's message as a broker limits it (NATS: headers and payload), for
    /// the start-up check against the broker's largest message.
    pub fn message_len(&self, correlation_len: usize, body_len: usize) -> usize {
        match self {
            Encoder::Mqtt(_) | Encoder::Kafka(_) => correlation_len + body_len,
            Encoder::Nats(e) => e.message_len(correlation_len, body_len),
        }
    }

    /// A request to `topic` asking for an answer on `reply_to` that echoes `correlation`.
    #[inline]
    pub fn request(
        &self,
        buf: &mut BytesMut,
        topic: &[u8],
        reply_to: &[u8],
        correlation: &[u8],
        body: &[u8],
        qos: u8,
    ) {
        match self {
            Encoder::Mqtt(e) => e.request(buf, topic, reply_to, correlation, body, qos),
            Encoder::Nats(e) => e.request(buf, topic, reply_to, correlation, body),
            Encoder::Kafka(e) => e.request(buf, topic, reply_to, correlation, body),
        }
    }

    /// The answer to `req` (whose `reply_to` is set), with `body`.
    #[inline]
    pub fn answer(&self, buf: &mut BytesMut, req: &Message<'_>, body: &[u8], qos: u8) {
        match self {
            Encoder::Mqtt(e) => e.answer(buf, req, body, qos),
            Encoder::Nats(e) => e.answer(buf, req, body),
            Encoder::Kafka(e) => e.answer(buf, req, body),
        }
    }

    /// A message to `topic` that asks for no answer, its payload given in pieces.
    #[inline]
    pub fn publish(&self, buf: &mut BytesMut, topic: &[u8], payload: &[&[u8]], qos: u8) {
        match self {
            Encoder::Mqtt(e) => e.publish(buf, topic, payload, qos),
            Encoder::Nats(e) => e.publish(buf, topic, payload),
            Encoder::Kafka(e) => e.publish(buf, topic, payload),
        }
    }
}
