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
    /// The cursor of the next page (None: the first page).
    pub cursor: Option<String>,
    /// Pages taken so far.
    pub pages: u64,
    /// Restarts after a dead cursor.
    pub restarts: u32,
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
        Table::CareerSites => Api::Jobo,
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
            run_id: run_id.to_string(),
            started_at: now,
            updated_after,
            published_after,
            published_before: None,
            cursor: None,
            pages: 0,
            restarts: 0,
        }
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
                    discovered_after: None,
                    discovered_before: None,
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
            scan: None,
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
