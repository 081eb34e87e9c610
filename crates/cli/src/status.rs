//! `joblake status`: what the lake holds, per table, from the lake itself.

use std::collections::BTreeSet;

use anyhow::Result;
use chrono::Utc;
use joblake_schema::Table;
use joblake_sync::Checkpoint;
use joblake_writer::{Lake, RunRecord, RunStatus, layout, read_ledger};
use serde::Serialize;

use crate::args::Cli;
use crate::credits::{API_SOURCES, Credits, credits};
use crate::outcome::{CmdResult, Outcome};

/// One table's line of the status.
#[derive(Debug, Serialize)]
struct TableStatus {
    table: String,
    rows: i64,
    ids: i64,
    files: usize,
    partitions: usize,
    bytes: u64,
    last_run: Option<String>,
    last_status: Option<String>,
    last_success: Option<String>,
    watermark: Option<String>,
    scan_in_progress: bool,
    cursor: Option<String>,
    staged_pages: usize,
    credits_balance: Option<f64>,
}

/// Runs `status`: a table, or JSON with `--json`.
pub async fn status(cli: &Cli) -> CmdResult {
    let lake = Lake::open(&cli.lake, false)?;
    joblake_writer::format::check(&lake).await?;
    let tables = joblake_views::catalog::tables_in(&lake).await?;
    let counts = joblake_views::status::history_counts(&lake, &tables).await?;
    let ledger = read_ledger(&lake).await?;
    let mut out = Vec::new();
    for (table, (rows, ids)) in tables.into_iter().zip(counts) {
        out.push(table_status(&lake, table, rows, ids, &ledger).await?);
    }
    let salaries = if out
        .iter()
        .any(|t| t.table == Table::Jobs.name() && t.rows > 0)
    {
        let (quoted, not_per_year) = joblake_views::status::salary_counts(&lake).await?;
        Some(Salaries {
            quoted,
            not_per_year,
        })
    } else {
        None
    };
    let now = Utc::now();
    let credits: Vec<Credits> = API_SOURCES
        .iter()
        .map(|(api, sources)| credits(api, sources, &ledger, now))
        .filter(|c| c.runs > 0)
        .collect();
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "lake": lake.url(),
                "tables": out,
                "credits": credits,
                "salaries": salaries,
            }))
            .expect("the status serialises")
        );
        return Ok(Outcome::Done);
    }
    println!("lake {}", lake.url());
    println!(
        "{:<13} {:>9} {:>9} {:>6} {:>5} {:>10}  {:<26} {:<10} {:>12}  cursor",
        "table", "rows", "ids", "files", "dts", "bytes", "last run", "status", "credits"
    );
    for s in &out {
        println!(
            "{:<13} {:>9} {:>9} {:>6} {:>5} {:>10}  {:<26} {:<10} {:>12}  {}",
            s.table,
            s.rows,
            s.ids,
            s.files,
            s.partitions,
            s.bytes,
            s.last_run.as_deref().unwrap_or("-"),
            s.last_status.as_deref().unwrap_or("never run"),
            s.credits_balance
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            match (&s.cursor, s.scan_in_progress) {
                (_, false) => "scan complete".to_string(),
                (Some(_), true) => format!("scan in progress ({} staged pages)", s.staged_pages),
                (None, true) => "scan starting".to_string(),
            }
        );
    }
    if let Some(s) = &salaries {
        println!();
        println!(
            "salaries: {} jobs quote one; {} of them have no yearly figure (no period or \
             figure could be told; schemas/jobs.md)",
            s.quoted, s.not_per_year
        );
    }
    if !credits.is_empty() {
        println!();
        println!(
            "{:<13} {:>12} {:>12} {:>12} {:>12}  lasts",
            "credits", "used 7 days", "used 30 days", "balance", "per day"
        );
    }
    for c in &credits {
        let figure = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        println!(
            "{:<13} {:>12} {:>12} {:>12} {:>12}  {}",
            c.api,
            figure(Some(c.used_7_days)),
            figure(Some(c.used_30_days)),
            figure(c.balance),
            figure(Some(c.per_day)),
            match c.days_left {
                Some(d) => format!("{d:.1} days at this rate"),
                None if c.balance.is_none() => "balance not reported".to_string(),
                None => "no credits used in 7 days".to_string(),
            }
        );
    }
    Ok(Outcome::Done)
}

/// Jobs (latest versions) quoting a salary, and those the `jobs` view could not put per year.
#[derive(Debug, Serialize)]
struct Salaries {
    quoted: i64,
    not_per_year: i64,
}

async fn table_status(
    lake: &Lake,
    table: Table,
    rows: i64,
    ids: i64,
    ledger: &[RunRecord],
) -> Result<TableStatus> {
    let name = table.name();
    let files = joblake_views::catalog::history_files(lake, table).await?;
    let partitions: BTreeSet<String> = files
        .iter()
        .filter_map(|m| m.location.parts().nth(1).map(|p| p.as_ref().to_string()))
        .collect();
    // The companies' checkpoint has no scan: it reads as an empty feed checkpoint.
    let committed: Checkpoint = joblake_sync::open::committed_checkpoint(lake, table)
        .await
        .unwrap_or_default();
    let staged = lake.list(&layout::staging_root(name)).await?.len();
    let mine: Vec<&RunRecord> = ledger.iter().filter(|r| r.source == name).collect();
    let last = mine.last();
    Ok(TableStatus {
        table: name.to_string(),
        rows,
        ids,
        files: files.len(),
        partitions: partitions.len(),
        bytes: files.iter().map(|m| m.size).sum(),
        last_run: last.map(|r| r.run_id.clone()),
        last_status: last.map(|r| r.status.as_str().to_string()),
        last_success: mine
            .iter()
            .rev()
            .find(|r| r.status == RunStatus::Succeeded)
            .map(|r| r.run_id.clone()),
        watermark: committed.watermark.map(|w| w.to_rfc3339()),
        scan_in_progress: committed.scan.is_some() || staged > 0,
        cursor: committed.scan.as_ref().and_then(|s| s.cursor.clone()),
        staged_pages: staged,
        credits_balance: mine.iter().rev().find_map(|r| r.credits_balance),
    })
}
