//! What commands print: one summary line (or `--json`) per run, query results, what became
//! of the latest tables.

use joblake_sync::SourceSummary;
use joblake_views::changes::ChangesReport;
use joblake_views::company_links::LinksReport;
use joblake_views::latest::LatestReport;
use joblake_views::lifecycle::LifecycleReport;
use joblake_writer::RunStatus;

use crate::args::{Cli, Format};

/// The line saying what became of a table's latest table.
pub fn latest_line(latest: &LatestReport) -> String {
    let how = if latest.rewritten {
        "written again from the history".to_string()
    } else {
        format!("{} rows added, {} replaced", latest.added, latest.replaced)
    };
    format!(
        "{}_latest: the latest version of {} ids, exact for {} version {} ({how})",
        latest.table, latest.ids, latest.table, latest.history_version
    )
}

pub fn changes_line(changes: &ChangesReport) -> String {
    format!(
        "{}_changes: {} changes, exact for {} version {} (written again from the history)",
        changes.table, changes.added, changes.table, changes.history_version
    )
}

pub fn lifecycle_line(l: &LifecycleReport) -> String {
    format!(
        "{}_lifecycle: {} ids, exact for {} version {} (written again from the history)",
        l.table, l.ids, l.table, l.history_version
    )
}

pub fn links_line(l: &LinksReport) -> String {
    format!(
        "{}: {} jobs' keys and links, exact for jobs version {} (written again)",
        l.table, l.ids, l.history_version
    )
}

#[allow(clippy::too_many_arguments)]
pub fn run_summary(
    cli: &Cli,
    command: &str,
    run_id: &str,
    summaries: &[SourceSummary],
    skipped: &[String],
    views: &anyhow::Result<bool>,
    db: &std::path::Path,
    seconds: f64,
) {
    // What went wrong goes to stderr even with --json, so a scheduler's log shows it.
    for s in summaries {
        if let Some(m) = &s.message
            && s.status != RunStatus::Succeeded
        {
            eprintln!("{}: {}: {m}", s.source, s.status.as_str());
        }
        for w in &s.warnings {
            eprintln!("warning: {w}");
        }
    }
    if cli.json {
        let out = serde_json::json!({
            "command": command,
            "run_id": run_id,
            "sources": summaries,
            "skipped": skipped,
            "views": match views {
                Ok(true) => serde_json::json!({"updated": db.display().to_string()}),
                Ok(false) => serde_json::json!({"unchanged": db.display().to_string()}),
                Err(e) => serde_json::json!({"error": format!("{e:#}")}),
            },
            "seconds": seconds,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("summary serialises")
        );
        return;
    }
    if cli.quiet {
        return;
    }
    let parts: Vec<String> = summaries
        .iter()
        .map(|s| {
            let mut p = format!(
                "{} {} {} rows in {} pages",
                s.source,
                s.status.as_str(),
                s.rows,
                s.pages
            );
            if s.recovered_rows > 0 {
                p.push_str(&format!(" (+{} recovered)", s.recovered_rows));
            }
            if s.retries > 0 {
                p.push_str(&format!(", {} retries", s.retries));
            }
            if let Some(c) = s.profiles
                && c.not_found > 0
            {
                p.push_str(&format!(", {} without a profile (404)", c.not_found));
            }
            if let Some(w) = s.windows {
                p.push_str(&format!(", windows {} done, {} left", w.done, w.left));
            }
            if let Some(b) = s.credits_balance {
                p.push_str(&format!(", credits left {b}"));
            }
            p
        })
        .collect();
    let views = match views {
        Ok(true) => "views updated",
        Ok(false) => "nothing new, views unchanged",
        Err(_) => "views NOT updated",
    };
    println!(
        "{command} {run_id}: {} · {views} · {seconds:.1}s",
        parts.join(" · ")
    );
}

pub fn batches(batches: &[arrow::array::RecordBatch], format: Format) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        Format::Csv => {
            let mut w = arrow::csv::Writer::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(out)?;
        }
    }
    Ok(())
}
