//! `joblake`: turns the Jobo and Sentrion APIs into a queryable local or S3 lake.

mod backfill;
mod catalog;
mod config;
mod enrich;
mod refresh;
mod source;
mod status;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use joblake_schema::Table;
use joblake_writer::{Lake, LakeLocation, LakeLock, RunStatus, read_ledger, write_ledger};
use secrecy::SecretString;

use crate::refresh::{RefreshOptions, SourceSummary, Task};
use crate::source::{Source, api_of, base_url_env};

/// Exit code when a source failed (its committed data and checkpoint stay).
const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage or setup (no key, bad config, lake busy).
const EXIT_USAGE: u8 = 2;
/// Exit code when a run stopped early on purpose (--max-pages); it resumes next run.
const EXIT_PARTIAL: u8 = 3;
/// Exit code after Ctrl-C / SIGTERM.
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "joblake",
    version,
    about = "Jobo + Sentrion APIs -> Parquet lake + DuckDB views"
)]
struct Cli {
    /// The lake: a directory or s3://bucket/prefix.
    #[arg(long, env = "JOBLAKE_LAKE", default_value = "./lake", global = true)]
    lake: String,
    /// Where the DuckDB views live (default <lake>/lake.duckdb, or ./lake.duckdb for S3).
    #[arg(long, global = true)]
    duckdb: Option<PathBuf>,
    /// Config file (default ./joblake.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch what is new from every source with a key, commit it, and rebuild the views.
    Refresh {
        /// Only these sources.
        #[arg(long, value_enum)]
        source: Vec<SourceArg>,
        /// Ignore the watermark: scan everything again (costs credits).
        #[arg(long)]
        full: bool,
        /// Stop each source after N pages; the next run resumes there.
        #[arg(long)]
        max_pages: Option<u64>,
        /// Jobs, first run: published on or after this date instead of the last two months.
        #[arg(long)]
        since: Option<NaiveDate>,
        /// Stop a source before its credit balance could fall under N (what was fetched is
        /// committed; the next run resumes).
        #[arg(long, value_name = "N")]
        min_credits: Option<f64>,
        /// Estimate the rows and credits the run would cost, without fetching the data.
        #[arg(long)]
        dry_run: bool,
        /// After the feeds, fetch the company profiles `[companies]` in joblake.toml chooses.
        #[arg(long)]
        enrich: bool,
    },
    /// Fetch full profiles for the career sites an SQL predicate chooses.
    Enrich {
        /// What to enrich.
        #[arg(value_enum)]
        what: EnrichWhat,
        #[command(flatten)]
        args: EnrichArgs,
        /// Say which companies a run would fetch, without fetching (no key needed).
        #[arg(long)]
        dry_run: bool,
    },
    /// Walk a long range of history in windows, newest first, each window checkpointed.
    Backfill {
        /// The source: jobs (by publication date) or career_sites (by discovery time).
        #[arg(long, value_enum)]
        source: SourceArg,
        /// Jobs: the first publication date (at most six years back).
        #[arg(long, required_if_eq("source", "jobs"))]
        since: Option<NaiveDate>,
        /// Jobs: the last publication date, inclusive (default today).
        #[arg(long)]
        until: Option<NaiveDate>,
        /// Career sites: first discovered at or after this date or RFC 3339 time.
        #[arg(long, value_parser = backfill::parse_instant, required_if_eq("source", "career_sites"))]
        discovered_after: Option<chrono::DateTime<Utc>>,
        /// Career sites: first discovered before this date or time (default now).
        #[arg(long, value_parser = backfill::parse_instant)]
        discovered_before: Option<chrono::DateTime<Utc>>,
        /// Stop after N pages; the next run resumes there.
        #[arg(long)]
        max_pages: Option<u64>,
        /// Stop before the credit balance could fall under N.
        #[arg(long, value_name = "N")]
        min_credits: Option<f64>,
        /// Show the plan (windows, rows, credits, time) and stop.
        #[arg(long)]
        dry_run: bool,
    },
    /// Merge each partition's files into one; every row version is kept, so the views return
    /// exactly the same rows.
    Compact {
        /// Only these tables.
        #[arg(long, value_enum)]
        source: Vec<SourceArg>,
    },
    /// (Re)create the DuckDB views.
    Views,
    /// Rows, ids, files, partitions, last run, cursor and credits per table.
    Status,
    /// Run SQL on the views with the embedded DuckDB.
    Query {
        /// The SQL.
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Serve both APIs locally from synthetic data (for the demo, tests and benchmarks).
    Simulate(SimulateArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum SourceArg {
    #[value(name = "career_sites")]
    CareerSites,
    Jobs,
}

#[derive(Clone, Copy, ValueEnum)]
enum EnrichWhat {
    /// Company profiles (`GET /api/companies/{id}`) into the `companies` table.
    Companies,
}

/// `enrich companies`' choices; each one unset falls back to `[companies]` in joblake.toml.
#[derive(clap::Args, Default)]
struct EnrichArgs {
    /// SQL predicate over the career_sites view, e.g.
    /// "list_contains(industries, 'fintech')" (default: every career site).
    #[arg(long = "where", value_name = "SQL")]
    predicate: Option<String>,
    /// Profiles fetched more recently than this are not fetched again: 30d, 12h, 7.
    #[arg(long, value_name = "AGE")]
    stale_after: Option<String>,
    /// At most N profiles this run (the rest are next run's).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Profiles asked for at once (still under the Jobo request budget).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Rows per API at start.
    #[arg(long, default_value_t = 500)]
    rows: usize,
    /// Career sites at start, when not --rows.
    #[arg(long)]
    career_sites: Option<usize>,
    /// Faults to inject, e.g. "jobo:429=1@3,sentrion:503@2".
    #[arg(long, default_value = "")]
    faults: String,
    /// Requests per minute per key before answering 429.
    #[arg(long)]
    rpm: Option<u32>,
    /// Jobo key the simulator accepts.
    #[arg(
        long,
        env = "JOBLAKE_SIM_JOBO_KEY",
        default_value = "jbe_test_joblake_demo",
        hide_env_values = true
    )]
    jobo_key: String,
    /// Sentrion key the simulator accepts.
    #[arg(
        long,
        env = "JOBLAKE_SIM_SENTRION_KEY",
        default_value = "sk_test_joblake_demo",
        hide_env_values = true
    )]
    sentrion_key: String,
    /// Starting credit balance per key.
    #[arg(long, default_value_t = 1_000_000.0)]
    credits: f64,
    /// Added latency per response, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Days of job history at start (for backfills).
    #[arg(long, default_value_t = 75)]
    history_days: u32,
    /// Write the base URL into this file once listening.
    #[arg(long)]
    url_file: Option<PathBuf>,
}

