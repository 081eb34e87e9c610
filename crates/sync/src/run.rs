//! One run of one table: open it (committing what a killed run left), work out where to
//! start, land the pages through the page loop, and write the run down in the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use joblake_fetcher::{ClientConfig, CompanyClient};
use joblake_schema::Table;
use joblake_writer::{Lake, LakeLock, RunRecord, RunStatus, crash_point};

use crate::checkpoint::{Checkpoint, ProfilesCheckpoint, Task};
use crate::open::{checkpoint, open_table};
use crate::page_loop::land;
use crate::profiles::ProfileFeed;
use crate::scan::ScanFeed;
use crate::source::Source;
use crate::summary::{SourceSummary, WindowCounts};

/// What every table of one run shares.
pub struct RunOptions {
    /// Stop each table after this many pages (it resumes next run).
    pub max_pages: Option<u64>,
    /// Stop before a table's credit balance could fall under this.
    pub min_credits: Option<f64>,
    /// The balance each table's API reported at the end of its last run.
    pub last_balance: BTreeMap<String, f64>,
    /// Set by Ctrl-C / SIGTERM: stop after the page in hand.
    pub stop: Arc<AtomicBool>,
    /// Progress lines, one per table (stderr is a terminal and not --quiet).
    pub progress: Option<MultiProgress>,
    /// The lake lock this run holds; confirmed before every commit.
    pub lock: Arc<LakeLock>,
    /// Where what the user should see as a run goes (a backfill's plan, before its first
    /// page) is said: stderr, or nowhere with `--quiet`.
    pub notice: fn(&str),
}

/// Runs `task` on `source` to the end of its scan (or to an error, a page limit, a credit
/// floor or a signal).
pub async fn run_source(
    lake: &Lake,
    run_id: &str,
    source: &Source,
    task: &Task,
    opts: &RunOptions,
) -> SourceSummary {
    let started = Instant::now();
    let mut record = RunRecord::new(run_id, source.table.name(), Utc::now());
    record.command = Some(task.command().to_string());
    let mut summary = SourceSummary::new(source.table);
    let ended = feed_source(lake, run_id, source, task, opts, &record, &mut summary).await;
    let stats = source.stats();
    summary.retries = stats.retries;
    summary.http_429 = stats.throttled;
    finish(lake, record, summary, ended, started).await
}

async fn finish(
    lake: &Lake,
    record: RunRecord,
    mut summary: SourceSummary,
    ended: Result<RunStatus>,
    started: Instant,
) -> SourceSummary {
    let (status, message) = match ended {
        Ok(status) => (status, summary.message.take()),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    summary.status = status;
    summary.message = message;
    summary.seconds = started.elapsed().as_secs_f64();
    crash_point("ledger:before-final");
    summary.close(lake, record).await;
    summary
}

async fn feed_source(
    lake: &Lake,
    run_id: &str,
    source: &Source,
    task: &Task,
    opts: &RunOptions,
    running: &RunRecord,
    summary: &mut SourceSummary,
) -> Result<RunStatus> {
    let table = source.table;
    let (mut writer, recovery, decode_stats) = open_table(lake, table, run_id, summary).await?;
    let mut committed: Checkpoint = checkpoint(&writer, table)?;
    let first = match task {
        Task::Refresh { full, since } => Some(match committed.scan.take() {
            Some(scan) if !full => {
                tracing::info!(source = %table, from_run = %scan.run_id, pages = scan.pages, "resuming the interrupted scan");
                scan
            }
            _ => source.new_scan(&committed, run_id, Utc::now(), *full, *since),
        }),
        Task::Backfill(range) => {
            let planned =
                crate::backfill::resume_or_plan(source, range, &mut committed, run_id, opts.notice)
                    .await?;
            if planned {
                // The plan is committed before its first page, so a crash never plans again.
                let value = serde_json::to_value(&committed).expect("checkpoints serialise");
                writer.commit(Some(value)).await?;
                crash_point("backfill:after-plan");
            }
            let bf = committed.backfill.as_ref();
            summary.windows = Some(WindowCounts {
                done: 0,
                left: bf.map_or(0, |b| b.windows.len()),
                planned: bf.map_or(0, |b| b.planned),
            });
            bf.and_then(|b| {
                b.scan
                    .clone()
                    .or_else(|| Some(source.window_scan(b.windows.first()?, run_id)))
            })
        }
    };
    let Some(first) = first else {
        summary.message = Some("nothing to backfill in that range".into());
        return Ok(RunStatus::Succeeded);
    };
    let mut feed = ScanFeed::new(source, task, run_id, committed, first, summary.windows);
    let ended = land(lake, run_id, writer, &mut feed, opts, running, summary).await;
    summary.restarts = feed.restarts();
    summary.windows = feed.windows();
    let totals = *decode_stats.lock().unwrap_or_else(|e| e.into_inner());
    summary.rows = totals.rows.saturating_sub(recovery.rows);
    summary.type_mismatches = totals.type_mismatches;
    summary.unknown_fields = totals.unknown_fields;
    summary.rejected_rows = totals.rejected;
    if let (Some(b), Some(warn)) = (summary.credits_balance, source.warn_below_credits())
        && b < warn
    {
        summary.warnings.push(format!(
            "{table}: the credit balance is low: {b} left (warn_below_credits = {warn})"
        ));
    }
    ended
}

/// What an enrichment run fetches, besides the ids its caller chooses.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// Jobo's client (pacing and retries as its feed's).
    pub client: ClientConfig,
    /// A 404 older than this is asked again.
    pub stale_after: chrono::Duration,
    /// Profiles asked for at once.
    pub concurrency: usize,
}

