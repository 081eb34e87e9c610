//! What one successful call returns, and the counters clients keep.

use std::sync::atomic::{AtomicU64, Ordering};

use joblake_schema::RawRows;

/// One page of rows, exactly as the API sent them.
#[derive(Debug)]
pub struct Page {
    /// Rows, unparsed, so the schema crate sees every field the API sent: spans of the
    /// response body.
    pub rows: RawRows,
    /// Cursor to continue the scan with; for Sentrion the JSON text of `search_after`.
    pub next_cursor: Option<String>,
    /// Whether the API has more rows after this page.
    pub has_more: bool,
    /// Credits charged for this page and left afterwards, when the API says.
    pub credits: Credits,
    /// Total matches reported by the API (Sentrion's `total_jobs_found`).
    pub total_found: Option<u64>,
    /// Size of the (decompressed) response body.
    pub bytes: usize,
}

/// Credit accounting reported with a page.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Credits {
    /// Credits this page cost.
    pub used: Option<f64>,
    /// Credits left on the account.
    pub balance: Option<f64>,
}

/// Counters a client keeps across calls; share via `Arc` to read them live.
#[derive(Debug, Default)]
pub struct FetchStats {
    /// HTTP requests sent, retries included.
    pub requests: AtomicU64,
    /// Retries scheduled after a transient failure.
    pub retries: AtomicU64,
    /// 429 answers seen.
    pub throttled: AtomicU64,
    /// Attempts that failed for any reason.
    pub errors: AtomicU64,
    /// Rows returned in successful pages.
    pub rows: AtomicU64,
    /// Body bytes received in successful pages.
    pub bytes: AtomicU64,
}

/// Plain copy of [`FetchStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Retries scheduled after a transient failure.
    pub retries: u64,
    /// 429 answers seen.
    pub throttled: u64,
    /// Attempts that failed for any reason.
    pub errors: u64,
    /// Rows returned in successful pages.
    pub rows: u64,
    /// Body bytes received in successful pages.
    pub bytes: u64,
}

impl FetchStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
