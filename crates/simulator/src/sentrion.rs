//! `POST /api/v3/jobs-search/search`: the Sentrion jobs search, with
//! `search_after` pagination, the documented defaults and validation, and
//! once-per-cycle billing.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use chrono::{Days, Months, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::data::{BOARDS, Job, World};
use crate::fault::{Api, FaultKind};
use crate::http::{
    Outcome, credits_json, html_response, json_response, reset_response, set, truncated_response,
};
use crate::state::{RateCheck, Shared};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Location {
    country: Option<String>,
    state: Option<String>,
    city: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct Keywords {
    title: Option<Vec<String>>,
    description: Option<Vec<String>>,
    mode: Option<String>,
}

/// The search body's fields; unknown fields are ignored as the real API does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SearchBody {
    jobs_locations: Option<Vec<Location>>,
    exclude_jobs_locations: Option<Vec<Location>>,
    is_remote: Option<bool>,
    country_exists: Option<bool>,
    published_after: Option<String>,
    published_before: Option<String>,
    department: Option<Vec<String>>,
    industry: Option<Vec<String>>,
    job_type: Option<Vec<String>>,
    seniority_level: Option<Vec<String>>,
    salary_data_available: Option<bool>,
    is_agency: Option<bool>,
    job_keywords: Option<Keywords>,
    exclude_job_keywords: Option<Keywords>,
    job_boards: Option<bool>,
    include_job_boards: Option<Vec<String>>,
    exclude_job_boards: Option<Vec<String>>,
    exclude_duplicates: Option<bool>,
    limit: Option<i64>,
}

/// A validated search, defaults applied.
#[derive(Debug)]
pub(crate) struct Query {
    body: SearchBody,
    after: NaiveDate,
    before: NaiveDate,
    and_keywords: bool,
    and_exclude: bool,
    pub limit: usize,
}

/// A request the API refuses: status, envelope code and message.
pub(crate) type Refusal = (StatusCode, &'static str, String);

fn invalid(message: String) -> Refusal {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
        message,
    )
}

fn parse_date(field: &str, s: &str) -> Result<NaiveDate, Refusal> {
    let ok = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| {
            invalid(format!(
                "{field} must be a date in YYYY-MM-DD format, got {s:?}"
            ))
        })
}

fn keyword_mode(field: &str, k: &Option<Keywords>) -> Result<bool, Refusal> {
    match k.as_ref().and_then(|k| k.mode.as_deref()) {
        None => Ok(false),
        Some(m) if m.eq_ignore_ascii_case("or") => Ok(false),
        Some(m) if m.eq_ignore_ascii_case("and") => Ok(true),
        Some(m) => Err(invalid(format!(
            "{field}.mode must be \"or\" or \"and\", got {m:?}"
        ))),
    }
}

/// Validates a search body (without `search_after`) as the API does on `today`.
pub(crate) fn parse_query(obj: &Map<String, Value>, today: NaiveDate) -> Result<Query, Refusal> {
    let mut m = obj.clone();
    m.remove("search_after");
    let body: SearchBody = serde_json::from_value(Value::Object(m))
        .map_err(|e| invalid(format!("Invalid request body: {e}")))?;
    let limit = body.limit.unwrap_or(100);
    if !(10..=100).contains(&limit) {
        return Err(invalid(format!(
            "limit must be between 10 and 100, got {limit}"
        )));
    }
    let after = match &body.published_after {
        Some(s) => parse_date("published_after", s)?,
        None => today.checked_sub_months(Months::new(2)).unwrap_or(today),
    };
    let before = match &body.published_before {
        Some(s) => parse_date("published_before", s)?,
        None => today.checked_add_days(Days::new(1)).unwrap_or(today),
    };
    let oldest = today.checked_sub_months(Months::new(72)).unwrap_or(today);
    if after < oldest {
        return Err(invalid(format!(
            "published_after cannot be older than 6 years before today ({oldest})"
        )));
    }
    if after >= before {
        return Err(invalid(format!(
            "published_after ({after}) must be earlier than published_before ({before})"
        )));
    }
    let and_keywords = keyword_mode("job_keywords", &body.job_keywords)?;
    let and_exclude = keyword_mode("exclude_job_keywords", &body.exclude_job_keywords)?;
    Ok(Query {
        limit: limit as usize,
        body,
        after,
        before,
        and_keywords,
        and_exclude,
    })
}

