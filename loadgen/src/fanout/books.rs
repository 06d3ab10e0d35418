//! Delivery books without sockets: per-subject sequence state shared by the publisher and the
//! subscribers, the measured window, and the per-(client, subject) loss tracking by sequence
//! gaps.
//!
//! With `FANOUT_ROLE=both` the books are exact: a client joins a subject atomically with the
//! publisher's sequence counter, so every message published in the window after the join is
//! counted exactly once as received or lost (`received + lost = expected`), including messages
//! missed across a reconnect and at the very end (the tail). With `FANOUT_ROLE=subscribe` the
//! first message seen on a subject is the baseline and later gaps are losses; the tail and the
//! window edges are estimates (see docs/fanout.md).

use super::config::Role;
use super::payload::{ClockKind, Stamp};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Not yet known (window start/end, per-subject bounds).
pub const UNSET: u64 = u64::MAX;
const UNSET_SEQ: u32 = u32::MAX;

/// Publisher-side state of every subject plus the window, shared with the subscribers.
pub struct Subjects {
    /// `(subscribers << 32) | next_seq`; `next_seq` starts at 1.
    state: Box<[AtomicU64]>,
    /// First sequence number inside the window, per subject.
    start_seq: Box<[AtomicU32]>,
    /// First sequence number after the window, per subject.
    end_seq: Box<[AtomicU32]>,
    /// Window bounds on the payload clock, ns: `[t0, t1)`.
    t0: AtomicU64,
    t1: AtomicU64,
}

impl Subjects {
    pub fn new(n: u32) -> Subjects {
        let n = n as usize;
        Subjects {
            state: (0..n).map(|_| AtomicU64::new(1)).collect(),
            start_seq: (0..n).map(|_| AtomicU32::new(UNSET_SEQ)).collect(),
            end_seq: (0..n).map(|_| AtomicU32::new(UNSET_SEQ)).collect(),
            t0: AtomicU64::new(UNSET),
            t1: AtomicU64::new(UNSET),
        }
    }

    /// Publisher: takes the next sequence number of `subject` and the number of clients that
    /// have joined it (they all expect this message).
    #[inline]
    pub fn take_seq(&self, subject: u32) -> (u32, u32) {
        let v = self.state[subject as usize].fetch_add(1, Ordering::AcqRel);
        (v as u32, (v >> 32) as u32)
    }

    /// Subscriber (exact books): joins `subject` once subscribed; returns the first sequence
    /// number this client is expected to receive.
    pub fn join(&self, subject: u32) -> u32 {
        let v = self.state[subject as usize].fetch_add(1 << 32, Ordering::AcqRel);
        v as u32
    }

    /// Publisher: the window opens before the first message stamped at or after `t0_ns`.
    pub fn open_window(&self, t0_ns: u64) {
        for (s, start) in self.state.iter().zip(self.start_seq.iter()) {
            start.store(s.load(Ordering::Acquire) as u32, Ordering::Release);
        }
        self.t0.store(t0_ns, Ordering::Release);
    }

    /// Publisher: the window closes; nothing stamped at or after `t1_ns` is published.
    pub fn close_window(&self, t1_ns: u64) {
        for (s, end) in self.state.iter().zip(self.end_seq.iter()) {
            end.store(s.load(Ordering::Acquire) as u32, Ordering::Release);
        }
        self.t1.store(t1_ns, Ordering::Release);
    }

    /// Subscribe-only role: window bounds on the wall clock, no sequence bounds.
    pub fn set_window_times(&self, t0_ns: Option<u64>, t1_ns: Option<u64>) {
        if let Some(t) = t0_ns {
            self.t0.store(t, Ordering::Release);
        }
        if let Some(t) = t1_ns {
            self.t1.store(t, Ordering::Release);
        }
    }

    pub fn window(&self) -> (u64, u64) {
        (
            self.t0.load(Ordering::Acquire),
            self.t1.load(Ordering::Acquire),
        )
    }

    /// Not stamped at or after the window's end (messages of split roles can be).
    #[inline]
    pub fn before_end(&self, ts_ns: u64) -> bool {
        let t1 = self.t1.load(Ordering::Acquire);
        t1 == UNSET || ts_ns < t1
    }

    #[inline]
    pub fn in_window(&self, ts_ns: u64) -> bool {
        let (t0, t1) = self.window();
        t0 != UNSET && ts_ns >= t0 && ts_ns < t1
    }

    /// How many sequence numbers of `[from, to)` fall inside the window of `subject`.
    pub fn in_window_seqs(&self, subject: u32, from: u32, to: u32) -> u64 {
        let start = self.start_seq[subject as usize].load(Ordering::Acquire);
        if start == UNSET_SEQ {
            return 0;
        }
        let end = self.end_seq[subject as usize].load(Ordering::Acquire);
        let lo = from.max(start);
        let hi = to.min(end);
        u64::from(hi.saturating_sub(lo))
    }

