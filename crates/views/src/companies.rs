//! Which companies an enrichment run asks for, chosen in SQL over the views.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use joblake_writer::Lake;

use crate::session::engine;

/// What to enrich, as `enrich companies` or `[companies]` in `joblake.toml` says.
#[derive(Debug, Clone)]
pub struct Choice {
    /// SQL predicate over the `career_sites` view; every career site when `None`.
    pub predicate: Option<String>,
    /// Profiles fetched more recently than this are not fetched again.
    pub stale_after: chrono::Duration,
    /// At most this many profiles in one run.
    pub limit: Option<u64>,
}

/// The ids of the career sites `choice` selects that list a profile (`details_url`), whose
/// profile was not fetched within `stale_after` and is not in `not_found` (404s remembered),
/// in id order, at most `limit` of them; asked of the views in a fresh DuckDB session.
pub async fn candidates(
    lake: &Lake,
    choice: &Choice,
    not_found: &BTreeMap<String, NaiveDate>,
) -> Result<Vec<String>> {
    let setup = crate::catalog::view_sql(lake).await?;
    // UTC wall time on both sides: TIMESTAMPTZ arithmetic would need DuckDB's ICU extension.
    let fresh_since = (Utc::now() - choice.stale_after).format("%Y-%m-%d %H:%M:%S%.6f");
    let predicate = choice.predicate.as_deref().unwrap_or("true");
    let sql = format!(
        "SELECT id FROM career_sites WHERE ({predicate}) AND details_url IS NOT NULL \
         AND id NOT IN (SELECT id FROM companies_history \
                        WHERE CAST(_fetched_at AS TIMESTAMP) >= TIMESTAMP '{fresh_since}') \
         ORDER BY id"
    );
    let engine = engine(lake);
    let batches = tokio::task::spawn_blocking(move || crate::query_fresh(&engine, &setup, &sql))
        .await?
        .context("cannot select the companies to enrich (check --where)")?;
    let mut ids = Vec::new();
    for b in &batches {
        let col = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .context("career_sites.id is not text")?;
        for id in col.iter().flatten() {
            if !not_found.contains_key(id) {
                ids.push(id.to_string());
            }
        }
    }
    if let Some(limit) = choice.limit {
        ids.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(ids)
}
