//! The write side of one connection, shared by its link task and whoever produces its traffic.
//! It knows bytes, not protocols: whole messages go in, and a transport's hook counts the
//! flow-controlled ones a new session inherits.
//!
//! Producers hand encoded packets to [`Outlet::send`] (through `Link::send`). On plain TCP, with nothing queued, the
//! bytes go straight into the socket with a non-blocking write in the producer's own task: a
//! batch costs one `write` and no channel hop or task wake-up. Whatever the socket does not take
//! at once (and everything on TLS and WebSocket transports) is queued, and the link task, woken
//! once, writes it out. Every byte of a session, the link task's own PUBACKs and PINGREQs
//! included, goes through the outlet, so packets never interleave.

use crate::net::{TcpOut, WireWriter};
use bytes::{Buf, BytesMut};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Most bytes queued per connection; beyond it [`Outlet::send`] refuses (link down or far behind).
pub const MAX_QUEUED: usize = 64 << 20;

/// What [`Outlet::send`] did with the bytes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Written into the socket.
    Written,
    /// Queued (some of it possibly written) for the link task to write.
    Queued,
    /// Refused: the queue holds [`MAX_QUEUED`] bytes already.
    Full,
}

/// See the module docs. One per connection, kept across reconnects (in its `Link`).
#[derive(Default)]
pub struct Outlet {
    inner: Mutex<Inner>,
    /// Bytes queued, readable without the lock (producers check it to skip backed-up links).
    queued: AtomicUsize,
    /// Wakes the link task when bytes were queued.
    wake: Notify,
}

#[derive(Default)]
struct Inner {
    /// The socket, while a plain-TCP session is up.
    direct: Option<Arc<TcpOut>>,
    queue: BytesMut,
    /// The queue starts inside a packet whose head went to the current session: it must not be
    /// sent to another session.
    torn: bool,
    /// The queue held more than [`QUEUE_KEEP`] bytes since it was last empty.
    grown: bool,
}

/// An empty queue grown past this by a backlog gives its memory back.
const QUEUE_KEEP: usize = 256 * 1024;

impl Inner {
    /// After a backlog drained: drop the grown allocation (a stall can have grown it to
    /// [`MAX_QUEUED`]) instead of holding it for the rest of the run.
    fn release_backlog(&mut self) {
        // (`capacity()` cannot tell: a queue written out to its end reports none, yet keeps
        // its whole allocation for the next bytes.)
        if self.queue.is_empty() && self.grown {
            self.queue = BytesMut::new();
            self.grown = false;
        }
    }
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outlet")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Outlet {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes waiting for the link task.
    pub fn queued(&self) -> usize {
        self.queued.load(Relaxed)
    }

    /// Writes `data` (whole packets) to the connection, or queues it. Never blocks on the socket.
    pub fn send(&self, data: &[u8]) -> Sent {
        self.put(data, MAX_QUEUED, true)
    }

    fn put(&self, data: &[u8], limit: usize, wake: bool) -> Sent {
        if data.is_empty() {
            return Sent::Written;
        }
        let mut g = self.lock();
        let mut rest = data;
        if g.queue.is_empty() {
            if let Some(sock) = &g.direct {
                match sock.try_write(data) {
                    Ok(n) if n == data.len() => return Sent::Written,
                    Ok(n) => {
                        rest = &data[n..];
                        g.torn |= n > 0;
                    }
                    // WouldBlock, or a broken socket: the link task's own write reports the error.
                    Err(_) => {}
                }
            }
        }
        if rest.len() == data.len() && g.queue.len() + rest.len() > limit {
            return Sent::Full;
        }
        g.queue.extend_from_slice(rest);
        g.grown |= g.queue.len() > QUEUE_KEEP;
        self.queued.store(g.queue.len(), Relaxed);
        drop(g);
        if wake {
            self.wake.notify_one();
        }
        Sent::Queued
    }

    /// Link side: a session started; `direct` is its socket when it is plain TCP. A queue torn
    /// by the previous session is dropped (its requests end as timeouts); an intact one is sent
    /// on this session. Returns the flow-controlled messages in it (`count_flow`, the
    /// transport's hook): they count against the new session's limit. Direct writes end with
    /// [`Outlet::detach`].
    pub(crate) fn attach(&self, direct: Option<Arc<TcpOut>>, count_flow: fn(&[u8]) -> u32) -> u32 {
        let mut g = self.lock();
        if g.torn {
            g.queue.clear();
            g.torn = false;
            self.queued.store(0, Relaxed);
        }
        g.direct = direct;
        count_flow(&g.queue)
    }

    /// Link side: the session ended; producers queue from now on.
    pub(crate) fn detach(&self) {
        self.lock().direct = None;
    }

    /// Link side: the link task's own packets (no size limit, no wake-up: it flushes next).
    pub(crate) fn push(&self, data: &[u8]) {
        self.put(data, usize::MAX, false);
    }

    /// Link side: resolves when producers queued bytes since the last call.
    pub(crate) async fn queued_wake(&self) {
        self.wake.notified().await
    }

