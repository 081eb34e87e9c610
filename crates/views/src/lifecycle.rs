//! The lifecycle table: `<lake>/jobs_lifecycle/`, a Delta table of one row per job id holding
//! the rows of the `jobs_lifecycle` view (schemas/jobs_lifecycle.md), exact for one version
//! of the jobs history (its [`LifecycleState`], in the log's domain metadata), so that the
//! view reads rows rather than group every version, and any Delta reader gets the same rows.
//!
//! The rows are `queries/jobs_lifecycle.sql` over the history and its changes (the changes
//! table, kept exact first):
//! - a refresh merges its runs in ([`keep_exact`]): that SQL over the runs' rows and changes
//!   alone, added to the rows the table holds for their ids, which deletion vectors then
//!   delete; one commit, at a cost in proportion to the run but for one pass over the table's
//!   ids;
//! - once merges added or deleted a share of its rows (`[views] latest_after`, as for the
//!   latest tables), on `compact`, and whenever a merge cannot be sure of its rows (no table
//!   yet, a history log made again, files gone from the history, rows of a run no later than
//!   the last it took in), it is written again from the whole history and changes table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Result;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use joblake_schema::Table;
use joblake_writer::delta::{Commit, DataFile, DeltaLog, LiveFile, Operation};
use joblake_writer::{Lake, crash_point, layout};
use serde::{Deserialize, Serialize};

use crate::latest::{self, History, list};
use crate::{catalog, changes, literal};

const SQL: &str = include_str!("../../../queries/jobs_lifecycle.sql");

/// DuckDB's memory while it works out the lifecycle (on one thread): a run's rows, or, when
/// the table is written again, a grouping of every version by id, which it spills beyond
/// this. Writing again the lifecycle of 5 M versions: 16.6 s and 236 MB peak at 128 MB,
/// 15.9 s and 369 MB at 256 MB (BENCHMARKS.md); in MB. Should DuckDB run out all the same, the
/// work runs once more within [`changes::MORE`] times as much (a run of half the table's ids,
/// 188 k jobs onto 395 k, ran out of 128 MB).
const MEMORY_MB: u64 = 128;

/// The history table whose ids the lifecycle table holds.
pub const TABLE: Table = Table::Jobs;

/// Where the lifecycle table lies in the lake.
pub fn table_name() -> String {
    layout::lifecycle_table(TABLE.name())
}

/// The lifecycle SQL (`queries/jobs_lifecycle.sql`) over `history`, the jobs' versions, and
/// `changes`, their changes: each a table or a parenthesised SELECT.
pub fn select(history: &str, changes: &str) -> String {
    let values = BTreeMap::from([
        ("history".to_string(), history.to_string()),
        ("changes".to_string(), changes.to_string()),
    ]);
    catalog::fill(SQL, &values)
}

/// The rows the lifecycle SQL ([`select`]) gives over `history` when its versions are all of
/// run `run_id` (a first refresh), whose changes are each id's one `new`: one version and no
/// repost per id, the run first and last. Without the SQL's joins to the runs and the
/// changes, and an aggregate per id only for the ids fetched more than once
/// ([`changes::per_id_of_one_run`]): a fifth of the time (BENCHMARKS.md, "Ingest").
pub(crate) fn one_run_select(
    history: &str,
    run_id: &str,
    fetched_again: Option<&[String]>,
) -> String {
    let run = crate::literal(run_id);
    changes::per_id_of_one_run(
        history,
        fetched_again,
        |once| {
            format!(
                "SELECT id, _fetched_at AS first_fetched_at, _fetched_at AS last_fetched_at,\n\
                   {run} AS first_run_id, {run} AS last_run_id,\n\
                   post_date AS first_post_date, post_date AS last_post_date,\n\
                   1::BIGINT AS versions, 0::BIGINT AS reposts, 1::BIGINT AS fetches,\n\
                   valid_through, dt AS first_fetched_on, dt AS last_fetched_on,\n\
                   greatest(date_diff('day', coalesce(post_date, dt), dt), 0) AS days_listed\n\
                 FROM {once}"
            )
        },
        |again| {
            format!(
                "SELECT id, min(_fetched_at) AS first_fetched_at, max(_fetched_at) AS last_fetched_at,\n\
                   {run} AS first_run_id, {run} AS last_run_id,\n\
                   min(post_date) AS first_post_date, max(post_date) AS last_post_date,\n\
                   1::BIGINT AS versions, 0::BIGINT AS reposts, count(*) AS fetches,\n\
                   arg_max(valid_through, {last}) AS valid_through,\n\
                   min(dt) AS first_fetched_on, max(dt) AS last_fetched_on,\n\
                   greatest(date_diff('day', coalesce(min(post_date), min(dt)), max(dt)), 0)\n\
                     AS days_listed\n\
                 FROM {again}\n\
                 GROUP BY id",
                last = changes::LAST_IN_RUN,
            )
        },
    )
}

