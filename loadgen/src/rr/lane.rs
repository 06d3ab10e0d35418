//! One scheduler lane: owns a share of the virtual clients, walks their open-loop schedule,
//! encodes due requests into per-connection batches, matches replies to requests, and expires
//! timeouts. Pure state machine (no sockets), so it is tested directly.
//!
//! A request's sequence number is the schedule cycle it was due in, so its scheduled send time
//! is computed, not stored: per client the lane keeps only its pending cycles and two 32-bit
//! windows (sent, answered) that tell a late answer from a duplicate or a forged one.

use super::books::{Books, Outcome};
use crate::capacity::profile::Profile;
use crate::capacity::tally::{Instrument, Tally};
use crate::capacity::timeline::Field;
use bytes::BytesMut;
use rr_common::codec::Correlation;
use rr_common::stats::MAX_TRACKED_US;
use rr_common::transport::Encoder;
use std::collections::VecDeque;
use std::sync::Arc;

const EMPTY: u32 = u32::MAX;
/// Cycles remembered per client to classify late and duplicate answers.
const WINDOW: u32 = 32;
/// Noted values that make the lane record them at once rather than at its next merge.
const DRAIN_AT: usize = 1 << 14;

/// A latency or schedule lag (µs) noted by the lane and recorded at its next drain, with the
/// histograms it counts in besides the run's and the recent ones.
#[derive(Clone, Copy, Debug)]
struct Noted {
    us: u32,
    /// In the measured window.
    measured: bool,
    /// In the open capacity step.
    step: bool,
}

impl Noted {
    #[inline]
    fn new(us: u64, measured: bool, step: bool) -> Noted {
        Noted {
            us: us.clamp(1, MAX_TRACKED_US) as u32,
            measured,
            step,
        }
    }
}

/// Fixed facts of the lane.
#[derive(Clone, Debug)]
pub struct LaneSpec {
    pub lane: u32,
    pub lanes: u32,
    pub total_clients: u32,
    pub interval_ns: u64,
    pub timeout_ns: u64,
    pub max_inflight: u32,
    pub run_id: u32,
    /// Encodes requests for the connections' transport.
    pub encoder: Encoder,
    pub qos: u8,
    pub shards: u32,
    /// Answers expected (false for the publish-only scenario).
    pub expect_replies: bool,
    /// Most requests in one connection batch before moving to the next connection.
    pub batch_size: u32,
}

/// Pre-encoded topic strings.
pub struct Topics {
    /// `req/{shard}` per shard.
    pub request: Vec<Vec<u8>>,
    /// Reply topic per lane connection (index into the lane's connection list).
    pub reply: Vec<Vec<u8>>,
}

/// Time boundaries in ns since the run's epoch.
#[derive(Copy, Clone, Debug)]
pub struct Window {
    pub measure_from: u64,
    /// Requests due at or after this are not sent (u64::MAX while running).
    pub stop_at: u64,
}

impl Window {
    #[inline]
    fn measured(&self, sched: u64) -> bool {
        sched >= self.measure_from && sched < self.stop_at
    }
}

/// Capacity each connection's batch buffer starts with.
pub const BATCH_INITIAL: usize = 16 * 1024;
/// A batch buffer grown past this by a burst is replaced after sending.
pub const BATCH_KEEP: usize = 64 * 1024;

/// Where a tick's requests go: one buffer per lane connection.
pub struct Batches {
    pub bufs: Vec<BytesMut>,
    pub counts: Vec<u32>,
    /// Connections that may take traffic now.
    pub usable: Vec<bool>,
    /// Flow-controlled requests each connection may still take this tick (`Link::room`: with
    /// MQTT QoS 1, the broker's receive maximum minus unacknowledged publishes).
    pub room: Vec<u32>,
}

impl Batches {
    pub fn new(conns: usize) -> Self {
        Batches {
            bufs: (0..conns)
                .map(|_| BytesMut::with_capacity(BATCH_INITIAL))
                .collect(),
            counts: vec![0; conns],
            usable: vec![true; conns],
            room: vec![u32::MAX; conns],
        }
    }
}

