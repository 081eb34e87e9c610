//! `joblake status`: what the lake holds, per table, from the lake itself.

use std::collections::BTreeSet;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use joblake_schema::Table;
use joblake_sync::Checkpoint;
use joblake_writer::{Lake, RunRecord, RunStatus, layout, read_ledger};
use serde::Serialize;

use crate::args::Cli;
use crate::outcome::{CmdResult, Outcome};

/// One table's line of the status.
#[derive(Debug, Serialize)]
struct TableStatus {
    table: String,
    rows: i64,
    ids: i64,
    files: usize,
    partitions: usize,
    bytes: u64,
    last_run: Option<String>,
    last_status: Option<String>,
    last_success: Option<String>,
    watermark: Option<String>,
    scan_in_progress: bool,
    cursor: Option<String>,
    staged_pages: usize,
    credits_balance: Option<f64>,
}

/// Runs `status`: a table, or JSON with `--json`.
pub async fn status(cli: &Cli) -> CmdResult {
    let lake = Lake::open(&cli.lake, false)?;
    joblake_writer::format::check(&lake).await?;
    let tables = joblake_views::catalog::tables_in(&lake).await?;
    let counts = joblake_views::status::history_counts(&lake, &tables).await?;
    let ledger = read_ledger(&lake).await?;
    let mut out = Vec::new();
    for (table, (rows, ids)) in tables.into_iter().zip(counts) {
        out.push(table_status(&lake, table, rows, ids, &ledger).await?);
    }
    let salaries = if out
        .iter()
        .any(|t| t.table == Table::Jobs.name() && t.rows > 0)
    {
        let (quoted, not_per_year) = joblake_views::status::salary_counts(&lake).await?;
        Some(Salaries {
            quoted,
            not_per_year,
        })
    } else {
        None
    };
    let now = Utc::now();
    let credits: Vec<Credits> = API_SOURCES
        .iter()
        .map(|(api, sources)| credits(api, sources, &ledger, now))
        .filter(|c| c.runs > 0)
        .collect();
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "lake": lake.url(),
                "tables": out,
                "credits": credits,
                "salaries": salaries,
            }))
            .expect("the status serialises")
        );
        return Ok(Outcome::Done);
    }
    println!("lake {}", lake.url());
    println!(
        "{:<13} {:>9} {:>9} {:>6} {:>5} {:>10}  {:<26} {:<10} {:>12}  cursor",
        "table", "rows", "ids", "files", "dts", "bytes", "last run", "status", "credits"
    );
    for s in &out {
        println!(
            "{:<13} {:>9} {:>9} {:>6} {:>5} {:>10}  {:<26} {:<10} {:>12}  {}",
            s.table,
            s.rows,
            s.ids,
            s.files,
            s.partitions,
            s.bytes,
            s.last_run.as_deref().unwrap_or("-"),
            s.last_status.as_deref().unwrap_or("never run"),
            s.credits_balance
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            match (&s.cursor, s.scan_in_progress) {
                (_, false) => "scan complete".to_string(),
                (Some(_), true) => format!("scan in progress ({} staged pages)", s.staged_pages),
                (None, true) => "scan starting".to_string(),
            }
        );
    }
    if let Some(s) = &salaries {
        println!();
        println!(
            "salaries: {} jobs quote one; {} of them have no yearly figure (no period or \
             figure could be told; schemas/jobs.md)",
            s.quoted, s.not_per_year
        );
    }
    if !credits.is_empty() {
        println!();
        println!(
            "{:<13} {:>12} {:>12} {:>12} {:>12}  lasts",
            "credits", "used 7 days", "used 30 days", "balance", "per day"
        );
    }
    for c in &credits {
        let figure = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        println!(
            "{:<13} {:>12} {:>12} {:>12} {:>12}  {}",
            c.api,
            figure(Some(c.used_7_days)),
            figure(Some(c.used_30_days)),
            figure(c.balance),
            figure(Some(c.per_day)),
            match c.days_left {
                Some(d) => format!("{d:.1} days at this rate"),
                None if c.balance.is_none() => "balance not reported".to_string(),
                None => "no credits used in 7 days".to_string(),
            }
        );
    }
    Ok(Outcome::Done)
}

/// Jobs (latest versions) quoting a salary, and those the `jobs` view could not put per year.
#[derive(Debug, Serialize)]
struct Salaries {
    quoted: i64,
    not_per_year: i64,
}

/// The APIs whose credits `status` plans with, and the tables each one's key fetches: Jobo's
/// one wallet pays for the feed and for company profiles.
pub(crate) const API_SOURCES: [(&str, &[&str]); 2] = [
    ("jobo", &["career_sites", "companies"]),
    ("sentrion", &["jobs"]),
];

/// One API's credits: used over the last 7 and 30 days (by the runs started then), the
/// balance it reported last, and how many days that balance lasts at the last 7 days' rate.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Credits {
    pub api: String,
    pub runs: usize,
    used_7_days: f64,
    used_30_days: f64,
    pub balance: Option<f64>,
    /// Credits a day over the last 7 days, or over the days since the API's first run when
    /// that is less (at least one day: a lake a few hours old is not judged by its hours).
    pub per_day: f64,
    /// `balance / per_day`; none without a balance, or without any use in 7 days.
    pub days_left: Option<f64>,
}

