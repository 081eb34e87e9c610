//! Crash points: named moments of a run at which the crash tests kill the process, exactly
//! as `kill -9` would, to prove that no moment loses or doubles a row.
//!
//! `JOBLAKE_CRASH_AT=<point>[:<n>]` (tests only) makes the `n`-th pass (default the first)
//! through `crash_point("<point>")` send SIGKILL to this process. Unset, a pass costs one
//! relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Plan {
    point: String,
    nth: u64,
    seen: AtomicU64,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let spec = std::env::var("JOBLAKE_CRASH_AT").ok()?;
        // Point names hold colons themselves: only a trailing number is a count.
        let (point, nth) = match spec.rsplit_once(':') {
            Some((p, n)) if n.parse::<u64>().is_ok() => (p.to_string(), n.parse().ok()?),
            _ => (spec, 1),
        };
        Some(Plan {
            point,
            nth,
            seen: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Marks a moment of a run; see the module docs.
pub fn crash_point(name: &str) {
    let Some(plan) = plan() else {
        return;
    };
    if plan.point == name && plan.seen.fetch_add(1, Ordering::SeqCst) + 1 == plan.nth {
        #[cfg(unix)]
        // SAFETY: kill(2) on our own pid; SIGKILL ends the process here, as `kill -9` would.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}
