//! Lean MQTT connections (3.1.1 and 5): handshake and subscribe with `rumqttc`'s mqttbytes, then
//! one task per connection that reads frames, hands PUBLISHes to a handler, writes the batches it
//! is given, keeps the session alive, and reconnects with backoff and jitter when the link drops.

use crate::broker::{BrokerUrl, ConnectOptions};
use crate::codec::{self, Frame, InPublish, Protocol};
use crate::net::{self, TransportError, WireReader, WireWriter};
use crate::outlet::Outlet;
use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4 as mb4;
use rumqttc::v5::mqttbytes::v5 as mb5;
use rumqttc::v5::mqttbytes::QoS;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest packet we accept from a broker.
pub const MAX_PACKET: usize = 4 << 20;

/// Why a session could not be set up.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("broker refused the connection: {0}")]
    Refused(String),
    #[error("broker rejected the credentials ({0}); check MQTT_USERNAME and MQTT_PASSWORD")]
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
}

impl SessionError {
    /// Errors that retrying will not fix: bad credentials, untrusted certificates.
    pub fn is_final(&self) -> bool {
        match self {
            SessionError::Auth(_) => true,
            SessionError::Transport(t) => t.is_final(),
            SessionError::GaveUp { .. } => true,
            _ => false,
        }
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

/// Live state of one connection, shared with whoever routes traffic to it.
#[derive(Debug, Default)]
pub struct LinkStatus {
    pub up: AtomicBool,
    /// Successful re-establishments after the first connect.
    pub reconnects: AtomicU64,
    /// Times the link went down.
    pub disconnects: AtomicU64,
    /// QoS 1 publishes sent and not yet acknowledged.
    pub unacked: AtomicU32,
    /// Broker's receive maximum (MQTT 5), 65535 when it sets none.
    pub receive_max: AtomicU32,
    /// The connection's write side: producers write their batches here (see [`Outlet`]).
    pub outlet: Outlet,
}

/// An established session, before its driver task starts.
pub struct Session {
    pub reader: WireReader,
    pub writer: WireWriter,
    /// Bytes read past the handshake, to be parsed first.
    pub pending: BytesMut,
    pub protocol: Protocol,
    pub receive_max: u16,
}

async fn read_packet(
    reader: &mut WireReader,
    buf: &mut BytesMut,
    url: &BrokerUrl,
) -> Result<(Frame, Bytes), SessionError> {
    loop {
        match codec::next_frame(buf, MAX_PACKET) {
            Ok(Some(f)) => {
                let bytes = buf.split_to(f.total_len).freeze();
                return Ok((f, bytes));
            }
            Ok(None) => {}
            Err(e) => return Err(SessionError::Protocol(e.to_string())),
        }
        match reader.read_into(buf).await {
            Ok(0) => return Err(SessionError::Closed),
            Ok(_) => {}
            Err(e) => return Err(handshake_io_error(url, e)),
        }
    }
}

/// A read or write error during the handshake. With TLS 1.3 the broker judges our client
/// certificate after our side of the handshake has finished, so its refusal (an alert) only
/// shows up here: it is reported as the TLS failure it is, which retrying cannot fix.
fn handshake_io_error(url: &BrokerUrl, e: std::io::Error) -> SessionError {
    if net::rustls_error(&e).is_some() {
        SessionError::Transport(TransportError::Tls {
            addr: url.authority(),
            source: e,
        })
    } else {
        SessionError::Protocol(e.to_string())
    }
}

fn refused_v5(code: mb5::ConnectReturnCode) -> SessionError {
    use mb5::ConnectReturnCode as C;
    match code {
        C::BadUserNamePassword | C::NotAuthorized | C::BadAuthenticationMethod | C::Banned => {
            SessionError::Auth(format!("{code:?}"))
        }
        other => SessionError::Refused(format!("{other:?}")),
    }
}

fn refused_v4(code: mb4::ConnectReturnCode) -> SessionError {
    use mb4::ConnectReturnCode as C;
    match code {
        C::BadUserNamePassword | C::NotAuthorized => SessionError::Auth(format!("{code:?}")),
        other => SessionError::Refused(format!("{other:?}")),
    }
}

/// Opens the transport, sends CONNECT (clean start), waits for CONNACK, subscribes.
pub async fn establish(spec: &SessionSpec) -> Result<Session, SessionError> {
    establish_within(spec, spec.opts.connect_timeout()).await
}

async fn establish_within(spec: &SessionSpec, limit: Duration) -> Result<Session, SessionError> {
    match tokio::time::timeout(limit, establish_inner(spec)).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::Timeout),
    }
}

