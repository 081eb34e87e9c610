//! `joblake enrich companies`: the full profiles of the career sites an analyst chooses (an
//! SQL predicate over the `career_sites` view), into the `companies` table, with the same
//! staging, commits and recovery as the feeds.
//!
//! Which companies: those the predicate selects that have a profile (`details_url`), whose
//! profile was not fetched within `stale_after`, and that did not answer 404 within it
//! (404s are remembered in the table's state, so they are not asked again every run). The
//! profiles are fetched a few at a time under Jobo's request budget and each is staged (a
//! page of one) as it arrives, so a crash costs at most the profiles in flight.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use joblake_fetcher::{ClientConfig, CompanyClient, Pacer, RetryPolicy};
use joblake_schema::Table;
use joblake_writer::{Lake, RawPage, RunRecord, RunStatus, write_ledger};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::SourceConfig;
use crate::refresh::{ProfileCounts, RefreshOptions, SourceSummary};

/// What to enrich, as `enrich companies` or `[companies]` in `joblake.toml` says.
#[derive(Debug, Clone)]
pub struct EnrichOptions {
    /// SQL predicate over the `career_sites` view; every career site when `None`.
    pub predicate: Option<String>,
    /// Profiles fetched (or found missing) more recently than this are not fetched again.
    pub stale_after: chrono::Duration,
    /// At most this many profiles in one run.
    pub limit: Option<u64>,
    /// Profiles asked for at once.
    pub concurrency: usize,
}

/// Parses `30d`, `12h` or a number of days.
pub fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let (n, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "d"),
    };
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not an age like 30d or 12h"))?;
    match unit {
        "d" => Ok(chrono::Duration::days(n)),
        "h" => Ok(chrono::Duration::hours(n)),
        _ => Err(format!("{s:?}: the unit must be d (days) or h (hours)")),
    }
}

/// The companies table's checkpoint: the profiles Jobo did not have, and since when.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct EnrichState {
    #[serde(default)]
    not_found: BTreeMap<String, NaiveDate>,
}

/// `enrich companies --dry-run`: the ids a run would ask for now (from the last commit's
/// checkpoint), without asking.
pub async fn plan(lake: &Lake, opts: &EnrichOptions) -> Result<Vec<String>> {
    let path =
        object_store::path::Path::from(format!("_joblake/state/{}.json", Table::Companies.name()));
    let mut state: EnrichState = match lake.get_opt(&path).await? {
        None => EnrichState::default(),
        Some(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| serde_json::from_value(v.get("source")?.clone()).ok())
            .context("companies: the checkpoint in the state file is not readable")?,
    };
    forget_old_404s(&mut state, opts);
    candidates(lake, opts, &state).await
}

/// A 404 is asked again once it is as old as a profile would be; true when one was dropped.
fn forget_old_404s(state: &mut EnrichState, opts: &EnrichOptions) -> bool {
    let cutoff = (Utc::now() - opts.stale_after).date_naive();
    let before = state.not_found.len();
    state.not_found.retain(|_, since| *since >= cutoff);
    state.not_found.len() != before
}

/// The ids to fetch, asked of the views in a fresh DuckDB session.
async fn candidates(lake: &Lake, opts: &EnrichOptions, state: &EnrichState) -> Result<Vec<String>> {
    let setup = crate::catalog::view_sql(lake).await?;
    // UTC wall time on both sides: TIMESTAMPTZ arithmetic would need DuckDB's ICU extension.
    let fresh_since = (Utc::now() - opts.stale_after).format("%Y-%m-%d %H:%M:%S%.6f");
    let predicate = opts.predicate.as_deref().unwrap_or("true");
    let sql = format!(
        "SELECT id FROM career_sites WHERE ({predicate}) AND details_url IS NOT NULL \
         AND id NOT IN (SELECT id FROM companies_history \
                        WHERE CAST(_fetched_at AS TIMESTAMP) >= TIMESTAMP '{fresh_since}') \
         ORDER BY id"
    );
    let engine = crate::engine(lake);
    let batches =
        tokio::task::spawn_blocking(move || joblake_views::query_fresh(&engine, &setup, &sql))
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
            if !state.not_found.contains_key(id) {
                ids.push(id.to_string());
            }
        }
    }
    if let Some(limit) = opts.limit {
        ids.truncate(limit as usize);
    }
    Ok(ids)
}

