//! `--dry-run`: what a run would fetch and cost, from the APIs' own totals where they give
//! them, without fetching the data.

use anyhow::Result;
use chrono::Utc;
use serde::Serialize;

use crate::checkpoint::{Checkpoint, Task};
use crate::source::Source;

/// What `--dry-run` says a run would fetch and cost.
#[derive(Debug, Serialize)]
pub struct Estimate {
    /// The table.
    pub source: String,
    /// `refresh` or `backfill`.
    pub command: String,
    /// Rows the API says the run would page through, where it says.
    pub rows: Option<u64>,
    /// Pages that takes.
    pub pages: Option<u64>,
    /// The most credits it can cost, where that can be known.
    pub credits_at_most: Option<u64>,
    /// Where the figures come from, in words.
    pub basis: String,
    /// A backfill's plan, as it would be shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl Estimate {
    /// One paragraph for a person.
    pub fn describe(&self) -> String {
        if let Some(plan) = &self.plan {
            return format!("{plan}  ({})", self.basis);
        }
        match self.rows {
            Some(rows) => format!(
                "{} {}: about {rows} rows in {} pages, at most {} credits ({})",
                self.source,
                self.command,
                self.pages.unwrap_or(0),
                self.credits_at_most.unwrap_or(rows),
                self.basis
            ),
            None => format!("{} {}: unknown ({})", self.source, self.command, self.basis),
        }
    }
}

/// What a run of `task` would fetch from `source`, from the API's own totals where it
/// gives them (one request of its smallest page), without fetching the data.
pub async fn estimate(
    source: &Source,
    checkpoint: &Checkpoint,
    task: &Task,
    ledger: &[joblake_writer::RunRecord],
) -> Result<Estimate> {
    let table = source.table;
    let page = u64::from(source.page_size());
    let probe = format!(
        "Sentrion's total_jobs_found, asked with one {}-row request that costs at most {} credits; \
         Sentrion charges only jobs new in the billing cycle, so the real cost is often lower",
        joblake_fetcher::SENTRION_LIMIT_RANGE.start(),
        joblake_fetcher::SENTRION_LIMIT_RANGE.start()
    );
    let mut est = Estimate {
        source: table.name().to_string(),
        command: task.command().to_string(),
        rows: None,
        pages: None,
        credits_at_most: None,
        basis: String::new(),
        plan: None,
    };
    match task {
        Task::Refresh { full, since } => {
            let scan = match &checkpoint.scan {
                Some(scan) if !full => scan.clone(),
                _ => source.new_scan(checkpoint, "dry-run", Utc::now(), *full, *since),
            };
            match source.count(&scan).await? {
                Some(total) => {
                    est.rows = Some(total);
                    est.pages = Some(total.div_ceil(page).max(1));
                    est.credits_at_most = Some(total);
                    est.basis = if checkpoint.scan.is_some() && !full {
                        format!("{probe}; the scan under way has fetched part of it already")
                    } else {
                        probe
                    };
                }
                None => {
                    let last = ledger.iter().rev().find(|r| {
                        r.source == table.name() && r.status == joblake_writer::RunStatus::Succeeded
                    });
                    est.basis = match (last, checkpoint.watermark) {
                        (Some(r), Some(_)) if !full => format!(
                            "Jobo's feed reports no totals, and every row returned is charged; \
                             the last finished run fetched {} rows",
                            r.rows
                        ),
                        _ => "Jobo's feed reports no totals, and every row returned is charged; \
                              this run pages the whole feed"
                            .to_string(),
                    };
                }
            }
        }
        Task::Backfill(range) => {
            let plan = crate::backfill::plan(source, range, "dry-run").await?;
            let known = plan.windows.iter().all(|w| w.expected_rows.is_some());
            if known {
                let rows: u64 = plan.windows.iter().filter_map(|w| w.expected_rows).sum();
                est.rows = Some(rows);
                est.pages = Some(
                    plan.windows
                        .iter()
                        .map(|w| w.expected_rows.unwrap_or(0).div_ceil(page))
                        .sum(),
                );
                est.credits_at_most = Some(rows);
                est.basis = format!("{probe}, once per window");
            } else {
                est.basis =
                    "Jobo's feed reports no totals, and every row returned is charged".to_string();
            }
            est.plan = Some(crate::backfill::describe(source, &plan));
        }
    }
    Ok(est)
}
