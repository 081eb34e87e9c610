//! Request pacing ahead of time, so a budget is kept without collecting 429s.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Shared request budget; clones share one budget (several clients, a backfill's windows).
#[derive(Clone, Default)]
pub struct Pacer {
    // None means unlimited; Arc so every clone draws from the same cells.
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    period: Option<Duration>,
}

impl Pacer {
    /// At most `n` requests a minute, evenly spaced (one every 60 s / n, no burst); `0` means unlimited.
    pub fn per_minute(n: u32) -> Self {
        if n == 0 {
            return Self::unlimited();
        }
        let period = Duration::from_secs(60) / n;
        // Burst 1: a burst of n would spend a minute's budget at once and then stall, which
        // is exactly the pattern per-key rolling windows punish.
        match Quota::with_period(period) {
            Some(quota) => Pacer {
                limiter: Some(Arc::new(RateLimiter::direct(
                    quota.allow_burst(NonZeroU32::MIN),
                ))),
                period: Some(period),
            },
            None => Self::unlimited(),
        }
    }

    /// No pacing at all (tests, or an API without a documented budget).
    pub fn unlimited() -> Self {
        Pacer {
            limiter: None,
            period: None,
        }
    }

    /// Spacing between requests, or `None` when unlimited.
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// Waits until the budget allows one more request.
    pub async fn ready(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period {
            Some(p) => write!(f, "Pacer(every {p:?})"),
            None => f.write_str("Pacer(unlimited)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn spaces_evenly_without_burst() {
        let pacer = Pacer::per_minute(1200); // 50 ms apart
        let start = Instant::now();
        for _ in 0..4 {
            pacer.ready().await;
        }
        // First is free, then three gaps of 50 ms; a burst of n would finish at once.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(140), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    }

    #[tokio::test]
    async fn clones_share_one_budget() {
        let a = Pacer::per_minute(1200);
        let b = a.clone();
        let start = Instant::now();
        a.ready().await;
        b.ready().await;
        a.ready().await;
        assert!(start.elapsed() >= Duration::from_millis(90));
    }

    #[tokio::test]
    async fn unlimited_and_zero_do_not_wait() {
        let start = Instant::now();
        for p in [Pacer::unlimited(), Pacer::per_minute(0)] {
            for _ in 0..100 {
                p.ready().await;
            }
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
