//! The `/_sim/` admin routes: ground truth, time, faults, credits and the
//! request log. They need no key.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::fault::{Api, parse_faults};
use crate::http::{credits_json, json_response};
use crate::jobo::JoboFilters;
use crate::sentrion;
use crate::state::{Shared, hex};

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, "application/json", HeaderMap::new(), body)
}

fn bad(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        "application/json",
        HeaderMap::new(),
        &json!({"error": message}),
    )
}

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn body_object(body: &Bytes) -> Option<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

const NOT_AN_OBJECT: &str = "the body must be a JSON object";

/// `POST /_sim/advance?hours=H`.
pub(crate) async fn advance(State(sh): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let hours = query_pairs(&q)
        .into_iter()
        .find(|(k, _)| k == "hours")
        .map(|(_, v)| v)
        .unwrap_or_else(|| "1".into());
    let Some(hours) = hours
        .parse::<f64>()
        .ok()
        .filter(|h| h.is_finite() && *h >= 0.0)
    else {
        return bad("hours must be a non-negative number");
    };
    let now = Utc::now();
    let (jobo, sentrion) = {
        let mut g = sh.lock();
        g.search_cache.clear();
        g.world.advance(hours, now)
    };
    ok(&json!({
        "hours": hours,
        "at": crate::data::fmt_ts(now),
        "jobo": jobo,
        "sentrion": sentrion,
    }))
}

fn career_sites_truth(sh: &Shared, filters: &Map<String, Value>) -> Response {
    let compiled = match JoboFilters::from_body(filters).and_then(|f| f.compile()) {
        Ok(c) => c,
        Err(m) => return bad(&m),
    };
    let rows = crate::jobo::truth(&sh.lock().world, &compiled, &sh.base_url);
    ok(&Value::Array(rows))
}

