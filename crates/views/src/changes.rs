//! The changes tables: `<lake>/<table>_changes/`, a Delta table beside each feed's history
//! holding the rows of its changes view (`jobs_changes`, `career_sites_changes`;
//! schemas/changes.md), exact for one version of the history (its [`ChangesState`], in the
//! log's domain metadata), so that the views read rows rather than run two windows over every
//! version, and any Delta reader gets the same rows.
//!
//! The rows are `queries/<table>_changes.sql`, the view's own SQL, over different inputs:
//! - a refresh appends its runs' changes ([`keep_exact`]): that SQL over the runs' rows beside
//!   each of their ids' last version before them, of which it keeps the runs' rows; one commit,
//!   at a cost in proportion to the run but for one pass over the history's ids;
//! - a compaction moves rows without changing any, so a table exact before it is declared
//!   exact for the compacted history without a row written ([`carry_over`]), and then each
//!   day's files of the table itself are merged into one ([`compact_files`]);
//! - anything else (no table yet, a history log that no longer has the version it was exact
//!   for, files removed from the history, rows of a run no later than the last it took in)
//!   writes it again from the whole history.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use joblake_schema::Table;
use joblake_writer::delta::{AddFile, Commit, DeltaLog, LiveFile, Operation};
use joblake_writer::{Lake, crash_point, layout};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, LATEST_FIRST};
use crate::latest::{self, History, duck, list};
use crate::literal;

const JOBS_SQL: &str = include_str!("../../../queries/jobs_changes.sql");
const CAREER_SITES_SQL: &str = include_str!("../../../queries/career_sites_changes.sql");

/// DuckDB's memory while it works out changes (on one thread): whole rows of a run, or, when
/// the table is written again, two windows over every version's column hashes, which it
/// spills beyond this. Writing again the changes of 5 M versions: 58 s and 369 MB peak at
/// 256 MB, 44 s and 613 MB at 512 MB, 72 s and 244 MB at 128 MB (BENCHMARKS.md).
const MEMORY_MB: u64 = 256;

/// Where table `table`'s changes table lies in the lake.
pub fn table_name(table: Table) -> String {
    layout::changes_table(table.name())
}

/// `queries/<table>_changes.sql`, or `None` for a table without changes (company profiles).
fn template(table: Table) -> Option<&'static str> {
    match table {
        Table::Jobs => Some(JOBS_SQL),
        Table::CareerSites => Some(CAREER_SITES_SQL),
        Table::Companies => None,
    }
}

/// Whether `table` has a changes view, and so a changes table.
pub fn kept_for(table: Table) -> bool {
    template(table).is_some()
}

/// The changes SQL of `table` (`queries/<table>_changes.sql`) over `versions`: a table, or a
/// parenthesised SELECT, of its history's columns and `dt`. Its rows end with `dt`, the day
/// each version was fetched. `None` for a table without changes (company profiles).
pub fn select(table: Table, versions: &str) -> Option<String> {
    let template = template(table)?;
    let mut values = catalog::change_columns(table);
    values.insert("versions".into(), versions.to_string());
    Some(catalog::fill(template, &values))
}

/// The rows the changes SQL ([`select`]) gives over `versions` when they are all of run
/// `run_id`: each id's last version in it (the largest page, then row), `new` (no version came
/// before), without comparing a column: five times quicker than the SQL, whose 22 column
/// hashes and `lag`s find nothing to compare in one run (BENCHMARKS.md, "Ingest"). An id
/// fetched once is its version as it is; only those fetched again are aggregated
/// ([`per_id_of_one_run`]). `None` for a table without changes.
fn one_run_select(
    table: Table,
    versions: &str,
    run_id: &str,
    fetched_again: Option<&[String]>,
) -> Option<String> {
    let run = literal(run_id);
    let (reposts, one_reposts) = match table {
        Table::Jobs => (
            format!(
                "arg_max_null(post_date, {LAST_IN_RUN}) AS post_date, NULL::DATE AS previous_post_date, "
            ),
            "post_date, NULL::DATE AS previous_post_date, ".to_string(),
        ),
        Table::CareerSites => (String::new(), String::new()),
        Table::Companies => return None,
    };
    let common =
        "'new' AS change, []::VARCHAR[] AS changed_columns, NULL::VARCHAR AS previous_run_id";
    Some(per_id_of_one_run(
        versions,
        fetched_again,
        |once| {
            format!(
                "SELECT id, {run} AS _run_id, _fetched_at, {common}, {one_reposts}dt\n\
                 FROM {once}"
            )
        },
        |again| {
            format!(
                "SELECT id, {run} AS _run_id, arg_max_null(_fetched_at, {LAST_IN_RUN}) AS _fetched_at,\n\
                   {common}, {reposts}arg_max_null(dt, {LAST_IN_RUN}) AS dt\n\
                 FROM {again}\n\
                 GROUP BY id"
            )
        },
    ))
}

