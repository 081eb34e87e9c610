//! What the lake conformance tests share: a real S3-compatible server (`moto_server`, from
//! the `moto[server]` pip package `make py-tools` installs) on a free loopback port, and
//! a lake on it or in a temp directory.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use joblake_writer::Lake;
use object_store::aws::AmazonS3Builder;

/// `python3 -m moto.server` on loopback, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Moto {
        let tools = std::env::var("JOBLAKE_PY_TOOLS").unwrap_or_else(|_| {
            panic!("JOBLAKE_PY_TOOLS is not set: run the tests with `make test` (it installs moto)")
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .env("PYTHONPATH", tools)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(&endpoint).send().await.is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto { child, endpoint }
    }

    /// A new empty bucket.
    pub async fn bucket(&self, name: &str) -> String {
        let resp = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "create bucket: {}",
            resp.status()
        );
        name.to_string()
    }

    /// A lake at `s3://bucket/prefix` on this server.
    pub fn lake(&self, bucket: &str, prefix: &str) -> Lake {
        let builder = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing");
        Lake::open_s3(builder, bucket, prefix).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh local lake and the temp dir that holds it.
pub fn local_lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap(), true).unwrap();
    (dir, lake)
}
