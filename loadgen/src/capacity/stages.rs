//! `STAGES`: a load profile written `DURATION:TARGET,...` (k6-style). Over each stage the target
//! moves linearly from the previous stage's target (0 before the first) to its own; `DURATION`
//! is `30s`, `5m`, `1h` or a sum such as `1m30s`; `TARGET` is a rate (`5000/s`) or a number of
//! active virtual clients (`500000`, out of VIRTUAL_CLIENTS, each sending every INTERVAL_MS).

use super::profile::Profile;
use rr_common::cli::ConfigError;
use std::fmt;

const NS_PER_S: u64 = 1_000_000_000;
/// Longest run STAGES may describe (30 days).
pub const MAX_TOTAL_NS: u64 = 30 * 24 * 3600 * NS_PER_S;

/// What one stage moves to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Requests per second.
    Rate(f64),
    /// Active virtual clients.
    Clients(u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    pub duration_ns: u64,
    pub target: Target,
}

/// A parsed, validated `STAGES` value.
#[derive(Clone, Debug, PartialEq)]
pub struct Stages {
    pub stages: Vec<Stage>,
    /// Active clients the targets were converted with (VIRTUAL_CLIENTS, INTERVAL_MS).
    virtual_clients: u32,
    interval_ms: u64,
}

const ACCEPTED: &str = "accepted: DURATION:TARGET,... with DURATION like 30s, 5m, 1h or 1m30s and \
TARGET a rate like 5000/s or a number of active virtual clients like 50000";

fn err(value: &str, what: impl fmt::Display) -> ConfigError {
    ConfigError::new("STAGES", format!("'{value}': {what}; {ACCEPTED}"))
}

/// Parses a duration made of `<integer><unit>` parts with units `h`, `m`, `s` (each at most
/// once, in that order): `90s`, `1m30s`, `2h`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut last_unit = 0u64; // units must shrink: h, then m, then s
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = match rest.as_bytes().first()? {
            b'h' => (3600, 1),
            b'm' => (60, 1),
            b's' => (1, 1),
            _ => return None,
        };
        if last_unit != 0 && unit >= last_unit {
            return None;
        }
        last_unit = unit;
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit)?.checked_mul(NS_PER_S)?)?;
    }
    Some(total)
}

fn parse_target(text: &str) -> Option<Target> {
    let t = text.trim();
    if let Some(rate) = t.strip_suffix("/s") {
        let r: f64 = rate.trim().parse().ok()?;
        return (r.is_finite() && r >= 0.0).then_some(Target::Rate(r));
    }
    if !t.bytes().all(|b| b.is_ascii_digit() || b == b'_') || t.is_empty() {
        return None;
    }
    t.replace('_', "").parse().ok().map(Target::Clients)
}

impl Stages {
    /// Parses and checks `text` against the client count and interval of the run.
    pub fn parse(
        text: &str,
        virtual_clients: u32,
        interval_ms: u64,
    ) -> Result<Stages, ConfigError> {
        let max_rate = f64::from(virtual_clients) * 1000.0 / interval_ms as f64;
        let mut stages = Vec::new();
        let mut total: u64 = 0;
        for (i, part) in text.split(',').enumerate() {
            let part = part.trim();
            let n = i + 1;
            let Some((d, t)) = part.split_once(':') else {
                return Err(err(text, format_args!("stage {n} '{part}' has no ':'")));
            };
            let Some(duration_ns) = parse_duration(d) else {
                return Err(err(
                    text,
                    format_args!("stage {n}: '{}' is not a duration", d.trim()),
                ));
            };
            if duration_ns == 0 {
                return Err(err(text, format_args!("stage {n} lasts 0 s")));
            }
            let Some(target) = parse_target(t) else {
                return Err(err(
                    text,
                    format_args!(
                        "stage {n}: '{}' is not a rate (5000/s) or a client count (50000)",
                        t.trim()
                    ),
                ));
            };
            match target {
                Target::Rate(r) if r > max_rate * (1.0 + 1e-12) => {
                    return Err(err(
                        text,
                        format_args!(
                            "stage {n}: {r}/s is more than VIRTUAL_CLIENTS ({virtual_clients}) at \
                             INTERVAL_MS ({interval_ms}) can offer ({max_rate}/s)"
                        ),
                    ))
                }
                Target::Clients(c) if c > virtual_clients => {
                    return Err(err(
                        text,
                        format_args!(
                            "stage {n}: {c} active clients is more than VIRTUAL_CLIENTS ({virtual_clients})"
                        ),
                    ))
                }
                _ => {}
            }
            total = total.saturating_add(duration_ns);
            if total > MAX_TOTAL_NS {
                return Err(err(text, "the stages last more than 30 days"));
            }
            stages.push(Stage {
                duration_ns,
                target,
            });
        }
        Ok(Stages {
            stages,
            virtual_clients,
            interval_ms,
        })
    }

