//! Opening a table for writing: what a killed run left is committed first, so every command
//! that writes (refresh, backfill, enrich, compact) starts from a lake with nothing pending.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use joblake_schema::{DecodeStats, PageContext, Table, arrow_schema, decode_page};
use joblake_writer::{
    Decoded, Decoder, Lake, RawPage, Recovery, RunStatus, TableWriter, WriterOptions, read_ledger,
    write_ledger,
};

use crate::summary::SourceSummary;

/// Finishes what killed runs left in the whole lake, for a command about to write to it
/// (the lake lock held): their ledger entries say `crashed`, and every table's staged pages
/// are committed under the runs that fetched them. Returns the rows committed per table.
pub async fn finish_killed_runs(lake: &Lake, run_id: &str) -> Result<Vec<(Table, u64)>> {
    mark_crashed_runs(lake).await;
    let mut recovered = Vec::new();
    for table in Table::all() {
        let mut summary = SourceSummary::new(table);
        open_table(lake, table, run_id, &mut summary).await?;
        if summary.recovered_rows > 0 {
            recovered.push((table, summary.recovered_rows));
        }
    }
    Ok(recovered)
}

/// A ledger entry still `running` while we hold the lock belongs to a process that died.
/// Returns the last credit balance each source reported.
pub async fn mark_crashed_runs(lake: &Lake) -> BTreeMap<String, f64> {
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

/// Opens `table` for this run, first committing what a killed run staged (counted in
/// `summary`); returns the writer, what it recovered and the decode counters of its pages.
pub async fn open_table(
    lake: &Lake,
    table: Table,
    run_id: &str,
    summary: &mut SourceSummary,
) -> Result<(TableWriter, Recovery, Arc<std::sync::Mutex<DecodeStats>>)> {
    let stats = Arc::new(std::sync::Mutex::new(DecodeStats::default()));
    let (writer, recovery) = TableWriter::open(
        lake,
        table.name(),
        arrow_schema(table),
        run_id,
        WriterOptions::default(),
        decoder(table, Arc::clone(&stats)),
    )
    .await
    .with_context(|| format!("{table}: cannot open the table"))?;
    if recovery.pages > 0 {
        tracing::info!(
            source = %table, pages = recovery.pages, rows = recovery.rows,
            "committed pages an interrupted run had fetched"
        );
    }
    summary.recovered_rows = recovery.rows;
    summary.files += recovery.files.len() as u64;
    summary.bytes += recovery.files.iter().map(|f| f.bytes).sum::<u64>();
    summary.delta_version = writer.delta_version();
    Ok((writer, recovery, stats))
}

/// The checkpoint of the table's last commit, as its source keeps it (its default before the
/// first commit).
pub fn checkpoint<S: serde::de::DeserializeOwned + Default>(
    writer: &TableWriter,
    table: Table,
) -> Result<S> {
    parse_checkpoint(writer.state().cloned(), table)
}

fn parse_checkpoint<S: serde::de::DeserializeOwned + Default>(
    value: Option<serde_json::Value>,
    table: Table,
) -> Result<S> {
    match value {
        Some(v) => serde_json::from_value(v)
            .with_context(|| format!("{table}: the checkpoint in the state file is not readable")),
        None => Ok(S::default()),
    }
}

/// The schema's decoding of `table`'s pages, as the writer takes it: rows that cannot load
/// become JSON lines with their reason (kept under `_joblake/rejects/`), and every page's
/// counts add up in `stats`.
fn decoder(table: Table, stats: Arc<std::sync::Mutex<DecodeStats>>) -> Decoder {
    Arc::new(move |raw: &RawPage| {
        let ctx = PageContext {
            run_id: raw.run_id.clone(),
            fetched_at: raw.fetched_at,
            page: raw.page,
        };
        let decoded = decode_page(table, &raw.rows, &ctx).map_err(|e| e.to_string())?;
        stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&decoded.stats);
        let rejects = (!decoded.rejected.is_empty()).then(|| {
            tracing::warn!(source = %table, page = raw.page, rows = decoded.rejected.len(), "rows rejected; see _joblake/rejects/");
            let mut text = String::new();
            for r in &decoded.rejected {
                let line = serde_json::json!({"page": raw.page, "row": r.row, "reason": r.reason, "raw": r.raw});
                text.push_str(&line.to_string());
                text.push('\n');
            }
            bytes::Bytes::from(text)
        });
        Ok(Decoded {
            batch: decoded.batch,
            rejects,
        })
    })
}

/// The checkpoint of `table`'s last commit, read without opening the table for writing
/// (pages staged since are not counted); its default before the first commit.
pub async fn committed_checkpoint<S: serde::de::DeserializeOwned + Default>(
    lake: &Lake,
    table: Table,
) -> Result<S> {
    let value = joblake_writer::layout::read_checkpoint(lake, table.name()).await?;
    parse_checkpoint(value, table)
}
