//! The transport seam: everything an engine (loadgen lanes, the worker, the fan-out publisher
//! and subscribers) sees of a broker connection, whatever the protocol.
//!
//! - Engines receive decoded [`Message`]s (payload, reply address, correlation) and counted
//!   [`Invalid`] frames through one [`Handler`].
//! - Engines send pre-encoded batches (encoded by the transport's encoder, see
//!   `crate::transport::Encoder`) through a connection's [`Link`]: its outlet is the only write
//!   path. Flow control is a question the engine asks the link ([`Link::room`]).
//! - A transport (MQTT in `crate::mqtt`) implements [`Transport`]: how a session is
//!   established, how received frames are dispatched ([`Decode`]), its keep-alive and goodbye
//!   bytes and its [`Framing`] hooks. The one driver ([`driver::drive`]) runs every connection
//!   of every transport.

pub mod driver;
mod outlet;

pub use outlet::{Sent, MAX_QUEUED};

use crate::broker::{BrokerUrl, ConnectOptions};
use crate::net::{TransportError, WireReader, WireWriter};
use bytes::BytesMut;
use outlet::Outlet;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// One received message, borrowed from the read buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub topic: &'a [u8],
    /// The body (a transport's own framing, such as the MQTT 3.1.1 header, removed).
    pub payload: &'a [u8],
    /// Where an answer goes, when the message asks for one.
    pub reply_to: Option<&'a [u8]>,
    /// The correlation an answer must echo.
    pub correlation: Option<&'a [u8]>,
    /// Reply address and correlation came inside the payload (the MQTT 3.1.1 header): the
    /// answer is framed the same way, so the requester can read it.
    pub in_header: bool,
    /// Bytes the message took on the wire.
    pub wire_len: usize,
}

/// Why a received frame was not handed on as a message. `Copy`, to index counters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Larger than the transport accepts: skipped as it arrived, the link stays up.
    TooLarge,
    /// Not decodable as a message (or its reply address and correlation are malformed).
    Malformed,
    /// A frame the transport does not expect from a broker.
    Unexpected,
}

/// What happened to a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A session is up (the first one or a re-established one).
    Up,
    /// The session ended: lost (`lost`, a reconnect follows) or shut down.
    Down { lost: bool },
    /// An attempt to (re)connect failed; another follows after a backoff.
    ConnectFailed,
}

/// Receives what a connection reads. Implemented by the engines.
pub trait Handler: Send + 'static {
    /// One message. `now` is when it arrived: on a connection read at an engine's tick
    /// ([`Link::read_at_ticks`]), when the kernel received the last segment read with it (see
    /// `crate::net::stamped`); otherwise when the read that carried it returned.
    fn on_message(&mut self, m: &Message<'_>, now: Instant);
    /// A frame that was counted and dropped.
    fn on_invalid(&mut self, kind: Invalid);
    /// Called after all frames of one read were handled: hand batches on here.
    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// The broker acknowledged flow-controlled messages: [`Link::room`] grew.
    fn on_room(&mut self) {}
    /// The connection went up or down, or a connect attempt failed.
    fn on_link(&mut self, _e: LinkEvent) {}
    /// A consumer's progress as its transport measured it (Kafka: once a second, from
    /// librdkafka's statistics and group events and the offsets handed on).
    fn on_consumer(&mut self, _p: ConsumerProgress) {}
}

/// What a consumer's transport tells of its progress ([`Handler::on_consumer`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerProgress {
    /// Records between its position and the partitions' ends (`None`: not measured yet).
    pub lag: Option<u64>,
    /// Group rebalances it went through since the last call (its partitions were revoked,
    /// to be assigned again).
    pub rebalances: u64,
    /// Records handed on since the last call whose offset was at or below one already handed
    /// on in the same partition since its last assignment: the client read them again.
    pub redelivered: u64,
    /// Offsets it jumped over since the last call: records of its partitions it never got
    /// (Kafka offsets are consecutive here: no transactions, no compaction).
    pub skipped: u64,
}

