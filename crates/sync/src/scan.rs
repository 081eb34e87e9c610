//! A feed's scan as the page loop takes it: refresh (what is new since the watermark) or
//! backfill (a range in windows, newest first), with dead-cursor restarts and the checkpoint
//! each page leaves.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
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

/// Pages in a row with no rows yet "more to come" after which a scan stops: an API may send
/// an empty page now and then, never a run of them.
const MAX_EMPTY_PAGES: u32 = 3;

/// How far past the API's own total (where it gives one) a scan may run before it stops: it
/// may grow while the scan runs, never to twice itself plus two pages.
fn past_total(rows: u64, total: u64, page_size: u32) -> bool {
    rows > 2 * total + 2 * u64::from(page_size)
}

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
    /// What the scan (since it last began or restarted) has seen, to tell a server that
    /// pages forever: the cursors it asked with, empty pages in a row, rows, and the most
    /// rows the API said the scan holds.
    seen: Seen,
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
            seen: Seen::default(),
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
                    self.seen = Seen::default();
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
        let endless = self
            .seen
            .page(&self.current.cursor, &page, self.source.page_size())
            .map(|why| {
                anyhow::anyhow!(
                    "{table}: {why}; stopping rather than paying for pages forever (what was \
                     fetched is committed)"
                )
            });
        let scan_done = !page.has_more;
        // The feed comes in `updated_at` order, so a page's last row is its newest: only it is
        // read (a feed out of order makes the watermark earlier, never later: rows are asked
        // for again, none skipped).
        if self.current.server_clock {
            let newest = page.rows.last().and_then(updated_at);
            self.current.newest_updated = self.current.newest_updated.max(newest);
        }
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
        if let Some(e) = endless {
            self.failed = Some(e);
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
                    self.seen = Seen::default();
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

/// A row's `updated_at`, when it has a readable one.
fn updated_at(row: &str) -> Option<DateTime<Utc>> {
    #[derive(serde::Deserialize)]
    struct Stamp<'a> {
        #[serde(borrow, default)]
        updated_at: Option<std::borrow::Cow<'a, str>>,
    }
    let stamp: Stamp<'_> = serde_json::from_str(row).ok()?;
    DateTime::parse_from_rfc3339(stamp.updated_at?.as_ref())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What one scan has seen of the API, to stop a server that would page forever.
#[derive(Debug, Default)]
struct Seen {
    /// Each cursor asked with, and the page of the scan it was asked for.
    cursors: HashMap<String, u64>,
    pages: u64,
    empty_in_a_row: u32,
    rows: u64,
    total: Option<u64>,
}

impl Seen {
    /// Takes `page`, asked for with `asked`; says why the scan must stop when the API pages
    /// forever: a cursor it gave before (a loop, `A → B → A` as well as `A → A`), empty pages
    /// that keep saying there is more, or rows far past the total it gave.
    fn page(&mut self, asked: &Option<String>, page: &Page, page_size: u32) -> Option<String> {
        self.pages += 1;
        if let Some(asked) = asked {
            self.cursors.entry(asked.clone()).or_insert(self.pages);
        }
        self.rows += page.rows.len() as u64;
        if let Some(t) = page.total_found {
            self.total = Some(self.total.map_or(t, |seen| seen.max(t)));
        }
        if !page.has_more {
            return None;
        }
        if let Some(next) = &page.next_cursor
            && let Some(&at) = self.cursors.get(next)
        {
            return Some(if Some(next) == asked.as_ref() {
                "the API returned the same cursor twice".to_string()
            } else {
                format!(
                    "the API returned a cursor it had returned before: page {} of the scan \
                     leads back to page {at}, a loop",
                    self.pages
                )
            });
        }
        if page.rows.is_empty() {
            self.empty_in_a_row += 1;
        } else {
            self.empty_in_a_row = 0;
        }
        if self.empty_in_a_row >= MAX_EMPTY_PAGES {
            return Some(format!(
                "the API sent {} pages in a row with no rows that each said more was to come",
                self.empty_in_a_row
            ));
        }
        match self.total {
            Some(total) if past_total(self.rows, total, page_size) => Some(format!(
                "the scan has fetched {} rows, far past the {total} the API says it holds",
                self.rows
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use joblake_schema::RawRows;

    fn page(rows: usize, next: Option<&str>, total: Option<u64>) -> Page {
        Page {
            rows: RawRows::copied(
                (0..rows)
                    .map(|i| format!("{{\"id\":{i}}}"))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(String::as_str),
            ),
            next_cursor: next.map(str::to_string),
            has_more: next.is_some(),
            credits: Default::default(),
            total_found: total,
            bytes: 0,
        }
    }

    fn cursor(c: &str) -> Option<String> {
        Some(c.to_string())
    }

    #[test]
    fn a_cursor_cycle_stops_the_scan_on_the_page_that_closes_it() {
        let mut seen = Seen::default();
        assert_eq!(seen.page(&None, &page(10, Some("A"), None), 10), None);
        assert_eq!(
            seen.page(&cursor("A"), &page(10, Some("B"), None), 10),
            None
        );
        let why = seen
            .page(&cursor("B"), &page(10, Some("A"), None), 10)
            .unwrap();
        assert!(
            why.contains("page 3 of the scan leads back to page 2"),
            "{why}"
        );
        let mut seen = Seen::default();
        let why = seen
            .page(&cursor("A"), &page(10, Some("A"), None), 10)
            .unwrap();
        assert!(why.contains("same cursor twice"), "{why}");
    }

    #[test]
    fn empty_pages_that_keep_saying_more_stop_the_scan_after_three() {
        let mut seen = Seen::default();
        assert_eq!(seen.page(&None, &page(0, Some("A"), None), 10), None);
        assert_eq!(seen.page(&cursor("A"), &page(5, Some("B"), None), 10), None);
        assert_eq!(seen.page(&cursor("B"), &page(0, Some("C"), None), 10), None);
        assert_eq!(seen.page(&cursor("C"), &page(0, Some("D"), None), 10), None);
        let why = seen
            .page(&cursor("D"), &page(0, Some("E"), None), 10)
            .unwrap();
        assert!(why.contains("3 pages in a row with no rows"), "{why}");
        // The last page may be empty.
        let mut seen = Seen::default();
        for c in ["A", "B"] {
            assert_eq!(
                seen.page(&cursor(c), &page(0, Some(&format!("{c}'")), None), 10),
                None
            );
        }
        assert_eq!(seen.page(&cursor("C"), &page(0, None, None), 10), None);
    }

    #[test]
    fn a_scan_far_past_the_apis_total_stops() {
        let mut seen = Seen::default();
        let mut stopped = None;
        for n in 0..100u64 {
            let asked = (n > 0).then(|| n.to_string());
            let next = (n + 1).to_string();
            if let Some(why) = seen.page(&asked, &page(10, Some(&next), Some(50)), 10) {
                stopped = Some((n + 1, why));
                break;
            }
        }
        // 2 × 50 + 2 pages of 10 = 120 rows: the 13th page is past it.
        let (pages, why) = stopped.unwrap();
        assert_eq!(pages, 13);
        assert!(why.contains("130 rows, far past the 50"), "{why}");
        // No total: no such bound.
        let mut seen = Seen::default();
        for n in 0..100u64 {
            let next = (n + 1).to_string();
            assert_eq!(
                seen.page(&Some(n.to_string()), &page(10, Some(&next), None), 10),
                None
            );
        }
    }
}