/// Folds the spellings one country appears under (the docs use both "US" and
/// "United States") so a location filter matches either.
fn country_norm(s: &str) -> String {
    let l = s.trim().to_lowercase();
    match l.as_str() {
        "us" | "usa" | "u.s." | "united states of america" => "united states".into(),
        "uk" | "gb" | "great britain" => "united kingdom".into(),
        "de" | "deutschland" => "germany".into(),
        "ch" | "schweiz" | "suisse" => "switzerland".into(),
        "jp" => "japan".into(),
        _ => l,
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

fn loc_matches(l: &Location, j: &Job) -> bool {
    let field = |want: &Option<String>, have: &Option<String>, norm: bool| match want {
        None => true,
        Some(w) if w.trim().is_empty() => true,
        Some(w) => have.as_deref().is_some_and(|h| {
            if norm {
                country_norm(w) == country_norm(h)
            } else {
                eq_ci(w, h)
            }
        }),
    };
    field(&l.country, &j.country, true)
        && field(&l.state, &j.state, false)
        && field(&l.city, &j.city, false)
}

fn in_list(list: &Option<Vec<String>>, have: Option<&str>) -> bool {
    match list.as_ref().filter(|l| !l.is_empty()) {
        None => true,
        Some(l) => have.is_some_and(|h| l.iter().any(|x| eq_ci(x, h))),
    }
}

/// Whether a keyword set hits the job; `None` when the set names no keywords.
fn keywords_hit(k: &Keywords, all: bool, j: &Job) -> Option<bool> {
    let title = j.title.as_deref().unwrap_or("").to_lowercase();
    let desc = j.description.as_deref().unwrap_or("").to_lowercase();
    let mut checks = Vec::new();
    for kw in k.title.iter().flatten() {
        checks.push(title.contains(&kw.to_lowercase()));
    }
    for kw in k.description.iter().flatten() {
        checks.push(desc.contains(&kw.to_lowercase()));
    }
    if checks.is_empty() {
        None
    } else if all {
        Some(checks.iter().all(|c| *c))
    } else {
        Some(checks.iter().any(|c| *c))
    }
}

impl Query {
    fn matches(&self, j: &Job) -> bool {
        let b = &self.body;
        let d = j.post_date();
        if d < self.after || d >= self.before {
            return false;
        }
        if let Some(locs) = b.jobs_locations.as_ref().filter(|l| !l.is_empty())
            && !locs.iter().any(|l| loc_matches(l, j))
        {
            return false;
        }
        if let Some(locs) = &b.exclude_jobs_locations
            && locs.iter().any(|l| loc_matches(l, j))
        {
            return false;
        }
        if b.is_remote.is_some_and(|r| j.is_remote != Some(r)) {
            return false;
        }
        if b.country_exists.is_some_and(|c| j.country.is_some() != c) {
            return false;
        }
        if let Some(deps) = b.department.as_ref().filter(|l| !l.is_empty()) {
            let have = j.departments.iter().flatten();
            if !have.into_iter().any(|h| deps.iter().any(|x| eq_ci(x, h))) {
                return false;
            }
        }
        if !in_list(&b.industry, j.industry.as_deref())
            || !in_list(&b.job_type, j.job_type.as_deref())
            || !in_list(&b.seniority_level, j.seniority.as_deref())
            || !in_list(&b.include_job_boards, j.job_board.as_deref())
        {
            return false;
        }
        if let Some(ex) = &b.exclude_job_boards
            && j.job_board
                .as_deref()
                .is_some_and(|h| ex.iter().any(|x| eq_ci(x, h)))
        {
            return false;
        }
        if let Some(want) = b.job_boards {
            let is_board = j
                .job_board
                .as_deref()
                .is_some_and(|h| BOARDS.iter().any(|x| eq_ci(x, h)));
            if is_board != want {
                return false;
            }
        }
        if b.salary_data_available.unwrap_or(true) && !j.has_salary() {
            return false;
        }
        if !b.is_agency.unwrap_or(true) && j.is_agency {
            return false;
        }
        if let Some(k) = &b.job_keywords
            && keywords_hit(k, self.and_keywords, j) == Some(false)
        {
            return false;
        }
        if let Some(k) = &b.exclude_job_keywords
            && keywords_hit(k, self.and_exclude, j) == Some(true)
        {
            return false;
        }
        true
    }

    /// Every match in search order, one posting per job when deduplicating
    /// (the newest, which comes first).
    fn matching<'a>(&self, world: &'a World) -> Vec<&'a Job> {
        self.matching_indices(world)
            .into_iter()
            .map(|i| &world.jobs[i])
            .collect()
    }

    /// [`Query::matching`] as indices into `world.jobs`.
    fn matching_indices(&self, world: &World) -> Vec<usize> {
        let dedup = self.body.exclude_duplicates.unwrap_or(true);
        let mut seen = std::collections::HashSet::new();
        world
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| self.matches(j))
            .filter(|(_, j)| !dedup || j.dedup_key().is_none_or(|k| seen.insert(k)))
            .map(|(i, _)| i)
            .collect()
    }
}