/// One row per id of `versions`, a history of one run: `once` over the versions of the ids
/// fetched once (nearly all of a first refresh), each its own row with no aggregate, and
/// `again`, an aggregate per id, over those of the ids fetched more than once. The same rows
/// as `again` over every version, without a hash table of every id's aggregates (which spills
/// at a first refresh's memory): a first refresh of 1.3 M jobs writes its changes and its
/// lifecycle in half the time (BENCHMARKS.md, "Ingest").
///
/// `fetched_again` names those ids when [`latest::fetched_again`] could (none: no aggregate
/// at all); otherwise the SQL works them out. Either way the versions are split by an anti
/// and a semi join on them. A join on named ids costs less than a `list_contains` filter
/// on them, which compares each version's id with every one in turn: a first refresh's
/// lifecycle of 1.3 M jobs with 232 fetched again, stock DuckDB on this write's two threads,
/// 0.59–0.95 s against 0.96–1.20 s (BENCHMARKS.md, "The ids fetched again joined").
pub(crate) fn per_id_of_one_run(
    versions: &str,
    fetched_again: Option<&[String]>,
    once: impl Fn(&str) -> String,
    again: impl Fn(&str) -> String,
) -> String {
    // Named ids are joined as they are (materialised first, the write took 0.81–1.00 s); the
    // ids the SQL works out are worked out once for both joins.
    let fetched_again = match fetched_again {
        Some([]) => return once(versions),
        Some(ids) => format!("NOT MATERIALIZED {}", latest::id_values(ids)),
        None => format!("MATERIALIZED (SELECT id FROM {versions} GROUP BY id HAVING count(*) > 1)"),
    };
    format!(
        "WITH fetched_again(id) AS {fetched_again}\n\
         {}\n\
         UNION ALL BY NAME\n\
         {}",
        once(&format!(
            "(SELECT v.* FROM {versions} AS v ANTI JOIN fetched_again USING (id))"
        )),
        again(&format!(
            "(SELECT v.* FROM {versions} AS v SEMI JOIN fetched_again USING (id))"
        )),
    )
}

/// A version's place in its run as one number, the largest for the version fetched last.
pub(crate) const LAST_IN_RUN: &str = "(_page::BIGINT << 32 | _row::BIGINT)";

/// The first and the last `_run_id` among the rows of `versions` (`""` for none).
pub(crate) async fn run_ids(lake: &Lake, versions: &str) -> Result<(String, String)> {
    let runs = duck(
        lake,
        String::new(),
        vec![format!(
            "SELECT coalesce(min(_run_id), ''), coalesce(max(_run_id), '') FROM {versions}"
        )],
    )
    .await?;
    let first = latest::strings(&runs[0], 0)?.pop().unwrap_or_default();
    let last = latest::strings(&runs[0], 1)?.pop().unwrap_or_default();
    Ok((first, last))
}

/// DuckDB's memory for a derived table of a history of one run (a first refresh) on a local
/// lake: its ids' aggregates are numbers and dates, which spill well (a million jobs' changes
/// in 2 s within it, and the refresh's peak resident memory under 150 MB). On S3, DuckDB's
/// upload alone takes a block of 76.5 MiB, so those write within the table's usual memory.
const ONE_RUN_MEMORY_MB: u64 = 48;

/// DuckDB's threads and its row groups' rows for a derived table of a history of one run on a
/// local lake. It is written once the fetching is over, when the other core is free: on two
/// threads, in row groups of 30,720 rows, which keep DuckDB's memory where one thread writing
/// groups of 122,880 kept it (a first refresh's 1.32 M lifecycle rows within 48 MB, stock
/// DuckDB 1.5.6: 0.35 s and 88 MB peak against 0.73 s and 94 MB; BENCHMARKS.md, "A first
/// refresh's tail").
const ONE_RUN: Within<'static> = Within {
    memory_mb: &[ONE_RUN_MEMORY_MB],
    threads: 2,
    row_group: 30_720,
};

/// Writes the derived table at `<lake>/<name>/` from `select` over `history`, a history of
/// one run, as [`write_to`]: within [`ONE_RUN_MEMORY_MB`] on a local lake, and within `otherwise`
/// should DuckDB run out of it (a first run of millions of ids: the aggregates' hash table),
/// or on S3. A history of one day (as a first refresh's nearly always is) gives rows of that
/// day only: they go to one file as they come (see [`crate::Work::copy_partitioned`]).
/// Files of a write that ran out are no table's, and go with the next commit's clean-up.
pub(crate) async fn write_one_run(
    lake: &Lake,
    name: &str,
    otherwise: u64,
    history: &History,
    select: String,
) -> Result<Vec<AddFile>> {
    let day = one_day(history);
    if let joblake_writer::LakeLocation::Local(_) = lake.location() {
        let tight = write_rows_within(
            lake,
            name,
            ONE_RUN,
            String::new(),
            select.clone(),
            day.clone(),
        );
        match tight.await {
            Err(e) if crate::out_of_memory(&e) => {
                tracing::debug!(
                    memory_mb = otherwise,
                    "DuckDB ran out of memory; trying with more"
                );
            }
            written => return written,
        }
    }
    write_rows(lake, name, otherwise, String::new(), select, day).await
}

/// The day of every file of `history`, when they have one and the same.
pub(crate) fn one_day(history: &History) -> Option<String> {
    let first = history.files.first()?;
    history
        .files
        .iter()
        .all(|f| f.dt == first.dt && !f.dt.is_empty())
        .then(|| first.dt.clone())
}

/// A changes table's domain metadata: the version of its history table it is exact for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesState {
    /// The history table's version.
    pub history_version: u64,
    /// When that version was committed (milliseconds since 1970), so that a history log made
    /// again from its first version is not taken for the one it replaced.
    pub history_committed_at: i64,
    /// The latest `_run_id` among the history's rows at that version (`""` for none): an
    /// increment takes in only rows of later runs.
    pub last_run_id: String,
}

impl ChangesState {
    fn of(history: &History, last_run_id: String) -> ChangesState {
        ChangesState {
            history_version: history.version,
            history_committed_at: history.committed_at,
            last_run_id,
        }
    }
}

/// A changes table as its newest version holds it.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its Delta version.
    pub version: u64,
    /// The history version it is exact for.
    pub state: ChangesState,
    /// Its files.
    pub files: Vec<LiveFile>,
}

