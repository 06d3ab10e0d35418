//! The load target of a run as a function of time: a piecewise-linear number of active virtual
//! clients (a rate target is converted once: active = rate × INTERVAL_MS / 1000). `STAGES` builds
//! a fixed profile; the capacity search extends a shared one step by step, always from a time
//! slightly in the future, so a slot a lane has already decided on never changes its answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One linear piece: the target moves from `start` (at `from`) to `end` (at `to`), times in ns
/// since the run's epoch, targets in active clients (fractional values are allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub from: u64,
    pub to: u64,
    pub start: f64,
    pub end: f64,
}

impl Segment {
    #[inline]
    fn at(&self, t: u64) -> f64 {
        if self.to <= self.from || t >= self.to {
            return self.end;
        }
        let f = (t.saturating_sub(self.from)) as f64 / (self.to - self.from) as f64;
        self.start + (self.end - self.start) * f
    }

    /// Integral of the target over `[a, b)` ∩ the segment, in client·ns.
    fn integral(&self, a: u64, b: u64) -> f64 {
        let (a, b) = (a.max(self.from), b.min(self.to));
        if b <= a {
            return 0.0;
        }
        (self.at(a) + self.at(b)) / 2.0 * (b - a) as f64
    }
}

/// A piecewise-linear target. Before the first segment the target is `initial`; after the last,
/// the last segment's end value holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    initial: f64,
    segs: Vec<Segment>,
}

impl Profile {
    /// The same target for the whole run (the default: every virtual client active).
    pub fn constant(active: f64) -> Profile {
        Profile {
            initial: active,
            segs: Vec::new(),
        }
    }

    /// Consecutive linear pieces starting at time 0 from 0 active clients: `(duration_ns, end)`.
    pub fn ramps(pieces: &[(u64, f64)]) -> Profile {
        let mut p = Profile {
            initial: 0.0,
            segs: Vec::with_capacity(pieces.len()),
        };
        let (mut t, mut a) = (0u64, 0.0);
        for &(d, end) in pieces {
            p.segs.push(Segment {
                from: t,
                to: t + d,
                start: a,
                end,
            });
            t += d;
            a = end;
        }
        p
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segs
    }

    /// When the last segment ends (0 for a constant profile).
    pub fn end(&self) -> u64 {
        self.segs.last().map_or(0, |s| s.to)
    }

    /// Highest target anywhere in the profile.
    pub fn max(&self) -> f64 {
        self.segs
            .iter()
            .flat_map(|s| [s.start, s.end])
            .fold(self.initial, f64::max)
    }

    /// Whether the target is at least `n` at every time (every client of `n` always active).
    pub fn always_at_least(&self, n: f64) -> bool {
        self.initial >= n && self.segs.iter().all(|s| s.start >= n && s.end >= n)
    }

    /// Index of the segment holding `t` (or the last one before it), None before the first.
    fn find(&self, t: u64) -> Option<usize> {
        match self.segs.partition_point(|s| s.from <= t) {
            0 => None,
            i => Some(i - 1),
        }
    }

    /// The target at time `t`.
    pub fn at(&self, t: u64) -> f64 {
        self.find(t).map_or(self.initial, |i| self.segs[i].at(t))
    }

    /// Integral of the target over `[a, b)` in client·ns; divided by INTERVAL (ns) it is the
    /// number of requests the profile offers in that window.
    pub fn integral(&self, a: u64, b: u64) -> f64 {
        if b <= a {
            return 0.0;
        }
        let first = self.segs.first().map_or(u64::MAX, |s| s.from);
        let mut sum = self.initial * (b.min(first).saturating_sub(a)) as f64;
        for (i, s) in self.segs.iter().enumerate() {
            sum += s.integral(a, b);
            // the hold after its ramp, until the next segment starts (the last: for ever)
            let until = self.segs.get(i + 1).map_or(u64::MAX, |n| n.from);
            let (x, y) = (a.max(s.to), b.min(until));
            if y > x {
                sum += s.end * (y - x) as f64;
            }
        }
        sum
    }

    /// From `t` on, the target moves linearly to `active` over `ramp_ns` and then holds it.
    /// Whatever the profile said after `t` is replaced.
    pub fn set_from(&mut self, t: u64, active: f64, ramp_ns: u64) {
        let now = self.at(t);
        while self.segs.last().is_some_and(|s| s.from >= t) {
            self.segs.pop();
        }
        if let Some(last) = self.segs.last_mut() {
            if last.to > t {
                last.end = last.at(t);
                last.to = t;
            }
        }
        self.segs.push(Segment {
            from: t,
            to: t + ramp_ns,
            start: now,
            end: active,
        });
    }
}

/// A cursor over a profile for times that only grow (a lane's schedule): `at` costs a compare
/// and a multiply-add instead of a search.
#[derive(Clone, Debug, Default)]
pub struct Cursor {
    seg: usize,
}

