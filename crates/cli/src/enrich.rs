//! `joblake enrich companies`: the full profiles of the career sites an SQL predicate
//! chooses, into the `companies` table, through the same page loop as the feeds.

use joblake_sync::Task;

use crate::args::{Cli, EnrichArgs};
use crate::config::EnrichFlags;
use crate::outcome::CmdResult;
use crate::run::{RunRequest, run};

/// Runs `enrich companies` (`--dry-run`: says which it would fetch).
pub async fn enrich(cli: &Cli, args: &EnrichArgs, dry_run: bool) -> CmdResult {
    let flags = EnrichFlags {
        predicate: args.predicate.as_deref(),
        stale_after: args.stale_after.as_deref(),
        limit: args.limit,
        concurrency: args.concurrency,
    };
    if dry_run {
        return crate::dry_run::enrich_plan(cli, flags).await;
    }
    run(
        cli,
        RunRequest {
            tables: &[],
            task: Task::Refresh {
                full: false,
                since: None,
            },
            max_pages: None,
            min_credits: None,
            enrich: Some(flags),
        },
    )
    .await
}