impl Kept {
    /// Whether its rows are exactly the changes of `history`.
    pub fn exact_for(&self, history: &History) -> bool {
        self.state.history_version == history.version
            && self.state.history_committed_at == history.committed_at
    }
}

/// What keeping a changes table exact did.
#[derive(Debug, Clone, Serialize)]
pub struct ChangesReport {
    /// The history table.
    pub table: String,
    /// The changes table's version committed.
    pub version: u64,
    /// The history's version it is exact for.
    pub history_version: u64,
    /// Change rows written.
    pub added: u64,
    /// Whether it was written again from the whole history.
    pub rewritten: bool,
}

/// The changes table of `table`, or `None` while it has none.
pub async fn read(lake: &Lake, table: Table) -> Result<Option<Kept>> {
    match load(lake, table).await? {
        Some((_, Some(unread))) => Err(anyhow::Error::msg(unread)),
        kept => Ok(kept.map(|(k, _)| k)),
    }
}

/// The changes table of `table` (`None` while it has none), and why its state cannot be read
/// when it cannot: the table is then exact for no history version, its files still listed
/// (writing it again removes them).
async fn load(lake: &Lake, table: Table) -> Result<Option<(Kept, Option<String>)>> {
    let log = DeltaLog::derived(lake, &table_name(table))?;
    let Some((snapshot, state)) = log.newest_state::<ChangesState>().await? else {
        return Ok(None);
    };
    let (state, unread) = match state {
        Ok(state) => (state, None),
        Err(why) => (
            ChangesState {
                history_version: u64::MAX,
                history_committed_at: 0,
                last_run_id: String::new(),
            },
            Some(why),
        ),
    };
    let kept = Kept {
        version: snapshot.version(),
        state,
        files: log.files(&snapshot).await?,
    };
    Ok(Some((kept, unread)))
}

/// A changes view's SELECT: the changes table's files, or the changes SQL over the history.
pub struct ChangesView {
    /// The SELECT.
    pub select: String,
    /// Whether it reads the changes table (exact for the history the views read).
    pub kept: bool,
}

/// The changes view's SELECT for `table` over `history`: the changes table's files when it is
/// exact for it, otherwise the changes SQL over `<table>_history`. `None` for a table without
/// changes.
pub async fn view_select(
    lake: &Lake,
    table: Table,
    history: Option<&History>,
) -> Option<ChangesView> {
    let computed = select(table, &crate::ident(&format!("{}_history", table.name())))?;
    let kept = match history {
        Some(history) => read(lake, table)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(%table, error = %format!("{e:#}"), "the changes table cannot be read; the view works the changes out");
                None
            })
            .filter(|k| k.exact_for(history) && !k.files.is_empty()),
        None => None,
    };
    Some(match kept {
        // Its files hold every column but `dt`, the partition of their directories.
        Some(kept) => ChangesView {
            select: format!(
                "SELECT * FROM read_parquet([{}], hive_partitioning = false)",
                list(lake, kept.files.iter().map(|f| &f.path))
            ),
            kept: true,
        },
        None => ChangesView {
            select: format!("SELECT * EXCLUDE (dt) FROM (\n{computed}\n)"),
            kept: false,
        },
    })
}

/// At the end of a command that committed rows (under its lake lock), keeps each feed's
/// changes table exact (see [`keep_exact`]), the two side by side, and says what it did. A changes table that cannot
/// be kept leaves its view working the changes out, and the next command tries again (each
/// failure is logged here).
pub async fn keep_all_exact(lake: &Lake) -> Vec<ChangesReport> {
    // Side by side: each is a DuckDB session on one thread, and career sites are small.
    let kept = futures::future::join_all(
        Table::feeds()
            .into_iter()
            .map(async |table| (table, keep_exact(lake, table).await)),
    )
    .await;
    let mut done = Vec::new();
    for (table, kept) in kept {
        match kept {
            Ok(Some(report)) => done.push(report),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                %table,
                error = %format!("{e:#}"),
                "the changes table could not be kept exact (its view works them out meanwhile)"
            ),
        }
    }
    done
}

/// Makes `table`'s changes table exact for its history's newest version: appending the
/// changes of the runs the history gained since, or writing it again when it must (see the
/// module's doc). `None` when it already was exact (or the table has no history).
pub async fn keep_exact(lake: &Lake, table: Table) -> Result<Option<ChangesReport>> {
    let Some(history) = latest::history_now(lake, table).await? else {
        return Ok(None);
    };
    let current = match load(lake, table).await? {
        Some((current, Some(why))) => {
            tracing::warn!(%table, error = %why, "the changes table cannot be read; writing it again");
            return rewrite_at(lake, table, &history, Some(current)).await;
        }
        current => current.map(|(c, _)| c),
    };
    let Some(current) = current else {
        return rewrite_at(lake, table, &history, None).await;
    };
    if current.exact_for(&history) {
        return Ok(None);
    }
    let Some(before) = history_then(
        lake,
        table,
        (
            current.state.history_version,
            current.state.history_committed_at,
        ),
        &history,
    )
    .await?
    else {
        return rewrite_at(lake, table, &history, Some(current)).await;
    };
    let then: BTreeSet<&str> = before.iter().map(|f| f.path.as_str()).collect();
    let now: BTreeSet<&str> = history.files.iter().map(|f| f.path.as_str()).collect();
    // Files gone from the history (a compaction not carried over): its rows moved.
    if !then.is_subset(&now) {
        return rewrite_at(lake, table, &history, Some(current)).await;
    }
    let new: Vec<&LiveFile> = history
        .files
        .iter()
        .filter(|f| !then.contains(f.path.as_str()))
        .collect();
    match append(lake, table, &history, &current, &before, &new).await? {
        Some(report) => Ok(Some(report)),
        None => rewrite_at(lake, table, &history, Some(current)).await,
    }
}