async fn establish_inner(spec: &SessionSpec) -> Result<Session, SessionError> {
    let opts = &spec.opts;
    let proto = opts.protocol();
    let (mut reader, mut writer) = net::open(&spec.url, opts, spec.tls.as_ref(), spec.bind).await?;
    let mut out = BytesMut::with_capacity(256);
    let username = opts.mqtt_username.clone();
    let password = opts.password().unwrap_or_default().to_string();
    let werr = |e: std::io::Error| handshake_io_error(&spec.url, e);
    match proto {
        Protocol::V5 => {
            let props = mb5::ConnectProperties {
                receive_maximum: Some(u16::MAX),
                max_packet_size: Some(MAX_PACKET as u32),
                ..mb5::ConnectProperties::new()
            };
            let connect = mb5::Connect {
                keep_alive: opts.keep_alive_sec,
                client_id: spec.client_id.clone(),
                clean_start: true,
                properties: Some(props),
            };
            let login = username.map(|u| mb5::Login::new(u, password));
            mb5::Packet::Connect(connect, None, login)
                .write(&mut out, None)
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
        }
        Protocol::V4 => {
            let mut connect = mb4::Connect::new(spec.client_id.clone());
            connect.keep_alive = opts.keep_alive_sec;
            connect.clean_session = true;
            connect.login = username.map(|u| mb4::Login::new(u, password));
            connect
                .write(&mut out)
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
        }
    }
    writer.write_all(out.split().freeze()).await.map_err(werr)?;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let (f, bytes) = read_packet(&mut reader, &mut buf, &spec.url).await?;
    if f.packet_type() != 2 {
        return Err(SessionError::Protocol(format!(
            "expected CONNACK, got packet type {}",
            f.packet_type()
        )));
    }
    let mut receive_max = u16::MAX;
    match proto {
        Protocol::V5 => match mb5::Packet::read(&mut BytesMut::from(&bytes[..]), None) {
            Ok(mb5::Packet::ConnAck(ack)) => {
                if ack.code != mb5::ConnectReturnCode::Success {
                    return Err(refused_v5(ack.code));
                }
                if let Some(rm) = ack.properties.and_then(|p| p.receive_max) {
                    receive_max = rm;
                }
            }
            other => return Err(SessionError::Protocol(format!("bad CONNACK: {other:?}"))),
        },
        Protocol::V4 => match mb4::Packet::read(&mut BytesMut::from(&bytes[..]), MAX_PACKET) {
            Ok(mb4::Packet::ConnAck(ack)) => {
                if ack.code != mb4::ConnectReturnCode::Success {
                    return Err(refused_v4(ack.code));
                }
            }
            other => return Err(SessionError::Protocol(format!("bad CONNACK: {other:?}"))),
        },
    }
    if !spec.subscriptions.is_empty() {
        let qos = |q: u8| {
            if q == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            }
        };
        match proto {
            Protocol::V5 => {
                let filters = spec
                    .subscriptions
                    .iter()
                    .map(|(t, q)| mb5::Filter::new(t.clone(), qos(*q)));
                let mut sub = mb5::Subscribe::new_many(filters, None);
                sub.pkid = 1;
                mb5::Packet::Subscribe(sub)
                    .write(&mut out, None)
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
            }
            Protocol::V4 => {
                let filters = spec.subscriptions.iter().map(|(t, q)| {
                    let q = if *q == 0 {
                        rumqttc::QoS::AtMostOnce
                    } else {
                        rumqttc::QoS::AtLeastOnce
                    };
                    mb4::SubscribeFilter::new(t.clone(), q)
                });
                let mut sub = mb4::Subscribe::new_many(filters);
                sub.pkid = 1;
                sub.write(&mut out)
                    .map_err(|e| SessionError::Protocol(e.to_string()))?;
            }
        }
        writer.write_all(out.split().freeze()).await.map_err(werr)?;
        // Wait for SUBACK; PUBLISHes may not arrive before it for a fresh clean session.
        loop {
            let (f, bytes) = read_packet(&mut reader, &mut buf, &spec.url).await?;
            if f.packet_type() != 9 {
                continue;
            }
            let failed = match proto {
                Protocol::V5 => match mb5::Packet::read(&mut BytesMut::from(&bytes[..]), None) {
                    Ok(mb5::Packet::SubAck(ack)) => ack
                        .return_codes
                        .iter()
                        .position(|c| !matches!(c, mb5::SubscribeReasonCode::Success(_))),
                    other => return Err(SessionError::Protocol(format!("bad SUBACK: {other:?}"))),
                },
                Protocol::V4 => {
                    match mb4::Packet::read(&mut BytesMut::from(&bytes[..]), MAX_PACKET) {
                        Ok(mb4::Packet::SubAck(ack)) => ack
                            .return_codes
                            .iter()
                            .position(|c| !matches!(c, mb4::SubscribeReasonCode::Success(_))),
                        other => {
                            return Err(SessionError::Protocol(format!("bad SUBACK: {other:?}")))
                        }
                    }
                }
            };
            if let Some(i) = failed {
                return Err(SessionError::SubscribeRejected(
                    spec.subscriptions[i].0.clone(),
                ));
            }
            break;
        }
    }
    Ok(Session {
        reader,
        writer,
        pending: buf,
        protocol: proto,
        receive_max,
    })
}

