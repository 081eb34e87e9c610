//! What `refresh`, `backfill` and `enrich companies` share: the keys and settings, the lake
//! lock, the signal handler, the tables run side by side through `joblake-sync`, the latest
//! files and the views after them, and the summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::Utc;
use joblake_fetcher::{Api, ClientConfig, Pacer};
use joblake_schema::Table;
use joblake_sync::{ProfileOptions, RunOptions, Source, SourceSummary, Task};
use joblake_views::session;
use joblake_writer::{Lake, LakeLocation, LakeLock, layout};

use crate::args::Cli;
use crate::config::{self, EnrichFlags, EnrichOptions, FileConfig, read_key};
use crate::outcome::{CmdResult, EXIT_INTERRUPTED, Failure, Outcome};
use crate::output;

/// One run: `task` over `tables` (none for `enrich companies` alone), then the company
/// profiles when `enrich` is given.
pub struct RunRequest<'a> {
    /// The feeds to run.
    pub tables: &'a [Table],
    /// What to do with them.
    pub task: Task,
    /// Stop each table after this many pages.
    pub max_pages: Option<u64>,
    /// Stop before a balance could fall under this.
    pub min_credits: Option<f64>,
    /// The profiles to fetch after the feeds: what the flags said (resolved over
    /// `[companies]`), or `None`.
    pub enrich: Option<EnrichFlags<'a>>,
}

/// The feeds of `tables` whose key is set, and why the others were skipped.
pub fn configured_sources(
    cfg: &FileConfig,
    tables: &[Table],
) -> Result<(Vec<Source>, Vec<String>)> {
    let mut sources = Vec::new();
    let mut skipped = Vec::new();
    for &table in tables {
        let api = joblake_sync::api_of(table);
        match read_key(api.key_env()) {
            None => skipped.push(format!("{table}: {} is not set", api.key_env())),
            Some(key) => sources.push(Source::new(table, cfg.settings(table, key)?)?),
        }
    }
    Ok((sources, skipped))
}

