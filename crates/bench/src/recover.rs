//! Recover: the peak RSS of the run that commits what a killed run staged, at two sizes of
//! staging, so that a reader sees whether memory follows the staging (it must not).
//!
//! A first `refresh --source jobs` is killed (`JOBLAKE_CRASH_AT=commit:after-publish`) at
//! its one commit, once every page is staged and its files are written; the next refresh
//! commits the staged pages again from the log, then goes on with its own scan.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::sim::{Sim, big_sim, joblake, scratch};
use crate::usage::{Usage, run_measured};

/// One size's figures.
pub struct Recover {
    pub rows: u64,
    pub staged_bytes: u64,
    pub killed: Usage,
    pub recovery: Usage,
    pub recovery_secs: f64,
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A killed first run of about `jobs` jobs, then the run that recovers it.
async fn once(joblake_bin: &Path, jobs: usize) -> Result<Recover> {
    // About half the simulator's jobs match the default search (see `ingest`).
    let sim = Sim::start(joblake_bin, &big_sim(jobs * 100 / 53, 10)).await?;
    let dir = scratch()?;
    std::fs::write(
        dir.path().join("joblake.toml"),
        "[jobs]\nrequests_per_minute = 0\n",
    )?;
    let args = ["--json", "refresh", "--source", "jobs"];
    let mut killed = joblake(joblake_bin, &sim, dir.path(), &args);
    killed.env("JOBLAKE_CRASH_AT", "commit:after-publish");
    let (out, killed_usage) = run_measured(killed.as_std_mut())?;
    ensure!(
        !out.status.success(),
        "the run was to be killed at its commit, and ended: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staged_bytes = dir_bytes(&dir.path().join("lake/_joblake/staging"));
    ensure!(staged_bytes > 0, "the killed run left nothing staged");

    let mut next = joblake(joblake_bin, &sim, dir.path(), &args);
    let started = Instant::now();
    let (out, usage) = run_measured(next.as_std_mut())?;
    let recovery_secs = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "the recovering refresh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let rows = summary["sources"][0]["recovered_rows"]
        .as_u64()
        .context("recovered_rows")?;
    ensure!(rows > 0, "nothing was recovered: {summary}");
    Ok(Recover {
        rows,
        staged_bytes,
        killed: killed_usage,
        recovery: usage,
        recovery_secs,
    })
}

/// A small staging to learn the bytes a job stages, then one of about `staged_bytes`.
pub async fn run(joblake_bin: &Path, staged_bytes: u64) -> Result<Vec<Recover>> {
    eprintln!("recover: a killed run of 20000 jobs ...");
    let small = once(joblake_bin, 20_000).await?;
    let per_row = small.staged_bytes as f64 / small.rows as f64;
    let jobs = (staged_bytes as f64 / per_row) as usize;
    eprintln!("recover: a killed run of {jobs} jobs ({per_row:.0} staged bytes a job) ...");
    let big = once(joblake_bin, jobs).await?;
    Ok(vec![small, big])
}

/// The Markdown section.
pub fn section(results: &[Recover]) -> String {
    let mut s = String::from(
        "## Recovering a killed run\n\n\
         A first `joblake refresh --source jobs` into a fresh local lake, killed at its one \
         commit (every page staged in the run's log, its files written, nothing committed), \
         then the next `refresh --source jobs`, which commits the staged pages from the log \
         before its own scan. Peak RSS is each process's own (`wait4`). Goal: the recovering \
         run's peak RSS stays within the usual budget (≤ 150 MB) however much was staged; \
         before the log was read a record at a time, a 486 MiB log took it to 1,000 MiB.\n\n\
         | staged | jobs recovered | killed run's peak RSS | recovering run's peak RSS | recovering run |\n\
         |---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {:.0} MiB | {} | {:.0} MB | **{:.0} MB** | {:.1} s |\n",
            r.staged_bytes as f64 / (1 << 20) as f64,
            r.rows,
            r.killed.max_rss_kb as f64 / 1024.0,
            r.recovery.max_rss_kb as f64 / 1024.0,
            r.recovery_secs,
        ));
    }
    s
}
