//! `joblake report`: the lake's figures, gathered from the views and the ledger, drawn by
//! `joblake-report` as one self-contained HTML page.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use chrono::Utc;
use joblake_report::{Bar, Credits, Freshness, Report, Run, Salaries};
use joblake_schema::Table;
use joblake_writer::{Lake, LakeLocation, RunStatus, read_ledger};
use serde_json::Value;

use crate::args::Cli;
use crate::outcome::{CmdResult, Outcome};

/// Runs `report`: writes the page and prints where.
pub async fn report(cli: &Cli, out: Option<&Path>) -> CmdResult {
    let lake = Lake::open(&cli.lake, false)?;
    joblake_writer::format::check(&lake).await?;
    let out = match out {
        Some(p) => p.to_path_buf(),
        None => match lake.location() {
            LakeLocation::Local(root) => root.join("report.html"),
            LakeLocation::S3 { .. } => PathBuf::from("joblake-report.html"),
        },
    };
    let report = gather(&lake).await?;
    let html = joblake_report::render(&report);
    std::fs::write(&out, html).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", out.display());
    Ok(Outcome::Done)
}

async fn gather(lake: &Lake) -> Result<Report> {
    let tables = joblake_views::catalog::tables_in(lake).await?;
    let has_jobs = tables.contains(&Table::Jobs);
    let mut queries = vec![
        "SELECT run_id, source, epoch(started_at) AS started, rows, coalesce(new_ids, 0) AS new_ids, \
         pages, retries, http_429, credits_used, credits_balance FROM runs ORDER BY started_at, run_id"
            .to_string(),
        top("career_sites", "ats"),
    ];
    if has_jobs {
        queries.push(top("jobs", "country"));
        queries.push(top("jobs", "seniority_level"));
        queries.push(
            "SELECT salary_currency, count(*) AS n, quantile_cont(salary_annual_from, 0.95) AS p95 \
             FROM jobs WHERE salary_annual_from IS NOT NULL GROUP BY 1 ORDER BY n DESC LIMIT 1"
                .to_string(),
        );
    }
    let results = joblake_views::status::query_views(lake, queries).await?;
    let mut results = results
        .iter()
        .map(|b| rows(b))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let runs: Vec<Run> = results
        .next()
        .unwrap_or_default()
        .iter()
        .map(|r| Run {
            run_id: r["run_id"].as_str().unwrap_or_default().to_string(),
            source: r["source"].as_str().unwrap_or_default().to_string(),
            started: f(&r["started"]),
            rows: f(&r["rows"]),
            new_ids: f(&r["new_ids"]),
            pages: f(&r["pages"]),
            retries: f(&r["retries"]),
            http_429: f(&r["http_429"]),
            credits_used: r["credits_used"].as_f64(),
            credits_balance: r["credits_balance"].as_f64(),
        })
        .collect();
    let mut tops = vec![(
        "Career sites by ATS".to_string(),
        bars(&results.next().unwrap_or_default()),
    )];
    let mut salaries = None;
    if has_jobs {
        tops.push((
            "Jobs by country".to_string(),
            bars(&results.next().unwrap_or_default()),
        ));
        tops.push((
            "Jobs by seniority".to_string(),
            bars(&results.next().unwrap_or_default()),
        ));
        if let Some(top) = results.next().unwrap_or_default().first() {
            salaries = Some(salary_histogram(lake, top).await?);
        }
    }

    let ledger = read_ledger(lake).await?;
    let now = Utc::now();
    let counts = joblake_views::status::history_counts(lake, &tables).await?;
    let freshness = tables
        .iter()
        .zip(counts)
        .map(|(t, (rows, ids))| {
            let last = ledger
                .iter()
                .filter(|r| r.source == t.name() && r.status == RunStatus::Succeeded)
                .max_by_key(|r| r.finished_at.unwrap_or(r.started_at));
            Freshness {
                table: t.name().to_string(),
                last_success: last.map_or("-".to_string(), |r| r.run_id.clone()),
                age_hours: last.map(|r| {
                    (now - r.finished_at.unwrap_or(r.started_at)).num_seconds() as f64 / 3600.0
                }),
                rows: rows as f64,
                ids: ids as f64,
            }
        })
        .collect();
    let credits = crate::credits::API_SOURCES
        .iter()
        .map(|(api, sources)| {
            let c = crate::credits::credits(api, sources, &ledger, now);
            let balance = ledger
                .iter()
                .filter(|r| sources.contains(&r.source.as_str()))
                .filter_map(|r| {
                    let at = r.finished_at.unwrap_or(r.started_at);
                    Some((at.timestamp() as f64, r.credits_balance?))
                })
                .collect::<Vec<_>>();
            (c, balance)
        })
        .filter(|(c, _)| c.runs > 0)
        .map(|(c, mut balance)| {
            balance.sort_by(|a, b| a.0.total_cmp(&b.0));
            Credits {
                api: c.api.clone(),
                balance,
                per_day: c.per_day,
                days_left: c.days_left,
            }
        })
        .collect();
    Ok(Report {
        lake: lake.url(),
        generated_at: now.format("%Y-%m-%d %H:%M UTC").to_string(),
        runs,
        freshness,
        credits,
        tops,
        salaries,
    })
}

/// The ten values of `column` most rows of `view` have, with their counts.
fn top(view: &str, column: &str) -> String {
    format!(
        "SELECT coalesce(CAST({column} AS VARCHAR), '(none)') AS label, count(*) AS value \
         FROM {view} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
    )
}

fn bars(rows: &[Value]) -> Vec<Bar> {
    rows.iter()
        .map(|r| Bar {
            label: r["label"].as_str().unwrap_or_default().to_string(),
            value: r["value"].as_f64().unwrap_or(0.0),
        })
        .collect()
}

/// Yearly salaries in the currency most jobs quote, in about 20 buckets up to its 95th
/// percentile (the last bucket holds everything above).
async fn salary_histogram(lake: &Lake, top: &Value) -> Result<Salaries> {
    let currency = top["salary_currency"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let p95 = top["p95"].as_f64().unwrap_or(0.0).max(1.0);
    let width = joblake_report::round_width(p95 / 20.0);
    let literal = joblake_views::literal(&currency);
    let sql = format!(
        "SELECT least(floor(salary_annual_from / {width}), floor({p95} / {width})) * {width} AS lo, \
         count(*) AS n FROM jobs WHERE salary_currency = {literal} \
         AND salary_annual_from IS NOT NULL GROUP BY 1 ORDER BY 1"
    );
    let results = joblake_views::status::query_views(lake, vec![sql]).await?;
    let buckets = rows(&results[0])?;
    let (quoted, not_per_year) = joblake_views::status::salary_counts(lake).await?;
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    Ok(Salaries {
        currency,
        buckets: buckets.iter().map(|r| (f(&r["lo"]), f(&r["n"]))).collect(),
        quoted: quoted as f64,
        not_per_year: not_per_year as f64,
    })
}

/// Query results as JSON objects, one per row.
fn rows(batches: &[RecordBatch]) -> Result<Vec<Value>> {
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        w.write(b)?;
    }
    w.finish()?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_slice(&bytes)? {
        Value::Array(rows) => Ok(rows),
        _ => Ok(Vec::new()),
    }
}
