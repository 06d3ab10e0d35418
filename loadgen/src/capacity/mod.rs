//! The capacity instrument: load profiles (`STAGES`), the capacity search (`SCENARIO=capacity`),
//! the per-second timeline and `THRESHOLDS`. The pieces here are pure (no sockets, no clock of
//! their own) so they are tested directly; the run harness wires them into the lanes.

pub mod config;
pub mod driver;
pub mod gate;
pub mod hook;
pub mod probe;
pub mod profile;
pub mod search;
pub mod stages;
pub mod tally;
pub mod thresholds;
pub mod timeline;

#[cfg(test)]
mod lane_tests;