pub(crate) fn credits(
    api: &str,
    sources: &[&str],
    ledger: &[RunRecord],
    now: DateTime<Utc>,
) -> Credits {
    let runs: Vec<&RunRecord> = ledger
        .iter()
        .filter(|r| sources.contains(&r.source.as_str()))
        .collect();
    let used_since = |days: i64| -> f64 {
        runs.iter()
            .filter(|r| r.started_at > now - Duration::days(days))
            .filter_map(|r| r.credits_used)
            .sum()
    };
    let used_7_days = used_since(7);
    let first = runs.iter().map(|r| r.started_at).min().unwrap_or(now);
    let days_seen = (now - first).num_seconds() as f64 / 86_400.0;
    let per_day = used_7_days / days_seen.clamp(1.0, 7.0);
    let balance = runs
        .iter()
        .filter(|r| r.credits_balance.is_some())
        .max_by_key(|r| r.finished_at.unwrap_or(r.started_at))
        .and_then(|r| r.credits_balance);
    Credits {
        api: api.to_string(),
        runs: runs.len(),
        used_7_days,
        used_30_days: used_since(30),
        balance,
        per_day,
        days_left: balance.filter(|_| per_day > 0.0).map(|b| b / per_day),
    }
}

async fn table_status(
    lake: &Lake,
    table: Table,
    rows: i64,
    ids: i64,
    ledger: &[RunRecord],
) -> Result<TableStatus> {
    let name = table.name();
    let files = joblake_views::catalog::history_files(lake, table).await?;
    let partitions: BTreeSet<String> = files
        .iter()
        .filter_map(|m| m.location.parts().nth(1).map(|p| p.as_ref().to_string()))
        .collect();
    // The companies' checkpoint has no scan: it reads as an empty feed checkpoint.
    let committed: Checkpoint = joblake_sync::open::committed_checkpoint(lake, table)
        .await
        .unwrap_or_default();
    let staged = lake.list(&layout::staging_root(name)).await?.len();
    let mine: Vec<&RunRecord> = ledger.iter().filter(|r| r.source == name).collect();
    let last = mine.last();
    Ok(TableStatus {
        table: name.to_string(),
        rows,
        ids,
        files: files.len(),
        partitions: partitions.len(),
        bytes: files.iter().map(|m| m.size).sum(),
        last_run: last.map(|r| r.run_id.clone()),
        last_status: last.map(|r| r.status.as_str().to_string()),
        last_success: mine
            .iter()
            .rev()
            .find(|r| r.status == RunStatus::Succeeded)
            .map(|r| r.run_id.clone()),
        watermark: committed.watermark.map(|w| w.to_rfc3339()),
        scan_in_progress: committed.scan.is_some() || staged > 0,
        cursor: committed.scan.as_ref().and_then(|s| s.cursor.clone()),
        staged_pages: staged,
        credits_balance: mine.iter().rev().find_map(|r| r.credits_balance),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        source: &str,
        days_ago: f64,
        used: Option<f64>,
        balance: Option<f64>,
        now: DateTime<Utc>,
    ) -> RunRecord {
        let started = now - Duration::seconds((days_ago * 86_400.0) as i64);
        let mut r = RunRecord::new(&format!("r{days_ago}"), source, started);
        r.finished_at = Some(started + Duration::minutes(5));
        r.credits_used = used;
        r.credits_balance = balance;
        r
    }

    #[test]
    fn credits_are_summed_per_api_over_7_and_30_days_and_the_balance_is_the_last_reported() {
        let now = Utc::now();
        let ledger = vec![
            run("career_sites", 40.0, Some(1000.0), Some(9000.0), now),
            run("career_sites", 20.0, Some(300.0), Some(8700.0), now),
            run("companies", 6.0, Some(70.0), Some(8630.0), now),
            run("career_sites", 1.0, Some(70.0), Some(8560.0), now),
            run("jobs", 1.0, Some(5.0), None, now),
        ];
        let jobo = credits("jobo", &["career_sites", "companies"], &ledger, now);
        assert_eq!(jobo.runs, 4);
        assert_eq!(jobo.used_7_days, 140.0);
        assert_eq!(jobo.used_30_days, 440.0);
        assert_eq!(jobo.balance, Some(8560.0));
        assert_eq!(jobo.per_day, 20.0);
        assert_eq!(jobo.days_left, Some(428.0));
        // Sentrion reported no balance: nothing to plan with, said so.
        let sentrion = credits("sentrion", &["jobs"], &ledger, now);
        assert_eq!(
            (sentrion.used_7_days, sentrion.balance, sentrion.days_left),
            (5.0, None, None)
        );
    }

    #[test]
    fn a_young_lake_is_judged_by_a_whole_day_and_an_idle_one_by_its_week() {
        let now = Utc::now();
        // Two runs an hour old: 100 credits a day, not 2,400.
        let young = vec![
            run("jobs", 0.04, Some(60.0), Some(1000.0), now),
            run("jobs", 0.01, Some(40.0), Some(960.0), now),
        ];
        let c = credits("sentrion", &["jobs"], &young, now);
        assert_eq!((c.per_day, c.days_left), (100.0, Some(9.6)));
        // Three days old: the three days' use over three days.
        let three = vec![run("jobs", 3.0, Some(30.0), Some(900.0), now)];
        assert_eq!(credits("sentrion", &["jobs"], &three, now).per_day, 10.0);
        // Nothing used in the last week: the balance lasts; no days are made up.
        let idle = vec![run("jobs", 10.0, Some(30.0), Some(900.0), now)];
        let c = credits("sentrion", &["jobs"], &idle, now);
        assert_eq!(
            (c.used_7_days, c.used_30_days, c.days_left),
            (0.0, 30.0, None)
        );
    }
}
