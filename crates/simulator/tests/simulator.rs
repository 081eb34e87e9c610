//! Black-box tests: a real server on 127.0.0.1:0, driven over HTTP/1.1.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use joblake_simulator::{SimConfig, SimHandle, Simulator, parse_faults};
use serde_json::{Value, json};

const JOBO_KEY: &str = "jbe_test_joblake_demo";
const SENTRION_KEY: &str = "sk_test_joblake_demo";
const FEED: &str = "/api/career-sites/feed";
const SEARCH: &str = "/api/v3/jobs-search/search";

struct Resp {
    status: u16,
    headers: HeaderMap,
    /// Err when the body could not be read to the end (reset, truncation).
    body: Result<Bytes, String>,
}

impl Resp {
    fn json(&self) -> Value {
        let b = self.body.as_ref().expect("complete body");
        serde_json::from_slice(b)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }
}

/// One request on a fresh connection; Err when no response head arrives.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Resp, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    Ok(Resp {
        status,
        headers,
        body,
    })
}

async fn jobo(addr: SocketAddr, body: &Value) -> Resp {
    send(
        addr,
        "POST",
        FEED,
        &[("x-api-key", JOBO_KEY)],
        &body.to_string(),
    )
    .await
    .expect("response")
}

async fn sentrion(addr: SocketAddr, body: &Value) -> Resp {
    let auth = format!("Bearer {SENTRION_KEY}");
    send(
        addr,
        "POST",
        SEARCH,
        &[("authorization", auth.as_str())],
        &body.to_string(),
    )
    .await
    .expect("response")
}

async fn admin(addr: SocketAddr, method: &str, path: &str, body: &str) -> Value {
    let r = send(addr, method, path, &[], body).await.expect("response");
    assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    r.json()
}

async fn start(cfg: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Simulator::start(cfg, listener).await
}

async fn start_rows(rows: usize) -> SimHandle {
    start(SimConfig {
        rows,
        ..SimConfig::default()
    })
    .await
}

/// Pages through the feed; returns every row and the number of pages.
async fn jobo_scan(addr: SocketAddr, first: Value) -> (Vec<Value>, usize) {
    let mut rows = Vec::new();
    let mut body = first;
    let mut pages = 0;
    loop {
        let r = jobo(addr, &body).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let v = r.json();
        pages += 1;
        let has_more = v["has_more"].as_bool().expect("has_more");
        assert_eq!(
            r.header("x-has-more").as_deref(),
            Some(&*has_more.to_string())
        );
        rows.extend(v["career_sites"].as_array().expect("rows").iter().cloned());
        if !has_more {
            assert!(v["next_cursor"].is_null());
            break;
        }
        // The cursor carries the filters and batch size.
        body = json!({"cursor": v["next_cursor"]});
    }
    (rows, pages)
}

async fn sentrion_scan(addr: SocketAddr, base: Value) -> (Vec<Value>, Vec<Value>) {
    let mut rows = Vec::new();
    let mut datas = Vec::new();
    let mut body = base.clone();
    loop {
        let r = sentrion(addr, &body).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let v = r.json();
        assert_eq!(v["success"], true);
        assert!(v["error"].is_null());
        let data = v["data"].clone();
        let jobs = data["jobs"].as_array().expect("jobs").clone();
        assert_eq!(data["total"], json!(jobs.len()));
        rows.extend(jobs);
        let next = data["search_after"].clone();
        datas.push(data);
        if next.is_null() {
            break;
        }
        body = base.clone();
        body["search_after"] = next;
    }
    (rows, datas)
}

