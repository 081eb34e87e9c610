//! The lake's layout: where every object joblake writes lives, relative to the lake's root,
//! and how runs are named. Defined here once; every other crate asks this module.
//!
//! ```text
//! <table>/dt=<YYYY-MM-DD>/part-<run>-<first page>.parquet   the history (readers' data)
//! <table>/_delta_log/                  the table's Delta log: its files and checkpoint
//! <table>_latest/dt=<YYYY-MM-DD>/part-<run>-<first page>[-<run>].parquet
//!                                      the latest version of every id: a Delta table of its
//! <table>_latest/deletion_vector_<uuid>.bin   own, partitioned as the history, its files
//! <table>_latest/_delta_log/           copies of the history's (or those without the rows
//!                                      a later version replaced), rows replaced since
//!                                      deleted by deletion vectors
//! _joblake/format.json                 the lake's format version
//! _joblake/state/<table>.json          a table's checkpoint, in a lake written before format 2
//! _joblake/staging/<table>/<run>.log   a run's staged pages (local lake)
//! _joblake/staging/<table>/<run>/<page>.page   one staged page (S3 lake)
//! _joblake/uploads/<table>/...         Parquet files being written (local lake)
//! _joblake/rejects/<table>/<run>/<page>.jsonl  rows that could not load, with why
//! _joblake/compact/<table>/<dt>.json   a compaction's swap under way
//! _joblake/latest/<table>/, <table>.json  the latest files of a lake before format 2
//! _joblake/runs/<run>-<table>.parquet  the run ledger
//! _joblake/lock, _joblake/lease.json   who is writing (local, S3; `_joblake/clock` reads S3's clock)
//! ```

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde_json::Value;

use crate::{Lake, Result};

/// A run's id: its start time in UTC to the millisecond, `20261128T113607756Z`. Ids sort as
/// their runs started, which the views' "fetched last wins" order relies on.
pub fn run_id(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%S%3fZ").to_string()
}

/// The id of a run starting now by this machine's clock (the ledger's
/// [`next_run_id`](crate::next_run_id) keeps a lake's runs in order whatever the clock says).
pub fn new_run_id() -> String {
    run_id(Utc::now())
}

