//! The simulator and the binary under test, as child processes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::process::{Child, Command};

/// `joblake simulate` on a free loopback port, killed on drop.
pub struct Sim {
    _child: Child,
    pub url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Sim {
    pub async fn start(joblake: &Path, args: &[String]) -> Result<Sim> {
        let dir = tempfile::tempdir()?;
        let url_file = dir.path().join("url");
        let child = Command::new(joblake)
            .arg("simulate")
            .arg("--url-file")
            .arg(&url_file)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", joblake.display()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            if let Ok(u) = std::fs::read_to_string(&url_file) {
                break u.trim().to_string();
            }
            if Instant::now() > deadline {
                bail!("the simulator did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Sim {
            _child: child,
            url,
            http: reqwest::Client::new(),
            _dir: dir,
        })
    }

    /// Moves the simulator's clock on by `hours`: jobs are posted and changed meanwhile.
    pub async fn advance(&self, hours: u32) -> Result<()> {
        self.http
            .post(format!("{}/_sim/advance?hours={hours}", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Every request the simulator answered.
    pub async fn log(&self) -> Result<Vec<Value>> {
        let v: Value = self
            .http
            .get(format!("{}/_sim/log", self.url))
            .send()
            .await?
            .json()
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

/// Arguments for a simulator of `jobs` jobs and `sites` career sites published over the
/// last 58 days, with credits enough for any run.
pub fn big_sim(jobs: usize, sites: usize) -> Vec<String> {
    [
        "--rows".to_string(),
        jobs.to_string(),
        "--career-sites".to_string(),
        sites.to_string(),
        "--history-days".to_string(),
        "58".to_string(),
        "--credits".to_string(),
        "1000000000".to_string(),
    ]
    .to_vec()
}

/// A `joblake` command against `sim` on a lake in `dir`, with the simulator's demo keys.
pub fn joblake(joblake: &Path, sim: &Sim, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(joblake);
    c.current_dir(dir)
        .env("JOBO_API_KEY", "jbe_test_joblake_demo")
        .env("SENTRION_API_KEY", "sk_test_joblake_demo")
        .env("JOBO_BASE_URL", &sim.url)
        .env("SENTRION_BASE_URL", &sim.url)
        .arg("--lake")
        .arg(dir.join("lake"))
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Runs [`joblake`] to its end and returns what it printed, or fails with its stderr.
pub async fn joblake_ok(
    joblake_bin: &Path,
    sim: &Sim,
    dir: &Path,
    args: &[&str],
) -> Result<Vec<u8>> {
    let out = joblake(joblake_bin, sim, dir, args).output().await?;
    if !out.status.success() {
        bail!(
            "joblake {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Where the bench keeps its lakes: a temp dir on the same disk as the checkout.
pub fn scratch() -> Result<tempfile::TempDir> {
    let base = PathBuf::from(".bench");
    std::fs::create_dir_all(&base)?;
    Ok(tempfile::tempdir_in(base)?)
}