/// glibc's malloc keeps freed memory of a long run for reuse: each page passes through
/// buffers of ~100 kB and each Parquet row group through one of tens of MB, and by default
/// those come from (and fragment) its heaps, so resident memory creeps up page after page.
/// Buffers from 128 kB up are mapped on their own instead, and go back to the OS when freed;
/// two arenas are plenty for a process with one fetcher and one writer.
fn lean_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called once, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// A file size limit (`ulimit -f`) reached mid-write should be an error that names the file,
/// not a signal that kills the process before it can commit what it has.
fn file_size_limit_is_an_error() {
    #[cfg(unix)]
    // SAFETY: ignoring SIGXFSZ turns the signal into EFBIG from write(2); nothing else changes.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() -> ExitCode {
    lean_malloc();
    file_size_limit_is_an_error();
    let cli = Cli::parse();
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn init_tracing(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("JOBLAKE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Refresh {
            source,
            full,
            max_pages,
            since,
            min_credits,
            dry_run,
            enrich,
        } => {
            let tables = tables_of(source);
            let task = Task::Refresh {
                full: *full,
                since: *since,
            };
            if *dry_run {
                return estimate(&cli, &tables, &task).await;
            }
            let enrich = enrich.then(EnrichArgs::default);
            cmd_run(
                &cli,
                &tables,
                task,
                *max_pages,
                *min_credits,
                enrich.as_ref(),
            )
            .await
        }
        Command::Enrich {
            what: EnrichWhat::Companies,
            args,
            dry_run: true,
        } => enrich_plan(&cli, args).await,
        Command::Enrich {
            what: EnrichWhat::Companies,
            args,
            dry_run: false,
        } => {
            let task = Task::Refresh {
                full: false,
                since: None,
            };
            cmd_run(&cli, &[], task, None, None, Some(args)).await
        }
        Command::Backfill {
            source,
            since,
            until,
            discovered_after,
            discovered_before,
            max_pages,
            min_credits,
            dry_run,
        } => {
            let now = Utc::now();
            let (table, range) = match source {
                SourceArg::Jobs => {
                    if discovered_after.is_some() || discovered_before.is_some() {
                        bail!(
                            "--discovered-after/--discovered-before are for --source career_sites; jobs take --since/--until"
                        );
                    }
                    let since = since.context("--since is required for --source jobs")?;
                    (
                        Table::Jobs,
                        backfill::Range::jobs(since, *until, now.date_naive())?,
                    )
                }
                SourceArg::CareerSites => {
                    if since.is_some() || until.is_some() {
                        bail!(
                            "--since/--until are for --source jobs; career sites take --discovered-after/--discovered-before"
                        );
                    }
                    let after = discovered_after
                        .context("--discovered-after is required for --source career_sites")?;
                    (
                        Table::CareerSites,
                        backfill::Range::career_sites(after, *discovered_before, now)?,
                    )
                }
            };
            let task = Task::Backfill(range);
            if *dry_run {
                return estimate(&cli, &[table], &task).await;
            }
            cmd_run(&cli, &[table], task, *max_pages, *min_credits, None).await
        }
        Command::Compact { source } => {
            // Both feeds by default, and the company profiles once there are some.
            let tables = if source.is_empty() {
                catalog::tables_in(&Lake::open(&cli.lake, false)?).await?
            } else {
                tables_of(source)
            };
            cmd_compact(&cli, &tables).await
        }
        Command::Views => {
            let lake = Lake::open(&cli.lake, false)?;
            let db = duckdb_path(&cli, &lake);
            rebuild_views(&lake, &db).await?;
            if !cli.quiet {
                eprintln!("views written to {}", db.display());
            }
            Ok(0)
        }
        Command::Status => {
            let lake = Lake::open(&cli.lake, false)?;
            status::print(&lake, cli.json).await?;
            Ok(0)
        }
        Command::Query { sql, format } => {
            let lake = Lake::open(&cli.lake, false)?;
            let db = duckdb_path(&cli, &lake);
            let batches = joblake_views::query(&engine(&lake), &db, sql)?;
            print_batches(&batches, if cli.json { Format::Json } else { *format })?;
            Ok(0)
        }
        Command::Simulate(args) => simulate(args).await,
    }
}