/// Hooks a transport supplies for the bytes an engine hands to a link.
pub struct Framing {
    /// Flow-controlled messages among the whole messages in the bytes.
    pub count_flow: fn(&[u8]) -> u32,
    /// Gives the flow-controlled messages among the whole messages in the bytes their
    /// identifiers, the `first`-th onwards of the connection's sequence.
    pub stamp: fn(&mut [u8], first: u32),
}

/// Messages the broker still takes before it acknowledges some.
#[derive(Debug, Default)]
pub struct Flow {
    /// The broker's limit (MQTT 5 receive maximum; `u32::MAX` for none).
    limit: AtomicU32,
    /// Flow-controlled messages sent and not yet acknowledged.
    unacked: AtomicU32,
    /// Next identifier of the connection's sequence.
    next_id: AtomicU32,
}

impl Flow {
    /// The broker acknowledged `n` messages.
    pub fn acked(&self, n: u32) {
        let _ = self
            .unacked
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
    }
}

/// Where a link's batches go when the transport's own client owns the connections (Kafka:
/// librdkafka's producer) rather than the outlet. Set once, by the transport's driver.
pub trait Sink: Send + Sync + 'static {
    /// Hands a batch (whole messages of the transport's encoding) to the client. Never blocks.
    fn send(&self, batch: &[u8]) -> Sent;
    /// What waits in the client to be sent.
    fn backlog(&self) -> usize;
}

/// The shared side of one connection, kept across reconnects: whether it is up, its counters,
/// its flow control and its outlet (the only write path), or its transport's [`Sink`].
pub struct Link {
    up: AtomicBool,
    reconnects: AtomicU64,
    disconnects: AtomicU64,
    flow: Flow,
    outlet: Outlet,
    sink: std::sync::OnceLock<Arc<dyn Sink>>,
    framing: &'static Framing,
    /// Read at an engine's tick rather than on arrival ([`Link::read_at_ticks`]).
    #[cfg(target_os = "linux")]
    ticks: std::sync::OnceLock<Ticks>,
}

/// A link's place in a [`crate::net::stamped::ReadSet`].
#[cfg(target_os = "linux")]
pub struct Ticks {
    pub(crate) set: Arc<crate::net::stamped::ReadSet>,
    pub(crate) token: u64,
    /// Notified by the set's poll when the connection holds data.
    pub(crate) due: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("up", &self.is_up())
            .field("room", &self.room())
            .field("backlog", &self.backlog())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link (down until its driver starts) for a transport with `framing`.
    pub fn new(framing: &'static Framing) -> Link {
        Link {
            up: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            flow: Flow {
                limit: AtomicU32::new(u32::MAX),
                ..Flow::default()
            },
            outlet: Outlet::default(),
            sink: std::sync::OnceLock::new(),
            framing,
            #[cfg(target_os = "linux")]
            ticks: std::sync::OnceLock::new(),
        }
    }

    /// From its next session on, the connection is read when the engine polls `set` (at its
    /// own wake-ups) instead of when bytes arrive, so arrivals wake no one; each message's
    /// arrival is the kernel's receive timestamp. Plain TCP only: other transports, and a kernel
    /// that gives no timestamps, keep reading on arrival. The engine must poll the set for as
    /// long as the link runs (acknowledgements, keep-alive answers and a closed connection are
    /// read then too). A link joins one set for its life; a second is ignored.
    #[cfg(target_os = "linux")]
    pub fn read_at_ticks(&self, set: &Arc<crate::net::stamped::ReadSet>) {
        let _ = self.ticks.get_or_init(|| {
            let due = Arc::new(tokio::sync::Notify::new());
            Ticks {
                set: set.clone(),
                token: set.join(due.clone()),
                due,
            }
        });
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn ticks(&self) -> Option<&Ticks> {
        self.ticks.get()
    }

    /// Batches go to `sink` from now on (a transport whose client owns the connections). A
    /// link takes one sink for its life; a second is ignored.
    pub fn attach_sink(&self, sink: Arc<dyn Sink>) {
        let _ = self.sink.set(sink);
    }

    /// For a transport's own driver: the link is up (`again`: after a loss, a reconnect) or
    /// down (`lost`: not by shutdown).
    pub fn set_up(&self, up: bool, counted: bool) {
        self.up.store(up, std::sync::atomic::Ordering::Release);
        if counted {
            if up {
                self.reconnects.fetch_add(1, Relaxed);
            } else {
                self.disconnects.fetch_add(1, Relaxed);
            }
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Successful re-establishments after the first connect.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Relaxed)
    }

    /// Times the link went down.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Relaxed)
    }