/// The lifecycle table's domain metadata: the version of the history it is exact for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleState {
    /// The history table's version.
    pub history_version: u64,
    /// When that version was committed (milliseconds since 1970).
    pub history_committed_at: i64,
    /// The latest `_run_id` among the history's rows at that version: a merge takes in only
    /// rows of later runs.
    pub last_run_id: String,
    /// Rows merges added or deleted since the table was last written again.
    pub merged: u64,
}

/// The lifecycle table as its newest version holds it.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its Delta version.
    pub version: u64,
    /// The history version it is exact for.
    pub state: LifecycleState,
    /// Its files, with the rows their deletion vectors delete.
    pub files: Vec<DataFile>,
}

impl Kept {
    /// Whether its rows are exactly the lifecycle of `history`.
    pub fn exact_for(&self, history: &History) -> bool {
        self.state.history_version == history.version
            && self.state.history_committed_at == history.committed_at
    }

    /// Rows it holds: one per id.
    pub fn ids(&self) -> u64 {
        latest::live_rows(&self.files)
    }

    /// Whether writing it again is due rather than merging (as for a latest table).
    fn rewrite_due(&self, after: f64) -> bool {
        latest::rewrite_due(after, self.state.merged, self.ids())
    }
}

/// What keeping the lifecycle table exact did: as for a latest table (`replaced`: the rows
/// of ids a run brought again; `rewritten`: written again whole).
pub type LifecycleReport = latest::LatestReport;

/// The lifecycle table, or `None` while there is none.
pub async fn read(lake: &Lake) -> Result<Option<Kept>> {
    match load(lake).await? {
        Some((_, Some(unread))) => Err(anyhow::Error::msg(unread)),
        kept => Ok(kept.map(|(k, _)| k)),
    }
}

/// The lifecycle table (`None` while there is none), and why its state cannot be read when it
/// cannot: the table is then exact for no history version, its files still listed (writing it
/// again removes them).
async fn load(lake: &Lake) -> Result<Option<(Kept, Option<String>)>> {
    let Some((version, state, files)) =
        latest::newest_per_id::<LifecycleState>(lake, &table_name()).await?
    else {
        return Ok(None);
    };
    let (state, unread) = match state {
        Ok(state) => (state, None),
        Err(why) => (
            LifecycleState {
                history_version: u64::MAX,
                history_committed_at: 0,
                last_run_id: String::new(),
                merged: 0,
            },
            Some(why),
        ),
    };
    let kept = Kept {
        version,
        state,
        files,
    };
    Ok(Some((kept, unread)))
}

/// The `jobs_lifecycle` view's SELECT over `history` (the jobs history the views read), and
/// the statement that fills the DuckDB table of the positions it skips (empty when none):
/// the lifecycle table's rows when it is exact for `history`, otherwise the lifecycle SQL
/// over `jobs_history` and `jobs_changes`.
pub async fn view_select(lake: &Lake, history: Option<&History>) -> (String, String) {
    let kept = match history {
        Some(history) => read(lake)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "the lifecycle table cannot be read; the view works it out");
                None
            })
            .filter(|k| k.exact_for(history) && !k.files.is_empty()),
        None => None,
    };
    match kept {
        // Its files hold every column but `dt`, the partition of their directories.
        Some(kept) => latest::without_deleted(
            lake,
            &format!("_joblake_deleted_{}", table_name()),
            &kept.files,
            false,
        ),
        None => (
            String::new(),
            select(
                &crate::ident(&format!("{}_history", TABLE.name())),
                &crate::ident(&changes::table_name(TABLE)),
            ),
        ),
    }
}

