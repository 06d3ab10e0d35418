//! Tests of the gate: exact counts per cycle, even spread of any number of active clients over
//! the interval and over lanes, fractional targets met over time, ramps met per second.

use super::*;
use crate::capacity::profile::{Profile, SharedProfile};

const S: u64 = 1_000_000_000;

/// Walks every lane's cursor like `Lane::run_due` over cycles `0..cycles` and returns the
/// offered slots as (global client, cycle, due).
fn walk(
    total: u32,
    lanes: u32,
    interval_ns: u64,
    p: &Profile,
    cycles: u32,
) -> Vec<(u32, u32, u64)> {
    let shared = SharedProfile::new(p.clone());
    let mut out = Vec::new();
    for lane in 0..lanes {
        let mut gate = Gate::new(lane, lanes, total, &shared);
        let n = (total - lane).div_ceil(lanes);
        for r in 0..cycles {
            for k in 0..n {
                let g = k * lanes + lane;
                let due = u64::from(r) * interval_ns
                    + (u128::from(g) * u128::from(interval_ns) / u128::from(total)) as u64;
                let offered = gate.offered(r, due);
                assert_eq!(offered, gate.was_offered(k, r, due), "g={g} r={r}");
                if offered {
                    out.push((g, r, due));
                }
                if k + 1 == n {
                    gate.next_cycle();
                } else {
                    gate.next_client();
                }
            }
        }
    }
    out
}

#[test]
fn strides_are_coprime_with_small_partial_quotients() {
    for n in (1..2000u32).chain([99_991, 100_000, 1_000_000, 10_000_000]) {
        let lanes = 1 + n % 7;
        let p = stride(n, lanes);
        assert_eq!(gcd(u64::from(p), u64::from(n)), 1, "n={n}");
        if n > 100 {
            let lane_step = u64::from(lanes) * u64::from(p) % u64::from(n);
            let bad = worst_quotient(u64::from(p), u64::from(n))
                .max(worst_quotient(lane_step, u64::from(n)));
            // (the best reachable for small n is about 11, for n ≥ 1000 about 7)
            let bound = if n >= 1000 { 8 } else { 12 };
            assert!(
                bad <= bound,
                "n={n} lanes={lanes} p={p}: partial quotient {bad}"
            );
        }
        if n > 20_000 {
            continue;
        }
        // k·p mod n is a permutation
        let mut seen = vec![false; n as usize];
        for k in 0..n {
            let r = (u64::from(k) * u64::from(p) % u64::from(n)) as usize;
            assert!(!seen[r], "n={n}");
            seen[r] = true;
        }
    }
}

#[test]
fn a_whole_target_offers_exactly_that_many_slots_per_cycle_spread_over_lanes() {
    let (total, interval) = (1000u32, 1000 * 1_000_000u64);
    for lanes in [1u32, 2, 3, 7] {
        for a in [0u32, 1, 2, 37, 333, 500, 999, 1000] {
            let slots = walk(total, lanes, interval, &Profile::constant(f64::from(a)), 3);
            for r in 0..3 {
                let in_cycle: Vec<_> = slots.iter().filter(|s| s.1 == r).collect();
                assert_eq!(in_cycle.len(), a as usize, "lanes={lanes} a={a}");
                // the same clients every cycle: a client's phase never moves
                let first: Vec<u32> = slots.iter().filter(|s| s.1 == 0).map(|s| s.0).collect();
                let mut these: Vec<u32> = in_cycle.iter().map(|s| s.0).collect();
                these.sort_unstable();
                let mut first = first.clone();
                first.sort_unstable();
                assert_eq!(these, first);
                for lane in 0..lanes {
                    let mine = in_cycle.iter().filter(|s| s.0 % lanes == lane).count() as f64;
                    let share = f64::from(a) / f64::from(lanes);
                    assert!(
                        (mine - share).abs() <= 0.05 * share + 3.0,
                        "lanes={lanes} a={a} lane={lane}: {mine} vs {share}"
                    );
                }
            }
        }
    }
}