/// Enriches the chosen companies; the lake lock must be held.
pub async fn run(
    lake: &Lake,
    run_id: &str,
    key: SecretString,
    base_url: String,
    cfg: &SourceConfig,
    enrich: &EnrichOptions,
    opts: &RefreshOptions,
) -> SourceSummary {
    let started = Instant::now();
    let mut summary = SourceSummary::new(Table::Companies);
    let mut record = RunRecord::new(run_id, Table::Companies.name(), Utc::now());
    record.command = Some("enrich".into());
    let (status, message) = match fetch_profiles(
        lake,
        run_id,
        key,
        base_url,
        cfg,
        enrich,
        opts,
        &mut summary,
        &record,
    )
    .await
    {
        Ok(status) => (status, summary.message.take()),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    summary.status = status;
    summary.message = message;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.close(lake, record).await;
    summary
}

#[allow(clippy::too_many_arguments)]
async fn fetch_profiles(
    lake: &Lake,
    run_id: &str,
    key: SecretString,
    base_url: String,
    cfg: &SourceConfig,
    enrich: &EnrichOptions,
    opts: &RefreshOptions,
    summary: &mut SourceSummary,
    running: &RunRecord,
) -> Result<RunStatus> {
    let table = Table::Companies;
    let (mut writer, recovery, stats) =
        crate::refresh::open_table(lake, table, run_id, summary).await?;
    let mut state: EnrichState = crate::refresh::checkpoint(&writer, table)?;
    // Set while the state changed since the last page staged: it must be committed even
    // without rows.
    let mut dirty = forget_old_404s(&mut state, enrich);
    let ids = candidates(lake, enrich, &state).await?;
    tracing::info!(companies = ids.len(), "company profiles to fetch");
    let mut counts = ProfileCounts {
        due: ids.len() as u64,
        ..ProfileCounts::default()
    };
    let defaults = RetryPolicy::default();
    let client = CompanyClient::new(ClientConfig {
        base_url,
        key,
        timeout: std::time::Duration::from_secs(cfg.timeout_secs.unwrap_or(120)),
        retry: RetryPolicy {
            max_attempts: cfg.max_attempts.unwrap_or(defaults.max_attempts),
            base: cfg
                .retry_base_ms
                .map(std::time::Duration::from_millis)
                .unwrap_or(defaults.base),
            cap: cfg
                .retry_cap_secs
                .map(std::time::Duration::from_secs)
                .unwrap_or(defaults.cap),
        },
        pacer: Pacer::per_minute(
            cfg.requests_per_minute
                .unwrap_or(joblake_fetcher::Api::Jobo.default_per_minute()),
        ),
    })?;
    let client = &client;
    let mut profiles = futures::stream::iter(ids)
        .map(|id| async move {
            let got = client.fetch(&id).await;
            (id, got)
        })
        .buffered(enrich.concurrency.max(1));
    let progress = crate::refresh::progress_bar(opts.progress.as_ref(), table);
    let mut stager = writer.stager();
    let mut page_no = 0i64;
    let mut stop_with: Option<Result<RunStatus>> = None;
    loop {
        let next = if opts.stop.load(Ordering::SeqCst) {
            summary.message = Some("interrupted; the next run goes on".into());
            stop_with = Some(Ok(RunStatus::Interrupted));
            None
        } else {
            profiles.next().await
        };
        match &next {
            None => {}
            Some((_, Ok(Some(_)))) => counts.fetched += 1,
            Some((id, Ok(None))) => {
                counts.not_found += 1;
                dirty = true;
                state.not_found.insert(id.clone(), Utc::now().date_naive());
            }
            // The fetcher's errors never hold the key.
            Some((_, Err(e))) => stop_with = Some(Err(anyhow::anyhow!("companies: {e}"))),
        }
        progress.set_message(format!(
            "{} of {} profiles, {} without one (404)",
            counts.fetched + counts.not_found,
            counts.due,
            counts.not_found
        ));
        let ended = next.is_none() || stop_with.is_some();
        let profile = match next {
            Some((_, Ok(Some(profile)))) => Some(profile),
            _ => None,
        };
        // A 404's memory rides with the next profile staged, or on a page of its own at the end.
        if profile.is_some() || (ended && dirty) {
            dirty = false;
            page_no += 1;
            let raw = RawPage {
                run_id: run_id.to_string(),
                page: page_no,
                fetched_at: Utc::now(),
                rows: profile.into_iter().collect(),
            };
            let value = serde_json::to_value(&state).expect("state serialises");
            if summary.pages == 0
                && let Err(e) = write_ledger(lake, running).await
            {
                tracing::warn!(error = %e, "could not write the run ledger");
            }
            stager.stage(&raw, &value).await?;
            summary.pages += 1;
            writer.append(raw, value).await?;
        }
        if ended {
            break;
        }
    }
    progress.finish_and_clear();
    summary.profiles = Some(counts);
    let totals = *stats.lock().unwrap_or_else(|e| e.into_inner());
    summary.rows = totals.rows.saturating_sub(recovery.rows);
    summary.type_mismatches = totals.type_mismatches;
    summary.unknown_fields = totals.unknown_fields;
    summary.rejected_rows = totals.rejected;
    let fetched = client.stats().snapshot();
    summary.retries = fetched.retries;
    summary.http_429 = fetched.throttled;
    opts.lock.confirm(lake).await?;
    let report = writer.commit(None).await?;
    summary.files += report.files.len() as u64;
    summary.bytes += report.files.iter().map(|f| f.bytes).sum::<u64>();
    stager.discard().await?;
    stop_with.unwrap_or(Ok(RunStatus::Succeeded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_take_days_hours_or_plain_days() {
        assert_eq!(parse_age("30d").unwrap(), chrono::Duration::days(30));
        assert_eq!(parse_age("12h").unwrap(), chrono::Duration::hours(12));
        assert_eq!(parse_age("7").unwrap(), chrono::Duration::days(7));
        assert!(parse_age("soon").is_err());
        assert!(parse_age("3w").is_err());
    }
}
