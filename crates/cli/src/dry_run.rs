//! `--dry-run`: what a run would fetch and cost, or which companies it would enrich, without
//! fetching the data or touching the lake.

use chrono::Utc;
use joblake_schema::Table;
use joblake_sync::{Checkpoint, ProfilesCheckpoint, Task};
use joblake_writer::{Lake, read_ledger};

use crate::args::Cli;
use crate::config::{self, EnrichFlags, EnrichOptions};
use crate::outcome::{CmdResult, Outcome};
use crate::run::configured_sources;

/// `enrich companies --dry-run`: the companies due now, from the lake as last committed.
pub async fn enrich_plan(cli: &Cli, flags: EnrichFlags<'_>) -> CmdResult {
    let (cfg, _) = config::load(cli.config.as_deref())?;
    let opts = EnrichOptions::resolve(cfg.companies.as_ref(), flags)?;
    if !cli.lake.contains("://") && !std::path::Path::new(&cli.lake).exists() {
        return Err(anyhow::anyhow!(
            "there is no lake at {} yet: run `joblake refresh` first, the companies are \
             chosen among its career sites",
            cli.lake
        )
        .into());
    }
    let lake = Lake::open(&cli.lake, false)?;
    joblake_writer::format::check(&lake).await?;
    // The 404s of the last commit, less those old enough to be asked again.
    let mut committed: ProfilesCheckpoint =
        joblake_sync::open::committed_checkpoint(&lake, Table::Companies).await?;
    committed.forget_before((Utc::now() - opts.choice.stale_after).date_naive());
    let ids =
        joblake_views::companies::candidates(&lake, &opts.choice, &committed.not_found).await?;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "due": ids.len(),
                "ids": ids,
            }))
            .expect("the plan serialises")
        );
    } else {
        println!(
            "companies: {} profiles due{} (nothing fetched)",
            ids.len(),
            match opts.choice.limit {
                Some(n) if ids.len() as u64 == n => " (the --limit)",
                _ => "",
            }
        );
    }
    Ok(Outcome::Done)
}

/// `--dry-run`: what a run would fetch and cost, asked of the APIs' own totals where they
/// give them, without fetching the data or touching the lake.
pub async fn estimate(cli: &Cli, tables: &[Table], task: &Task) -> CmdResult {
    let (cfg, _) = config::load(cli.config.as_deref())?;
    let (sources, skipped) = configured_sources(&cfg, tables)?;
    for s in &skipped {
        eprintln!("skipped {s}");
    }
    if sources.is_empty() {
        return Err(anyhow::anyhow!(
            "no API key is set: export JOBO_API_KEY and/or SENTRION_API_KEY"
        )
        .into());
    }
    let lake = Lake::open(&cli.lake, false).ok();
    let mut out = Vec::new();
    for src in &sources {
        let committed: Checkpoint = match &lake {
            Some(lake) => joblake_sync::open::committed_checkpoint(lake, src.table).await?,
            None => Checkpoint::default(),
        };
        let ledger = match &lake {
            Some(lake) => read_ledger(lake).await.unwrap_or_default(),
            None => Vec::new(),
        };
        out.push(joblake_sync::estimate::estimate(src, &committed, task, &ledger).await?);
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("estimates serialise")
        );
    } else {
        for e in &out {
            println!("{}", e.describe());
        }
    }
    Ok(Outcome::Done)
}