/// The files of the history's version `(version, committed_at)` (as a derived table's state
/// names it), when its log still has that version as it was and it is older than `now`.
pub(crate) async fn history_then(
    lake: &Lake,
    table: Table,
    (version, committed_at): (u64, i64),
    now: &History,
) -> Result<Option<Vec<LiveFile>>> {
    if version >= now.version {
        return Ok(None);
    }
    let log = DeltaLog::new(lake, table.name())?;
    let Ok(then) = log.snapshot_at(version).await else {
        return Ok(None);
    };
    if log.committed_at(&then).await? != committed_at {
        return Ok(None);
    }
    Ok(Some(log.files(&then).await?))
}

/// Appends the changes the history's files `new` bring to `current`, exact for `before`, in
/// one commit: the changes SQL over their rows beside each of their ids' last version in
/// `before`, keeping the rows of runs after the last `current` took in. `None` when a row of
/// `new` belongs to a run no later than that (its changes would reorder the ones kept).
async fn append(
    lake: &Lake,
    table: Table,
    history: &History,
    current: &Kept,
    before: &[LiveFile],
    new: &[&LiveFile],
) -> Result<Option<ChangesReport>> {
    let last = current.state.last_run_id.clone();
    let mut last_run_id = last.clone();
    let mut adds = Vec::new();
    if !new.is_empty() {
        let fresh = format!(
            "CREATE TEMP TABLE fresh AS\n\
             SELECT * FROM read_parquet([{}], hive_partitioning = true, union_by_name = true);",
            list(lake, new.iter().map(|f| &f.path))
        );
        // Each of the runs' ids' last version before them, found over four narrow columns;
        // only those rows are then copied out of their files (a few pages each), never a pass
        // over every version's wide columns.
        let prior = (!before.is_empty()).then(|| {
            format!(
                "SELECT file_index::BIGINT, file_row_number::BIGINT FROM (\n\
                   SELECT id, _run_id, _page, _row, file_index, file_row_number\n\
                   FROM read_parquet([{}], union_by_name = true, file_row_number = true)\n\
                   WHERE id IN (SELECT id FROM fresh))\n\
                 QUALIFY row_number() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) = 1",
                list(lake, before.iter().map(|f| &f.path))
            )
        });
        let changes = select(
            table,
            "(SELECT * FROM prior UNION ALL BY NAME SELECT * FROM fresh)",
        )
        .context("the table has no changes")?;
        let rows = format!(
            "SELECT * FROM (\n{changes}\n) WHERE _run_id > {}",
            literal(&last)
        );
        let (engine, dir, prefix) = target(lake, table);
        let (lake_, before_, runtime) = (
            lake.clone(),
            before.to_vec(),
            tokio::runtime::Handle::current(),
        );
        let target_dir = dir.clone();
        // One DuckDB session throughout, the runs' rows read once.
        let done = tokio::task::spawn_blocking(move || -> Result<Option<_>> {
            let work = crate::Work::open(&engine)?;
            work.execute(&fresh)?;
            let runs = work.query(
                "SELECT coalesce(min(_run_id), ''), coalesce(max(_run_id), '') FROM fresh",
            )?;
            let first = latest::strings(&runs, 0)?.pop().unwrap_or_default();
            let newest = latest::strings(&runs, 1)?.pop().unwrap_or_default();
            if !first.is_empty() && first <= last {
                tracing::info!(%table, run = %first, last = %last, "rows of a run no later than the changes table's last; writing it again");
                return Ok(None);
            }
            let scratch = crate::spill_dir()?;
            let mut priors = Vec::new();
            if let Some(prior) = prior {
                let found = work.query(&prior)?;
                let rows = latest::per_file(
                    before_.len(),
                    latest::int64s(&found, 0)?
                        .into_iter()
                        .zip(latest::int64s(&found, 1)?),
                )?;
                for (i, (file, rows)) in before_.iter().zip(rows).enumerate() {
                    if rows.is_empty() {
                        continue;
                    }
                    let to = scratch.path().join(format!("prior-{i}.parquet"));
                    runtime.block_on(joblake_writer::copy_rows(
                        &lake_,
                        &file.object_meta(),
                        &rows,
                        &to,
                    ))?;
                    priors.push(literal(&to.display().to_string()));
                }
            }
            work.execute(&if priors.is_empty() {
                "CREATE TEMP TABLE prior AS SELECT * FROM fresh WHERE false;".to_string()
            } else {
                format!(
                    "CREATE TEMP TABLE prior AS SELECT * FROM read_parquet([{}], union_by_name = true);",
                    priors.join(", ")
                )
            })?;
            let written = work.copy_partitioned(&rows, &target_dir, &prefix, None)?;
            Ok(Some((written, newest)))
        })
        .await??;
        let Some((written, newest)) = done else {
            return Ok(None);
        };
        adds = to_adds(table, &dir, written)?;
        last_run_id = last_run_id.max(newest);
    }
    let commit = Commit {
        adds,
        state: Some(serde_json::to_string(&ChangesState::of(
            history,
            last_run_id,
        ))?),
        ..Commit::default()
    };
    // Files a command killed before its commit left go; the ones kept stay.
    publish(lake, table, Some(current), commit, history, false).await
}