impl Cursor {
    #[inline]
    pub fn at(&mut self, p: &Profile, t: u64) -> f64 {
        let segs = &p.segs;
        if segs.is_empty() || t < segs[0].from {
            return p.initial;
        }
        if self.seg >= segs.len() || segs[self.seg].from > t {
            self.seg = 0;
        }
        while self.seg + 1 < segs.len() && segs[self.seg + 1].from <= t {
            self.seg += 1;
        }
        segs[self.seg].at(t)
    }
}

/// A profile that a controller changes while lanes read it: lanes check `version` once per tick
/// (one relaxed load) and take a new copy only when it moved.
pub struct SharedProfile {
    version: AtomicU64,
    profile: Mutex<Arc<Profile>>,
}

impl SharedProfile {
    pub fn new(p: Profile) -> SharedProfile {
        SharedProfile {
            version: AtomicU64::new(1),
            profile: Mutex::new(Arc::new(p)),
        }
    }

    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn get(&self) -> Arc<Profile> {
        self.profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the profile. The caller guarantees the change only affects times no lane has
    /// reached yet (it changes the profile from a time ahead of every lane's clock).
    pub fn update(&self, f: impl FnOnce(&mut Profile)) {
        let mut guard = self.profile.lock().unwrap_or_else(|e| e.into_inner());
        let mut p = (**guard).clone();
        f(&mut p);
        *guard = Arc::new(p);
        self.version.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn ramps_are_linear_from_zero_and_hold_after_the_end() {
        let p = Profile::ramps(&[(10 * S, 100.0), (10 * S, 100.0), (5 * S, 0.0)]);
        assert_eq!(p.at(0), 0.0);
        assert_eq!(p.at(5 * S), 50.0);
        assert_eq!(p.at(10 * S), 100.0);
        assert_eq!(p.at(15 * S), 100.0);
        assert!((p.at(22 * S + S / 2) - 50.0).abs() < 1e-9);
        assert_eq!(p.at(25 * S), 0.0);
        assert_eq!(p.at(100 * S), 0.0);
        assert_eq!(p.end(), 25 * S);
        assert_eq!(p.max(), 100.0);
    }

    #[test]
    fn integral_is_the_area_under_the_target() {
        let p = Profile::ramps(&[(10 * S, 100.0), (10 * S, 100.0)]);
        // triangle 10 s × 100 / 2 + rectangle 10 s × 100
        assert!((p.integral(0, 20 * S) / S as f64 - 1500.0).abs() < 1e-6);
        assert!((p.integral(5 * S, 15 * S) / S as f64 - (375.0 + 500.0)).abs() < 1e-6);
        // after the end the last target holds
        assert!((p.integral(20 * S, 30 * S) / S as f64 - 1000.0).abs() < 1e-6);
        assert_eq!(Profile::constant(7.0).integral(0, 2 * S), 14.0 * S as f64);
        // steps (as the capacity search sets them) hold between their changes
        let mut p = Profile::constant(0.0);
        p.set_from(S, 10.0, 0);
        p.set_from(3 * S, 20.0, 0);
        p.set_from(4 * S, 5.0, 2 * S);
        assert!((p.integral(0, 4 * S) / S as f64 - 40.0).abs() < 1e-6);
        assert!((p.integral(2 * S, 3 * S) / S as f64 - 10.0).abs() < 1e-6);
        // the ramp 20 → 5 over 2 s, then 5 held
        assert!((p.integral(4 * S, 8 * S) / S as f64 - (25.0 + 10.0)).abs() < 1e-6);
    }

    #[test]
    fn cursor_agrees_with_lookup_for_growing_times() {
        let p = Profile::ramps(&[(3 * S, 30.0), (S, 10.0), (4 * S, 80.0)]);
        let mut c = Cursor::default();
        let mut t = 0;
        while t < 10 * S {
            assert_eq!(c.at(&p, t), p.at(t), "t={t}");
            t += 37_000_001;
        }
    }

    #[test]
    fn set_from_replaces_the_future_only() {
        let mut p = Profile::constant(0.0);
        p.set_from(2 * S, 100.0, 0);
        assert_eq!(p.at(S), 0.0);
        assert_eq!(p.at(2 * S), 100.0);
        p.set_from(5 * S, 50.0, 2 * S);
        assert_eq!(p.at(4 * S), 100.0);
        assert_eq!(p.at(6 * S), 75.0);
        assert_eq!(p.at(9 * S), 50.0);
        // a change in the middle of a ramp cuts it where it stands
        p.set_from(6 * S, 10.0, 0);
        assert!((p.at(6 * S - 1) - 75.0).abs() < 1e-6); // still on the ramp just before
        assert_eq!(p.at(6 * S), 10.0);
        assert_eq!(p.segments().len(), 3);
    }

    #[test]
    fn shared_profile_bumps_its_version_on_change() {
        let sp = SharedProfile::new(Profile::constant(5.0));
        let v = sp.version();
        sp.update(|p| p.set_from(S, 9.0, 0));
        assert!(sp.version() > v);
        assert_eq!(sp.get().at(2 * S), 9.0);
        assert_eq!(sp.get().at(0), 5.0);
    }
}
