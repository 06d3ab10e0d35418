//! `START_AT`: the wall-clock second at which an instance opens its schedule and its measured
//! window, so instances started apart (pods, hosts) line up without a coordinator and their
//! timelines merge second by second. Accepted: `next-minute` (the next full minute of the
//! wall clock), an RFC 3339 time (`2025-08-01T12:00:00Z`), or Unix seconds (`1754049600`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the variable accepts, for error messages.
pub const ACCEPTED: &str =
    "accepted: next-minute, an RFC 3339 time such as 2025-08-01T12:00:00Z, or Unix seconds";

/// A parsed `START_AT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The next full minute after the process reads it (at least 1 s ahead).
    NextMinute,
    At(SystemTime),
}

impl std::str::FromStr for StartAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("next-minute") {
            return Ok(StartAt::NextMinute);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let secs: u64 = s
                .parse()
                .map_err(|_| format!("'{s}' is too large; {ACCEPTED}"))?;
            return Ok(StartAt::At(UNIX_EPOCH + Duration::from_secs(secs)));
        }
        humantime::parse_rfc3339_weak(s)
            .map(StartAt::At)
            .map_err(|e| format!("'{s}' is not a time ({e}); {ACCEPTED}"))
    }
}

impl std::fmt::Display for StartAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartAt::NextMinute => f.write_str("next-minute"),
            StartAt::At(t) => write!(f, "{}", humantime::format_rfc3339_seconds(*t)),
        }
    }
}

impl StartAt {
    /// The wall-clock instant meant, seen from `now`.
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            StartAt::At(t) => t,
            StartAt::NextMinute => {
                let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let mut next = (secs / 60 + 1) * 60;
                // less than a second ahead leaves no time to connect and line up
                if next.saturating_sub(secs) < 1 {
                    next += 60;
                }
                UNIX_EPOCH + Duration::from_secs(next)
            }
        }
    }

    /// How long to wait from `now`: zero when the time has passed (the instance then starts at
    /// once and says it is late; it cannot line up with instances that started on time).
    pub fn wait(self, now: SystemTime) -> (SystemTime, Duration) {
        let at = self.resolve(now);
        (at, at.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// Unix milliseconds of a wall-clock time (what reports carry as `start_unix_ms`).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form_and_names_what_is_accepted() {
        assert_eq!("next-minute".parse(), Ok(StartAt::NextMinute));
        assert_eq!(
            "1754049600".parse(),
            Ok(StartAt::At(UNIX_EPOCH + Duration::from_secs(1_754_049_600)))
        );
        assert_eq!(
            "2025-08-01T12:00:00Z".parse(),
            Ok(StartAt::At(UNIX_EPOCH + Duration::from_secs(1_754_049_600)))
        );
        for bad in [
            "soon",
            "",
            "2025-13-01T00:00:00Z",
            "99999999999999999999999",
        ] {
            let e = bad.parse::<StartAt>().unwrap_err();
            assert!(e.contains("accepted: next-minute"), "{bad}: {e}");
        }
    }

    #[test]
    fn next_minute_is_the_next_full_minute() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(StartAt::NextMinute.resolve(at(120)), at(180));
        assert_eq!(StartAt::NextMinute.resolve(at(179)), at(180));
        let (when, wait) = StartAt::NextMinute.wait(at(150) + Duration::from_millis(250));
        assert_eq!(when, at(180));
        assert_eq!(wait, Duration::from_millis(29_750));
        // a time already past: no wait
        assert_eq!(StartAt::At(at(100)).wait(at(150)).1, Duration::ZERO);
        assert_eq!(unix_ms(at(2) + Duration::from_millis(5)), 2005);
    }
}
