//! The *latest* files of a table: the latest version of every id, written down under
//! `_joblake/latest/<table>/` with a pointer (`_joblake/latest/<table>.json`) naming the last
//! run they cover, so that the latest-version views read them instead of a window over the
//! whole history (see [`crate::catalog`]). `compact` always writes them; a refresh writes
//! them when they are due.

use anyhow::{Context, Result};
use joblake_schema::Table;
use joblake_writer::{Lake, LakeLocation, crash_point, layout};
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::session::engine;

/// `_joblake/latest/<table>.json`: the latest files the latest-version view starts from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latest {
    /// The format of this pointer.
    pub format: u32,
    /// The last run whose rows the latest files cover.
    pub through: String,
    /// The run (or compaction) that wrote them: its own files hold only rows they cover.
    pub made_by: String,
    /// Lake-relative paths of the latest files.
    pub files: Vec<String>,
    /// The latest files before, kept until the next ones so readers holding views of them
    /// finish.
    #[serde(default)]
    pub previous: Vec<String>,
    /// Rows (ids) in them.
    pub rows: u64,
}

/// The table's latest pointer, if its latest files were written.
pub async fn read_latest(lake: &Lake, table: Table) -> Result<Option<Latest>> {
    Ok(lake
        .get_opt(&layout::latest_pointer(table.name()))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Whether `table` is due new latest files: it has none and the history holds more than one
/// run (the views would otherwise be a window over every version), or the runs after them
/// hold `after` of their bytes (`[views] latest_after`, 0.2 by default). Until then the
/// views read the latest files without the rows later runs replaced, plus those runs' latest
/// rows, which costs a little more with every run; new latest files cost a pass over the
/// latest rows, so rewriting them at a fifth keeps what refreshes pay for them within five
/// times what they fetch.
pub async fn latest_due(lake: &Lake, table: Table, after: f64) -> Result<bool> {
    let files = catalog::history_files(lake, table).await?;
    let Some(snap) = read_latest(lake, table).await? else {
        let runs: std::collections::BTreeSet<&str> = files
            .iter()
            .filter_map(|m| layout::file_run(&m.location))
            .collect();
        return Ok(runs.len() > 1);
    };
    let newer: u64 = files
        .iter()
        .filter(|m| {
            layout::file_run(&m.location)
                .is_some_and(|run| run > snap.through.as_str() && run != snap.made_by)
        })
        .map(|m| m.size)
        .sum();
    if newer == 0 {
        return Ok(false);
    }
    let latest_bytes: u64 = lake
        .list(&layout::latest_root(table.name()))
        .await?
        .iter()
        .filter(|m| snap.files.iter().any(|f| f.as_str() == m.location.as_ref()))
        .map(|m| m.size)
        .sum();
    Ok(newer as f64 >= after * latest_bytes as f64)
}

/// At the end of a refresh (under its lake lock), writes new latest files for each table
/// that is due them (see [`latest_due`]), and says which it wrote. The fetched rows are
/// committed by then: latest files that cannot be written only leave the views reading the
/// history, and the next refresh tries again (each failure is logged here).
pub async fn keep_latest_current(lake: &Lake, after: f64) -> Vec<(Table, Latest)> {
    let tables = match catalog::tables_in(lake).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot list the lake's tables; no latest files written");
            return Vec::new();
        }
    };
    let mut written = Vec::new();
    for table in tables {
        let due = match latest_due(lake, table, after).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(%table, error = %format!("{e:#}"), "cannot tell whether the latest files are due");
                continue;
            }
        };
        if !due {
            continue;
        }
        match build_latest(lake, table, &layout::new_run_id()).await {
            Ok(Some(latest)) => written.push((table, latest)),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                %table,
                error = %format!("{e:#}"),
                "the latest files could not be written (the views read the history meanwhile)"
            ),
        }
    }
    written
}