/// The feeds `--source` names, or both.
fn tables_of(source: &[SourceArg]) -> Vec<Table> {
    if source.is_empty() {
        return Table::feeds().to_vec();
    }
    source
        .iter()
        .map(|s| match s {
            SourceArg::CareerSites => Table::CareerSites,
            SourceArg::Jobs => Table::Jobs,
        })
        .collect()
}

/// `joblake compact`: under the lake lock, each table's partitions merged, then the views.
async fn cmd_compact(cli: &Cli, tables: &[Table]) -> Result<u8> {
    let started = Instant::now();
    let lake = Lake::open(&cli.lake, false)?;
    let holder = format!(
        "joblake compact, pid {}, started {}",
        std::process::id(),
        Utc::now().to_rfc3339()
    );
    let lock = LakeLock::acquire(&lake, &holder).await?;
    let run_id = Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string();
    // A killed run's staged pages are committed first (under that run's file names, which
    // the merge would otherwise take away, and the next refresh would write again).
    mark_crashed_runs(&lake).await;
    for table in Table::all() {
        let mut summary = SourceSummary::new(table);
        if let Err(e) = refresh::open_table(&lake, table, &run_id, &mut summary).await {
            lock.release().await;
            return Err(e.context("nothing was compacted"));
        }
        if summary.recovered_rows > 0 && !cli.quiet && !cli.json {
            eprintln!(
                "{table}: committed {} rows an interrupted run had fetched",
                summary.recovered_rows
            );
        }
    }
    let mut reports = Vec::new();
    let mut failure = None;
    for &table in tables {
        match joblake_writer::compact_table(
            &lake,
            &lock,
            table.name(),
            joblake_schema::arrow_schema(table),
            &run_id,
            &joblake_writer::WriterOptions::default(),
        )
        .await
        {
            Ok(r) => reports.push(r),
            Err(e) => {
                failure =
                    Some(anyhow::Error::new(e).context(format!("{table}: compaction stopped")));
                break;
            }
        }
    }
    let mut snapshots = Vec::new();
    if failure.is_none() {
        for &table in tables {
            match build_snapshot(&lake, table, &run_id).await {
                Ok(Some(snap)) => snapshots.push((table, snap)),
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e.context(format!(
                        "{table}: the merged files are in place, but the latest-version \
                         snapshot could not be written (the views read the history meanwhile)"
                    )));
                    break;
                }
            }
        }
    }
    let db = duckdb_path(cli, &lake);
    let views = rebuild_views(&lake, &db).await.map(|()| true);
    lock.release().await;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run_id": run_id,
                "tables": reports,
                "snapshots": snapshots.iter().map(|(t, s)| serde_json::json!({
                    "table": t.name(), "ids": s.rows, "through": s.through, "files": s.files,
                })).collect::<Vec<_>>(),
                "seconds": started.elapsed().as_secs_f64(),
            }))?
        );
    } else if !cli.quiet {
        for r in &reports {
            println!(
                "{}: {} partitions compacted, {} files -> {}, {} rows kept, {} -> {} bytes{}",
                r.table,
                r.partitions,
                r.files_before,
                r.files_after,
                r.rows,
                r.bytes_before,
                r.bytes_after,
                if r.skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; left as they are (their files disagree on a column's type): {}",
                        r.skipped.join(", ")
                    )
                }
            );
        }
    }
    if !cli.json && !cli.quiet {
        for (t, snap) in &snapshots {
            println!(
                "{t}: the latest version of {} ids written down through run {}",
                snap.rows, snap.through
            );
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    views?;
    Ok(0)
}

/// Whether `table`'s views are due a new snapshot: there is none and the history holds more
/// than one run (the views would otherwise be a window over every version), or the runs after
/// it hold `after` of its bytes (`[views] snapshot_after`, 0.2 by default). Until then the
/// views read the snapshot without the rows later runs replaced, plus those runs' latest
/// rows, which costs a little more with every run; a new snapshot costs a pass over the
/// latest rows, so rewriting it at a fifth keeps what refreshes pay for it within five times
/// what they fetch.
async fn snapshot_due(lake: &Lake, table: Table, after: f64) -> Result<bool> {
    let files = catalog::history_files(lake, table).await?;
    let Some(snap) = catalog::read_snapshot(lake, table).await? else {
        let runs: std::collections::BTreeSet<&str> = files
            .iter()
            .filter_map(|m| catalog::file_run(&m.location))
            .collect();
        return Ok(runs.len() > 1);
    };
    let newer: u64 = files
        .iter()
        .filter(|m| {
            catalog::file_run(&m.location)
                .is_some_and(|run| run > snap.through.as_str() && run != snap.made_by)
        })
        .map(|m| m.size)
        .sum();
    if newer == 0 {
        return Ok(false);
    }
    let snapshot: u64 = lake
        .list(&object_store::path::Path::from(format!(
            "_joblake/latest/{}",
            table.name()
        )))
        .await?
        .iter()
        .filter(|m| snap.files.iter().any(|f| f.as_str() == m.location.as_ref()))
        .map(|m| m.size)
        .sum();
    Ok(newer as f64 >= after * snapshot as f64)
}

/// At the end of a refresh (under its lake lock), writes a new snapshot for each table that
/// is due one (see `snapshot_due`). The fetched rows are committed by then: a snapshot that
/// cannot be written only leaves the views reading the history, and the next refresh tries
/// again.
async fn keep_snapshots_current(cli: &Cli, lake: &Lake, after: f64) {
    let tables = match catalog::tables_in(lake).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot list the lake's tables; no snapshot written");
            return;
        }
    };
    for table in tables {
        let due = match snapshot_due(lake, table, after).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(%table, error = %format!("{e:#}"), "cannot tell whether a snapshot is due");
                continue;
            }
        };
        if !due {
            continue;
        }
        let id = Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string();
        match build_snapshot(lake, table, &id).await {
            Ok(Some(snap)) if !cli.quiet && !cli.json => eprintln!(
                "{table}: the latest version of {} ids written down through run {}",
                snap.rows, snap.through
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                %table,
                error = %format!("{e:#}"),
                "the latest-version snapshot could not be written (the views read the history meanwhile)"
            ),
        }
    }
}

