//! The capacity instrument's settings: `STAGES`, `THRESHOLDS`, `TIMELINE_CSV` (every rr/pub
//! run) and the capacity search's (`SCENARIO=capacity`), their checks (exit 2 naming the
//! variable, the value and what is accepted) and their report entries.

use super::search::{SearchParams, Slo};
use super::stages::Stages;
use super::thresholds::{Metric, Thresholds};
use clap::Args;
use rr_common::cli::ConfigError;
use serde_json::Value;
use std::path::PathBuf;

/// Settings of load profiles, thresholds, the timeline and the capacity search.
#[derive(Args, Clone, Debug, Default)]
pub struct CapacityConfig {
    /// Load profile DURATION:TARGET,... (rr/pub): each stage moves linearly to TARGET, a rate (5000/s) or active virtual clients (50000); the run lasts their sum
    #[arg(long, env = "STAGES", value_name = "STAGES")]
    pub stages: Option<String>,
    /// Conditions checked at the end, e.g. p99<50ms,match>=0.999,timeouts==0,achieved_rate>=0.99*offered; any failure exits 99
    #[arg(long, env = "THRESHOLDS", value_name = "THRESHOLDS")]
    pub thresholds: Option<String>,
    /// Path of a CSV file of the per-second timeline (unset = none)
    #[arg(long, env = "TIMELINE_CSV", value_name = "TIMELINE_CSV")]
    pub timeline_csv: Option<PathBuf>,
    /// Capacity search: highest p99 latency (ms) a step may have
    #[arg(
        long,
        env = "SLO_P99_MS",
        default_value_t = 50,
        value_name = "SLO_P99_MS"
    )]
    pub slo_p99_ms: u64,
    /// Capacity search: lowest match rate (matched / offered requests) a step may have
    #[arg(
        long,
        env = "SLO_MATCH",
        default_value_t = 0.999,
        value_name = "SLO_MATCH"
    )]
    pub slo_match: f64,
    /// Capacity search: highest p99.9 latency (ms) a step may have (unset = not checked)
    #[arg(long, env = "SLO_P999_MS", value_name = "SLO_P999_MS")]
    pub slo_p999_ms: Option<u64>,
    /// Capacity search: first offered rate (req/s)
    #[arg(
        long,
        env = "START_RATE",
        default_value_t = 1000.0,
        value_name = "START_RATE"
    )]
    pub start_rate: f64,
    /// Capacity search: each step offers this factor more than the last good one, until a step fails
    #[arg(
        long,
        env = "STEP_FACTOR",
        default_value_t = 1.5,
        value_name = "STEP_FACTOR"
    )]
    pub step_factor: f64,
    /// Capacity search: highest rate tried (default: what VIRTUAL_CLIENTS at INTERVAL_MS can offer)
    #[arg(long, env = "MAX_RATE", value_name = "MAX_RATE")]
    pub max_rate: Option<f64>,
    /// Capacity search: seconds each step is measured (after SETTLE_SEC)
    #[arg(long, env = "STEP_SEC", default_value_t = 20, value_name = "STEP_SEC")]
    pub step_sec: u64,
    /// Capacity search: seconds at a step's rate before its measurement starts
    #[arg(
        long,
        env = "SETTLE_SEC",
        default_value_t = 5,
        value_name = "SETTLE_SEC"
    )]
    pub settle_sec: u64,
    /// Capacity search: bisect until (first failed - last good) / last good is at most this
    #[arg(
        long,
        env = "SEARCH_PRECISION",
        default_value_t = 0.05,
        value_name = "SEARCH_PRECISION"
    )]
    pub search_precision: f64,
    /// Capacity search: a step whose schedule lag p99 exceeds this (ms) means the generator is the limit
    #[arg(
        long,
        env = "GENERATOR_LAG_MS",
        default_value_t = 10,
        value_name = "GENERATOR_LAG_MS"
    )]
    pub generator_lag_ms: u64,
}

/// A scheduler lane busy this much of a step's window is a generator at its limit.
pub const LANE_BUSY_LIMIT: f64 = 0.9;

/// Which scenario the settings are checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rr,
    Pub,
    Fanout,
    Capacity,
}