/// Runs `req`: under the lake lock, what killed runs left is committed first, then the feeds
/// side by side, then the profiles, then the latest tables and the views.
pub async fn run(cli: &Cli, req: RunRequest<'_>) -> CmdResult {
    let started = Instant::now();
    let (cfg, cfg_path) = config::load(cli.config.as_deref())?;
    if let Some(p) = &cfg_path {
        tracing::info!(config = %p.display(), "using config");
    }
    let tables = req.tables;
    let (sources, mut skipped) = configured_sources(&cfg, tables)?;
    let latest_after = cfg.views.latest_after()?;
    let enrich = match (req.enrich, &cfg.companies) {
        // `refresh --enrich` enriches what the config chooses, and nothing without a choice.
        (Some(_), None) if !tables.is_empty() => {
            skipped.push(
                "companies: the config has no [companies] section saying which to enrich".into(),
            );
            None
        }
        (Some(flags), companies) => Some(EnrichOptions::resolve(companies.as_ref(), flags)?),
        (None, _) => None,
    };
    let jobo_key = read_key(Api::Jobo.key_env());
    if enrich.is_some() && jobo_key.is_none() {
        if tables.is_empty() {
            return Err(anyhow::anyhow!(
                "company profiles come from Jobo: export {}",
                Api::Jobo.key_env()
            )
            .into());
        }
        skipped.push(format!("companies: {} is not set", Api::Jobo.key_env()));
    }
    if !cli.quiet {
        for s in &skipped {
            eprintln!("skipped {s}");
        }
    }
    let enrich = match enrich.zip(jobo_key) {
        Some((opts, key)) => Some((opts, cfg.settings(Table::Companies, key)?)),
        None => None,
    };
    if sources.is_empty() && enrich.is_none() {
        return Err(anyhow::anyhow!(
            "no API key is set: export JOBO_API_KEY and/or SENTRION_API_KEY, \
             or try joblake against the built-in simulator with `make demo`"
        )
        .into());
    }
    let command = if tables.is_empty() {
        "enrich"
    } else {
        req.task.command()
    };
    let lease = lease_ttl()?;
    let new_lake = !cli.lake.contains("://") && !std::path::Path::new(&cli.lake).exists();
    let lake = Lake::open(&cli.lake, true)?;
    joblake_writer::format::check(&lake).await?;
    let lock = Arc::new(lock_lake(&lake, command, lease).await?);
    let last_balance = joblake_sync::mark_crashed_runs(&lake).await;

    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_handler(Arc::clone(&stop));
    let run_id = run_id_in(&lake).await;
    let opts = RunOptions {
        max_pages: req.max_pages,
        min_credits: req.min_credits,
        last_balance,
        stop: Arc::clone(&stop),
        progress: (!cli.quiet && std::io::stderr().is_terminal())
            .then(indicatif::MultiProgress::new),
        lock: Arc::clone(&lock),
        notice: if cli.quiet {
            |_| ()
        } else {
            |m| eprint!("{m}")
        },
    };
    // The two APIs have separate budgets and separate tables: fetch them side by side.
    let task = &req.task;
    let mut summaries = futures::future::join_all(
        sources
            .iter()
            .map(|source| joblake_sync::run_source(&lake, &run_id, source, task, &opts)),
    )
    .await;
    // Profiles after the feeds, so the career sites just fetched are among the candidates.
    if let Some((enrich, settings)) = enrich
        && !stop.load(Ordering::SeqCst)
    {
        let profiles = ProfileOptions {
            client: ClientConfig {
                base_url: settings.base_url,
                key: settings.key,
                timeout: settings.timeout,
                retry: settings.retry,
                pacer: Pacer::per_minute(settings.requests_per_minute),
            },
            stale_after: enrich.choice.stale_after,
            concurrency: enrich.concurrency,
        };
        let lake = &lake;
        let choice = &enrich.choice;
        let choose = async |committed: &joblake_sync::ProfilesCheckpoint| {
            joblake_views::companies::candidates(lake, choice, &committed.not_found).await
        };
        summaries.push(joblake_sync::run_enrich(lake, &run_id, profiles, choose, &opts).await);
    }
    let db = session::duckdb_path(&lake, cli.duckdb.as_deref());
    let touched = summaries.iter().any(SourceSummary::touched_lake);
    if touched && cfg.views.auto_latest {
        for latest in joblake_views::latest::keep_all_exact(&lake, latest_after).await {
            if latest.rewritten && !cli.quiet && !cli.json {
                eprintln!("{}", output::latest_line(&latest));
            }
        }
        for changes in joblake_views::changes::keep_all_exact(&lake).await {
            if changes.rewritten && !cli.quiet && !cli.json {
                eprintln!("{}", output::changes_line(&changes));
            }
        }
        // After the changes table, whose rows of the run it counts.
        match joblake_views::lifecycle::keep_exact(&lake, latest_after).await {
            Ok(Some(l)) if l.rewritten && !cli.quiet && !cli.json => {
                eprintln!("{}", output::lifecycle_line(&l));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "the lifecycle table could not be kept exact (its view works it out meanwhile)"
            ),
        }
        // After the latest tables, whose rows it links.
        match joblake_views::company_links::keep_exact(&lake, latest_after, None).await {
            Ok(Some(l)) if l.rewritten && !cli.quiet && !cli.json => {
                eprintln!("{}", output::links_line(&l));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "the job_company_keys table could not be kept exact (job_companies works the links out meanwhile)"
            ),
        }
    }
    joblake_writer::crash_point("views:before");
    let views = if touched || (!new_lake && session::views_behind(&lake, &db).await) {
        // A run that lost its S3 lease leaves the views to the run that took the lake.
        let views = match lock.confirm(&lake).await {
            Ok(()) => session::rebuild_views(&lake, &db).await,
            Err(e) => Err(anyhow::Error::new(e).context("the views were not rebuilt")),
        };
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
    output::run_summary(
        cli, command, &run_id, &summaries, &skipped, &views, &db, seconds,
    );
    // The fetched pages are committed either way; failing to rebuild the views (a full
    // disk, say) fails the run, and the next run rebuilds them.
    if let Err(e) = views {
        return Err(Failure::Failed(e));
    }
    Ok(Outcome::of_run(
        stop.load(Ordering::SeqCst),
        summaries.iter().map(|s| s.status),
    ))
}

/// How long an S3 lease lasts (`JOBLAKE_S3_LEASE_SECONDS`), checked before the lake is
/// touched.
fn lease_ttl() -> Result<std::time::Duration> {
    joblake_writer::lease_ttl_from_env().map_err(anyhow::Error::msg)
}

/// Takes `lake` for `command` run by this process (an S3 lease of `lease`), or says who
/// holds it.
async fn lock_lake(lake: &Lake, command: &str, lease: std::time::Duration) -> Result<LakeLock> {
    let holder = format!(
        "joblake {command}, pid {}, started {}",
        std::process::id(),
        Utc::now().to_rfc3339()
    );
    Ok(LakeLock::acquire_with_ttl(lake, &holder, lease).await?)
}

/// An existing lake `joblake` is about to rewrite: opened, locked, and with what killed runs
/// left committed; for `compact`.
pub async fn open_for_writing(cli: &Cli, command: &str) -> Result<(Lake, LakeLock)> {
    let lease = lease_ttl()?;
    let lake = Lake::open(&cli.lake, false)?;
    joblake_writer::format::check(&lake).await?;
    let lock = lock_lake(&lake, command, lease).await?;
    match joblake_sync::finish_killed_runs(&lake, &run_id_in(&lake).await).await {
        Ok(recovered) => {
            if !cli.quiet && !cli.json {
                for (table, rows) in recovered {
                    eprintln!("{table}: committed {rows} rows an interrupted run had fetched");
                }
            }
            Ok((lake, lock))
        }
        Err(e) => {
            lock.release().await;
            Err(e).context("nothing was changed")
        }
    }
}

/// The id of a run starting now in `lake` (held locked): after every run before it, whatever
/// the clock says (see [`joblake_writer::next_run_id`]).
pub async fn run_id_in(lake: &Lake) -> String {
    match joblake_writer::next_run_id(lake).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the run ledger; the run's id is the clock's");
            layout::new_run_id()
        }
    }
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
    if only_lock(root, layout::TOOL_DIR)
        && only_lock(&root.join(layout::TOOL_DIR), layout::LOCK_FILE)
    {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// Ctrl-C or SIGTERM asks the run to stop after the page in hand; a second Ctrl-C ends the
/// process at once (the staged pages are committed by the next run).
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
        eprintln!("stopping: committing what was fetched (press Ctrl-C again to abort at once)...");
        stop.store(true, Ordering::SeqCst);
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    });
}
