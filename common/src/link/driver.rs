//! The one connection driver, for every connection of every transport: runs a session (read,
//! dispatch, write, keep-alive), and when the link drops, reconnects with backoff and jitter and
//! resubscribes, until shutdown; then it says goodbye, flushes, and returns the handler.
//!
//! Two write sides: [`Shared`] for connections engines write to (rr lanes, the worker, the
//! fan-out publisher) through the link's outlet, and [`Lean`] for the hundreds of thousands of
//! idle fan-out subscribers, which keeps no outlet or write buffer, drops its read buffer
//! between reads, and boxes its rare writes so an idle connection's task stays small.

use super::{backoff, Decode, Flow, Handler, Link, LinkEvent, Session, SessionSpec, Transport};
use crate::net::WireWriter;
use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Longest the goodbye (and what is queued before it) may take to leave at shutdown.
const GOODBYE_LIMIT: Duration = Duration::from_secs(2);
/// A lean connection's read buffer larger than this is released once drained.
const LEAN_KEEP_BUF: usize = 2048;

/// Where a session's bytes go out. See the module docs.
pub trait Side: Send {
    /// Release the read buffer between reads and keep no per-connection write state.
    const LEAN: bool;
    /// A session started on `writer`; the broker takes `flow_limit` flow-controlled messages.
    fn begin(&mut self, writer: &WireWriter, flow_limit: u32, count_flow: fn(&[u8]) -> u32);
    /// The session ended (or is ending): bytes from producers wait for the next one.
    fn end(&mut self);
    /// The session's own packets (acknowledgements, pings, goodbye) until [`Side::write`].
    fn replies(&mut self) -> &mut BytesMut;
    /// [`Side::replies`] and the flow control of the connection's sent messages, if it sends
    /// any: what a read's dispatch needs.
    fn io(&mut self) -> (&mut BytesMut, Option<&Flow>);
    /// Writes out what is pending.
    fn write<'a>(
        &'a mut self,
        w: &'a mut WireWriter,
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
    /// Resolves when producers queued bytes for the session to write.
    fn woken(&self) -> impl Future<Output = ()> + Send + '_;
    /// Books a link event (`again`: a session was up before).
    fn event(&mut self, e: LinkEvent, again: bool);
    /// Whether the session is read at an engine's tick (see `Link::read_at_ticks`).
    #[cfg(target_os = "linux")]
    fn ticks(&self) -> Option<&super::Ticks> {
        None
    }
}

/// The write side of a [`Link`]: producers write through its outlet, the session's own packets
/// join them there, so packets never interleave.
pub struct Shared {
    link: Arc<Link>,
    replies: BytesMut,
    direct: Option<Arc<crate::net::TcpOut>>,
    attached: bool,
}

impl Shared {
    pub fn new(link: Arc<Link>) -> Shared {
        Shared {
            link,
            replies: BytesMut::new(),
            direct: None,
            attached: false,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // however the task ends, producers stop writing into this session's socket
        self.end();
    }
}

impl Side for Shared {
    const LEAN: bool = false;

    fn begin(&mut self, writer: &WireWriter, flow_limit: u32, count_flow: fn(&[u8]) -> u32) {
        let l = &*self.link;
        self.direct = writer.direct();
        // Bytes queued while the link was down belong to the old session: they are sent now,
        // late, and their requests end as matched or timed out like any other. Its
        // flow-controlled messages are what this session's count starts from.
        let inherited = l.outlet.attach(self.direct.clone(), count_flow);
        l.flow.unacked.store(inherited, Relaxed);
        l.flow.limit.store(flow_limit, Relaxed);
        self.attached = true;
        l.up.store(true, Release);
    }

    fn end(&mut self) {
        if self.attached {
            self.link.up.store(false, Release);
            self.link.outlet.detach();
            self.attached = false;
        }
    }

    fn replies(&mut self) -> &mut BytesMut {
        &mut self.replies
    }

