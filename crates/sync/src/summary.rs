//! What one run did with one table: the summary a user reads and the ledger entry the
//! `runs` view reads.

use chrono::Utc;
use joblake_schema::Table;
use joblake_writer::{Lake, RunRecord, RunStatus, write_ledger};
use serde::Serialize;

/// One source's outcome, as the summary shows it.
#[derive(Debug, Serialize)]
pub struct SourceSummary {
    /// The table.
    pub source: String,
    /// How it ended.
    pub status: RunStatus,
    /// Why it failed or stopped.
    pub message: Option<String>,
    /// Pages fetched this run.
    pub pages: u64,
    /// Rows loaded this run.
    pub rows: u64,
    /// Rows of an interrupted run committed first.
    pub recovered_rows: u64,
    /// Files published.
    pub files: u64,
    /// Bytes published.
    pub bytes: u64,
    /// The version of the table's Delta log the source committed last.
    pub delta_version: Option<u64>,
    /// Decode counters (values kept in `_extra`, rows rejected).
    pub type_mismatches: u64,
    /// Unknown fields kept in `_extra`.
    pub unknown_fields: u64,
    /// Rows rejected, with reasons under `_joblake/rejects/`.
    pub rejected_rows: u64,
    /// Retries and 429s.
    pub retries: u64,
    /// 429 answers.
    pub http_429: u64,
    /// Dead-cursor restarts.
    pub restarts: u32,
    /// Credits used as the API reported them.
    pub credits_used: Option<f64>,
    /// The last balance the API reported.
    pub credits_balance: Option<f64>,
    /// Seconds spent.
    pub seconds: f64,
    /// What needs the user's eye although nothing failed (a low credit balance).
    pub warnings: Vec<String>,
    /// Backfill windows finished this run and still left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<WindowCounts>,
    /// Company profiles: those asked for this run and those that answered 404 (recorded,
    /// and not asked again within `stale_after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profiles: Option<ProfileCounts>,
}

/// What one enrichment run asked for.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProfileCounts {
    /// Companies the predicate chose that were due (not fetched or found missing lately).
    pub due: u64,
    /// Profiles fetched and loaded.
    pub fetched: u64,
    /// Companies whose profile answered 404.
    pub not_found: u64,
}

/// Backfill progress of one run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WindowCounts {
    /// Windows finished by this run.
    pub done: usize,
    /// Windows left after it.
    pub left: usize,
    /// Windows in the plan.
    pub planned: usize,
}

impl SourceSummary {
    /// Writes the finished run into its ledger entry `record`. A source that failed before
    /// its first page (a bad key, say) leaves no trace.
    pub async fn close(&self, lake: &Lake, mut record: RunRecord) {
        record.finished_at = Some(Utc::now());
        record.status = self.status;
        record.message = self.message.clone();
        record.pages = self.pages as i64;
        record.rows = self.rows as i64;
        record.retries = self.retries as i64;
        record.http_429 = self.http_429 as i64;
        record.restarts = self.restarts as i64;
        record.rejected_rows = self.rejected_rows as i64;
        record.type_mismatches = self.type_mismatches as i64;
        record.unknown_fields = self.unknown_fields as i64;
        record.credits_used = self.credits_used;
        record.credits_balance = self.credits_balance;
        record.files = self.files as i64;
        record.bytes = self.bytes as i64;
        record.delta_version = self.delta_version.map(|v| v as i64);
        if self.touched_lake()
            && let Err(e) = write_ledger(lake, &record).await
        {
            tracing::warn!(error = %e, "could not write the run ledger");
        }
    }

    /// A summary of `table` before anything happened.
    pub fn new(table: Table) -> SourceSummary {
        SourceSummary {
            source: table.name().to_string(),
            status: RunStatus::Running,
            message: None,
            pages: 0,
            rows: 0,
            recovered_rows: 0,
            files: 0,
            bytes: 0,
            delta_version: None,
            type_mismatches: 0,
            unknown_fields: 0,
            rejected_rows: 0,
            retries: 0,
            http_429: 0,
            restarts: 0,
            credits_used: None,
            credits_balance: None,
            seconds: 0.0,
            warnings: Vec::new(),
            windows: None,
            profiles: None,
        }
    }

    /// Whether this source wrote anything to the lake (pages, recovered pages, files).
    pub fn touched_lake(&self) -> bool {
        self.pages > 0 || self.recovered_rows > 0 || self.files > 0
    }
}