/// The filters of a truth request: a POST's JSON body, or a GET's query string (as
/// strings); `None` when a POST body is not a JSON object.
fn truth_filters(
    method: &Method,
    query: &Option<String>,
    body: &Bytes,
) -> Option<Map<String, Value>> {
    if method == Method::POST {
        return body_object(body);
    }
    Some(
        query_pairs(query)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// `GET|POST /_sim/truth/career_sites`: the sites a feed with these filters pages through.
pub(crate) async fn truth_sites(
    State(sh): State<Arc<Shared>>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    match truth_filters(&method, &q, &body) {
        Some(m) => career_sites_truth(&sh, &m),
        None => bad(NOT_AN_OBJECT),
    }
}

/// `GET /_sim/truth/companies`: every company profile the simulator serves.
pub(crate) async fn truth_companies(State(sh): State<Arc<Shared>>) -> Response {
    let g = sh.lock();
    ok(&Value::Array(
        g.world
            .sites
            .iter()
            .filter_map(|s| s.profile_json())
            .collect(),
    ))
}

fn jobs_truth(sh: &Shared, body: &Map<String, Value>) -> Response {
    let mut m = body.clone();
    m.remove("limit");
    m.remove("search_after");
    match sentrion::parse_query(&m, Utc::now().date_naive()) {
        Ok(q) => ok(&Value::Array(sentrion::truth(&sh.lock().world, &q))),
        Err((status, code, message)) => sentrion::error(status, code, &message, None),
    }
}

/// `GET|POST /_sim/truth/jobs`: the jobs a search with this body (or these
/// `published_after`/`published_before` query values) pages through.
pub(crate) async fn truth_jobs(
    State(sh): State<Arc<Shared>>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    match truth_filters(&method, &q, &body) {
        Some(m) => jobs_truth(&sh, &m),
        None => bad(NOT_AN_OBJECT),
    }
}

/// `GET /_sim/truth/job_facts`: what each job served now really is, beyond what the API
/// says: `{"job": <the job as served>, "company_id": <its career site's id>, "salary_period":
/// <the period its pay was drawn for>, "salary_figures":
/// [from, to] as drawn, also when the posting gives them only in its text}`, for scoring `job_companies` and `salary_period`.
pub(crate) async fn truth_job_facts(State(sh): State<Arc<Shared>>) -> Response {
    let g = sh.lock();
    ok(&Value::Array(
        g.world
            .jobs
            .iter()
            .map(|j| {
                serde_json::json!({
                    "job": j.to_json(),
                    "company_id": j.company_id,
                    "salary_period": j.pay.map(|p| p.period.name()),
                    "salary_figures": j.pay_figures,
                })
            })
            .collect(),
    ))
}

/// `GET /_sim/log`: every API request so far, in arrival order.
pub(crate) async fn log(State(sh): State<Arc<Shared>>) -> Response {
    let mut entries = sh.lock().log.clone();
    entries.sort_by_key(|e| e.seq);
    ok(&serde_json::to_value(entries).unwrap_or(Value::Array(Vec::new())))
}

fn faults_view(sh: &Shared) -> Response {
    ok(&json!({"spec": sh.lock().faults.to_string()}))
}

/// `GET /_sim/faults`: the plan in force.
pub(crate) async fn faults_get(State(sh): State<Arc<Shared>>) -> Response {
    faults_view(&sh)
}

/// `POST /_sim/faults` with a spec as the body text: replaces the plan.
pub(crate) async fn faults_post(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let spec = String::from_utf8_lossy(&body);
    match parse_faults(spec.trim()) {
        Ok(plan) => {
            sh.set_faults(plan);
            faults_view(&sh)
        }
        Err(e) => bad(&e),
    }
}

/// `DELETE /_sim/faults`: clears the plan.
pub(crate) async fn faults_delete(State(sh): State<Arc<Shared>>) -> Response {
    sh.set_faults(Default::default());
    faults_view(&sh)
}

fn credits_view(sh: &Shared) -> Value {
    let g = sh.lock();
    let mut out = Map::new();
    for api in [Api::Jobo, Api::Sentrion] {
        let mut keys = Vec::new();
        let (mut balance, mut charged) = (0.0, 0.0);
        for (i, (a, k)) in sh.key_order.iter().filter(|(a, _)| *a == api).enumerate() {
            if let Some(w) = g.wallets.get(&(*a, k.clone())) {
                balance += w.balance;
                charged += w.charged;
                keys.push(json!({
                    "key": format!("key{}", i + 1),
                    // A fingerprint, never the key: enough to tell keys apart.
                    "fingerprint": hex(&Sha256::digest(k.as_bytes())[..4]),
                    "balance": credits_json(w.balance),
                    "charged": credits_json(w.charged),
                    "billed_jobs": w.seen.len(),
                }));
            }
        }
        out.insert(
            api.name().into(),
            json!({"balance": credits_json(balance), "charged": credits_json(charged), "keys": keys}),
        );
    }
    Value::Object(out)
}

/// `GET /_sim/credits`: balances per API (summed over keys) and per key.
pub(crate) async fn credits_get(State(sh): State<Arc<Shared>>) -> Response {
    ok(&credits_view(&sh))
}

/// `POST /_sim/credits` `{"jobo": n, "sentrion": n, "reset_cycle": bool}`:
/// sets every key's balance of an API, or starts a new Sentrion billing cycle.
pub(crate) async fn credits_post(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(m) = body_object(&body) else {
        return bad(NOT_AN_OBJECT);
    };
    {
        let mut g = sh.lock();
        for api in [Api::Jobo, Api::Sentrion] {
            match m.get(api.name()) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let Some(n) = v.as_f64() else {
                        return bad(&format!("{} must be a number", api.name()));
                    };
                    for ((a, _), w) in g.wallets.iter_mut() {
                        if *a == api {
                            w.balance = n;
                        }
                    }
                }
            }
        }
        if m.get("reset_cycle").and_then(Value::as_bool) == Some(true) {
            for w in g.wallets.values_mut() {
                w.seen.clear();
            }
        }
    }
    ok(&credits_view(&sh))
}