#[tokio::test]
async fn jobo_full_scan_returns_every_truth_row_once() {
    let sim = start_rows(500).await;
    let truth = admin(sim.addr, "POST", "/_sim/truth/career_sites", "{}").await;
    let truth = truth.as_array().expect("array").clone();
    assert_eq!(truth.len(), 500);
    let (rows, pages) = jobo_scan(sim.addr, json!({"batch_size": 50})).await;
    assert_eq!(pages, 10);
    assert_eq!(rows, truth);
    let mut ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 500);
    // Feed order: (updated_at, id) ascending.
    for w in rows.windows(2) {
        let k = |r: &Value| {
            (
                r["updated_at"].as_str().map(String::from),
                r["id"].as_str().map(String::from),
            )
        };
        assert!(k(&w[0]) < k(&w[1]));
    }
    let credits = admin(sim.addr, "GET", "/_sim/credits", "").await;
    assert_eq!(credits["jobo"]["balance"], json!(1_000_000 - 500));
    assert_eq!(credits["jobo"]["charged"], json!(500));
    let body = serde_json::to_string(&credits).expect("json");
    assert!(!body.contains(JOBO_KEY) && !body.contains(SENTRION_KEY));
    sim.shutdown().await;
}

#[tokio::test]
async fn jobo_filtered_scan_matches_filtered_truth_and_bills_per_row() {
    let sim = start_rows(400).await;
    let filters = json!({"country_codes": ["us", "DE"], "is_agency": false, "founded_after": 1990});
    let truth = admin(
        sim.addr,
        "POST",
        "/_sim/truth/career_sites",
        &filters.to_string(),
    )
    .await;
    let truth = truth.as_array().expect("array").clone();
    assert!(!truth.is_empty() && truth.len() < 400);
    let mut first = filters.clone();
    first["batch_size"] = json!(7);
    let r = jobo(sim.addr, &first).await;
    assert_eq!(r.header("x-credits-deducted").as_deref(), Some("7"));
    assert_eq!(r.header("x-credits-balance").as_deref(), Some("999993"));
    let (rows, pages) = jobo_scan(sim.addr, first).await;
    assert_eq!(rows, truth);
    assert_eq!(pages, truth.len().div_ceil(7));
    sim.shutdown().await;
}

#[tokio::test]
async fn sentrion_full_scan_returns_every_truth_row_once_and_bills_once() {
    let sim = start_rows(600).await;
    let truth = admin(sim.addr, "POST", "/_sim/truth/jobs", "{}").await;
    let truth = truth.as_array().expect("array").clone();
    assert!(truth.len() > 150, "{}", truth.len());
    let (rows, datas) = sentrion_scan(sim.addr, json!({"limit": 100})).await;
    assert_eq!(rows, truth);
    assert_eq!(datas[0]["total_jobs_found"], json!(truth.len()));
    // Defaults: salary data only, no duplicate Job URLs, last two months only.
    let today = chrono::Utc::now().date_naive();
    let oldest = today - chrono::Months::new(2);
    let mut urls = std::collections::HashSet::new();
    for j in &rows {
        assert!(
            !j["Salary Offered"].is_null()
                || !j["Salary From"].is_null()
                || !j["Salary To"].is_null()
        );
        if let Some(u) = j["Job URL"].as_str() {
            assert!(urls.insert(u.to_string()), "duplicate {u}");
        }
        let d =
            chrono::NaiveDate::parse_from_str(j["Post Date"].as_str().expect("date"), "%Y-%m-%d")
                .expect("date");
        assert!(d >= oldest && d <= today);
    }
    let used: i64 = datas
        .iter()
        .map(|d| d["credits_used"].as_i64().expect("n"))
        .sum();
    assert_eq!(used, truth.len() as i64);
    let last = datas.last().expect("page");
    assert_eq!(
        last["credits_remaining"],
        json!(1_000_000 - truth.len() as i64)
    );
    // The same jobs again cost nothing within the billing cycle.
    let (_, again) = sentrion_scan(sim.addr, json!({"limit": 100})).await;
    assert!(again.iter().all(|d| d["credits_used"] == 0));
    // Without the defaults the scan sees more.
    let wide = json!({"salary_data_available": false, "exclude_duplicates": false,
                      "published_after": (today - chrono::Days::new(90)).to_string()});
    let all = admin(sim.addr, "POST", "/_sim/truth/jobs", &wide.to_string()).await;
    assert_eq!(all.as_array().expect("array").len(), 600);
    let mut wide_scan = wide.clone();
    wide_scan["limit"] = json!(37);
    let (rows, _) = sentrion_scan(sim.addr, wide_scan).await;
    assert_eq!(&Value::Array(rows), &all);
    sim.shutdown().await;
}

