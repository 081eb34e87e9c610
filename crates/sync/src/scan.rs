//! A feed's scan as the page loop takes it: refresh (what is new since the watermark) or
//! backfill (a range in windows, newest first), with dead-cursor restarts and the checkpoint
//! each page leaves.

use anyhow::Result;
use futures::StreamExt;
use futures::stream::BoxStream;
use joblake_fetcher::{FetchError, Page};
use joblake_schema::Table;

use crate::checkpoint::{Checkpoint, Scan, Task};
use crate::page_loop::{Feed, FeedPage};
use crate::source::Source;
use crate::summary::WindowCounts;

/// How many dead-cursor restarts one scan allows before it gives up: enough for the one
/// restart a dead cursor calls for, never a loop.
const MAX_RESTARTS: u32 = 2;

/// The pages of `task` from `source`, from the scan under way on.
pub struct ScanFeed<'a> {
    source: &'a Source,
    task: &'a Task,
    run_id: String,
    checkpoint: Checkpoint,
    current: Scan,
    pages: BoxStream<'a, Result<Page, FetchError>>,
    /// Dead-cursor restarts this run, and of the current scan.
    restarts: u32,
    scan_restarts: u32,
    /// Credits a row cost on the last page that said.
    cost_per_row: f64,
    windows: Option<WindowCounts>,
    /// An error found on the page just given, reported when the next is asked for (so
    /// that page is committed first).
    failed: Option<anyhow::Error>,
    done: bool,
}

impl<'a> ScanFeed<'a> {
    /// Starts at `first` (a resumed or new scan) with `checkpoint` as committed; `windows`
    /// counts a backfill's.
    pub fn new(
        source: &'a Source,
        task: &'a Task,
        run_id: &str,
        checkpoint: Checkpoint,
        first: Scan,
        windows: Option<WindowCounts>,
    ) -> ScanFeed<'a> {
        ScanFeed {
            pages: source.pages(&first),
            source,
            task,
            run_id: run_id.to_string(),
            checkpoint,
            current: first,
            restarts: 0,
            scan_restarts: 0,
            cost_per_row: 1.0,
            windows,
            failed: None,
            done: false,
        }
    }

    /// Dead-cursor restarts this run.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// A backfill's windows: planned, finished this run, left.
    pub fn windows(&self) -> Option<WindowCounts> {
        self.windows
    }
}

impl Feed for ScanFeed<'_> {
    fn table(&self) -> Table {
        self.source.table
    }

    async fn next_page(&mut self) -> Option<Result<FeedPage>> {
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        let table = self.source.table;
        let page = loop {
            match self.pages.next().await {
                Some(Ok(page)) => break page,
                Some(Err(e))
                    if e.is_dead_cursor()
                        && self.current.cursor.is_some()
                        && self.scan_restarts < MAX_RESTARTS =>
                {
                    self.restarts += 1;
                    self.scan_restarts += 1;
                    self.current.restarts += 1;
                    self.current.cursor = None;
                    tracing::warn!(source = %table, error = %e, "the cursor died; restarting the scan from the committed watermark");
                    self.pages = self.source.pages(&self.current);
                }
                Some(Err(e)) => return Some(Err(anyhow::Error::new(e))),
                None => {
                    return Some(Err(anyhow::anyhow!(
                        "{table}: the page stream ended before the last page"
                    )));
                }
            }
        };
        let repeated =
            page.has_more && page.next_cursor.is_some() && page.next_cursor == self.current.cursor;
        let scan_done = !page.has_more;
        self.current.cursor = page.next_cursor.clone();
        self.current.pages += 1;
        self.task
            .record(&mut self.checkpoint, &self.current, scan_done);
        let checkpoint = serde_json::to_value(&self.checkpoint).expect("checkpoints serialise");
        if let Some(used) = page.credits.used
            && !page.rows.is_empty()
        {
            self.cost_per_row = used / page.rows.len() as f64;
        }
        if repeated {
            self.failed = Some(anyhow::anyhow!(
                "{table}: the API returned the same cursor twice; stopping rather than looping \
                 (what was fetched is committed)"
            ));
        } else if scan_done {
            if let Some(w) = self.windows.as_mut() {
                w.done += 1;
                w.left = w.left.saturating_sub(1);
            }
            match self.task.next_window(&self.checkpoint) {
                Some(window) => {
                    self.current = self.source.window_scan(window, &self.run_id);
                    self.pages = self.source.pages(&self.current);
                    self.scan_restarts = 0;
                }
                None => self.done = true,
            }
        }
        Some(Ok(FeedPage {
            rows: page.rows,
            checkpoint,
            credits: page.credits,
        }))
    }

    fn next_cost(&self) -> Option<f64> {
        Some(f64::from(self.source.page_size()) * self.cost_per_row)
    }

    fn progress(&self) -> String {
        self.windows
            .map(|w| format!(", window {} of {}", w.planned - w.left + 1, w.planned))
            .unwrap_or_default()
    }
}
