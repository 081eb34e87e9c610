//! Sentrion jobs search: `POST /api/v3/jobs-search/search`, Bearer key, credits in the envelope.

use bytes::Bytes;
use chrono::NaiveDate;
use joblake_schema::RawRows;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::http::{Ctx, ErrorInfo, Failure, body_text, excerpt, not_the};
use crate::{Api, Credits, FetchError, Page};

pub(crate) const PATH: &str = "/api/v3/jobs-search/search";

/// Smallest and largest `limit` the search accepts.
pub const SENTRION_LIMIT_RANGE: std::ops::RangeInclusive<u32> = 10..=100;

/// What to search in Sentrion; the cursor (`search_after`) is passed per call.
#[derive(Debug, Clone, PartialEq)]
pub struct SentrionScan {
    /// Filter fields sent as-is (`jobs_locations`, `department`, ...); typed fields below win.
    pub filters: Map<String, Value>,
    /// Rows per page, 10..=100.
    pub limit: u32,
    /// First publication date, inclusive (API default: two months back).
    pub published_after: Option<NaiveDate>,
    /// Publication date bound (API default: tomorrow).
    pub published_before: Option<NaiveDate>,
}

impl Default for SentrionScan {
    fn default() -> Self {
        SentrionScan {
            filters: Map::new(),
            limit: *SENTRION_LIMIT_RANGE.end(),
            published_after: None,
            published_before: None,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(flatten)]
    fields: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search_after: Option<&'a RawValue>,
}

impl SentrionScan {
    /// JSON body for one page; `cursor` is the `search_after` array's JSON text, sent unchanged.
    pub fn request_body(&self, cursor: Option<&str>) -> Result<Vec<u8>, FetchError> {
        let config = |message: String| FetchError::Config {
            api: Api::Sentrion,
            message,
        };
        if !SENTRION_LIMIT_RANGE.contains(&self.limit) {
            return Err(config(format!(
                "limit must be {}..={}, got {}",
                SENTRION_LIMIT_RANGE.start(),
                SENTRION_LIMIT_RANGE.end(),
                self.limit
            )));
        }
        if let (Some(after), Some(before)) = (self.published_after, self.published_before)
            && after >= before
        {
            return Err(config(format!(
                "published_after ({after}) must be earlier than published_before ({before})"
            )));
        }
        // Re-encoding would risk changing large sort values, so the array goes back as raw text.
        let search_after = cursor
            .map(|c| {
                RawValue::from_string(c.trim().to_owned())
                    .ok()
                    .filter(|raw| raw.get().starts_with('['))
                    .ok_or_else(|| FetchError::DeadCursor {
                        api: Api::Sentrion,
                        status: None,
                        message: "the stored cursor is not a JSON array (search_after)".to_owned(),
                    })
            })
            .transpose()?;

        let mut fields = self.filters.clone();
        fields.remove("search_after");
        fields.insert("limit".into(), self.limit.into());
        for (name, value) in [
            ("published_after", self.published_after),
            ("published_before", self.published_before),
        ] {
            if let Some(day) = value {
                fields.insert(name.into(), day.format("%Y-%m-%d").to_string().into());
            }
        }
        serde_json::to_vec(&Body {
            fields: &fields,
            search_after: search_after.as_deref(),
        })
        .map_err(|e| config(format!("cannot encode the request: {e}")))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    success: Option<bool>,
    #[serde(borrow)]
    data: Option<Data<'a>>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Data<'a> {
    /// Borrowed from the body: the page's rows are spans of it.
    #[serde(borrow)]
    jobs: Option<Vec<&'a RawValue>>,
    total_jobs_found: Option<Number>,
    credits_used: Option<Number>,
    credits_remaining: Option<Number>,
    search_after: Option<Box<RawValue>>,
}

pub(crate) fn parse_page(
    ctx: &Ctx<'_>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Page, Failure> {
    let malformed = not_the(ctx, body, "search body is not the response envelope");
    let text = body_text(body).map_err(&malformed)?;
    let env: Envelope = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
    let failed =
        env.success == Some(false) || env.error.as_ref().is_some_and(|e| e.get() != "null");
    if failed {
        return Err(envelope_error(ctx, headers, body));
    }
    let Some(data) = env.data else {
        return Err(Failure::malformed("search body has no data"));
    };
    let Some(jobs) = data.jobs else {
        return Err(Failure::malformed("search body has no data.jobs array"));
    };
    // An empty array cannot continue anything; treating it as a cursor would loop.
    let next_cursor = data
        .search_after
        .map(|raw| raw.get().to_owned())
        .filter(|raw| {
            !raw.trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .is_empty()
        });
    Ok(Page {
        rows: RawRows::borrowed(&text, &jobs),
        has_more: next_cursor.is_some(),
        next_cursor,
        credits: Credits {
            used: data.credits_used.and_then(|n| n.as_f64()),
            balance: data.credits_remaining.and_then(|n| n.as_f64()),
        },
        total_found: data
            .total_jobs_found
            .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))),
        bytes: body.len(),
    })
}