    /// Bytes waiting to be written (a backed-up link takes no more this tick).
    pub fn backlog(&self) -> usize {
        match self.sink.get() {
            Some(s) => s.backlog(),
            None => self.outlet.queued(),
        }
    }

    /// How many more flow-controlled messages the link may be given now.
    pub fn room(&self) -> u32 {
        let f = &self.flow;
        f.limit
            .load(Relaxed)
            .saturating_sub(f.unacked.load(Relaxed))
    }

    /// The flow control of the messages sent on this link.
    #[cfg(test)]
    pub(crate) fn flow(&self) -> &Flow {
        &self.flow
    }

    /// Hands whole messages, none of them flow-controlled, to the connection: written at once
    /// when it can take them, else queued for the link's task. Never blocks.
    pub fn send(&self, batch: &[u8]) -> Sent {
        if let Some(s) = self.sink.get() {
            return s.send(batch);
        }
        self.outlet.send(batch)
    }

    /// Like [`Link::send`], for a batch holding `n` flow-controlled messages: they get their
    /// identifiers from the connection's sequence and count against [`Link::room`] until the
    /// broker acknowledges them. Refused bytes ([`Sent::Full`]) count for nothing.
    pub fn send_flow(&self, batch: &mut [u8], n: u32) -> Sent {
        if n == 0 {
            return self.send(batch);
        }
        let first = self.flow.next_id.fetch_add(n, Relaxed);
        (self.framing.stamp)(batch, first);
        self.flow.unacked.fetch_add(n, Relaxed);
        let sent = self.outlet.send(batch);
        if sent == Sent::Full {
            self.flow.acked(n);
        }
        sent
    }
}

/// Everything needed to (re)open one session.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    pub url: BrokerUrl,
    pub opts: Arc<ConnectOptions>,
    pub client_id: String,
    /// Topic filters and their QoS, subscribed after every (re)connect.
    pub subscriptions: Vec<(String, u8)>,
    pub bind: Option<IpAddr>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Why a session could not be set up.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("broker refused the connection: {0}")]
    Refused(String),
    #[error("broker rejected the credentials ({0}); check BROKER_USERNAME and BROKER_PASSWORD (or MQTT_USERNAME and MQTT_PASSWORD)")]
    Auth(String),
    #[error("broker rejected subscription to '{0}'")]
    SubscribeRejected(String),
    #[error("protocol error during handshake: {0}")]
    Protocol(String),
    #[error("connection closed during handshake")]
    Closed,
    #[error("handshake timed out")]
    Timeout,
    #[error("still failing after retrying for {budget_ms} ms (CONNECT_RETRY_MS): {last}")]
    GaveUp {
        budget_ms: u64,
        last: Box<SessionError>,
    },
    #[error("the connect task failed: {0}")]
    Task(String),
}

impl SessionError {
    /// Errors that retrying will not fix: bad credentials, untrusted certificates.
    pub fn is_final(&self) -> bool {
        match self {
            SessionError::Auth(_) => true,
            SessionError::Transport(t) => t.is_final(),
            SessionError::GaveUp { .. } | SessionError::Task(_) => true,
            _ => false,
        }
    }
}

/// A read or write error during a handshake. With TLS 1.3 the broker judges our client
/// certificate after our side of the handshake has finished, so its refusal (an alert) only
/// shows up here: it is reported as the TLS failure it is, which retrying cannot fix.
pub fn handshake_error(url: &BrokerUrl, e: std::io::Error) -> SessionError {
    if crate::net::rustls_error(&e).is_some() {
        SessionError::Transport(TransportError::Tls {
            addr: url.authority(),
            source: e,
        })
    } else {
        SessionError::Protocol(e.to_string())
    }
}

