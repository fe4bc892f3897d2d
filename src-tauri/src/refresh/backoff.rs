//! Exponential backoff with full jitter, bounded: transient failures retry without hammering.

use rand::Rng;
use std::time::Duration;

/// Delay before retry number `attempt` (0-based): uniform in [base·2^attempt / 2, base·2^attempt],
/// capped at `max`.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20));
    let ceiling = exp.min(max);
    let floor = ceiling / 2;
    let span = (ceiling - floor).as_millis() as u64;
    floor + Duration::from_millis(rand::thread_rng().gen_range(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_is_capped() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for attempt in 0..30 {
            let d = backoff_delay(attempt, base, max);
            let ceiling = base.saturating_mul(1 << attempt.min(20)).min(max);
            assert!(d <= ceiling && d >= ceiling / 2, "attempt {attempt}: {d:?}");
        }
        assert!(backoff_delay(25, base, max) <= max);
    }
}
