//! The fan-out message payload (pure, no I/O): who published it, for which subject, its
//! per-subject sequence number and its scheduled publish time, padded to `PAYLOAD_BYTES`.
//!
//! # Layout (24 bytes, big endian, then zero padding)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `b"FO"` |
//! | 2 | 1 | version, `1` |
//! | 3 | 1 | clock: `0` monotonic (ns since the publishing process's epoch; only meaningful to subscribers in the same process), `1` wall clock (ns since the Unix epoch) |
//! | 4 | 4 | run id of the publishing process (random) |
//! | 8 | 4 | subject index `n` of topic `{SUBJECT_PREFIX}{n}` |
//! | 12 | 4 | sequence number within the subject, from 1, no gaps |
//! | 16 | 8 | scheduled publish time in ns (clock as above) |
//! | 24 | … | zeros up to `PAYLOAD_BYTES` |

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Bytes of the header; the smallest accepted `PAYLOAD_BYTES` (checked by the configuration as
/// `MIN_PAYLOAD_BYTES`, which must agree).
pub const HEADER_LEN: usize = 24;
const _: () = assert!(HEADER_LEN == crate::config::fanout::MIN_PAYLOAD_BYTES);
const MAGIC: [u8; 2] = *b"FO";
const VERSION: u8 = 1;

/// Which clock a timestamp was taken from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClockKind {
    /// Nanoseconds since the publishing process's epoch (publisher and subscribers share it).
    Monotonic = 0,
    /// Nanoseconds since the Unix epoch (publisher and subscribers in different processes).
    Wall = 1,
}

/// The clock stamps are taken from: monotonic when publisher and subscribers share a process.
#[derive(Copy, Clone, Debug)]
pub struct Clock {
    pub kind: ClockKind,
    epoch: Instant,
    /// Wall-clock ns at `epoch`; offsets from `epoch` are added to it, so a wall-clock step
    /// during the run does not distort latencies measured inside this process.
    epoch_wall_ns: u64,
}

impl Clock {
    pub fn new(kind: ClockKind) -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Clock {
            kind,
            epoch: Instant::now(),
            epoch_wall_ns: wall,
        }
    }

    /// Nanoseconds on this clock for the instant `at`.
    pub fn ns_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_nanos() as u64;
        match self.kind {
            ClockKind::Monotonic => since,
            ClockKind::Wall => self.epoch_wall_ns + since,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }
}

/// The fields carried by one message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub clock: ClockKind,
    pub run: u32,
    pub subject: u32,
    pub seq: u32,
    pub ts_ns: u64,
}

/// Why a payload was not one of ours.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    Short,
    Magic,
    Version,
    Clock,
}

impl Stamp {
    /// The 24 header bytes; the caller appends the zero padding.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = self.clock as u8;
        b[4..8].copy_from_slice(&self.run.to_be_bytes());
        b[8..12].copy_from_slice(&self.subject.to_be_bytes());
        b[12..16].copy_from_slice(&self.seq.to_be_bytes());
        b[16..24].copy_from_slice(&self.ts_ns.to_be_bytes());
        b
    }

    /// Reads the header of a received payload (padding is not checked).
    pub fn decode(p: &[u8]) -> Result<Stamp, PayloadError> {
        if p.len() < HEADER_LEN {
            return Err(PayloadError::Short);
        }
        if p[0..2] != MAGIC {
            return Err(PayloadError::Magic);
        }
        if p[2] != VERSION {
            return Err(PayloadError::Version);
        }
        let clock = match p[3] {
            0 => ClockKind::Monotonic,
            1 => ClockKind::Wall,
            _ => return Err(PayloadError::Clock),
        };
        let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&p[16..24]);
        Ok(Stamp {
            clock,
            run: u32_at(4),
            subject: u32_at(8),
            seq: u32_at(12),
            ts_ns: u64::from_be_bytes(ts),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let s = Stamp {
            clock: ClockKind::Wall,
            run: 0x0102_0304,
            subject: 7,
            seq: 9,
            ts_ns: 0x1122_3344_5566_7788,
        };
        let b = s.to_bytes();
        assert_eq!(
            b,
            [
                b'F', b'O', 1, 1, 1, 2, 3, 4, 0, 0, 0, 7, 0, 0, 0, 9, 0x11, 0x22, 0x33, 0x44, 0x55,
                0x66, 0x77, 0x88
            ]
        );
        let mut padded = b.to_vec();
        padded.resize(512, 0);
        assert_eq!(Stamp::decode(&padded), Ok(s));
    }

    #[test]
    fn rejects_foreign_payloads() {
        assert_eq!(Stamp::decode(b"hello"), Err(PayloadError::Short));
        assert_eq!(Stamp::decode(&[0u8; 30]), Err(PayloadError::Magic));
        let mut b = Stamp {
            clock: ClockKind::Monotonic,
            run: 1,
            subject: 0,
            seq: 1,
            ts_ns: 0,
        }
        .to_bytes();
        b[3] = 9;
        assert_eq!(Stamp::decode(&b), Err(PayloadError::Clock));
        b[2] = 2;
        assert_eq!(Stamp::decode(&b), Err(PayloadError::Version));
        // Any bytes decode to a value or an error, never a panic.
        for len in 0..40 {
            let _ = Stamp::decode(&vec![0xAB; len]);
        }
    }

    #[test]
    fn clocks_advance() {
        for kind in [ClockKind::Monotonic, ClockKind::Wall] {
            let c = Clock::new(kind);
            let a = c.now_ns();
            std::thread::sleep(std::time::Duration::from_millis(2));
            assert!(c.now_ns() >= a + 1_000_000);
        }
        let wall = Clock::new(ClockKind::Wall).now_ns();
        assert!(wall > 1_600_000_000_000_000_000, "unix ns, got {wall}");
    }
}
