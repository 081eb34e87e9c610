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
    let predicate = choice.predicate.as_deref().unwrap_or("true");
    check_predicate(predicate).map_err(|why| {
        anyhow::anyhow!(
            "--where (or [companies] where) must be one SQL condition on the career_sites \
             view, such as \"country = 'Germany' AND company_size > 50\": {why}"
        )
    })?;
    let setup = crate::catalog::view_sql(lake).await?;
    // UTC wall time on both sides: TIMESTAMPTZ arithmetic would need DuckDB's ICU extension.
    let fresh_since = (Utc::now() - choice.stale_after).format("%Y-%m-%d %H:%M:%S%.6f");
    // The condition sits in parentheses of its own, on lines of its own, which it cannot
    // leave (see `check_predicate`); the other conditions stay whatever it holds.
    let sql = format!(
        "SELECT id FROM (SELECT * FROM career_sites WHERE (\n{predicate}\n)) AS chosen \
         WHERE details_url IS NOT NULL \
         AND id NOT IN (SELECT id FROM companies_history \
                        WHERE CAST(_fetched_at AS TIMESTAMP) >= TIMESTAMP '{fresh_since}') \
         ORDER BY id"
    );
    let engine = engine(lake);
    // The session reads the lake and nothing else: a condition cannot read, write or
    // attach a file elsewhere, whatever it calls.
    let allowed = vec![format!("{}/", lake.reader_path("").trim_end_matches('/'))];
    let batches =
        tokio::task::spawn_blocking(move || crate::query_confined(&engine, &allowed, &setup, &sql))
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

/// Checks that `predicate` is one SQL condition and nothing more: no `;`, no comment, no
/// dollar-quoted or `E'...'` string (whose ends a plain reading could place elsewhere than
/// DuckDB does), and parentheses that never close more than they opened and end balanced.
/// Put between parentheses of its own, it then cannot leave them.
pub fn check_predicate(predicate: &str) -> std::result::Result<(), String> {
    if predicate.trim().is_empty() {
        return Err("it is empty".into());
    }
    let mut depth = 0usize;
    let mut chars = predicate.chars().peekable();
    let mut before = ' ';
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => loop {
                match chars.next() {
                    None => return Err(format!("a {c} is never closed")),
                    // A doubled quote is the quote itself.
                    Some(q) if q == c && chars.peek() == Some(&c) => {
                        chars.next();
                    }
                    Some(q) if q == c => break,
                    Some(_) => {}
                }
            },
            ';' => return Err("it holds a `;`: one condition, not statements".into()),
            '-' if chars.peek() == Some(&'-') => return Err("it holds a comment (`--`)".into()),
            '/' if chars.peek() == Some(&'*') => return Err("it holds a comment (`/*`)".into()),
            '$' => return Err("it holds a `$` (parameters and dollar-quoted strings)".into()),
            'e' | 'E'
                if chars.peek() == Some(&'\'') && !(before.is_alphanumeric() || before == '_') =>
            {
                return Err("it holds an escape string (E'...'); use a plain '...' string".into());
            }
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or("it closes a parenthesis it did not open")?;
            }
            _ => {}
        }
        before = c;
    }
    if depth > 0 {
        return Err("a parenthesis is never closed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_passes_and_anything_more_is_refused() {
        for ok in [
            "country = 'Germany'",
            "name LIKE '%(beta%' AND (company_size > 50 OR is_agency)",
            "name = 'it''s; -- fine' OR \"weird \"\"col\" = 1",
            "regexp_matches(name, '\\d+')",
            "like'x' IS NULL",
            "id IN (SELECT id FROM career_sites WHERE industries IS NOT NULL)",
        ] {
            assert_eq!(check_predicate(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("true; COPY career_sites TO '/tmp/x.csv'", "`;`"),
            (
                "true); COPY career_sites TO '/tmp/x.csv'; SELECT (1",
                "did not open",
            ),
            ("true) OR (true", "did not open"),
            ("true -- and drop the other filters", "comment"),
            ("true /* and the rest", "comment"),
            ("(true", "never closed"),
            ("name = 'open", "never closed"),
            ("name = $1", "`$`"),
            ("name = $$x$$", "`$`"),
            ("name = E'\\'' ) OR (true", "escape string"),
            ("   ", "empty"),
        ] {
            let e = check_predicate(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