/// After a compaction of `table` (which moves rows and changes none), declares its changes
/// table exact for the compacted history when it was for `before`, the history the
/// compaction started from; otherwise keeps it exact as a refresh does.
pub async fn carry_over(
    lake: &Lake,
    table: Table,
    before: Option<&History>,
) -> Result<Option<ChangesReport>> {
    let (Some(before), Some(history)) = (before, latest::history_now(lake, table).await?) else {
        return keep_exact(lake, table).await;
    };
    let current = read(lake, table).await.ok().flatten();
    match current {
        Some(current) if current.exact_for(before) && !current.exact_for(&history) => {
            let state = ChangesState::of(&history, current.state.last_run_id.clone());
            let commit = Commit {
                state: Some(serde_json::to_string(&state)?),
                ..Commit::default()
            };
            publish(lake, table, Some(&current), commit, &history, false).await
        }
        _ => keep_exact(lake, table).await,
    }
}

/// Merges each day's files of `table`'s changes table into one, when it is exact for the
/// history's newest version (`compact` does, after carrying it over): each refresh adds a file
/// per day it fetched on, so a year of refreshes would leave the views reading hundreds. Reads
/// the changes themselves, not the history; the rows and the state stay as they are (a commit
/// with no data change). `None` when no day has more than one file.
pub async fn compact_files(lake: &Lake, table: Table) -> Result<Option<ChangesReport>> {
    let (Some(history), Some(current)) = (
        latest::history_now(lake, table).await?,
        read(lake, table).await?,
    ) else {
        return Ok(None);
    };
    let days: BTreeSet<&str> = current.files.iter().map(|f| f.dt.as_str()).collect();
    if !current.exact_for(&history) || days.len() == current.files.len() {
        return Ok(None);
    }
    let rows = format!(
        "SELECT * FROM read_parquet([{}], hive_partitioning = true)",
        list(lake, current.files.iter().map(|f| &f.path))
    );
    let commit = Commit {
        adds: write(lake, table, rows).await?,
        removes: current.files.iter().map(|f| f.path.clone()).collect(),
        operation: Operation::Optimize,
        ..Commit::default()
    };
    publish(lake, table, Some(&current), commit, &history, false).await
}

/// Writes `table`'s changes table again from the history's version `history`, in one commit
/// that removes every file `current` had; then deletes the files no reader needs any more
/// (those of the version before are kept, for DuckDB sessions still holding views of them).
async fn rewrite_at(
    lake: &Lake,
    table: Table,
    history: &History,
    current: Option<Kept>,
) -> Result<Option<ChangesReport>> {
    if history.files.is_empty() {
        return Ok(None);
    }
    let all = format!(
        "read_parquet([{}], hive_partitioning = true, union_by_name = true)",
        list(lake, history.files.iter().map(|f| &f.path))
    );
    let (first_run_id, last_run_id) = run_ids(lake, &all).await?;
    let adds = if first_run_id == last_run_id {
        // A history of one run (a first refresh): every id's change is that it is new.
        let again = latest::fetched_again(lake, &history.files).await?;
        let rows = one_run_select(table, &all, &last_run_id, again.as_deref())
            .context("the table has no changes")?;
        write_one_run(lake, &table_name(table), MEMORY_MB, history, rows).await?
    } else {
        let rows = select(table, &all).context("the table has no changes")?;
        write(lake, table, rows).await?
    };
    let commit = Commit {
        adds,
        removes: current
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.clone()))
            .collect(),
        state: Some(serde_json::to_string(&ChangesState::of(
            history,
            last_run_id,
        ))?),
        ..Commit::default()
    };
    publish(lake, table, current.as_ref(), commit, history, true).await
}

/// Commits `commit` to `table`'s changes table (its `adds` just written), then deletes the
/// files no reader needs (see [`remove_stale`]; `previous` is the table before the commit),
/// and says what it did: the table now exact for `history`.
async fn publish(
    lake: &Lake,
    table: Table,
    previous: Option<&Kept>,
    commit: Commit,
    history: &History,
    rewritten: bool,
) -> Result<Option<ChangesReport>> {
    let added = commit.adds.iter().map(|a| a.rows).sum();
    let written: BTreeSet<String> = commit.adds.iter().map(|a| a.path.clone()).collect();
    let version = commit_changes(lake, table, commit).await?;
    remove_stale(lake, table, previous, written).await?;
    Ok(Some(ChangesReport {
        table: table.name().to_string(),
        version,
        history_version: history.version,
        added,
        rewritten,
    }))
}

/// Deletes the files of `table`'s changes table that neither its log nor a reader needs:
/// all but the log, the files just `written`, and those of the version before (`previous`),
/// which DuckDB sessions still holding views of it read. Those are files a command killed
/// before its commit wrote, and the files of versions before the one before a rewrite.
async fn remove_stale(
    lake: &Lake,
    table: Table,
    previous: Option<&Kept>,
    written: BTreeSet<String>,
) -> Result<()> {
    let name = table_name(table);
    let mut keep = written;
    keep.extend(
        previous
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.clone())),
    );
    latest::delete_unkept(lake, &name, &keep).await
}

/// Commits `commit` to `table`'s changes table (creating it when it has no log).
async fn commit_changes(lake: &Lake, table: Table, commit: Commit) -> Result<u64> {
    let log = DeltaLog::derived(lake, &table_name(table))?;
    crash_point("changes:before-commit");
    let version = log.commit(schema(table), commit).await?;
    crash_point("changes:after-commit");
    Ok(version)
}

/// Where the files of `table`'s changes table are written, and by which DuckDB: an engine on
/// one thread within [`MEMORY_MB`], the table's directory as DuckDB names it, and a file name
/// prefix no other write uses.
fn target(lake: &Lake, table: Table) -> (crate::Engine, String, String) {
    target_of(lake, &table_name(table), MEMORY_MB)
}

/// How many times a derived table's memory its work gets once more, should DuckDB run out.
pub(crate) const MORE: u64 = 4;

