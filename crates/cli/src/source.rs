//! One API source as a refresh sees it: its table, its client, and how a scan starts.

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use joblake_fetcher::{
    Api, ClientConfig, FetchError, JoboClient, JoboScan, Pacer, Page, RetryPolicy, SentrionClient,
    SentrionScan, StatsSnapshot,
};
use joblake_schema::Table;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::SourceConfig;

/// What a source remembers between runs; stored (opaque to the writer) in the table state
/// and in every staged page, so it is committed with the data it covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceState {
    /// Start of the last scan that finished (career sites: the `updated_after` base).
    pub watermark: Option<DateTime<Utc>>,
    /// The scan under way, if one is; a crash resumes it at `cursor`.
    pub scan: Option<Scan>,
    /// A backfill under way, if one is: kept apart from the incremental scan, so either
    /// can be interrupted and resumed without disturbing the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
}

/// A backfill: a range walked in windows, newest first, each window one scan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backfill {
    /// The run that planned it.
    pub run_id: String,
    /// The range's start (inclusive).
    pub from: DateTime<Utc>,
    /// The range's end (exclusive).
    pub to: DateTime<Utc>,
    /// Windows left, newest first; the first is under way when `scan` is set.
    pub windows: Vec<Window>,
    /// Windows in the plan.
    pub planned: usize,
    /// The scan of the first window, once begun; a crash resumes it at its cursor.
    pub scan: Option<Scan>,
}

/// One window of a backfill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Rows the API said the window holds, where it says (Sentrion's `total_jobs_found`).
    pub expected_rows: Option<u64>,
}

/// One scan: its parameters are fixed when it starts, so a resume asks the same question.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scan {
    /// The run that started it.
    pub run_id: String,
    /// When it started: becomes the watermark once it finishes.
    pub started_at: DateTime<Utc>,
    /// Career sites: only rows updated after this.
    pub updated_after: Option<DateTime<Utc>>,
    /// Jobs: the publication window.
    pub published_after: Option<NaiveDate>,
    /// Jobs: the publication window's end (exclusive).
    pub published_before: Option<NaiveDate>,
    /// Career sites (backfill): first discovered at or after this.
    #[serde(default)]
    pub discovered_after: Option<DateTime<Utc>>,
    /// Career sites (backfill): first discovered before this.
    #[serde(default)]
    pub discovered_before: Option<DateTime<Utc>>,
    /// The cursor of the next page (None: the first page).
    pub cursor: Option<String>,
    /// Pages taken so far.
    pub pages: u64,
    /// Restarts after a dead cursor.
    pub restarts: u32,
}

impl Scan {
    /// A scan of everything, started now by `run_id`, at its first page.
    fn starting(run_id: &str) -> Scan {
        Scan {
            run_id: run_id.to_string(),
            started_at: Utc::now(),
            updated_after: None,
            published_after: None,
            published_before: None,
            discovered_after: None,
            discovered_before: None,
            cursor: None,
            pages: 0,
            restarts: 0,
        }
    }
}

enum Client {
    Jobo(JoboClient),
    Sentrion(SentrionClient),
}

/// A configured source ready to fetch.
pub struct Source {
    /// The table it feeds.
    pub table: Table,
    /// The API behind it.
    pub api: Api,
    client: Client,
    filters: serde_json::Map<String, serde_json::Value>,
    page_size: u32,
    overlap: chrono::Duration,
    pacer: Pacer,
    backfill_window_rows: u64,
    warn_below_credits: f64,
}

/// The environment variable naming a source's base URL.
pub fn base_url_env(api: Api) -> &'static str {
    match api {
        Api::Jobo => "JOBO_BASE_URL",
        Api::Sentrion => "SENTRION_BASE_URL",
    }
}

/// The API behind a table.
pub fn api_of(table: Table) -> Api {
    match table {
        Table::CareerSites | Table::Companies => Api::Jobo,
        Table::Jobs => Api::Sentrion,
    }
}