/// Writes the latest version of every id of `table` as a snapshot the views start from (see
/// `catalog.rs`), points the table at it, and removes snapshots no view reads any more.
async fn build_snapshot(
    lake: &Lake,
    table: Table,
    run_id: &str,
) -> Result<Option<catalog::Snapshot>> {
    let name = table.name();
    let files = catalog::history_files(lake, table).await?;
    if files.is_empty() {
        return Ok(None);
    }
    let list = files
        .iter()
        .map(|m| joblake_views::literal(&lake.reader_path(m.location.as_ref())))
        .collect::<Vec<_>>()
        .join(", ");
    // The history as its view reads it, over exactly these files.
    let history = format!("read_parquet([{list}], union_by_name = true, hive_partitioning = true)");
    let through_sql = format!("SELECT max(_run_id) FROM {history}");
    // Which versions lost to a later one, by file (its place in `files`) and row: a window
    // over four narrow columns, which DuckDB spills rather than hold whole rows (job
    // descriptions and all).
    let superseded_sql = format!(
        "SELECT file_index::BIGINT, file_row_number::BIGINT FROM (\n\
           SELECT id, _run_id, _page, _row, file_index, file_row_number\n\
           FROM read_parquet([{list}], union_by_name = true, file_row_number = true))\n\
         QUALIFY row_number() OVER (PARTITION BY id ORDER BY {}) > 1",
        catalog::LATEST_FIRST
    );
    let describe_sql = format!("SELECT column_name FROM (DESCRIBE SELECT * FROM {history})");
    let narrow = joblake_views::Engine {
        memory_limit: Some("128MB".into()),
        ..engine(lake)
    };
    let (through, positions, described) = tokio::task::spawn_blocking(move || {
        let q = |sql: &str| joblake_views::query_fresh(&narrow, "", sql);
        Ok::<_, joblake_views::Error>((q(&through_sql)?, q(&superseded_sql)?, q(&describe_sql)?))
    })
    .await??;
    let through = through.first().and_then(|b| {
        b.column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .filter(|a| arrow::array::Array::len(*a) > 0 && arrow::array::Array::is_valid(*a, 0))
            .map(|a| a.value(0).to_string())
    });
    let Some(through) = through else {
        return Ok(None);
    };
    let mut columns = Vec::new();
    for b in &described {
        let Some(names) = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
        else {
            anyhow::bail!("DuckDB described the history's columns in an unexpected type");
        };
        columns.extend(names.iter().flatten().map(str::to_string));
    }
    let mut superseded: Vec<Vec<u64>> = vec![Vec::new(); files.len()];
    for b in &positions {
        let (Some(file), Some(row)) = (
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>(),
            b.column(1)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>(),
        ) else {
            anyhow::bail!("DuckDB gave the superseded rows' positions an unexpected type");
        };
        for (f, r) in file.values().iter().zip(row.values()) {
            let rows = usize::try_from(*f)
                .ok()
                .and_then(|f| superseded.get_mut(f))
                .context("DuckDB named a file the history does not have")?;
            rows.push(u64::try_from(*r)?);
        }
    }
    drop(positions);
    superseded.iter_mut().for_each(|rows| rows.sort_unstable());
    let rel = format!("_joblake/latest/{name}/{run_id}.parquet");
    let written = joblake_writer::write_latest(
        lake,
        name,
        &joblake_schema::arrow_schema(table),
        joblake_writer::LatestRows {
            files: &files,
            columns: &columns,
            superseded: &superseded,
        },
        object_store::path::Path::from(rel.as_str()),
        &joblake_writer::WriterOptions::default(),
        vec![
            ("joblake.run_id".to_string(), run_id.to_string()),
            ("joblake.latest_through".to_string(), through.clone()),
        ],
    )
    .await?;
    let rows = match written {
        Some(rows) => rows,
        None => {
            // Files that disagree on a column's type: DuckDB's union of them, a window over
            // whole rows (spilling beyond 1 GB).
            let target = lake.reader_path(&rel);
            if let LakeLocation::Local(_) = lake.location()
                && let Some(dir) = std::path::Path::new(&target).parent()
            {
                std::fs::create_dir_all(dir)?;
            }
            let engine = joblake_views::Engine {
                memory_limit: Some("1GB".into()),
                ..engine(lake)
            };
            let select = catalog::latest_of(&history);
            tokio::task::spawn_blocking(move || {
                joblake_views::copy_to_parquet(&engine, "", &select, &target)
            })
            .await??
        }
    };
    let previous = catalog::read_snapshot(lake, table)
        .await?
        .map(|s| s.files)
        .unwrap_or_default();
    let snap = catalog::Snapshot {
        format: 1,
        through,
        made_by: run_id.to_string(),
        files: vec![rel],
        previous,
        rows,
    };
    joblake_writer::crash_point("snapshot:after-copy");
    lake.put(
        &catalog::snapshot_pointer(table),
        serde_json::to_vec_pretty(&snap)?.into(),
    )
    .await?;
    let keep: Vec<&String> = snap.files.iter().chain(&snap.previous).collect();
    let stale = lake
        .list(&object_store::path::Path::from(format!(
            "_joblake/latest/{name}"
        )))
        .await?
        .into_iter()
        .map(|m| m.location)
        .filter(|p| !keep.iter().any(|k| k.as_str() == p.as_ref()))
        .collect();
    lake.delete_all(stale).await?;
    Ok(Some(snap))
}

