//! The command line: every command, flag and global option (clap).

use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use joblake_schema::Table;

#[derive(Parser)]
#[command(
    name = "joblake",
    version,
    about = "Jobo + Sentrion APIs -> Parquet lake + DuckDB views"
)]
pub struct Cli {
    /// The lake: a directory or s3://bucket/prefix.
    #[arg(long, env = "JOBLAKE_LAKE", default_value = "./lake", global = true)]
    pub lake: String,
    /// Where the DuckDB views live (default <lake>/lake.duckdb, or ./lake.duckdb for S3).
    #[arg(long, global = true)]
    pub duckdb: Option<PathBuf>,
    /// Config file (default ./joblake.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[arg(long, value_name = "N", value_parser = credits)]
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
        #[arg(long, value_parser = joblake_sync::backfill::parse_instant, required_if_eq("source", "career_sites"))]
        discovered_after: Option<chrono::DateTime<Utc>>,
        /// Career sites: first discovered before this date or time (default now).
        #[arg(long, value_parser = joblake_sync::backfill::parse_instant)]
        discovered_before: Option<chrono::DateTime<Utc>>,
        /// Stop after N pages; the next run resumes there.
        #[arg(long)]
        max_pages: Option<u64>,
        /// Stop before the credit balance could fall under N.
        #[arg(long, value_name = "N", value_parser = credits)]
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
    /// One self-contained HTML page: runs, credits and their forecast, requests and 429s,
    /// freshness, what the lake holds most of, salaries per year.
    Report {
        /// Where to write it [default: report.html in a local lake, ./joblake-report.html
        /// for an S3 lake].
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
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
pub enum SourceArg {
    #[value(name = "career_sites")]
    CareerSites,
    Jobs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EnrichWhat {
    /// Company profiles (`GET /api/companies/{id}`) into the `companies` table.
    Companies,
}

/// `enrich companies`' choices; each one unset falls back to `[companies]` in joblake.toml.
#[derive(clap::Args, Default)]
pub struct EnrichArgs {
    /// SQL predicate over the career_sites view, e.g.
    /// "list_contains(industries, 'fintech')" (default: every career site).
    #[arg(long = "where", value_name = "SQL")]
    pub predicate: Option<String>,
    /// Profiles fetched more recently than this are not fetched again: 30d, 12h, 7.
    #[arg(long, value_name = "AGE")]
    pub stale_after: Option<String>,
    /// At most N profiles this run (the rest are next run's).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Profiles asked for at once (still under the Jobo request budget).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rows per API at start.
    #[arg(long, default_value_t = 500)]
    pub rows: usize,
    /// Career sites at start, when not --rows.
    #[arg(long)]
    pub career_sites: Option<usize>,
    /// Faults to inject, e.g. "jobo:429=1@3,sentrion:503@2".
    #[arg(long, default_value = "")]
    pub faults: String,
    /// Requests per minute per key before answering 429.
    #[arg(long)]
    pub rpm: Option<u32>,
    /// Jobo key the simulator accepts.
    #[arg(
        long,
        env = "JOBLAKE_SIM_JOBO_KEY",
        default_value = "jbe_test_joblake_demo",
        hide_env_values = true
    )]
    pub jobo_key: String,
    /// Sentrion key the simulator accepts.
    #[arg(
        long,
        env = "JOBLAKE_SIM_SENTRION_KEY",
        default_value = "sk_test_joblake_demo",
        hide_env_values = true
    )]
    pub sentrion_key: String,
    /// Starting credit balance per key.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub credits: f64,
    /// Added latency per response, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Days of job history at start (for backfills).
    #[arg(long, default_value_t = 75)]
    pub history_days: u32,
    /// Write the base URL into this file once listening.
    #[arg(long)]
    pub url_file: Option<PathBuf>,
}

/// A number of credits: finite, 0 or more.
fn credits(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(format!("{s:?} is not a number of credits (0 or more)")),
    }
}

impl SourceArg {
    /// The feeds `--source` names, or both.
    pub fn tables(source: &[SourceArg]) -> Vec<Table> {
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
}
