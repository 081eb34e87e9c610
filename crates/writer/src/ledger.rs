//! The run ledger: one small Parquet object per run and table under `_joblake/runs/`, read
//! by the `runs` view.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::{Error, Lake, Result};

/// How a run of one source ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still going (or died without a word: see `Crashed`).
    Running,
    /// The source's scan finished and everything was committed.
    Succeeded,
    /// The source stopped on an error; what was committed stays.
    Failed,
    /// Stopped by a signal or a page limit; resumes next run.
    Interrupted,
    /// Found `running` by a later run: the process died (crash, kill -9).
    Crashed,
}

impl RunStatus {
    /// The word stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Crashed => "crashed",
        }
    }
}

/// One source's part of one run, as the `runs` view shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run (sorts in time order).
    pub run_id: String,
    /// The table the source feeds: `career_sites` or `jobs`.
    pub source: String,
    /// What ran: `refresh` or `backfill` (absent in ledgers written before it was kept).
    #[serde(default)]
    pub command: Option<String>,
    /// When the run started work on this source.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(with = "chrono::serde::ts_microseconds_option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub status: RunStatus,
    /// Why it failed or stopped, in words.
    pub message: Option<String>,
    /// Pages fetched and committed.
    pub pages: i64,
    /// Rows fetched and committed.
    pub rows: i64,
    /// Ids never seen in the lake before this run. Ledgers of older joblake versions hold it;
    /// now the `runs` view counts it from the tables when read, and this stays empty.
    pub new_ids: Option<i64>,
    /// Requests retried.
    pub retries: i64,
    /// 429 answers received.
    pub http_429: i64,
    /// Scans restarted after a dead cursor.
    pub restarts: i64,
    /// Pages of an interrupted earlier run committed at the start of this one.
    pub recovered_pages: i64,
    /// Rows not loaded, each with a reason in `_joblake/rejects/`.
    pub rejected_rows: i64,
    /// Values kept in `_extra` because they could not take their column's type.
    pub type_mismatches: i64,
    /// Unknown fields kept in `_extra`.
    pub unknown_fields: i64,
    /// Credits the API reports this run used.
    pub credits_used: Option<f64>,
    /// The credit balance the API reported last.
    pub credits_balance: Option<f64>,
    /// Parquet files published.
    pub files: i64,
    /// Bytes of Parquet published.
    pub bytes: i64,
    /// The version of the table's Delta log this run committed last: the table as of this
    /// run is that version (absent in ledgers written before the tables were Delta tables,
    /// and when the run committed nothing).
    #[serde(default)]
    pub delta_version: Option<i64>,
}

impl RunRecord {
    /// A fresh `running` entry with every counter at zero.
    pub fn new(run_id: &str, source: &str, started_at: DateTime<Utc>) -> RunRecord {
        RunRecord {
            run_id: run_id.to_string(),
            source: source.to_string(),
            command: None,
            started_at,
            finished_at: None,
            status: RunStatus::Running,
            message: None,
            pages: 0,
            rows: 0,
            new_ids: None,
            retries: 0,
            http_429: 0,
            restarts: 0,
            recovered_pages: 0,
            rejected_rows: 0,
            type_mismatches: 0,
            unknown_fields: 0,
            credits_used: None,
            credits_balance: None,
            files: 0,
            bytes: 0,
            delta_version: None,
        }
    }
}

