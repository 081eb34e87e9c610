//! Reading: the latest-version view beside the plain history over a large lake with
//! superseded versions (before it has a latest table, as refreshes of a page leave it, after
//! `compact`, and after a bigger run), and a lake of many small runs before and after
//! `compact`; and what keeping the latest table exact costs each of those commands.
//! Timed in-process by the stock DuckDB analysts run (`read.py`), best of five.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::sim::{Sim, big_sim, joblake, joblake_ok, scratch};
use crate::usage::run_measured;

/// The timing script: the checkout's own when run from its root (as `make bench` does), so a
/// binary from a shared target dir never runs another checkout's copy.
fn script() -> std::path::PathBuf {
    let here = std::path::Path::new("crates/bench/read.py");
    if here.exists() {
        here.to_path_buf()
    } else {
        concat!(env!("CARGO_MANIFEST_DIR"), "/read.py").into()
    }
}

/// The stock DuckDB to time with: the newest of `JOBLAKE_PY_DUCKDB` (`make py-tools`).
fn py_duckdb() -> Result<String> {
    let dirs = std::env::var("JOBLAKE_PY_DUCKDB")
        .context("JOBLAKE_PY_DUCKDB is not set: run the benchmark with `make bench`")?;
    dirs.split_whitespace()
        .last()
        .map(str::to_string)
        .context("JOBLAKE_PY_DUCKDB is empty")
}

