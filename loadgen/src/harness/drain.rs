//! The one drain of every scenario: after sending stops, wait until nothing is outstanding, or
//! until what is outstanding stops moving for a quiet period, or at most a limit; whatever is
//! still outstanding then is the scenario's to close (timed out, lost).

use std::time::Duration;
use tokio::time::Instant;

/// How long a scenario's drain may last.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DrainRule {
    /// At most this long after sending stopped.
    pub max: Duration,
    /// End early once progress has not moved for this long (books that cannot tell what is
    /// still coming, such as subscribers of another process's publisher).
    pub quiet: Option<Duration>,
}

/// What a scenario still waits for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Outstanding {
    /// Requests or deliveries not yet resolved, when the books can tell.
    pub pending: Option<u64>,
    /// A counter that moves while answers still arrive.
    pub progress: u64,
}

/// How often the drain looks (it lasts at most `DrainRule::max`).
pub const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Why a drain ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Nothing outstanding.
    Settled,
    /// Nothing moved for the quiet period.
    Quiet,
    /// The limit passed with requests or deliveries outstanding.
    Limit,
}

/// Waits as [`DrainRule`] says, reading `outstanding` every [`DRAIN_POLL`].
pub async fn drain(rule: DrainRule, mut outstanding: impl FnMut() -> Outstanding) -> Drained {
    let start = Instant::now();
    let end = start + rule.max;
    let mut last = outstanding();
    let mut moved_at = start;
    let mut tick = tokio::time::interval(DRAIN_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = outstanding();
        if now.pending == Some(0) {
            return Drained::Settled;
        }
        let t = Instant::now();
        if now.progress != last.progress {
            moved_at = t;
        }
        last = now;
        if rule.quiet.is_some_and(|q| t >= moved_at + q) {
            return Drained::Quiet;
        }
        if t >= end {
            return Drained::Limit;
        }
        tick.tick().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn ends_when_settled_quiet_or_at_the_limit() {
        let n = Cell::new(5u64);
        let rule = DrainRule {
            max: Duration::from_secs(10),
            quiet: None,
        };
        let r = drain(rule, || {
            n.set(n.get().saturating_sub(1));
            Outstanding {
                pending: Some(n.get()),
                progress: n.get(),
            }
        })
        .await;
        assert_eq!(r, Drained::Settled);

        let start = Instant::now();
        let r = drain(rule, || Outstanding {
            pending: Some(3),
            progress: 0,
        })
        .await;
        assert_eq!(r, Drained::Limit);
        assert!(start.elapsed() >= Duration::from_secs(10));

        let start = Instant::now();
        let quiet = DrainRule {
            quiet: Some(Duration::from_secs(1)),
            ..rule
        };
        let r = drain(quiet, || Outstanding {
            pending: None,
            progress: 7,
        })
        .await;
        assert_eq!(r, Drained::Quiet);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
