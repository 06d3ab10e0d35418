//! The engines' entry to the seam: establishes sessions, creates links and runs drivers on the
//! transport a broker URL names, and encodes what engines send with that transport's encoder.
//! A new transport adds its variant here and its module beside `mqtt`; the engines do not change.

use crate::broker::{BrokerUrl, ConnectOptions};
use crate::link::driver::{self, Lean, Shared};
use crate::link::{self, Handler, Link, Message, SessionError, SessionSpec, Transport};
use crate::mqtt::{self, Mqtt};
use bytes::BytesMut;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// An established session, of whichever transport, before its driver runs it.
pub enum Session {
    Mqtt(link::Session<mqtt::link::Decoder>),
}

/// Opens a session within CONNECT_TIMEOUT_MS: transport, handshake, subscriptions.
pub async fn establish(spec: &SessionSpec) -> Result<Session, SessionError> {
    Ok(Session::Mqtt(link::establish::<Mqtt>(spec).await?))
}

/// [`establish`], retrying transient failures for up to `budget` (see
/// [`link::establish_with_retry`]).
pub async fn establish_with_retry(
    spec: &SessionSpec,
    budget: Duration,
) -> Result<Session, SessionError> {
    Ok(Session::Mqtt(
        link::establish_with_retry::<Mqtt>(spec, budget).await?,
    ))
}

/// A new link (down until its driver runs) for connections to `url`.
pub fn new_link(_url: &BrokerUrl) -> Arc<Link> {
    Arc::new(Link::new(Mqtt::FRAMING))
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
    let Session::Mqtt(first) = first;
    driver::drive::<Mqtt, _, _, _>(
        move || spec.clone(),
        Some(Box::new(first)),
        handler,
        Shared::new(link),
        keep_alive,
        shutdown,
    )
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
    let first = first.map(|Session::Mqtt(s)| Box::new(s));
    driver::drive::<Mqtt, _, _, _>(
        connect,
        first,
        handler,
        Lean::default(),
        keep_alive,
        shutdown,
    )
}

/// Encodes what engines send (requests, answers, plain publishes) for one transport, into the
/// caller's buffer: one buffer per connection per tick, no allocation per message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Encoder {
    Mqtt(mqtt::Encoder),
}

impl Encoder {
    /// The encoder for connections to `url` with `opts`.
    pub fn new(_url: &BrokerUrl, opts: &ConnectOptions) -> Encoder {
        Encoder::Mqtt(mqtt::Encoder {
            proto: opts.protocol(),
        })
    }

    /// Whether messages sent with `qos` count against a link's room (send them with
    /// `Link::send_flow`).
    #[inline]
    pub fn flow_controlled(&self, qos: u8) -> bool {
        match self {
            Encoder::Mqtt(e) => e.flow_controlled(qos),
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
        }
    }

    /// The answer to `req` (whose `reply_to` is set), with `body`.
    #[inline]
    pub fn answer(&self, buf: &mut BytesMut, req: &Message<'_>, body: &[u8], qos: u8) {
        match self {
            Encoder::Mqtt(e) => e.answer(buf, req, body, qos),
        }
    }

    /// A message to `topic` that asks for no answer, its payload given in pieces.
    #[inline]
    pub fn publish(&self, buf: &mut BytesMut, topic: &[u8], payload: &[&[u8]], qos: u8) {
        match self {
            Encoder::Mqtt(e) => e.publish(buf, topic, payload, qos),
        }
    }
}
