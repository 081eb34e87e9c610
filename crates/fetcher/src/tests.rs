//! Client behaviour against a tiny in-process server that plays canned answers per request.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::*;

const KEY: &str = "jbe_live_TOPSECRET_0123456789abcdef";

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One canned answer.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    delay: Option<Duration>,
    /// Send the status and part of the body, then break the stream.
    cut_off: bool,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: None,
            cut_off: false,
        }
    }
    fn ok(body: Value) -> Self {
        Self::new(200, body.to_string())
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    fn cut_off(mut self) -> Self {
        self.cut_off = true;
        self
    }
}

type Dynamic = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// Either a fixed answer or one computed from the request.
#[derive(Clone)]
enum Canned {
    Fixed(Reply),
    With(Dynamic),
}

impl From<Reply> for Canned {
    fn from(r: Reply) -> Self {
        Canned::Fixed(r)
    }
}

struct ServerState {
    replies: Vec<Canned>,
    seen: Mutex<Vec<Seen>>,
}

struct TestServer {
    url: String,
    state: Arc<ServerState>,
}

impl TestServer {
    async fn start(replies: Vec<Canned>) -> Self {
        let state = Arc::new(ServerState {
            replies,
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestServer { url, state }
    }

    async fn fixed(replies: Vec<Reply>) -> Self {
        Self::start(replies.into_iter().map(Canned::from).collect()).await
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        at: Instant::now(),
        path: uri.path().to_owned(),
        headers,
        body,
    };
    let index = {
        let mut log = state.seen.lock().unwrap();
        log.push(seen.clone());
        log.len() - 1
    };
    let reply = match state.replies.get(index) {
        Some(Canned::Fixed(r)) => r.clone(),
        Some(Canned::With(f)) => f(&seen),
        None => Reply::new(418, "no canned reply left"),
    };
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    let body = if reply.cut_off {
        let half = reply.body[..reply.body.len() / 2].to_vec();
        Body::from_stream(futures::stream::iter(vec![
            Ok(Bytes::from(half)),
            Err(io::Error::other("connection dropped mid-body")),
        ]))
    } else {
        Body::from(reply.body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    for (k, v) in reply.headers {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

fn config(url: &str) -> ClientConfig {
    ClientConfig {
        base_url: url.to_owned(),
        key: SecretString::from(KEY),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(40),
        },
        pacer: Pacer::unlimited(),
    }
}

fn jobo(server: &TestServer) -> JoboClient {
    JoboClient::new(config(&server.url)).unwrap()
}

fn sentrion(server: &TestServer) -> SentrionClient {
    SentrionClient::new(config(&server.url)).unwrap()
}

fn jobo_page(ids: &[&str], next: Option<&str>, has_more: bool) -> Value {
    let rows: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "name": format!("Co {id}"), "ats": "lever"}))
        .collect();
    json!({"career_sites": rows, "next_cursor": next, "has_more": has_more})
}

fn sentrion_page(n: usize, search_after: Option<&str>) -> String {
    let jobs: Vec<Value> = (0..n)
        .map(|i| json!({"Job Title": format!("Engineer {i}"), "Job URL": format!("https://x/{i}")}))
        .collect();
    // Built by hand so search_after keeps its exact spelling.
    format!(
        r#"{{"success":true,"data":{{"jobs":{},"total":{n},"total_jobs_found":2847,"credits_used":{n},"credits_remaining":9998.5,"search_after":{}}},"error":null}}"#,
        Value::from(jobs),
        search_after.unwrap_or("null")
    )
}

fn ok_jobo() -> Reply {
    Reply::ok(jobo_page(&["a"], None, false))
}

// ---------------------------------------------------------------- happy paths

#[tokio::test]
async fn jobo_pages_and_cursor_round_trip() {
    let server = TestServer::fixed(vec![
        Reply::ok(jobo_page(&["a", "b"], Some("cur/1=="), true))
            .header("x-credits-deducted", "2")
            .header("x-credits-balance", "98")
            .header("x-has-more", "true"),
        Reply::ok(jobo_page(&["c"], None, false))
            .header("x-credits-deducted", "1")
            .header("x-credits-balance", "97"),
    ])
    .await;
    let client = jobo(&server);
    let scan = JoboScan {
        filters: json!({"industries": ["fintech"]})
            .as_object()
            .cloned()
            .unwrap(),
        batch_size: 2,
        ..JoboScan::default()
    };

    let first = client.fetch_page(&scan, None).await.unwrap();
    assert_eq!(first.rows.len(), 2);
    assert_eq!(
        serde_json::from_str::<Value>(first.rows.get(0).unwrap()).unwrap()["id"],
        "a"
    );
    assert_eq!(first.next_cursor.as_deref(), Some("cur/1=="));
    assert!(first.has_more);
    assert_eq!(
        first.credits,
        Credits {
            used: Some(2.0),
            balance: Some(98.0)
        }
    );
    assert!(first.bytes > 0);

    let second = client
        .fetch_page(&scan, first.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(second.rows.len(), 1);
    assert!(!second.has_more);
    assert_eq!(second.next_cursor, None);

    let seen = server.seen();
    assert_eq!(seen[0].path, "/api/career-sites/feed");
    assert_eq!(seen[0].header("x-api-key"), Some(KEY));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        json!({"industries": ["fintech"], "batch_size": 2})
    );
    assert_eq!(seen[1].json()["cursor"], "cur/1==");
    let stats = client.stats().snapshot();
    assert_eq!((stats.requests, stats.retries, stats.rows), (2, 0, 3));
}

#[tokio::test]
async fn jobo_older_credit_headers_and_has_more_header() {
    let server = TestServer::fixed(vec![
        Reply::new(200, r#"{"career_sites":[{"id":"z"}],"next_cursor":"n2"}"#)
            .header("x-credits-used", "1.5")
            .header("x-credits-remaining", "10")
            .header("x-has-more", "true"),
    ])
    .await;
    let page = jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap();
    assert!(page.has_more);
    assert_eq!(
        page.credits,
        Credits {
            used: Some(1.5),
            balance: Some(10.0)
        }
    );
}

#[tokio::test]
async fn sentrion_pages_and_raw_cursor_round_trip() {
    // The space inside the array must survive: the cursor goes back exactly as received.
    let cursor = "[1710500000000, 67890]";
    let server = TestServer::fixed(vec![
        Reply::new(200, sentrion_page(10, Some(cursor))),
        Reply::new(200, sentrion_page(3, None)),
    ])
    .await;
    let client = sentrion(&server);
    let scan = SentrionScan {
        filters: json!({"department": ["Engineering"]})
            .as_object()
            .cloned()
            .unwrap(),
        limit: 10,
        published_after: chrono::NaiveDate::from_ymd_opt(2024, 3, 1),
        published_before: None,
    };
    let first = client.fetch_page(&scan, None).await.unwrap();
    assert_eq!(first.rows.len(), 10);
    assert_eq!(first.next_cursor.as_deref(), Some(cursor));
    assert!(first.has_more);
    assert_eq!(first.total_found, Some(2847));
    assert_eq!(
        first.credits,
        Credits {
            used: Some(10.0),
            balance: Some(9998.5)
        }
    );

    let second = client
        .fetch_page(&scan, first.next_cursor.as_deref())
        .await
        .unwrap();
    assert!(!second.has_more);
    assert_eq!(second.next_cursor, None);

    let seen = server.seen();
    assert_eq!(seen[0].path, "/api/v3/jobs-search/search");
    assert_eq!(
        seen[0].header("authorization").map(str::to_owned),
        Some(format!("Bearer {KEY}"))
    );
    assert_eq!(
        seen[0].json(),
        json!({"department": ["Engineering"], "limit": 10, "published_after": "2024-03-01"})
    );
    let raw = String::from_utf8(seen[1].body.to_vec()).unwrap();
    assert!(raw.contains(&format!("\"search_after\":{cursor}")), "{raw}");
}

#[tokio::test]
async fn sentrion_empty_search_after_ends_the_scan() {
    let server = TestServer::fixed(vec![Reply::new(200, sentrion_page(0, Some("[]")))]).await;
    let page = sentrion(&server)
        .fetch_page(&SentrionScan::default(), None)
        .await
        .unwrap();
    assert!(!page.has_more);
    assert_eq!(page.next_cursor, None);
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn retry_after_header_is_honoured_over_backoff() {
    let server = TestServer::fixed(vec![
        Reply::new(
            429,
            r#"{"status":429,"error":"Too Many Requests","message":"slow down"}"#,
        )
        .header("retry-after", "1"),
        ok_jobo(),
    ])
    .await;
    let client = jobo(&server);
    let started = Instant::now();
    client.fetch_page(&JoboScan::default(), None).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    // The backoff cap is 40 ms in tests, so only Retry-After explains a one-second gap.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(990));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let stats = client.stats().snapshot();
    assert_eq!(
        (stats.requests, stats.retries, stats.throttled, stats.errors),
        (2, 1, 1, 1)
    );
}

#[tokio::test]
async fn retry_after_in_body_is_honoured() {
    let server = TestServer::fixed(vec![
        Reply::new(
            429,
            r#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"slow","code":"rate_limited","retry_after_seconds":0.3}"#,
        ),
        Reply::new(429, r#"{"error":"rate limited","retry_after":0.2}"#),
        ok_jobo(),
    ])
    .await;
    jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap();
    let seen = server.seen();
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(290));
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(190));
}

#[tokio::test]
async fn throttle_without_retry_after_backs_off_and_succeeds() {
    let server =
        TestServer::fixed(vec![Reply::new(429, ""), Reply::new(429, "{}"), ok_jobo()]).await;
    let client = jobo(&server);
    client.fetch_page(&JoboScan::default(), None).await.unwrap();
    assert_eq!(server.count(), 3);
    assert_eq!(client.stats().snapshot().throttled, 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    for status in [408, 500, 502, 503, 504] {
        let server = TestServer::fixed(vec![
            Reply::new(status, "<html>oops</html>").header("content-type", "text/html"),
            ok_jobo(),
        ])
        .await;
        let page = jobo(&server).fetch_page(&JoboScan::default(), None).await;
        assert!(page.is_ok(), "{status}: {page:?}");
        assert_eq!(server.count(), 2, "{status}");
    }
}

#[tokio::test]
async fn jobo_503_retry_after_five_style_is_used() {
    let server = TestServer::fixed(vec![
        Reply::new(503, "").header("retry-after", "0.2"),
        ok_jobo(),
    ])
    .await;
    jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap();
    let seen = server.seen();
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(190));
}

#[tokio::test]
async fn retries_run_out_into_exhausted() {
    let server = TestServer::fixed(vec![Reply::new(503, r#"{"message":"busy"}"#); 10]).await;
    let client = jobo(&server);
    let err = client
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap_err();
    match &err {
        FetchError::Exhausted {
            attempts,
            last,
            last_status,
            ..
        } => {
            assert_eq!(*attempts, 4);
            assert!(last.contains("503") && last.contains("busy"), "{last}");
            assert_eq!(*last_status, Some(503));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_terminal());
    assert_eq!(err.status(), Some(503));
    assert_eq!(server.count(), 4);
    let stats = client.stats().snapshot();
    assert_eq!((stats.requests, stats.retries, stats.errors), (4, 3, 4));
}

#[tokio::test]
async fn long_retry_after_stops_instead_of_hanging() {
    let server = TestServer::fixed(vec![Reply::new(429, "").header("retry-after", "86400")]).await;
    let err = jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::RateLimited { status: 429, .. }),
        "{err}"
    );
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn truncated_body_is_retried() {
    let server = TestServer::fixed(vec![
        Reply::ok(jobo_page(&["a", "b", "c"], None, false)).cut_off(),
        ok_jobo(),
    ])
    .await;
    let page = jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn non_json_success_is_retried_then_malformed() {
    let server = TestServer::fixed(vec![
        Reply::new(200, "<html>maintenance</html>"),
        Reply::new(200, r#"{"career_sites":[{"id":"a"}"#),
        Reply::new(200, r#"{"unexpected":true}"#),
        ok_jobo(),
    ])
    .await;
    jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap();
    assert_eq!(server.count(), 4);

    let server = TestServer::fixed(vec![Reply::new(200, "not json"); 4]).await;
    let err = malformed(jobo(&server).fetch_page(&JoboScan::default(), None)).await;
    assert!(err.contains("not json"), "{err}");

    // A body that is not UTF-8 is a malformed page, whichever API sent it.
    let mut bytes = jobo_page(&["a"], None, false).to_string().into_bytes();
    let at = bytes.len() - 10;
    bytes[at] = 0xff;
    let server = TestServer::fixed(vec![Reply::new(200, bytes); 4]).await;
    let err = malformed(jobo(&server).fetch_page(&JoboScan::default(), None)).await;
    assert!(err.contains("not UTF-8"), "{err}");
    let mut bytes = sentrion_page(1, None).into_bytes();
    bytes[40] = 0xc3;
    let server = TestServer::fixed(vec![Reply::new(200, bytes); 4]).await;
    let err = malformed(sentrion(&server).fetch_page(&SentrionScan::default(), None)).await;
    assert!(err.contains("not UTF-8"), "{err}");
}

/// The error of a fetch that gave up on a malformed page after its four attempts, as text.
async fn malformed(fetch: impl Future<Output = Result<Page, FetchError>>) -> String {
    let err = fetch.await.unwrap_err();
    assert!(
        matches!(err, FetchError::Malformed { attempts: 4, .. }),
        "{err}"
    );
    err.to_string()
}

#[tokio::test]
async fn has_more_without_cursor_is_not_trusted() {
    let server = TestServer::fixed(vec![
        Reply::ok(json!({"career_sites": [], "next_cursor": null, "has_more": true})),
        ok_jobo(),
    ])
    .await;
    jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap();
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn timeout_is_retried_then_exhausted() {
    let slow = Reply::ok(jobo_page(&["a"], None, false)).delay(Duration::from_millis(600));
    let server = TestServer::fixed(vec![slow.clone(), ok_jobo()]).await;
    let mut cfg = config(&server.url);
    cfg.timeout = Duration::from_millis(150);
    let client = JoboClient::new(cfg.clone()).unwrap();
    client.fetch_page(&JoboScan::default(), None).await.unwrap();
    assert_eq!(server.count(), 2);

    let server = TestServer::fixed(vec![slow; 3]).await;
    cfg.base_url = server.url.clone();
    cfg.retry.max_attempts = 2;
    let err = JoboClient::new(cfg)
        .unwrap()
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Exhausted { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
}

/// Plain TCP server: resets the first connection after reading the request, answers the rest.
async fn reset_then_ok(ok_body: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            read_request(&mut stream).await;
            if n == 0 {
                // Zero linger turns the close into a RST: a real "connection reset by peer".
                stream.set_zero_linger().unwrap();
                drop(stream);
            } else {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    ok_body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(ok_body.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        }
    });
    (url, accepted)
}

async fn read_request(stream: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}

#[tokio::test]
async fn connection_reset_is_retried() {
    let (url, accepted) = reset_then_ok(jobo_page(&["a"], None, false).to_string()).await;
    let client = JoboClient::new(config(&url)).unwrap();
    let page = client.fetch_page(&JoboScan::default(), None).await.unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(client.stats().snapshot().retries, 1);
}

// ---------------------------------------------------------------- terminal errors

#[tokio::test]
async fn jobo_dead_cursor_400_and_409_stop_at_once() {
    let cases = [
        Reply::new(
            400,
            r#"{"status":400,"error":"Bad Request","message":"Invalid cursor"}"#,
        ),
        Reply::new(
            409,
            r#"{"type":"https://jobo.world/problems/cursor","title":"Conflict","status":409,"detail":"restart the feed","code":"feed_cursor_restart_required"}"#,
        ),
    ];
    for reply in cases {
        let server = TestServer::fixed(vec![reply.clone(), ok_jobo()]).await;
        let err = jobo(&server)
            .fetch_page(&JoboScan::default(), Some("old"))
            .await
            .unwrap_err();
        assert!(err.is_dead_cursor(), "{err}");
        assert!(!err.is_terminal());
        assert_eq!(err.status(), Some(reply.status));
        assert!(err.to_string().contains("restart the scan"), "{err}");
        assert_eq!(server.count(), 1);
    }
}

#[tokio::test]
async fn restart_after_dead_cursor_sends_no_cursor() {
    let judge: Dynamic = Arc::new(|seen: &Seen| {
        if seen.json().get("cursor").is_some() {
            Reply::new(
                400,
                r#"{"status":400,"error":"Bad Request","message":"Invalid cursor"}"#,
            )
        } else {
            Reply::ok(jobo_page(&["fresh"], None, false))
        }
    });
    let server = TestServer::start(vec![Canned::With(judge.clone()), Canned::With(judge)]).await;
    let client = jobo(&server);
    let err = client
        .fetch_page(&JoboScan::default(), Some("expired"))
        .await
        .unwrap_err();
    assert!(err.is_dead_cursor());
    let page = client.fetch_page(&JoboScan::default(), None).await.unwrap();
    assert_eq!(page.rows.len(), 1);
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn jobo_400_about_something_else_is_validation() {
    let server = TestServer::fixed(vec![Reply::new(
        400,
        r#"{"status":400,"error":"Bad Request","message":"batch_size must be <= 50"}"#,
    )])
    .await;
    let err = jobo(&server)
        .fetch_page(&JoboScan::default(), Some("c"))
        .await
        .unwrap_err();
    match &err {
        FetchError::Validation {
            status: 400,
            message,
            ..
        } => {
            assert!(message.contains("batch_size must be <= 50"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.count(), 1);

    // Without a cursor there is nothing to restart, so it is not reported as a dead cursor.
    let server = TestServer::fixed(vec![Reply::new(400, r#"{"message":"Invalid cursor"}"#)]).await;
    let err = jobo(&server)
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Validation { .. }), "{err}");
}

#[tokio::test]
async fn sentrion_bad_search_after_is_dead_cursor() {
    let server = TestServer::fixed(vec![Reply::new(
        400,
        r#"{"success":false,"data":null,"error":{"code":"bad_request","message":"search_after is malformed"}}"#,
    )])
    .await;
    let err = sentrion(&server)
        .fetch_page(&SentrionScan::default(), Some("[1,2]"))
        .await
        .unwrap_err();
    assert!(err.is_dead_cursor(), "{err}");
    assert_eq!(server.count(), 1);
}

/// Canned reply, the error it must map to, and text the message must carry.
type Case = (Reply, fn(&FetchError) -> bool, &'static str);

#[tokio::test]
async fn auth_payment_and_validation_stop_after_one_request() {
    let cases: Vec<Case> = vec![
        (
            Reply::new(
                401,
                r#"{"status":401,"error":"Unauthorized","message":"Invalid API key"}"#,
            ),
            |e| matches!(e, FetchError::Unauthorized { .. }),
            "JOBO_API_KEY",
        ),
        (
            Reply::new(
                403,
                r#"{"title":"Forbidden","status":403,"detail":"endpoint not enabled"}"#,
            ),
            |e| matches!(e, FetchError::Forbidden { .. }),
            "JOBO_API_KEY",
        ),
        (
            Reply::new(
                402,
                r#"{"status":402,"error":"Payment Required","message":"Insufficient credits","credits_required":50,"credits_balance":3}"#,
            ),
            |e| {
                matches!(
                    e,
                    FetchError::PaymentRequired {
                        credits_required: Some(50.0),
                        credits_balance: Some(3.0),
                        ..
                    }
                )
            },
            "top up credits",
        ),
        (
            Reply::new(402, "")
                .header("x-credits-required", "25")
                .header("x-credits-balance", "1"),
            |e| {
                matches!(
                    e,
                    FetchError::PaymentRequired {
                        credits_required: Some(25.0),
                        credits_balance: Some(1.0),
                        ..
                    }
                )
            },
            "25 credits required, 1 left",
        ),
        (
            Reply::new(
                422,
                r#"{"title":"Unprocessable","status":422,"detail":"industries[0] unknown","code":"validation_error"}"#,
            ),
            |e| matches!(e, FetchError::Validation { status: 422, .. }),
            "industries[0] unknown",
        ),
        (
            Reply::new(404, "Not Found"),
            |e| matches!(e, FetchError::Status { status: 404, .. }),
            "base URL",
        ),
        (
            Reply::new(302, "").header("location", "https://evil.example/steal"),
            |e| matches!(e, FetchError::Status { status: 302, .. }),
            "HTTP 302",
        ),
    ];
    for (reply, expected, text) in cases {
        let server = TestServer::fixed(vec![reply.clone(), ok_jobo(), ok_jobo()]).await;
        let client = jobo(&server);
        let err = client
            .fetch_page(&JoboScan::default(), None)
            .await
            .unwrap_err();
        assert!(expected(&err), "{}: {err:?}", reply.status);
        assert!(err.is_terminal(), "{err}");
        assert!(err.to_string().contains(text), "{err}");
        assert_eq!(server.count(), 1, "{}", reply.status);
        assert_eq!(client.stats().snapshot().retries, 0);
    }
}

#[tokio::test]
async fn sentrion_unauthorized_names_its_key_variable() {
    let server = TestServer::fixed(vec![Reply::new(
        401,
        r#"{"success":false,"data":null,"error":"unauthorized"}"#,
    )])
    .await;
    let err = sentrion(&server)
        .fetch_page(&SentrionScan::default(), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SENTRION_API_KEY"), "{err}");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn sentrion_envelope_errors_on_200_follow_their_code() {
    let server = TestServer::fixed(vec![
        Reply::new(
            200,
            r#"{"success":false,"data":null,"error":{"code":"rate_limit_exceeded","message":"slow"}}"#,
        ),
        Reply::new(200, sentrion_page(1, None)),
    ])
    .await;
    let client = sentrion(&server);
    client
        .fetch_page(&SentrionScan::default(), None)
        .await
        .unwrap();
    assert_eq!(client.stats().snapshot().throttled, 1);

    let server = TestServer::fixed(vec![Reply::new(
        200,
        r#"{"success":false,"data":null,"error":{"code":"validation_error","message":"published_after too old"}}"#,
    )])
    .await;
    let err = sentrion(&server)
        .fetch_page(&SentrionScan::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Validation { status: 422, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("published_after too old"));
    assert_eq!(server.count(), 1);
}

// ---------------------------------------------------------------- pacing

#[tokio::test]
async fn pacer_spaces_requests_and_retries() {
    let server =
        TestServer::fixed(vec![ok_jobo(), Reply::new(503, ""), ok_jobo(), ok_jobo()]).await;
    let mut cfg = config(&server.url);
    cfg.pacer = Pacer::per_minute(600); // one every 100 ms
    cfg.retry.base = Duration::from_millis(1);
    let client = JoboClient::new(cfg).unwrap();
    for _ in 0..3 {
        client.fetch_page(&JoboScan::default(), None).await.unwrap();
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    for pair in seen.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(85), "{gap:?}");
        assert!(gap < Duration::from_millis(600), "{gap:?}");
    }
}

#[tokio::test]
async fn a_429_despite_pacing_slows_the_budget_and_the_run_goes_on() {
    let server = TestServer::fixed(vec![
        Reply::new(429, r#"{"error":"rate_limited","message":"slow down"}"#)
            .header("retry-after", "0"),
        ok_jobo(),
    ])
    .await;
    let mut cfg = config(&server.url);
    cfg.pacer = Pacer::per_minute(6000);
    cfg.retry.base = Duration::from_millis(1);
    let before = cfg.pacer.per_minute_now().unwrap();
    let pacer = cfg.pacer.clone();
    let client = JoboClient::new(cfg).unwrap();
    client.fetch_page(&JoboScan::default(), None).await.unwrap();
    assert_eq!(client.stats().snapshot().throttled, 1);
    assert!(pacer.per_minute_now().unwrap() < before);
}

#[tokio::test]
async fn a_spent_rate_limit_window_is_waited_out_before_the_next_request() {
    let server = TestServer::fixed(vec![
        ok_jobo()
            .header("x-ratelimit-limit", "120")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "1"),
        ok_jobo(),
    ])
    .await;
    let client = JoboClient::new(config(&server.url)).unwrap();
    client.fetch_page(&JoboScan::default(), None).await.unwrap();
    client.fetch_page(&JoboScan::default(), None).await.unwrap();
    let seen = server.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
    assert_eq!(client.stats().snapshot().throttled, 0);
}

#[tokio::test]
async fn one_pacer_shared_by_two_clients() {
    let server = TestServer::fixed(vec![ok_jobo(), ok_jobo(), ok_jobo(), ok_jobo()]).await;
    let pacer = Pacer::per_minute(600);
    let mut cfg = config(&server.url);
    cfg.pacer = pacer.clone();
    let a = JoboClient::new(cfg.clone()).unwrap();
    let b = JoboClient::new(cfg).unwrap();
    let scan = JoboScan::default();
    let (r1, r2) = tokio::join!(
        async {
            a.fetch_page(&scan, None).await?;
            a.fetch_page(&scan, None).await
        },
        async {
            b.fetch_page(&scan, None).await?;
            b.fetch_page(&scan, None).await
        }
    );
    r1.unwrap();
    r2.unwrap();
    let mut times: Vec<Instant> = server.seen().iter().map(|s| s.at).collect();
    times.sort();
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(85));
    }
}

// ---------------------------------------------------------------- the key stays secret

#[tokio::test]
async fn key_never_appears_in_errors_or_debug() {
    // Servers that echo the key back are the worst case for leaking it into messages.
    let echo = format!("bad key {KEY}");
    let body = |status: u16| {
        json!({"status": status, "error": echo, "message": echo, "detail": echo, "code": echo})
            .to_string()
    };
    let mut errors: Vec<FetchError> = Vec::new();

    for status in [400, 401, 402, 403, 404, 409, 422, 501] {
        let server = TestServer::fixed(vec![Reply::new(status, body(status))]).await;
        errors.push(
            jobo(&server)
                .fetch_page(&JoboScan::default(), Some("c"))
                .await
                .unwrap_err(),
        );
        let server = TestServer::fixed(vec![Reply::new(status, body(status))]).await;
        errors.push(
            sentrion(&server)
                .fetch_page(&SentrionScan::default(), Some("[1]"))
                .await
                .unwrap_err(),
        );
    }
    // Exhausted, malformed, rate limited, timeout.
    let server = TestServer::fixed(vec![Reply::new(503, body(503)); 4]).await;
    errors.push(
        jobo(&server)
            .fetch_page(&JoboScan::default(), None)
            .await
            .unwrap_err(),
    );
    let server = TestServer::fixed(vec![Reply::new(200, echo.clone()); 4]).await;
    errors.push(
        jobo(&server)
            .fetch_page(&JoboScan::default(), None)
            .await
            .unwrap_err(),
    );
    let server = TestServer::fixed(vec![Reply::new(200, echo.clone()); 4]).await;
    errors.push(
        sentrion(&server)
            .fetch_page(&SentrionScan::default(), None)
            .await
            .unwrap_err(),
    );
    let server = TestServer::fixed(vec![Reply::new(
        200,
        json!({"success": false, "data": null, "error": {"code": "weird", "message": echo}})
            .to_string(),
    )])
    .await;
    errors.push(
        sentrion(&server)
            .fetch_page(&SentrionScan::default(), None)
            .await
            .unwrap_err(),
    );
    let server = TestServer::fixed(vec![
        Reply::new(429, body(429)).header("retry-after", "99999"),
    ])
    .await;
    errors.push(
        jobo(&server)
            .fetch_page(&JoboScan::default(), None)
            .await
            .unwrap_err(),
    );
    let server = TestServer::fixed(vec![
        Reply::new(200, "{}").delay(Duration::from_millis(300));
        2
    ])
    .await;
    let mut cfg = config(&server.url);
    cfg.timeout = Duration::from_millis(50);
    cfg.retry.max_attempts = 2;
    errors.push(
        JoboClient::new(cfg)
            .unwrap()
            .fetch_page(&JoboScan::default(), None)
            .await
            .unwrap_err(),
    );
    // Truncated body, connection refused, local validation, dead local cursor.
    let server = TestServer::fixed(vec![Reply::new(200, body(200)).cut_off(); 4]).await;
    errors.push(
        jobo(&server)
            .fetch_page(&JoboScan::default(), None)
            .await
            .unwrap_err(),
    );
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    errors.push(
        JoboClient::new(config(&refused_url))
            .unwrap()
            .fetch_page(&JoboScan::default(), None)
            .await
            .unwrap_err(),
    );
    let bad = JoboScan {
        batch_size: 0,
        ..JoboScan::default()
    };
    errors.push(jobo(&server).fetch_page(&bad, None).await.unwrap_err());
    errors.push(
        sentrion(&server)
            .fetch_page(&SentrionScan::default(), Some(KEY))
            .await
            .unwrap_err(),
    );
    let mut bad_cfg = config(&format!("ftp://{KEY}@host"));
    errors.push(JoboClient::new(bad_cfg.clone()).unwrap_err());
    bad_cfg.base_url = "http://localhost".into();
    bad_cfg.key = SecretString::from(format!("{KEY}\u{7f}"));
    errors.push(SentrionClient::new(bad_cfg.clone()).unwrap_err());

    let kinds: std::collections::BTreeSet<String> = errors
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    for kind in [
        "Unauthorized",
        "Forbidden",
        "PaymentRequired",
        "Validation",
        "DeadCursor",
        "Exhausted",
        "RateLimited",
        "Malformed",
        "Status",
        "Config",
    ] {
        assert!(
            kinds.contains(kind),
            "no {kind} error forced; got {kinds:?}"
        );
    }
    for e in &errors {
        let shown = format!("{e}");
        let debug = format!("{e:?}");
        assert!(!shown.contains(KEY), "key leaked: {shown}");
        assert!(!debug.contains(KEY), "key leaked: {debug}");
        assert!(
            shown.contains("Jobo") || shown.contains("Sentrion"),
            "{shown}"
        );
    }

    let server = TestServer::fixed(vec![]).await;
    let cfg = config(&server.url);
    for text in [
        format!("{cfg:?}"),
        format!("{:?}", jobo(&server)),
        format!("{:?}", sentrion(&server)),
    ] {
        assert!(!text.contains(KEY), "key leaked: {text}");
    }
}

/// Log sink shared with the test so it can read what was written.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn logs_carry_fields_but_never_the_key() {
    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    // current_thread runtime: the thread-local default covers the whole test.
    let _guard = tracing::subscriber::set_default(subscriber);

    let echo = json!({"message": format!("bad key {KEY}")}).to_string();
    let server = TestServer::fixed(vec![
        Reply::new(503, echo.clone()),
        Reply::ok(jobo_page(&["a"], None, false)),
        Reply::new(401, echo),
    ])
    .await;
    let client = jobo(&server);
    client.fetch_page(&JoboScan::default(), None).await.unwrap();
    client
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap_err();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(KEY), "key leaked into logs:\n{text}");
    assert!(
        text.contains("WARN") && text.contains("retrying request"),
        "{text}"
    );
    assert!(
        text.contains("wait_ms=") && text.contains("status=503"),
        "{text}"
    );
    assert!(
        text.contains("page fetched") && text.contains("rows=1"),
        "{text}"
    );
    assert!(
        text.contains("api=Jobo") && text.contains("attempt=2"),
        "{text}"
    );
}

#[tokio::test]
async fn pages_stream_is_lazy_follows_cursors_and_ends_at_the_last_page() {
    use futures::StreamExt;
    let server = TestServer::fixed(vec![
        Reply::ok(jobo_page(&["a"], Some("c1"), true)),
        Reply::ok(jobo_page(&["b"], Some("c2"), true)),
        Reply::ok(jobo_page(&["c"], None, false)),
    ])
    .await;
    let client = jobo(&server);
    let mut pages = std::pin::pin!(client.pages(JoboScan::default(), Some("c0".into())));
    assert_eq!(
        server.count(),
        0,
        "nothing is asked before the stream is polled"
    );
    let first = pages.next().await.unwrap().unwrap();
    assert_eq!(first.next_cursor.as_deref(), Some("c1"));
    assert_eq!(server.count(), 1, "one page in flight at most");
    let rest: Vec<_> = pages.collect().await;
    assert_eq!(rest.len(), 2);
    assert!(!rest[1].as_ref().unwrap().has_more);
    let cursors: Vec<Value> = server
        .seen()
        .iter()
        .map(|s| s.json()["cursor"].clone())
        .collect();
    assert_eq!(cursors, vec![json!("c0"), json!("c1"), json!("c2")]);
}

#[tokio::test]
async fn pages_stream_stops_at_the_first_error() {
    use futures::StreamExt;
    let server = TestServer::fixed(vec![
        Reply::ok(jobo_page(&["a"], Some("c1"), true)),
        Reply::new(401, r#"{"error":"Invalid API key"}"#),
    ])
    .await;
    let client = jobo(&server);
    let got: Vec<_> = client.pages(JoboScan::default(), None).collect().await;
    assert_eq!(got.len(), 2);
    assert!(got[0].is_ok());
    assert!(got[1].as_ref().unwrap_err().is_terminal());
}

#[tokio::test]
async fn company_profiles_are_fetched_by_id_retried_and_a_404_is_no_profile() {
    let server = TestServer::fixed(vec![
        Reply::new(
            503,
            r#"{"status":503,"error":"Service Unavailable","message":"busy"}"#,
        )
        .header("retry-after", "0"),
        Reply::ok(json!({"id": "c-1", "name": "Acme", "funding_rounds": []})),
        Reply::new(
            404,
            r#"{"status":404,"error":"Not Found","message":"No company"}"#,
        ),
        Reply::ok(json!(["not", "an", "object"])),
        Reply::ok(json!(["not", "an", "object"])),
        Reply::ok(json!(["not", "an", "object"])),
        Reply::ok(json!(["not", "an", "object"])),
    ])
    .await;
    let client = CompanyClient::new(config(&server.url)).unwrap();
    let profile = client.fetch("c-1").await.unwrap().unwrap();
    assert_eq!(profile.len(), 1);
    assert!(profile.get(0).unwrap().contains("Acme"));
    assert_eq!(client.fetch("gone").await.unwrap().map(|p| p.len()), None);
    let err = client.fetch("odd").await.unwrap_err();
    assert!(matches!(err, FetchError::Malformed { .. }), "{err}");
    let seen = server.seen();
    assert_eq!(seen[0].path, "/api/companies/c-1");
    assert_eq!(seen[2].path, "/api/companies/gone");
    assert_eq!(seen[0].header("x-api-key"), Some(KEY));
    assert_eq!(client.stats().snapshot().retries, 1 + 3);
}

/// A self-signed certificate for `host` and its key, both PEM: what anyone in the middle of
/// the connection could present.
fn self_signed(host: &str) -> (Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", host).unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    let serial = BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap();
    cert.set_serial_number(&serial).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns(host)
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    (
        cert.build().to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

/// The TLS set-up every client shares verifies certificates: a server presenting one that no
/// trusted authority signed (for the right host name, and valid today) is refused during the
/// handshake, so not a byte of the request, API key included, reaches it, and the error says
/// why without the key.
#[tokio::test]
async fn a_server_whose_certificate_nobody_signed_gets_no_request() {
    use std::io::Read;

    let (cert, key) = self_signed("localhost");
    let identity = native_tls::Identity::from_pkcs8(&cert, &key).unwrap();
    let acceptor = native_tls::TlsAcceptor::new(identity).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let (handshakes, received) = (Arc::clone(&handshakes), Arc::clone(&received));
        move || {
            for stream in listener.incoming().flatten() {
                handshakes.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut tls) = acceptor.accept(stream) {
                    let mut buf = [0u8; 4096];
                    if let Ok(n) = tls.read(&mut buf) {
                        received.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    });

    let client = JoboClient::new(config(&format!("https://localhost:{port}"))).unwrap();
    let err = client
        .fetch_page(&JoboScan::default(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.to_lowercase().contains("certificate"),
        "the error does not say the certificate was refused: {err}"
    );
    assert!(!err.contains(KEY), "{err}");
    assert!(
        handshakes.load(Ordering::SeqCst) > 0,
        "the server was never reached"
    );
    assert!(
        received.lock().unwrap().is_empty(),
        "the server read a request over a connection it should not have been given"
    );
}