    /// Active clients a target stands for.
    pub fn active(&self, t: Target) -> f64 {
        match t {
            Target::Clients(c) => f64::from(c),
            Target::Rate(r) => {
                (r * self.interval_ms as f64 / 1000.0).min(f64::from(self.virtual_clients))
            }
        }
    }

    /// How long the stages last in total.
    pub fn total_ns(&self) -> u64 {
        self.stages.iter().map(|s| s.duration_ns).sum()
    }

    /// The profile of active clients over time.
    pub fn profile(&self) -> Profile {
        let pieces: Vec<(u64, f64)> = self
            .stages
            .iter()
            .map(|s| (s.duration_ns, self.active(s.target)))
            .collect();
        Profile::ramps(&pieces)
    }

    /// The request rate a number of active clients offers.
    pub fn rate_of(&self, active: f64) -> f64 {
        active * 1000.0 / self.interval_ms as f64
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Rate(r) => write!(f, "{r}/s"),
            Target::Clients(c) => write!(f, "{c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_S;

    #[test]
    fn durations_take_h_m_s_and_sums() {
        assert_eq!(parse_duration("30s"), Some(30 * S));
        assert_eq!(parse_duration("5m"), Some(300 * S));
        assert_eq!(parse_duration("1h"), Some(3600 * S));
        assert_eq!(parse_duration("1m30s"), Some(90 * S));
        assert_eq!(parse_duration("1h2m3s"), Some(3723 * S));
        for bad in [
            "",
            "30",
            "s",
            "1.5m",
            "30ms",
            "1s1m",
            "1m1m",
            "-1s",
            "1 m",
            "99999999999999s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_go_tools_ramp_is_one_value() {
        let s = Stages::parse(
            "60s:100000,60s:500000,120s:1000000,60s:100000",
            1_000_000,
            2000,
        )
        .unwrap();
        assert_eq!(s.total_ns(), 300 * S);
        let p = s.profile();
        assert_eq!(p.at(0), 0.0);
        assert_eq!(p.at(30 * S), 50_000.0);
        assert_eq!(p.at(90 * S), 300_000.0);
        assert_eq!(p.at(240 * S), 1_000_000.0);
        assert_eq!(p.at(300 * S), 100_000.0);
    }

    #[test]
    fn a_rate_target_becomes_active_clients_at_the_interval() {
        let s = Stages::parse("10s:5000/s, 10s:5000/s ,5s:0", 100_000, 2000).unwrap();
        assert_eq!(s.stages[0].target, Target::Rate(5000.0));
        assert_eq!(s.active(Target::Rate(5000.0)), 10_000.0);
        assert_eq!(s.rate_of(s.profile().at(15 * S)), 5000.0);
        // fractional rates stay fractional: the lanes dither the boundary client
        let s = Stages::parse("1s:0.5/s", 10, 1000).unwrap();
        assert_eq!(s.profile().at(S), 0.5);
    }

    #[test]
    fn errors_name_the_variable_the_value_and_what_is_accepted() {
        let cases = [
            ("", "has no ':'"),
            ("60s", "has no ':'"),
            ("60:100", "'60' is not a duration"),
            ("10s:100,0s:5", "stage 2 lasts 0 s"),
            ("10s:abc", "'abc' is not a rate"),
            ("10s:-5/s", "'-5/s' is not a rate"),
            ("10s:1.5", "'1.5' is not a rate"),
            ("10s:100001", "more than VIRTUAL_CLIENTS (100000)"),
            (
                "10s:50001/s",
                "more than VIRTUAL_CLIENTS (100000) at INTERVAL_MS (2000) can offer (50000/s)",
            ),
            ("721h:1", "more than 30 days"),
        ];
        for (value, what) in cases {
            let e = Stages::parse(value, 100_000, 2000).unwrap_err();
            assert_eq!(e.var, "STAGES");
            let line = e.to_string();
            assert!(line.contains(what), "{value}: {line}");
            assert!(line.contains(&format!("'{value}'")), "{line}");
            assert!(line.contains("accepted: DURATION:TARGET"), "{line}");
            assert!(!line.contains('\n'));
        }
        // the maximum itself is fine
        assert!(Stages::parse("10s:50000/s,1s:100000", 100_000, 2000).is_ok());
    }
}