pub struct Lane {
    pub spec: LaneSpec,
    topics: Topics,
    body: Vec<u8>,
    /// Pending cycle numbers, `max_inflight` slots per local client.
    pending: Vec<u32>,
    sent_bits: Vec<u32>,
    answered_bits: Vec<u32>,
    /// (local client, cycle) in send order, for expiry.
    fifo: VecDeque<(u32, u32)>,
    /// Schedule cursor: next local client and its cycle.
    cursor_k: u32,
    cursor_r: u32,
    local_clients: u32,
    /// Connection used for the current tick.
    rr_conn: usize,
    pub inflight: u64,
    /// Answer latencies and send lags since the last drain. Recording each value into its
    /// histograms as it happened (five for an answer, three for a send) cost a cache miss per
    /// histogram (188 KiB of counters each, cold again by the next answer): 5.5% of the loadgen's
    /// CPU at 10,000 req/s, and 1.5% more merging and clearing the lane's copies. Recorded in one
    /// pass per histogram at the drain, a batch finds the counters it touches warm
    /// (benchmarks/README, "What changed" 7).
    lat: Vec<Noted>,
    lag: Vec<Noted>,
    /// Load profile gate, per-second timeline, capacity step (see `capacity::tally`).
    pub tally: Tally,
    run: Arc<Instrument>,
}

/// The timeline column of a books outcome.
#[inline]
fn field(o: Outcome) -> Field {
    match o {
        Outcome::Sent => Field::Sent,
        Outcome::Matched => Field::Matched,
        Outcome::Timeout => Field::Timeout,
        Outcome::Late => Field::Late,
        Outcome::Duplicate => Field::Duplicate,
        Outcome::Invalid => Field::Invalid,
        Outcome::Skipped => Field::Skipped,
        Outcome::PublishError => Field::PublishError,
    }
}

impl Lane {
    /// A lane with every virtual client active and a timeline of its own (tests, benchmarks).
    pub fn new(spec: LaneSpec, topics: Topics, payload_bytes: usize) -> Lane {
        let run = Arc::new(Instrument::new(
            Profile::constant(f64::from(spec.total_clients)),
            spec.lanes as usize,
            1e9 / spec.interval_ns as f64,
        ));
        Lane::with_instrument(spec, topics, payload_bytes, run)
    }

    /// A lane of a run: its load profile, timeline and capacity step are `run`'s.
    pub fn with_instrument(
        spec: LaneSpec,
        topics: Topics,
        payload_bytes: usize,
        run: Arc<Instrument>,
    ) -> Lane {
        let tally = Tally::new(
            spec.lane,
            spec.lanes,
            spec.total_clients,
            spec.timeout_ns,
            &run,
        );
        let local = (spec.total_clients - spec.lane).div_ceil(spec.lanes);
        let m = spec.max_inflight as usize;
        let body = (0..payload_bytes).map(|i| b'a' + (i % 26) as u8).collect();
        Lane {
            pending: vec![
                EMPTY;
                if spec.expect_replies {
                    local as usize * m
                } else {
                    0
                }
            ],
            sent_bits: vec![
                0;
                if spec.expect_replies {
                    local as usize
                } else {
                    0
                }
            ],
            answered_bits: vec![
                0;
                if spec.expect_replies {
                    local as usize
                } else {
                    0
                }
            ],
            fifo: VecDeque::new(),
            cursor_k: 0,
            cursor_r: 0,
            local_clients: local,
            rr_conn: spec.lane as usize % topics.reply.len().max(1),
            inflight: 0,
            lat: Vec::new(),
            lag: Vec::new(),
            tally,
            run,
            spec,
            topics,
            body,
        }
    }

    /// Whether the lane's requests count against their connection's room.
    pub fn flow_controlled(&self) -> bool {
        self.spec.encoder.flow_controlled(self.spec.qos)
    }

    /// The run's instrument (profile, timeline, capacity step).
    pub fn instrument(&self) -> &Arc<Instrument> {
        &self.run
    }

    /// Counts an outcome in the books and in the timeline row of `at` (the request's scheduled
    /// time; the arrival for an invalid answer).
    #[inline]
    fn count(&mut self, books: &Books, o: Outcome, at: u64, measured: bool) {
        books.count(o, measured);
        self.tally.count(at, field(o));
    }

    /// Start of a tick at `now`: hands finished seconds to the timeline, picks up a changed
    /// load profile or capacity step.
    pub fn tick(&mut self, now: u64, books: &Books) {
        if self.tally.new_second(now) {
            // the second handed over holds every value noted in it
            self.drain(books);
        }
        self.tally.tick(now, &self.run);
    }

    /// The lane is done: everything it noted goes to the books, its timeline seconds and step
    /// figures to the run.
    pub fn finish(&mut self, books: &Books) {
        self.merge_into(books);
        self.tally.finish(&self.run);
    }