fn duckdb_path(cli: &Cli, lake: &Lake) -> PathBuf {
    if let Some(p) = &cli.duckdb {
        return p.clone();
    }
    match lake.location() {
        LakeLocation::Local(root) => root.join("lake.duckdb"),
        LakeLocation::S3 { .. } => PathBuf::from("lake.duckdb"),
    }
}

async fn rebuild_views(lake: &Lake, db: &std::path::Path) -> Result<()> {
    let sql = catalog::view_sql(lake).await?;
    let db = db.to_path_buf();
    // Building the views only scans (the snapshot rows newer runs replaced, see catalog.rs):
    // capped, DuckDB spills rather than grow a run's memory when many runs piled up since the
    // last compaction.
    let engine = joblake_views::Engine {
        memory_limit: Some("128MB".into()),
        ..engine(lake)
    };
    tokio::task::spawn_blocking(move || {
        joblake_views::rebuild(&engine, &db, &[sql], &|| {
            joblake_writer::crash_point("views:before-rename")
        })
    })
    .await?
    .context("cannot write the DuckDB views")
}

/// How joblake's DuckDB sessions reach `lake`: extensions from beside the binary (see
/// `joblake_views::extension_dir`), and for an S3 lake a session-only secret made from the
/// same `AWS_*` settings the lake was opened with.
pub(crate) fn engine(lake: &Lake) -> joblake_views::Engine {
    let extension_dir = joblake_views::extension_dir();
    let s3 = lake.s3_access().map(|a| {
        let endpoint = a.endpoint.as_deref().map(url_host);
        joblake_views::S3Secret {
            scope: a.scope.clone(),
            key_id: a.access_key_id.clone(),
            secret: a.secret_access_key.clone(),
            session_token: a.session_token.clone(),
            region: a.region.clone(),
            use_ssl: !a
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            // AWS itself is reached bucket-first; a custom endpoint as object_store does.
            virtual_hosted_style: endpoint.is_none() || a.virtual_hosted_style,
            endpoint,
        }
    });
    joblake_views::Engine {
        extension_dir,
        s3,
        memory_limit: None,
        single_thread: false,
    }
}