/// The memory limits (MB) of work that gets `memory_mb`, then [`MORE`] times that should
/// DuckDB run out (see [`within_memory`]).
pub(crate) fn and_more(memory_mb: u64) -> [u64; 2] {
    [memory_mb, MORE * memory_mb]
}

/// Where one attempt of [`within_memory`]'s work writes, and within how much memory.
pub(crate) struct Attempt {
    /// The table's directory, as DuckDB names it.
    pub(crate) dir: String,
    /// The prefix of the files this attempt writes.
    pub(crate) prefix: String,
    /// DuckDB's memory limit, in MB.
    pub(crate) memory_mb: u64,
}

/// Runs `work`, DuckDB's work for the derived table at `<lake>/<name>/`, on a blocking thread
/// in a session of its own on one thread, within each of `memory_mb` in turn until DuckDB
/// does not run out of memory: a run's rows usually fit the first; one of a run as large as
/// the table may not. What an attempt that ran out wrote, no commit names: it is deleted
/// before the next attempt ([`forget_attempt`]).
pub(crate) async fn within_memory<T: Send + 'static>(
    lake: &Lake,
    name: &str,
    memory_mb: &[u64],
    work: impl Fn(&crate::Work, &Attempt) -> Result<T> + Send + Sync + 'static,
) -> Result<T> {
    within_memory_on(lake, name, memory_mb, 1, work).await
}

/// [`within_memory`] on `threads` of DuckDB's.
async fn within_memory_on<T: Send + 'static>(
    lake: &Lake,
    name: &str,
    memory_mb: &[u64],
    threads: u32,
    work: impl Fn(&crate::Work, &Attempt) -> Result<T> + Send + Sync + 'static,
) -> Result<T> {
    let work = Arc::new(work);
    let mut last = None;
    for (tried, &memory) in memory_mb.iter().enumerate() {
        let (mut engine, dir, prefix) = target_of(lake, name, memory);
        engine.threads = Some(threads);
        // Names of its own, even within the millisecond of a run id.
        let prefix = match tried {
            0 => prefix,
            n => format!("{prefix}retry{n}-"),
        };
        let attempt = Attempt {
            dir,
            prefix: prefix.clone(),
            memory_mb: memory,
        };
        let work = Arc::clone(&work);
        let done = tokio::task::spawn_blocking(move || {
            let session = crate::Work::open(&engine)?;
            work(&session, &attempt)
        })
        .await?;
        match done {
            Err(e) if crate::out_of_memory(&e) => {
                tracing::info!(
                    table = name,
                    memory_mb = memory,
                    "DuckDB ran out of memory; trying with more"
                );
                forget_attempt(lake, name, &prefix).await;
                last = Some(e);
            }
            done => return done,
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no memory to work within")))
}

/// Deletes what an attempt that ran out of memory wrote under `<lake>/<name>/` (files named
/// with its `prefix`, which no commit names). Best effort: what stays goes with the table's
/// next clean-up.
async fn forget_attempt(lake: &Lake, name: &str, prefix: &str) {
    let written = match lake.list(&object_store::path::Path::from(name)).await {
        Ok(all) => all
            .into_iter()
            .map(|m| m.location)
            .filter(|p| p.filename().is_some_and(|f| f.starts_with(prefix)))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list what the attempt wrote");
            return;
        }
    };
    if let Err(e) = lake.delete_all(written).await {
        tracing::debug!(error = %e, "cannot delete what the attempt wrote");
    }
}

/// [`target`] for the derived table at `<lake>/<name>/`.
pub(crate) fn target_of(
    lake: &Lake,
    name: &str,
    memory_mb: u64,
) -> (crate::Engine, String, String) {
    let engine = crate::Engine {
        memory_limit: Some(format!("{memory_mb}MB")),
        threads: Some(1),
        ..crate::session::engine(lake)
    };
    let prefix = format!("part-{}-", layout::new_run_id());
    (engine, lake.reader_path(name), prefix)
}

/// Writes the rows of `select` into `table`'s changes table directory, one file per `dt`, and
/// says what to add: files no commit names yet, which no reader sees.
async fn write(lake: &Lake, table: Table, select: String) -> Result<Vec<AddFile>> {
    write_to(lake, &table_name(table), MEMORY_MB, String::new(), select).await
}

/// Writes the rows of `select` (ending with `dt`) into the derived table at `<lake>/<name>/`,
/// one file per `dt`, within `memory_mb` MB of DuckDB's memory (or [`MORE`] times that, should
/// it run out), after the statements `setup` (when any), and says what to add (see [`write`]).
pub(crate) async fn write_to(
    lake: &Lake,
    name: &str,
    memory_mb: u64,
    setup: String,
    select: String,
) -> Result<Vec<AddFile>> {
    write_rows(lake, name, memory_mb, setup, select, None).await
}

/// [`write_to`], the rows all of `day` when it is known (see
/// [`crate::Work::copy_partitioned`]).
async fn write_rows(
    lake: &Lake,
    name: &str,
    memory_mb: u64,
    setup: String,
    select: String,
    day: Option<String>,
) -> Result<Vec<AddFile>> {
    let within = Within {
        memory_mb: &and_more(memory_mb),
        threads: 1,
        row_group: crate::ROW_GROUP,
    };
    write_rows_within(lake, name, within, setup, select, day).await
}

/// What DuckDB gets for a derived table's write.
struct Within<'a> {
    /// The memory limits (MB) to try in turn (see [`within_memory`]).
    memory_mb: &'a [u64],
    /// DuckDB's threads.
    threads: u32,
    /// Rows in each row group of the files written.
    row_group: u32,
}

