//! Test fixtures shared by joblake's test suites: one real S3-compatible server
//! (`moto_server`, from the `moto[server]` pip package `make py-tools` installs in its venv) on a free
//! loopback port, buckets on it, and a fault-injecting proxy to put in front of it.
#![deny(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use object_store::aws::AmazonS3Builder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts moto in-process in Python and serves until its stdin closes, which happens when
/// the test binary exits, however it exits: no server outlives the tests.
/// With a second argument, each request is logged to stderr (werkzeug's access log).
const MOTO: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=len(sys.argv) > 2)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"#;

/// The Python of the test tools' venv (`JOBLAKE_PYTHON`, which `make test` sets to the venv
/// `make py-tools` fills): moto, pyarrow, polars and the stock DuckDB releases are there and
/// nowhere else, so a test run without it fails rather than finds stray copies on the machine.
pub fn python() -> String {
    std::env::var("JOBLAKE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "JOBLAKE_PYTHON is not set: run the tests with `make test`, which makes the \
                 Python venv of test tools (moto, pyarrow, polars, the stock DuckDB releases)"
            )
        })
}

/// A `moto_server` on loopback.
pub struct Moto {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    _child: Child,
    _stdin: ChildStdin,
}

impl Moto {
    /// Starts a server of its own with extra environment (tests that change server-wide
    /// settings, such as moto's credential checks, use this).
    pub fn start(env: &[(&str, &str)]) -> Moto {
        Moto::spawn(env, None)
    }

    /// Starts a server of its own that appends a line per request to `log` (`"GET /bucket/key
    /// HTTP/1.1" 200`, werkzeug's access log): for tests that count what a command asks of S3.
    pub fn start_logged(log: &std::path::Path) -> Moto {
        Moto::spawn(&[], Some(log))
    }

    fn spawn(env: &[(&str, &str)], log: Option<&std::path::Path>) -> Moto {
        let port = free_port();
        let mut cmd = Command::new(python());
        cmd.env_remove("PYTHONPATH")
            .envs(env.iter().copied())
            .args(["-c", MOTO, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(log) = log {
            cmd.arg("log")
                .stderr(std::fs::File::create(log).expect("moto's request log"));
        }
        let mut child = cmd.spawn().expect("the venv's python runs moto");
        let stdin = child.stdin.take().unwrap();
        // Verbose, moto says where it listens before the script says it is ready.
        let ready = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim() == "ready");
        assert!(ready, "moto_server did not start");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: child,
            _stdin: stdin,
        }
    }

    /// The server every test of this binary shares.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(|| Moto::start(&[]))
    }

    /// Creates a new empty bucket; the name is made unique from `hint`.
    pub fn bucket(&self, hint: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut name: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        name = format!(
            "{}-{}",
            name.trim_matches('-'),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let status = http(&self.endpoint, "PUT", &format!("/{name}"));
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "create bucket {name}: {status}"
        );
        name
    }

    /// The multipart uploads begun and neither completed nor aborted in `bucket`.
    pub fn unfinished_uploads(&self, bucket: &str) -> usize {
        let body = http(&self.endpoint, "GET", &format!("/{bucket}?uploads"));
        body.matches("<UploadId>").count()
    }
}

/// The settings a user would give through `AWS_*` variables, for `endpoint`.
pub fn s3_builder(endpoint: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One unsigned HTTP/1.1 request (moto does not check signatures); returns the whole answer.
pub fn http(endpoint: &str, method: &str, path: &str) -> String {
    let host = endpoint.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut conn, &mut answer).unwrap();
    answer
}

/// What the proxy does to the next new connections.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer `503 Slow Down`, as S3 does when throttling.
    SlowDown,
    /// Answer `500 Internal Error`.
    InternalError,
    /// Read the request, then close the connection without answering.
    Reset,
}

/// A TCP proxy in front of moto that spoils the first requests of new connections as told,
/// then passes everything through.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: point an S3 client here instead of at the server.
    pub endpoint: String,
    plan: Arc<Mutex<Vec<Fault>>>,
    injected: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (an `http://` endpoint).
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let plan: Arc<Mutex<Vec<Fault>>> = Arc::default();
        let injected = Arc::new(AtomicUsize::new(0));
        let (p, n) = (Arc::clone(&plan), Arc::clone(&injected));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let fault = {
                    let mut plan = p.lock().unwrap();
                    (!plan.is_empty()).then(|| plan.remove(0))
                };
                let upstream = upstream.clone();
                let n = Arc::clone(&n);
                tokio::spawn(async move {
                    match fault {
                        Some(f) => {
                            n.fetch_add(1, Ordering::SeqCst);
                            spoil(client, f).await;
                        }
                        None => pass(client, &upstream).await,
                    }
                });
            }
        });
        FaultProxy {
            endpoint,
            plan,
            injected,
            task,
        }
    }

    /// Spoils the next new connections, one fault each.
    pub fn inject(&self, faults: &[Fault]) {
        self.plan.lock().unwrap().extend_from_slice(faults);
    }

    /// How many connections were spoiled so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn spoil(mut client: tokio::net::TcpStream, fault: Fault) {
    // Read the request head (and whatever body arrived with it) before answering.
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let (status, code) = match fault {
        Fault::SlowDown => ("503 Slow Down", "SlowDown"),
        Fault::InternalError => ("500 Internal Server Error", "InternalError"),
        Fault::Reset => return,
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
    );
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

async fn pass(mut client: tokio::net::TcpStream, upstream: &str) {
    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// The `AWS_*` variables that point a `joblake` process at `endpoint`.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// This machine as an S3 lease names it (`crates/writer/src/lock.rs`): hostname, boot id and
/// PID namespace.
pub fn this_machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap().trim().to_string();
    format!(
        "{}/{}/{}",
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/random/boot_id"),
        std::fs::read_link("/proc/self/ns/pid").unwrap().display()
    )
}