/// Makes the lifecycle table exact for the jobs history's newest version: merging in the
/// runs the history gained since, or writing it again (see the module's doc). `None` when it
/// already was, when there is no history, or while the changes table is not exact for the
/// same version (its view works the lifecycle out meanwhile).
pub async fn keep_exact(lake: &Lake, rewrite_after: f64) -> Result<Option<LifecycleReport>> {
    let Some((history, changes)) = inputs(lake).await? else {
        return Ok(None);
    };
    let current = match load(lake).await? {
        Some((current, Some(why))) => {
            tracing::warn!(error = %why, "the lifecycle table cannot be read; writing it again");
            return rewrite_at(lake, &history, &changes, Some(current)).await;
        }
        current => current.map(|(c, _)| c),
    };
    let Some(current) = current else {
        return rewrite_at(lake, &history, &changes, None).await;
    };
    if current.exact_for(&history) {
        return Ok(None);
    }
    if current.rewrite_due(rewrite_after) || current.files.is_empty() {
        return rewrite_at(lake, &history, &changes, Some(current)).await;
    }
    let then = (
        current.state.history_version,
        current.state.history_committed_at,
    );
    let Some(before) = changes::history_then(lake, TABLE, then, &history).await? else {
        return rewrite_at(lake, &history, &changes, Some(current)).await;
    };
    let then: BTreeSet<&str> = before.iter().map(|f| f.path.as_str()).collect();
    let now: BTreeSet<&str> = history.files.iter().map(|f| f.path.as_str()).collect();
    // Files gone from the history (a compaction not carried over): its rows moved.
    if !then.is_subset(&now) {
        return rewrite_at(lake, &history, &changes, Some(current)).await;
    }
    let new: Vec<LiveFile> = history
        .files
        .iter()
        .filter(|f| !then.contains(f.path.as_str()))
        .cloned()
        .collect();
    match merge(lake, &history, &changes, &current, &new).await? {
        Some(report) => Ok(Some(report)),
        None => rewrite_at(lake, &history, &changes, Some(current)).await,
    }
}

/// Writes the lifecycle table again from the history's newest version (`compact` does).
pub async fn rewrite(lake: &Lake) -> Result<Option<LifecycleReport>> {
    let Some((history, changes)) = inputs(lake).await? else {
        return Ok(None);
    };
    let current = load(lake).await?.map(|(c, _)| c);
    rewrite_at(lake, &history, &changes, current).await
}

/// After a compaction of the jobs history (which moves rows and changes none), declares the
/// lifecycle table exact for the compacted history when it was for `before`, the history the
/// compaction started from, and writes its rows again as one file a day without the rows its
/// deletion vectors delete (its own rows: not the history's, a tenth of the reading); one
/// commit with no data change. Otherwise writes it again from the history.
pub async fn carry_over(lake: &Lake, before: Option<&History>) -> Result<Option<LifecycleReport>> {
    let Some((history, _)) = inputs(lake).await? else {
        return Ok(None);
    };
    let current = match (before, read(lake).await.ok().flatten()) {
        (Some(before), Some(current)) if current.exact_for(before) && !current.files.is_empty() => {
            current
        }
        _ => return rewrite(lake).await,
    };
    let name = table_name();
    let days: BTreeSet<&str> = current
        .files
        .iter()
        .filter_map(|f| f.path.split('/').find(|p| p.starts_with("dt=")))
        .collect();
    let tidy =
        days.len() == current.files.len() && current.files.iter().all(|f| f.deleted.is_empty());
    let state = Some(serde_json::to_string(&LifecycleState {
        history_version: history.version,
        history_committed_at: history.committed_at,
        merged: 0,
        ..current.state.clone()
    })?);
    if tidy && current.exact_for(&history) {
        return Ok(None);
    }
    if tidy {
        // One file a day and nothing deleted: only the state moves on.
        let ids = current.ids();
        let commit = Commit {
            state,
            operation: Operation::Optimize,
            ..Commit::default()
        };
        return published(lake, commit, Some(&current), &history, ids).await;
    }
    let (setup, rows) = latest::without_deleted(
        lake,
        &format!("_joblake_deleted_{name}"),
        &current.files,
        false,
    );
    let adds = changes::write_to(
        lake,
        &name,
        MEMORY_MB,
        setup,
        format!("SELECT *, last_fetched_on AS dt FROM (\n{rows}\n)"),
    )
    .await?;
    let ids = adds.iter().map(|a| a.rows).sum();
    let commit = Commit {
        adds,
        removes: current.files.iter().map(|f| f.path.clone()).collect(),
        state,
        operation: Operation::Optimize,
        ..Commit::default()
    };
    published(lake, commit, Some(&current), &history, ids).await
}

