//! Plain TCP read at an engine's tick instead of on arrival: the socket is registered with the
//! runtime for writability only, so the broker's segments never wake the process; a [`ReadSet`]
//! (a private epoll set the engine polls, without waiting, at each of its wake-ups) tells which
//! connections hold data, and their link tasks read them then. Each read carries the kernel's
//! receive timestamp (`SO_TIMESTAMPNS`), so an arrival time is when the bytes reached the
//! kernel, not when the tick read them.
//!
//! What the kernel stamps: a read returns the timestamp of the last socket buffer it took bytes
//! from, and TCP merges a segment into the unread one before it (when it fits) and keeps the
//! later timestamp. Messages that arrived one after the other on one connection between two
//! reads therefore carry the arrival of the last of them: an answer's arrival is the kernel's
//! receipt of the latest segment read with it, never later than that and never before its own.

use super::{TcpOut, WireReader, WireWriter};
use std::io::{self, IoSliceMut, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

/// Most connections reported ready by one [`ReadSet::poll`] (more are reported by the next).
const POLL_EVENTS: usize = 256;

/// A plain TCP socket read at ticks: registered with the runtime for writability only.
#[derive(Debug)]
pub struct StampedTcp {
    fd: AsyncFd<TcpStream>,
}

impl StampedTcp {
    /// Takes over the socket behind `fd` (a duplicate of a connected, non-blocking TCP socket)
    /// and asks the kernel for receive timestamps. Fails when the kernel gives none.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<StampedTcp> {
        use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
        setsockopt(&fd, ReceiveTimestampns, &true).map_err(io::Error::from)?;
        let sock = TcpStream::from(fd);
        sock.set_nonblocking(true)?;
        // `with_interest` is deprecated because an arbitrary `AsRawFd` may close or swap its
        // descriptor while registered; a `TcpStream` owned by the `AsyncFd` cannot.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(sock, Interest::WRITABLE)?;
        Ok(StampedTcp { fd })
    }

    /// A non-blocking write (as tokio's `try_write`: `WouldBlock` until the runtime saw the
    /// socket writable).
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        self.fd
            .try_io(Interest::WRITABLE, |mut s: &TcpStream| s.write(data))
    }

    /// Resolves when the socket may take more bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.fd.writable().await.map(|_| ())
    }

    /// One non-blocking read into `buf`, and when the bytes reached the kernel (the receive
    /// timestamp of the last segment read, on the `Instant` clock; `None` if the kernel gave
    /// none).
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut at = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    at = Some(to_instant(ts.tv_sec(), ts.tv_nsec()));
                }
            }
        }
        Ok((msg.bytes, at))
    }
}

/// A `CLOCK_REALTIME` timestamp on the `Instant` clock (via how long ago it was). A timestamp
/// ahead of the clock (the wall clock stepped back) counts as now.
fn to_instant(sec: i64, nsec: i64) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let ts = SystemTime::UNIX_EPOCH
        + std::time::Duration::new(sec.max(0) as u64, nsec.clamp(0, 999_999_999) as u32);
    let age = wall.duration_since(ts).unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

/// The read half of a [`StampedTcp`] session: reads when its [`ReadSet`] reports data.
pub struct StampedReader {
    sock: Arc<StampedTcp>,
    due: Arc<Notify>,
    scratch: Box<[u8]>,
    /// The last read filled the scratch buffer: read again without waiting.
    more: bool,
    arrival: Option<Instant>,
}

impl StampedReader {
    pub(crate) fn new(sock: Arc<StampedTcp>, due: Arc<Notify>) -> StampedReader {
        StampedReader {
            sock,
            due,
            scratch: vec![0u8; super::READ_RESERVE].into_boxed_slice(),
            more: false,
            arrival: None,
        }
    }