/// Fetches the company profiles `choose` picks (given the checkpoint's 404s, which it must
/// leave out) into the `companies` table.
pub async fn run_enrich(
    lake: &Lake,
    run_id: &str,
    profiles: ProfileOptions,
    choose: impl AsyncFnOnce(&ProfilesCheckpoint) -> Result<Vec<String>>,
    opts: &RunOptions,
) -> SourceSummary {
    let started = Instant::now();
    let table = Table::Companies;
    let mut record = RunRecord::new(run_id, table.name(), Utc::now());
    record.command = Some("enrich".into());
    let mut summary = SourceSummary::new(table);
    let ended = fetch_profiles(lake, run_id, profiles, choose, opts, &record, &mut summary).await;
    finish(lake, record, summary, ended, started).await
}

async fn fetch_profiles(
    lake: &Lake,
    run_id: &str,
    profiles: ProfileOptions,
    choose: impl AsyncFnOnce(&ProfilesCheckpoint) -> Result<Vec<String>>,
    opts: &RunOptions,
    running: &RunRecord,
    summary: &mut SourceSummary,
) -> Result<RunStatus> {
    let table = Table::Companies;
    let (writer, recovery, decode_stats) = open_table(lake, table, run_id, summary).await?;
    let mut committed: ProfilesCheckpoint = checkpoint(&writer, table)?;
    let dirty = committed.forget_before((Utc::now() - profiles.stale_after).date_naive());
    let ids = choose(&committed).await?;
    tracing::info!(companies = ids.len(), "company profiles to fetch");
    let client = CompanyClient::new(profiles.client)?;
    let mut feed = ProfileFeed::new(&client, ids, profiles.concurrency, committed, dirty);
    let ended = land(lake, run_id, writer, &mut feed, opts, running, summary).await;
    summary.profiles = Some(feed.counts());
    let totals = *decode_stats.lock().unwrap_or_else(|e| e.into_inner());
    summary.rows = totals.rows.saturating_sub(recovery.rows);
    summary.type_mismatches = totals.type_mismatches;
    summary.unknown_fields = totals.unknown_fields;
    summary.rejected_rows = totals.rejected;
    let fetched = client.stats().snapshot();
    summary.retries = fetched.retries;
    summary.http_429 = fetched.throttled;
    ended
}

/// A table's progress line under `multi`, or a hidden one.
pub(crate) fn progress_bar(multi: Option<&MultiProgress>, table: Table) -> ProgressBar {
    let Some(multi) = multi else {
        return ProgressBar::hidden();
    };
    let bar = multi.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix}: {msg} [{elapsed}]")
            .expect("valid template"),
    );
    bar.set_prefix(table.name());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