/// The Arrow schema of the ledger files.
pub fn ledger_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
            let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
            Arc::new(Schema::new(vec![
                f("run_id", DataType::Utf8, false),
                f("source", DataType::Utf8, false),
                f("command", DataType::Utf8, true),
                f("started_at", ts.clone(), false),
                f("finished_at", ts, true),
                f("status", DataType::Utf8, false),
                f("message", DataType::Utf8, true),
                f("pages", DataType::Int64, false),
                f("rows", DataType::Int64, false),
                f("new_ids", DataType::Int64, true),
                f("retries", DataType::Int64, false),
                f("http_429", DataType::Int64, false),
                f("restarts", DataType::Int64, false),
                f("recovered_pages", DataType::Int64, false),
                f("rejected_rows", DataType::Int64, false),
                f("type_mismatches", DataType::Int64, false),
                f("unknown_fields", DataType::Int64, false),
                f("credits_used", DataType::Float64, true),
                f("credits_balance", DataType::Float64, true),
                f("files", DataType::Int64, false),
                f("bytes", DataType::Int64, false),
                f("delta_version", DataType::Int64, true),
            ]))
        })
        .clone()
}

fn fields() -> Vec<FieldRef> {
    ledger_schema().fields().iter().cloned().collect()
}

/// Writes (or rewrites) a run's ledger entry.
pub async fn write_ledger(lake: &Lake, record: &RunRecord) -> Result<()> {
    let batch = serde_arrow::to_record_batch(&fields(), &[record])
        .map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e)))?;
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, ledger_schema(), None)?;
    w.write(&batch)?;
    w.close()?;
    lake.put(&layout::ledger(&record.run_id, &record.source), buf.into())
        .await
}

/// The last run with a ledger entry (a killed run's too: it wrote `running` before its first
/// page), from the entries' names alone.
pub async fn last_ledger_run(lake: &Lake) -> Result<Option<String>> {
    Ok(lake
        .list(&layout::ledger_root())
        .await?
        .iter()
        .filter_map(|m| layout::ledger_run(&m.location).map(str::to_string))
        .max())
}

/// The id of a run starting now in `lake`: the clock's time, or a millisecond after the
/// newest run in the ledger when the clock says no later (a clock set back, or another
/// machine's behind on a shared S3 lake). Runs then sort in the order they were made, which
/// is the order "fetched last wins" follows, whatever the clocks say. Call it holding the
/// lake's lock.
pub async fn next_run_id(lake: &Lake) -> Result<String> {
    let last = last_ledger_run(lake).await?;
    Ok(layout::run_id(after_run(Utc::now(), last.as_deref())))
}

/// `now`, or a millisecond after run `last` when that is no earlier.
fn after_run(now: DateTime<Utc>, last: Option<&str>) -> DateTime<Utc> {
    match last.and_then(layout::run_started) {
        Some(last) if last >= now => last + chrono::Duration::milliseconds(1),
        _ => now,
    }
}

/// Reads every ledger entry, oldest run first.
pub async fn read_ledger(lake: &Lake) -> Result<Vec<RunRecord>> {
    let mut metas = lake.list(&layout::ledger_root()).await?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out = Vec::new();
    for meta in metas {
        if !meta.location.as_ref().ends_with(".parquet") {
            continue;
        }
        let Some(bytes) = lake.get_opt(&meta.location).await? else {
            continue;
        };
        out.extend(decode(bytes).map_err(|e| Error::CorruptStage {
            path: meta.location.to_string(),
            detail: e.to_string(),
        })?);
    }
    Ok(out)
}

fn decode(bytes: Bytes) -> std::result::Result<Vec<RunRecord>, Box<dyn std::error::Error>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let records: Vec<RunRecord> = serde_arrow::from_record_batch(&batch?)?;
        out.extend(records);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_never_sorts_before_the_last_run() {
        let now: DateTime<Utc> = "2026-11-28T10:00:00.000Z".parse().unwrap();
        assert_eq!(after_run(now, None), now);
        // The clock ahead of the last run: the clock.
        assert_eq!(after_run(now, Some("20261128T095959999Z")), now);
        // The clock behind it (set back three hours, or another machine's): just after it.
        let after = layout::run_id(after_run(now, Some("20261128T130000000Z")));
        assert_eq!(after, "20261128T130000001Z");
        assert_eq!(
            layout::run_id(after_run(now, Some("20261128T100000000Z"))),
            "20261128T100000001Z"
        );
    }
}
