//! The one error type of the crate: what went wrong, with which API, and what to do next.

use std::fmt;
use std::time::Duration;

/// Which of the two metered APIs a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// Jobo career sites feed (`X-Api-Key`).
    Jobo,
    /// Sentrion jobs search (`Authorization: Bearer`).
    Sentrion,
}

impl Api {
    /// Display name used in messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Api::Jobo => "Jobo",
            Api::Sentrion => "Sentrion",
        }
    }

    /// Environment variable the CLI reads this API's key from.
    pub fn key_env(self) -> &'static str {
        match self {
            Api::Jobo => "JOBO_API_KEY",
            Api::Sentrion => "SENTRION_API_KEY",
        }
    }

    /// Production base URL of the API.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Api::Jobo => "https://connect.jobo.world",
            Api::Sentrion => "https://api.sentrion.ai",
        }
    }

    /// Documented request budget per minute per key (Jobo's paid feeds: 120; Sentrion: 100).
    pub fn default_per_minute(self) -> u32 {
        match self {
            Api::Jobo => 120,
            Api::Sentrion => 100,
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a page could not be fetched.
///
/// Server-provided text in these variants is truncated and has the API key redacted, so every
/// variant is safe to print and log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// HTTP 401: the API does not accept the key.
    #[error(
        "{api} rejected the API key (HTTP 401: {message}); check {env} and that the key is active",
        env = api.key_env()
    )]
    Unauthorized {
        /// API that answered.
        api: Api,
        /// Server's explanation (redacted, truncated).
        message: String,
    },

    /// HTTP 403: the key is valid but not allowed to use this endpoint.
    #[error(
        "{api} rejected the API key for this endpoint (HTTP 403: {message}); check {env} and ask the provider to enable this endpoint for the key",
        env = api.key_env()
    )]
    Forbidden {
        /// API that answered.
        api: Api,
        /// Server's explanation (redacted, truncated).
        message: String,
    },

    /// HTTP 402: not enough credits for the requested page.
    #[error(
        "{api} has too few credits for this page (HTTP 402{}): {message}; top up credits, or lower the page size, then rerun",
        credit_detail(*credits_required, *credits_balance)
    )]
    PaymentRequired {
        /// API that answered.
        api: Api,
        /// Credits the page would have cost, when the API says.
        credits_required: Option<f64>,
        /// Credits left on the account, when the API says.
        credits_balance: Option<f64>,
        /// Server's explanation (redacted, truncated).
        message: String,
    },

    /// HTTP 422, or a 400 that is not about the cursor: the request itself is wrong.
    #[error(
        "{api} rejected the request (HTTP {status}: {message}); fix the filters or options and rerun"
    )]
    Validation {
        /// API that answered.
        api: Api,
        /// HTTP status (400 or 422), or the status the envelope's error code stands for.
        status: u16,
        /// Server's explanation (redacted, truncated).
        message: String,
    },

    /// The API no longer accepts the scan cursor; the caller restarts the scan from its watermark.
    #[error(
        "{api} no longer accepts the scan cursor ({}{message}); drop the cursor and restart the scan from the last committed watermark",
        status.map(|s| format!("HTTP {s}: ")).unwrap_or_default()
    )]
    DeadCursor {
        /// API concerned.
        api: Api,
        /// HTTP status, or `None` when the cursor was rejected locally.
        status: Option<u16>,
        /// Server's (or our) explanation.
        message: String,
    },

    /// Transient failures (429, 5xx, timeouts, resets, cut-off bodies) outlasted the retry budget.
    #[error(
        "{api} request failed {attempts} times, giving up; last error: {last}; try again later"
    )]
    Exhausted {
        /// API that was called.
        api: Api,
        /// Attempts made, first one included.
        attempts: u32,
        /// Description of the last failure.
        last: String,
        /// HTTP status of the last failure, if it had one.
        last_status: Option<u16>,
    },

    /// The API asked for a wait longer than the client is willing to sleep through.
    #[error(
        "{api} asked to wait {}s before the next request (HTTP {status}), longer than this client waits; rerun after that time",
        wait.as_secs()
    )]
    RateLimited {
        /// API that answered.
        api: Api,
        /// HTTP status (429 or 503).
        status: u16,
        /// How long the API asked to wait.
        wait: Duration,
    },

    /// The API said its rate-limit window is spent (`X-RateLimit-Remaining: 0`) until a reset
    /// further off than the client waits.
    #[error(
        "{api} says its rate-limit window is spent for another {}s (X-RateLimit-Remaining: 0 \
         and X-RateLimit-Reset), longer than this client waits; rerun after that time",
        wait.as_secs()
    )]
    WindowSpent {
        /// API that answered.
        api: Api,
        /// How long until its window resets.
        wait: Duration,
    },

    /// Successful responses kept arriving with a body that is not the documented envelope.
    #[error(
        "{api} kept answering with a body that is not the expected JSON ({attempts} attempts; last: {detail}); the API may have changed, check its status and report this"
    )]
    Malformed {
        /// API that answered.
        api: Api,
        /// Attempts made, first one included.
        attempts: u32,
        /// What was wrong with the last body.
        detail: String,
    },

    /// A status this client does not expect from the endpoint (404, 405, 3xx, 501, ...).
    #[error(
        "{api} answered with unexpected HTTP {status}: {message}; check the base URL and the API's status page"
    )]
    Status {
        /// API that answered.
        api: Api,
        /// HTTP status.
        status: u16,
        /// Server's explanation or a short body excerpt (redacted, truncated).
        message: String,
    },

    /// A response body larger than any page could be (counted after decompression): refused
    /// rather than held in memory; retrying would only fetch it again.
    #[error(
        "{api} sent a response body (HTTP {status}) larger than {limit_mib} MiB once \
         decompressed, far more than any page; refused rather than read into memory. Report \
         this to the API's provider"
    )]
    TooLarge {
        /// API that answered.
        api: Api,
        /// HTTP status of the response.
        status: u16,
        /// The limit, in MiB.
        limit_mib: usize,
    },

    /// The client or the request was invalid before anything was sent.
    #[error("invalid {api} request or client setup: {message}; nothing was sent")]
    Config {
        /// API concerned.
        api: Api,
        /// What is wrong.
        message: String,
    },
}

