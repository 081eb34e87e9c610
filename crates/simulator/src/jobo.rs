//! `POST /api/career-sites/feed`: the Jobo career-sites feed, with cursor
//! pagination, filters, per-row billing and the documented error bodies.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::data::{Site, World};
use crate::fault::{Api, FaultKind};
use crate::http::{
    Outcome, credits_json, credits_text, html_response, json_response, reason, reset_response, set,
    truncated_response,
};
use crate::state::{RateCheck, Shared};

const DEFAULT_BATCH: u32 = 50;
const MAX_BATCH: i64 = 50;

/// The feed's filter fields, kept as sent so a cursor can carry them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct JoboFilters {
    #[serde(skip_serializing_if = "Option::is_none")]
    industries: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_sizes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    country_codes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    funding_stages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_types: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    founded_after: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_agency: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discovered_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discovered_before: Option<String>,
}

/// Filters checked and ready to match rows.
#[derive(Debug)]
pub(crate) struct Compiled {
    industries: Option<Vec<String>>,
    company_sizes: Option<Vec<String>>,
    country_codes: Option<Vec<String>>,
    funding_stages: Option<Vec<String>>,
    company_types: Option<Vec<String>>,
    founded_after: Option<i64>,
    is_agency: Option<bool>,
    updated_after: Option<DateTime<Utc>>,
    discovered_after: Option<DateTime<Utc>>,
    discovered_before: Option<DateTime<Utc>>,
}

/// Accepts RFC 3339 and the looser ISO 8601 forms clients send (naive = UTC).
fn parse_dt(field: &str, s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "{field} must be an ISO 8601 date-time (e.g. 2026-01-31T00:00:00Z), got {s:?}"
    ))
}

fn lower(v: &Option<Vec<String>>) -> Option<Vec<String>> {
    v.as_ref()
        .filter(|l| !l.is_empty())
        .map(|l| l.iter().map(|s| s.to_lowercase()).collect())
}

fn any_in(wanted: &Option<Vec<String>>, have: Option<&str>) -> bool {
    match wanted {
        None => true,
        Some(w) => have.is_some_and(|h| w.iter().any(|x| x.eq_ignore_ascii_case(h))),
    }
}

impl JoboFilters {
    /// Reads the filter fields of a request body, ignoring the rest.
    pub fn from_body(body: &Map<String, Value>) -> Result<JoboFilters, String> {
        let mut m = body.clone();
        m.remove("cursor");
        m.remove("batch_size");
        serde_json::from_value(Value::Object(m)).map_err(|e| format!("Invalid request body: {e}"))
    }

    pub fn compile(&self) -> Result<Compiled, String> {
        let dt =
            |field: &str, v: &Option<String>| v.as_deref().map(|s| parse_dt(field, s)).transpose();
        Ok(Compiled {
            industries: lower(&self.industries),
            company_sizes: lower(&self.company_sizes),
            country_codes: lower(&self.country_codes),
            funding_stages: lower(&self.funding_stages),
            company_types: lower(&self.company_types),
            founded_after: self.founded_after,
            is_agency: self.is_agency,
            updated_after: dt("updated_after", &self.updated_after)?,
            discovered_after: dt("discovered_after", &self.discovered_after)?,
            discovered_before: dt("discovered_before", &self.discovered_before)?,
        })
    }
}

impl Compiled {
    pub fn matches(&self, s: &Site) -> bool {
        if let Some(w) = &self.industries
            && !s
                .industries
                .iter()
                .any(|i| w.iter().any(|x| x.eq_ignore_ascii_case(i)))
        {
            return false;
        }
        any_in(&self.company_sizes, s.company_size.as_deref())
            && any_in(&self.country_codes, s.country_code.as_deref())
            && any_in(&self.funding_stages, s.funding_stage.as_deref())
            && any_in(&self.company_types, s.company_type.as_deref())
            && self
                .founded_after
                .is_none_or(|y| s.founded_year.is_some_and(|f| f >= y))
            && self.is_agency.is_none_or(|a| s.is_agency == a)
            && self.updated_after.is_none_or(|t| s.updated_at > t)
            && self
                .discovered_after
                .is_none_or(|t| s.discovered_at.is_some_and(|d| d >= t))
            && self
                .discovered_before
                .is_none_or(|t| s.discovered_at.is_some_and(|d| d < t))
    }
}

