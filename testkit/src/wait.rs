//! Polling helpers: wait for a condition with a deadline instead of sleeping a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// How often the `wait_until*` helpers re-check their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every [`POLL_INTERVAL`] until it returns true, for at most `deadline`.
///
/// # Errors
/// `f` was still false after `deadline`; the message names `what`.
pub async fn wait_until<F: FnMut() -> bool>(
    deadline: Duration,
    what: &str,
    mut f: F,
) -> anyhow::Result<()> {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`wait_until`] with an async condition (for example an HTTP probe). Each check may itself
/// take time; the deadline covers the checks too, but a check in progress is not cut short.
///
/// # Errors
/// The condition was still false after `deadline`; the message names `what`.
pub async fn wait_until_async<F, Fut>(
    deadline: Duration,
    what: &str,
    mut f: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if f().await {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Runs `attempt` until it succeeds, at most `tries` times (a probe that may meet a slow
/// moment, such as one HTTP request to a process the test has saturated). An attempt slower
/// than `slow` is printed with its time, so a log shows how close a run came to failing.
///
/// # Errors
/// Every attempt failed; the message names `what` and each attempt's error and time.
pub async fn retry_async<T, E, F, Fut>(
    what: &str,
    tries: u32,
    slow: Duration,
    mut attempt: F,
) -> anyhow::Result<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut failures = Vec::new();
    for _ in 0..tries.max(1) {
        let asked = Instant::now();
        let got = attempt().await;
        let took = asked.elapsed();
        if took > slow {
            eprintln!("slow {what}: {:.2} s", took.as_secs_f64());
        }
        match got {
            Ok(v) => return Ok(v),
            Err(e) => failures.push(format!("{e} after {:.2} s", took.as_secs_f64())),
        }
    }
    bail!(
        "{what} failed {} times: {}",
        failures.len(),
        failures.join("; ")
    )
}

/// [`wait_until`] for code without a runtime: blocks the thread between checks.
///
/// # Errors
/// `f` was still false after `deadline`; the message names `what`.
pub fn wait_until_blocking<F: FnMut() -> bool>(
    deadline: Duration,
    what: &str,
    mut f: F,
) -> anyhow::Result<()> {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn succeeds_once_the_condition_holds() {
        let mut calls = 0;
        wait_until(Duration::from_secs(5), "third call", || {
            calls += 1;
            calls >= 3
        })
        .await
        .unwrap();
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn times_out_naming_the_condition() {
        let err = wait_until(Duration::from_millis(50), "never", || false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("waiting for never"), "{err}");
        let err = wait_until_async(Duration::from_millis(50), "never async", || async { false })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("never async"), "{err}");
    }

    #[tokio::test]
    async fn retries_until_an_attempt_succeeds_and_reports_every_failure() {
        let mut calls = 0;
        let v = retry_async("flaky", 3, Duration::from_secs(1), || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(format!("no {n}"))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
        let err = retry_async("never", 2, Duration::from_secs(1), || async {
            Err::<(), _>("down")
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("never failed 2 times: down after"), "{err}");
        assert_eq!(err.matches("down").count(), 2, "{err}");
    }

    #[test]
    fn blocking_variant_polls_too() {
        let mut calls = 0;
        wait_until_blocking(Duration::from_secs(5), "second call", || {
            calls += 1;
            calls >= 2
        })
        .unwrap();
        assert_eq!(calls, 2);
    }
}