fn credit_detail(required: Option<f64>, balance: Option<f64>) -> String {
    match (required, balance) {
        (Some(r), Some(b)) => format!(", {r} credits required, {b} left"),
        (Some(r), None) => format!(", {r} credits required"),
        (None, Some(b)) => format!(", {b} credits left"),
        (None, None) => String::new(),
    }
}

impl FetchError {
    /// True when retrying later will not help without a change by a person (key, credits, request, setup, API shape).
    pub fn is_terminal(&self) -> bool {
        match self {
            FetchError::Unauthorized { .. }
            | FetchError::Forbidden { .. }
            | FetchError::PaymentRequired { .. }
            | FetchError::Validation { .. }
            | FetchError::Malformed { .. }
            | FetchError::Status { .. }
            | FetchError::TooLarge { .. }
            | FetchError::Config { .. } => true,
            FetchError::DeadCursor { .. }
            | FetchError::Exhausted { .. }
            | FetchError::RateLimited { .. }
            | FetchError::WindowSpent { .. } => false,
        }
    }

    /// True when the caller must drop its cursor and restart the scan from the committed watermark.
    pub fn is_dead_cursor(&self) -> bool {
        matches!(self, FetchError::DeadCursor { .. })
    }

    /// HTTP status behind the error, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Unauthorized { .. } => Some(401),
            FetchError::Forbidden { .. } => Some(403),
            FetchError::PaymentRequired { .. } => Some(402),
            FetchError::Validation { status, .. }
            | FetchError::RateLimited { status, .. }
            | FetchError::Status { status, .. }
            | FetchError::TooLarge { status, .. } => Some(*status),
            FetchError::DeadCursor { status, .. } => *status,
            FetchError::Exhausted { last_status, .. } => *last_status,
            FetchError::Malformed { .. }
            | FetchError::Config { .. }
            | FetchError::WindowSpent { .. } => None,
        }
    }

    /// API the error came from.
    pub fn api(&self) -> Api {
        match self {
            FetchError::Unauthorized { api, .. }
            | FetchError::Forbidden { api, .. }
            | FetchError::PaymentRequired { api, .. }
            | FetchError::Validation { api, .. }
            | FetchError::DeadCursor { api, .. }
            | FetchError::Exhausted { api, .. }
            | FetchError::RateLimited { api, .. }
            | FetchError::WindowSpent { api, .. }
            | FetchError::Malformed { api, .. }
            | FetchError::Status { api, .. }
            | FetchError::TooLarge { api, .. }
            | FetchError::Config { api, .. } => *api,
        }
    }
}
