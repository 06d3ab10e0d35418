//! When a lane wakes up. A dense schedule (requests less than [`MIN_GAP`] apart on average) ticks
//! every 1 ms on tokio's timer and batches what is due, which is what keeps the generator cheap.
//! A sparse schedule wakes at each request's due time on a timerfd instead (microsecond
//! precision, in the same epoll as the sockets): tokio's timer rounds every deadline up to its
//! next millisecond, which would hold a lone request back by up to 1 ms (0.5 ms on average)
//! and add as much to its measured latency.

use std::time::{Duration, Instant};

/// Wake-ups of a sparse schedule are at least this far apart (what is due by then is batched).
pub const MIN_GAP: Duration = Duration::from_micros(500);
/// A sparse lane still wakes this often (replies, expiry, the end of the run).
pub const MAX_SLEEP: Duration = Duration::from_millis(5);

pub enum Ticker {
    /// Every 1 ms.
    Coarse(tokio::time::Interval),
    /// At the next due time.
    #[cfg(target_os = "linux")]
    Precise(precise::Timer),
}

impl Ticker {
    /// `spacing`: mean time between two requests of the lane.
    pub fn new(spacing: Duration) -> Ticker {
        #[cfg(target_os = "linux")]
        if spacing >= MIN_GAP {
            match precise::Timer::new() {
                Ok(t) => return Ticker::Precise(t),
                Err(e) => tracing::debug!("no timerfd ({e}): lane ticks every 1 ms"),
            }
        }
        let _ = spacing;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Ticker::Coarse(tick)
    }

    /// Waits for the next wake-up. `next_due` is when the lane's next request is due.
    pub async fn wait(&mut self, next_due: Instant) {
        match self {
            Ticker::Coarse(t) => {
                t.tick().await;
            }
            #[cfg(target_os = "linux")]
            Ticker::Precise(t) => t.wait(next_due).await,
        }
        #[cfg(not(target_os = "linux"))]
        let _ = next_due;
    }
}

#[cfg(target_os = "linux")]
mod precise {
    use super::{MAX_SLEEP, MIN_GAP};
    use rustix::fd::OwnedFd;
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    use std::io;
    use std::time::{Duration, Instant};
    use tokio::io::unix::AsyncFd;

    pub struct Timer {
        fd: AsyncFd<OwnedFd>,
        last: Instant,
    }

    impl Timer {
        pub fn new() -> io::Result<Timer> {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // `AsyncFd::new` is deprecated because an arbitrary `AsRawFd` may close or swap its
            // descriptor while registered; an `OwnedFd` owned by the `AsyncFd` cannot.
            #[allow(deprecated)]
            let fd = AsyncFd::new(fd)?;
            Ok(Timer {
                fd,
                last: Instant::now(),
            })
        }

        pub async fn wait(&mut self, next_due: Instant) {
            let now = Instant::now();
            let at = next_due.max(self.last + MIN_GAP).min(now + MAX_SLEEP);
            let wait = at.saturating_duration_since(now);
            if !wait.is_zero() && self.sleep(wait).await.is_err() {
                tokio::time::sleep(wait).await;
            }
            self.last = Instant::now();
        }

        /// Arms the timer to expire once, `wait` from now, to the nanosecond.
        pub(super) fn arm(&self, wait: Duration) -> io::Result<()> {
            let spec = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec {
                    tv_sec: wait.as_secs() as _,
                    tv_nsec: wait.subsec_nanos() as _,
                },
            };
            timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
            Ok(())
        }

        /// Time left until the armed expiry, as the kernel holds it.
        #[cfg(test)]
        pub(super) fn remaining(&self) -> io::Result<Duration> {
            let v = rustix::time::timerfd_gettime(self.fd.get_ref())?.it_value;
            Ok(Duration::new(v.tv_sec as u64, v.tv_nsec as u32))
        }

        async fn sleep(&self, wait: Duration) -> io::Result<()> {
            self.arm(wait)?;
            loop {
                let mut ready = self.fd.readable().await?;
                let mut expirations = [0u8; 8];
                match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                    Ok(_) => return Ok(()),
                    Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sparse_lane_arms_its_timer_for_the_due_time_not_the_next_millisecond() {
        // What the kernel holds, not how late this busy machine wakes us: tokio's timer would
        // hold 1.3 ms as 2 ms (rounded up to its next millisecond), a millisecond timer as 1 ms.
        let t = precise::Timer::new().expect("timerfd");
        let wait = Duration::from_micros(1300);
        let mut sub_ms = 0;
        for _ in 0..20 {
            t.arm(wait).unwrap();
            let left = t.remaining().unwrap();
            assert!(left <= wait, "armed for {left:?}, more than {wait:?}");
            // read at once after arming: unless preempted in between, more than 1 ms is left
            sub_ms += u32::from(left > Duration::from_millis(1));
        }
        assert!(
            sub_ms > 0,
            "the timer never held 1.3 ms to better than a millisecond"
        );
    }

    #[tokio::test]
    async fn a_sparse_lane_wakes_at_the_due_time_never_before() {
        let mut t = Ticker::new(Duration::from_millis(1));
        assert!(matches!(t, Ticker::Precise(_)));
        // first wait: MIN_GAP after creation at the earliest
        t.wait(Instant::now()).await;
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let due = Instant::now() + Duration::from_micros(1300);
            t.wait(due).await;
            assert!(Instant::now() >= due, "woke before its due time");
            worst = worst.max(Instant::now().saturating_duration_since(due));
        }
        // woken at all, on a machine that may be busy (how late is a benchmark's question)
        assert!(
            worst < Duration::from_millis(20),
            "worst lateness {worst:?}"
        );
    }

    #[tokio::test]
    async fn a_dense_lane_ticks_every_millisecond() {
        let t = Ticker::new(Duration::from_micros(100));
        assert!(matches!(t, Ticker::Coarse(_)));
    }

    #[tokio::test]
    async fn a_sparse_lane_still_wakes_within_max_sleep() {
        let mut t = Ticker::new(Duration::from_secs(1));
        let start = Instant::now();
        t.wait(start + Duration::from_secs(60)).await;
        assert!(start.elapsed() < MAX_SLEEP + Duration::from_millis(50));
    }
}
