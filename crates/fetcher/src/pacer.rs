//! Request pacing ahead of time, so a budget is kept without collecting 429s.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// The share of a budget actually used: requests leave on a clock the server does not share,
/// so pacing at exactly the limit would now and then put `n + 1` requests in its window.
pub const HEADROOM: f64 = 0.99;

/// How much slower the pace gets each time the server answers 429 anyway.
const SLOW_DOWN: f64 = 0.8;

/// The slowest an adapted pace may become, as a share of the configured budget.
const SLOWEST: f64 = 0.25;

/// Shared request budget; clones share one budget (several clients, a backfill's windows).
#[derive(Clone, Default)]
pub struct Pacer {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// The configured budget, when there is one.
    budget: Option<Budget>,
    /// No request before this instant (the server said its window is spent); kept even
    /// without a budget of our own.
    paused_until: Option<Instant>,
}

struct Budget {
    /// Requests a minute the budget allows (before headroom).
    per_minute: f64,
    /// Requests a minute paced now: the budget × headroom, lowered after 429s.
    pace: f64,
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// One request every `60 s / per_minute`, no burst: a burst would spend a minute's budget at
/// once and then stall, the very pattern per-key rolling windows punish.
fn limiter(per_minute: f64) -> Arc<DefaultDirectRateLimiter> {
    let period = Duration::from_secs_f64(60.0 / per_minute);
    let quota = Quota::with_period(period).expect("a positive period");
    Arc::new(RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)))
}

impl Pacer {
    /// At most `n` requests a minute, evenly spaced with [`HEADROOM`]; `0` means unlimited.
    pub fn per_minute(n: u32) -> Self {
        if n == 0 {
            return Self::unlimited();
        }
        let pace = f64::from(n) * HEADROOM;
        Pacer {
            inner: Arc::new(Mutex::new(Inner {
                budget: Some(Budget {
                    per_minute: f64::from(n),
                    pace,
                    limiter: limiter(pace),
                }),
                paused_until: None,
            })),
        }
    }

    /// No budget of our own (tests, or an API without a documented budget); a server's
    /// "window spent" is still honoured.
    pub fn unlimited() -> Self {
        Pacer::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spacing between requests now, or `None` when unlimited.
    pub fn period(&self) -> Option<Duration> {
        self.per_minute_now()
            .map(|pace| Duration::from_secs_f64(60.0 / pace))
    }

    /// Requests a minute paced now, or `None` when unlimited.
    pub fn per_minute_now(&self) -> Option<f64> {
        self.lock().budget.as_ref().map(|b| b.pace)
    }

    /// Waits until the budget allows one more request.
    pub async fn ready(&self) {
        let (limiter, paused_until) = {
            let g = self.lock();
            (
                g.budget.as_ref().map(|b| Arc::clone(&b.limiter)),
                g.paused_until,
            )
        };
        if let Some(t) = paused_until {
            tokio::time::sleep_until(t).await;
        }
        if let Some(limiter) = limiter {
            limiter.until_ready().await;
        }
    }

    /// The server answered 429 although the pace kept the budget: the real budget is smaller
    /// than configured (a shared key, an undocumented bucket), so go 20 % slower for the rest
    /// of the run, down to a quarter of the budget.
    pub fn throttled(&self) {
        let mut g = self.lock();
        let Some(b) = g.budget.as_mut() else {
            return;
        };
        let slower = (b.pace * SLOW_DOWN).max(b.per_minute * SLOWEST);
        if slower < b.pace {
            b.pace = slower;
            b.limiter = limiter(slower);
            tracing::warn!(
                per_minute = format!("{slower:.1}"),
                "the server throttled us; pacing slower for the rest of the run"
            );
        }
    }

    /// How long the server's "window spent" still holds requests back, if it does.
    pub fn pause_left(&self) -> Option<Duration> {
        let until = self.lock().paused_until?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// The server said its window allows no more requests until `until`: nobody sharing
    /// this budget sends one before then.
    pub fn pause_until(&self, until: Instant) {
        let mut g = self.lock();
        g.paused_until = Some(g.paused_until.map_or(until, |t| t.max(until)));
    }
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per_minute_now() {
            Some(p) => write!(f, "Pacer({p:.1}/min)"),
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
        let pacer = Pacer::per_minute(1200); // ~50 ms apart
        let start = Instant::now();
        for _ in 0..4 {
            pacer.ready().await;
        }
        // First is free, then three gaps of 50 ms; a burst of n would finish at once.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    }

    #[tokio::test]
    async fn keeps_a_little_under_the_budget() {
        let pacer = Pacer::per_minute(100);
        let period = pacer.period().unwrap();
        assert!(period > Duration::from_millis(600), "{period:?}");
        assert!(period < Duration::from_millis(610), "{period:?}");
    }

    #[tokio::test]
    async fn clones_share_one_budget() {
        let a = Pacer::per_minute(1200);
        let b = a.clone();
        let start = Instant::now();
        a.ready().await;
        b.ready().await;
        a.ready().await;
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn unlimited_and_zero_do_not_wait() {
        let start = Instant::now();
        for p in [Pacer::unlimited(), Pacer::per_minute(0)] {
            for _ in 0..100 {
                p.ready().await;
            }
            p.throttled();
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_429_slows_the_pace_for_every_clone_down_to_a_floor() {
        let a = Pacer::per_minute(100);
        let b = a.clone();
        a.throttled();
        let now = b.per_minute_now().unwrap();
        assert!((now - 99.0 * 0.8).abs() < 1e-9, "{now}");
        for _ in 0..50 {
            b.throttled();
        }
        assert_eq!(a.per_minute_now(), Some(25.0));
    }

    #[tokio::test]
    async fn a_spent_window_pauses_everyone_until_it_resets() {
        let a = Pacer::per_minute(6000);
        let b = a.clone();
        let start = Instant::now();
        a.pause_until(tokio::time::Instant::now() + Duration::from_millis(150));
        b.ready().await;
        assert!(start.elapsed() >= Duration::from_millis(150));
    }
}