/// The history's newest version and the changes table exact for it, when both are there.
async fn inputs(lake: &Lake) -> Result<Option<(History, changes::Kept)>> {
    let Some(history) = latest::history_now(lake, TABLE).await? else {
        return Ok(None);
    };
    match changes::read(lake, TABLE).await {
        Ok(Some(changes)) if changes.exact_for(&history) => Ok(Some((history, changes))),
        _ => {
            tracing::info!(
                "the changes table is not exact for the history; the lifecycle table waits for it"
            );
            Ok(None)
        }
    }
}

/// The changes table's rows as the lifecycle SQL reads them (`id`, `change`), of runs after
/// `after` (`""`: every run), out of its partitions `days` (`None`: all of them).
fn changes_source(
    lake: &Lake,
    changes: &changes::Kept,
    after: &str,
    days: Option<&BTreeSet<&str>>,
) -> String {
    let files: Vec<&String> = changes
        .files
        .iter()
        .filter(|f| days.is_none_or(|d| d.contains(f.dt.as_str())))
        .map(|f| &f.path)
        .collect();
    if files.is_empty() {
        return "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS change WHERE false)".into();
    }
    format!(
        "(SELECT id, change FROM read_parquet([{}], hive_partitioning = false) WHERE _run_id > {})",
        list(lake, files),
        literal(after)
    )
}

