//! Ingest: `joblake refresh` of a large first run beside a fetch-only baseline (the same
//! pages through the same HTTP client, discarded), with CPU time, peak RSS, and the files
//! and row groups the run left.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use joblake_fetcher::{ClientConfig, JoboClient, JoboScan, SentrionClient, SentrionScan};
use secrecy::SecretString;
use serde_json::Value;

use crate::sim::{Sim, big_sim, joblake, joblake_ok, scratch};
use crate::usage::{Usage, run_measured, self_usage};

/// One table's figures.
pub struct Ingest {
    pub table: &'static str,
    pub rows: u64,
    pub fetch_secs: f64,
    pub fetch_cpu: f64,
    pub run_secs: f64,
    pub run: Usage,
    pub rss_small_kb: u64,
    pub small_rows: u64,
    pub files: Vec<(String, u64)>,
    pub row_groups: (u64, u64, u64),
}

/// Pages through the first-run scan of `table` with the fetcher alone, discarding rows.
async fn fetch_only(sim: &Sim, table: &str) -> Result<(u64, f64, f64)> {
    let before = self_usage();
    let started = Instant::now();
    let mut rows = 0u64;
    let key = |k: &str| SecretString::from(k.to_string());
    if table == "jobs" {
        let client = SentrionClient::new(ClientConfig::new(&sim.url, key("sk_test_joblake_demo")))?;
        let mut pages = std::pin::pin!(client.pages(SentrionScan::default(), None));
        while let Some(page) = pages.next().await {
            rows += page?.rows.len() as u64;
        }
    } else {
        let client = JoboClient::new(ClientConfig::new(&sim.url, key("jbe_test_joblake_demo")))?;
        let mut pages = std::pin::pin!(client.pages(JoboScan::default(), None));
        while let Some(page) = pages.next().await {
            rows += page?.rows.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = self_usage().cpu_secs() - before.cpu_secs();
    Ok((rows, secs, cpu))
}

/// A first `refresh --source <table>` into a fresh lake: wall seconds, usage, rows.
async fn refresh(
    joblake_bin: &Path,
    sim: &Sim,
    table: &str,
) -> Result<(f64, Usage, u64, tempfile::TempDir)> {
    let dir = scratch()?;
    std::fs::write(
        dir.path().join("joblake.toml"),
        "[jobs]\nrequests_per_minute = 0\n[career_sites]\nrequests_per_minute = 0\n",
    )?;
    let mut cmd = joblake(
        joblake_bin,
        sim,
        dir.path(),
        &["--json", "refresh", "--source", table],
    );
    let started = Instant::now();
    let (out, usage) = run_measured(cmd.as_std_mut())?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "refresh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let rows = summary["sources"][0]["rows"].as_u64().context("rows")?;
    Ok((secs, usage, rows, dir))
}

/// Files per partition and (groups, smallest full group, largest group) of the table.
async fn layout(
    joblake_bin: &Path,
    sim: &Sim,
    dir: &Path,
    table: &str,
) -> Result<(Vec<(String, u64)>, (u64, u64, u64))> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.join("lake").join(table))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        // The table's Delta log lies beside its partitions.
        if !name.starts_with("dt=") {
            continue;
        }
        let n = std::fs::read_dir(entry.path())?.count() as u64;
        files.push((name, n));
    }
    files.sort();
    let glob = dir.join("lake").join(table).join("dt=*/*.parquet");
    let sql = format!(
        "SELECT count(*) AS groups, min(n) FILTER (WHERE NOT last) AS smallest, max(n) AS largest \
         FROM (SELECT file_name, row_group_id, any_value(row_group_num_rows) AS n, \
               row_group_id = max(row_group_id) OVER (PARTITION BY file_name) AS last \
               FROM parquet_metadata('{}') GROUP BY file_name, row_group_id)",
        glob.display()
    );
    let out = joblake_ok(joblake_bin, sim, dir, &["query", "--format", "json", &sql]).await?;
    let v: Value = serde_json::from_slice(&out)?;
    let get = |k: &str| v[0][k].as_u64().unwrap_or(0);
    Ok((files, (get("groups"), get("smallest"), get("largest"))))
}