/// The Python of the test tools' venv (`JOBLAKE_PYTHON`, `make py-tools`).
fn python() -> Result<String> {
    std::env::var("JOBLAKE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .context("JOBLAKE_PYTHON is not set: run the benchmark with `make bench`")
}

fn run_py(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(python()?)
        .env("PYTHONPATH", py_duckdb()?)
        .arg(script())
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "read.py {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `joblake` command on a lake with no API (views, compact), its seconds and peak RSS.
fn lake_cmd(joblake_bin: &Path, lake: &Path, args: &[&str]) -> Result<(f64, u64)> {
    let mut cmd = std::process::Command::new(joblake_bin);
    cmd.arg("--lake").arg(lake).args(args);
    measured(&mut cmd, &[0])
}

/// One real `joblake refresh` of `pages` pages of jobs from `sim` onto the lake in `dir` (so
/// it ends as any refresh does, keeping the latest table exact), its seconds and peak RSS.
fn refresh_pages(joblake_bin: &Path, sim: &Sim, dir: &Path, pages: usize) -> Result<(f64, u64)> {
    std::fs::write(
        dir.join("joblake.toml"),
        "[jobs]\nrequests_per_minute = 0\n",
    )?;
    let pages = pages.to_string();
    let mut cmd = joblake(
        joblake_bin,
        sim,
        dir,
        &["-q", "refresh", "--source", "jobs", "--max-pages", &pages],
    );
    // 3: stopped at --max-pages, as asked.
    measured(cmd.as_std_mut(), &[0, 3])
}

/// One real `joblake refresh --source career_sites` from `sim` onto the lake in `dir`, its
/// seconds and peak RSS.
fn refresh_sites(joblake_bin: &Path, sim: &Sim, dir: &Path) -> Result<(f64, u64)> {
    let args = ["-q", "refresh", "--source", "career_sites"];
    let mut cmd = joblake(joblake_bin, sim, dir, &args);
    measured(cmd.as_std_mut(), &[0])
}

/// What the latest table's last commit did: its operation, rows added, rows deleted.
fn last_latest_commit(lake: &Path) -> Result<(String, u64, u64)> {
    let log = lake.join("jobs_latest/_delta_log");
    let last = std::fs::read_dir(&log)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .context("the latest table has no commit")?;
    let (mut op, mut added, mut deleted) = (String::new(), 0, 0);
    let mut dvs_before = std::collections::HashMap::new();
    for line in std::fs::read_to_string(&last)?.lines() {
        let action: Value = serde_json::from_str(line)?;
        if let Some(o) = action["commitInfo"]["operation"].as_str() {
            op = o.to_string();
        }
        if let Some(remove) = action.get("remove") {
            let had = remove["deletionVector"]["cardinality"]
                .as_u64()
                .unwrap_or(0);
            dvs_before.insert(remove["path"].to_string(), had);
        }
        if let Some(add) = action.get("add") {
            match add["deletionVector"]["cardinality"].as_u64() {
                Some(now) => {
                    deleted += now - dvs_before.get(&add["path"].to_string()).unwrap_or(&0)
                }
                None => {
                    let stats: Value = serde_json::from_str(add["stats"].as_str().unwrap_or("{}"))?;
                    added += stats["numRecords"].as_u64().unwrap_or(0);
                }
            }
        }
    }
    Ok((op, added, deleted))
}

/// Runs `cmd` to its end, insisting on one of the exit `codes`; its seconds and peak RSS.
fn measured(cmd: &mut std::process::Command, codes: &[i32]) -> Result<(f64, u64)> {
    cmd.stdin(std::process::Stdio::null());
    let started = Instant::now();
    let (out, usage) = run_measured(cmd)?;
    ensure!(
        out.status.code().is_some_and(|c| codes.contains(&c)),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((started.elapsed().as_secs_f64(), usage.max_rss_kb))
}

fn time_views(lake: &Path) -> Result<Value> {
    let db = lake.join("lake.duckdb");
    Ok(serde_json::from_str(&run_py(&[
        "time",
        db.to_str().unwrap(),
    ])?)?)
}

/// A real jobs file of about `rows` rows, from a refresh against the simulator.
async fn base_file(joblake_bin: &Path, rows: usize) -> Result<(tempfile::TempDir, PathBuf)> {
    let args = big_sim(rows * 100 / 53, 10);
    let sim = Sim::start(joblake_bin, &args).await?;
    let dir = scratch()?;
    std::fs::write(
        dir.path().join("joblake.toml"),
        "[jobs]\nrequests_per_minute = 0\n",
    )?;
    joblake_ok(
        joblake_bin,
        &sim,
        dir.path(),
        &["-q", "refresh", "--source", "jobs"],
    )
    .await?;
    let part = std::fs::read_dir(dir.path().join("lake/jobs"))?
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .context("the refresh wrote no jobs file")?;
    Ok((dir, part))
}

/// The figures: (label, timings) per lake state, and the compactions' own cost.
pub struct Read {
    pub states: Vec<(String, Value)>,
    pub compactions: Vec<(String, f64, u64)>,
    /// The analysts' views on the big lake once its latest table is kept (`read.py
    /// time-analyst`), with what it held then.
    pub analyst: Option<(String, Value)>,
}

pub async fn run(joblake_bin: &Path, versions: usize, small_runs: usize) -> Result<Read> {
    let mut read = Read {
        states: Vec::new(),
        compactions: Vec::new(),
        analyst: None,
    };
    eprintln!("read: a base of real jobs from the simulator ...");
    let (_base_dir, base) = base_file(joblake_bin, 400_000).await?;
    let base = base.to_str().unwrap().to_string();

    let big = scratch()?;
    let lake = big.path().join("lake");
    let superseded = versions / 5;
    let ids = versions - superseded;
    eprintln!("read: a lake of {versions} job versions, {superseded} superseded ...");
    run_py(&[
        "grow",
        lake.to_str().unwrap(),
        &base,
        &ids.to_string(),
        &superseded.to_string(),
    ])?;
    lake_cmd(joblake_bin, &lake, &["views"])?;
    read.states.push((
        format!("{versions} versions, views over the history (no latest table)"),
        time_views(&lake)?,
    ));
    // A refresh of a feed of 20 000 jobs lands on it: it upgrades the lake to Delta tables and
    // makes the latest table, one pass over every version.
    let sim = Sim::start(joblake_bin, &big_sim(20_000, 10)).await?;
    let (secs, rss) = refresh_pages(joblake_bin, &sim, big.path(), 1_000)?;
    read.compactions.push((
        format!(
            "`joblake refresh` of 20 000 jobs onto the {versions} versions (upgrades the lake, makes the latest table)"
        ),
        secs,
        rss,
    ));
    read.states.push((
        "then one `joblake refresh` of 20 000 jobs (the latest table made)".into(),
        time_views(&lake)?,
    ));
    // The lake's first career sites, for `job_companies`: their refresh writes the
    // job_company_keys table, every job's keys and link, which each refresh after it merges
    // its jobs into.
    let (secs, rss) = refresh_sites(joblake_bin, &sim, big.path())?;
    read.compactions.push((
        format!(
            "then `joblake refresh --source career_sites`, the lake's first (writes job_company_keys: {} jobs linked)",
            lake_count(joblake_bin, &lake, "SELECT count(*) FROM job_companies")?
        ),
        secs,
        rss,
    ));
    // Refreshes of a page each, hours apart: each merges its rows into the latest table (the
    // changed jobs' rows they replace deleted by deletion vectors), in proportion to the page,
    // not the lake.
    for n in 1..=3 {
        sim.advance(6).await?;
        let (secs, rss) = refresh_pages(joblake_bin, &sim, big.path(), 1)?;
        let (op, added, deleted) = last_latest_commit(&lake)?;
        ensure!(op == "MERGE", "the latest table was not merged into: {op}");
        read.compactions.push((
            format!(
                "then `joblake refresh` of one page ({n}): merged into the latest table ({added} rows added, {deleted} deleted)"
            ),
            secs,
            rss,
        ));
    }
    read.states.push((
        "then three more refreshes of a page (merged into the latest table)".into(),
        time_views(&lake)?,
    ));
    // The career sites again, hours later: sites came and changed, and the jobs whose keys
    // now name another site (or none) are linked again from the keys job_company_keys holds.
    let (secs, rss) = refresh_sites(joblake_bin, &sim, big.path())?;
    read.compactions.push((
        format!(
            "then `joblake refresh --source career_sites` again ({} sites): job_company_keys linked again",
            lake_count(joblake_bin, &lake, "SELECT count(*) FROM career_sites")?
        ),
        secs,
        rss,
    ));
    // The analysts' views, with the simulator's career sites in the lake for `job_companies`.
    let db = lake.join("lake.duckdb");
    let timings: Value = serde_json::from_str(&run_py(&["time-analyst", db.to_str().unwrap()])?)?;
    let held = format!(
        "{versions} versions and the refreshes above (the latest table kept), {} career sites",
        lake_count(joblake_bin, &lake, "SELECT count(*) FROM career_sites")?
    );
    read.analyst = Some((held, timings));
    let (secs, rss) = lake_cmd(joblake_bin, &lake, &["compact"])?;
    read.compactions.push((
        format!("`joblake compact` of the {versions} versions (writes the latest table again)"),
        secs,
        rss,
    ));
    read.states.push((
        "after `joblake compact` (the latest table as one file)".into(),
        time_views(&lake)?,
    ));
    sim.advance(48).await?;
    let (secs, rss) = refresh_pages(joblake_bin, &sim, big.path(), 100)?;
    let (op, added, deleted) = last_latest_commit(&lake)?;
    read.compactions.push((
        format!(
            "then `joblake refresh` of 100 pages: {} the latest table ({added} rows added, {deleted} deleted)",
            if op == "MERGE" { "merged into" } else { "wrote again" }
        ),
        secs,
        rss,
    ));
    read.states.push((
        "then a refresh of 100 pages (merged into the latest table)".into(),
        time_views(&lake)?,
    ));
    drop(sim);

    // Many small runs, each a real `joblake refresh` that stops after a few pages.
    let per_run_pages = 25;
    let rows = small_runs * per_run_pages * 100;
    eprintln!("read: a lake of {small_runs} small runs of {per_run_pages} pages ...");
    let args = big_sim(rows * 100 / 50, 10);
    let sim = Sim::start(joblake_bin, &args).await?;
    let small = scratch()?;
    std::fs::write(
        small.path().join("joblake.toml"),
        "[jobs]\nrequests_per_minute = 0\n",
    )?;
    let pages = per_run_pages.to_string();
    for _ in 0..small_runs {
        let out = joblake(
            joblake_bin,
            &sim,
            small.path(),
            &["-q", "refresh", "--source", "jobs", "--max-pages", &pages],
        )
        .output()
        .await?;
        // 3: stopped at --max-pages, the point of a small run.
        ensure!(
            matches!(out.status.code(), Some(0 | 3)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lake = small.path().join("lake");
    read.states.push((
        format!("{small_runs} small runs of {per_run_pages} pages, as refreshes leave them"),
        time_views(&lake)?,
    ));
    let (secs, rss) = lake_cmd(joblake_bin, &lake, &["compact"])?;
    read.compactions.push((
        format!("`joblake compact` of the {small_runs} small runs"),
        secs,
        rss,
    ));
    read.states.push((
        format!("{small_runs} small runs, compacted"),
        time_views(&lake)?,
    ));
    Ok(read)
}

/// One number from `joblake query` on a lake.
fn lake_count(joblake_bin: &Path, lake: &Path, sql: &str) -> Result<i64> {
    let out = std::process::Command::new(joblake_bin)
        .arg("--lake")
        .arg(lake)
        .args(["query", "--format", "json", "--", sql])
        .output()?;
    ensure!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout)?;
    rows[0]
        .as_object()
        .and_then(|r| r.values().next())
        .and_then(Value::as_i64)
        .context("a count")
}

pub fn section(read: &Read) -> String {
    let ms = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let mut s = String::from(
        "## Reading\n\n\
         The stock DuckDB (Python) opening `lake.duckdb`, best of five after a warm-up, on the \
         plain history (`jobs_history`) and on the latest-version view (`jobs`). *count* is \
         `SELECT count(*)`; *analyst* is jobs by country and seniority over the last 30 days. \
         Goal: the view within 2 × the history. Lakes are real simulator rows copied to size \
         in joblake's layout (`crates/bench/read.py`).\n\n\
         | lake | versions | ids | count: history | count: jobs | ratio | analyst: history | analyst: jobs | ratio |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (label, v) in &read.states {
        let (ch, cj) = (ms(v, "count:jobs_history"), ms(v, "count:jobs"));
        let (ah, aj) = (ms(v, "analyst:jobs_history"), ms(v, "analyst:jobs"));
        s.push_str(&format!(
            "| {label} | {} | {} | {ch:.1} ms | {cj:.1} ms | **{:.1} ×** | {ah:.1} ms | {aj:.1} ms | **{:.1} ×** |\n",
            v["rows:jobs_history"], v["rows:jobs"], cj / ch, aj / ah
        ));
    }
    s.push_str("\nKeeping the latest table (`jobs_latest/`, a Delta table) exact: every refresh merges its rows in (the rows they replace deleted with deletion vectors, the new ones added as one file), and writes it again as one file when it has none, when the rows merges deleted or added reach a fifth of it, or on `joblake compact`. Goal: a refresh of one page onto the big lake within 5 s and 150 MB peak RSS:\n\n| command | seconds | peak RSS |\n|---|---|---|\n");
    for (label, secs, rss) in &read.compactions {
        s.push_str(&format!(
            "| {label} | {secs:.1} | {:.0} MB |\n",
            *rss as f64 / 1024.0
        ));
    }
    if let Some((held, v)) = &read.analyst {
        let base = ms(v, "count:jobs_history");
        s.push_str(&format!(
            "\nThe analysts' views (schemas/), each beside `SELECT count(*) FROM jobs_history` \
             ({base:.1} ms), on the big lake: {held}. Best of two after a warm-up, stock DuckDB \
             {}. Goal: within 5 × the count.\n\n| query | time | × the count |\n|---|---|---|\n",
            v["duckdb"].as_str().unwrap_or("?")
        ));
        for (name, sql) in ANALYST_QUERIES {
            let t = ms(v, name);
            s.push_str(&format!(
                "| `{sql}` | {t:.0} ms | **{:.1} ×** |\n",
                t / base
            ));
        }
    }
    s
}

/// The analyst queries `read.py` times, by name (its `ANALYST_VIEWS`), as the table shows them.
const ANALYST_QUERIES: [(&str, &str); 5] = [
    ("jobs_changes", "SELECT count(*) FROM jobs_changes"),
    (
        "jobs_changes, last run",
        "queries/examples/06_changes_since_last_refresh.sql (the last refresh's changes, by kind)",
    ),
    ("jobs_lifecycle", "SELECT count(*) FROM jobs_lifecycle"),
    (
        "jobs salaries per year",
        "… median(salary_annual_from) FROM jobs GROUP BY currency, period",
    ),
    ("job_companies", "SELECT count(*) FROM job_companies"),
];