/// Merges the history's files `new` (rows of runs after the last the table took in) into
/// `current`, in one commit: the lifecycle SQL over their rows and changes alone, added to
/// each id's row in the table, which a deletion vector deletes. `None` when it cannot be sure
/// of the result (a row of a run no later than the table's last, an id with two rows): the
/// table is then written again.
async fn merge(
    lake: &Lake,
    history: &History,
    changes: &changes::Kept,
    current: &Kept,
    new: &[LiveFile],
) -> Result<Option<LifecycleReport>> {
    let last = current.state.last_run_id.clone();
    let name = table_name();
    let mut commit = Commit {
        operation: Operation::Merge,
        ..Commit::default()
    };
    let (mut added, mut replaced) = (0, 0);
    let mut last_run_id = last.clone();
    if !new.is_empty() {
        let setup = [
            format!(
                "CREATE TEMP TABLE fresh AS\n\
                 SELECT id, _run_id, _page, _row, _fetched_at, post_date, valid_through, dt\n\
                 FROM read_parquet([{}], hive_partitioning = true, union_by_name = true);",
                list(lake, new.iter().map(|f| &f.path))
            ),
            format!(
                "CREATE TEMP TABLE run_changes AS SELECT * FROM {} WHERE id IN (SELECT id FROM fresh);",
                // A change lies in the partition of the day its version was fetched: the
                // runs' days, not every day's changes.
                changes_source(
                    lake,
                    changes,
                    &last,
                    Some(&new.iter().map(|f| f.dt.as_str()).collect())
                )
            ),
            format!(
                "CREATE TEMP TABLE old AS\n\
                 SELECT file_index::BIGINT AS _fi, file_row_number::BIGINT AS _fr,\n\
                   * EXCLUDE (file_row_number)\n\
                 FROM read_parquet([{}], union_by_name = true, hive_partitioning = false,\n\
                   file_row_number = true)\n\
                 WHERE id IN (SELECT id FROM fresh);",
                list(lake, current.files.iter().map(|f| &f.path))
            ),
        ];
        let rows = merged_rows(&select("fresh", "run_changes"));
        let files = current.files.clone();
        let dir = lake.reader_path(&name);
        let memory = changes::and_more(MEMORY_MB);
        let done = changes::within_memory(lake, &name, &memory, move |work, at| -> Result<Option<_>> {
            work.execute(&setup[0])?;
            let runs = work.query(
                "SELECT coalesce(min(_run_id), ''), coalesce(max(_run_id), '') FROM fresh",
            )?;
            let first = latest::strings(&runs, 0)?.pop().unwrap_or_default();
            let newest = latest::strings(&runs, 1)?.pop().unwrap_or_default();
            if !first.is_empty() && first <= last {
                tracing::info!(run = %first, last = %last, "rows of a run no later than the lifecycle table's last; writing it again");
                return Ok(None);
            }
            work.execute(&setup[1])?;
            work.execute(&setup[2])?;
            // The table's rows for the run's ids, but those deletion vectors delete already.
            let Some(live) = latest::live_old_rows(work, &files)? else {
                tracing::warn!("the lifecycle table holds an id twice; writing it again");
                return Ok(None);
            };
            let written = work.copy_partitioned(&rows, &at.dir, &at.prefix, None)?;
            Ok(Some((written, newest, live)))
        })
        .await?;
        let Some((written, newest, live)) = done else {
            return Ok(None);
        };
        commit.adds = changes::to_adds_of(&name, &dir, written)?;
        added = commit.adds.iter().map(|a| a.rows).sum();
        last_run_id = last_run_id.max(newest);
        let deletes = latest::per_file(current.files.len(), live)?;
        replaced += latest::delete_rows(&mut commit, &current.files, deletes);
    }
    commit.state = Some(serde_json::to_string(&LifecycleState {
        history_version: history.version,
        history_committed_at: history.committed_at,
        last_run_id,
        merged: current.state.merged + added + replaced,
    })?);
    let version = commit_lifecycle(lake, commit).await?;
    Ok(Some(LifecycleReport {
        table: TABLE.name().to_string(),
        version,
        history_version: history.version,
        ids: current.ids() + added - replaced,
        added,
        replaced,
        rewritten: false,
    }))
}

/// The rows a merge adds, with their `dt`: `run`, the lifecycle SQL over the run alone, added
/// to `old`, the table's rows for the same ids (when it has one): first and last taken across
/// both, counts summed, `valid_through` the run's (its rows are the later ones), and the days
/// listed worked out again as the lifecycle SQL does.
fn merged_rows(run: &str) -> String {
    format!(
        "SELECT *, greatest(date_diff('day', coalesce(first_post_date, first_fetched_on),\n\
                                     last_fetched_on), 0) AS days_listed,\n\
                last_fetched_on AS dt\n\
         FROM (\n\
           SELECT r.id,\n\
             least(o.first_fetched_at, r.first_fetched_at) AS first_fetched_at,\n\
             greatest(o.last_fetched_at, r.last_fetched_at) AS last_fetched_at,\n\
             least(o.first_run_id, r.first_run_id) AS first_run_id,\n\
             greatest(o.last_run_id, r.last_run_id) AS last_run_id,\n\
             least(o.first_post_date, r.first_post_date) AS first_post_date,\n\
             greatest(o.last_post_date, r.last_post_date) AS last_post_date,\n\
             coalesce(o.versions, 0) + r.versions AS versions,\n\
             coalesce(o.reposts, 0) + r.reposts AS reposts,\n\
             coalesce(o.fetches, 0) + r.fetches AS fetches,\n\
             r.valid_through,\n\
             least(o.first_fetched_on, r.first_fetched_on) AS first_fetched_on,\n\
             greatest(o.last_fetched_on, r.last_fetched_on) AS last_fetched_on\n\
           FROM (\n{run}\n) AS r LEFT JOIN old AS o ON o.id = r.id\n\
         )"
    )
}