/// Where a scan stands, plus what it was asked for; opaque to clients.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    v: u8,
    /// The issuing simulator's tag: cursors from another data set are refused.
    t: String,
    u: i64,
    i: String,
    b: u32,
    f: JoboFilters,
    /// Tells apart two cursors to one place (an empty page's from its request's).
    #[serde(default, skip_serializing_if = "is_zero")]
    n: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(s: &str, tag: &str) -> Option<Cursor> {
        let raw = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
        let c: Cursor = serde_json::from_slice(&raw).ok()?;
        (c.v == 1 && c.t == tag && c.b >= 1 && c.b as i64 <= MAX_BATCH).then_some(c)
    }
}

/// One page: rows strictly after `after` in (updated_at, id) order, and
/// whether any further row matches.
fn page<'a>(
    world: &'a World,
    f: &Compiled,
    after: Option<(i64, &str)>,
    batch: usize,
) -> (Vec<&'a Site>, bool) {
    let start = match after {
        Some((u, id)) => world
            .sites
            .partition_point(|s| (s.updated_at.timestamp(), s.id.as_str()) <= (u, id)),
        None => 0,
    };
    let mut out = Vec::with_capacity(batch);
    let mut rest = world.sites[start..].iter().filter(|s| f.matches(s));
    for s in rest.by_ref() {
        out.push(s);
        if out.len() == batch {
            break;
        }
    }
    let more = rest.next().is_some();
    (out, more)
}

/// Every row a complete scan with these filters would return now, in feed order.
pub(crate) fn truth(world: &World, f: &Compiled, base_url: &str) -> Vec<Value> {
    world
        .sites
        .iter()
        .filter(|s| f.matches(s))
        .map(|s| s.to_json(base_url))
        .collect()
}

/// The documented error body `{status, error, message}`, or RFC 9457
/// problem+json when the `problem` fault asks for the clients' other shape.
fn error(
    status: StatusCode,
    message: &str,
    code: &str,
    retry_after: Option<u64>,
    problem: bool,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(s) = retry_after {
        set(&mut headers, "retry-after", s);
    }
    if problem {
        let mut body = json!({
            "type": format!("https://jobo.world/problems/{}", code.replace('_', "-")),
            "title": reason(status),
            "status": status.as_u16(),
            "detail": message,
            "code": code,
        });
        if let Some(s) = retry_after {
            body["retry_after_seconds"] = json!(s);
        }
        return json_response(status, "application/problem+json", headers, &body);
    }
    let mut body = json!({"status": status.as_u16(), "error": reason(status), "message": message});
    if status == StatusCode::TOO_MANY_REQUESTS
        && let Some(s) = retry_after
    {
        body["retry_after"] = json!(s);
    }
    json_response(status, "application/json", headers, &body)
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message, "bad_request", None, false)
}

fn payment_required(
    required: u32,
    balance: f64,
    mut headers: HeaderMap,
    problem: bool,
) -> Response {
    set(&mut headers, "x-credits-required", required);
    set(&mut headers, "x-credits-balance", credits_text(balance));
    let message = format!(
        "Insufficient credits: this request needs {required}, the balance is {}",
        credits_text(balance)
    );
    let mut body = if problem {
        json!({"type": "https://jobo.world/problems/insufficient-credits", "title": "Payment Required",
               "status": 402, "detail": message, "code": "insufficient_credits"})
    } else {
        json!({"status": 402, "error": "Payment Required", "message": message})
    };
    body["credits_required"] = json!(required);
    body["credits_balance"] = credits_json(balance);
    let ct = if problem {
        "application/problem+json"
    } else {
        "application/json"
    };
    json_response(StatusCode::PAYMENT_REQUIRED, ct, headers, &body)
}

fn restart_required() -> Response {
    let body = json!({
        "type": "https://jobo.world/problems/feed-cursor-restart-required",
        "title": "Conflict",
        "status": 409,
        "detail": "The feed cursor can no longer be continued; restart the scan from your last committed watermark",
        "code": "feed_cursor_restart_required",
    });
    json_response(
        StatusCode::CONFLICT,
        "application/problem+json",
        HeaderMap::new(),
        &body,
    )
}

