//! One run of one source, page by page, each page committed with its cursor before the next
//! is asked for: a refresh (what is new since the watermark) or a backfill (a range walked in
//! windows, newest first).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use joblake_schema::{DecodeStats, PageContext, Table, arrow_schema, decode_page};
use joblake_writer::{
    Decoded, Decoder, Lake, LakeLock, RawPage, Recovery, RunRecord, RunStatus, TableWriter,
    WriterOptions, write_ledger,
};
use serde::Serialize;

use crate::backfill;
use crate::source::{Scan, Source, SourceState};

/// How many dead-cursor restarts one run allows per source before it gives up: enough for
/// the one restart a dead cursor calls for, never a loop.
const MAX_RESTARTS: u32 = 2;

/// What a run does with a source.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Fetch what is new since the watermark, or finish the interrupted scan.
    Refresh {
        /// Ignore the watermark and scan everything again.
        full: bool,
        /// Jobs: first-run window start instead of the API's two-month default.
        since: Option<NaiveDate>,
    },
    /// Walk `[from, to)` in windows, newest first (or resume that walk).
    Backfill(backfill::Range),
}

impl Task {
    /// The word the ledger and the summary use.
    pub fn command(&self) -> &'static str {
        match self {
            Task::Refresh { .. } => "refresh",
            Task::Backfill(_) => "backfill",
        }
    }

    /// The state once `scan` has taken one more page (`done`: its last).
    fn record(&self, state: &mut SourceState, scan: &Scan, done: bool) {
        match self {
            Task::Refresh { .. } => {
                if done {
                    state.watermark = Some(scan.started_at);
                    state.scan = None;
                } else {
                    state.scan = Some(scan.clone());
                }
            }
            Task::Backfill(_) => {
                let Some(bf) = state.backfill.as_mut() else {
                    return;
                };
                if done {
                    bf.windows.remove(0);
                    bf.scan = None;
                    if bf.windows.is_empty() {
                        state.backfill = None;
                    }
                } else {
                    bf.scan = Some(scan.clone());
                }
            }
        }
    }

    /// The scan that follows a finished one, if the task goes on.
    fn next_scan(&self, state: &SourceState, source: &Source, run_id: &str) -> Option<Scan> {
        match self {
            Task::Refresh { .. } => None,
            Task::Backfill(_) => {
                let bf = state.backfill.as_ref()?;
                Some(source.window_scan(bf.windows.first()?, run_id))
            }
        }
    }
}

/// Options of one run.
pub struct RefreshOptions {
    /// What to do.
    pub task: Task,
    /// Stop each source after this many pages (it resumes next run).
    pub max_pages: Option<u64>,
    /// Stop before a source's credit balance could fall under this.
    pub min_credits: Option<f64>,
    /// The balance each source reported at the end of its last run, per table.
    pub last_balance: std::collections::BTreeMap<String, f64>,
    /// Set by Ctrl-C / SIGTERM: stop after the page in hand.
    pub stop: Arc<AtomicBool>,
    /// Progress lines, one per source (stderr is a terminal and not --quiet).
    pub progress: Option<MultiProgress>,
    /// The lake lock this run holds; confirmed before every commit.
    pub lock: Arc<LakeLock>,
}

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