/// Writes the latest version of every id of `table` as the latest files the views start
/// from (see [`crate::catalog`]), points the table at them, and removes latest files no view
/// reads any more.
pub async fn build_latest(lake: &Lake, table: Table, run_id: &str) -> Result<Option<Latest>> {
    let name = table.name();
    let files = catalog::history_files(lake, table).await?;
    if files.is_empty() {
        return Ok(None);
    }
    let list = files
        .iter()
        .map(|m| crate::literal(&lake.reader_path(m.location.as_ref())))
        .collect::<Vec<_>>()
        .join(", ");
    // The history as its view reads it, over exactly these files.
    let history = format!("read_parquet([{list}], union_by_name = true, hive_partitioning = true)");
    let through_sql = format!("SELECT max(_run_id) FROM {history}");
    // Which versions lost to a later one, by file (its place in `files`) and row: a window
    // over four narrow columns, which DuckDB spills rather than hold whole rows (job
    // descriptions and all).
    let superseded_sql = format!(
        "SELECT file_index::BIGINT, file_row_number::BIGINT FROM (\n\
           SELECT id, _run_id, _page, _row, file_index, file_row_number\n\
           FROM read_parquet([{list}], union_by_name = true, file_row_number = true))\n\
         QUALIFY row_number() OVER (PARTITION BY id ORDER BY {}) > 1",
        catalog::LATEST_FIRST
    );
    let describe_sql = format!("SELECT column_name FROM (DESCRIBE SELECT * FROM {history})");
    let narrow = crate::Engine {
        memory_limit: Some("128MB".into()),
        ..engine(lake)
    };
    let (through, positions, described) = tokio::task::spawn_blocking(move || {
        let q = |sql: &str| crate::query_fresh(&narrow, "", sql);
        Ok::<_, crate::Error>((q(&through_sql)?, q(&superseded_sql)?, q(&describe_sql)?))
    })
    .await??;
    let through = through.first().and_then(|b| {
        b.column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .filter(|a| arrow::array::Array::len(*a) > 0 && arrow::array::Array::is_valid(*a, 0))
            .map(|a| a.value(0).to_string())
    });
    let Some(through) = through else {
        return Ok(None);
    };
    let mut columns = Vec::new();
    for b in &described {
        let Some(names) = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
        else {
            anyhow::bail!("DuckDB described the history's columns in an unexpected type");
        };
        columns.extend(names.iter().flatten().map(str::to_string));
    }
    let mut superseded: Vec<Vec<u64>> = vec![Vec::new(); files.len()];
    for b in &positions {
        let (Some(file), Some(row)) = (
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>(),
            b.column(1)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>(),
        ) else {
            anyhow::bail!("DuckDB gave the superseded rows' positions an unexpected type");
        };
        for (f, r) in file.values().iter().zip(row.values()) {
            let rows = usize::try_from(*f)
                .ok()
                .and_then(|f| superseded.get_mut(f))
                .context("DuckDB named a file the history does not have")?;
            rows.push(u64::try_from(*r)?);
        }
    }
    drop(positions);
    superseded.iter_mut().for_each(|rows| rows.sort_unstable());
    let rel = layout::latest_file(name, run_id);
    let written = joblake_writer::write_latest(
        lake,
        name,
        &joblake_schema::arrow_schema(table),
        joblake_writer::LatestRows {
            files: &files,
            columns: &columns,
            superseded: &superseded,
        },
        rel.clone(),
        &joblake_writer::WriterOptions::default(),
        vec![
            ("joblake.run_id".to_string(), run_id.to_string()),
            ("joblake.latest_through".to_string(), through.clone()),
        ],
    )
    .await?;
    let rows = match written {
        Some(rows) => rows,
        None => {
            // Files that disagree on a column's type: DuckDB's union of them, a window over
            // whole rows (spilling beyond 1 GB).
            let target = lake.reader_path(rel.as_ref());
            if let LakeLocation::Local(_) = lake.location()
                && let Some(dir) = std::path::Path::new(&target).parent()
            {
                std::fs::create_dir_all(dir)?;
            }
            let engine = crate::Engine {
                memory_limit: Some("1GB".into()),
                ..engine(lake)
            };
            let select = catalog::latest_of(&history);
            tokio::task::spawn_blocking(move || {
                crate::copy_to_parquet(&engine, "", &select, &target)
            })
            .await??
        }
    };
    let previous = read_latest(lake, table)
        .await?
        .map(|s| s.files)
        .unwrap_or_default();
    let snap = Latest {
        format: 1,
        through,
        made_by: run_id.to_string(),
        files: vec![rel.to_string()],
        previous,
        rows,
    };
    crash_point("latest:after-copy");
    lake.put(
        &layout::latest_pointer(name),
        serde_json::to_vec_pretty(&snap)?.into(),
    )
    .await?;
    let keep: Vec<&String> = snap.files.iter().chain(&snap.previous).collect();
    let stale = lake
        .list(&layout::latest_root(name))
        .await?
        .into_iter()
        .map(|m| m.location)
        .filter(|p| !keep.iter().any(|k| k.as_str() == p.as_ref()))
        .collect();
    lake.delete_all(stale).await?;
    Ok(Some(snap))
}