/// When run `id` started, read back from its id.
pub fn run_started(id: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(id, "%Y%m%dT%H%M%S%3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The table's state file: the checkpoint of its last commit.
pub fn state(table: &str) -> Path {
    Path::from(format!("_joblake/state/{table}.json"))
}

/// Where a local lake's Parquet files are written until published.
pub fn uploads(table: &str) -> Path {
    Path::from(format!("_joblake/uploads/{table}"))
}

/// Every staged page of the table, whichever run staged it.
pub fn staging_root(table: &str) -> Path {
    Path::from(format!("_joblake/staging/{table}"))
}

/// One staged page on an S3 lake.
pub fn staged_page(table: &str, run_id: &str, page: i64) -> Path {
    Path::from(format!("_joblake/staging/{table}/{run_id}/{page:09}.page"))
}

/// A run's staging log on a local lake (its first segment).
pub fn staging_log(table: &str, run_id: &str) -> Path {
    staging_log_segment(table, run_id, 0)
}

/// Segment `segment` of a run's staging log: a new one begins after each commit during the
/// run (see `Stager`).
pub fn staging_log_segment(table: &str, run_id: &str, segment: u32) -> Path {
    match segment {
        0 => Path::from(format!("_joblake/staging/{table}/{run_id}.log")),
        n => Path::from(format!("_joblake/staging/{table}/{run_id}.{n}.log")),
    }
}

/// The rows of a page that could not load, with why.
pub fn rejects(table: &str, run_id: &str, page: i64) -> Path {
    Path::from(format!("_joblake/rejects/{table}/{run_id}/{page:09}.jsonl"))
}

/// A history file: named after the run and the first page it holds, so a recovery that
/// writes it again writes the very same name.
pub fn data_file(table: &str, dt: &str, run_id: &str, first_page: i64) -> Path {
    Path::from(format!(
        "{table}/dt={dt}/part-{run_id}-{first_page:06}.parquet"
    ))
}

/// The run of a history file (see [`data_file`]; a compaction's outputs carry its run).
pub fn file_run(path: &Path) -> Option<&str> {
    let name = path.filename()?.strip_prefix("part-")?;
    name.split('-').next()
}

/// A compaction's manifest for one partition.
pub fn compact_manifest(table: &str, dt: &str) -> Path {
    Path::from(format!("_joblake/compact/{table}/{dt}.json"))
}

/// Every compaction manifest of the table.
pub fn compact_root(table: &str) -> Path {
    Path::from(format!("_joblake/compact/{table}"))
}

/// The latest table of history table `table` (a Delta table of its own).
pub fn latest_table(table: &str) -> String {
    format!("{table}_latest")
}

/// The changes table of history table `table` (a Delta table of its own, derived from it).
pub fn changes_table(table: &str) -> String {
    format!("{table}_changes")
}

/// The lifecycle table of history table `table` (a Delta table of its own, one row per id).
pub fn lifecycle_table(table: &str) -> String {
    format!("{table}_lifecycle")
}

/// The latest files of a lake written before format 2 (deleted once its latest table is made).
pub fn legacy_latest_root(table: &str) -> Path {
    Path::from(format!("_joblake/latest/{table}"))
}

/// The pointer to them.
pub fn legacy_latest_pointer(table: &str) -> Path {
    Path::from(format!("_joblake/latest/{table}.json"))
}

/// The lake's format version (see `format.rs`).
pub fn format() -> Path {
    Path::from("_joblake/format.json")
}

/// The run ledger.
pub fn ledger_root() -> Path {
    Path::from("_joblake/runs")
}

/// One run's ledger entry for one table.
pub fn ledger(run_id: &str, table: &str) -> Path {
    Path::from(format!("_joblake/runs/{run_id}-{table}.parquet"))
}

/// The directory of everything the tool keeps beside the tables.
pub const TOOL_DIR: &str = "_joblake";

/// A local lake's lock file, under [`TOOL_DIR`] (an S3 lake has a [`lease`] instead).
pub const LOCK_FILE: &str = "lock";

/// The run of a ledger entry (see [`ledger`]).
pub fn ledger_run(path: &Path) -> Option<&str> {
    let name = path.filename()?.strip_suffix(".parquet")?;
    name.split_once('-').map(|(run, _)| run)
}

/// An S3 lake's lease (a local lake locks `_joblake/lock`).
pub fn lease() -> Path {
    Path::from("_joblake/lease.json")
}

/// An empty object an S3 lake's lease writes to read the store's clock (its `Last-Modified`).
pub fn clock_probe() -> Path {
    Path::from("_joblake/clock")
}

/// The checkpoint of `table`'s last commit as its source wrote it, if the table has one; a
/// state file that cannot be read is an error naming it.
pub async fn read_checkpoint(lake: &Lake, table: &str) -> Result<Option<Value>> {
    Ok(crate::table::read_state(lake, table)
        .await?
        .map(|s| s.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_as_their_runs_started() {
        let a: DateTime<Utc> = "2026-11-28T09:05:07.004Z".parse().unwrap();
        let b: DateTime<Utc> = "2026-11-28T10:00:00.000Z".parse().unwrap();
        assert_eq!(run_id(a), "20261128T090507004Z");
        assert!(run_id(a) < run_id(b));
        assert_eq!(run_started("20261128T090507004Z"), Some(a));
        assert_eq!(run_started("not a run"), None);
    }

    #[test]
    fn a_history_file_names_its_run() {
        let p = data_file("jobs", "2026-11-28", "20261128T090507004Z", 3);
        assert_eq!(
            p.as_ref(),
            "jobs/dt=2026-11-28/part-20261128T090507004Z-000003.parquet"
        );
        assert_eq!(file_run(&p), Some("20261128T090507004Z"));
        assert_eq!(file_run(&Path::from("jobs/dt=x/other.parquet")), None);
    }

    #[test]
    fn a_ledger_entry_names_its_run() {
        let p = ledger("20261128T090507004Z", "career_sites");
        assert_eq!(ledger_run(&p), Some("20261128T090507004Z"));
    }
}
