//! The request loop both clients share: pacing, auth header, retries, status and error-body mapping.

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use joblake_schema::ByteString;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::{Api, ClientConfig, FetchError, FetchStats, Pacer, Page, RetryPolicy};

/// Longest wait a server may ask for before we stop and tell the user to rerun later; sleeping
/// through e.g. a daily-quota reset inside one CLI call would look like a hang.
pub(crate) const MAX_HONOURED_WAIT: Duration = Duration::from_secs(15 * 60);

/// A wait at least this long is said on stderr (what for, and until when).
const VISIBLE_WAIT: Duration = Duration::from_secs(5);

/// Says that `api` waits `wait` now, and why (a warning: stderr, unless `--quiet`).
fn announce_wait(api: Api, wait: Duration, why: &str) {
    let until = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    tracing::warn!(
        "{api}: waiting {}s, until {} UTC: {why} (Ctrl-C stops the run)",
        wait.as_secs_f64().round(),
        until.format("%H:%M:%S")
    );
}

/// Longest piece of server text carried into an error.
const MESSAGE_LIMIT: usize = 300;

/// The most a response body may hold, counted after decompression: far above any real page
/// (a page of 100 jobs with 100 kB descriptions is 10 MB), so a body that would inflate to
/// gigabytes is refused before it is held in memory.
pub(crate) const MAX_BODY_BYTES: usize = 32 << 20;

/// How the key travels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth {
    /// `X-Api-Key: <key>`.
    ApiKeyHeader,
    /// `Authorization: Bearer <key>`.
    Bearer,
}

/// Outcome of one failed attempt.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another attempt after a wait.
    Retry(Transient),
    /// Final: retrying cannot help (or must not be tried, because rows cost money).
    Stop(FetchError),
}

/// A transient failure and what the server said about waiting.
#[derive(Debug)]
pub(crate) struct Transient {
    pub reason: String,
    pub status: Option<u16>,
    /// Server-requested wait (Retry-After and friends); wins over the computed backoff.
    pub wait: Option<Duration>,
    /// The response was a success whose body we could not read as the envelope.
    pub malformed: bool,
}

impl Failure {
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Failure::Retry(Transient {
            reason: reason.into(),
            status: None,
            wait: None,
            malformed: true,
        })
    }
}

/// Replaces the key wherever server text might echo it back.
struct Redactor {
    key: SecretString,
}

impl Redactor {
    fn redact(&self, text: &str) -> String {
        let key = self.key.expose_secret();
        // Very short keys would shred ordinary text; new() refuses empty keys anyway.
        if key.len() >= 4 && text.contains(key) {
            text.replace(key, "[redacted]")
        } else {
            text.to_owned()
        }
    }
}

/// What the classifiers need to know about the request that failed.
pub(crate) struct Ctx<'a> {
    pub api: Api,
    /// A cursor was sent; only then can an error mean the cursor died.
    pub cursor_sent: bool,
    redactor: &'a Redactor,
}

