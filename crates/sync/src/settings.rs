//! A source's settings, resolved and checked: what `joblake.toml` and the environment said,
//! with every default filled in.

use std::ops::RangeInclusive;
use std::time::Duration;

use joblake_fetcher::{Api, JOBO_MAX_BATCH, RetryPolicy, SENTRION_LIMIT_RANGE};
use joblake_schema::Table;
use secrecy::SecretString;

/// How to reach one API and how to page through it.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Base URL without the endpoint path.
    pub base_url: String,
    /// The API key.
    pub key: SecretString,
    /// Request-body filters sent as they are (see the API reference pages).
    pub filters: serde_json::Map<String, serde_json::Value>,
    /// Rows per page: Jobo `batch_size`, Sentrion `limit` (see [`page_sizes`]).
    pub page_size: u32,
    /// Requests per minute to hold to (0 = no pacing).
    pub requests_per_minute: u32,
    /// Career sites: how far before the last scan's start the next one asks from.
    pub overlap: chrono::Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Backfill: a window the API says holds more rows than this is split.
    pub backfill_window_rows: u64,
    /// Warn when a run ends with the credit balance under this (0 never warns).
    pub warn_below_credits: f64,
}

impl SourceSettings {
    /// `api`'s defaults with `key`, at its production URL.
    pub fn defaults(api: Api, key: SecretString) -> SourceSettings {
        SourceSettings {
            base_url: api.default_base_url().to_string(),
            key,
            filters: Default::default(),
            page_size: *page_sizes(api).end(),
            requests_per_minute: api.default_per_minute(),
            overlap: chrono::Duration::minutes(15),
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            backfill_window_rows: 10_000,
            warn_below_credits: 1_000.0,
        }
    }
}

/// The page sizes `api` takes.
pub fn page_sizes(api: Api) -> RangeInclusive<u32> {
    match api {
        Api::Jobo => 1..=JOBO_MAX_BATCH,
        Api::Sentrion => SENTRION_LIMIT_RANGE,
    }
}

/// The API behind a table (company profiles are Jobo's).
pub fn api_of(table: Table) -> Api {
    match table {
        Table::CareerSites | Table::Companies => Api::Jobo,
        Table::Jobs => Api::Sentrion,
    }
}

/// The environment variable naming an API's base URL.
pub fn base_url_env(api: Api) -> &'static str {
    match api {
        Api::Jobo => "JOBO_BASE_URL",
        Api::Sentrion => "SENTRION_BASE_URL",
    }
}