    fn io(&mut self) -> (&mut BytesMut, Option<&Flow>) {
        (&mut self.replies, Some(&self.link.flow))
    }

    fn write<'a>(
        &'a mut self,
        w: &'a mut WireWriter,
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        if !self.replies.is_empty() {
            self.link.outlet.push(&self.replies);
            self.replies.clear();
        }
        self.link.outlet.flush(w, self.direct.as_deref())
    }

    fn woken(&self) -> impl Future<Output = ()> + Send + '_ {
        self.link.outlet.queued_wake()
    }

    #[cfg(target_os = "linux")]
    fn ticks(&self) -> Option<&super::Ticks> {
        self.link.ticks()
    }

    fn event(&mut self, e: LinkEvent, again: bool) {
        match e {
            LinkEvent::Up if again => {
                self.link.reconnects.fetch_add(1, Relaxed);
            }
            LinkEvent::Down { lost: true } => {
                self.link.disconnects.fetch_add(1, Relaxed);
            }
            _ => {}
        }
    }
}

/// The write side of an idle subscriber: only its own rare packets, written directly.
#[derive(Default)]
pub struct Lean {
    replies: BytesMut,
}

impl Side for Lean {
    const LEAN: bool = true;

    fn begin(&mut self, _: &WireWriter, _: u32, _: fn(&[u8]) -> u32) {}

    fn end(&mut self) {}

    fn replies(&mut self) -> &mut BytesMut {
        &mut self.replies
    }

    fn io(&mut self) -> (&mut BytesMut, Option<&Flow>) {
        (&mut self.replies, None)
    }

    fn write<'a>(
        &'a mut self,
        w: &'a mut WireWriter,
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        let bytes = (!self.replies.is_empty()).then(|| std::mem::take(&mut self.replies).freeze());
        async move {
            match bytes {
                // boxed: the write's state is not part of every idle task
                Some(b) => Box::pin(w.write_all(b)).await,
                None => Ok(()),
            }
        }
    }

    fn woken(&self) -> impl Future<Output = ()> + Send + '_ {
        std::future::pending()
    }

    fn event(&mut self, _: LinkEvent, _: bool) {}
}

enum Ended {
    Shutdown,
    Lost(String),
}

/// Drives one connection until `shutdown`, then returns its handler. `first` is a session
/// established by the caller (so start-up errors are the caller's; boxed, so it takes no room in
/// the task once used); without one, or after a
/// loss, the driver connects with the spec `connect` gives (a fresh one per attempt, so a lean
/// connection keeps none), backing off after failures and after losses.
pub async fn drive<T, H, S, C>(
    connect: C,
    mut first: Option<Box<Session<T::Decoder>>>,
    mut handler: H,
    mut side: S,
    keep_alive: Duration,
    shutdown: CancellationToken,
) -> H
where
    T: Transport,
    H: Handler,
    S: Side,
    C: Fn() -> SessionSpec + Send,
{
    let mut backoff_first = first.is_some();
    let mut attempt = 0u32;
    let mut again = false;
    loop {
        let s = match first.take() {
            Some(s) => *s,
            None => {
                if attempt > 0 || backoff_first {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
                backoff_first = true;
                // boxed: the handshake's state is large and needed only while connecting
                let spec = connect();
                let connecting = Box::pin(async move {
                    let r = super::establish::<T>(&spec).await;
                    (r, spec.client_id)
                });
                let (r, client) = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = connecting => r,
                };
                match r {
                    Ok(s) => s,
                    Err(e) => {
                        attempt = attempt.saturating_add(1);
                        handler.on_link(LinkEvent::ConnectFailed);
                        tracing::debug!(client, "connect failed: {e}");
                        continue;
                    }
                }
            }
        };
        attempt = 0;
        let ended =
            run_session::<T, H, S>(s, &mut handler, &mut side, keep_alive, again, &shutdown).await;
        again = true;
        let lost = matches!(ended, Ended::Lost(_));
        side.end();
        side.event(LinkEvent::Down { lost }, true);
        handler.on_link(LinkEvent::Down { lost });
        match ended {
            Ended::Shutdown => break,
            Ended::Lost(why) if S::LEAN => tracing::debug!("connection lost: {why}; reconnecting"),
            Ended::Lost(why) => tracing::warn!("connection lost: {why}; reconnecting"),
        }
    }
    handler
}