/// What the rr/pub schedule offers at most.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub virtual_clients: u32,
    pub interval_ms: u64,
    pub warmup_sec: u64,
}

impl Schedule {
    pub fn max_rate(&self) -> f64 {
        f64::from(self.virtual_clients) * 1000.0 / self.interval_ms as f64
    }
}

/// Whether a run of `kind` measures `m`.
pub fn measures(kind: Kind, m: Metric) -> bool {
    use Metric::*;
    match (kind, m) {
        (Kind::Capacity, _) => m != Lost,
        (_, Capacity) => false,
        (Kind::Fanout, Timeouts | Late | Match | Matched | Skipped) => false,
        (Kind::Fanout, _) => true,
        (_, Lost) => false,
        // publish-only: nothing answers
        (Kind::Pub, Min | Mean | P50 | P90 | P99 | P999 | Max) => false,
        (Kind::Pub, Match | Matched | Timeouts | Late | Duplicates) => false,
        _ => true,
    }
}

fn bad(var: &'static str, value: impl std::fmt::Display, what: &str) -> ConfigError {
    ConfigError::new(var, format!("'{value}' {what}"))
}

impl CapacityConfig {
    /// The parsed stages (None without STAGES). Call after `check`.
    pub fn parsed_stages(&self, s: &Schedule) -> Option<Stages> {
        let text = self.stages.as_deref()?;
        Stages::parse(text, s.virtual_clients, s.interval_ms).ok()
    }

    /// The parsed thresholds (empty without THRESHOLDS). Call after `check`.
    pub fn parsed_thresholds(&self) -> Thresholds {
        self.thresholds
            .as_deref()
            .and_then(|t| Thresholds::parse(t).ok())
            .unwrap_or_default()
    }

    /// The search's parameters.
    pub fn search_params(&self, s: &Schedule) -> SearchParams {
        SearchParams {
            start_rate: self.start_rate,
            step_factor: self.step_factor,
            max_rate: self.max_rate.unwrap_or_else(|| s.max_rate()),
            precision: self.search_precision,
            slo: Slo {
                p99_us: self.slo_p99_ms * 1000,
                p999_us: self.slo_p999_ms.map(|m| m * 1000),
                min_match: self.slo_match,
            },
            lag_bound_us: self.generator_lag_ms * 1000,
            busy_limit: LANE_BUSY_LIMIT,
        }
    }

    /// Checks the settings for a run of `kind` (`schedule` for rr, pub and capacity).
    pub fn check(&self, kind: Kind, schedule: Option<&Schedule>) -> Result<(), ConfigError> {
        if let Some(text) = self.stages.as_deref() {
            match (kind, schedule) {
                (Kind::Rr | Kind::Pub, Some(s)) => {
                    let st = Stages::parse(text, s.virtual_clients, s.interval_ms)?;
                    if st.total_ns() <= s.warmup_sec * 1_000_000_000 {
                        return Err(bad(
                            "STAGES",
                            text,
                            &format!(
                                "lasts {} s in all, not longer than WARMUP_SEC ({}): nothing would be measured",
                                st.total_ns() / 1_000_000_000,
                                s.warmup_sec
                            ),
                        ));
                    }
                }
                (Kind::Capacity, _) => {
                    return Err(bad(
                        "STAGES",
                        text,
                        "cannot be used with SCENARIO=capacity (the search sets the load); accepted: unset",
                    ))
                }
                _ => {
                    return Err(bad(
                        "STAGES",
                        text,
                        "applies to SCENARIO=rr and pub only; accepted: unset for this scenario",
                    ))
                }
            }
        }
        if let Some(text) = self.thresholds.as_deref() {
            let t = Thresholds::parse(text)?;
            if let Some((th, m)) = t.unmeasurable(|m| measures(kind, m)) {
                return Err(bad(
                    "THRESHOLDS",
                    &th.expr,
                    &format!(
                        "uses {}, which this scenario does not measure; accepted: metrics it measures",
                        m.name()
                    ),
                ));
            }
        }
        if kind == Kind::Capacity {
            self.check_search(schedule)?;
        }
        Ok(())
    }