impl Source {
    /// Builds the source from its key, base URL and config.
    pub fn new(
        table: Table,
        key: SecretString,
        base_url: String,
        cfg: &SourceConfig,
    ) -> Result<Source> {
        let api = api_of(table);
        let rpm = cfg.requests_per_minute.unwrap_or(api.default_per_minute());
        let defaults = RetryPolicy::default();
        let client_cfg = ClientConfig {
            base_url,
            key,
            timeout: Duration::from_secs(cfg.timeout_secs.unwrap_or(120)),
            retry: RetryPolicy {
                max_attempts: cfg.max_attempts.unwrap_or(defaults.max_attempts),
                base: cfg
                    .retry_base_ms
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.base),
                cap: cfg
                    .retry_cap_secs
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.cap),
            },
            pacer: Pacer::per_minute(rpm),
        };
        let pacer = client_cfg.pacer.clone();
        let client = match api {
            Api::Jobo => Client::Jobo(JoboClient::new(client_cfg)?),
            Api::Sentrion => Client::Sentrion(SentrionClient::new(client_cfg)?),
        };
        let (range, default) = match api {
            Api::Jobo => (1..=50, 50),
            Api::Sentrion => (10..=100, 100),
        };
        let page_size = cfg.page_size.unwrap_or(default);
        if !range.contains(&page_size) {
            anyhow::bail!(
                "[{table}] page_size = {page_size} is out of range: the API takes {} to {} rows per page",
                range.start(),
                range.end()
            );
        }
        Ok(Source {
            table,
            api,
            client,
            filters: cfg.filters_json()?,
            page_size,
            overlap: chrono::Duration::minutes(cfg.overlap_minutes.unwrap_or(15)),
            pacer,
            backfill_window_rows: cfg.backfill_window_rows.unwrap_or(10_000).max(1),
            warn_below_credits: cfg.warn_below_credits.unwrap_or(1_000.0),
        })
    }

    /// The scan a run starts when none is under way.
    pub fn new_scan(
        &self,
        state: &SourceState,
        run_id: &str,
        full: bool,
        since: Option<NaiveDate>,
    ) -> Scan {
        let now = Utc::now();
        let last = state.watermark.filter(|_| !full);
        let (updated_after, published_after) = match self.api {
            Api::Jobo => (last.map(|w| w - self.overlap), None),
            Api::Sentrion => (
                None,
                // The API's default window (two months) on a first run, unless --since.
                last.map(|w| w.date_naive() - chrono::Days::new(1))
                    .or(since),
            ),
        };
        Scan {
            started_at: now,
            updated_after,
            published_after,
            ..Scan::starting(run_id)
        }
    }

    /// The scan of one backfill window: Sentrion by publication date, Jobo by discovery time.
    pub fn window_scan(&self, window: &Window, run_id: &str) -> Scan {
        let mut scan = Scan::starting(run_id);
        match self.api {
            Api::Sentrion => {
                scan.published_after = Some(window.from.date_naive());
                scan.published_before = Some(window.to.date_naive());
            }
            Api::Jobo => {
                scan.discovered_after = Some(window.from);
                scan.discovered_before = Some(window.to);
            }
        }
        scan
    }

    /// What the API says `scan` would return in all, where it says (Sentrion's
    /// `total_jobs_found`), from one page of the smallest size the API takes: the cheapest
    /// question that has an answer. `None` for Jobo, whose feed reports no totals.
    pub async fn count(&self, scan: &Scan) -> Result<Option<u64>, FetchError> {
        match &self.client {
            Client::Jobo(_) => Ok(None),
            Client::Sentrion(c) => {
                let q = SentrionScan {
                    filters: self.filters.clone(),
                    limit: *joblake_fetcher::SENTRION_LIMIT_RANGE.start(),
                    published_after: scan.published_after,
                    published_before: scan.published_before,
                };
                Ok(c.fetch_page(&q, None).await?.total_found)
            }
        }
    }

    /// Rows one page holds at most.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// A backfill window holding more rows than this is split.
    pub fn backfill_window_rows(&self) -> u64 {
        self.backfill_window_rows
    }

    /// Requests a minute the source is paced at now, if it is paced.
    pub fn requests_per_minute(&self) -> Option<f64> {
        self.pacer.per_minute_now()
    }

    /// The balance under which a run's end warns, if any.
    pub fn warn_below_credits(&self) -> Option<f64> {
        (self.warn_below_credits > 0.0).then_some(self.warn_below_credits)
    }

    /// The scan's pages from `scan.cursor` on, one request per poll.
    pub fn pages(&self, scan: &Scan) -> BoxStream<'_, Result<Page, FetchError>> {
        let cursor = scan.cursor.clone();
        match &self.client {
            Client::Jobo(c) => {
                let q = JoboScan {
                    filters: self.filters.clone(),
                    batch_size: self.page_size,
                    updated_after: scan.updated_after,
                    discovered_after: scan.discovered_after,
                    discovered_before: scan.discovered_before,
                };
                c.pages(q, cursor).boxed()
            }
            Client::Sentrion(c) => {
                let q = SentrionScan {
                    filters: self.filters.clone(),
                    limit: self.page_size,
                    published_after: scan.published_after,
                    published_before: scan.published_before,
                };
                c.pages(q, cursor).boxed()
            }
        }
    }

    /// Request counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        match &self.client {
            Client::Jobo(c) => c.stats().snapshot(),
            Client::Sentrion(c) => c.stats().snapshot(),
        }
    }
}

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
    state: &SourceState,
    task: &crate::refresh::Task,
    ledger: &[joblake_writer::RunRecord],
) -> Result<Estimate> {
    use crate::refresh::Task;
    let table = source.table;
    let page = u64::from(source.page_size);
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
            let scan = match &state.scan {
                Some(scan) if !full => scan.clone(),
                _ => source.new_scan(state, "dry-run", *full, *since),
            };
            match source.count(&scan).await? {
                Some(total) => {
                    est.rows = Some(total);
                    est.pages = Some(total.div_ceil(page).max(1));
                    est.credits_at_most = Some(total);
                    est.basis = if state.scan.is_some() && !full {
                        format!("{probe}; the scan under way has fetched part of it already")
                    } else {
                        probe
                    };
                }
                None => {
                    let last = ledger.iter().rev().find(|r| {
                        r.source == table.name() && r.status == joblake_writer::RunStatus::Succeeded
                    });
                    est.basis = match (last, state.watermark) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn source(table: Table, cfg: &SourceConfig) -> Result<Source> {
        Source::new(
            table,
            "k".to_string().into(),
            "http://127.0.0.1:9".into(),
            cfg,
        )
    }

    fn after(watermark: &str) -> SourceState {
        SourceState {
            watermark: Some(watermark.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn career_sites_ask_for_updates_since_the_last_start_minus_the_overlap() {
        let s = source(Table::CareerSites, &SourceConfig::default()).unwrap();
        let first = s.new_scan(&SourceState::default(), "r1", false, None);
        assert_eq!(
            first.updated_after, None,
            "a first run pages the whole feed"
        );
        let next = s.new_scan(&after("2026-11-23T12:00:00Z"), "r2", false, None);
        assert_eq!(
            next.updated_after,
            Some("2026-11-23T11:45:00Z".parse().unwrap())
        );
        assert_eq!(next.published_after, None);
        let full = s.new_scan(&after("2026-11-23T12:00:00Z"), "r3", true, None);
        assert_eq!(full.updated_after, None);

        let cfg = SourceConfig {
            overlap_minutes: Some(60),
            ..Default::default()
        };
        let s = source(Table::CareerSites, &cfg).unwrap();
        let next = s.new_scan(&after("2026-11-23T12:00:00Z"), "r2", false, None);
        assert_eq!(
            next.updated_after,
            Some("2026-11-23T11:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn jobs_ask_from_the_last_run_date_minus_a_day_or_since_or_the_api_default() {
        let s = source(Table::Jobs, &SourceConfig::default()).unwrap();
        let first = s.new_scan(&SourceState::default(), "r1", false, None);
        assert_eq!(first.published_after, None, "the API's two-month default");
        let since = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let first = s.new_scan(&SourceState::default(), "r1", false, Some(since));
        assert_eq!(first.published_after, Some(since));
        let next = s.new_scan(&after("2026-11-23T00:30:00Z"), "r2", false, None);
        assert_eq!(next.published_after, NaiveDate::from_ymd_opt(2026, 11, 22));
        assert_eq!(next.updated_after, None);
    }

    #[test]
    fn page_sizes_outside_what_the_api_takes_are_refused_up_front() {
        for (table, size, ok) in [
            (Table::CareerSites, 50, true),
            (Table::CareerSites, 51, false),
            (Table::CareerSites, 0, false),
            (Table::Jobs, 10, true),
            (Table::Jobs, 9, false),
            (Table::Jobs, 101, false),
        ] {
            let cfg = SourceConfig {
                page_size: Some(size),
                ..Default::default()
            };
            match source(table, &cfg) {
                Ok(_) => assert!(ok, "{table} {size}"),
                Err(e) => {
                    assert!(!ok, "{table} {size}");
                    assert!(e.to_string().contains("page_size"), "{e}");
                }
            }
        }
    }
}