/// `host[:port]` of an endpoint URL, as DuckDB's S3 settings take it.
fn url_host(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.trim_end_matches('/').to_string()
}

fn read_key(var: &str) -> Option<SecretString> {
    std::env::var(var)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .map(SecretString::from)
}

/// The sources of `tables` whose key is set, and why the others were skipped.
fn configured_sources(
    cfg: &config::FileConfig,
    tables: &[Table],
) -> Result<(Vec<Source>, Vec<String>)> {
    let mut sources = Vec::new();
    let mut skipped = Vec::new();
    for &table in tables {
        let api = api_of(table);
        match read_key(api.key_env()) {
            None => skipped.push(format!("{table}: {} is not set", api.key_env())),
            Some(key) => {
                let base = std::env::var(base_url_env(api))
                    .unwrap_or_else(|_| api.default_base_url().to_string());
                let scfg = source_config(cfg, table);
                sources.push(Source::new(table, key, base, scfg)?);
            }
        }
    }
    Ok((sources, skipped))
}

/// The settings of `table`'s API (company profiles are Jobo's, paced as its feed).
fn source_config(cfg: &config::FileConfig, table: Table) -> &config::SourceConfig {
    match table {
        Table::CareerSites | Table::Companies => &cfg.career_sites,
        Table::Jobs => &cfg.jobs,
    }
}

/// What to enrich: `args` where given, `[companies]` in joblake.toml otherwise.
fn enrich_options(
    cfg: &config::CompaniesConfig,
    args: &EnrichArgs,
) -> Result<enrich::EnrichOptions> {
    let stale_after = match args.stale_after.as_ref().or(cfg.stale_after.as_ref()) {
        Some(s) => enrich::parse_age(s).map_err(|e| anyhow::anyhow!("--stale-after: {e}"))?,
        None => chrono::Duration::days(30),
    };
    let concurrency = args.concurrency.or(cfg.concurrency).unwrap_or(4);
    if concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    Ok(enrich::EnrichOptions {
        predicate: args
            .predicate
            .clone()
            .or_else(|| cfg.predicate.clone())
            .filter(|p| !p.trim().is_empty()),
        stale_after,
        limit: args.limit.or(cfg.limit),
        concurrency,
    })
}

/// `enrich companies --dry-run`: the companies due now, from the lake as last committed.
async fn enrich_plan(cli: &Cli, args: &EnrichArgs) -> Result<u8> {
    let (cfg, _) = config::load(cli.config.as_deref())?;
    let opts = enrich_options(
        cfg.companies
            .as_ref()
            .unwrap_or(&config::CompaniesConfig::default()),
        args,
    )?;
    if !cli.lake.contains("://") && !std::path::Path::new(&cli.lake).exists() {
        bail!(
            "there is no lake at {} yet: run `joblake refresh` first, the companies are \
             chosen among its career sites",
            cli.lake
        );
    }
    let lake = Lake::open(&cli.lake, false)?;
    let ids = enrich::plan(&lake, &opts).await?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "due": ids.len(),
                "ids": ids,
            }))?
        );
    } else {
        println!(
            "companies: {} profiles due{} (nothing fetched)",
            ids.len(),
            match opts.limit {
                Some(n) if ids.len() as u64 == n => " (the --limit)",
                _ => "",
            }
        );
    }
    Ok(0)
}

/// `--dry-run`: what a run would fetch and cost, asked of the APIs' own totals where they
/// give them, without fetching the data or touching the lake.
async fn estimate(cli: &Cli, tables: &[Table], task: &Task) -> Result<u8> {
    let (cfg, _) = config::load(cli.config.as_deref())?;
    let (sources, skipped) = configured_sources(&cfg, tables)?;
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    if sources.is_empty() {
        bail!("no API key is set: export JOBO_API_KEY and/or SENTRION_API_KEY");
    }
    let lake = Lake::open(&cli.lake, false).ok();
    let mut out = Vec::new();
    for src in &sources {
        let state = match &lake {
            Some(lake) => status::committed_state(lake, src.table).await?,
            None => None,
        }
        .unwrap_or_default();
        let ledger = match &lake {
            Some(lake) => read_ledger(lake).await.unwrap_or_default(),
            None => Vec::new(),
        };
        out.push(source::estimate(src, &state, task, &ledger).await?);
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for e in &out {
            println!("{}", e.describe());
        }
    }
    Ok(0)
}