/// Runs one source to the end of its scan (or to an error, a page limit or a signal).
pub async fn run_source(
    lake: &Lake,
    run_id: &str,
    source: &Source,
    opts: &RefreshOptions,
) -> SourceSummary {
    let started = Instant::now();
    let mut record = RunRecord::new(run_id, source.table.name(), Utc::now());
    record.command = Some(opts.task.command().to_string());
    let mut summary = SourceSummary::new(source.table);
    let (status, message) = match scan(lake, run_id, source, opts, &record, &mut summary).await {
        Ok(status) => (status, None),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    let stats = source.stats();
    summary.status = status;
    summary.message = message.or(summary.message.take());
    summary.retries = stats.retries;
    summary.http_429 = stats.throttled;
    summary.seconds = started.elapsed().as_secs_f64();
    joblake_writer::crash_point("ledger:before-final");
    summary.close(lake, record).await;
    summary
}

impl SourceSummary {
    /// Writes the finished run into its ledger entry `record`. A source that failed before
    /// its first page (a bad key, say) leaves no trace.
    pub(crate) async fn close(&self, lake: &Lake, mut record: RunRecord) {
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

/// Pages the writer takes in one go when the fetch loop is ahead of it.
const QUEUED_PAGES: usize = 4;

/// Bytes of raw pages the fetch loop may be ahead of the writer: the backpressure between
/// them. Enough for the pages fetched while the writer flushes a row group (~0.1 s at full
/// speed), so the fetch loop does not wait on it; a page larger than this goes alone.
const QUEUED_BYTES: usize = 8 << 20;

async fn scan(
    lake: &Lake,
    run_id: &str,
    source: &Source,
    opts: &RefreshOptions,
    running: &RunRecord,
    summary: &mut SourceSummary,
) -> Result<RunStatus> {
    let table = source.table;
    let (mut writer, recovery, decode_stats) = open_table(lake, table, run_id, summary).await?;
    let mut state: SourceState = checkpoint(&writer, table)?;
    let first = match &opts.task {
        Task::Refresh { full, since } => Some(match state.scan.take() {
            Some(scan) if !full => {
                tracing::info!(source = %table, from_run = %scan.run_id, pages = scan.pages, "resuming the interrupted scan");
                scan
            }
            _ => source.new_scan(&state, run_id, *full, *since),
        }),
        Task::Backfill(range) => {
            let planned = backfill::resume_or_plan(source, range, &mut state, run_id).await?;
            if planned {
                // The plan is committed before its first page, so a crash never plans again.
                let value = serde_json::to_value(&state).expect("state serialises");
                opts.lock.confirm(lake).await?;
                writer.commit(Some(value)).await?;
                joblake_writer::crash_point("backfill:after-plan");
            }
            let bf = state.backfill.as_ref();
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
    let Some(mut current) = first else {
        summary.message = Some("nothing to backfill in that range".into());
        return Ok(RunStatus::Succeeded);
    };
    let progress = progress_bar(opts.progress.as_ref(), table);
    // The fetch loop only makes each page durable (raw, with its checkpoint) before asking
    // for the next; decoding and Parquet run beside it in a worker that owns the writer, so a
    // crash still costs at most the page in flight. A budget of queued bytes is the backpressure.
    let mut stager = writer.stager();
    let queue = Arc::new(tokio::sync::Semaphore::new(QUEUED_BYTES));
    let (to_worker, mut from_fetcher) = tokio::sync::mpsc::unbounded_channel::<(
        RawPage,
        serde_json::Value,
        tokio::sync::OwnedSemaphorePermit,
    )>();
    let worker = tokio::spawn(async move {
        let mut result: joblake_writer::Result<()> = Ok(());
        // What queued up while the last pages were written goes over in one go (a few at a
        // time); their bytes are let go once written.
        let mut queued = Vec::with_capacity(QUEUED_PAGES);
        while from_fetcher.recv_many(&mut queued, QUEUED_PAGES).await > 0 {
            let (pages, permits): (Vec<_>, Vec<_>) = std::mem::take(&mut queued)
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
    let mut pages = source.pages(&current);
    let mut page_no: i64 = 0;
    let mut fetched_rows = 0u64;
    let mut restarts = 0u32;
    let mut scan_restarts = 0u32;
    let mut used = 0.0;
    let mut any_used = false;
    let mut balance = opts.last_balance.get(table.name()).copied();
    let mut cost_per_row = 1.0;
    let outcome: Result<RunStatus> = loop {
        if opts.stop.load(Ordering::SeqCst) {
            summary.message =
                Some("interrupted; the next run resumes where this one stopped".into());
            break Ok(RunStatus::Interrupted);
        }
        if opts.max_pages.is_some_and(|m| summary.pages >= m) {
            summary.message = Some("stopped at --max-pages; the next run resumes here".into());
            break Ok(RunStatus::Interrupted);
        }
        let next_cost = f64::from(source.page_size()) * cost_per_row;
        if let (Some(min), Some(b)) = (opts.min_credits, balance)
            && b - next_cost < min
        {
            summary.message = Some(format!(
                "stopped before the credit balance ({b}) could fall under --min-credits {min} \
                 (the next page may cost up to {next_cost}); what was fetched is committed \
                 and the next run resumes here"
            ));
            break Ok(RunStatus::Interrupted);
        }
        let page = match pages.next().await {
            Some(Ok(page)) => page,
            Some(Err(e))
                if e.is_dead_cursor()
                    && current.cursor.is_some()
                    && scan_restarts < MAX_RESTARTS =>
            {
                restarts += 1;
                scan_restarts += 1;
                current.restarts += 1;
                current.cursor = None;
                tracing::warn!(source = %table, error = %e, "the cursor died; restarting the scan from the committed watermark");
                pages = source.pages(&current);
                continue;
            }
            Some(Err(e)) => break Err(anyhow::Error::new(e)),
            None => {
                break Err(anyhow::anyhow!(
                    "{table}: the page stream ended before the last page"
                ));
            }
        };
        page_no += 1;
        let row_count = page.rows.len() as u64;
        let raw = RawPage {
            run_id: run_id.to_string(),
            page: page_no,
            fetched_at: Utc::now(),
            rows: page.rows,
        };
        let repeated =
            page.has_more && page.next_cursor.is_some() && page.next_cursor == current.cursor;
        let scan_done = !page.has_more;
        current.cursor = page.next_cursor.clone();
        current.pages += 1;
        opts.task.record(&mut state, &current, scan_done);
        let value = serde_json::to_value(&state).expect("state serialises");
        if summary.pages == 0 {
            // From here on a crash leaves staged pages: say in the ledger that a run is on.
            if let Err(e) = write_ledger(lake, running).await {
                tracing::warn!(error = %e, "could not write the run ledger");
            }
            joblake_writer::crash_point("ledger:after-running");
        }
        joblake_writer::crash_point("fetch:after-page");
        if let Err(e) = stager.stage(&raw, &value).await {
            break Err(anyhow::Error::new(e)
                .context(format!("{table}: cannot write page {page_no} to the lake")));
        }
        joblake_writer::crash_point("stage:after");
        summary.pages += 1;
        fetched_rows += row_count;
        let bytes: usize = raw.rows.iter().map(|r| r.get().len()).sum();
        let permit = Arc::clone(&queue)
            .acquire_many_owned(u32::try_from(bytes.min(QUEUED_BYTES)).unwrap_or(u32::MAX))
            .await
            .expect("the queue's semaphore is never closed");
        if to_worker.send((raw, value, permit)).is_err() {
            // The worker stopped on an error, which joining it reports.
            break Err(anyhow::anyhow!("{table}: the writer stopped"));
        }
        if let Some(u) = page.credits.used {
            used += u;
            any_used = true;
            if row_count > 0 {
                cost_per_row = u / row_count as f64;
            }
        }
        if page.credits.balance.is_some() {
            summary.credits_balance = page.credits.balance;
            balance = page.credits.balance;
        }
        progress.set_message(format!(
            "{} pages, {} rows{}{}",
            summary.pages,
            fetched_rows,
            summary
                .windows
                .map(|w| format!(", window {} of {}", w.planned - w.left + 1, w.planned))
                .unwrap_or_default(),
            summary
                .credits_balance
                .map(|b| format!(", credits left {b}"))
                .unwrap_or_default()
        ));
        if repeated {
            break Err(anyhow::anyhow!(
                "{table}: the API returned the same cursor twice; stopping rather than looping \
                 (what was fetched is committed)"
            ));
        }
        if scan_done {
            if let Some(w) = summary.windows.as_mut() {
                w.done += 1;
                w.left = w.left.saturating_sub(1);
            }
            match opts.task.next_scan(&state, source, run_id) {
                Some(next) => {
                    current = next;
                    pages = source.pages(&current);
                    scan_restarts = 0;
                }
                None => break Ok(RunStatus::Succeeded),
            }
        }
    };
    drop(to_worker);
    let (mut writer, appended) = worker.await.context("the writer task failed")?;
    let write_failed = appended.is_err();
    let outcome = match (outcome, appended) {
        (outcome, Ok(())) => outcome,
        (Ok(_), Err(e)) => {
            Err(anyhow::Error::new(e).context(format!("{table}: cannot write the fetched pages")))
        }
        (Err(first), Err(e)) => Err(anyhow::Error::new(e).context(format!("{first:#}"))),
    };
    let totals = *decode_stats.lock().unwrap_or_else(|e| e.into_inner());
    summary.rows = totals.rows.saturating_sub(recovery.rows);
    if let (Some(b), Some(warn)) = (summary.credits_balance, source.warn_below_credits())
        && b < warn
    {
        summary.warnings.push(format!(
            "{table}: the credit balance is low: {b} left (warn_below_credits = {warn})"
        ));
    }
    progress.finish_and_clear();
    summary.restarts = restarts;
    summary.type_mismatches = totals.type_mismatches;
    summary.unknown_fields = totals.unknown_fields;
    summary.rejected_rows = totals.rejected;
    summary.credits_used = any_used.then_some(used);
    // A write that failed leaves files that may lack pages the checkpoint would cover: they
    // are given up, and the staged pages stay for the next run to commit (it cannot, say, if
    // the disk is still full, and then says so).
    if write_failed {
        writer.abort().await;
        // `outcome` holds the write's error.
        return outcome.context(
            "what was written since the last commit is given up; the fetched pages stay \
             staged and the next run commits them",
        );
    }
    // Otherwise, publish what was fetched with the checkpoint that covers it.
    // An S3 lease can run out under a hung run; then another run owns the lake and this
    // one must not commit over it (its staged pages stay for that run to recover).
    let committed = async {
        opts.lock.confirm(lake).await?;
        writer.commit(None).await
    }
    .await;
    match committed {
        Ok(report) => {
            summary.files += report.files.len() as u64;
            summary.bytes += report.files.iter().map(|f| f.bytes).sum::<u64>();
            joblake_writer::crash_point("run:after-commit");
            // Every page this run staged is committed now.
            if let Err(e) = stager.discard().await {
                tracing::warn!(source = %table, error = %e, "could not remove the staged pages; the next run does");
            }
        }
        Err(e) => {
            writer.abort().await;
            let err = anyhow::Error::new(e).context(format!(
                "{table}: cannot commit the fetched pages (they stay staged and the next run commits them)"
            ));
            return Err(match outcome {
                Err(first) => first.context(format!("{err:#}")),
                Ok(_) => err,
            });
        }
    }
    outcome
}

/// Opens `table` for this run, first committing what a killed run staged (counted in
/// `summary`); returns the writer, what it recovered and the decode counters of its pages.
pub(crate) async fn open_table(
    lake: &Lake,
    table: Table,
    run_id: &str,
    summary: &mut SourceSummary,
) -> Result<(TableWriter, Recovery, Arc<std::sync::Mutex<DecodeStats>>)> {
    let stats = Arc::new(std::sync::Mutex::new(DecodeStats::default()));
    let (writer, recovery) = TableWriter::open(
        lake,
        table.name(),
        arrow_schema(table),
        run_id,
        WriterOptions::default(),
        decoder(table, Arc::clone(&stats)),
    )
    .await
    .with_context(|| format!("{table}: cannot open the table"))?;
    if recovery.pages > 0 {
        tracing::info!(
            source = %table, pages = recovery.pages, rows = recovery.rows,
            "committed pages an interrupted run had fetched"
        );
    }
    summary.recovered_rows = recovery.rows;
    summary.files += recovery.files.len() as u64;
    summary.bytes += recovery.files.iter().map(|f| f.bytes).sum::<u64>();
    Ok((writer, recovery, stats))
}

/// The checkpoint of the table's last commit, as its source keeps it (its default before the
/// first commit).
pub(crate) fn checkpoint<S: serde::de::DeserializeOwned + Default>(
    writer: &TableWriter,
    table: Table,
) -> Result<S> {
    match writer.state() {
        Some(v) => serde_json::from_value(v.clone())
            .with_context(|| format!("{table}: the checkpoint in the state file is not readable")),
        None => Ok(S::default()),
    }
}

/// The schema's decoding of `table`'s pages, as the writer takes it: rows that cannot load
/// become JSON lines with their reason (kept under `_joblake/rejects/`), and every page's
/// counts add up in `stats`.
fn decoder(table: Table, stats: Arc<std::sync::Mutex<DecodeStats>>) -> Decoder {
    Arc::new(move |raw: &RawPage| {
        let ctx = PageContext {
            run_id: raw.run_id.clone(),
            fetched_at: raw.fetched_at,
            page: raw.page,
        };
        let decoded = decode_page(table, &raw.rows, &ctx).map_err(|e| e.to_string())?;
        stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&decoded.stats);
        let rejects = (!decoded.rejected.is_empty()).then(|| {
            tracing::warn!(source = %table, page = raw.page, rows = decoded.rejected.len(), "rows rejected; see _joblake/rejects/");
            let mut text = String::new();
            for r in &decoded.rejected {
                let line = serde_json::json!({"page": raw.page, "row": r.row, "reason": r.reason, "raw": r.raw});
                text.push_str(&line.to_string());
                text.push('\n');
            }
            bytes::Bytes::from(text)
        });
        Ok(Decoded {
            batch: decoded.batch,
            rejects,
        })
    })
}

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