/// [`establish`], retrying transient failures (refused, unreachable, timeouts) with backoff until
/// `budget` has passed: the first attempt gets CONNECT_TIMEOUT_MS, retries end by the deadline
/// (the last one runs at the deadline, for at most 200 ms more).
/// Final errors (authentication, untrusted certificate) return at once; running out of budget
/// returns [`SessionError::GaveUp`].
pub async fn establish_with_retry(
    spec: &SessionSpec,
    budget: Duration,
) -> Result<Session, SessionError> {
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
        match establish_within(spec, limit).await {
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

/// Appends a PUBACK for `pkid` (same bytes in 3.1.1 and 5 for success).
pub fn encode_puback(buf: &mut BytesMut, pkid: u16) {
    buf.put_slice(&[0x40, 0x02]);
    buf.put_u16(pkid);
}

const PINGREQ: &[u8] = &[0xC0, 0x00];
const DISCONNECT: &[u8] = &[0xE0, 0x00];

/// Receives what a connection reads. Implemented by loadgen (responses) and worker (requests).
pub trait Inbound: Send + 'static {
    /// One PUBLISH, decoded in place. `now` is when the read that carried it returned.
    fn on_publish(&mut self, p: &InPublish<'_>, now: Instant);
    /// A frame that could not be decoded as a PUBLISH (counted as invalid by the handler).
    fn on_malformed(&mut self, err: codec::CodecError);
    /// A PUBACK for one of our QoS 1 publishes.
    fn on_puback(&mut self, _pkid: u16) {}
    /// Called after all frames of one read were handled: flush batches here.
    fn flush(&mut self) -> impl std::future::Future<Output = ()> + Send;
    /// The link went up or down.
    fn on_link(&mut self, _up: bool) {}
}

/// Handle for sending pre-encoded packet batches to a connection.
#[derive(Clone)]
pub struct LinkHandle {
    pub tx: mpsc::Sender<Bytes>,
    pub status: Arc<LinkStatus>,
}

/// Reconnect backoff: 100 ms doubling to 5 s, full jitter, so many links don't retry in step.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (100u64 << attempt.min(6)).min(5_000);
    Duration::from_millis(rand::random_range(cap_ms / 4..=cap_ms))
}

/// Drives one connection until `shutdown`: reads, dispatches, writes, keeps alive, reconnects.
/// `first` is the session established at start-up (so start-up errors are reported by the caller).
pub async fn drive<H: Inbound>(
    spec: SessionSpec,
    first: Session,
    mut handler: H,
    mut rx: mpsc::Receiver<Bytes>,
    status: Arc<LinkStatus>,
    shutdown: CancellationToken,
) {
    let mut session = Some(first);
    let mut attempt = 0u32;
    loop {
        let s = match session.take() {
            Some(s) => s,
            None => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                }
                match establish(&spec).await {
                    Ok(s) => {
                        status.reconnects.fetch_add(1, Ordering::Relaxed);
                        s
                    }
                    Err(e) => {
                        attempt = attempt.saturating_add(1);
                        tracing::debug!(client = %spec.client_id, "reconnect failed: {e}");
                        continue;
                    }
                }
            }
        };
        attempt = 0;
        status.unacked.store(0, Ordering::Relaxed);
        status
            .receive_max
            .store(u32::from(s.receive_max), Ordering::Relaxed);
        // Batches queued while the link was down belong to the old session: they are sent now,
        // late, and their requests end as matched or timed out like any other.
        status.up.store(true, Ordering::Release);
        handler.on_link(true);
        let reason = run_session(
            s,
            spec.opts.keep_alive_sec,
            &mut handler,
            &mut rx,
            &status,
            &shutdown,
        )
        .await;
        status.up.store(false, Ordering::Release);
        handler.on_link(false);
        match reason {
            Ended::Shutdown => return,
            Ended::Lost(why) => {
                status.disconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(client = %spec.client_id, "connection lost: {why}; reconnecting");
            }
        }
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}

