//! Jobo career sites feed: `POST /api/career-sites/feed`, key in `X-Api-Key`, credits in headers.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use joblake_schema::RawRows;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::http::{Ctx, Failure, body_text, header_f64, not_the};
use crate::{Api, Credits, FetchError, Page};

pub(crate) const PATH: &str = "/api/career-sites/feed";

/// Largest `batch_size` the feed accepts.
pub const JOBO_MAX_BATCH: u32 = 50;

/// What to scan in the career sites feed; the cursor is passed per call.
#[derive(Debug, Clone, PartialEq)]
pub struct JoboScan {
    /// Filter fields sent as-is (`industries`, `country_codes`, ...); typed fields below win.
    pub filters: Map<String, Value>,
    /// Rows per page, 1..=50.
    pub batch_size: u32,
    /// Only sites updated strictly after this instant (incremental sync).
    pub updated_after: Option<DateTime<Utc>>,
    /// Only sites first discovered at or after this instant (backfill windows).
    pub discovered_after: Option<DateTime<Utc>>,
    /// Only sites first discovered strictly before this instant.
    pub discovered_before: Option<DateTime<Utc>>,
}

impl Default for JoboScan {
    fn default() -> Self {
        JoboScan {
            filters: Map::new(),
            batch_size: JOBO_MAX_BATCH,
            updated_after: None,
            discovered_after: None,
            discovered_before: None,
        }
    }
}

impl JoboScan {
    /// JSON body for one page: filters merged with the batch size, the bounds and the cursor.
    pub fn request_body(&self, cursor: Option<&str>) -> Result<Vec<u8>, FetchError> {
        let config = |message: String| FetchError::Config {
            api: Api::Jobo,
            message,
        };
        // Checked here because an oversized page is priced (and refused with 402) server-side.
        if !(1..=JOBO_MAX_BATCH).contains(&self.batch_size) {
            return Err(config(format!(
                "batch_size must be 1..={JOBO_MAX_BATCH}, got {}",
                self.batch_size
            )));
        }
        if let (Some(after), Some(before)) = (self.discovered_after, self.discovered_before)
            && after >= before
        {
            return Err(config(format!(
                "discovered_after ({after}) must be earlier than discovered_before ({before})"
            )));
        }
        if cursor.is_some_and(|c| c.trim().is_empty()) {
            return Err(config(
                "the cursor is empty; pass None to start a scan".to_owned(),
            ));
        }

        let mut body = self.filters.clone();
        body.insert("batch_size".into(), self.batch_size.into());
        for (name, value) in [
            ("updated_after", self.updated_after),
            ("discovered_after", self.discovered_after),
            ("discovered_before", self.discovered_before),
        ] {
            if let Some(ts) = value {
                body.insert(
                    name.into(),
                    ts.to_rfc3339_opts(SecondsFormat::AutoSi, true).into(),
                );
            }
        }
        // A filter map that carries a stale cursor must not continue some other scan.
        body.remove("cursor");
        if let Some(c) = cursor {
            body.insert("cursor".into(), c.into());
        }
        serde_json::to_vec(&body).map_err(|e| config(format!("cannot encode the request: {e}")))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    /// Borrowed from the body: the page's rows are spans of it.
    #[serde(borrow)]
    career_sites: Vec<&'a RawValue>,
    #[serde(default)]
    next_cursor: Option<String>,
    #[serde(default)]
    has_more: Option<bool>,
}

pub(crate) fn parse_page(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Page, Failure> {
    let malformed = not_the(ctx, body, "career sites body is not the feed envelope");
    let text = body_text(body).map_err(&malformed)?;
    let env: Envelope = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    let next_cursor = env.next_cursor.filter(|c| !c.trim().is_empty());
    let has_more = env
        .has_more
        .or_else(|| header_bool(headers, "x-has-more"))
        .unwrap_or(next_cursor.is_some());
    // Continuing without a cursor would restart from page 1 and pay for every row again.
    if has_more && next_cursor.is_none() {
        return Err(Failure::malformed(
            "has_more is true but next_cursor is missing",
        ));
    }
    Ok(Page {
        rows: RawRows::borrowed(&text, &env.career_sites),
        next_cursor,
        has_more,
        credits: Credits {
            used: header_f64(headers, "x-credits-deducted")
                .or_else(|| header_f64(headers, "x-credits-used")),
            balance: header_f64(headers, "x-credits-balance")
                .or_else(|| header_f64(headers, "x-credits-remaining")),
        },
        total_found: None,
        bytes: body.len(),
    })
}

fn header_bool(headers: &HeaderMap, name: &str) -> Option<bool> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    if v.eq_ignore_ascii_case("true") || v == "1" {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") || v == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn body_merges_filters_bounds_and_cursor() {
        let scan = JoboScan {
            filters: json!({"industries": ["fintech"], "cursor": "stale", "batch_size": 7})
                .as_object()
                .cloned()
                .unwrap(),
            batch_size: 25,
            updated_after: Some(Utc.with_ymd_and_hms(2024, 3, 15, 10, 0, 0).unwrap()),
            discovered_after: None,
            discovered_before: Some(Utc.with_ymd_and_hms(2024, 3, 16, 0, 0, 0).unwrap()),
        };
        let first: Value = serde_json::from_slice(&scan.request_body(None).unwrap()).unwrap();
        assert_eq!(
            first,
            json!({
                "industries": ["fintech"],
                "batch_size": 25,
                "updated_after": "2024-03-15T10:00:00Z",
                "discovered_before": "2024-03-16T00:00:00Z",
            })
        );
        let next: Value =
            serde_json::from_slice(&scan.request_body(Some("abc==")).unwrap()).unwrap();
        assert_eq!(next["cursor"], "abc==");
    }

    #[test]
    fn body_rejects_bad_batch_size_and_bounds() {
        for batch_size in [0, 51, 500] {
            let scan = JoboScan {
                batch_size,
                ..JoboScan::default()
            };
            let err = scan.request_body(None).unwrap_err();
            assert!(matches!(err, FetchError::Config { .. }), "{err}");
        }
        let t = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let scan = JoboScan {
            discovered_after: Some(t),
            discovered_before: Some(t),
            ..JoboScan::default()
        };
        assert!(scan.request_body(None).is_err());
        assert!(JoboScan::default().request_body(Some(" ")).is_err());
    }
}
