//! One API source as a refresh sees it: its table, its client, and how a scan starts.

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
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
        let page_size = cfg.page_size.unwrap_or(match api {
            Api::Jobo => 50,
            Api::Sentrion => 100,
        });
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

    /// Fetches the page at `scan.cursor`.
    pub async fn fetch(&self, scan: &Scan) -> Result<Page, FetchError> {
        let cursor = scan.cursor.as_deref();
        match &self.client {
            Client::Jobo(c) => {
                let q = JoboScan {
                    filters: self.filters.clone(),
                    batch_size: self.page_size,
                    updated_after: scan.updated_after,
                    discovered_after: None,
                    discovered_before: None,
                };
                c.fetch_page(&q, cursor).await
            }
            Client::Sentrion(c) => {
                let q = SentrionScan {
                    filters: self.filters.clone(),
                    limit: self.page_size,
                    published_after: scan.published_after,
                    published_before: scan.published_before,
                };
                c.fetch_page(&q, cursor).await
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
