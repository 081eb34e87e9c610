//! Shared simulator state: the world, credit wallets, rate-limit windows, the
//! fault plan and the request log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::data::World;
use crate::fault::{Api, FaultPlan, Fired};

/// One line of `GET /_sim/log`. Never holds an API key.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogEntry {
    pub seq: u64,
    pub api: &'static str,
    /// The per-API request number that fault `@N` items count.
    pub api_request: u64,
    pub status: u16,
    pub rows: usize,
    pub credits_charged: f64,
    pub cursor: Value,
    pub request_key: String,
    /// The request's window and page size (the date bounds and `limit`/`batch_size` it sent).
    pub params: Value,
    pub fault: Option<String>,
    pub at: String,
}

/// A per-key credit wallet.
#[derive(Debug, Clone)]
pub(crate) struct Wallet {
    pub balance: f64,
    pub charged: f64,
    /// Sentrion bills a posting once per billing cycle: the seqs already billed.
    pub seen: HashSet<i64>,
}

/// Everything behind the one lock; never held across an await.
#[derive(Debug)]
pub(crate) struct Inner {
    pub world: World,
    pub faults: FaultPlan,
    pub fault_rng: ChaCha8Rng,
    counters: HashMap<Api, u64>,
    next_log_seq: u64,
    pub log: Vec<LogEntry>,
    pub wallets: HashMap<(Api, String), Wallet>,
    windows: HashMap<(Api, String), VecDeque<Instant>>,
    /// Job searches already run on this world: their matches in search order (indices into
    /// `world.jobs`), so paging through a million jobs does not search them all per page.
    /// Emptied whenever the world changes.
    pub search_cache: HashMap<String, Arc<Vec<usize>>>,
    /// The cursor each API's last page request carried (`null` for a first page), for the
    /// `cyclecursor` fault.
    pub last_cursor: HashMap<Api, Value>,
}

/// State shared by every handler.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub base_url: String,
    pub latency: Duration,
    pub rpm: Option<u32>,
    /// Ties cursors to this simulator's data set so a foreign cursor is refused.
    pub cursor_tag: String,
    /// Wallet key order for `/_sim/credits`, which must not reveal the keys.
    pub key_order: Vec<(Api, String)>,
}

/// How a rate-limit check went.
pub(crate) enum RateCheck {
    Unlimited,
    Allowed {
        limit: u32,
        remaining: u32,
        reset_unix: i64,
    },
    Exceeded {
        limit: u32,
        retry_after: u64,
        reset_unix: i64,
    },
}

impl Shared {
    pub fn new(cfg: &crate::SimConfig, base_url: String) -> Shared {
        let world = World::generate_sized(
            cfg.seed,
            cfg.career_sites.unwrap_or(cfg.rows),
            cfg.rows,
            cfg.history_days,
            Utc::now(),
        );
        let mut wallets = HashMap::new();
        let mut key_order = Vec::new();
        for (api, keys) in [
            (Api::Jobo, &cfg.jobo_keys),
            (Api::Sentrion, &cfg.sentrion_keys),
        ] {
            for k in keys {
                if wallets.contains_key(&(api, k.clone())) {
                    continue;
                }
                key_order.push((api, k.clone()));
                wallets.insert(
                    (api, k.clone()),
                    Wallet {
                        balance: cfg.credits,
                        charged: 0.0,
                        seen: HashSet::new(),
                    },
                );
            }
        }
        let tag = Sha256::digest(format!("joblake-sim:{}:{}", cfg.seed, cfg.rows).as_bytes());
        Shared {
            inner: Mutex::new(Inner {
                world,
                faults: cfg.faults.clone(),
                fault_rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xFA17_FA17_0000_0001),
                counters: HashMap::new(),
                search_cache: HashMap::new(),
                last_cursor: HashMap::new(),
                next_log_seq: 1,
                log: Vec::new(),
                wallets,
                windows: HashMap::new(),
            }),
            base_url,
            latency: cfg.latency,
            rpm: cfg.rpm,
            cursor_tag: hex(&tag[..6]),
            key_order,
        }
    }

    /// Locks the state; a poisoned lock still holds consistent data because
    /// no handler panics mid-update, so recover rather than fail requests.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the request, decides its faults and opens its log entry.
    pub fn begin(self: &Arc<Self>, api: Api, body: &Bytes, cursor: Value) -> (Fired, LogGuard) {
        let mut g = self.lock();
        let inner = &mut *g;
        let n = inner.counters.entry(api).or_insert(0);
        *n += 1;
        let n = *n;
        let fired = inner.faults.fire(api, n, &mut inner.fault_rng);
        let seq = inner.next_log_seq;
        inner.next_log_seq += 1;
        let entry = LogEntry {
            seq,
            api: api.name(),
            api_request: n,
            status: 0,
            rows: 0,
            credits_charged: 0.0,
            cursor,
            request_key: request_key(body),
            params: window_params(body),
            fault: fired.label(),
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        drop(g);
        (
            fired,
            LogGuard {
                shared: Arc::clone(self),
                entry: Some(entry),
            },
        )
    }

    /// Replaces the fault plan; `@N` counts restart so a plan installed mid-run
    /// means "the Nth request from now".
    pub fn set_faults(&self, plan: FaultPlan) {
        let mut g = self.lock();
        g.faults = plan;
        g.counters.clear();
    }
}