/// A 200 with `success: false`: map its error code to the status it stands for.
fn envelope_error(ctx: &Ctx<'_>, headers: &HeaderMap, body: &[u8]) -> Failure {
    let info = ErrorInfo::parse(body);
    let status = match info.code.as_deref() {
        Some("bad_request") => 400,
        Some("unauthorized") => 401,
        Some("payment_required" | "insufficient_credits") => 402,
        Some("forbidden") => 403,
        Some("validation_error") => 422,
        Some("rate_limit_exceeded") => 429,
        Some("server_error") => 500,
        _ => {
            return Failure::Stop(FetchError::Status {
                api: Api::Sentrion,
                status: 200,
                message: ctx.clean(&format!(
                    "success=false: {}",
                    info.message.or(info.code).unwrap_or_else(|| excerpt(body))
                )),
            });
        }
    };
    ctx.classify_status(status, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_merges_filters_dates_and_raw_cursor() {
        let scan = SentrionScan {
            filters: json!({"department": ["Engineering"], "limit": 5, "search_after": [1]})
                .as_object()
                .cloned()
                .unwrap(),
            limit: 50,
            published_after: NaiveDate::from_ymd_opt(2024, 3, 1),
            published_before: NaiveDate::from_ymd_opt(2024, 3, 15),
        };
        let first: Value = serde_json::from_slice(&scan.request_body(None).unwrap()).unwrap();
        assert_eq!(
            first,
            json!({
                "department": ["Engineering"],
                "limit": 50,
                "published_after": "2024-03-01",
                "published_before": "2024-03-15",
            })
        );
        // Large integers and floats must survive byte for byte.
        let cursor = "[1710500000000,67890,0.30000000000000004,18446744073709551616]";
        let next = String::from_utf8(scan.request_body(Some(cursor)).unwrap()).unwrap();
        assert!(
            next.contains(&format!("\"search_after\":{cursor}")),
            "{next}"
        );
        assert_eq!(next.matches("search_after").count(), 1);
    }

    #[test]
    fn body_rejects_bad_limit_dates_and_cursor() {
        for limit in [0, 9, 101] {
            let scan = SentrionScan {
                limit,
                ..SentrionScan::default()
            };
            assert!(matches!(
                scan.request_body(None),
                Err(FetchError::Config { .. })
            ));
        }
        let day = NaiveDate::from_ymd_opt(2024, 3, 1);
        let scan = SentrionScan {
            published_after: day,
            published_before: day,
            ..SentrionScan::default()
        };
        assert!(scan.request_body(None).is_err());
        for bad in ["", "not json", "{\"a\":1}", "17"] {
            let err = SentrionScan::default().request_body(Some(bad)).unwrap_err();
            assert!(err.is_dead_cursor(), "{bad}: {err}");
        }
    }
}