    /// Next sequence number of `subject` (the one after the last published).
    pub fn next_seq(&self, subject: u32) -> u32 {
        self.state[subject as usize].load(Ordering::Acquire) as u32
    }
}

/// One subject of one client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub subject: u32,
    /// Last sequence number accounted for (received, or lost in a gap).
    pub last: u32,
    /// Run id of the publisher whose sequence `last` belongs to (subscribe role).
    pub run: u32,
    /// A message was counted since the join.
    pub seen: bool,
}

impl Slot {
    pub fn new(subject: u32) -> Slot {
        Slot {
            subject,
            last: 0,
            run: 0,
            seen: false,
        }
    }
}

/// What one received message means for the books.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new delivery. `lost` are the messages skipped since the previous one (all of them),
    /// `lost_in_window` those that count in the measured window.
    Delivered {
        in_window: bool,
        lost: u64,
        lost_in_window: u64,
    },
    /// Sequence already seen.
    Duplicate,
    /// Published before this client joined (exact books): neither expected nor counted.
    Early,
    /// Not from our publisher (other run id or clock), or for a subject we did not subscribe.
    Foreign,
}

/// The rules both roles apply to a received message.
#[derive(Copy, Clone, Debug)]
pub struct Rules {
    /// Exact books (publisher in this process) and its run id.
    pub exact_run: Option<u32>,
}

impl Rules {
    pub fn for_role(role: Role, run: u32) -> Rules {
        Rules {
            exact_run: (role == Role::Both).then_some(run),
        }
    }

    /// Exact books: the client joined `slot.subject` and expects sequences from `first`.
    pub fn joined(slot: &mut Slot, first: u32) {
        slot.last = first.wrapping_sub(1);
        slot.seen = false;
    }

    pub fn on_message(&self, slots: &mut [Slot], m: &Stamp, subjects: &Subjects) -> Verdict {
        // (a Kafka consumer of the one topic holds every subject, in order: no search)
        let i = m.subject as usize;
        let found = if slots.get(i).is_some_and(|s| s.subject == m.subject) {
            Some(i)
        } else {
            slots.iter().position(|s| s.subject == m.subject)
        };
        let Some(slot) = found.map(|i| &mut slots[i]) else {
            return Verdict::Foreign;
        };
        let in_window = subjects.in_window(m.ts_ns);
        match self.exact_run {
            Some(run) => {
                if m.run != run || m.clock != ClockKind::Monotonic {
                    return Verdict::Foreign;
                }
                if m.seq <= slot.last {
                    return if slot.seen {
                        Verdict::Duplicate
                    } else {
                        Verdict::Early
                    };
                }
                let lost = u64::from(m.seq - slot.last - 1);
                let lost_in_window = if lost == 0 {
                    0
                } else {
                    subjects.in_window_seqs(m.subject, slot.last + 1, m.seq)
                };
                slot.last = m.seq;
                slot.seen = true;
                Verdict::Delivered {
                    in_window,
                    lost,
                    lost_in_window,
                }
            }
            None => {
                if m.clock != ClockKind::Wall {
                    return Verdict::Foreign;
                }
                if !slot.seen || slot.run != m.run {
                    // First message from this publisher run: the baseline.
                    slot.run = m.run;
                    slot.last = m.seq;
                    slot.seen = true;
                    return Verdict::Delivered {
                        in_window,
                        lost: 0,
                        lost_in_window: 0,
                    };
                }
                if m.seq <= slot.last {
                    return Verdict::Duplicate;
                }
                let lost = u64::from(m.seq - slot.last - 1);
                slot.last = m.seq;
                Verdict::Delivered {
                    in_window,
                    lost,
                    lost_in_window: if in_window { lost } else { 0 },
                }
            }
        }
    }

