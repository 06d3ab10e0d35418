//! The phases of a run, in order, as one type for every scenario: what `/stats`, the progress
//! line and the dashboard show.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Endpoints up, nothing connected yet.
    Starting,
    /// Opening connections (the fan-out ramp included).
    Connect,
    /// Sending; these requests or messages are left out of the report.
    Warmup,
    /// Sending; the measured window.
    Measure,
    /// Sending stopped; waiting for what is still in flight.
    Drain,
    /// The report is written.
    Done,
}

impl Phase {
    const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Connect,
        Phase::Warmup,
        Phase::Measure,
        Phase::Drain,
        Phase::Done,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Connect => "connect",
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
            Phase::Done => "done",
        }
    }
}

/// A phase shared between the harness (which sets it) and readers.
#[derive(Debug)]
pub struct PhaseCell(AtomicU8);

impl Default for PhaseCell {
    fn default() -> Self {
        PhaseCell(AtomicU8::new(Phase::Starting as u8))
    }
}

impl PhaseCell {
    pub fn get(&self) -> Phase {
        Phase::ALL[usize::from(self.0.load(Relaxed)).min(Phase::ALL.len() - 1)]
    }

    /// Moves forward to `p` (a phase never goes back).
    pub fn advance(&self, p: Phase) {
        self.0.fetch_max(p as u8, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let c = PhaseCell::default();
        assert_eq!(c.get(), Phase::Starting);
        c.advance(Phase::Measure);
        c.advance(Phase::Warmup);
        assert_eq!(c.get().name(), "measure");
        c.advance(Phase::Done);
        assert_eq!(c.get(), Phase::Done);
    }
}