async fn run_session<H: Inbound>(
    s: Session,
    keep_alive_sec: u16,
    handler: &mut H,
    rx: &mut mpsc::Receiver<Bytes>,
    status: &LinkStatus,
    shutdown: &CancellationToken,
) -> Ended {
    let Session {
        mut reader,
        mut writer,
        pending: mut buf,
        protocol,
        ..
    } = s;
    // Every write of the session goes through the outlet (producers may write directly).
    let outlet = &status.outlet;
    let direct = writer.direct();
    let _session = outlet.attach(direct.clone(), &status.unacked);
    let direct = direct.as_deref();
    let keep_alive = Duration::from_secs(u64::from(keep_alive_sec.max(1)));
    let mut ping = tokio::time::interval(keep_alive / 2);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut acks = BytesMut::new();
    let mut last_rx = Instant::now();
    let mut skip = 0usize;
    // Process bytes that arrived with the handshake.
    if let Err(e) = dispatch(
        &mut buf,
        &mut skip,
        protocol,
        handler,
        &mut acks,
        status,
        Instant::now(),
    ) {
        return Ended::Lost(e);
    }
    handler.flush().await;
    // Batches queued while the link was down are sent first.
    let mut dirty = true;
    loop {
        if !acks.is_empty() {
            outlet.push(&acks);
            acks.clear();
            dirty = true;
        }
        if dirty {
            if let Err(e) = outlet.flush(&mut writer, direct).await {
                return Ended::Lost(e.to_string());
            }
            dirty = false;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                // Flush what is queued, then say goodbye.
                outlet.detach();
                while let Ok(b) = rx.try_recv() {
                    outlet.push(&b);
                }
                outlet.push(DISCONNECT);
                let _ = outlet.flush(&mut writer, direct).await;
                writer.shutdown().await;
                return Ended::Shutdown;
            }
            r = reader.read_into(&mut buf) => {
                match r {
                    Ok(0) => return Ended::Lost("closed by broker".into()),
                    Ok(_) => {
                        let now = Instant::now();
                        last_rx = now;
                        if let Err(e) = dispatch(&mut buf, &mut skip, protocol, handler, &mut acks, status, now) {
                            return Ended::Lost(e);
                        }
                        handler.flush().await;
                    }
                    Err(e) => return Ended::Lost(e.to_string()),
                }
            }
            b = rx.recv() => {
                let Some(b) = b else { return Ended::Shutdown };
                outlet.push(&b);
                dirty = true;
            }
            _ = outlet.queued_wake() => dirty = true,
            _ = ping.tick() => {
                if last_rx.elapsed() > keep_alive * 2 {
                    return Ended::Lost("no traffic from broker within 2x keep-alive".into());
                }
                outlet.push(PINGREQ);
                dirty = true;
            }
        }
    }
}

