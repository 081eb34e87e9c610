//! `joblake-bench`: runs the real `joblake` binary against `joblake simulate` and writes the
//! figures into `BENCHMARKS.md`, each section between markers of its own, with the command
//! and the machine that produced it.

mod ingest;
mod markdown;
mod pacing;
mod read;
mod recover;
mod sim;
mod usage;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "joblake-bench")]
struct Cli {
    /// The `joblake` binary under test.
    #[arg(long, default_value = "target/release/joblake")]
    joblake: PathBuf,
    /// The file the figures go into.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// How the figures say they were made (default: this command line).
    #[arg(long)]
    label: Option<String>,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The latest-version views beside the history, before and after compaction.
    Read {
        /// Job versions in the big lake (a fifth of them superseded).
        #[arg(long, default_value_t = 5_000_000)]
        versions: usize,
        /// Runs in the lake of small runs.
        #[arg(long, default_value_t = 200)]
        small_runs: usize,
    },
    /// Ingest throughput beside a fetch-only baseline, CPU, peak RSS, files and row groups.
    Ingest {
        /// Jobs in the big run.
        #[arg(long, default_value_t = 1_000_000)]
        jobs: usize,
        /// Career sites in the big run.
        #[arg(long, default_value_t = 200_000)]
        career_sites: usize,
    },
    /// Peak RSS of the run that commits what a killed run staged, small and large.
    Recover {
        /// About how many bytes the killed run stages.
        #[arg(long, default_value_t = 1 << 30)]
        staged_bytes: u64,
    },
    /// Request-rate utilisation and 429s of a long run against the simulator's rate limit.
    Pacing {
        /// Minutes the main run lasts at least.
        #[arg(long, default_value_t = 3.0)]
        minutes: f64,
        /// The limit, requests a minute per key (the API's documented 100).
        #[arg(long, default_value_t = 100)]
        rpm: u32,
    },
}

// The fetch-only baseline runs on the runtime `joblake refresh` runs on (one thread), on
// which the same client also fetches faster than on a multi-threaded one.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let command = cli
        .label
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    match cli.what {
        What::Read {
            versions,
            small_runs,
        } => {
            let read = read::run(&cli.joblake, versions, small_runs).await?;
            markdown::write_section(&cli.out, "read", &command, &read::section(&read))?;
        }
        What::Ingest { jobs, career_sites } => {
            let results = ingest::run(&cli.joblake, jobs, career_sites).await?;
            markdown::write_section(&cli.out, "ingest", &command, &ingest::section(&results))?;
        }
        What::Recover { staged_bytes } => {
            let results = recover::run(&cli.joblake, staged_bytes).await?;
            markdown::write_section(&cli.out, "recover", &command, &recover::section(&results))?;
        }
        What::Pacing { minutes, rpm } => {
            let section = pacing::run(&cli.joblake, minutes, rpm).await?;
            markdown::write_section(&cli.out, "pacing", &command, &section)?;
        }
    }
    println!("figures written to {}", cli.out.display());
    Ok(())
}
