//! `joblake refresh`: what is new from every feed with a key, committed, then the views.

use chrono::NaiveDate;
use joblake_sync::Task;

use crate::args::{Cli, SourceArg};
use crate::config::EnrichFlags;
use crate::outcome::CmdResult;
use crate::run::{RunRequest, run};

/// The flags of `refresh`.
pub struct RefreshFlags<'a> {
    /// `--source`.
    pub source: &'a [SourceArg],
    /// `--full`.
    pub full: bool,
    /// `--max-pages`.
    pub max_pages: Option<u64>,
    /// `--since`.
    pub since: Option<NaiveDate>,
    /// `--min-credits`.
    pub min_credits: Option<f64>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--enrich`.
    pub enrich: bool,
}

/// Runs `refresh`.
pub async fn refresh(cli: &Cli, flags: RefreshFlags<'_>) -> CmdResult {
    let tables = SourceArg::tables(flags.source);
    let today = chrono::Utc::now().date_naive();
    if let Some(since) = flags.since
        && since > today
    {
        return Err(anyhow::anyhow!(
            "--since {since} is in the future (today is {today}): no job is published yet"
        )
        .into());
    }
    let task = Task::Refresh {
        full: flags.full,
        since: flags.since,
    };
    if flags.dry_run {
        return crate::dry_run::estimate(cli, &tables, &task).await;
    }
    run(
        cli,
        RunRequest {
            tables: &tables,
            task,
            max_pages: flags.max_pages,
            min_credits: flags.min_credits,
            enrich: flags.enrich.then(EnrichFlags::default),
        },
    )
    .await
}