fn parse_body(body: &Bytes) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(json!({}));
    }
    serde_json::from_slice(body).ok()
}

fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The feed endpoint.
pub(crate) async fn feed(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = parse_body(&body);
    let cursor = parsed
        .as_ref()
        .and_then(|v| v.get("cursor"))
        .cloned()
        .unwrap_or(Value::Null);
    let (fired, guard) = sh.begin(Api::Jobo, &body, cursor);
    let delay = sh.latency + fired.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let out = match fired.terminal {
        Some(kind) => Outcome::from(fault(&sh, kind, fired.problem, &headers, parsed.as_ref())),
        None => serve(&sh, &headers, parsed, fired.legacy_headers, &fired.data),
    };
    guard.finish(out.status, out.rows, out.charged);
    out.response
}

fn requested_batch(parsed: Option<&Value>) -> u32 {
    parsed
        .and_then(|v| v.get("batch_size"))
        .and_then(Value::as_u64)
        .and_then(|b| u32::try_from(b).ok())
        .unwrap_or(DEFAULT_BATCH)
}

/// The answer an injected fault gives instead of a page; never charged.
fn fault(
    sh: &Shared,
    kind: FaultKind,
    problem: bool,
    headers: &HeaderMap,
    parsed: Option<&Value>,
) -> Response {
    let e = |status: StatusCode, msg: &str, code: &str, retry: Option<u64>| {
        error(status, msg, code, retry, problem)
    };
    match kind {
        FaultKind::TooMany(s) => e(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded. Retry after the indicated delay.",
            "rate_limit_exceeded",
            Some(s),
        ),
        FaultKind::TooManyBare => e(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded.",
            "rate_limit_exceeded",
            None,
        ),
        FaultKind::Unavailable(s) => e(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily overloaded. Please retry later.",
            "service_unavailable",
            Some(s),
        ),
        FaultKind::Status(402) => {
            let balance = api_key(headers)
                .and_then(|k| {
                    sh.lock()
                        .wallets
                        .get(&(Api::Jobo, k.to_string()))
                        .map(|w| w.balance)
                })
                .unwrap_or(0.0);
            payment_required(requested_batch(parsed), balance, HeaderMap::new(), problem)
        }
        FaultKind::Status(code) => {
            let (status, msg, c) = match code {
                401 => (
                    StatusCode::UNAUTHORIZED,
                    "Invalid or missing API key.",
                    "unauthorized",
                ),
                403 => (
                    StatusCode::FORBIDDEN,
                    "This API key does not have access to the career sites feed.",
                    "forbidden",
                ),
                408 => (
                    StatusCode::REQUEST_TIMEOUT,
                    "The request timed out.",
                    "request_timeout",
                ),
                422 => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The request could not be processed.",
                    "validation_error",
                ),
                502 => (StatusCode::BAD_GATEWAY, "Bad gateway.", "bad_gateway"),
                504 => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "Upstream timed out.",
                    "gateway_timeout",
                ),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "An unexpected error occurred.",
                    "internal_error",
                ),
            };
            e(status, msg, c, None)
        }
        FaultKind::DeadCursor => e(
            StatusCode::BAD_REQUEST,
            "Invalid cursor",
            "invalid_cursor",
            None,
        ),
        FaultKind::Restart => restart_required(),
        FaultKind::Reset => reset_response(),
        FaultKind::NonJson => html_response(),
        FaultKind::GzipBomb => crate::http::gzip_bomb_response(),
        FaultKind::Escapes => e(
            StatusCode::UNPROCESSABLE_ENTITY,
            crate::fault::ESCAPES,
            "validation_error",
            None,
        ),
        FaultKind::Truncate => {
            let g = sh.lock();
            let all = Compiled::default_filters();
            let batch = requested_batch(parsed).clamp(1, DEFAULT_BATCH) as usize;
            let (rows, more) = page(&g.world, &all, None, batch);
            let rows: Vec<Value> = rows.iter().map(|s| s.to_json(&sh.base_url)).collect();
            truncated_response(
                &json!({"career_sites": rows, "next_cursor": null, "has_more": more}),
            )
        }
        // Modifiers never replace the answer (FaultPlan::fire keeps them out).
        FaultKind::Timeout(_)
        | FaultKind::Slow(_)
        | FaultKind::Problem
        | FaultKind::LegacyHeaders
        | FaultKind::Data(_) => e(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An unexpected error occurred.",
            "internal_error",
            None,
        ),
    }
}