/// [`write_rows`] within each of `within`'s memory limits in turn (see [`within_memory`]), on
/// its threads, in its row groups.
async fn write_rows_within(
    lake: &Lake,
    name: &str,
    within: Within<'_>,
    setup: String,
    select: String,
    day: Option<String>,
) -> Result<Vec<AddFile>> {
    let row_group = within.row_group;
    let work = move |work: &crate::Work, at: &Attempt| {
        if !setup.is_empty() {
            work.execute(&setup)?;
        }
        let (dir, prefix) = (&at.dir, &at.prefix);
        Ok(work.copy_partitioned_in(&select, dir, prefix, day.as_deref(), row_group)?)
    };
    let written = within_memory_on(lake, name, within.memory_mb, within.threads, work).await?;
    to_adds_of(name, &lake.reader_path(name), written)
}

/// The files DuckDB wrote under `dir`, `table`'s changes table, as a commit adds them.
fn to_adds(table: Table, dir: &str, written: Vec<crate::Written>) -> Result<Vec<AddFile>> {
    to_adds_of(&table_name(table), dir, written)
}

/// The files DuckDB wrote under `dir`, the derived table at `<lake>/<name>/`, as a commit adds
/// them.
pub(crate) fn to_adds_of(
    name: &str,
    dir: &str,
    written: Vec<crate::Written>,
) -> Result<Vec<AddFile>> {
    written
        .into_iter()
        .map(|w| {
            let rest = w
                .path
                .strip_prefix(dir)
                .map(|r| r.trim_start_matches('/'))
                .with_context(|| format!("DuckDB wrote {} outside {dir}", w.path))?;
            let dt = rest
                .split('/')
                .next()
                .and_then(|d| d.strip_prefix("dt="))
                .with_context(|| format!("DuckDB wrote {} outside a dt= directory", w.path))?;
            Ok(AddFile {
                path: format!("{name}/{rest}"),
                dt: dt.to_string(),
                bytes: w.bytes,
                rows: w.rows,
            })
        })
        .collect()
}

