//! Request/response (and publish-only) scenario: the lanes' tick and the reply handler here,
//! the scenario on the run harness in `scenario`, the live view in `live`.

pub mod books;
mod export;
pub mod lane;
mod live;
pub(crate) mod scenario;
pub mod ticker;

use crate::capacity::tally::Instrument;
use crate::capacity::timeline::{Field, NS_PER_S};
use books::Books;
use bytes::BytesMut;
use lane::{Batches, Lane, Window, BATCH_INITIAL, BATCH_KEEP};
use rr_common::codec::Correlation;
use rr_common::link::{Handler, Invalid, Link, Message};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ticker::Ticker;

pub use live::RrState;

/// A connection with more bytes than this waiting in its outlet takes no requests this tick.
const BACKLOG_LIMIT: usize = 1 << 20;

/// Replies read by a lane's connections (correlation, arrival in ns since the epoch), matched by
/// the lane at its next tick. Link tasks append once per read under a short lock and the lane
/// swaps the vector out once per tick: a reply costs no channel message, allocation or wake-up.
#[derive(Default)]
struct Inbox(Mutex<Vec<(Correlation, u64)>>);

/// Reader-side handler: decodes correlations, counts garbage, batches for the lane.
struct Replies {
    batch: Vec<(Correlation, u64)>,
    inbox: Arc<Inbox>,
    books: Arc<Books>,
    epoch: Instant,
    measure_from: u64,
    stop_at: Arc<AtomicU64>,
    /// The run's timeline, which counts an unreadable answer in the second it arrived.
    run: Arc<Instrument>,
}

impl Replies {
    /// Counts an unreadable message arriving at `now` (rare: a lock is fine).
    fn invalid(&self, now: Instant) {
        let t = now.duration_since(self.epoch).as_nanos() as u64;
        let measured = t >= self.measure_from && t < self.stop_at.load(Relaxed);
        self.books.count(books::Outcome::Invalid, measured);
        self.run.timeline.add_one(t / NS_PER_S, Field::Invalid);
    }
}

impl Handler for Replies {
    fn on_message(&mut self, m: &Message<'_>, now: Instant) {
        match m.correlation.map(Correlation::from_bytes) {
            Some(Ok(c)) => self
                .batch
                .push((c, now.duration_since(self.epoch).as_nanos() as u64)),
            _ => self.invalid(now),
        }
    }
    fn on_invalid(&mut self, _kind: Invalid) {
        self.invalid(Instant::now());
    }
    async fn flush(&mut self) {
        if !self.batch.is_empty() {
            let mut inbox = self.inbox.0.lock().unwrap_or_else(|e| e.into_inner());
            inbox.append(&mut self.batch);
        }
    }
}

/// Shared facts every lane needs at run time.
struct LaneCtx {
    books: Arc<Books>,
    epoch: Instant,
    measure_from: u64,
    stop_at: Arc<AtomicU64>,
    links: Vec<Arc<Link>>,
    inbox: Arc<Inbox>,
    /// The lane's plain-TCP connections, read at its ticks (`Link::read_at_ticks`).
    #[cfg(target_os = "linux")]
    reads: Option<Arc<rr_common::net::stamped::ReadSet>>,
}

/// The lane's tick (every 1 ms, or at the next due time for a sparse schedule: see `ticker`):
/// match the replies that arrived, expire, encode what is due into one buffer per connection,
/// and hand each buffer to its connection's outlet (on plain TCP one direct `write` from this
/// task).
async fn run_lane(mut lane: Lane, ctx: LaneCtx) {
    let mut out = Batches::new(ctx.links.len());
    let mut replies = Vec::with_capacity(1024);
    let spacing = lane.spec.interval_ns * u64::from(lane.spec.lanes)
        / u64::from(lane.spec.total_clients.max(1));
    let mut ticker = Ticker::new(Duration::from_nanos(spacing));
    let mut last_merge = Instant::now();
    let ns = |t: Instant| t.duration_since(ctx.epoch).as_nanos() as u64;
    loop {
        ticker
            .wait(ctx.epoch + Duration::from_nanos(lane.next_due()))
            .await;
        // `now` first, then the stop time: a stop set after this load lies in the future of
        // `now` (the controller adds a margin), so nothing due before it is missed and nothing
        // at or after it is sent.
        let mut woke = Instant::now();
        let now = ns(woke);
        // What arrived since the last tick: the link tasks of connections with data read it
        // now (with the kernel's arrival times) and run before the lane goes on.
        #[cfg(target_os = "linux")]
        if let Some(r) = &ctx.reads {
            if r.poll() > 0 {
                let before = woke.elapsed();
                tokio::task::yield_now().await;
                woke = Instant::now() - before;
            }
        }
        lane.tick(now, &ctx.books);
        let stop_at = ctx.stop_at.load(Relaxed);
        let win = Window {
            measure_from: ctx.measure_from,
            stop_at,
        };
        // Replies first: an answered request frees its slot before the sends due by now.
        std::mem::swap(
            &mut *ctx.inbox.0.lock().unwrap_or_else(|e| e.into_inner()),
            &mut replies,
        );
        for &(c, at) in &replies {
            lane.on_reply(c, at, &win, &ctx.books);
        }
        replies.clear();
        // connections whose writer is backed up take no more this tick
        for (i, link) in ctx.links.iter().enumerate() {
            out.usable[i] = link.is_up() && link.backlog() < BACKLOG_LIMIT;
            out.counts[i] = 0;
            out.room[i] = link.room();
        }
        // Expire first: a request whose TIMEOUT_MS has passed frees its slot before the
        // sends due by now, so TIMEOUT_MS = INTERVAL_MS never turns a loss into a skip.
        lane.expire(now, &win, &ctx.books);
        lane.run_due(now, &win, &ctx.books, &mut out);
        let flow = lane.flow_controlled();
        for (i, link) in ctx.links.iter().enumerate() {
            if out.bufs[i].is_empty() {
                continue;
            }
            // Refused only when MAX_QUEUED bytes wait already: those requests will time out.
            let _ = link.send_flow(&mut out.bufs[i], if flow { out.counts[i] } else { 0 });
            out.bufs[i].clear();
            // A catch-up burst (a late tick) grew this buffer: give the memory back rather than
            // keep the largest burst's capacity for the rest of the run.
            if out.bufs[i].capacity() > BATCH_KEEP {
                out.bufs[i] = BytesMut::with_capacity(BATCH_INITIAL);
            }
        }
        if last_merge.elapsed() >= Duration::from_millis(100) {
            lane.merge_into(&ctx.books);
            last_merge = Instant::now();
        }
        lane.tally.busy(woke.elapsed().as_nanos() as u64);
        if stop_at != u64::MAX
            && now >= stop_at
            && (lane.inflight == 0 || now >= stop_at + lane.spec.timeout_ns)
        {
            lane.expire(now.max(stop_at + lane.spec.timeout_ns), &win, &ctx.books);
            break;
        }
    }
    lane.finish(&ctx.books);
}
