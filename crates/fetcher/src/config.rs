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

/// Whether a client at `base_url` would send its key in clear text to another machine: plain
/// `http://` to a host that is not this one (loopback addresses and `localhost` are: a local
/// proxy, the simulator).
pub fn sends_key_in_clear(base_url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base_url.trim()) else {
        return false;
    };
    if url.scheme() != "http" {
        return false;
    }
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            !(d == "localhost" || d.ends_with(".localhost"))
        }
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        None => true,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_to_another_machine_sends_the_key_in_clear() {
        for (url, clear) in [
            ("https://api.sentrion.ai", false),
            ("http://api.sentrion.ai", true),
            ("HTTP://10.0.0.7:8080/", true),
            ("http://127.0.0.1:4010", false),
            ("http://127.8.9.1", false),
            ("http://localhost:4010", false),
            ("http://[::1]:4010", false),
            ("http://[2001:db8::1]", true),
            ("not a url", false),
        ] {
            assert_eq!(sends_key_in_clear(url), clear, "{url}");
        }
    }
}