    /// Appends what the socket holds to `buf`, once the set reported it readable. `Ok(0)`: the
    /// peer closed. Cancel-safe.
    pub(crate) async fn read_into(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        loop {
            if !self.more {
                self.due.notified().await;
            }
            match self.sock.recv(&mut self.scratch) {
                Ok((n, at)) => {
                    buf.extend_from_slice(&self.scratch[..n]);
                    self.more = n == self.scratch.len();
                    self.arrival = at;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.more = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// When the bytes of the last read reached the kernel (see the module docs).
    pub(crate) fn arrival(&self) -> Option<Instant> {
        self.arrival
    }
}

/// The connections an engine reads at its own wake-ups: a private epoll set (not the runtime's,
/// so it wakes no one) that [`ReadSet::poll`] asks without waiting, then wakes the link task of
/// every connection that holds data (or was closed).
pub struct ReadSet {
    epoll: nix::sys::epoll::Epoll,
    /// A link's read wake-up, by token.
    due: Mutex<Vec<Arc<Notify>>>,
    events: Mutex<Vec<nix::sys::epoll::EpollEvent>>,
}

impl std::fmt::Debug for ReadSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSet").finish_non_exhaustive()
    }
}

impl ReadSet {
    pub fn new() -> io::Result<Arc<ReadSet>> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent};
        Ok(Arc::new(ReadSet {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?,
            due: Mutex::new(Vec::new()),
            events: Mutex::new(vec![EpollEvent::empty(); POLL_EVENTS]),
        }))
    }

    /// A connection joins the set: its token, and `due` is notified when it holds data.
    pub(crate) fn join(&self, due: Arc<Notify>) -> u64 {
        let mut d = self.due.lock().unwrap_or_else(|e| e.into_inner());
        d.push(due);
        (d.len() - 1) as u64
    }

    /// A session of the connection `token` reads through `fd` (level-triggered: reported at
    /// every poll until read). Its registration ends when the socket is closed.
    pub(crate) fn watch(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        use nix::sys::epoll::{EpollEvent, EpollFlags};
        self.epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(io::Error::from)
    }

    /// Wakes the link task of every connection that holds data, without waiting; returns how
    /// many. One system call.
    pub fn poll(&self) -> usize {
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let n = match self
            .epoll
            .wait(&mut ev, nix::sys::epoll::EpollTimeout::ZERO)
        {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("read set poll: {e}");
                return 0;
            }
        };
        let due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        for e in &ev[..n] {
            if let Some(d) = due.get(e.data() as usize) {
                d.notify_one();
            }
        }
        n
    }
}

impl WireReader {
    /// Turns a plain-TCP session into one read at the ticks of `set` (connection `token`, woken
    /// through `due`): the socket leaves the runtime's read interest. Other transports, or a
    /// kernel without receive timestamps, keep reading on arrival (`false`).
    pub fn read_at_ticks(
        &mut self,
        writer: &mut WireWriter,
        set: &ReadSet,
        token: u64,
        due: &Arc<tokio::sync::Notify>,
    ) -> bool {
        let (WireReader::Tcp(r), WireWriter::Tcp(w)) = (&*self, &*writer) else {
            return false;
        };
        // (the session's writer is its socket's only holder before the session begins)
        if !matches!(**w, TcpOut::Split(_)) || Arc::strong_count(w) != 1 {
            return false;
        }
        let tcp: &tokio::net::TcpStream = r.as_ref();
        // A second descriptor of the socket: the runtime's registration ends (tokio deregisters
        // when its halves drop), the socket does not.
        let stamped = tcp
            .as_fd()
            .try_clone_to_owned()
            .and_then(StampedTcp::new)
            .and_then(|s| {
                set.watch(s.as_fd(), token)?;
                Ok(s)
            });
        match stamped {
            Ok(s) => {
                let s = Arc::new(s);
                *self = WireReader::Stamped(Box::new(StampedReader::new(s.clone(), due.clone())));
                let old = std::mem::replace(writer, WireWriter::Tcp(Arc::new(TcpOut::Stamped(s))));
                if let WireWriter::Tcp(w) = old {
                    if let Ok(TcpOut::Split(w)) = Arc::try_unwrap(w) {
                        // dropped as it is, the half would shut the socket's writing down
                        w.forget();
                    }
                }
                true
            }
            Err(e) => {
                tracing::debug!("reading on arrival ({e})");
                false
            }
        }
    }
}

impl AsFd for StampedTcp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

#[cfg(test)]
#[path = "stamped_tests.rs"]
mod tests;