    /// Records the noted values: one pass per histogram.
    fn drain(&mut self, books: &Books) {
        let us = |n: &Noted| u64::from(n.us);
        if !self.lat.is_empty() {
            self.tally
                .answered(self.lat.iter().map(|n| (us(n), n.step)));
            books.latency_all.record_each(self.lat.iter().map(us));
            books.latency_recent.record_each(self.lat.iter().map(us));
            books
                .latency_window
                .record_each(self.lat.iter().filter(|n| n.measured).map(us));
            self.lat.clear();
        }
        if !self.lag.is_empty() {
            self.tally.sent(self.lag.iter().map(|n| (us(n), n.step)));
            books.lag_recent.record_each(self.lag.iter().map(us));
            books
                .lag_window
                .record_each(self.lag.iter().filter(|n| n.measured).map(us));
            self.lag.clear();
        }
    }

    #[inline]
    fn global(&self, k: u32) -> u32 {
        k * self.spec.lanes + self.spec.lane
    }

    /// Scheduled send time (ns since epoch) of local client `k` in cycle `r`.
    #[inline]
    pub fn sched(&self, k: u32, r: u32) -> u64 {
        let phase = (u128::from(self.global(k)) * u128::from(self.spec.interval_ns)
            / u128::from(self.spec.total_clients)) as u64;
        u64::from(r) * self.spec.interval_ns + phase
    }

    /// Next due time of the schedule.
    pub fn next_due(&self) -> u64 {
        self.sched(self.cursor_k, self.cursor_r)
    }

    /// Handles every request due by `now` (ns). Returns how many were handled. Stops early (the
    /// schedule then lags, and the lag is measured) when no connection can take more bytes.
    pub fn run_due(&mut self, now: u64, win: &Window, books: &Books, out: &mut Batches) -> u32 {
        let mut handled = 0;
        if self.local_clients == 0 {
            return 0;
        }
        loop {
            let due = self.next_due();
            if due > now || due >= win.stop_at {
                break;
            }
            let (k, r) = (self.cursor_k, self.cursor_r);
            // a slot the load profile does not offer is passed over: no send, no books
            if self.tally.gate.offered(r, due) {
                let measured = win.measured(due);
                if !self.send_one(k, r, due, now, measured, books, out) {
                    break;
                }
                self.tally.count(due, Field::Offered);
                handled += 1;
            }
            self.cursor_k += 1;
            if self.cursor_k == self.local_clients {
                self.cursor_k = 0;
                self.cursor_r = self.cursor_r.wrapping_add(1);
                self.tally.gate.next_cycle();
            } else {
                self.tally.gate.next_client();
            }
        }
        // next tick starts on the next connection
        self.rr_conn = (self.rr_conn + 1) % out.bufs.len().max(1);
        handled
    }

