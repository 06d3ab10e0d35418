//! Which schedule slots a lane sends when not every virtual client is active (STAGES, the
//! capacity search). The open-loop schedule itself never changes: client `g` keeps its phase
//! `g·INTERVAL/VIRTUAL_CLIENTS` and its slot in cycle `r` is due at `r·INTERVAL + phase`. The
//! gate only decides whether a due slot is *offered*:
//!
//! ```text
//! offered(g, r)  ⇔  rank(g) + dither(r) < A(due time of the slot)
//! ```
//!
//! `A(t)` is the profile's number of active clients (fractional allowed) and `rank` a
//! permutation of `0..VIRTUAL_CLIENTS` chosen so that the clients of rank below any `A` are
//! spread evenly over the interval: `rank(g) = g·P mod N` (N virtual clients, `P ≈ 0.618·N`
//! coprime with N), a golden-ratio lattice. By the three-gap theorem the phases of the clients
//! of rank below any count lie at most three distinct distances apart around the interval, so any
//! number of active clients is spread evenly and a cycle offers exactly ⌊A⌋ or ⌈A⌉ slots. `P` is
//! picked so that the continued fractions of `P/N` and `lanes·P/N` have small partial quotients:
//! the first makes the gaps nearly equal, the second gives each lane (the clients
//! `g ≡ lane mod lanes`) its share of the active clients;
//! - `dither(r) = frac(r·0.618…) ∈ [0,1)` decides the one client of rank ⌊A⌋: it is offered in a
//!   fraction frac(A) of the cycles, so a rate target whose `A` is not whole is still met
//!   exactly over time (clients of lower rank are always offered, higher never).
//!
//! Decisions are a pure function of the slot, so they never depend on when a lane runs (a
//! lagging lane sends the same slots late, and its lag is measured). A slot that is not offered
//! costs the lane no send, no pending slot and no books entry; everything already in flight
//! resolves as before (matched, timed out or late). The rank moves with the lane's cursor (next
//! local client = `g + lanes`) by one addition of `lanes·P mod N` and one compare per slot, the
//! target by a cached segment's multiply-add: no division and no allocation on the hot path. With every client active the gate answers
//! `true` without looking (`all`).

use super::profile::{Cursor, Profile, SharedProfile};
use std::sync::Arc;

/// 2^64 / golden ratio: frac(r × 0.618…) in fixed point.
const GOLDEN_64: u64 = 0x9E37_79B9_7F4A_7C15;

/// frac(r·(√5−1)/2), in [0, 1).
#[inline]
pub fn dither(r: u32) -> f64 {
    (u64::from(r).wrapping_mul(GOLDEN_64) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Largest partial quotient of the continued fraction of `a/n` (after the integer part): the
/// smaller, the more evenly the multiples of `a/n` spread around the circle.
fn worst_quotient(a: u64, n: u64) -> u64 {
    let (mut x, mut y) = (n, a % n);
    let mut worst = 0;
    while y != 0 {
        worst = worst.max(x / y);
        (x, y) = (y, x % y);
    }
    worst
}

/// The lattice stride for `n` clients over `lanes` lanes: coprime with n (so `g·P mod n` is a
/// permutation), searched from n·0.618 outwards so that both `P/n` (spread of all active clients) and
/// `lanes·P/n` (spread within each lane, hence each lane's share) have small partial quotients.
/// Deterministic, so every lane computes the same stride.
pub fn stride(n: u32, lanes: u32) -> u32 {
    let n64 = u64::from(n);
    if n64 <= 2 {
        return 1 % n.max(1);
    }
    let centre = ((n as f64 * 0.618_033_988_749_895).round() as u64).clamp(1, n64 - 1);
    let lanes = u64::from(lanes.max(1));
    let mut best = (u64::MAX, 1u64);
    for d in 0..n64.min(4096) {
        for cand in [centre + d, centre.wrapping_sub(d)] {
            if !(1..n64).contains(&cand) || gcd(cand, n64) != 1 {
                continue;
            }
            let lane_step = lanes * cand % n64;
            let bad = worst_quotient(cand, n64).max(if lane_step == 0 {
                0
            } else {
                worst_quotient(lane_step, n64)
            });
            if bad < best.0 {
                best = (bad, cand);
            }
            if bad <= 3 {
                return cand as u32;
            }
        }
    }
    best.1 as u32
}

/// One lane's gate, walking with the lane's cursor.
pub struct Gate {
    /// VIRTUAL_CLIENTS, the lattice stride, and the rank step between two local clients.
    n: u64,
    p: u64,
    step: u32,
    /// Rank of the lane's first client (`lane·P mod N`) and of the cursor's client.
    first: u32,
    rank: u32,
    lane: u32,
    lanes: u32,
    profile: Arc<Profile>,
    version: u64,
    cursor: Cursor,
    /// Every slot is offered (the profile never drops below VIRTUAL_CLIENTS).
    all: bool,
    dither_r: u32,
    dither: f64,
}

impl Gate {
    /// The gate of `lane` out of `lanes` over `total_clients`, reading `profile`.
    pub fn new(lane: u32, lanes: u32, total_clients: u32, shared: &SharedProfile) -> Gate {
        let n = u64::from(total_clients.max(1));
        let p = u64::from(stride(total_clients, lanes));
        let profile = shared.get();
        let first = (u64::from(lane) * p % n) as u32;
        Gate {
            n,
            p,
            step: (u64::from(lanes) * p % n) as u32,
            first,
            rank: first,
            lane,
            lanes,
            all: profile.always_at_least(n as f64),
            profile,
            version: shared.version(),
            cursor: Cursor::default(),
            dither_r: 0,
            dither: 0.0,
        }
    }

    /// Takes a changed profile (call once per tick; one atomic load when nothing changed).
    #[inline]
    pub fn refresh(&mut self, shared: &SharedProfile) {
        let v = shared.version();
        if v != self.version {
            self.profile = shared.get();
            self.version = v;
            self.all = self.profile.always_at_least(self.n as f64);
            self.cursor = Cursor::default();
        }
    }

    /// The target (active clients) at time `t`.
    pub fn active_at(&self, t: u64) -> f64 {
        self.profile.at(t)
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Whether the cursor's slot (cycle `r`, due at `due`) is offered.
    #[inline]
    pub fn offered(&mut self, r: u32, due: u64) -> bool {
        if self.all {
            return true;
        }
        if r != self.dither_r {
            self.dither_r = r;
            self.dither = dither(r);
        }
        let a = self.cursor.at(&self.profile, due);
        f64::from(self.rank) + self.dither < a
    }

    /// The cursor moved to the next local client of the same cycle.
    #[inline]
    pub fn next_client(&mut self) {
        self.rank += self.step;
        if u64::from(self.rank) >= self.n {
            self.rank -= self.n as u32;
        }
    }

    /// The cursor wrapped to local client 0 of the next cycle.
    #[inline]
    pub fn next_cycle(&mut self) {
        self.rank = self.first;
    }

    /// Whether local client `k`'s slot of cycle `r`, due at `due`, was offered (random access,
    /// for telling a forged answer from a late one; not on the send path).
    pub fn was_offered(&self, k: u32, r: u32, due: u64) -> bool {
        if self.all {
            return true;
        }
        let g = u64::from(k) * u64::from(self.lanes) + u64::from(self.lane);
        let rank = (g * self.p % self.n) as f64;
        rank + dither(r) < self.profile.at(due)
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