    fn check_search(&self, schedule: Option<&Schedule>) -> Result<(), ConfigError> {
        if self.slo_p99_ms == 0 {
            return Err(bad("SLO_P99_MS", 0, "must be at least 1"));
        }
        if self.slo_p999_ms == Some(0) {
            return Err(bad("SLO_P999_MS", 0, "must be at least 1 (or unset)"));
        }
        if !(self.slo_match > 0.0 && self.slo_match <= 1.0) {
            return Err(bad("SLO_MATCH", self.slo_match, "must be in (0, 1]"));
        }
        if !(self.start_rate.is_finite() && self.start_rate >= 1.0) {
            return Err(bad(
                "START_RATE",
                self.start_rate,
                "must be at least 1 (req/s)",
            ));
        }
        if !(self.step_factor > 1.0 && self.step_factor <= 10.0) {
            return Err(bad("STEP_FACTOR", self.step_factor, "must be in (1, 10]"));
        }
        if self.step_sec == 0 || self.step_sec > 3600 {
            return Err(bad("STEP_SEC", self.step_sec, "must be 1..=3600"));
        }
        if self.settle_sec > 3600 {
            return Err(bad("SETTLE_SEC", self.settle_sec, "must be 0..=3600"));
        }
        if !(self.search_precision > 0.0 && self.search_precision < 1.0) {
            return Err(bad(
                "SEARCH_PRECISION",
                self.search_precision,
                "must be in (0, 1)",
            ));
        }
        if self.generator_lag_ms == 0 {
            return Err(bad("GENERATOR_LAG_MS", 0, "must be at least 1"));
        }
        let most = schedule.map_or(f64::INFINITY, Schedule::max_rate);
        if let Some(m) = self.max_rate {
            if !(m.is_finite() && m >= 1.0) {
                return Err(bad("MAX_RATE", m, "must be at least 1 (req/s)"));
            }
            if m > most * (1.0 + 1e-12) {
                return Err(bad(
                    "MAX_RATE",
                    m,
                    &format!(
                        "is more than VIRTUAL_CLIENTS at INTERVAL_MS can offer ({most}/s); raise VIRTUAL_CLIENTS or lower INTERVAL_MS"
                    ),
                ));
            }
        }
        let max = self.max_rate.unwrap_or(most);
        if self.start_rate > max {
            return Err(bad(
                "START_RATE",
                self.start_rate,
                &format!("is more than MAX_RATE ({max}/s)"),
            ));
        }
        Ok(())
    }

