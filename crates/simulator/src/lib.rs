//! A faithful local stand-in for the Jobo career-sites feed and the Sentrion
//! jobs search, for the demo, the tests and the benchmarks.
//!
//! Both APIs are served from one base URL over a seeded, deterministic data set
//! that changes when told to (`POST /_sim/advance?hours=H`), with the documented
//! validation, pagination, error bodies, credit accounting and headers, an
//! optional per-key rate limit and injectable faults. `/_sim/` admin routes
//! expose the ground truth a complete scan should return.
//!
//! ```no_run
//! # async fn demo() {
//! use joblake_simulator::{SimConfig, Simulator};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let sim = Simulator::start(SimConfig::default(), listener).await;
//! println!("serving on {}", sim.url());
//! sim.shutdown().await;
//! # }
//! ```
#![deny(missing_docs)]

mod admin;
mod data;
mod fault;
mod http;
mod jobo;
mod mutate;
mod pay;
mod sentrion;
mod state;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use fault::{FaultPlan, parse_faults};

use state::Shared;

/// How a simulator instance behaves: its data set, limits, faults and keys.
#[derive(Clone)]
pub struct SimConfig {
    /// Seeds every random choice, so one seed always yields the same data.
    pub seed: u64,
    /// Career sites and jobs generated at start (each).
    pub rows: usize,
    /// Career sites at start, when not `rows`.
    pub career_sites: Option<usize>,
    /// Faults to inject from the first request on.
    pub faults: FaultPlan,
    /// Requests per minute allowed per key and API; `None` is unlimited.
    pub rpm: Option<u32>,
    /// Keys the Jobo feed accepts in `X-Api-Key`.
    pub jobo_keys: Vec<String>,
    /// Keys the Sentrion search accepts as `Authorization: Bearer`.
    pub sentrion_keys: Vec<String>,
    /// Starting credit balance of every key.
    pub credits: f64,
    /// Added to every API response, to model a distant server.
    pub latency: Duration,
    /// Days of job history at start (jobs are published over this span, up to now); career
    /// sites are discovered over the past year.
    pub history_days: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            rows: 500,
            career_sites: None,
            faults: FaultPlan::default(),
            rpm: None,
            jobo_keys: vec!["jbe_test_joblake_demo".into()],
            sentrion_keys: vec!["sk_test_joblake_demo".into()],
            credits: 1_000_000.0,
            latency: Duration::ZERO,
            history_days: 75,
        }
    }
}

// Keys are secrets even in a simulator: Debug shows only how many there are.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("rows", &self.rows)
            .field("career_sites", &self.career_sites)
            .field("faults", &self.faults.to_string())
            .field("rpm", &self.rpm)
            .field(
                "jobo_keys",
                &format_args!("[{} redacted]", self.jobo_keys.len()),
            )
            .field(
                "sentrion_keys",
                &format_args!("[{} redacted]", self.sentrion_keys.len()),
            )
            .field("credits", &self.credits)
            .field("latency", &self.latency)
            .field("history_days", &self.history_days)
            .finish()
    }
}

/// Starts simulator servers.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Serves both APIs and the admin routes on `listener` until shut down.
    pub async fn start(cfg: SimConfig, listener: tokio::net::TcpListener) -> SimHandle {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        let url = base_url(addr);
        let shared = Arc::new(Shared::new(&cfg, url));
        let app = router(shared);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "simulator server stopped with an error");
            }
        });
        tracing::info!(%addr, seed = cfg.seed, rows = cfg.rows, faults = %cfg.faults, "simulator listening");
        SimHandle {
            addr,
            shutdown: Some(tx),
            task,
        }
    }
}

fn base_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/career-sites/feed", post(jobo::feed))
        .route("/api/v3/jobs-search/search", post(sentrion::search))
        .route("/api/companies/{id}", get(jobo::company))
        .route("/_sim/advance", post(admin::advance))
        .route(
            "/_sim/truth/career_sites",
            get(admin::truth_sites).post(admin::truth_sites),
        )
        .route(
            "/_sim/truth/jobs",
            get(admin::truth_jobs).post(admin::truth_jobs),
        )
        .route("/_sim/truth/companies", get(admin::truth_companies))
        .route("/_sim/truth/job_facts", get(admin::truth_job_facts))
        .route("/_sim/log", get(admin::log))
        .route(
            "/_sim/faults",
            get(admin::faults_get)
                .post(admin::faults_post)
                .delete(admin::faults_delete),
        )
        .route(
            "/_sim/credits",
            get(admin::credits_get).post(admin::credits_post),
        )
        .with_state(shared)
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    /// The address the server listens on.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// The base URL both APIs are served under, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        base_url(self.addr)
    }

    /// Stops the server; requests still held by a `timeout` fault get one
    /// second to finish before they are cut.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = &mut self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut *task)
            .await
            .is_err()
        {
            task.abort();
        }
    }

    /// Serves until Ctrl-C, then shuts down.
    pub async fn run_until_ctrl_c(self) {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C; shutting down");
        }
        self.shutdown().await;
    }
}