impl Ctx<'_> {
    /// Maps a non-success status (or Sentrion's in-envelope error code) to retry or stop.
    pub(crate) fn classify_status(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Failure {
        let info = ErrorInfo::parse(body);
        let message = truncate(&self.redactor.redact(&info.summary(status, body)));
        let api = self.api;
        match status {
            401 => Failure::Stop(FetchError::Unauthorized { api, message }),
            403 => Failure::Stop(FetchError::Forbidden { api, message }),
            402 => Failure::Stop(FetchError::PaymentRequired {
                api,
                credits_required: info
                    .credits_required
                    .or_else(|| header_f64(headers, "x-credits-required")),
                credits_balance: info.credits_balance.or_else(|| {
                    header_f64(headers, "x-credits-balance")
                        .or_else(|| header_f64(headers, "x-credits-remaining"))
                }),
                message,
            }),
            _ if self.is_dead_cursor(status, &info) => Failure::Stop(FetchError::DeadCursor {
                api,
                status: Some(status),
                message,
            }),
            400 | 409 | 422 => Failure::Stop(FetchError::Validation {
                api,
                status,
                message,
            }),
            408 | 429 | 500..=599 if status != 501 && status != 505 => {
                let wait = retry_after(headers, Utc::now())
                    .or(info.wait)
                    .or_else(|| (status == 429).then(|| rate_limit_reset(headers, Utc::now()))?);
                match wait {
                    Some(wait) if wait > MAX_HONOURED_WAIT => {
                        Failure::Stop(FetchError::RateLimited { api, status, wait })
                    }
                    _ => Failure::Retry(Transient {
                        reason: format!("HTTP {status}: {message}"),
                        status: Some(status),
                        wait,
                        malformed: false,
                    }),
                }
            }
            _ => Failure::Stop(FetchError::Status {
                api,
                status,
                message,
            }),
        }
    }

    fn is_dead_cursor(&self, status: u16, info: &ErrorInfo) -> bool {
        // Without a cursor there is nothing to drop, and calling it dead would invite a restart loop.
        if !self.cursor_sent {
            return false;
        }
        if info.code.as_deref() == Some("feed_cursor_restart_required") {
            return true;
        }
        let text = info.search_text();
        match (self.api, status) {
            (Api::Jobo, 409) => true,
            (Api::Jobo, 400 | 422) => text.contains("cursor"),
            (Api::Sentrion, 400 | 422) => text.contains("search_after") || text.contains("cursor"),
            _ => false,
        }
    }

    /// Redacts and truncates server-provided text.
    pub(crate) fn clean(&self, text: &str) -> String {
        truncate(&self.redactor.redact(text))
    }
}

/// Shared HTTP machinery of one client.
pub(crate) struct Core {
    api: Api,
    url: Url,
    http: reqwest::Client,
    auth_name: HeaderName,
    auth_value: HeaderValue,
    redactor: Redactor,
    retry: RetryPolicy,
    pacer: Pacer,
    timeout: Duration,
    stats: Arc<FetchStats>,
    /// Whether a pace slow enough to be a visible wait was said already.
    pace_announced: AtomicBool,
}

/// The TLS settings every API client of the process shares: reqwest's own for native-tls
/// (certificates and host names verified, SNI, ALPN offering h2 then http/1.1), built once.
/// Building them has OpenSSL parse the system's whole CA bundle (about 60 ms, a third of a
/// small refresh), which reqwest would otherwise do again for every client: the two feeds'
/// and the company profiles'.
fn tls() -> Result<native_tls::TlsConnector, String> {
    static TLS: OnceLock<Result<native_tls::TlsConnector, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        native_tls::TlsConnector::builder()
            .request_alpns(&["h2", "http/1.1"])
            .build()
            .map_err(|e| format!("cannot set up TLS (the system's CA certificates): {e}"))
    })
    .clone()
}

