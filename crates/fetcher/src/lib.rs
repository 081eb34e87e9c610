//! HTTP clients for the two metered job-market APIs (Jobo career sites feed, Sentrion jobs
//! search): auth, pacing, retries with backoff, error mapping and credit accounting.
//!
//! Each call fetches one page; the caller drives the scan and checkpoints the cursor after
//! every page, because rows cost money and a crash must re-fetch at most one page.
//!
//! ```no_run
//! # async fn run() -> Result<(), joblake_fetcher::FetchError> {
//! use joblake_fetcher::{Api, ClientConfig, SentrionClient, SentrionScan};
//! let key = secrecy::SecretString::from(std::env::var("SENTRION_API_KEY").unwrap_or_default());
//! let client = SentrionClient::new(ClientConfig::for_api(Api::Sentrion, key))?;
//! let scan = SentrionScan::default();
//! let mut cursor: Option<String> = None;
//! loop {
//!     let page = client.fetch_page(&scan, cursor.as_deref()).await?;
//!     // ... write page.rows, then checkpoint page.next_cursor ...
//!     if !page.has_more {
//!         break;
//!     }
//!     cursor = page.next_cursor;
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod client;
mod company;
mod config;
mod error;
mod http;
mod jobo;
mod pacer;
mod page;
mod sentrion;

#[cfg(test)]
mod tests;

pub use client::{Client, JoboClient, ScanRequest, SentrionClient};
pub use company::CompanyClient;
pub use config::{ClientConfig, RetryPolicy, sends_key_in_clear};
pub use error::{Api, FetchError};
pub use jobo::{JOBO_MAX_BATCH, JoboScan};
pub use pacer::Pacer;
pub use page::{Credits, FetchStats, Page, StatsSnapshot};
pub use sentrion::{SENTRION_LIMIT_RANGE, SentrionScan};

/// Result alias of this crate.
pub type Result<T, E = FetchError> = std::result::Result<T, E>;
