//! LivePerson's retry policy (docs/protocol/liveperson.md §8) as delays for the outbox workers.

use std::time::Duration;

use rand::Rng as _;

use crate::error::EngineError;

/// Delays between attempts: `5 s, 10 s, 15 s` for 5xx and network failures, then an outer,
/// slower backoff `2, 4, 8 … min` up to a cap; `429` waits at least 1 s (or its `Retry-After`).
/// Every delay gets ±10 % jitter so that retries do not arrive in bursts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The first delays, in order.
    pub steps: Vec<Duration>,
    /// The first delay of the outer backoff, doubled each time.
    pub outer_start: Duration,
    /// The longest delay.
    pub outer_cap: Duration,
    /// Multiplies every delay (tests run the policy in milliseconds).
    pub scale: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            steps: vec![
                Duration::from_secs(5),
                Duration::from_secs(10),
                Duration::from_secs(15),
            ],
            outer_start: Duration::from_secs(120),
            outer_cap: Duration::from_secs(480),
            scale: 1.0,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `failures + 1`, after `failures` failures (≥ 1), the last of
    /// which was `error`.
    pub fn delay(&self, failures: u32, error: &EngineError) -> Duration {
        let base = match error {
            EngineError::Retryable {
                after: Some(after), ..
            } => (*after).max(self.floor(error)),
            EngineError::Retryable {
                rate_limited: true, ..
            } => Duration::from_secs(1),
            _ => self.backoff(failures),
        };
        jitter(times(base, self.scale.max(0.0)))
    }

    fn floor(&self, error: &EngineError) -> Duration {
        match error {
            EngineError::Retryable {
                rate_limited: true, ..
            } => Duration::from_secs(1),
            _ => Duration::ZERO,
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let index = failures.saturating_sub(1) as usize;
        if let Some(step) = self.steps.get(index) {
            return *step;
        }
        let outer = (index - self.steps.len()).min(16) as u32;
        self.outer_start
            .saturating_mul(1u32 << outer)
            .min(self.outer_cap)
    }
}

fn jitter(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    times(d, rand::rng().random_range(0.9..=1.1))
}

/// `d` × `factor`, saturating: `Duration::mul_f64` panics on overflow (a `Retry-After` of
/// `u64::MAX` seconds) and on a factor that is not a finite number.
fn times(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod saturation {
    use super::*;

    #[test]
    fn a_retry_after_of_u64_max_seconds_saturates_instead_of_panicking() {
        let error = EngineError::Retryable {
            reason: "429".into(),
            after: Some(Duration::from_secs(u64::MAX)),
            rate_limited: true,
            may_have_arrived: false,
        };
        let delay = RetryPolicy::default().delay(1, &error);
        assert!(delay >= Duration::from_secs(3600), "{delay:?}");
    }
}
