//! `joblake backfill`: a long range of history walked in windows, newest first.

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use joblake_schema::Table;
use joblake_sync::Task;
use joblake_sync::backfill::Range;

use crate::args::{Cli, SourceArg};
use crate::outcome::CmdResult;
use crate::run::{RunRequest, run};

/// The flags of `backfill`.
pub struct BackfillFlags {
    /// `--source`.
    pub source: SourceArg,
    /// `--since` (jobs).
    pub since: Option<NaiveDate>,
    /// `--until` (jobs).
    pub until: Option<NaiveDate>,
    /// `--discovered-after` (career sites).
    pub discovered_after: Option<DateTime<Utc>>,
    /// `--discovered-before` (career sites).
    pub discovered_before: Option<DateTime<Utc>>,
    /// `--max-pages`.
    pub max_pages: Option<u64>,
    /// `--min-credits`.
    pub min_credits: Option<f64>,
    /// `--dry-run`.
    pub dry_run: bool,
}

/// Runs `backfill`.
pub async fn backfill(cli: &Cli, f: BackfillFlags) -> CmdResult {
    let (table, range) = range_of(&f, Utc::now())?;
    let task = Task::Backfill(range);
    if f.dry_run {
        return crate::dry_run::estimate(cli, &[table], &task).await;
    }
    run(
        cli,
        RunRequest {
            tables: &[table],
            task,
            max_pages: f.max_pages,
            min_credits: f.min_credits,
            enrich: None,
        },
    )
    .await
}

/// The table and range the flags name, checked.
fn range_of(f: &BackfillFlags, now: DateTime<Utc>) -> anyhow::Result<(Table, Range)> {
    Ok(match f.source {
        SourceArg::Jobs => {
            if f.discovered_after.is_some() || f.discovered_before.is_some() {
                bail!(
                    "--discovered-after/--discovered-before are for --source career_sites; jobs take --since/--until"
                );
            }
            let since = f.since.context("--since is required for --source jobs")?;
            (Table::Jobs, Range::jobs(since, f.until, now.date_naive())?)
        }
        SourceArg::CareerSites => {
            if f.since.is_some() || f.until.is_some() {
                bail!(
                    "--since/--until are for --source jobs; career sites take --discovered-after/--discovered-before"
                );
            }
            let after = f
                .discovered_after
                .context("--discovered-after is required for --source career_sites")?;
            (
                Table::CareerSites,
                Range::career_sites(after, f.discovered_before, now)?,
            )
        }
    })
}