/// The request's search without its page position and size: what the cache is keyed by.
fn search_key(body: &Map<String, Value>, q: &Query) -> String {
    let mut m = body.clone();
    m.remove("search_after");
    m.remove("limit");
    format!(
        "{}|{}|{}",
        q.after,
        q.before,
        crate::state::canonical_json(&Value::Object(m))
    )
}

/// Every job a complete search with this query would return now, in order.
pub(crate) fn truth(world: &World, q: &Query) -> Vec<Value> {
    q.matching(world).iter().map(|j| j.to_json()).collect()
}

/// One page after `after` of the matches `all` (indices into `world.jobs`), the total match
/// count, and the next `search_after`.
fn page<'a>(
    world: &'a World,
    all: &[usize],
    limit: usize,
    after: Option<(i64, i64)>,
) -> (Vec<&'a Job>, usize, Option<[i64; 2]>) {
    let job = |i: usize| &world.jobs[i];
    let start = match after {
        Some(c) => all.partition_point(|&i| (job(i).ts_ms, job(i).seq) >= c),
        None => 0,
    };
    let end = (start + limit).min(all.len());
    let rows: Vec<&Job> = all[start..end].iter().map(|&i| job(i)).collect();
    let next = if end < all.len() {
        rows.last().map(|j| [j.ts_ms, j.seq])
    } else {
        None
    };
    (rows, all.len(), next)
}

/// The failure envelope.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(s) = retry_after {
        set(&mut headers, "retry-after", s);
    }
    let body = json!({"success": false, "data": null, "error": {"code": code, "message": message}});
    json_response(status, "application/json", headers, &body)
}

fn refuse((status, code, message): Refusal) -> Response {
    error(status, code, &message, None)
}