async fn cmd_run(
    cli: &Cli,
    tables: &[Table],
    task: Task,
    max_pages: Option<u64>,
    min_credits: Option<f64>,
    enrich: Option<&EnrichArgs>,
) -> Result<u8> {
    let started = Instant::now();
    let (cfg, cfg_path) = config::load(cli.config.as_deref())?;
    if let Some(p) = &cfg_path {
        tracing::info!(config = %p.display(), "using config");
    }
    let (sources, mut skipped) = configured_sources(&cfg, tables)?;
    let snapshot_after = cfg.views.snapshot_after()?;
    let enrich = match (enrich, &cfg.companies) {
        // `refresh --enrich` enriches what the config chooses, and nothing without a choice.
        (Some(_), None) if !tables.is_empty() => {
            skipped.push(
                "companies: the config has no [companies] section saying which to enrich".into(),
            );
            None
        }
        (Some(args), companies) => Some(enrich_options(
            companies
                .as_ref()
                .unwrap_or(&config::CompaniesConfig::default()),
            args,
        )?),
        (None, _) => None,
    };
    let jobo_key = read_key(joblake_fetcher::Api::Jobo.key_env());
    if enrich.is_some() && jobo_key.is_none() {
        if tables.is_empty() {
            bail!(
                "company profiles come from Jobo: export {}",
                joblake_fetcher::Api::Jobo.key_env()
            );
        }
        skipped.push(format!(
            "companies: {} is not set",
            joblake_fetcher::Api::Jobo.key_env()
        ));
    }
    for s in &skipped {
        if !cli.quiet {
            eprintln!("skipped {s}");
        }
    }
    let enrich = enrich.zip(jobo_key);
    if sources.is_empty() && enrich.is_none() {
        bail!(
            "no API key is set: export JOBO_API_KEY and/or SENTRION_API_KEY, \
             or try joblake against the built-in simulator with `make demo`"
        );
    }
    let command = if tables.is_empty() {
        "enrich"
    } else {
        task.command()
    };
    let new_lake = !cli.lake.contains("://") && !std::path::Path::new(&cli.lake).exists();
    let lake = Lake::open(&cli.lake, true)?;
    let holder = format!(
        "joblake {}, pid {}, started {}",
        command,
        std::process::id(),
        Utc::now().to_rfc3339()
    );
    let lock = Arc::new(LakeLock::acquire(&lake, &holder).await?);
    let last_balance = mark_crashed_runs(&lake).await;

    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(Arc::clone(&stop));
    let run_id = Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string();
    let opts = RefreshOptions {
        task,
        max_pages,
        min_credits,
        last_balance,
        stop: Arc::clone(&stop),
        progress: (!cli.quiet && std::io::stderr().is_terminal())
            .then(indicatif::MultiProgress::new),
        lock: Arc::clone(&lock),
    };
    // The two APIs have separate budgets and separate tables: fetch them side by side.
    let mut summaries = futures::future::join_all(
        sources
            .iter()
            .map(|source| refresh::run_source(&lake, &run_id, source, &opts)),
    )
    .await;
    // Profiles after the feeds, so the career sites just fetched are among the candidates.
    if let Some((enrich, key)) = &enrich
        && !stop.load(Ordering::SeqCst)
    {
        let base = std::env::var(base_url_env(joblake_fetcher::Api::Jobo))
            .unwrap_or_else(|_| joblake_fetcher::Api::Jobo.default_base_url().to_string());
        summaries.push(
            enrich::run(
                &lake,
                &run_id,
                key.clone(),
                base,
                source_config(&cfg, Table::Companies),
                enrich,
                &opts,
            )
            .await,
        );
    }
    let db = duckdb_path(cli, &lake);
    let touched = summaries.iter().any(SourceSummary::touched_lake);
    if touched && cfg.views.auto_snapshot {
        keep_snapshots_current(cli, &lake, snapshot_after).await;
    }
    joblake_writer::crash_point("views:before");
    let views = if touched || (!new_lake && !db.exists()) {
        let views = rebuild_views(&lake, &db).await;
        if views.is_ok() {
            joblake_writer::crash_point("views:after");
        }
        views.map(|()| true)
    } else {
        Ok(false)
    };
    drop(opts);
    if let Some(lock) = Arc::into_inner(lock) {
        lock.release().await;
    }
    if new_lake && !touched {
        remove_untouched_lake(&lake);
    }
    let seconds = started.elapsed().as_secs_f64();
    print_summary(
        cli, command, &run_id, &summaries, &skipped, &views, &db, seconds,
    );
    // The fetched pages are committed either way; failing to rebuild the views (a full
    // disk, say) fails the run, and the next run rebuilds them.
    if let Err(e) = views {
        eprintln!("error: {e:#}");
        return Ok(EXIT_FAILED);
    }
    Ok(if stop.load(Ordering::SeqCst) {
        EXIT_INTERRUPTED
    } else if summaries.iter().any(|s| s.status == RunStatus::Failed) {
        EXIT_FAILED
    } else if summaries.iter().any(|s| s.status != RunStatus::Succeeded) {
        EXIT_PARTIAL
    } else {
        0
    })
}