    /// The report's `config` entries.
    pub fn describe(&self, kind: Kind, schedule: Option<&Schedule>) -> Vec<(&'static str, Value)> {
        let text = |o: &Option<String>| Value::from(o.clone().unwrap_or_default());
        let mut v = vec![
            ("STAGES", text(&self.stages)),
            ("THRESHOLDS", text(&self.thresholds)),
            (
                "TIMELINE_CSV",
                Value::from(
                    self.timeline_csv
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
            ),
        ];
        if kind == Kind::Capacity {
            let max = self
                .max_rate
                .or_else(|| schedule.map(Schedule::max_rate))
                .unwrap_or_default();
            v.extend([
                ("SLO_P99_MS", Value::from(self.slo_p99_ms)),
                ("SLO_MATCH", Value::from(self.slo_match)),
                (
                    "SLO_P999_MS",
                    self.slo_p999_ms.map_or(Value::from(""), Value::from),
                ),
                ("START_RATE", Value::from(self.start_rate)),
                ("STEP_FACTOR", Value::from(self.step_factor)),
                ("MAX_RATE", Value::from(max)),
                ("STEP_SEC", Value::from(self.step_sec)),
                ("SETTLE_SEC", Value::from(self.settle_sec)),
                ("SEARCH_PRECISION", Value::from(self.search_precision)),
                ("GENERATOR_LAG_MS", Value::from(self.generator_lag_ms)),
            ]);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        c: CapacityConfig,
    }

    fn parse(args: &[&str]) -> CapacityConfig {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .expect("parse")
            .c
    }

    const SCHED: Schedule = Schedule {
        virtual_clients: 100_000,
        interval_ms: 2000,
        warmup_sec: 5,
    };

    #[test]
    fn defaults_are_the_contracts() {
        let c = parse(&[]);
        let p = c.search_params(&SCHED);
        assert_eq!(p.slo.p99_us, 50_000);
        assert_eq!(p.slo.min_match, 0.999);
        assert_eq!(p.slo.p999_us, None);
        assert_eq!(p.start_rate, 1000.0);
        assert_eq!(p.step_factor, 1.5);
        assert_eq!(p.max_rate, 50_000.0);
        assert_eq!(p.precision, 0.05);
        assert_eq!((c.step_sec, c.settle_sec), (20, 5));
        for k in [Kind::Rr, Kind::Pub, Kind::Fanout, Kind::Capacity] {
            assert_eq!(c.check(k, Some(&SCHED)), Ok(()));
        }
        let d = c.describe(Kind::Capacity, Some(&SCHED));
        assert!(d.iter().any(|(k, v)| *k == "MAX_RATE" && *v == 50_000.0));
        assert_eq!(c.describe(Kind::Rr, Some(&SCHED)).len(), 3);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: &[(&[&str], Kind, &str)] = &[
            (&["--stages=10s:abc"], Kind::Rr, "STAGES"),
            (&["--stages=5s:100"], Kind::Rr, "STAGES"),
            (&["--stages=60s:100"], Kind::Capacity, "STAGES"),
            (&["--stages=60s:100"], Kind::Fanout, "STAGES"),
            (&["--thresholds=p99<5"], Kind::Rr, "THRESHOLDS"),
            (&["--thresholds=capacity>=100"], Kind::Rr, "THRESHOLDS"),
            (&["--thresholds=p99<5ms"], Kind::Pub, "THRESHOLDS"),
            (&["--thresholds=timeouts==0"], Kind::Fanout, "THRESHOLDS"),
            (&["--slo-p99-ms=0"], Kind::Capacity, "SLO_P99_MS"),
            (&["--slo-p999-ms=0"], Kind::Capacity, "SLO_P999_MS"),
            (&["--slo-match=1.5"], Kind::Capacity, "SLO_MATCH"),
            (&["--slo-match=0"], Kind::Capacity, "SLO_MATCH"),
            (&["--start-rate=0"], Kind::Capacity, "START_RATE"),
            (&["--step-factor=1"], Kind::Capacity, "STEP_FACTOR"),
            (&["--step-sec=0"], Kind::Capacity, "STEP_SEC"),
            (
                &["--search-precision=0"],
                Kind::Capacity,
                "SEARCH_PRECISION",
            ),
            (
                &["--generator-lag-ms=0"],
                Kind::Capacity,
                "GENERATOR_LAG_MS",
            ),
            (&["--max-rate=50001"], Kind::Capacity, "MAX_RATE"),
            (&["--max-rate=500"], Kind::Capacity, "START_RATE"),
        ];
        for (args, kind, var) in cases {
            let e = parse(args).check(*kind, Some(&SCHED)).unwrap_err();
            assert_eq!(e.var, *var, "{args:?}");
            let line = e.to_string();
            assert!(!line.contains('\n'));
            assert!(line.starts_with(&format!("invalid {var}: '")), "{line}");
        }
        // capacity settings are not checked for other scenarios
        assert_eq!(
            parse(&["--step-factor=1"]).check(Kind::Rr, Some(&SCHED)),
            Ok(())
        );
        // a capacity threshold is fine in a capacity run
        assert_eq!(
            parse(&["--thresholds=capacity>=900/s,p99<50ms"]).check(Kind::Capacity, Some(&SCHED)),
            Ok(())
        );
    }

    #[test]
    fn stages_and_thresholds_parse_after_the_check() {
        let c = parse(&["--stages=10s:1000/s,10s:1000/s", "--thresholds=p99<5ms"]);
        assert_eq!(c.check(Kind::Rr, Some(&SCHED)), Ok(()));
        assert_eq!(c.parsed_stages(&SCHED).unwrap().total_ns(), 20_000_000_000);
        assert_eq!(c.parsed_thresholds().0.len(), 1);
        assert!(parse(&[]).parsed_stages(&SCHED).is_none());
        assert!(parse(&[]).parsed_thresholds().is_empty());
    }
}