/// What one request sends.
pub(crate) enum Req {
    /// A JSON body to the client's URL (the feeds).
    Post(Bytes),
    /// A GET of a URL under the client's (a company profile).
    Get(Url),
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so the key cannot reach Debug output even by a future field change.
        f.debug_struct("Client")
            .field("api", &self.api)
            .field("url", &self.url.as_str())
            .field("retry", &self.retry)
            .field("pacer", &self.pacer)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub(crate) fn new(
        api: Api,
        cfg: ClientConfig,
        path: &str,
        auth: Auth,
    ) -> Result<Self, FetchError> {
        let config = |message: String| FetchError::Config { api, message };
        // Keys read from files often carry a trailing newline, which no header may contain.
        let key = cfg.key.expose_secret().trim();
        if key.is_empty() {
            return Err(config(format!(
                "the API key is empty; set {}",
                api.key_env()
            )));
        }
        let (auth_name, value) = match auth {
            Auth::ApiKeyHeader => (
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_str(key),
            ),
            Auth::Bearer => (
                reqwest::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {key}")),
            ),
        };
        let mut auth_value = value.map_err(|_| {
            config(format!(
                "the API key contains characters not allowed in an HTTP header; check {}",
                api.key_env()
            ))
        })?;
        auth_value.set_sensitive(true);
        let redactor = Redactor {
            key: SecretString::from(key),
        };

        let base = cfg.base_url.trim().trim_end_matches('/');
        let url = Url::parse(&format!("{base}{path}"))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                config(format!(
                    "base URL {:?} is not an http(s) URL",
                    redactor.redact(base)
                ))
            })?;

        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls().map_err(config)?)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(30)))
            // A redirect would carry X-Api-Key to whatever host it names (reqwest only strips
            // Authorization) and turn the POST into a GET; better to stop and say so.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("joblake/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?;

        Ok(Core {
            api,
            url,
            http,
            auth_name,
            auth_value,
            redactor,
            retry: cfg.retry,
            pacer: cfg.pacer,
            timeout: cfg.timeout,
            stats: Arc::new(FetchStats::default()),
            pace_announced: AtomicBool::new(false),
        })
    }

    pub(crate) fn stats(&self) -> Arc<FetchStats> {
        Arc::clone(&self.stats)
    }

    /// POSTs `body` until it yields a page, a final error, or the retry budget runs out.
    pub(crate) async fn post<P>(
        &self,
        body: Bytes,
        cursor_sent: bool,
        parse: P,
    ) -> Result<Page, FetchError>
    where
        P: Fn(&Ctx<'_>, &HeaderMap, &Bytes) -> Result<Page, Failure>,
    {
        self.send(Req::Post(body), cursor_sent, parse).await
    }

    /// GETs the client's URL with `segment` appended, retried like [`Core::post`].
    pub(crate) async fn get<P>(&self, segment: &str, parse: P) -> Result<Page, FetchError>
    where
        P: Fn(&Ctx<'_>, &HeaderMap, &Bytes) -> Result<Page, Failure>,
    {
        let mut url = self.url.clone();
        url.path_segments_mut()
            .map_err(|()| FetchError::Config {
                api: self.api,
                message: "the base URL cannot take a path".into(),
            })?
            .pop_if_empty()
            .push(segment);
        self.send(Req::Get(url), false, parse).await
    }

    async fn send<P>(&self, body: Req, cursor_sent: bool, parse: P) -> Result<Page, FetchError>
    where
        P: Fn(&Ctx<'_>, &HeaderMap, &Bytes) -> Result<Page, Failure>,
    {
        let ctx = Ctx {
            api: self.api,
            cursor_sent,
            redactor: &self.redactor,
        };
        let attempts = AtomicU32::new(0);
        let max_attempts = self.retry.max_attempts.max(1);
        let cap = self.retry.cap;
        let backoff = ExponentialBuilder::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(self.retry.base)
            .with_max_delay(cap)
            .with_max_times(max_attempts.saturating_sub(1) as usize);

        let (ctx_ref, body_ref, parse_ref, attempts_ref) = (&ctx, &body, &parse, &attempts);
        let result = (move || async move {
            let attempt = attempts_ref.fetch_add(1, Ordering::Relaxed) + 1;
            self.attempt(ctx_ref, body_ref, attempt, parse_ref).await
        })
        .retry(backoff)
        .when(|f| matches!(f, Failure::Retry(_)))
        .adjust(move |f, computed| match (f, computed) {
            // None means the budget is spent; a Retry-After must not extend it.
            (_, None) => None,
            (Failure::Retry(Transient { wait: Some(w), .. }), Some(_)) => Some(*w),
            // Jitter may push past the cap; the cap is a promise to the user.
            (_, Some(d)) => Some(d.min(cap)),
        })
        .notify(|f, wait| {
            FetchStats::add(&self.stats.retries, 1);
            if let Failure::Retry(t) = f {
                if wait >= VISIBLE_WAIT {
                    announce_wait(self.api, wait, &format!("retrying after {}", t.reason));
                } else {
                    tracing::warn!(
                        api = %self.api,
                        status = t.status,
                        reason = %t.reason,
                        wait_ms = wait.as_millis() as u64,
                        "retrying request"
                    );
                }
            }
        })
        .await;

        let attempts = attempts.load(Ordering::Relaxed);
        match result {
            Ok(page) => Ok(page),
            Err(Failure::Stop(e)) => Err(e),
            Err(Failure::Retry(t)) if t.malformed => Err(FetchError::Malformed {
                api: self.api,
                attempts,
                detail: t.reason,
            }),
            Err(Failure::Retry(t)) => Err(FetchError::Exhausted {
                api: self.api,
                attempts,
                last: t.reason,
                last_status: t.status,
            }),
        }
    }

    async fn attempt<P>(
        &self,
        ctx: &Ctx<'_>,
        body: &Req,
        attempt: u32,
        parse: &P,
    ) -> Result<Page, Failure>
    where
        P: Fn(&Ctx<'_>, &HeaderMap, &Bytes) -> Result<Page, Failure>,
    {
        // Retries wait on the pacer too: they spend the same per-key budget. A server's
        // "window spent" is honoured as a Retry-After is: up to a limit, and said out loud.
        if let Some(left) = self.pacer.pause_left() {
            if left > MAX_HONOURED_WAIT {
                return Err(Failure::Stop(FetchError::WindowSpent {
                    api: self.api,
                    wait: left,
                }));
            }
            if left >= VISIBLE_WAIT {
                announce_wait(
                    self.api,
                    left,
                    "the API says its rate-limit window is spent (X-RateLimit-Remaining: 0)",
                );
            }
        }
        if let Some(period) = self.pacer.period()
            && period >= VISIBLE_WAIT
            && !self.pace_announced.swap(true, Ordering::Relaxed)
        {
            announce_wait(
                self.api,
                period,
                &format!(
                    "pacing at {:.1} requests a minute (requests_per_minute), this long \
                     before each request",
                    60.0 / period.as_secs_f64()
                ),
            );
        }
        self.pacer.ready().await;
        FetchStats::add(&self.stats.requests, 1);
        let started = Instant::now();
        let (status, mut result) = self.exchange(ctx, body, parse).await;
        // Safety net: every transient reason passes redaction, whoever built it.
        if let Err(Failure::Retry(t)) = &mut result {
            t.reason = ctx.clean(&t.reason);
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;

        match &result {
            Ok(page) => {
                FetchStats::add(&self.stats.rows, page.rows.len() as u64);
                FetchStats::add(&self.stats.bytes, page.bytes as u64);
                tracing::debug!(
                    api = %self.api,
                    status,
                    rows = page.rows.len(),
                    bytes = page.bytes,
                    has_more = page.has_more,
                    attempt,
                    elapsed_ms,
                    "page fetched"
                );
            }
            Err(failure) => {
                FetchStats::add(&self.stats.errors, 1);
                let throttled = match failure {
                    Failure::Retry(t) => t.status == Some(429),
                    Failure::Stop(e) => e.status() == Some(429),
                };
                if throttled {
                    FetchStats::add(&self.stats.throttled, 1);
                    self.pacer.throttled();
                }
                tracing::debug!(
                    api = %self.api,
                    status,
                    attempt,
                    elapsed_ms,
                    retryable = matches!(failure, Failure::Retry(_)),
                    "request failed"
                );
            }
        }
        result
    }

    /// One HTTP round trip; returns the status seen (if any) for logging.
    async fn exchange<P>(
        &self,
        ctx: &Ctx<'_>,
        body: &Req,
        parse: &P,
    ) -> (Option<u16>, Result<Page, Failure>)
    where
        P: Fn(&Ctx<'_>, &HeaderMap, &Bytes) -> Result<Page, Failure>,
    {
        let request = match body {
            Req::Post(body) => self
                .http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone()),
            Req::Get(url) => self.http.get(url.clone()),
        };
        let sent = request
            .header(ACCEPT, "application/json")
            .header(self.auth_name.clone(), self.auth_value.clone())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return (
                    None,
                    Err(self.transport_failure(ctx, &e, "sending the request")),
                );
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // The server's own count says its window is spent: wait for its reset rather than
        // spend a request on a 429.
        if header_f64(&headers, "x-ratelimit-remaining") == Some(0.0)
            && let Some(wait) = rate_limit_reset(&headers, Utc::now())
        {
            // Past MAX_HONOURED_WAIT the next attempt refuses to wait (a day bounds the sum).
            self.pacer.pause_until(
                tokio::time::Instant::now() + wait.min(Duration::from_secs(24 * 3600)),
            );
        }
        let bytes = match read_capped(response, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(BodyError::Read(e)) => {
                return (
                    Some(status),
                    Err(self.transport_failure(ctx, &e, "reading the response body")),
                );
            }
            Err(BodyError::TooLarge) => {
                return (
                    Some(status),
                    Err(Failure::Stop(FetchError::TooLarge {
                        api: self.api,
                        status,
                        limit_mib: MAX_BODY_BYTES >> 20,
                    })),
                );
            }
        };
        let result = if (200..300).contains(&status) {
            parse(ctx, &headers, &bytes)
        } else {
            Err(ctx.classify_status(status, &headers, &bytes))
        };
        (Some(status), result)
    }

    fn transport_failure(&self, ctx: &Ctx<'_>, e: &reqwest::Error, during: &str) -> Failure {
        if e.is_builder() {
            return Failure::Stop(FetchError::Config {
                api: self.api,
                message: ctx.clean(&error_chain(e)),
            });
        }
        let reason = if e.is_timeout() {
            format!("timed out after {:?} while {during}", self.timeout)
        } else if e.is_connect() {
            format!("could not connect: {}", error_chain(e))
        } else if e.is_body() || e.is_decode() {
            format!("response body cut off: {}", error_chain(e))
        } else {
            format!("connection failed while {during}: {}", error_chain(e))
        };
        Failure::Retry(Transient {
            reason: ctx.clean(&reason),
            status: None,
            wait: None,
            malformed: false,
        })
    }
}

enum BodyError {
    Read(reqwest::Error),
    TooLarge,
}

/// `response`'s body, decompressed, read chunk by chunk up to `cap` bytes: past it the read
/// stops (and the connection is dropped) rather than grow the buffer. A body that came in one
/// chunk is that chunk, not a copy; the page's rows are then spans of it.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    let length = response.content_length();
    if length.is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    let Some(first) = response.chunk().await.map_err(BodyError::Read)? else {
        return Ok(Bytes::new());
    };
    if first.len() > cap {
        return Err(BodyError::TooLarge);
    }
    let Some(second) = response.chunk().await.map_err(BodyError::Read)? else {
        return Ok(first);
    };
    if first.len() + second.len() > cap {
        return Err(BodyError::TooLarge);
    }
    // A compressed body, or a large one, comes in pieces: one buffer of the size the server
    // gave (when it did, and it is not inflated) rather than one grown a piece at a time.
    let mut body = Vec::with_capacity(
        length
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .clamp(first.len() + second.len(), cap),
    );
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// reqwest's Display hides the useful part ("connection reset") in the source chain.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = match e.url() {
        // The URL carries no secret, but the message reads better without it repeated.
        Some(_) => {
            let mut s = e.to_string();
            if let Some(i) = s.find(" for url (") {
                s.truncate(i);
            }
            s
        }
        None => e.to_string(),
    };
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// What an error body says, whatever shape it came in.
#[derive(Debug, Default)]
pub(crate) struct ErrorInfo {
    pub message: Option<String>,
    pub code: Option<String>,
    pub title: Option<String>,
    pub wait: Option<Duration>,
    pub credits_required: Option<f64>,
    pub credits_balance: Option<f64>,
}

impl ErrorInfo {
    /// Reads Jobo's `{status, error, message}`, RFC 9457 problem+json, and Sentrion's
    /// `{success, data, error: {code, message} | "text"}`; anything else yields an empty info.
    pub(crate) fn parse(body: &[u8]) -> Self {
        // Error bodies are small and their shape is uncertain, so a Value is the right tool here.
        let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
            return ErrorInfo::default();
        };
        let nested = top.get("error").and_then(Value::as_object);
        let data = top.get("data").and_then(Value::as_object);
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let top_error = text(top.get("error"));
        let message = text(top.get("detail"))
            .or_else(|| text(top.get("message")))
            .or_else(|| {
                nested.and_then(|e| text(e.get("message")).or_else(|| text(e.get("detail"))))
            })
            .or_else(|| top_error.clone())
            .or_else(|| text(top.get("title")));
        let code = text(top.get("code")).or_else(|| nested.and_then(|e| text(e.get("code"))));
        let title =
            text(top.get("title")).or_else(|| top_error.filter(|e| Some(e) != message.as_ref()));
        let lookup = |key: &str| {
            top.get(key)
                .or_else(|| nested.and_then(|e| e.get(key)))
                .or_else(|| data.and_then(|d| d.get(key)))
                .and_then(number)
        };
        let wait = lookup("retry_after_seconds")
            .or_else(|| lookup("retry_after"))
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        ErrorInfo {
            message,
            code,
            title,
            wait,
            credits_required: lookup("credits_required"),
            credits_balance: lookup("credits_balance"),
        }
    }

    /// One line for humans: the message and code, or a short body excerpt when nothing parsed.
    fn summary(&self, status: u16, body: &[u8]) -> String {
        match (&self.message, &self.code) {
            (Some(m), Some(c)) if !m.contains(c.as_str()) => format!("{m} [{c}]"),
            (Some(m), _) => m.clone(),
            (None, Some(c)) => c.clone(),
            (None, None) if body.iter().all(u8::is_ascii_whitespace) => {
                format!("empty body with HTTP {status}")
            }
            (None, None) => format!("body: {}", excerpt(body)),
        }
    }

    /// Lower-cased text of every field, for keyword checks such as "cursor".
    fn search_text(&self) -> String {
        [&self.message, &self.code, &self.title]
            .into_iter()
            .flatten()
            .map(|s| s.to_lowercase())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Number or numeric string, since both show up in the wild.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The failure of a page whose body is not `what` (its envelope), saying why.
pub(crate) fn not_the<'a>(
    ctx: &'a Ctx<'_>,
    body: &'a [u8],
    what: &'a str,
) -> impl Fn(String) -> Failure + 'a {
    move |why| {
        Failure::malformed(ctx.clean(&format!("{what} ({why}); starts with: {}", excerpt(body))))
    }
}

/// `body` as text, checked to be UTF-8 once, as a whole, so that neither the JSON parser nor
/// the readers of the page's rows check it again; an error says why not.
pub(crate) fn body_text(body: &Bytes) -> Result<ByteString, String> {
    ByteString::try_from(body.clone()).map_err(|e| format!("it is not UTF-8: {e}"))
}

/// Start of a body, single-line, for messages about bodies we could not parse.
///
/// Not truncated to the message limit here: redaction must see the whole key before
/// [`Ctx::clean`] cuts, or half a key could survive at the cut.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MESSAGE_LIMIT * 4)]);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.trim().to_owned()
}

/// Server text made inert and cut to [`MESSAGE_LIMIT`] characters (at a char boundary, so a
/// multi-byte character never panics the slice): control characters (terminal escape
/// sequences start with one) and the invisible marks that reorder text on a terminal are
/// written as `\u{..}` escapes, so nothing a server sends moves a cursor, recolours a
/// terminal or hides text in stderr, a log or the run ledger.
fn truncate(text: &str) -> String {
    let text = inert(text);
    match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// `text` with control and bidirectional-formatting characters escaped (see [`truncate`]).
fn inert(text: &str) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let when = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

/// `X-RateLimit-Reset` (unix seconds; small values read as seconds from now).
fn rate_limit_reset(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let reset = header_f64(headers, "x-ratelimit-reset")?;
    // Anything before 2001 cannot be a unix timestamp, so it is a delta.
    if reset < 1e9 {
        return Duration::try_from_secs_f64(reset).ok();
    }
    let now = now.timestamp_millis() as f64 / 1000.0;
    Duration::try_from_secs_f64((reset - now).max(0.0)).ok()
}

/// A numeric header, if present and parseable.
pub(crate) fn header_f64(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = Utc.with_ymd_and_hms(2015, 10, 21, 7, 27, 0).unwrap();
        assert_eq!(
            retry_after(&headers(&[("retry-after", "5")]), now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                now
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:20:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
    }

    #[test]
    fn error_shapes() {
        let docs =
            ErrorInfo::parse(br#"{"status":400,"error":"Bad Request","message":"Invalid cursor"}"#);
        assert_eq!(docs.message.as_deref(), Some("Invalid cursor"));
        assert_eq!(docs.title.as_deref(), Some("Bad Request"));

        let problem = ErrorInfo::parse(
            br#"{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"slow down","code":"rate_limited","retry_after_seconds":7}"#,
        );
        assert_eq!(problem.message.as_deref(), Some("slow down"));
        assert_eq!(problem.code.as_deref(), Some("rate_limited"));
        assert_eq!(problem.wait, Some(Duration::from_secs(7)));

        let sentrion = ErrorInfo::parse(
            br#"{"success":false,"data":null,"error":{"code":"validation_error","message":"limit too big"}}"#,
        );
        assert_eq!(sentrion.message.as_deref(), Some("limit too big"));
        assert_eq!(sentrion.code.as_deref(), Some("validation_error"));

        let plain = ErrorInfo::parse(br#"{"success":false,"data":null,"error":"nope"}"#);
        assert_eq!(plain.message.as_deref(), Some("nope"));

        let payment = ErrorInfo::parse(
            br#"{"status":402,"error":"Payment Required","message":"x","credits_required":50,"credits_balance":"3.5"}"#,
        );
        assert_eq!(payment.credits_required, Some(50.0));
        assert_eq!(payment.credits_balance, Some(3.5));

        let odd = ErrorInfo::parse(b"<html>\n<h1>502 Bad Gateway</h1></html>");
        assert!(odd.message.is_none());
        assert_eq!(
            odd.summary(502, b"<html>\n<h1>502</h1>"),
            "body: <html> <h1>502</h1>"
        );
        assert_eq!(
            ErrorInfo::parse(b"[1,2]").summary(500, b"  "),
            "empty body with HTTP 500"
        );
    }

    #[test]
    fn truncate_is_char_safe() {
        let long = "é".repeat(MESSAGE_LIMIT + 10);
        let t = truncate(&long);
        assert_eq!(t.chars().count(), MESSAGE_LIMIT + 1);
        assert!(t.ends_with('…'));
    }

    #[test]
    fn server_text_reaches_a_terminal_inert() {
        let hostile = "bad key\x1b[2J\x1b]0;owned\x07\r\nfake: ok \u{202e}txt.exe\u{9b}31m";
        let t = truncate(hostile);
        assert_eq!(
            t,
            "bad key\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{d}\\u{a}fake: ok \\u{202e}txt.exe\\u{9b}31m"
        );
        assert!(!t.chars().any(char::is_control));
        assert_eq!(truncate("plain 'text' é"), "plain 'text' é");
    }

    #[test]
    fn rate_limit_reset_forms() {
        let now = Utc.timestamp_opt(2_000_000_000, 0).unwrap();
        assert_eq!(
            rate_limit_reset(&headers(&[("x-ratelimit-reset", "2000000030")]), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            rate_limit_reset(&headers(&[("x-ratelimit-reset", "12")]), now),
            Some(Duration::from_secs(12))
        );
    }
}
