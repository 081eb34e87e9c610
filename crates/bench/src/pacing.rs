//! Pacing at the API's limit: a run of at least `minutes` against the simulator's per-key
//! limit, its utilisation of the allowed rate and its 429s; then a run whose configured
//! budget is above what the server allows, to show the budget adapting.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::sim::{Sim, joblake, scratch};

/// What one paced run did, read off the simulator's request log.
struct Figures {
    requests: usize,
    throttled: usize,
    seconds: f64,
    /// Requests a minute over the run, first request to last.
    rate: f64,
    /// 429s in the run's second half.
    late_throttled: usize,
}

fn figures(log: &[Value]) -> Result<Figures> {
    let at =
        |e: &Value| -> Result<DateTime<Utc>> { Ok(e["at"].as_str().context("log time")?.parse()?) };
    let first = at(log.first().context("no request")?)?;
    let last = at(log.last().context("no request")?)?;
    let seconds = (last - first).num_milliseconds() as f64 / 1000.0;
    let mid = first + (last - first) / 2;
    let throttled = log.iter().filter(|e| e["status"] == 429).count();
    let late_throttled = log
        .iter()
        .filter(|e| e["status"] == 429 && at(e).is_ok_and(|t| t > mid))
        .count();
    Ok(Figures {
        requests: log.len(),
        throttled,
        seconds,
        rate: (log.len() - 1) as f64 / (seconds / 60.0),
        late_throttled,
    })
}

/// Refreshes jobs in 10-row pages paced at `configured` a minute against a simulator that
/// allows `limit`, long enough for `minutes`.
async fn paced_run(
    joblake_bin: &Path,
    minutes: f64,
    limit: u32,
    configured: u32,
) -> Result<Figures> {
    // Data enough for more pages than the run takes (about half the jobs match the default
    // search); the run stops at `--max-pages`, so it lasts `minutes` whatever the data.
    let pages = (minutes * f64::from(limit)).ceil() as usize;
    let rows = (pages * 10 * 3).to_string();
    let args: Vec<String> = [
        "--rows",
        &rows,
        "--history-days",
        "55",
        "--rpm",
        &limit.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let sim = Sim::start(joblake_bin, &args).await?;
    let dir = scratch()?;
    let config = dir.path().join("joblake.toml");
    std::fs::write(
        &config,
        format!("[jobs]\npage_size = 10\nrequests_per_minute = {configured}\n"),
    )?;
    let cfg = config.display().to_string();
    let max_pages = pages.to_string();
    let out = joblake(
        joblake_bin,
        &sim,
        dir.path(),
        &[
            "--config",
            &cfg,
            "-q",
            "refresh",
            "--source",
            "jobs",
            "--max-pages",
            &max_pages,
        ],
    )
    .output()
    .await?;
    // 3: stopped at --max-pages, as intended.
    anyhow::ensure!(
        out.status.code() == Some(3),
        "the paced run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    figures(&sim.log().await?)
}

/// Both runs; the Markdown section.
pub async fn run(joblake_bin: &Path, minutes: f64, rpm: u32) -> Result<String> {
    eprintln!("pacing: a {minutes}-minute run at the simulator's limit of {rpm}/min ...");
    let steady = paced_run(joblake_bin, minutes, rpm, rpm).await?;
    let tight = (rpm * 4 / 5).max(1);
    eprintln!(
        "pacing: a shorter run whose budget ({rpm}/min) is above the server's ({tight}/min) ..."
    );
    let adapt = paced_run(joblake_bin, (minutes * 2.0 / 3.0).max(2.0), tight, rpm).await?;
    let row = |name: &str, limit: u32, f: &Figures| {
        format!(
            "| {name} | {limit} | {} | {:.0} s | {:.1} | **{:.1} %** | {} | {} |",
            f.requests,
            f.seconds,
            f.rate,
            100.0 * f.rate / f64::from(limit),
            f.throttled,
            f.late_throttled
        )
    };
    Ok(format!(
        "## Pacing at the API's limit\n\n\
         `joblake refresh --source jobs` in 10-row pages against `joblake simulate --rpm N` \
         (a rolling 60 s window per key, as Sentrion documents 100/min). Utilisation is the \
         request rate from first request to last over the server's limit; the goal is at \
         least 97 % with no 429. The second run is configured above what the server allows: \
         its 429s must stop as the budget adapts (none in the run's second half).\n\n\
         | run | server limit /min | requests | duration | requests/min | utilisation | 429s | 429s in 2nd half |\n\
         |---|---|---|---|---|---|---|---|\n{}\n{}\n",
        row("budget = limit", rpm, &steady),
        row(&format!("budget {rpm} > limit"), tight, &adapt),
    ))
}
