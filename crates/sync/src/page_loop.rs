//! The one page loop every command that fetches runs: fetch → stage → append → commit or
//! abort → discard the staging. A [`Feed`] says what to fetch next (a feed's scan, a list of
//! company profiles); the loop lands it.
//!
//! The promises it keeps, whatever the feed:
//! - a page is staged (made durable, raw, with the checkpoint that follows it) before the
//!   next is asked for, so a crash costs at most the page in flight;
//! - decoding and Parquet run beside the fetching, in a worker that owns the writer, which
//!   takes staged pages a few at a time, with a budget of queued bytes as the backpressure;
//! - at the end, what was fetched is committed with the checkpoint that covers it, unless a
//!   write failed: then the open files are given up and the staged pages stay for the next
//!   run to commit, so a checkpoint never covers rows that are not in a readable file;
//! - the staging is dropped only once a commit covers every page staged.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use chrono::Utc;
use joblake_fetcher::Credits;
use joblake_schema::{RawRows, Table};
use joblake_writer::{Lake, RawPage, RunRecord, RunStatus, TableWriter, crash_point, write_ledger};
use serde_json::Value;

use crate::run::RunOptions;
use crate::summary::SourceSummary;

/// Pages the fetch loop hands the writer in one go. Handing over a page wakes the writer's
/// task and then an encoder thread, each competing for a core with the fetch loop right
/// when it asks for the next page; on two cores with the API's end on the same machine,
/// handing over one page at a time kept the fetch loop waiting for a core about 0.2 ms a
/// page. Four at a time: 4 % less time for a first refresh of 395,000 jobs (BENCHMARKS.md,
/// "A page's rows as spans of its body, and fewer wake-ups per page").
const QUEUED_PAGES: usize = 4;

/// Bytes of raw pages the fetch loop may be ahead of the writer: the backpressure between
/// them. Enough for the pages fetched while the writer flushes a row group (~0.1 s at full
/// speed), so the fetch loop does not wait on it; a page larger than this goes alone.
const QUEUED_BYTES: usize = 8 << 20;

/// A staged page on its way to the writer: its rows, its checkpoint, and its share of
/// [`QUEUED_BYTES`].
type Queued = (RawPage, Value, tokio::sync::OwnedSemaphorePermit);

/// One page a feed fetched.
pub struct FeedPage {
    /// Its rows, exactly as the API sent them.
    pub rows: RawRows,
    /// The feed's checkpoint once this page is in.
    pub checkpoint: Value,
    /// What the page cost and the balance left, where the API says.
    pub credits: Credits,
}

/// What to fetch next. The loop asks for one page at a time and stops asking at a signal,
/// a page limit or a credit floor.
pub trait Feed {
    /// The table the pages go to.
    fn table(&self) -> Table;

    /// The next page, `None` once the feed is done. An error ends the run (after what was
    /// fetched is committed).
    fn next_page(&mut self) -> impl Future<Output = Option<Result<FeedPage>>>;

    /// The most the next page can cost, in credits, where that can be told.
    fn next_cost(&self) -> Option<f64> {
        None
    }

    /// A checkpoint that moved since the last page given without rows of its own (a 404
    /// remembered, say): staged on a page of its own when the loop stops early.
    fn unstaged_checkpoint(&mut self) -> Option<Value> {
        None
    }

    /// Where the feed is, for the progress line.
    fn progress(&self) -> String {
        String::new()
    }
}

/// The error a run that lost the lake's S3 lease ends with.
fn lease_lost(table: Table) -> anyhow::Error {
    anyhow::anyhow!(
        "{table}: this run lost the lake's S3 lease (it could not renew it, or another run \
         took the lake over), so it stopped fetching; the pages it fetched stay staged for \
         the lake's next run to commit"
    )
}