/// An established session, before the driver runs it.
pub struct Session<D> {
    pub reader: WireReader,
    pub writer: WireWriter,
    /// The read buffer: bytes read past the handshake are dispatched first.
    pub pending: BytesMut,
    /// The transport's reader state for this session.
    pub decoder: D,
    /// Flow-controlled messages the broker takes unacknowledged (`u32::MAX`: no limit).
    pub flow_limit: u32,
}

/// Parses a transport's received frames.
pub trait Decode: Send + 'static {
    /// Handles every complete frame in `buf` and removes it: messages and invalid frames to
    /// `handler`, the protocol's own answers (acknowledgements, pongs) appended to `replies`,
    /// acknowledgements of our flow-controlled messages to `flow`. An error means the stream
    /// is no longer framed: the link is reset.
    fn dispatch<H: Handler>(
        &mut self,
        buf: &mut BytesMut,
        handler: &mut H,
        replies: &mut BytesMut,
        flow: Option<&Flow>,
        now: Instant,
    ) -> Result<(), String>;
}

/// A broker protocol behind the seam.
pub trait Transport: Send + Sync + 'static {
    type Decoder: Decode;
    /// Keep-alive probe the driver sends when the link has been quiet.
    const PING: &'static [u8];
    /// Written before the connection closes at shutdown.
    const GOODBYE: &'static [u8];
    /// Hooks for the bytes engines hand to links of this transport.
    const FRAMING: &'static Framing;
    /// Opens the transport, sets up the session and subscribes (no time limit of its own:
    /// see [`establish`]).
    fn connect(
        spec: &SessionSpec,
    ) -> impl Future<Output = Result<Session<Self::Decoder>, SessionError>> + Send;
}

/// Opens a session of transport `T` within CONNECT_TIMEOUT_MS.
pub async fn establish<T: Transport>(
    spec: &SessionSpec,
) -> Result<Session<T::Decoder>, SessionError> {
    establish_within::<T>(spec, spec.opts.connect_timeout()).await
}

async fn establish_within<T: Transport>(
    spec: &SessionSpec,
    limit: Duration,
) -> Result<Session<T::Decoder>, SessionError> {
    match tokio::time::timeout(limit, T::connect(spec)).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::Timeout),
    }
}

/// [`establish`], retrying transient failures (refused, unreachable, timeouts) with backoff until
/// `budget` has passed: the first attempt gets CONNECT_TIMEOUT_MS, retries end by the deadline
/// (the last one runs at the deadline, for at most 200 ms more).
/// Final errors (authentication, untrusted certificate) return at once; running out of budget
/// returns [`SessionError::GaveUp`].
pub async fn establish_with_retry<T: Transport>(
    spec: &SessionSpec,
    budget: Duration,
) -> Result<Session<T::Decoder>, SessionError> {
    // The last attempt, at the deadline, still gets this long.
    const LAST_TRY: Duration = Duration::from_millis(200);
    let deadline = Instant::now() + budget;
    let mut attempt = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = if attempt == 0 {
            spec.opts.connect_timeout()
        } else {
            spec.opts.connect_timeout().min(left.max(LAST_TRY))
        };
        match establish_within::<T>(spec, limit).await {
            Ok(s) => return Ok(s),
            Err(e) if e.is_final() => return Err(e),
            Err(e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(SessionError::GaveUp {
                        budget_ms: budget.as_millis() as u64,
                        last: Box::new(e),
                    });
                }
                attempt += 1;
                tracing::debug!(client = %spec.client_id, "connect failed ({e}); retrying");
                tokio::time::sleep(backoff(attempt - 1).min(left)).await;
            }
        }
    }
}

/// Reconnect backoff: 100 ms doubling to 5 s, full jitter, so many links don't retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (100u64 << attempt.min(6)).min(5_000);
    Duration::from_millis(rand::random_range(cap_ms / 4..=cap_ms))
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