    /// Link side: writes the queue out through the session's socket, waiting for the socket to
    /// take it. `direct` is the session's plain-TCP socket.
    pub(crate) async fn flush_direct(&self, direct: &TcpOut) -> io::Result<()> {
        loop {
            {
                let mut g = self.lock();
                if g.queue.is_empty() {
                    g.release_backlog();
                    return Ok(());
                }
                match direct.try_write(&g.queue) {
                    Ok(n) => {
                        g.queue.advance(n);
                        g.torn = !g.queue.is_empty();
                        self.queued.store(g.queue.len(), Relaxed);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            direct.writable().await?;
        }
    }

    /// Link side: writes out what is queued, on plain TCP through the session's socket
    /// (`direct`), else through the session's writer.
    pub(crate) async fn flush(
        &self,
        writer: &mut WireWriter,
        direct: Option<&TcpOut>,
    ) -> io::Result<()> {
        match direct {
            Some(d) => self.flush_direct(d).await,
            None => {
                let b = self.take();
                if b.is_empty() {
                    return Ok(());
                }
                writer.write_all(b.freeze()).await
            }
        }
    }

    /// Link side (TLS and WebSocket): takes everything queued, for the link task to write.
    pub(crate) fn take(&self) -> BytesMut {
        let mut g = self.lock();
        self.queued.store(0, Relaxed);
        g.torn = false;
        let b = g.queue.split();
        g.release_backlog();
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn writes_directly_when_idle_and_queues_otherwise() {
        let (a, mut b) = pair().await;
        let (_r, w) = a.into_split();
        let w = Arc::new(TcpOut::Split(w));
        let o = Outlet::default();
        // no session yet: queued
        assert_eq!(o.send(b"one "), Sent::Queued);
        assert_eq!(o.queued(), 4);
        o.attach(Some(w.clone()), none);
        // something is queued: the next packet queues behind it, in order
        assert_eq!(o.send(b"two "), Sent::Queued);
        o.flush_direct(&w).await.unwrap();
        assert_eq!(o.queued(), 0);
        // idle: straight into the socket
        assert_eq!(o.send(b"three"), Sent::Written);
        let mut got = vec![0u8; 13];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two three");
    }

    #[tokio::test]
    async fn a_full_socket_queues_and_the_link_drains_it() {
        let (a, mut b) = pair().await;
        let (_r, w) = a.into_split();
        let w = Arc::new(TcpOut::Split(w));
        let o = Arc::new(Outlet::default());
        o.attach(Some(w.clone()), none);
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        let mut queued = false;
        for _ in 0..200 {
            match o.send(&chunk) {
                Sent::Written => {}
                Sent::Queued => queued = true,
                Sent::Full => panic!("limit not reached"),
            }
            sent += chunk.len();
        }
        assert!(queued, "a peer that does not read fills the socket");
        let o2 = o.clone();
        let flusher = tokio::spawn(async move { o2.flush_direct(&w).await });
        let mut total = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        while total < sent {
            let n = b.read(&mut buf).await.unwrap();
            assert!(buf[..n].iter().all(|&x| x == 7));
            total += n;
        }
        flusher.await.unwrap().unwrap();
        assert_eq!(o.queued(), 0);
    }

    #[test]
    fn a_torn_queue_is_not_sent_to_the_next_session() {
        let o = Outlet::default();
        o.push(b"tail of a packet");
        o.lock().torn = true;
        o.attach(None, none);
        assert_eq!(o.queued(), 0);
        o.push(b"whole");
        o.attach(None, none);
        assert_eq!(o.take().as_ref(), b"whole");
    }

    #[tokio::test]
    async fn a_drained_backlog_gives_its_memory_back() {
        let (a, mut b) = pair().await;
        let (_r, w) = a.into_split();
        let w = Arc::new(TcpOut::Split(w));
        let o = Arc::new(Outlet::default());
        // no session: a 4 MiB backlog builds up
        for _ in 0..64 {
            o.send(&[1u8; 64 * 1024]);
        }
        assert!(o.lock().queue.capacity() >= 4 << 20);
        o.attach(Some(w.clone()), none);
        let o2 = o.clone();
        let flusher = tokio::spawn(async move { o2.flush_direct(&w).await });
        let mut total = 0;
        let mut buf = vec![0u8; 256 * 1024];
        while total < 64 * 64 * 1024 {
            total += b.read(&mut buf).await.unwrap();
        }
        flusher.await.unwrap().unwrap();
        assert_eq!(o.queued(), 0);
        // from here bytes queue (no direct writes); a queue that kept the old allocation would
        // take the next bytes into its 4 MiB again
        o.detach();
        let small = |o: &Outlet| {
            o.push(b"x");
            let cap = o.lock().queue.capacity();
            o.take();
            cap
        };
        assert!(small(&o) <= QUEUE_KEEP);
        // and the same through take() (TLS and WebSocket links)
        for _ in 0..16 {
            o.push(&[2u8; 64 * 1024]);
        }
        assert_eq!(o.take().len(), 16 * 64 * 1024);
        assert!(small(&o) <= QUEUE_KEEP);
    }

    /// A transport hook for the tests: every `F` byte is a flow-controlled message.
    fn count_f(b: &[u8]) -> u32 {
        b.iter().filter(|&&x| x == b'F').count() as u32
    }

    fn none(_: &[u8]) -> u32 {
        0
    }

    #[test]
    fn a_new_session_counts_the_flow_controlled_messages_it_inherits() {
        // (the MQTT hook, counting QoS 1 publishes, is tested in mqtt::codec)
        let o = Outlet::default();
        o.push(b"F.F.x");
        assert_eq!(o.attach(None, count_f), 2);
        // a torn queue is dropped: nothing inherited
        o.lock().torn = true;
        assert_eq!(o.attach(None, count_f), 0);
        assert_eq!(o.queued(), 0);
    }

    #[test]
    fn refuses_beyond_the_limit() {
        let o = Outlet::default();
        assert_eq!(o.put(b"12345", 8, true), Sent::Queued);
        assert_eq!(o.put(b"6789", 8, true), Sent::Full);
        assert_eq!(o.queued(), 5);
    }
}
