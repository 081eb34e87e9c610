//! `joblake compact`: each partition's files merged into one, every row version kept, then
//! the latest tables and the views.

use std::time::Instant;

use joblake_views::{catalog, changes, company_links, latest, lifecycle, session};

use crate::args::{Cli, SourceArg};
use crate::outcome::{CmdResult, Failure, Outcome};
use crate::output;
use crate::run::open_for_writing;

/// `joblake compact`: under the lake lock, each table's partitions merged, then the views.
pub async fn compact(cli: &Cli, source: &[SourceArg]) -> CmdResult {
    let started = Instant::now();
    // What a killed run left is committed first: the merge would otherwise take its
    // published files away, and the next refresh write them again.
    let (lake, lock) = open_for_writing(cli, "compact").await?;
    // Both feeds by default, and the company profiles once there are some.
    let tables = if source.is_empty() {
        match catalog::tables_in(&lake).await {
            Ok(t) => t,
            Err(e) => {
                lock.release().await;
                return Err(e.into());
            }
        }
    } else {
        SourceArg::tables(source)
    };
    let run_id = crate::run::run_id_in(&lake).await;
    // Each changes table made exact for the history the compaction starts from (what the
    // recovery just committed), so that it is carried over the compaction, which moves rows
    // and changes none, rather than written again.
    let mut before = Vec::new();
    for &table in &tables {
        if !changes::kept_for(table) {
            continue;
        }
        if let Err(e) = changes::keep_exact(&lake, table).await {
            tracing::warn!(%table, error = %format!("{e:#}"), "the changes table could not be kept exact");
        }
        // And the lifecycle table after it, whose rows count the changes: merged into (never
        // written again here, as the carry-over below tidies it anyway).
        if table == lifecycle::TABLE
            && let Err(e) = lifecycle::keep_exact(&lake, f64::INFINITY).await
        {
            tracing::warn!(error = %format!("{e:#}"), "the lifecycle table could not be kept exact");
        }
        before.push((
            table,
            latest::history_now(&lake, table).await.ok().flatten(),
        ));
    }
    // The job links made exact for the same histories, to be carried over too.
    if let Err(e) = company_links::keep_exact(&lake, f64::INFINITY, None).await {
        tracing::warn!(error = %format!("{e:#}"), "the job_company_keys table could not be kept exact");
    }
    let mut reports = Vec::new();
    let mut failure = None;
    for &table in &tables {
        match joblake_writer::compact_table(
            &lake,
            &lock,
            table.name(),
            joblake_schema::arrow_schema(table),
            &run_id,
            &joblake_writer::WriterOptions::default(),
        )
        .await
        {
            Ok(r) => reports.push(r),
            Err(e) => {
                failure =
                    Some(anyhow::Error::new(e).context(format!("{table}: compaction stopped")));
                break;
            }
        }
    }
    let mut written = Vec::new();
    if failure.is_none() {
        for &table in &tables {
            match latest::rewrite(&lake, table).await {
                Ok(Some(l)) => written.push(l),
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e.context(format!(
                        "{table}: the merged files are in place, but its latest table could \
                         not be written (the views read the history meanwhile)"
                    )));
                    break;
                }
            }
        }
    }
    if failure.is_none() {
        for (table, before) in &before {
            if let Err(e) = changes::carry_over(&lake, *table, before.as_ref()).await {
                tracing::warn!(%table, error = %format!("{e:#}"), "the changes table could not be kept exact (its view works them out meanwhile)");
            } else if let Err(e) = changes::compact_files(&lake, *table).await {
                tracing::warn!(%table, error = %format!("{e:#}"), "the changes table's files could not be merged");
            }
        }
        // Carried over too, its files merged into one a day without the rows merges deleted.
        if let Some((_, before)) = before.iter().find(|(t, _)| *t == lifecycle::TABLE)
            && let Err(e) = lifecycle::carry_over(&lake, before.as_ref()).await
        {
            tracing::warn!(error = %format!("{e:#}"), "the lifecycle table could not be kept exact (its view works it out meanwhile)");
        }
        // Carried over (the jobs' rows moved, none changed), then its files merged.
        let jobs_before = before
            .iter()
            .find(|(t, _)| *t == joblake_schema::Table::Jobs)
            .and_then(|(_, b)| b.as_ref());
        if let Err(e) = company_links::carry_over(&lake, jobs_before).await {
            tracing::warn!(error = %format!("{e:#}"), "the job_company_keys table could not be kept exact (job_companies works the links out meanwhile)");
        }
    }
    let db = session::duckdb_path(&lake, cli.duckdb.as_deref());
    let views = session::rebuild_views(&lake, &db).await;
    lock.release().await;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run_id": run_id,
                "tables": reports,
                "latest": written,
                "seconds": started.elapsed().as_secs_f64(),
            }))
            .expect("the report serialises")
        );
    } else if !cli.quiet {
        for r in &reports {
            println!(
                "{}: {} partitions compacted, {} files -> {}, {} rows kept, {} -> {} bytes{}",
                r.table,
                r.partitions,
                r.files_before,
                r.files_after,
                r.rows,
                r.bytes_before,
                r.bytes_after,
                if r.skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; left as they are (their files disagree on a column's type): {}",
                        r.skipped.join(", ")
                    )
                }
            );
        }
    }
    if !cli.json && !cli.quiet {
        for l in &written {
            println!("{}", output::latest_line(l));
        }
    }
    if let Some(e) = failure {
        return Err(Failure::Failed(e));
    }
    views.map_err(Failure::Failed)?;
    Ok(Outcome::Done)
}