/// Writes the lifecycle table again from the history's version `history` and `changes`, its
/// changes table exact for it, in one commit that removes every file `current` had; then
/// deletes the files no reader needs any more (those of the version before are kept, for
/// DuckDB sessions still holding views of them).
async fn rewrite_at(
    lake: &Lake,
    history: &History,
    changes: &changes::Kept,
    current: Option<Kept>,
) -> Result<Option<LifecycleReport>> {
    if history.files.is_empty() {
        return Ok(None);
    }
    let versions = format!(
        "read_parquet([{}], hive_partitioning = true, union_by_name = true)",
        list(lake, history.files.iter().map(|f| &f.path))
    );
    let name = table_name();
    let (first_run, last_run) = changes::run_ids(lake, &versions).await?;
    let one_run = first_run == last_run;
    let rows = match one_run {
        true => one_run_select(
            &versions,
            &last_run,
            latest::fetched_again(lake, &history.files)
                .await?
                .as_deref(),
        ),
        false => select(&versions, &changes_source(lake, changes, "", None)),
    };
    let rows = format!("SELECT *, last_fetched_on AS dt FROM (\n{rows}\n)");
    let adds = match one_run {
        true => changes::write_one_run(lake, &name, MEMORY_MB, history, rows).await?,
        false => changes::write_to(lake, &name, MEMORY_MB, String::new(), rows).await?,
    };
    let ids = adds.iter().map(|a| a.rows).sum();
    let commit = Commit {
        adds,
        removes: current
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.clone()))
            .collect(),
        state: Some(serde_json::to_string(&LifecycleState {
            history_version: history.version,
            history_committed_at: history.committed_at,
            last_run_id: changes.state.last_run_id.clone(),
            merged: 0,
        })?),
        operation: Operation::Write,
        ..Commit::default()
    };
    published(lake, commit, current.as_ref(), history, ids).await
}

/// Commits `commit`, which writes the lifecycle table again (`ids` rows), then deletes the
/// files no reader needs any more: all but the new ones, those of the version before
/// (`previous`), which DuckDB sessions still holding views of it read, and the deletion
/// vectors the table still uses.
async fn published(
    lake: &Lake,
    commit: Commit,
    previous: Option<&Kept>,
    history: &History,
    ids: u64,
) -> Result<Option<LifecycleReport>> {
    let name = table_name();
    let mut keep: BTreeSet<String> = commit.adds.iter().map(|a| a.path.clone()).collect();
    keep.extend(
        previous
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.clone())),
    );
    let version = commit_lifecycle(lake, commit).await?;
    latest::delete_unkept_per_id(lake, &name, keep).await?;
    Ok(Some(LifecycleReport {
        table: TABLE.name().to_string(),
        version,
        history_version: history.version,
        ids,
        added: ids,
        replaced: 0,
        rewritten: true,
    }))
}

/// Commits `commit` to the lifecycle table (creating it when it has no log).
async fn commit_lifecycle(lake: &Lake, commit: Commit) -> Result<u64> {
    let log = DeltaLog::derived_per_id(lake, &table_name())?;
    crash_point("lifecycle:before-commit");
    let version = log.commit(schema(), commit).await?;
    crash_point("lifecycle:after-commit");
    Ok(version)
}

/// The Delta schema of the lifecycle table: the view's columns and the `dt` partition (the
/// day each id was last fetched).
fn schema() -> SchemaRef {
    let text = || DataType::Utf8;
    let at = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let fields = vec![
        Field::new("id", text(), true),
        Field::new("first_fetched_at", at(), true),
        Field::new("last_fetched_at", at(), true),
        Field::new("first_run_id", text(), true),
        Field::new("last_run_id", text(), true),
        Field::new("first_post_date", DataType::Date32, true),
        Field::new("last_post_date", DataType::Date32, true),
        Field::new("versions", DataType::Int64, true),
        Field::new("reposts", DataType::Int64, true),
        Field::new("fetches", DataType::Int64, true),
        Field::new("valid_through", DataType::Date32, true),
        Field::new("first_fetched_on", DataType::Date32, true),
        Field::new("last_fetched_on", DataType::Date32, true),
        Field::new("days_listed", DataType::Int64, true),
        Field::new("dt", DataType::Date32, true),
    ];
    Arc::new(Schema::new(fields))
}