fn parse_search_after(v: Option<&Value>) -> Result<Option<(i64, i64)>, ()> {
    let num = |v: &Value| {
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if a.len() == 2 => match (num(&a[0]), num(&a[1])) {
            (Some(t), Some(s)) => Ok(Some((t, s))),
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

/// The search endpoint.
pub(crate) async fn search(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Some(json!({}))
    } else {
        serde_json::from_slice(&body).ok()
    };
    let cursor = parsed
        .as_ref()
        .and_then(|v| v.get("search_after"))
        .cloned()
        .unwrap_or(Value::Null);
    let (fired, guard) = sh.begin(Api::Sentrion, &body, cursor);
    let delay = sh.latency + fired.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let out = match fired.terminal {
        Some(kind) => Outcome::from(fault(&sh, kind)),
        None => serve(&sh, &headers, parsed, &fired.data),
    };
    guard.finish(out.status, out.rows, out.charged);
    out.response
}

fn fault(sh: &Shared, kind: FaultKind) -> Response {
    let e = |status: StatusCode, code: &str, msg: &str| error(status, code, msg, None);
    match kind {
        FaultKind::TooMany(s) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate limit exceeded. Please slow down.",
            Some(s),
        ),
        FaultKind::TooManyBare => e(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "Rate limit exceeded. Please slow down.",
        ),
        FaultKind::Unavailable(s) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "The service is temporarily unavailable.",
            Some(s),
        ),
        FaultKind::Status(401) => e(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid API key"),
        FaultKind::Status(402) => e(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_credits",
            "Not enough credits for this request",
        ),
        FaultKind::Status(403) => e(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This API key does not have historical search access",
        ),
        FaultKind::Status(408) => e(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "Request timed out",
        ),
        FaultKind::Status(422) => e(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Request validation failed",
        ),
        FaultKind::Status(502) => e(StatusCode::BAD_GATEWAY, "bad_gateway", "Bad gateway"),
        FaultKind::Status(504) => e(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "Upstream timed out",
        ),
        FaultKind::DeadCursor | FaultKind::Restart => e(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid search_after",
        ),
        FaultKind::Reset => reset_response(),
        FaultKind::NonJson => html_response(),
        FaultKind::GzipBomb => crate::http::gzip_bomb_response(),
        FaultKind::Escapes => e(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            crate::fault::ESCAPES,
        ),
        FaultKind::Truncate => {
            let g = sh.lock();
            let today = Utc::now().date_naive();
            let body = match parse_query(&Map::new(), today) {
                Ok(q) => {
                    let all = q.matching_indices(&g.world);
                    let (rows, total, next) = page(&g.world, &all, q.limit, None);
                    let jobs: Vec<Value> = rows.iter().map(|j| j.to_json()).collect();
                    json!({"success": true, "data": {"jobs": jobs, "total": jobs.len(),
                        "total_jobs_found": total, "credits_used": 0, "credits_remaining": 0,
                        "search_after": next}, "error": null})
                }
                Err(_) => json!({"success": true, "data": {"jobs": []}, "error": null}),
            };
            truncated_response(&body)
        }
        FaultKind::Status(_)
        | FaultKind::Timeout(_)
        | FaultKind::Slow(_)
        | FaultKind::Problem
        | FaultKind::LegacyHeaders
        | FaultKind::Data(_) => e(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal server error",
        ),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, key) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

fn serve(
    sh: &Shared,
    headers: &HeaderMap,
    parsed: Option<Value>,
    data: &[crate::fault::DataFault],
) -> Outcome {
    let mut g = sh.lock();
    let inner = &mut *g;
    let Some(key) = bearer(headers)
        .filter(|k| {
            inner
                .wallets
                .contains_key(&(Api::Sentrion, (*k).to_string()))
        })
        .map(str::to_string)
    else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or invalid API key. Send it as Authorization: Bearer <key>.",
            None,
        )
        .into();
    };
    if let RateCheck::Exceeded {
        limit, retry_after, ..
    } = inner.rate_check(sh.rpm, Api::Sentrion, &key)
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            &format!("Rate limit exceeded: {limit} requests per minute per API key."),
            Some(retry_after),
        )
        .into();
    }
    let Some(Value::Object(body)) = parsed else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "The request body must be a JSON object.",
            None,
        )
        .into();
    };
    let Ok(after) = parse_search_after(body.get("search_after")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Invalid search_after: pass the [timestamp, cursor_id] array exactly as returned.",
            None,
        )
        .into();
    };
    let q = match parse_query(&body, Utc::now().date_naive()) {
        Ok(q) => q,
        Err(r) => return refuse(r).into(),
    };
    let all = Arc::clone(
        inner
            .search_cache
            .entry(search_key(&body, &q))
            .or_insert_with(|| Arc::new(q.matching_indices(&inner.world))),
    );
    let (mut rows, total, mut next) = page(&inner.world, &all, q.limit, after);
    use crate::fault::DataFault;
    if data.contains(&DataFault::EmptyMore) {
        // Nothing on this page, yet more to come: from the same place (before everything on
        // a first page; a later page can only point back at itself, a repeated cursor).
        rows.clear();
        next = Some(after.map_or([i64::MAX, i64::MAX], |(t, s)| [t, s]));
    }
    if data.contains(&DataFault::RepeatCursor)
        && let Some((t, s)) = after
    {
        next = Some([t, s]);
    }
    let sent = after.map_or(Value::Null, |(t, s)| serde_json::json!([t, s]));
    let before = inner.last_cursor.insert(Api::Sentrion, sent);
    if data.contains(&DataFault::CycleCursor)
        && let Some(Value::Array(before)) = before
        && let [t, s] = before.as_slice()
        && let (Some(t), Some(s)) = (t.as_i64(), s.as_i64())
    {
        next = Some([t, s]);
    }
    if data.contains(&DataFault::Rewind) {
        // Before everything, as a first page's cursor would be, and never the same twice.
        next = Some([i64::MAX, i64::MAX - inner.log.len() as i64]);
    }
    let Some(wallet) = inner.wallets.get_mut(&(Api::Sentrion, key)) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid API key",
            None,
        )
        .into();
    };
    let fresh: Vec<i64> = rows
        .iter()
        .map(|j| j.seq)
        .filter(|s| !wallet.seen.contains(s))
        .collect();
    let charge = fresh.len() as f64;
    if wallet.balance < charge {
        return error(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_credits",
            &format!(
                "Not enough credits: this page needs {charge}, the balance is {}",
                wallet.balance
            ),
            None,
        )
        .into();
    }
    wallet.balance -= charge;
    wallet.charged += charge;
    wallet.seen.extend(fresh);
    let mut jobs: Vec<Value> = rows.iter().map(|j| j.to_json()).collect();
    crate::mutate::rows(crate::fault::Api::Sentrion, &mut jobs, data);
    let n = jobs.len();
    let body = json!({
        "success": true,
        "data": {
            "jobs": jobs,
            "total": n,
            "total_jobs_found": total,
            "credits_used": credits_json(charge),
            "credits_remaining": credits_json(wallet.balance),
            "search_after": next,
        },
        "error": null,
    });
    Outcome {
        response: crate::http::text_response(
            StatusCode::OK,
            "application/json",
            HeaderMap::new(),
            crate::mutate::body_text(&body),
        ),
        status: 200,
        rows: n,
        charged: charge,
    }
}