    /// Exact books, after the window closed: in-window messages after the last one accounted
    /// for never arrived.
    pub fn tail(&self, slot: &Slot, subjects: &Subjects) -> u64 {
        if self.exact_run.is_none() {
            return 0;
        }
        let end = subjects.next_seq(slot.subject);
        subjects.in_window_seqs(slot.subject, slot.last.wrapping_add(1), end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(subject: u32, seq: u32, ts: u64) -> Stamp {
        Stamp {
            clock: ClockKind::Monotonic,
            run: 7,
            subject,
            seq,
            ts_ns: ts,
        }
    }

    /// Publishes one message of `subject` stamped `ts`; returns (seq, expected deliveries).
    fn publish(s: &Subjects, subject: u32) -> (u32, u32) {
        s.take_seq(subject)
    }

    #[test]
    fn exact_books_close_with_gaps_reconnects_and_tail() {
        let s = Subjects::new(2);
        let rules = Rules::for_role(Role::Both, 7);
        // Two messages before anyone joins, then client A joins subject 0.
        publish(&s, 0);
        publish(&s, 0);
        let mut a = [Slot::new(0)];
        Rules::joined(&mut a[0], s.join(0));
        assert_eq!(a[0].last, 2);
        // A late delivery of seq 2 (published before the join) is neither expected nor counted.
        assert_eq!(rules.on_message(&mut a, &msg(0, 2, 5), &s), Verdict::Early);
        // Warm-up message 3 (ts 10), then the window opens at ts 100.
        assert_eq!(publish(&s, 0), (3, 1));
        s.open_window(100);
        let mut expected = 0;
        let mut received = 0;
        let mut lost = 0;
        for ts in [100, 110, 120, 130, 140] {
            let (_seq, subs) = publish(&s, 0);
            expected += u64::from(subs);
            let _ = ts;
        }
        // Seqs 4..=8 are in the window. A gets 3 (warm-up), 4, misses 5 and 6 (cut off,
        // reconnects), gets 7, and never sees 8 (tail).
        for (seq, ts) in [(3u32, 10u64), (4, 100), (7, 130)] {
            match rules.on_message(&mut a, &msg(0, seq, ts), &s) {
                Verdict::Delivered {
                    in_window,
                    lost_in_window,
                    ..
                } => {
                    received += u64::from(in_window);
                    lost += lost_in_window;
                }
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(
            rules.on_message(&mut a, &msg(0, 7, 130), &s),
            Verdict::Duplicate
        );
        s.close_window(150);
        // A message stamped after the window is not published at all; the tail is seq 8.
        lost += rules.tail(&a[0], &s);
        assert_eq!((expected, received, lost), (5, 2, 3));
        assert_eq!(received + lost, expected);
    }

    #[test]
    fn gap_straddling_the_window_start_counts_only_window_messages() {
        let s = Subjects::new(1);
        let rules = Rules::for_role(Role::Both, 7);
        let mut a = [Slot::new(0)];
        Rules::joined(&mut a[0], s.join(0));
        for _ in 0..3 {
            publish(&s, 0); // seqs 1..=3, warm-up
        }
        s.open_window(100);
        for _ in 0..3 {
            publish(&s, 0); // seqs 4..=6, window
        }
        s.close_window(200);
        // Only 1 and 6 arrive: 2,3 lost in warm-up, 4,5 lost in the window.
        assert!(matches!(
            rules.on_message(&mut a, &msg(0, 1, 1), &s),
            Verdict::Delivered {
                in_window: false,
                lost: 0,
                ..
            }
        ));
        assert_eq!(
            rules.on_message(&mut a, &msg(0, 6, 150), &s),
            Verdict::Delivered {
                in_window: true,
                lost: 4,
                lost_in_window: 2
            }
        );
        assert_eq!(rules.tail(&a[0], &s), 0);
    }

    #[test]
    fn foreign_messages_are_rejected() {
        let s = Subjects::new(2);
        let rules = Rules::for_role(Role::Both, 7);
        let mut a = [Slot::new(0)];
        let mut m = msg(0, 1, 1);
        m.run = 8;
        assert_eq!(rules.on_message(&mut a, &m, &s), Verdict::Foreign);
        assert_eq!(
            rules.on_message(&mut a, &msg(1, 1, 1), &s),
            Verdict::Foreign,
            "subject we did not subscribe"
        );
        let mut w = msg(0, 1, 1);
        w.clock = ClockKind::Wall;
        assert_eq!(rules.on_message(&mut a, &w, &s), Verdict::Foreign);
    }

    #[test]
    fn subscribe_role_uses_first_message_as_baseline() {
        let s = Subjects::new(1);
        s.set_window_times(Some(100), None);
        let rules = Rules::for_role(Role::Subscribe, 0);
        let mut a = [Slot::new(0)];
        let wall = |seq, ts| Stamp {
            clock: ClockKind::Wall,
            ..msg(0, seq, ts)
        };
        assert!(matches!(
            rules.on_message(&mut a, &wall(41, 50), &s),
            Verdict::Delivered { lost: 0, .. }
        ));
        assert_eq!(
            rules.on_message(&mut a, &wall(44, 120), &s),
            Verdict::Delivered {
                in_window: true,
                lost: 2,
                lost_in_window: 2
            }
        );
        assert_eq!(
            rules.on_message(&mut a, &wall(44, 120), &s),
            Verdict::Duplicate
        );
        // A restarted publisher (new run id) starts a new baseline instead of a huge gap.
        let mut restarted = wall(1, 130);
        restarted.run = 9;
        assert!(matches!(
            rules.on_message(&mut a, &restarted, &s),
            Verdict::Delivered { lost: 0, .. }
        ));
        s.set_window_times(None, Some(200));
        assert!(!s.in_window(200));
        assert_eq!(rules.tail(&a[0], &s), 0);
    }
}
