//! DuckDB sessions for a lake: where they find extensions, how they reach an S3 lake, and
//! the views written into the lake's DuckDB file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use joblake_writer::{Lake, LakeLocation, crash_point};

use crate::{Engine, S3Secret};

/// Where the views of `lake` live: `duckdb` when given, else `<lake>/lake.duckdb` for a local
/// lake and `./lake.duckdb` for an S3 lake.
pub fn duckdb_path(lake: &Lake, duckdb: Option<&Path>) -> PathBuf {
    if let Some(p) = duckdb {
        return p.to_path_buf();
    }
    match lake.location() {
        LakeLocation::Local(root) => root.join("lake.duckdb"),
        LakeLocation::S3 { .. } => PathBuf::from("lake.duckdb"),
    }
}

/// Runs `sql` on the views in `db` (read-only, as any reader would).
pub async fn query(lake: &Lake, db: &Path, sql: &str) -> Result<Vec<arrow::array::RecordBatch>> {
    let engine = engine(lake);
    let db = db.to_path_buf();
    let sql = sql.to_string();
    Ok(tokio::task::spawn_blocking(move || crate::query(&engine, &db, &sql)).await??)
}

/// The table in the DuckDB file naming the last run of the ledger the views were built
/// after.
const BUILT: &str = "_joblake_views";

/// Whether the views in `db` were built before the lake's last run (or cannot tell): a run
/// killed after its commit but before the views, say, left them behind, and the next run
/// rebuilds them even with nothing new to fetch.
pub async fn views_behind(lake: &Lake, db: &Path) -> bool {
    if !db.exists() {
        return true;
    }
    let Ok(last) = joblake_writer::last_ledger_run(lake).await else {
        return true;
    };
    let sql = format!("SELECT through_run FROM {BUILT}");
    let built = match query(lake, db, &sql).await {
        Ok(batches) => batches.first().and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .filter(|a| arrow::array::Array::len(*a) > 0)
                .map(|a| a.value(0).to_string())
        }),
        Err(_) => return true,
    };
    built.as_deref().unwrap_or("") < last.as_deref().unwrap_or("")
}

/// Writes the views of `lake` into the DuckDB file `db` (see [`crate::rebuild`]), noting the
/// last run they were built after (see [`views_behind`]).
pub async fn rebuild_views(lake: &Lake, db: &Path) -> Result<()> {
    let through = joblake_writer::last_ledger_run(lake)
        .await?
        .unwrap_or_default();
    let mut sql = crate::catalog::view_sql(lake).await?;
    sql.push_str(&format!(
        "\nCREATE OR REPLACE TABLE {BUILT} AS SELECT {} AS through_run;\n",
        crate::literal(&through)
    ));
    let db = db.to_path_buf();
    // Building the views only scans (the snapshot rows newer runs replaced, see catalog.rs):
    // capped, DuckDB spills rather than grow a run's memory when many runs piled up since the
    // last compaction.
    let engine = Engine {
        memory_limit: Some("128MB".into()),
        ..engine(lake)
    };
    tokio::task::spawn_blocking(move || {
        crate::rebuild(&engine, &db, &[sql], &|| crash_point("views:before-rename"))
    })
    .await?
    .context("cannot write the DuckDB views")
}

/// How joblake's DuckDB sessions reach `lake`: extensions from beside the binary (see
/// [`crate::extension_dir`]), and for an S3 lake a session-only secret made from the
/// same `AWS_*` settings the lake was opened with.
pub fn engine(lake: &Lake) -> Engine {
    let extension_dir = crate::extension_dir();
    let s3 = lake.s3_access().map(|a| {
        let endpoint = a.endpoint.as_deref().map(url_host);
        S3Secret {
            scope: a.scope.clone(),
            key_id: a.access_key_id.clone(),
            secret: a.secret_access_key.clone(),
            session_token: a.session_token.clone(),
            region: a.region.clone(),
            use_ssl: !a
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            // AWS itself is reached bucket-first; a custom endpoint as object_store does.
            virtual_hosted_style: endpoint.is_none() || a.virtual_hosted_style,
            endpoint,
        }
    });
    Engine {
        extension_dir,
        s3,
        memory_limit: None,
        threads: None,
    }
}

/// `host[:port]` of an endpoint URL, as DuckDB's S3 settings take it.
fn url_host(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    rest.trim_end_matches('/').to_string()
}