/// Both tables at their full size, the memory check at a tenth of it.
pub async fn run(joblake_bin: &Path, jobs: usize, sites: usize) -> Result<Vec<Ingest>> {
    let mut out = Vec::new();
    for (table, n) in [("jobs", jobs), ("career_sites", sites)] {
        // Jobs: about half match the default search (two months, salary data), so the data
        // set is sized to make `n` the rows fetched.
        let rows_arg = |n: usize| if table == "jobs" { n * 100 / 53 } else { n };
        let mut figures = None;
        for scale in [10, 1] {
            let size = rows_arg(n / scale);
            let args = big_sim(size, if table == "jobs" { 10 } else { n / scale });
            eprintln!("ingest: {table}, simulator of {size} rows ...");
            let sim = Sim::start(joblake_bin, &args).await?;
            if scale == 10 {
                let (_, usage, rows, _dir) = refresh(joblake_bin, &sim, table).await?;
                figures = Some((usage.max_rss_kb, rows));
                continue;
            }
            // Two of each, interleaved, so that a slow moment of the machine costs neither
            // side: the faster of each is compared; peak RSS is the higher of the refreshes'.
            let (_, fetch_secs_a, fetch_cpu_a) = fetch_only(&sim, table).await?;
            let (secs_a, run_a, rows, dir) = refresh(joblake_bin, &sim, table).await?;
            let (fetched, fetch_secs_b, fetch_cpu_b) = fetch_only(&sim, table).await?;
            ensure!(
                fetched == rows,
                "fetch-only saw {fetched} rows, the refresh {rows}"
            );
            let (secs_b, run_b, rows_b, _) = refresh(joblake_bin, &sim, table).await?;
            ensure!(rows_b == rows, "two refreshes saw {rows} and {rows_b} rows");
            let max_rss_kb = run_a.max_rss_kb.max(run_b.max_rss_kb);
            let (run_secs, mut run) = if secs_a <= secs_b {
                (secs_a, run_a)
            } else {
                (secs_b, run_b)
            };
            run.max_rss_kb = max_rss_kb;
            let (files, row_groups) = layout(joblake_bin, &sim, dir.path(), table).await?;
            let (rss_small_kb, small_rows) = figures.take().context("small run")?;
            out.push(Ingest {
                table,
                rows,
                fetch_secs: fetch_secs_a.min(fetch_secs_b),
                fetch_cpu: fetch_cpu_a.min(fetch_cpu_b),
                run_secs,
                run,
                rss_small_kb,
                small_rows,
                files,
                row_groups,
            });
        }
    }
    Ok(out)
}

/// The Markdown section.
pub fn section(results: &[Ingest]) -> String {
    let mut s = String::from(
        "## Ingest\n\n\
         A first `joblake refresh --source <table>` into a fresh local lake against \
         `joblake simulate` (no latency, no rate limit), beside a fetch-only baseline: the same \
         pages through the same `joblake-fetcher` client on the same one-thread runtime, \
         discarded. Two runs of each, \
         interleaved; the faster of each is compared, and peak RSS is the higher of the two \
         refreshes'. CPU and peak RSS are the refresh process's own (`wait4`); \
         *pipeline CPU* is its CPU minus the fetch-only CPU, i.e. parse → Arrow → staging → \
         Parquet. Goals: ≥ 75 % of the fetch-only rate (#16), peak RSS ≤ 150 MB, and ≤ 1.3 × the \
         peak RSS at a tenth of the rows.\n\n\
         | table | rows | fetch-only rows/s | refresh rows/s | ratio | CPU s / M rows (refresh) | pipeline CPU s / M rows | peak RSS | RSS at 1/10 | RSS ratio |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let per_m = |cpu: f64| cpu / (r.rows as f64 / 1e6);
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | **{:.0} %** | {:.1} | {:.1} | **{:.0} MB** | {:.0} MB ({} rows) | **{:.2}** |\n",
            r.table,
            r.rows,
            r.rows as f64 / r.fetch_secs,
            r.rows as f64 / r.run_secs,
            100.0 * r.fetch_secs / r.run_secs,
            per_m(r.run.cpu_secs()),
            per_m(r.run.cpu_secs() - r.fetch_cpu),
            r.run.max_rss_kb as f64 / 1024.0,
            r.rss_small_kb as f64 / 1024.0,
            r.small_rows,
            r.run.max_rss_kb as f64 / r.rss_small_kb as f64,
        ));
    }
    s.push_str("\nFiles the run left, and its row groups (the last group of a file may be short):\n\n| table | files per partition | row groups | smallest full group | largest group |\n|---|---|---|---|---|\n");
    for r in results {
        let files: Vec<String> = r.files.iter().map(|(p, n)| format!("{p}: {n}")).collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.table,
            files.join(", "),
            r.row_groups.0,
            r.row_groups.1,
            r.row_groups.2
        ));
    }
    s
}