    /// Returns false when the request could not be placed and the schedule must wait.
    #[allow(clippy::too_many_arguments)]
    fn send_one(
        &mut self,
        k: u32,
        r: u32,
        due: u64,
        now: u64,
        measured: bool,
        books: &Books,
        out: &mut Batches,
    ) -> bool {
        let m = self.spec.max_inflight as usize;
        let slot = if self.spec.expect_replies {
            let bit = 1u32 << (r % WINDOW);
            self.sent_bits[k as usize] &= !bit;
            self.answered_bits[k as usize] &= !bit;
            let slots = &self.pending[k as usize * m..(k as usize + 1) * m];
            match slots.iter().position(|&s| s == EMPTY) {
                Some(i) => Some(i),
                None => {
                    self.count(books, Outcome::Skipped, due, measured);
                    return true;
                }
            }
        } else {
            None
        };
        // pick a connection: this tick's, or the next usable one if full
        let n = out.bufs.len();
        let limit = |c: usize| {
            if self.flow_controlled() {
                self.spec.batch_size.min(out.room[c])
            } else {
                self.spec.batch_size
            }
        };
        let mut chosen = None;
        for step in 0..n {
            let c = (self.rr_conn + step) % n;
            if out.usable[c] && out.counts[c] < limit(c) {
                chosen = Some(c);
                break;
            }
        }
        let Some(c) = chosen else {
            if !out.usable.iter().any(|u| *u) {
                // no live connection: the request cannot be sent at all
                self.count(books, Outcome::PublishError, due, measured);
                return true;
            }
            return false; // every live connection has a full batch: continue next tick
        };
        self.rr_conn = c;
        let g = self.global(k);
        let corr = Correlation {
            run: self.spec.run_id,
            client: g,
            seq: r,
        }
        .to_bytes();
        // The answer comes back on the connection that carries the request: the answers to one
        // tick's batch arrive together on one socket and are read in few reads.
        let topic = &self.topics.request[(g % self.spec.shards) as usize];
        let buf = &mut out.bufs[c];
        let enc = &self.spec.encoder;
        if self.spec.expect_replies {
            let reply_to = &self.topics.reply[c];
            enc.request(buf, topic, reply_to, &corr, &self.body, self.spec.qos);
        } else {
            enc.publish(buf, topic, &[&self.body], self.spec.qos);
        }
        out.counts[c] += 1;
        self.count(books, Outcome::Sent, due, measured);
        let lag_us = now.saturating_sub(due) / 1000;
        let step = self.tally.in_step(due);
        self.lag.push(Noted::new(lag_us, measured, step));
        if self.lag.len() >= DRAIN_AT {
            self.drain(books);
        }
        if let Some(i) = slot {
            self.pending[k as usize * m + i] = r;
            self.sent_bits[k as usize] |= 1u32 << (r % WINDOW);
            self.fifo.push_back((k, r));
            self.inflight += 1;
            books
                .inflight
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        true
    }

    /// Matches one reply. `arrival` is ns since epoch.
    pub fn on_reply(&mut self, corr: Correlation, arrival: u64, win: &Window, books: &Books) {
        let g = corr.client;
        let valid_client = g < self.spec.total_clients && g % self.spec.lanes == self.spec.lane;
        if corr.run != self.spec.run_id || !valid_client || !self.spec.expect_replies {
            self.count(books, Outcome::Invalid, arrival, win.measured(arrival));
            return;
        }
        let k = g / self.spec.lanes;
        let r = corr.seq;
        let current = self.cursor_r_of(k);
        if r >= current {
            // a cycle not yet due: forged or from another run
            self.count(books, Outcome::Invalid, arrival, win.measured(arrival));
            return;
        }
        let sched = self.sched(k, r);
        let measured = win.measured(sched);
        let bit = 1u32 << (r % WINDOW);
        let ki = k as usize;
        let in_window = current - r <= WINDOW;
        // A pending request matches however many cycles ago it was sent (TIMEOUT_MS may span
        // more than WINDOW intervals).
        let m = self.spec.max_inflight as usize;
        let slots = &mut self.pending[ki * m..(ki + 1) * m];
        if let Some(s) = slots.iter_mut().find(|s| **s == r) {
            *s = EMPTY;
            if in_window {
                self.answered_bits[ki] |= bit;
            }
            self.inflight -= 1;
            books
                .inflight
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            self.count(books, Outcome::Matched, sched, measured);
            let us = arrival.saturating_sub(sched) / 1000;
            let step = self.tally.in_step(sched);
            self.lat.push(Noted::new(us, measured, step));
            if self.lat.len() >= DRAIN_AT {
                self.drain(books);
            }
            return;
        }
        if !self.tally.gate.was_offered(k, r, sched) {
            // the load profile never offered this slot: nothing was sent for it
            self.count(books, Outcome::Invalid, arrival, win.measured(arrival));
            return;
        }
        if !in_window {
            // too old to tell apart: it was answered late
            self.count(books, Outcome::Late, sched, measured);
            return;
        }
        if self.sent_bits[ki] & bit == 0 {
            self.count(books, Outcome::Invalid, arrival, win.measured(arrival));
            return;
        }
        if self.answered_bits[ki] & bit != 0 {
            self.count(books, Outcome::Duplicate, sched, measured);
            return;
        }
        self.answered_bits[ki] |= bit;
        self.count(books, Outcome::Late, sched, measured);
    }

    /// The first cycle of client `k` that has not been handled yet.
    #[inline]
    fn cursor_r_of(&self, k: u32) -> u32 {
        if k < self.cursor_k {
            self.cursor_r.wrapping_add(1)
        } else {
            self.cursor_r
        }
    }

    /// Times out every pending request scheduled more than the timeout before `now`.
    pub fn expire(&mut self, now: u64, win: &Window, books: &Books) {
        let m = self.spec.max_inflight as usize;
        while let Some(&(k, r)) = self.fifo.front() {
            let sched = self.sched(k, r);
            if sched + self.spec.timeout_ns > now {
                break;
            }
            self.fifo.pop_front();
            let slots = &mut self.pending[k as usize * m..(k as usize + 1) * m];
            if let Some(s) = slots.iter_mut().find(|s| **s == r) {
                *s = EMPTY;
                self.inflight -= 1;
                books
                    .inflight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                self.count(books, Outcome::Timeout, sched, win.measured(sched));
            }
        }
    }

    /// Records what the lane noted into the books and its step figures into the run's (on the
    /// lane's merge timer).
    pub fn merge_into(&mut self, books: &Books) {
        self.drain(books);
        self.tally.merge(&self.run);
    }
}

#[cfg(test)]
#[path = "lane_tests.rs"]
mod tests;
