//! Client configuration: where to send, with which key, how patiently.

use std::time::Duration;

use secrecy::SecretString;

use crate::{Api, Pacer};

/// How often and how long to retry transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (0 is treated as 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time, with jitter.
    pub base: Duration,
    /// Largest computed delay (a server's `Retry-After` may ask for longer).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

/// Everything a client needs; the key stays a `SecretString` all the way to the header.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL without the endpoint path, e.g. `https://api.sentrion.ai`.
    pub base_url: String,
    /// API key.
    pub key: SecretString,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
    /// Request budget, waited on before every attempt.
    pub pacer: Pacer,
}

impl ClientConfig {
    /// Config with defaults: 120 s timeout (what Jobo's own client allows), default retries, no pacing.
    pub fn new(base_url: impl Into<String>, key: SecretString) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            key,
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            pacer: Pacer::unlimited(),
        }
    }

    /// Config for `api`'s production URL, paced at its documented budget.
    pub fn for_api(api: Api, key: SecretString) -> Self {
        ClientConfig {
            pacer: Pacer::per_minute(api.default_per_minute()),
            ..Self::new(api.default_base_url(), key)
        }
    }
}
