//! The figures `joblake status` asks of the views.

use anyhow::Result;
use arrow::array::{Array, Int64Array};
use joblake_schema::Table;
use joblake_writer::Lake;

use crate::session::engine;

/// Row versions and distinct ids in each of `tables`' history, in one fresh DuckDB session.
pub async fn history_counts(lake: &Lake, tables: &[Table]) -> Result<Vec<(i64, i64)>> {
    let setup = crate::catalog::view_sql(lake).await?;
    let engine = engine(lake);
    let sql = tables
        .iter()
        .map(|t| {
            format!(
                "SELECT count(*)::BIGINT, count(DISTINCT id)::BIGINT FROM {}",
                crate::ident(&format!("{}_history", t.name()))
            )
        })
        .collect::<Vec<_>>();
    let batches =
        tokio::task::spawn_blocking(move || crate::query_many(&engine, &setup, &sql)).await??;
    Ok(batches
        .iter()
        .map(|b| (first_i64(b, 0), first_i64(b, 1)))
        .collect())
}

/// Column `i` of the first row of a query's result, as a BIGINT (0 when there is none).
fn first_i64(batches: &[arrow::array::RecordBatch], i: usize) -> i64 {
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
}

/// Of the `jobs` view (latest versions): jobs that quote a salary (text or figures), and those
/// of them the view could not put per year (no period told, or no figure): schemas/jobs.md,
/// "Salaries per year". Zeros for a lake without jobs.
pub async fn salary_counts(lake: &Lake) -> Result<(i64, i64)> {
    let sql = "SELECT count(*)::BIGINT, count(*) FILTER (WHERE salary_annual_from IS NULL \
               AND salary_annual_to IS NULL)::BIGINT FROM jobs \
               WHERE salary_offered IS NOT NULL OR salary_from IS NOT NULL OR salary_to IS NOT NULL";
    let batches = query_views(lake, vec![sql.to_string()]).await?;
    let first = batches.first().map(Vec::as_slice).unwrap_or_default();
    Ok((first_i64(first, 0), first_i64(first, 1)))
}

/// Each of `queries` on the views of `lake`, in one fresh DuckDB session (so a report or a
/// status never depends on the DuckDB file being current).
pub async fn query_views(
    lake: &Lake,
    queries: Vec<String>,
) -> Result<Vec<Vec<arrow::array::RecordBatch>>> {
    let setup = crate::catalog::view_sql(lake).await?;
    let engine = engine(lake);
    Ok(tokio::task::spawn_blocking(move || crate::query_many(&engine, &setup, &queries)).await??)
}