#[test]
fn any_number_of_active_clients_is_spread_evenly_over_the_interval() {
    let (total, interval) = (100_000u32, 2000 * 1_000_000u64);
    for lanes in [1u32, 2, 4] {
        for a in [10u32, 100, 1234, 10_000, 50_000, 77_777] {
            let slots = walk(total, lanes, interval, &Profile::constant(f64::from(a)), 1);
            let mut phases: Vec<u64> = slots.iter().map(|s| s.2).collect();
            phases.sort_unstable();
            let mean_gap = interval as f64 / f64::from(a);
            let mut worst = 0u64;
            for w in phases.windows(2) {
                worst = worst.max(w[1] - w[0]);
            }
            worst = worst.max(interval - phases[phases.len() - 1] + phases[0]);
            // three-gap theorem: the largest gap of a golden lattice is < φ² ≈ 2.62 × the mean
            assert!(
                (worst as f64) < 2.62 * mean_gap,
                "lanes={lanes} a={a}: worst gap {worst} ns, mean {mean_gap:.0} ns"
            );
            // every tenth of the interval carries a tenth of the load (± 2% of the total, ± 2)
            for part in 0..10u64 {
                let (lo, hi) = (part * interval / 10, (part + 1) * interval / 10);
                let c = phases.iter().filter(|&&t| t >= lo && t < hi).count() as f64;
                let want = f64::from(a) / 10.0;
                assert!(
                    (c - want).abs() <= 0.02 * f64::from(a) + 2.0,
                    "lanes={lanes} a={a} part={part}: {c} vs {want}"
                );
            }
        }
    }
}

#[test]
fn a_fractional_target_is_met_exactly_over_time() {
    let (total, interval) = (50u32, 100 * 1_000_000u64);
    for a in [0.5f64, 3.25, 7.9, 12.1] {
        let cycles = 400;
        let slots = walk(total, 2, interval, &Profile::constant(a), cycles);
        let want = a * f64::from(cycles);
        assert!(
            (slots.len() as f64 - want).abs() <= 2.0,
            "a={a}: {} vs {want}",
            slots.len()
        );
        // only the boundary client varies: ⌊a⌋ or ⌈a⌉ slots in every cycle
        for r in 0..cycles {
            let c = slots.iter().filter(|s| s.1 == r).count() as f64;
            assert!(c == a.floor() || c == a.ceil(), "a={a} r={r}: {c}");
        }
    }
}

#[test]
fn a_ramp_is_met_second_by_second() {
    // 20,000 clients at 1 s: 0 → 10,000 req/s over 10 s, hold 5 s, down to 2,000 req/s in 5 s
    let (total, interval) = (20_000u32, S);
    let p = Profile::ramps(&[(10 * S, 10_000.0), (5 * S, 10_000.0), (5 * S, 2_000.0)]);
    let slots = walk(total, 3, interval, &p, 20);
    for sec in 0..20u64 {
        let c = slots.iter().filter(|s| s.2 / S == sec).count() as f64;
        let want = p.integral(sec * S, (sec + 1) * S) / interval as f64;
        assert!(
            (c - want).abs() <= 0.01 * want + 3.0,
            "second {sec}: {c} vs {want}"
        );
    }
}

#[test]
fn every_client_active_takes_the_fast_path_and_a_change_is_picked_up() {
    let shared = SharedProfile::new(Profile::constant(100.0));
    let mut g = Gate::new(0, 1, 100, &shared);
    assert!(g.all);
    assert!(g.offered(0, 0));
    shared.update(|p| p.set_from(5 * S, 0.0, 0));
    g.refresh(&shared);
    assert!(!g.all);
    assert!(g.offered(0, S));
    assert!(!g.offered(5, 6 * S));
    assert_eq!(g.active_at(6 * S), 0.0);
}

#[test]
fn dither_is_uniform_in_the_unit_interval() {
    let mut below = [0u32; 10];
    for r in 0..10_000u32 {
        let d = dither(r);
        assert!((0.0..1.0).contains(&d));
        below[(d * 10.0) as usize] += 1;
    }
    for b in below {
        assert!((990..=1010).contains(&b), "{below:?}");
    }
}