async fn run_session<T: Transport, H: Handler, S: Side>(
    mut s: Session<T::Decoder>,
    handler: &mut H,
    side: &mut S,
    keep_alive: Duration,
    again: bool,
    shutdown: &CancellationToken,
) -> Ended {
    // (`s` is used in place, not taken apart: a task keeps one copy of the session state.)
    #[cfg(target_os = "linux")]
    if let Some(t) = side.ticks() {
        s.reader
            .read_at_ticks(&mut s.writer, &t.set, t.token, &t.due);
    }
    side.begin(&s.writer, s.flow_limit, T::FRAMING.count_flow);
    side.event(LinkEvent::Up, again);
    handler.on_link(LinkEvent::Up);
    if S::LEAN {
        // a lean connection does not keep the handshake's read buffer
        s.pending = BytesMut::from(&s.pending[..]);
    }
    // Bytes that arrived with the handshake.
    let (replies, flow) = side.io();
    if let Err(e) = s
        .decoder
        .dispatch(&mut s.pending, handler, replies, flow, Instant::now())
    {
        return Ended::Lost(e);
    }
    handler.flush().await;
    // Pings at half the keep-alive, the first one at a random phase so links spread out.
    let keep_alive = keep_alive.max(Duration::from_secs(1));
    let every = keep_alive / 2;
    let ping = tokio::time::sleep(every.mul_f64(rand::random_range(0.5..1.0)));
    tokio::pin!(ping);
    let mut last_rx = Instant::now();
    // What producers queued while the link was down goes first.
    let mut dirty = true;
    loop {
        if dirty || !side.replies().is_empty() {
            if let Err(e) = side.write(&mut s.writer).await {
                return Ended::Lost(e.to_string());
            }
            dirty = false;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                // Producers queue from now; what is queued leaves before the goodbye.
                side.end();
                side.replies().extend_from_slice(T::GOODBYE);
                let bye = async {
                    let _ = side.write(&mut s.writer).await;
                    s.writer.shutdown().await;
                };
                let _ = tokio::time::timeout(GOODBYE_LIMIT, Box::pin(bye)).await;
                return Ended::Shutdown;
            }
            _ = side.woken() => dirty = true,
            _ = &mut ping => {
                if last_rx.elapsed() > keep_alive * 2 {
                    return Ended::Lost("nothing from the broker within 2x keep-alive".into());
                }
                side.replies().extend_from_slice(T::PING);
                ping.as_mut().reset(tokio::time::Instant::now() + every);
            }
            r = s.reader.read_into(&mut s.pending) => match r {
                Ok(n) => {
                    if let Some(frame) = s.reader.take_reply() {
                        // a WebSocket pong (rare; boxed, so no idle task carries its state)
                        if let Err(e) = Box::pin(s.writer.write_frame(frame)).await {
                            return Ended::Lost(e.to_string());
                        }
                        if n == 0 {
                            continue;
                        }
                    }
                    if n == 0 {
                        return Ended::Lost("closed by the broker".into());
                    }
                    let now = Instant::now();
                    last_rx = now;
                    // when the bytes reached the kernel, where the transport knows
                    let at = s.reader.arrival().unwrap_or(now);
                    let (replies, flow) = side.io();
                    if let Err(e) = s.decoder.dispatch(&mut s.pending, handler, replies, flow, at) {
                        return Ended::Lost(e);
                    }
                    handler.flush().await;
                    if S::LEAN && s.pending.is_empty() && s.pending.capacity() > LEAN_KEEP_BUF {
                        s.pending = BytesMut::new();
                    }
                }
                Err(e) => return Ended::Lost(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
