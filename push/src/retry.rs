//! Retrying a delivery: exponential backoff with jitter, a bounded number of attempts.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How often and how patiently a transient failure is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (the first included).
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Bound on one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One attempt's result.
pub(crate) enum Attempt<T> {
    Done(T),
    /// Transient: try again after a delay (the text says why).
    Retry(String),
    /// Transient but already understood (a stale token was refreshed): try again at once.
    RetryNow(String),
}

impl RetryPolicy {
    /// Runs `attempt` until it is done or the attempts run out; `Err` holds the last reason.
    pub(crate) fn run<T>(&self, mut attempt: impl FnMut() -> Attempt<T>) -> Result<T, String> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .with_max_times(self.attempts.saturating_sub(1))
            .build();
        let mut last = String::from("no attempt made");
        for _ in 0..self.attempts.max(1) * 2 {
            match attempt() {
                Attempt::Done(value) => return Ok(value),
                Attempt::RetryNow(reason) => last = reason,
                Attempt::Retry(reason) => {
                    last = reason;
                    match delays.next() {
                        Some(delay) => std::thread::sleep(delay),
                        None => return Err(last),
                    }
                }
            }
        }
        Err(last)
    }
}