impl Inner {
    /// Checks and records one request against the key's rolling 60 s window.
    pub fn rate_check(&mut self, rpm: Option<u32>, api: Api, key: &str) -> RateCheck {
        let Some(limit) = rpm else {
            return RateCheck::Unlimited;
        };
        let now = Instant::now();
        let window = Duration::from_secs(60);
        let q = self.windows.entry((api, key.to_string())).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        let unix = Utc::now().timestamp();
        let until_free = |q: &VecDeque<Instant>| {
            q.front()
                .map(|t| window.saturating_sub(now.duration_since(*t)))
                .unwrap_or(window)
        };
        if q.len() >= limit as usize {
            let wait = until_free(q);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = secs.max(1);
            return RateCheck::Exceeded {
                limit,
                retry_after: secs,
                reset_unix: unix + secs as i64,
            };
        }
        q.push_back(now);
        let wait = until_free(q);
        RateCheck::Allowed {
            limit,
            remaining: limit.saturating_sub(q.len() as u32),
            reset_unix: unix + wait.as_secs().max(1) as i64,
        }
    }
}

/// Completes a request's log entry; if the handler is dropped first (the
/// client hung up during a `timeout` fault), it logs status 499 instead.
pub(crate) struct LogGuard {
    shared: Arc<Shared>,
    entry: Option<LogEntry>,
}

impl LogGuard {
    pub fn finish(mut self, status: u16, rows: usize, credits: f64) {
        if let Some(mut e) = self.entry.take() {
            e.status = status;
            e.rows = rows;
            e.credits_charged = credits;
            self.shared.lock().log.push(e);
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.status = 499;
            self.shared.lock().log.push(e);
        }
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A hash of the body with whitespace (and key order) normalised, so two
/// identical requests share it.
pub(crate) fn request_key(body: &Bytes) -> String {
    let canonical = match serde_json::from_slice::<Value>(body) {
        Ok(v) => canonical_json(&v),
        Err(_) => String::from_utf8_lossy(body)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    hex(&Sha256::digest(canonical.as_bytes())[..16])
}

/// The fields of a request body that say which slice of the data it asks for (a company
/// profile's request is logged as `{"id": ...}`).
fn window_params(body: &Bytes) -> Value {
    const FIELDS: [&str; 8] = [
        "id",
        "published_after",
        "published_before",
        "updated_after",
        "discovered_after",
        "discovered_before",
        "limit",
        "batch_size",
    ];
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| FIELDS.contains(&k.as_str()))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// JSON text with object keys sorted, whatever order the map type keeps.
pub(crate) fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(canonical_json).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_key_ignores_whitespace_and_key_order() {
        let a = request_key(&Bytes::from_static(br#"{"a": 1, "b": [1, 2]}"#));
        let b = request_key(&Bytes::from_static(b"{\"b\":[1,2],\n\"a\":1}"));
        let c = request_key(&Bytes::from_static(br#"{"a": 2}"#));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