impl Compiled {
    fn default_filters() -> Compiled {
        Compiled {
            industries: None,
            company_sizes: None,
            country_codes: None,
            funding_stages: None,
            company_types: None,
            founded_after: None,
            is_agency: None,
            updated_after: None,
            discovered_after: None,
            discovered_before: None,
        }
    }
}

/// The normal path: auth, rate limit, validation, credit check, page, charge.
fn serve(
    sh: &Shared,
    headers: &HeaderMap,
    parsed: Option<Value>,
    legacy: bool,
    data: &[crate::fault::DataFault],
) -> Outcome {
    let mut g = sh.lock();
    let inner = &mut *g;
    let Some(key) = api_key(headers)
        .filter(|k| inner.wallets.contains_key(&(Api::Jobo, (*k).to_string())))
        .map(str::to_string)
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing API key. Send it in the X-Api-Key header.",
            "unauthorized",
            None,
            false,
        )
        .into();
    };
    let mut out_headers = HeaderMap::new();
    match inner.rate_check(sh.rpm, Api::Jobo, &key) {
        RateCheck::Unlimited => {}
        RateCheck::Allowed {
            limit,
            remaining,
            reset_unix,
        } => {
            set(&mut out_headers, "x-ratelimit-limit", limit);
            set(&mut out_headers, "x-ratelimit-remaining", remaining);
            set(&mut out_headers, "x-ratelimit-reset", reset_unix);
        }
        RateCheck::Exceeded {
            limit,
            retry_after,
            reset_unix,
        } => {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Rate limit exceeded: {limit} requests per minute."),
                "rate_limit_exceeded",
                Some(retry_after),
                false,
            );
            let h = resp.headers_mut();
            set(h, "x-ratelimit-limit", limit);
            set(h, "x-ratelimit-remaining", 0);
            set(h, "x-ratelimit-reset", reset_unix);
            return resp.into();
        }
    }
    let with_headers = |mut resp: Response, extra: &HeaderMap| {
        resp.headers_mut().extend(extra.clone());
        Outcome::from(resp)
    };
    let Some(Value::Object(body)) = parsed else {
        return with_headers(
            bad_request("The request body must be a JSON object."),
            &out_headers,
        );
    };
    let cursor = match body.get("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => match Cursor::decode(s, &sh.cursor_tag) {
            Some(c) => Some(c),
            None => return with_headers(bad_request("Invalid cursor"), &out_headers),
        },
        Some(_) => return with_headers(bad_request("Invalid cursor"), &out_headers),
    };
    let batch = match body.get("batch_size") {
        None | Some(Value::Null) => cursor.as_ref().map_or(DEFAULT_BATCH, |c| c.b),
        Some(v) => match v.as_i64().filter(|b| (1..=MAX_BATCH).contains(b)) {
            Some(b) => b as u32,
            None => {
                return with_headers(
                    bad_request(&format!(
                        "batch_size must be an integer between 1 and {MAX_BATCH}, got {v}"
                    )),
                    &out_headers,
                );
            }
        },
    };
    let filters = match &cursor {
        // The cursor carries the scan's filters; any sent alongside are ignored.
        Some(c) => c.f.clone(),
        None => match JoboFilters::from_body(&body) {
            Ok(f) => f,
            Err(m) => return with_headers(bad_request(&m), &out_headers),
        },
    };
    let compiled = match filters.compile() {
        Ok(c) => c,
        Err(m) => return with_headers(bad_request(&m), &out_headers),
    };
    let balance = inner
        .wallets
        .get(&(Api::Jobo, key.clone()))
        .map_or(0.0, |w| w.balance);
    if balance < f64::from(batch) {
        let resp = payment_required(batch, balance, out_headers, false);
        return resp.into();
    }
    let after = cursor.as_ref().map(|c| (c.u, c.i.as_str()));
    let (rows, more) = page(&inner.world, &compiled, after, batch as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(
            Cursor {
                v: 1,
                t: sh.cursor_tag.clone(),
                u: last.updated_at.timestamp(),
                i: last.id.clone(),
                b: batch,
                f: filters.clone(),
                n: 0,
            }
            .encode(),
        ),
        _ => None,
    };
    let mut next_cursor = next_cursor;
    let mut rows = rows;
    use crate::fault::DataFault;
    if data.contains(&DataFault::EmptyMore) {
        // Nothing on this page, yet more to come, from where the request stood.
        rows.clear();
        let (u, i) = after.map_or((i64::MIN, String::new()), |(u, i)| (u, i.to_string()));
        next_cursor = Some(
            Cursor {
                v: 1,
                t: sh.cursor_tag.clone(),
                u,
                i,
                b: batch,
                f: filters.clone(),
                n: 1,
            }
            .encode(),
        );
    }
    if data.contains(&DataFault::RepeatCursor)
        && let Some(Value::String(sent)) = body.get("cursor")
    {
        next_cursor = Some(sent.clone());
    }
    let sent = body.get("cursor").cloned().unwrap_or(Value::Null);
    let before = inner.last_cursor.insert(Api::Jobo, sent);
    if data.contains(&DataFault::CycleCursor)
        && let Some(Value::String(before)) = before
    {
        next_cursor = Some(before);
    }
    let has_more = next_cursor.is_some();
    let mut json_rows: Vec<Value> = rows.iter().map(|s| s.to_json(&sh.base_url)).collect();
    crate::mutate::rows(crate::fault::Api::Jobo, &mut json_rows, data);
    let n = json_rows.len();
    let charge = n as f64;
    let mut new_balance = balance;
    if let Some(w) = inner.wallets.get_mut(&(Api::Jobo, key)) {
        w.balance -= charge;
        w.charged += charge;
        new_balance = w.balance;
    }
    let (used, left) = if legacy {
        ("x-credits-used", "x-credits-remaining")
    } else {
        ("x-credits-deducted", "x-credits-balance")
    };
    set(&mut out_headers, used, credits_text(charge));
    set(&mut out_headers, left, credits_text(new_balance));
    set(&mut out_headers, "x-has-more", has_more);
    let body = json!({"career_sites": json_rows, "next_cursor": next_cursor, "has_more": has_more});
    Outcome {
        response: crate::http::text_response(
            StatusCode::OK,
            "application/json",
            out_headers,
            crate::mutate::body_text(&body),
        ),
        status: 200,
        rows: n,
        charged: charge,
    }
}