/// Total length (fixed header included) that the fixed header at the start of `buf` announces,
/// once its remaining-length field is complete.
fn announced_len(buf: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    for i in 1..5 {
        let b = *buf.get(i)?;
        len |= usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Some(i + 1 + len);
        }
    }
    None
}

/// Parses every complete frame in `buf`, handing PUBLISHes to the handler and queuing PUBACKs.
/// A frame larger than [`MAX_PACKET`] (MQTT 3.1.1 cannot tell the broker our limit) is counted
/// as malformed and its bytes are dropped as they arrive (`skip` carries the rest across reads),
/// so one oversized message costs neither memory nor the connection. Returns an error only
/// for a broken stream (framing lost), after which the link is reset.
fn dispatch<H: Inbound>(
    buf: &mut BytesMut,
    skip: &mut usize,
    proto: Protocol,
    handler: &mut H,
    acks: &mut BytesMut,
    status: &LinkStatus,
    now: Instant,
) -> Result<(), String> {
    let mut consumed = (*skip).min(buf.len());
    *skip -= consumed;
    let result = loop {
        if *skip > 0 {
            break Ok(());
        }
        let rest = &buf[consumed..];
        let f = match codec::next_frame(rest, MAX_PACKET) {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(codec::CodecError::TooLarge) => {
                let Some(total) = announced_len(rest) else {
                    break Err("unreadable frame length".into());
                };
                handler.on_malformed(codec::CodecError::TooLarge);
                let now_dropped = total.min(rest.len());
                consumed += now_dropped;
                *skip = total - now_dropped;
                continue;
            }
            Err(e) => break Err(format!("unreadable frame: {e}")),
        };
        let frame = &rest[..f.total_len];
        match f.packet_type() {
            3 => match codec::decode_publish(frame, f, proto) {
                Ok(p) => {
                    if p.qos == 1 {
                        encode_puback(acks, p.pkid);
                    }
                    handler.on_publish(&p, now);
                }
                Err(e) => handler.on_malformed(e),
            },
            4 => {
                if frame.len() >= 4 {
                    let pkid = u16::from_be_bytes([frame[2], frame[3]]);
                    let _ =
                        status
                            .unacked
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                                Some(v.saturating_sub(1))
                            });
                    handler.on_puback(pkid);
                }
            }
            13 | 9 | 11 => {} // PINGRESP, SUBACK, UNSUBACK
            14 => break Err("broker sent DISCONNECT".into()),
            _ => handler.on_malformed(codec::CodecError::UnexpectedPacket),
        }
        consumed += f.total_len;
    };
    let _ = buf.split_to(consumed);
    result
}

#[cfg(test)]
#[path = "mqtt_tests.rs"]
mod tests;