/// Removes the directory this run created for a lake it then wrote nothing to (every
/// source failed before its first page), so a bad key leaves no trace.
fn remove_untouched_lake(lake: &Lake) {
    let LakeLocation::Local(root) = lake.location() else {
        return;
    };
    let only_lock = |dir: &std::path::Path, name: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .all(|e| e.file_name().to_str() == Some(name))
        })
    };
    if only_lock(root, "_joblake") && only_lock(&root.join("_joblake"), "lock") {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// A ledger entry still `running` while we hold the lock belongs to a process that died.
/// Returns the last credit balance each source reported.
async fn mark_crashed_runs(lake: &Lake) -> std::collections::BTreeMap<String, f64> {
    let Ok(records) = read_ledger(lake).await else {
        return Default::default();
    };
    let balances = records
        .iter()
        .filter_map(|r| Some((r.source.clone(), r.credits_balance?)))
        .collect();
    for mut r in records
        .into_iter()
        .filter(|r| r.status == RunStatus::Running)
    {
        r.status = RunStatus::Crashed;
        r.message = Some("the process ended without finishing (crash or kill); its fetched pages were committed by the next run".into());
        if let Err(e) = write_ledger(lake, &r).await {
            tracing::warn!(error = %e, "could not update the run ledger");
        }
    }
    balances
}

fn spawn_signal_handler(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping after the current page (press Ctrl-C again to abort at once)...");
        stop.store(true, Ordering::SeqCst);
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(EXIT_INTERRUPTED as i32);
    });
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    cli: &Cli,
    command: &str,
    run_id: &str,
    summaries: &[SourceSummary],
    skipped: &[String],
    views: &Result<bool>,
    db: &std::path::Path,
    seconds: f64,
) {
    // What went wrong goes to stderr even with --json, so a scheduler's log shows it.
    for s in summaries {
        if let Some(m) = &s.message
            && s.status != RunStatus::Succeeded
        {
            eprintln!("{}: {}: {m}", s.source, s.status.as_str());
        }
        for w in &s.warnings {
            eprintln!("warning: {w}");
        }
    }
    if cli.json {
        let out = serde_json::json!({
            "command": command,
            "run_id": run_id,
            "sources": summaries,
            "skipped": skipped,
            "views": match views {
                Ok(true) => serde_json::json!({"updated": db.display().to_string()}),
                Ok(false) => serde_json::json!({"unchanged": db.display().to_string()}),
                Err(e) => serde_json::json!({"error": format!("{e:#}")}),
            },
            "seconds": seconds,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("summary serialises")
        );
        return;
    }
    if cli.quiet {
        return;
    }
    let parts: Vec<String> = summaries
        .iter()
        .map(|s| {
            let mut p = format!(
                "{} {} {} rows in {} pages",
                s.source,
                s.status.as_str(),
                s.rows,
                s.pages
            );
            if s.recovered_rows > 0 {
                p.push_str(&format!(" (+{} recovered)", s.recovered_rows));
            }
            if s.retries > 0 {
                p.push_str(&format!(", {} retries", s.retries));
            }
            if let Some(c) = s.profiles
                && c.not_found > 0
            {
                p.push_str(&format!(", {} without a profile (404)", c.not_found));
            }
            if let Some(w) = s.windows {
                p.push_str(&format!(", windows {} done, {} left", w.done, w.left));
            }
            if let Some(b) = s.credits_balance {
                p.push_str(&format!(", credits left {b}"));
            }
            p
        })
        .collect();
    let views = match views {
        Ok(true) => "views updated",
        Ok(false) => "nothing new, views unchanged",
        Err(_) => "views NOT updated",
    };
    println!(
        "{command} {run_id}: {} · {views} · {seconds:.1}s",
        parts.join(" · ")
    );
}

fn print_batches(batches: &[arrow::array::RecordBatch], format: Format) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        Format::Csv => {
            let mut w = arrow::csv::Writer::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}

async fn simulate(args: &SimulateArgs) -> Result<u8> {
    let faults = joblake_simulator::parse_faults(&args.faults)
        .map_err(|e| anyhow::anyhow!("--faults: {e}"))?;
    let cfg = joblake_simulator::SimConfig {
        seed: args.seed,
        rows: args.rows,
        career_sites: args.career_sites,
        faults,
        rpm: args.rpm,
        jobo_keys: vec![args.jobo_key.clone()],
        sentrion_keys: vec![args.sentrion_key.clone()],
        credits: args.credits,
        latency: std::time::Duration::from_millis(args.latency_ms),
        history_days: args.history_days,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let handle = joblake_simulator::Simulator::start(cfg, listener).await;
    let url = handle.url();
    if let Some(f) = &args.url_file {
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{url}\n")).and_then(|_| std::fs::rename(&tmp, f))?;
    }
    println!(
        "joblake simulator listening on {url} (seed {}, {} rows per API); Ctrl-C stops it",
        args.seed, args.rows
    );
    handle.run_until_ctrl_c().await;
    Ok(0)
}