#[tokio::test]
async fn advance_brings_new_and_updated_rows_seen_by_updated_after() {
    let sim = start_rows(500).await;
    let since = (chrono::Utc::now() - chrono::Duration::minutes(15)).to_rfc3339();
    let (before, _) = jobo_scan(sim.addr, json!({"updated_after": since})).await;
    assert!(before.is_empty());
    let today = chrono::Utc::now().date_naive().to_string();
    let fresh_q = json!({"published_after": today, "exclude_duplicates": false,
                         "salary_data_available": false});
    let fresh_before = admin(sim.addr, "POST", "/_sim/truth/jobs", &fresh_q.to_string()).await;
    let adv = admin(sim.addr, "POST", "/_sim/advance?hours=2", "").await;
    assert_eq!(adv["jobo"], json!({"new": 10, "updated": 10}));
    assert_eq!(adv["sentrion"], json!({"new": 10, "updated": 10}));

    let (after, _) = jobo_scan(sim.addr, json!({"updated_after": since, "batch_size": 50})).await;
    let truth = admin(
        sim.addr,
        "POST",
        "/_sim/truth/career_sites",
        &json!({"updated_after": since}).to_string(),
    )
    .await;
    assert_eq!(&Value::Array(after.clone()), &truth);
    assert!(after.len() >= 11 && after.len() <= 20, "{}", after.len());
    let all = admin(sim.addr, "POST", "/_sim/truth/career_sites", "{}").await;
    assert_eq!(all.as_array().expect("array").len(), 510);

    let fresh_after = admin(sim.addr, "POST", "/_sim/truth/jobs", &fresh_q.to_string()).await;
    let fresh_after = fresh_after.as_array().expect("array");
    assert_eq!(
        fresh_after.len(),
        fresh_before.as_array().expect("array").len() + 20
    );
    // A repost replaces the old posting: one posting per Job URL / Apply URL among what the
    // advance brought. (Older postings may have copies of their own: the duplicates that
    // `exclude_duplicates` drops.)
    let everything = json!({"exclude_duplicates": false, "salary_data_available": false,
        "published_after": (chrono::Utc::now().date_naive() - chrono::Days::new(400)).to_string()});
    let everything = admin(
        sim.addr,
        "POST",
        "/_sim/truth/jobs",
        &everything.to_string(),
    )
    .await;
    let everything = everything.as_array().expect("array");
    let before = fresh_before.as_array().expect("array");
    for j in fresh_after.iter().filter(|j| !before.contains(j)) {
        let key = if j["Job URL"].is_null() {
            "Apply URL"
        } else {
            "Job URL"
        };
        if j[key].is_null() {
            continue;
        }
        let n = everything.iter().filter(|e| e[key] == j[key]).count();
        assert_eq!(n, 1, "{key} {}", j[key]);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_errors_have_the_documented_bodies() {
    let sim = start_rows(50).await;
    let a = sim.addr;
    for bad in [
        json!({"batch_size": 51}),
        json!({"batch_size": 0}),
        json!({"batch_size": "x"}),
    ] {
        let r = jobo(a, &bad).await;
        assert_eq!(r.status, 400);
        let v = r.json();
        assert_eq!(v["status"], 400);
        assert_eq!(v["error"], "Bad Request");
        assert!(v["message"].as_str().expect("msg").contains("batch_size"));
    }
    for cursor in [json!("garbage"), json!("eyJ2IjoxfQ"), json!(12)] {
        let r = jobo(a, &json!({"cursor": cursor})).await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.json(),
            json!({"status": 400, "error": "Bad Request", "message": "Invalid cursor"})
        );
    }
    let r = jobo(a, &json!({"updated_after": "yesterday"})).await;
    assert_eq!(r.status, 400);
    // A cursor from another data set is foreign.
    let other = start(SimConfig {
        seed: 7,
        rows: 120,
        ..SimConfig::default()
    })
    .await;
    let v = jobo(other.addr, &json!({})).await.json();
    let r = jobo(a, &json!({"cursor": v["next_cursor"]})).await;
    assert_eq!(r.status, 400);
    other.shutdown().await;

    let today = chrono::Utc::now().date_naive();
    let cases = [
        json!({"limit": 5}),
        json!({"limit": 101}),
        json!({"published_after": "2026/01/01"}),
        json!({"published_after": (today - chrono::Months::new(12 * 6 + 1)).to_string()}),
        json!({"published_after": today.to_string(), "published_before": today.to_string()}),
        json!({"job_keywords": {"title": ["x"], "mode": "xor"}}),
        json!({"limit": "ten"}),
    ];
    for body in cases {
        let r = sentrion(a, &body).await;
        assert_eq!(r.status, 422, "{body}");
        let v = r.json();
        assert_eq!(v["success"], false);
        assert!(v["data"].is_null());
        assert_eq!(v["error"]["code"], "validation_error");
        assert!(v["error"]["message"].is_string());
    }
    for sa in [
        json!("abc"),
        json!([1]),
        json!(["a", "b"]),
        json!([1, 2, 3]),
    ] {
        let r = sentrion(a, &json!({"search_after": sa})).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"]["code"], "bad_request");
    }
    let r = send(
        a,
        "POST",
        SEARCH,
        &[("authorization", &format!("Bearer {SENTRION_KEY}"))],
        "{nope",
    )
    .await
    .expect("response");
    assert_eq!(r.status, 400);
    // Failed requests are never charged.
    let credits = admin(a, "GET", "/_sim/credits", "").await;
    assert_eq!(credits["jobo"]["charged"], 0);
    assert_eq!(credits["sentrion"]["charged"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_keys_get_401() {
    let sim = start_rows(20).await;
    let a = sim.addr;
    for h in [vec![], vec![("x-api-key", "jbe_live_wrong")]] {
        let r = send(a, "POST", FEED, &h, "{}").await.expect("response");
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(v["status"], 401);
        assert_eq!(v["error"], "Unauthorized");
    }
    for h in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", SENTRION_KEY)],
        // Keys are per API.
        vec![("authorization", "Bearer jbe_test_joblake_demo")],
    ] {
        let r = send(a, "POST", SEARCH, &h, "{}").await.expect("response");
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "unauthorized");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn jobo_402_when_balance_is_below_the_batch() {
    let sim = start(SimConfig {
        rows: 100,
        credits: 60.0,
        ..SimConfig::default()
    })
    .await;
    let r = jobo(sim.addr, &json!({"batch_size": 50})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-credits-balance").as_deref(), Some("10"));
    let r = jobo(sim.addr, &json!({"batch_size": 50})).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.header("x-credits-required").as_deref(), Some("50"));
    assert_eq!(r.header("x-credits-balance").as_deref(), Some("10"));
    let v = r.json();
    assert_eq!(v["credits_required"], 50);
    assert_eq!(v["credits_balance"], 10);
    assert_eq!(v["status"], 402);
    let r = jobo(sim.addr, &json!({"batch_size": 10})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-credits-balance").as_deref(), Some("0"));
    sim.shutdown().await;
}

/// What a faulted request must look like; `None` = the connection fails.
type Check = fn(&Resp);

async fn fault_case(addr: SocketAddr, api: &str, kind: &str, check: Check) {
    let spec = format!("{api}:{kind}@2");
    admin(addr, "POST", "/_sim/faults", &spec).await;
    let call = |addr| async move {
        if api == "jobo" {
            send(
                addr,
                "POST",
                FEED,
                &[("x-api-key", JOBO_KEY)],
                r#"{"batch_size":10}"#,
            )
            .await
        } else {
            let auth = format!("Bearer {SENTRION_KEY}");
            send(
                addr,
                "POST",
                SEARCH,
                &[("authorization", auth.as_str())],
                r#"{"limit":10}"#,
            )
            .await
        }
    };
    let r1 = call(addr).await.expect("first request answers");
    assert_eq!(r1.status, 200, "{spec}: request 1");
    let r2 = call(addr).await;
    match r2 {
        Ok(r) => check(&r),
        Err(e) => check(&Resp {
            status: 0,
            headers: HeaderMap::new(),
            body: Err(e),
        }),
    }
    let r3 = call(addr).await.expect("third request answers");
    assert_eq!(r3.status, 200, "{spec}: request 3");
    assert!(r3.body.is_ok());
}

fn status_is(r: &Resp, s: u16) {
    assert_eq!(r.status, s, "{:?}", r.body);
}

fn jobo_error(r: &Resp, s: u16) {
    status_is(r, s);
    let v = r.json();
    assert_eq!(v["status"], s);
    assert!(v["error"].is_string() && v["message"].is_string());
}

fn sentrion_error(r: &Resp, s: u16, code: &str) {
    status_is(r, s);
    let v = r.json();
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], code);
}

fn broken(r: &Resp) {
    assert!(
        r.status == 0 || r.body.is_err(),
        "expected a broken response, got {}",
        r.status
    );
}

#[tokio::test]
async fn each_fault_fires_on_its_request() {
    let sim = start_rows(100).await;
    let a = sim.addr;
    let jobo_cases: Vec<(&str, Check)> = vec![
        ("429=7", |r| {
            jobo_error(r, 429);
            assert_eq!(r.header("retry-after").as_deref(), Some("7"));
            assert_eq!(r.json()["retry_after"], 7);
        }),
        ("429-bare", |r| {
            jobo_error(r, 429);
            assert!(r.header("retry-after").is_none());
        }),
        ("503", |r| {
            jobo_error(r, 503);
            assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        }),
        ("500", |r| jobo_error(r, 500)),
        ("502", |r| jobo_error(r, 502)),
        ("504", |r| jobo_error(r, 504)),
        ("408", |r| jobo_error(r, 408)),
        ("401", |r| jobo_error(r, 401)),
        ("403", |r| jobo_error(r, 403)),
        ("422", |r| jobo_error(r, 422)),
        ("402", |r| {
            jobo_error(r, 402);
            assert_eq!(r.header("x-credits-required").as_deref(), Some("10"));
            assert!(r.header("x-credits-balance").is_some());
            assert_eq!(r.json()["credits_required"], 10);
        }),
        ("dead_cursor", |r| {
            status_is(r, 400);
            assert_eq!(
                r.json(),
                json!({"status": 400, "error": "Bad Request", "message": "Invalid cursor"})
            );
        }),
        ("restart", |r| {
            status_is(r, 409);
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/problem+json")
            );
            let v = r.json();
            assert_eq!(v["code"], "feed_cursor_restart_required");
            assert_eq!(v["status"], 409);
            assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string());
        }),
        ("reset", broken),
        ("truncate", |r| {
            status_is(r, 200);
            assert!(r.body.is_err(), "body should be cut short");
        }),
        ("nonjson", |r| {
            status_is(r, 200);
            assert!(
                r.header("content-type")
                    .unwrap_or_default()
                    .starts_with("text/html")
            );
            assert!(serde_json::from_slice::<Value>(r.body.as_ref().expect("body")).is_err());
        }),
        ("legacy_headers", |r| {
            status_is(r, 200);
            assert_eq!(r.header("x-credits-used").as_deref(), Some("10"));
            assert!(r.header("x-credits-remaining").is_some());
            assert!(r.header("x-credits-deducted").is_none());
        }),
    ];
    for (kind, check) in jobo_cases {
        fault_case(a, "jobo", kind, check).await;
    }
    // `problem` switches an injected error to problem+json with retry_after_seconds.
    admin(a, "POST", "/_sim/faults", "jobo:503=9@1,jobo:problem@1").await;
    let r = jobo(a, &json!({})).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    let v = r.json();
    assert_eq!(v["retry_after_seconds"], 9);
    assert_eq!(v["status"], 503);

    let sentrion_cases: Vec<(&str, Check)> = vec![
        ("429=3", |r| {
            sentrion_error(r, 429, "rate_limit_exceeded");
            assert_eq!(r.header("retry-after").as_deref(), Some("3"));
        }),
        ("429-bare", |r| {
            sentrion_error(r, 429, "rate_limit_exceeded");
            assert!(r.header("retry-after").is_none());
        }),
        ("503", |r| {
            status_is(r, 503);
            assert_eq!(r.header("retry-after").as_deref(), Some("5"));
        }),
        ("500", |r| sentrion_error(r, 500, "server_error")),
        ("401", |r| sentrion_error(r, 401, "unauthorized")),
        ("422", |r| sentrion_error(r, 422, "validation_error")),
        ("dead_cursor", |r| {
            sentrion_error(r, 400, "bad_request");
            assert_eq!(r.json()["error"]["message"], "Invalid search_after");
        }),
        ("reset", broken),
        ("truncate", |r| assert!(r.body.is_err())),
        ("nonjson", |r| status_is(r, 200)),
    ];
    for (kind, check) in sentrion_cases {
        fault_case(a, "sentrion", kind, check).await;
    }

    // The log names each fault; faulted requests are never charged.
    let log = admin(a, "GET", "/_sim/log", "").await;
    let log = log.as_array().expect("array");
    let restart = log
        .iter()
        .find(|e| e["fault"] == "restart")
        .expect("restart logged");
    assert_eq!(restart["status"], 409);
    assert_eq!(restart["credits_charged"], 0.0);
    assert_eq!(restart["rows"], 0);
    for e in log
        .iter()
        .filter(|e| !e["fault"].is_null() && e["fault"] != "legacy_headers")
    {
        assert_eq!(e["credits_charged"], 0.0, "{e}");
    }
    let text = serde_json::to_string(log).expect("json");
    assert!(!text.contains(JOBO_KEY) && !text.contains(SENTRION_KEY));
    let seqs: Vec<u64> = log.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Identical bodies share a request key.
    let keys: Vec<&Value> = log
        .iter()
        .filter(|e| e["api"] == "jobo" && e["fault"].is_null())
        .map(|e| &e["request_key"])
        .collect();
    assert!(keys.windows(2).all(|w| w[0] == w[1]));

    admin(a, "DELETE", "/_sim/faults", "").await;
    assert_eq!(admin(a, "GET", "/_sim/faults", "").await["spec"], "");
    let r = send(a, "POST", "/_sim/faults", &[], "jobo:teapot")
        .await
        .expect("response");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().expect("msg").contains("teapot"));
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_and_timeout_delay_then_answer() {
    let sim = start(SimConfig {
        rows: 30,
        faults: parse_faults("jobo:slow=300@1,sentrion:timeout=1@1").expect("spec"),
        ..SimConfig::default()
    })
    .await;
    let t = Instant::now();
    let r = jobo(sim.addr, &json!({})).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    let r = sentrion(sim.addr, &json!({"limit": 10})).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_secs(1));
    let t = Instant::now();
    assert_eq!(jobo(sim.addr, &json!({})).await.status, 200);
    assert!(t.elapsed() < Duration::from_millis(300));
    sim.shutdown().await;
}

