//! Jobo company profiles: `GET /api/companies/{id}` (a career site's `details_url`), with the
//! same auth, pacing, retries and error mapping as the feeds.

use std::sync::Arc;

use bytes::Bytes;
use joblake_schema::RawRows;
use reqwest::header::HeaderMap;
use serde_json::value::RawValue;

use crate::http::{Auth, Core, Ctx, Failure, Transient, body_text, excerpt};
use crate::{Api, ClientConfig, Credits, FetchError, FetchStats, Page};

const PATH: &str = "/api/companies/";

/// A client of Jobo's company profiles. The newer docs say no key is needed; the key is sent
/// anyway (to the same host only: redirects are off), so the key's rate limit is the one used.
#[derive(Debug)]
pub struct CompanyClient {
    core: Core,
}

fn parse(ctx: &Ctx<'_>, _headers: &HeaderMap, body: &Bytes) -> Result<Page, Failure> {
    let not_an_object = || {
        Failure::Retry(Transient {
            reason: ctx.clean(&format!(
                "the profile is not a JSON object: {}",
                excerpt(body)
            )),
            status: Some(200),
            wait: None,
            malformed: true,
        })
    };
    let text = body_text(body).map_err(|_| not_an_object())?;
    let profile = serde_json::from_str::<&RawValue>(&text)
        .ok()
        .filter(|v| v.get().trim_start().starts_with('{'))
        .ok_or_else(not_an_object)?;
    Ok(Page {
        rows: RawRows::borrowed(&text, &[profile]),
        next_cursor: None,
        has_more: false,
        credits: Credits::default(),
        total_found: None,
        bytes: body.len(),
    })
}

impl CompanyClient {
    /// Builds a client of the Jobo base URL in `cfg`.
    pub fn new(cfg: ClientConfig) -> Result<Self, FetchError> {
        Ok(CompanyClient {
            core: Core::new(Api::Jobo, cfg, PATH, Auth::ApiKeyHeader)?,
        })
    }

    /// The profile of company `id` as sent (a page of one row), or `None` when Jobo has none
    /// (404).
    pub async fn fetch(&self, id: &str) -> Result<Option<RawRows>, FetchError> {
        match self.core.get(id, parse).await {
            Ok(page) => Ok(Some(page.rows)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Live counters of this client.
    pub fn stats(&self) -> Arc<FetchStats> {
        self.core.stats()
    }
}
