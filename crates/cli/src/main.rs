//! `joblake`: turns the Jobo and Sentrion APIs into a queryable local or S3 lake.
//!
//! Process setup, parsing and dispatch; each command lives in a file of its own, and its
//! work in `joblake-sync` (what to fetch and the loop that lands it) and `joblake-views`
//! (everything DuckDB).

mod args;
mod backfill;
mod compact;
mod dry_run;
mod enrich;
mod output;
mod query;
mod refresh;
mod report;
mod run;
mod simulate;
mod status;
mod views;

use std::process::ExitCode;

use clap::Parser;
// The binary's modules reach these as `crate::config`, `crate::credits`, `crate::outcome`.
use joblake_cli::{config, credits, outcome};

use crate::args::{Cli, Command, EnrichWhat};
use crate::outcome::{CmdResult, Outcome};

/// glibc's malloc keeps freed memory of a long run for reuse: each page passes through
/// buffers of ~100 kB and each Parquet row group through one of tens of MB, and by default
/// those come from (and fragment) its heaps, so resident memory creeps up page after page.
/// Buffers from 128 kB up are mapped on their own instead, and go back to the OS when freed;
/// two arenas are plenty for a process with one fetcher and one writer.
///
/// The smaller chunks (a page's rows, decoded, and their strings) stay in the heaps: up to
/// 64 MB free at a heap's top is kept for the next page rather than handed back at glibc's
/// 128 kB and faulted in again: a tenth of a jobs refresh's CPU (10.1 -> 9.0 CPU-s, BENCHMARKS.md,
/// "Less CPU per row"). Not for `simulate`, which stands in for the APIs' own servers: the ingest
/// benchmark's fetch-only baseline reads from it, and its memory is not joblake's to tune.
fn lean_malloc(command: &Command) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called once, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
        if !matches!(command, Command::Simulate(_)) {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = command;
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
    file_size_limit_is_an_error();
    let cli = Cli::parse();
    lean_malloc(&cli.command);
    init_tracing(&cli);
    let runtime = match runtime_for(&cli.command).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Outcome::Failed.code();
        }
    };
    let result = runtime.block_on(dispatch(&cli));
    // Its spill directories go with it.
    joblake_views::close_shared();
    match result {
        Ok(outcome) => outcome.code(),
        Err(failure) => {
            eprintln!("error: {:#}", failure.error());
            failure.code()
        }
    }
}

/// The runtime a command runs on. joblake's own commands run on one thread: a page loop is a
/// chain of waits (request, response, staging), and with the HTTP connection's task on the
/// same thread as the loop no page waits for a wake-up from another thread. A first jobs
/// refresh ran 13 % more rows a second than on the multi-threaded runtime (BENCHMARKS.md,
/// "One thread for the page loop"). Their CPU-heavy work runs on threads of its own anyway:
/// the encoders, DuckDB's and the Delta kernel's, and the S3 lease's renewals (`lock.rs`).
/// `simulate` stands in for the APIs' servers, which answer many clients at once.
fn runtime_for(command: &Command) -> tokio::runtime::Builder {
    match command {
        Command::Simulate(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
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
        // The Delta kernel logs its own errors, which joblake reports itself, once.
        let kernel = if cli.verbose >= 2 { "info" } else { "off" };
        tracing_subscriber::EnvFilter::new(format!(
            "{level},hyper=warn,reqwest=warn,delta_kernel={kernel},\
             delta_kernel_default_engine={kernel}"
        ))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// One call per command.
async fn dispatch(cli: &Cli) -> CmdResult {
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
            let flags = refresh::RefreshFlags {
                source,
                full: *full,
                max_pages: *max_pages,
                since: *since,
                min_credits: *min_credits,
                dry_run: *dry_run,
                enrich: *enrich,
            };
            refresh::refresh(cli, flags).await
        }
        Command::Enrich {
            what: EnrichWhat::Companies,
            args,
            dry_run,
        } => enrich::enrich(cli, args, *dry_run).await,
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
            let flags = backfill::BackfillFlags {
                source: *source,
                since: *since,
                until: *until,
                discovered_after: *discovered_after,
                discovered_before: *discovered_before,
                max_pages: *max_pages,
                min_credits: *min_credits,
                dry_run: *dry_run,
            };
            backfill::backfill(cli, flags).await
        }
        Command::Compact { source } => compact::compact(cli, source).await,
        Command::Views => views::views(cli).await,
        Command::Status => status::status(cli).await,
        Command::Report { out } => report::report(cli, out.as_deref()).await,
        Command::Query { sql, format } => query::query(cli, sql, *format).await,
        Command::Simulate(args) => simulate::simulate(args).await,
    }
}