#[tokio::test]
async fn percent_faults_are_seeded() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let sim = start(SimConfig {
            seed,
            rows: 20,
            faults: parse_faults("jobo:500%50").expect("spec"),
            ..SimConfig::default()
        })
        .await;
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(jobo(sim.addr, &json!({})).await.status);
        }
        sim.shutdown().await;
        out
    }
    let a = statuses(3).await;
    assert_eq!(a, statuses(3).await);
    assert!(a.contains(&500) && a.contains(&200));
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = start(SimConfig {
        rows: 20,
        rpm: Some(3),
        ..SimConfig::default()
    })
    .await;
    for i in 0..3 {
        let r = jobo(sim.addr, &json!({})).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(r.header("x-ratelimit-remaining"), Some((2 - i).to_string()));
        assert!(r.header("x-ratelimit-reset").is_some());
    }
    let r = jobo(sim.addr, &json!({})).await;
    assert_eq!(r.status, 429);
    let secs: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("int");
    assert!((1..=60).contains(&secs));
    assert_eq!(r.json()["retry_after"], secs);
    for _ in 0..3 {
        assert_eq!(sentrion(sim.addr, &json!({"limit": 10})).await.status, 200);
    }
    let r = sentrion(sim.addr, &json!({"limit": 10})).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let credits = admin(sim.addr, "GET", "/_sim/credits", "").await;
    assert_eq!(credits["jobo"]["charged"], json!(3 * 20));
    sim.shutdown().await;
}