/// `GET /api/companies/{id}`: the full company profile. No key is needed (per the newer
/// docs), but requests are rate-limited (per key when one is sent) and take the `companies:`
/// faults; a company without a profile is a 404.
pub(crate) async fn company(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let logged = Bytes::from(serde_json::json!({ "id": id }).to_string());
    let (fired, guard) = sh.begin(Api::Companies, &logged, Value::Null);
    let delay = sh.latency + fired.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let out: Outcome = match fired.terminal {
        Some(kind) => fault(&sh, kind, fired.problem, &headers, None).into(),
        None => {
            let mut g = sh.lock();
            let key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("anonymous")
                .to_string();
            match g.rate_check(sh.rpm, Api::Companies, &key) {
                RateCheck::Exceeded {
                    limit, retry_after, ..
                } => error(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!("Rate limit exceeded: {limit} requests per minute."),
                    "rate_limit_exceeded",
                    Some(retry_after),
                    fired.problem,
                )
                .into(),
                _ => match g
                    .world
                    .sites
                    .iter()
                    .find(|s| s.id == id)
                    .and_then(|s| s.profile_json())
                {
                    Some(mut profile) => {
                        crate::mutate::rows(
                            Api::Companies,
                            std::slice::from_mut(&mut profile),
                            &fired.data,
                        );
                        Outcome {
                            response: crate::http::text_response(
                                StatusCode::OK,
                                "application/json",
                                HeaderMap::new(),
                                crate::mutate::body_text(&profile),
                            ),
                            status: 200,
                            rows: 1,
                            charged: 0.0,
                        }
                    }
                    None => error(
                        StatusCode::NOT_FOUND,
                        &format!("No company profile for id {id:?}"),
                        "not_found",
                        None,
                        fired.problem,
                    )
                    .into(),
                },
            }
        }
    };
    guard.finish(out.status, out.rows, out.charged);
    out.response
}
