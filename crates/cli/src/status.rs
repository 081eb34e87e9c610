//! `joblake status`: what the lake holds, per table, from the lake itself.

use std::collections::BTreeSet;

use anyhow::Result;
use arrow::array::{Array, Int64Array};
use joblake_schema::Table;
use joblake_writer::{Lake, RunRecord, read_ledger};
use object_store::path::Path;
use serde::Serialize;

use crate::catalog;
use crate::source::SourceState;

/// One table's line of the status.
#[derive(Debug, Serialize)]
pub struct TableStatus {
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

/// Prints the status as a table, or JSON with `json`.
pub async fn print(lake: &Lake, json: bool) -> Result<()> {
    let setup = catalog::view_sql(lake).await?;
    let ledger = read_ledger(lake).await?;
    let mut out = Vec::new();
    for table in catalog::tables_in(lake).await? {
        out.push(table_status(lake, table, &setup, &ledger).await?);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"lake": lake.url(), "tables": out}))?
        );
        return Ok(());
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
    Ok(())
}

/// The source checkpoint of the table's last commit (pages staged since are not counted).
pub async fn committed_state(lake: &Lake, table: Table) -> Result<Option<SourceState>> {
    Ok(lake
        .get_opt(&Path::from(format!("_joblake/state/{}.json", table.name())))
        .await?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::from_value(v.get("source")?.clone()).ok()))
}

async fn table_status(
    lake: &Lake,
    table: Table,
    setup: &str,
    ledger: &[RunRecord],
) -> Result<TableStatus> {
    let name = table.name();
    let files: Vec<_> = lake
        .list(&Path::from(name))
        .await?
        .into_iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .collect();
    let partitions: BTreeSet<String> = files
        .iter()
        .filter_map(|m| m.location.parts().nth(1).map(|p| p.as_ref().to_string()))
        .collect();
    let sql = format!("SELECT count(*)::BIGINT, count(DISTINCT id)::BIGINT FROM {name}_history");
    let setup = setup.to_string();
    let engine = crate::engine(lake);
    let batches =
        tokio::task::spawn_blocking(move || joblake_views::query_fresh(&engine, &setup, &sql))
            .await??;
    let get = |i: usize| {
        batches
            .first()
            .and_then(|b| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .filter(|a| !a.is_empty())
                    .map(|a| a.value(0))
            })
            .unwrap_or(0)
    };
    let state = committed_state(lake, table).await?;
    let staged = lake
        .list(&Path::from(format!("_joblake/staging/{name}")))
        .await?
        .len();
    let mine: Vec<&RunRecord> = ledger.iter().filter(|r| r.source == name).collect();
    let last = mine.last();
    Ok(TableStatus {
        table: name.to_string(),
        rows: get(0),
        ids: get(1),
        files: files.len(),
        partitions: partitions.len(),
        bytes: files.iter().map(|m| m.size).sum(),
        last_run: last.map(|r| r.run_id.clone()),
        last_status: last.map(|r| r.status.as_str().to_string()),
        last_success: mine
            .iter()
            .rev()
            .find(|r| r.status == joblake_writer::RunStatus::Succeeded)
            .map(|r| r.run_id.clone()),
        watermark: state
            .as_ref()
            .and_then(|s| s.watermark)
            .map(|w| w.to_rfc3339()),
        scan_in_progress: state.as_ref().is_some_and(|s| s.scan.is_some()) || staged > 0,
        cursor: state
            .as_ref()
            .and_then(|s| s.scan.as_ref())
            .and_then(|s| s.cursor.clone()),
        staged_pages: staged,
        credits_balance: mine.iter().rev().find_map(|r| r.credits_balance),
    })
}