#[tokio::test]
async fn same_seed_gives_identical_data() {
    let a = start(SimConfig {
        seed: 9,
        rows: 200,
        ..SimConfig::default()
    })
    .await;
    let b = start(SimConfig {
        seed: 9,
        rows: 200,
        ..SimConfig::default()
    })
    .await;
    let c = start(SimConfig {
        seed: 10,
        rows: 200,
        ..SimConfig::default()
    })
    .await;
    // details_url embeds each server's port; compare everything else.
    let strip = |v: Value| -> Value {
        Value::Array(
            v.as_array()
                .expect("array")
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r["details_url"] = Value::Null;
                    r
                })
                .collect(),
        )
    };
    let sa = strip(admin(a.addr, "GET", "/_sim/truth/career_sites", "").await);
    let sb = strip(admin(b.addr, "GET", "/_sim/truth/career_sites", "").await);
    let sc = strip(admin(c.addr, "GET", "/_sim/truth/career_sites", "").await);
    assert_eq!(sa, sb);
    assert_ne!(sa, sc);
    let ja = admin(a.addr, "GET", "/_sim/truth/jobs", "").await;
    let jb = admin(b.addr, "GET", "/_sim/truth/jobs", "").await;
    assert_eq!(ja, jb);
    let adv_a = admin(a.addr, "POST", "/_sim/advance?hours=3", "").await;
    let adv_b = admin(b.addr, "POST", "/_sim/advance?hours=3", "").await;
    assert_eq!(adv_a["jobo"], adv_b["jobo"]);
    let names = |v: &Value| -> Vec<Value> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| r["name"].clone())
            .collect()
    };
    let sa = admin(a.addr, "GET", "/_sim/truth/career_sites", "").await;
    let sb = admin(b.addr, "GET", "/_sim/truth/career_sites", "").await;
    assert_eq!(names(&sa), names(&sb));
    for s in [a, b, c] {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn company_profiles_follow_details_url_and_gone_ones_are_404() {
    let sim = start_rows(300).await;
    assert_eq!(sim.url(), format!("http://127.0.0.1:{}", sim.addr.port()));
    let rows = admin(sim.addr, "GET", "/_sim/truth/career_sites", "").await;
    let truth = admin(sim.addr, "GET", "/_sim/truth/companies", "").await;
    let truth: std::collections::HashMap<String, Value> = truth
        .as_array()
        .expect("array")
        .iter()
        .map(|p| (p["id"].as_str().expect("id").to_string(), p.clone()))
        .collect();
    let (mut served, mut gone) = (0, 0);
    for row in rows.as_array().expect("array") {
        let Some(url) = row["details_url"].as_str() else {
            assert!(!truth.contains_key(row["id"].as_str().unwrap()));
            continue;
        };
        let path = url.strip_prefix(&sim.url()).expect("same base");
        let r = send(sim.addr, "GET", path, &[], "")
            .await
            .expect("response");
        match truth.get(row["id"].as_str().unwrap()) {
            Some(profile) => {
                assert_eq!(r.status, 200);
                let got: Value =
                    serde_json::from_slice(r.body.as_ref().expect("body")).expect("JSON");
                assert_eq!(&got, profile);
                served += 1;
            }
            None => {
                assert_eq!(r.status, 404, "a listed profile that has gone");
                gone += 1;
            }
        }
    }
    assert!(served > 250 && gone > 0, "{served} served, {gone} gone");
    let r = send(sim.addr, "GET", "/api/companies/nope", &[], "")
        .await
        .expect("response");
    assert_eq!(r.status, 404);
    sim.shutdown().await;
}
