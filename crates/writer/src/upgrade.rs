//! Lakes written before their tables were Delta tables are upgraded in place by the first
//! command that opens a table for writing: the table's files and its checkpoint are
//! registered in one Delta commit (the log's first), so a crash leaves the table as it was
//! or upgraded, never in between; no data file is rewritten.

use arrow::datatypes::SchemaRef;
use object_store::path::Path;

use crate::delta::{AddFile, Commit, DeltaLog};
use crate::table::read_legacy_state;
use crate::{Lake, Result, layout};

/// Registers `table`'s files and state file in a new Delta log, when it has none yet but
/// holds either. The lake lock must be held.
pub(crate) async fn register_existing_files(
    lake: &Lake,
    log: &DeltaLog,
    table: &str,
    schema: &SchemaRef,
) -> Result<()> {
    if log.snapshot().await?.is_some() {
        return Ok(());
    }
    let state = read_legacy_state(lake, table).await?;
    let mut files: Vec<_> = lake
        .list(&Path::from(table))
        .await?
        .into_iter()
        .filter(|m| {
            let mut parts = m.location.parts().skip(1);
            let dir = parts.next();
            m.location.as_ref().ends_with(".parquet")
                && dir.is_some_and(|d| d.as_ref().starts_with("dt="))
        })
        .collect();
    if files.is_empty() && state.is_none() {
        return Ok(());
    }
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let mut adds = Vec::with_capacity(files.len());
    for meta in &files {
        let rows = crate::compact::reader(lake, meta)
            .await?
            .metadata()
            .file_metadata()
            .num_rows() as u64;
        let dt = meta
            .location
            .parts()
            .nth(1)
            .map(|d| d.as_ref().trim_start_matches("dt=").to_string())
            .unwrap_or_default();
        adds.push(AddFile {
            path: meta.location.to_string(),
            dt,
            bytes: meta.size,
            rows,
        });
    }
    tracing::info!(
        table,
        files = adds.len(),
        "registering the table's files in a new Delta log"
    );
    crate::crash_point("upgrade:before-commit");
    let commit = Commit {
        adds,
        state: state.map(|s| serde_json::to_string(&s).expect("state serialises")),
        ..Commit::default()
    };
    log.commit(schema.clone(), commit).await?;
    crate::crash_point("upgrade:after-commit");
    // The state file's content is in the log now.
    lake.delete_all(vec![layout::state(table)]).await?;
    Ok(())
}