/// Resolves once `stop` is set (Ctrl-C, SIGTERM), looking ten times a second.
async fn stop_requested(stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Lands `feed`'s pages in `writer`'s table until the feed ends, an error, a page limit, a
/// credit floor or a signal; returns how the run ended (an error when it failed) and keeps
/// `summary`'s counts.
pub async fn land(
    lake: &Lake,
    run_id: &str,
    writer: TableWriter,
    feed: &mut impl Feed,
    opts: &RunOptions,
    running: &RunRecord,
    summary: &mut SourceSummary,
) -> Result<RunStatus> {
    let table = feed.table();
    let progress = crate::run::progress_bar(opts.progress.as_ref(), table);
    let mut stager = writer.stager();
    let queue = Arc::new(tokio::sync::Semaphore::new(QUEUED_BYTES));
    let (to_worker, mut from_fetcher) = tokio::sync::mpsc::unbounded_channel::<Vec<Queued>>();
    // Staged pages not handed to the writer yet.
    let mut batch: Vec<Queued> = Vec::with_capacity(QUEUED_PAGES);
    let hand_over = |batch: &mut Vec<Queued>| {
        // The worker only stops on an error, which joining it reports.
        to_worker
            .send(std::mem::take(batch))
            .map_err(|_| anyhow::anyhow!("{table}: the writer stopped"))
    };
    let mut writer = writer;
    let worker = tokio::spawn(async move {
        let mut result: joblake_writer::Result<()> = Ok(());
        // Each batch goes to the writer in one go; its bytes are let go once written.
        while let Some(queued) = from_fetcher.recv().await {
            let (pages, permits): (Vec<_>, Vec<_>) = queued
                .into_iter()
                .map(|(raw, value, permit)| ((raw, value), permit))
                .unzip();
            if let Err(e) = writer.append_pages(pages).await {
                result = Err(e);
                break;
            }
            drop(permits);
        }
        (writer, result)
    });

    let mut page_no: i64 = 0;
    let mut used = 0.0;
    let mut any_used = false;
    let mut balance = opts.last_balance.get(table.name()).copied();
    // Stages a page and hands it to the worker; an error ends the loop.
    let mut take =
        async |rows: RawRows, checkpoint: Value, summary: &mut SourceSummary| -> Result<u64> {
            page_no += 1;
            let raw = RawPage {
                run_id: run_id.to_string(),
                page: page_no,
                fetched_at: Utc::now(),
                rows,
            };
            if summary.pages == 0 {
                // From here on a crash leaves staged pages: say in the ledger that a run is on.
                if let Err(e) = write_ledger(lake, running).await {
                    tracing::warn!(error = %e, "could not write the run ledger");
                }
                crash_point("ledger:after-running");
            }
            crash_point("fetch:after-page");
            stager
                .stage(&raw, &checkpoint)
                .await
                .with_context(|| format!("{table}: cannot write page {page_no} to the lake"))?;
            crash_point("stage:after");
            summary.pages += 1;
            let rows = raw.rows.len() as u64;
            let bytes = raw.rows.text_len();
            let wanted = u32::try_from(bytes.min(QUEUED_BYTES)).unwrap_or(u32::MAX);
            let permit = match Arc::clone(&queue).try_acquire_many_owned(wanted) {
                Ok(permit) => permit,
                Err(_) => {
                    // The writer is behind: the pages this loop holds go first, or their bytes
                    // could be the ones waited for.
                    if !batch.is_empty() {
                        hand_over(&mut batch)?;
                    }
                    Arc::clone(&queue)
                        .acquire_many_owned(wanted)
                        .await
                        .expect("the queue's semaphore is never closed")
                }
            };
            batch.push((raw, checkpoint, permit));
            if batch.len() >= QUEUED_PAGES {
                hand_over(&mut batch)?;
            }
            Ok(rows)
        };
    let mut fetched_rows = 0u64;

    let outcome: Result<RunStatus> = loop {
        if opts.stop.load(Ordering::SeqCst) {
            summary.message =
                Some("interrupted; the next run resumes where this one stopped".into());
            break Ok(RunStatus::Interrupted);
        }
        if opts.lock.is_lost() {
            break Err(lease_lost(table));
        }
        if opts.max_pages.is_some_and(|m| summary.pages >= m) {
            summary.message = Some("stopped at --max-pages; the next run resumes here".into());
            break Ok(RunStatus::Interrupted);
        }
        if let (Some(min), Some(b), Some(next_cost)) = (opts.min_credits, balance, feed.next_cost())
            && b - next_cost < min
        {
            summary.message = Some(format!(
                "stopped before the credit balance ({b}) could fall under --min-credits {min} \
                 (the next page may cost up to {next_cost}); what was fetched is committed \
                 and the next run resumes here"
            ));
            break Ok(RunStatus::Interrupted);
        }
        // A signal ends any wait for the next page (a pacing pause, a backoff, a slow server)
        // at once: what was fetched is committed below, and at most the page in flight is
        // asked for again by the next run.
        // A run that lost the lake (its S3 lease taken over) stops paying for pages at once;
        // the run that took the lake commits what this one staged.
        let page = tokio::select! {
            biased;
            page = feed.next_page() => page,
            () = stop_requested(&opts.stop) => {
                summary.message =
                    Some("interrupted; the next run resumes where this one stopped".into());
                break Ok(RunStatus::Interrupted);
            }
            () = opts.lock.lost() => break Err(lease_lost(table)),
        };
        let page = match page {
            None => break Ok(RunStatus::Succeeded),
            Some(Err(e)) => break Err(e),
            Some(Ok(page)) => page,
        };
        match take(page.rows, page.checkpoint, summary).await {
            Ok(rows) => fetched_rows += rows,
            Err(e) => break Err(e),
        }
        if let Some(u) = page.credits.used {
            used += u;
            any_used = true;
        }
        if page.credits.balance.is_some() {
            summary.credits_balance = page.credits.balance;
            balance = page.credits.balance;
        }
        progress.set_message(format!(
            "{} pages, {fetched_rows} rows{}{}",
            summary.pages,
            feed.progress(),
            summary
                .credits_balance
                .map(|b| format!(", credits left {b}"))
                .unwrap_or_default()
        ));
    };
    // A checkpoint that moved without a page of its own still goes in with what was fetched.
    let outcome = match (outcome, feed.unstaged_checkpoint()) {
        (outcome, None) => outcome,
        (outcome, Some(checkpoint)) => match take(RawRows::default(), checkpoint, summary).await {
            Ok(_) => outcome,
            Err(e) => Err(match outcome {
                Err(first) => first.context(format!("{e:#}")),
                Ok(_) => e,
            }),
        },
    };
    // The last pages staged go to the writer whatever the outcome; if it stopped, joining it
    // says why.
    if !batch.is_empty() && hand_over(&mut batch).is_err() {
        tracing::debug!(source = %table, "the writer stopped before the last pages");
    }
    drop(to_worker);
    progress.finish_and_clear();
    summary.credits_used = any_used.then_some(used);
    let (mut writer, appended) = worker.await.context("the writer task failed")?;
    if let Err(e) = appended {
        // Files that may lack pages the checkpoint would cover are given up; the staged
        // pages stay for the next run to commit (it cannot, say, while the disk is still
        // full, and then says so).
        writer.abort().await;
        let e = anyhow::Error::new(e).context(format!(
            "{table}: cannot write the fetched pages; what was written since the last commit \
             is given up, and the pages stay staged for the next run to commit"
        ));
        return Err(match outcome {
            Err(first) => first.context(format!("{e:#}")),
            Ok(_) => e,
        });
    }
    // Otherwise what was fetched is published with the checkpoint that covers it. An S3
    // lease can run out under a hung run; then another run owns the lake and this one must
    // not commit over it (its staged pages stay for that run to commit).
    // (The commit confirms the lease first.)
    let committed = writer.commit(None).await;
    match committed {
        Ok(report) => {
            summary.files += report.files.len() as u64;
            summary.bytes += report.files.iter().map(|f| f.bytes).sum::<u64>();
            summary.delta_version = writer.delta_version().or(summary.delta_version);
            crash_point("run:after-commit");
            // Every page this run staged is committed now.
            if let Err(e) = stager.discard().await {
                tracing::warn!(source = %table, error = %e, "could not remove the staged pages; the next run does");
            }
            outcome
        }
        Err(e) => {
            writer.abort().await;
            let e = anyhow::Error::new(e).context(format!(
                "{table}: cannot commit the fetched pages (they stay staged and the next run commits them)"
            ));
            Err(match outcome {
                Err(first) => first.context(format!("{e:#}")),
                Ok(_) => e,
            })
        }
    }
}