/// The Delta schema of `table`'s changes table: the view's columns and the `dt` partition.
fn schema(table: Table) -> SchemaRef {
    let text = || DataType::Utf8;
    let mut fields = vec![
        Field::new("id", text(), true),
        Field::new("_run_id", text(), true),
        Field::new(
            "_fetched_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("change", text(), true),
        Field::new(
            "changed_columns",
            DataType::List(Arc::new(Field::new("element", text(), true))),
            true,
        ),
        Field::new("previous_run_id", text(), true),
    ];
    if table == Table::Jobs {
        fields.push(Field::new("post_date", DataType::Date32, true));
        fields.push(Field::new("previous_post_date", DataType::Date32, true));
    }
    fields.push(Field::new("dt", DataType::Date32, true));
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-run table's rows are the same whether the ids fetched again are named (a table of
    /// values; none: no aggregate at all) or worked out by the SQL: changes and lifecycle, over
    /// a history with ids fetched once, twice and three times.
    #[tokio::test]
    async fn one_run_rows_are_the_same_with_the_ids_fetched_again_named_or_worked_out() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), false).unwrap();
        let setup = "CREATE TABLE v AS SELECT * FROM (VALUES \
            ('a', 1, 0, TIMESTAMPTZ '2026-11-30 10:00:00+00', DATE '2026-11-01', DATE '2026-12-30', DATE '2026-11-30'), \
            ('b', 1, 1, TIMESTAMPTZ '2026-11-30 10:00:00+00', DATE '2026-11-02', DATE '2026-12-30', DATE '2026-11-30'), \
            ('c', 1, 2, TIMESTAMPTZ '2026-11-30 10:00:00+00', DATE '2026-11-03', NULL, DATE '2026-11-30'), \
            ('b', 2, 0, TIMESTAMPTZ '2026-11-30 10:05:00+00', DATE '2026-11-20', DATE '2027-01-30', DATE '2026-11-30'), \
            ('c', 2, 1, TIMESTAMPTZ '2026-11-30 10:05:00+00', DATE '2026-11-03', DATE '2027-01-01', DATE '2026-11-30'), \
            ('d', 3, 0, TIMESTAMPTZ '2026-12-01 00:01:00+00', NULL, NULL, DATE '2026-12-01'), \
            ('c', 3, 1, TIMESTAMPTZ '2026-12-01 00:01:00+00', DATE '2026-11-04', NULL, DATE '2026-12-01')) \
            AS t(id, _page, _row, _fetched_at, post_date, valid_through, dt); \
            CREATE VIEW once AS SELECT * FROM v WHERE id IN ('a', 'd');";
        let rows = |sql: String| {
            format!(
                "SELECT count(*) || ':' || string_agg(t::VARCHAR, ';' ORDER BY t::VARCHAR) FROM ({sql}) AS t"
            )
        };
        let again = ["b".to_string(), "c".to_string()];
        let mut queries = Vec::new();
        for (versions, named) in [("v", &again[..]), ("once", &[][..])] {
            for fetched_again in [Some(named), None] {
                queries.push(rows(
                    one_run_select(Table::Jobs, versions, "r1", fetched_again).unwrap(),
                ));
                queries.push(rows(crate::lifecycle::one_run_select(
                    versions,
                    "r1",
                    fetched_again,
                )));
            }
        }
        queries.push(format!(
            "SELECT fetches || '|' || first_post_date || '|' || last_post_date FROM ({}) WHERE id = 'c'",
            crate::lifecycle::one_run_select("v", "r1", Some(&again))
        ));
        let results = duck(&lake, setup.into(), queries).await.unwrap();
        let got: Vec<String> = results
            .iter()
            .map(|r| latest::strings(r, 0).unwrap().concat())
            .collect();
        // Named, then worked out: changes and lifecycle of every id, then of the ids fetched once.
        assert_eq!(got[0..2], got[2..4]);
        assert_eq!(got[4..6], got[6..8]);
        assert!(
            got[0].starts_with("4:") && got[1].starts_with("4:"),
            "{got:?}"
        );
        assert!(
            got[4].starts_with("2:") && got[5].starts_with("2:"),
            "{got:?}"
        );
        // c was fetched three times: its lifecycle counts them, from its first post date on.
        assert_eq!(got[8], "3|2026-11-03|2026-11-04");
    }

    #[test]
    fn the_changes_sql_fills_every_placeholder_for_each_feed() {
        for table in Table::feeds() {
            let sql = select(table, "v").unwrap();
            assert!(
                !sql.contains("{versions}") && !sql.contains("{hashed}"),
                "{sql}"
            );
            assert!(sql.contains("FROM v\n"), "{sql}");
            assert!(sql.contains("hash(\"_extra\")"), "{sql}");
            assert!(!sql.contains("hash(\"_run_id\")"), "{sql}");
        }
        assert!(select(Table::Companies, "v").is_none());
    }

    /// A first refresh's derived table is written within less memory, and should DuckDB run
    /// out of it, within the table's usual memory rather than not at all.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_one_run_write_that_runs_out_of_memory_is_written_within_more() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), false).unwrap();
        // One list of 3 M numbers (24 MB), which DuckDB cannot spill, built twice over.
        let rows = "SELECT list(i) AS l, DATE '2026-11-30' AS dt FROM range(3000000) AS t(i)";
        let tight = write_rows_within(&lake, "t", ONE_RUN, String::new(), rows.into(), None).await;
        let e = format!("{:#}", tight.unwrap_err());
        assert!(e.contains("Out of Memory"), "{e}");
        // A derived table's own write gets four times its memory should it run out.
        let adds = write_to(&lake, "t", ONE_RUN_MEMORY_MB, String::new(), rows.into())
            .await
            .unwrap();
        assert_eq!(adds.iter().map(|a| a.rows).sum::<u64>(), 1);

        // A history of one day and one of two: the rows go to one file either way.
        for days in [vec!["2026-11-30"], vec!["2026-11-29", "2026-11-30"]] {
            let adds = write_one_run(&lake, "t", MEMORY_MB, &history_of(&days), rows.into())
                .await
                .unwrap();
            assert_eq!(adds.len(), 1, "{adds:?}");
            assert_eq!((adds[0].dt.as_str(), adds[0].rows), ("2026-11-30", 1));
            assert!(dir.path().join(&adds[0].path).is_file(), "{adds:?}");
        }
    }

    /// Work that runs out of memory runs again within the next limit, in a session of its own,
    /// and fails with DuckDB's error after the last; other errors are not tried again.
    #[tokio::test(flavor = "multi_thread")]
    async fn work_that_runs_out_of_memory_runs_again_within_the_next_limit() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), false).unwrap();
        // One list of 3 M numbers (24 MB), which DuckDB cannot spill.
        let big = "SELECT length(list(i))::BIGINT FROM range(3000000) AS t(i)";
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let n = within_memory(&lake, "t", &[16, 512], move |work, at| {
            log.lock().unwrap().push((at.memory_mb, at.prefix.clone()));
            // A file written, then the work runs out of memory (at 16 MB).
            let day = "SELECT 1 AS a, DATE '2026-11-30' AS dt";
            work.copy_partitioned(day, &at.dir, &at.prefix, None)?;
            latest::int64s(&work.query(big)?, 0)
        })
        .await
        .unwrap();
        assert_eq!(n, [3_000_000]);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [16, 512]);
        assert_ne!(seen[0].1, seen[1].1, "each attempt writes files of its own");
        // What the attempt that ran out wrote is gone; the one that passed keeps its file.
        let left: Vec<String> = std::fs::read_dir(dir.path().join("t/dt=2026-11-30"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with(&seen[1].1), "{left:?}");

        let e = within_memory(&lake, "t", &[16], move |work, _| Ok(work.query(big)?.len()))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("Out of Memory"), "{e:#}");

        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let e = within_memory(&lake, "t", &[16, 512], move |work, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(work.query("SELECT * FROM no_such_table")?.len())
        })
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("no_such_table"), "{e:#}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn history_of(days: &[&str]) -> History {
        let files = days
            .iter()
            .map(|d| LiveFile {
                path: format!("jobs/dt={d}/part-1.parquet"),
                bytes: 1,
                dt: d.to_string(),
            })
            .collect();
        History {
            version: 0,
            committed_at: 0,
            files,
        }
    }

    /// A history of one day writes its rows to one file as they come; a row of another day
    /// (which no one-run SQL gives) fails the write rather than land in the wrong partition.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_one_day_write_puts_its_rows_in_that_day_and_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), false).unwrap();
        let day = history_of(&["2026-11-30"]);
        let rows = "SELECT i, DATE '2026-11-30' AS dt FROM range(1000) AS t(i)";
        let adds = write_one_run(&lake, "t", MEMORY_MB, &day, rows.into())
            .await
            .unwrap();
        assert_eq!(adds.len(), 1, "{adds:?}");
        assert_eq!((adds[0].dt.as_str(), adds[0].rows), ("2026-11-30", 1000));
        assert!(
            adds[0].path.starts_with("t/dt=2026-11-30/part-"),
            "{adds:?}"
        );

        let two = "SELECT i, DATE '2026-11-30' + (i % 2)::INT AS dt FROM range(1000) AS t(i)";
        let e = write_one_run(&lake, "t", MEMORY_MB, &day, two.into())
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("a row of day 2026-12-01 in a write of day 2026-11-30"),
            "{e}"
        );
    }
}
