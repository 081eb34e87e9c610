//! The latest tables: `<lake>/<table>_latest/`, a Delta table of its own beside each history
//! table, holding the latest version of every id, exact for one version of the history (its
//! [`LatestState`], in the log's domain metadata), so that any Delta reader gets "latest per
//! id" without a window over every version, and the latest-version views read it.
//!
//! A refresh keeps it exact at a cost in proportion to the run, not to the lake: the run's
//! files are ranked (DuckDB, over four narrow columns), the ids they bring are looked up in the
//! latest table's files, the rows they replace are deleted with deletion vectors, and the
//! run's latest rows are added as one file: one Delta commit ([`merge`]). Once the rows those
//! commits deleted or added reach a share of the table (`[views] latest_after`), or on
//! `compact`, the table is written again from the history as one file ([`rewrite`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use joblake_schema::Table;
use joblake_writer::delta::{Commit, DataFile, DeltaLog, LatestState, LiveFile, Operation};
use joblake_writer::{Lake, LatestFile, crash_point, layout};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::Serialize;

use crate::catalog;
use crate::session::engine;

/// Where table `table`'s latest table lies in the lake.
pub fn table_name(table: Table) -> String {
    layout::latest_table(table.name())
}

/// A version of a history table: its number, when it was committed, and its files.
#[derive(Debug, Clone)]
pub struct History {
    /// The Delta version.
    pub version: u64,
    /// When it was committed (milliseconds since 1970).
    pub committed_at: i64,
    /// Its files.
    pub files: Vec<LiveFile>,
}

/// A latest table as its newest version holds it.
#[derive(Debug, Clone)]
pub struct LatestTable {
    /// Its Delta version.
    pub version: u64,
    /// The version of the history table it is exact for.
    pub history: LatestState,
    /// Its files, with the rows their deletion vectors delete.
    pub files: Vec<DataFile>,
    /// Its columns (`dt` among them).
    pub columns: Vec<String>,
}

impl LatestTable {
    /// Whether it has every column its table's latest table keeps (see [`added_columns`]):
    /// a jobs latest table made before it kept the salary columns has not.
    pub fn has_added_columns(&self, table: Table) -> bool {
        added_columns(table)
            .iter()
            .all(|f| self.columns.iter().any(|c| c == f.name()))
    }

    /// Whether it is exact for `history`.
    pub fn exact_for(&self, history: &History) -> bool {
        self.history.complete
            && self.history.history_version == history.version
            && self.history.history_committed_at == history.committed_at
    }

    /// Rows its deletion vectors delete.
    pub fn deleted(&self) -> u64 {
        self.files.iter().map(|f| f.deleted.len() as u64).sum()
    }

    /// Rows it holds: one per id.
    pub fn ids(&self) -> u64 {
        live_rows(&self.files)
    }

    /// Whether writing it again (rather than merging a run in) is due: the rows merges added
    /// or deleted since it was last written reach `after` of the rows it holds; always when
    /// `after` is 0.
    fn rewrite_due(&self, after: f64) -> bool {
        rewrite_due(after, self.history.merged, self.ids())
    }
}

/// What keeping a latest table exact did.
#[derive(Debug, Clone, Serialize)]
pub struct LatestReport {
    /// The history table.
    pub table: String,
    /// The latest table's version committed.
    pub version: u64,
    /// The history's version it is exact for.
    pub history_version: u64,
    /// Ids it holds.
    pub ids: u64,
    /// Rows added (every id, when written again).
    pub added: u64,
    /// Rows deleted because a newer version of their id came.
    pub replaced: u64,
    /// Whether it was written again from the history as one file.
    pub rewritten: bool,
}

/// The latest table of `table`, or `None` while it has none.
pub async fn read(lake: &Lake, table: Table) -> Result<Option<LatestTable>> {
    match load(lake, table).await? {
        Some((_, Some(unread))) => Err(anyhow::Error::msg(unread)),
        latest => Ok(latest.map(|(l, _)| l)),
    }
}

/// The latest table of `table` (`None` while it has none), and why its state cannot be read
/// when it cannot: the table is then exact for no history version, its files still listed
/// (writing it again removes them).
async fn load(lake: &Lake, table: Table) -> Result<Option<(LatestTable, Option<String>)>> {
    let log = DeltaLog::latest(lake, &table_name(table))?;
    let Some((snapshot, state)) = log.newest_state::<LatestState>().await? else {
        return Ok(None);
    };
    let (history, unread) = match state {
        Ok(state) => (state, None),
        Err(why) => (
            LatestState {
                history_version: u64::MAX,
                history_committed_at: 0,
                complete: false,
                merged: 0,
            },
            Some(why),
        ),
    };
    let latest = LatestTable {
        version: snapshot.version(),
        history,
        files: log.files_with_deletions(&snapshot).await?,
        columns: DeltaLog::columns(&snapshot),
    };
    Ok(Some((latest, unread)))
}

/// The history table's newest version, or `None` while it has no Delta log.
pub async fn history_now(lake: &Lake, table: Table) -> Result<Option<History>> {
    let log = DeltaLog::new(lake, table.name())?;
    let Some(snapshot) = log.snapshot().await? else {
        return Ok(None);
    };
    Ok(Some(History {
        version: snapshot.version(),
        committed_at: log.committed_at(&snapshot).await?,
        files: log.files(&snapshot).await?,
    }))
}

/// Makes `table`'s latest table exact for its history's newest version: merging in what the
/// history gained since, or writing it again when that is due (see [`LatestTable`]) or it has
/// none. `None` when it already was exact (or the table has no history).
pub async fn keep_exact(
    lake: &Lake,
    table: Table,
    rewrite_after: f64,
) -> Result<Option<LatestReport>> {
    let Some(history) = history_now(lake, table).await? else {
        return Ok(None);
    };
    let current = match load(lake, table).await? {
        Some((current, Some(why))) => {
            tracing::warn!(%table, error = %why, "the latest table cannot be read; writing it again");
            return rewrite_at(lake, table, history, Some(current)).await;
        }
        current => current.map(|(c, _)| c),
    };
    let Some(current) = current else {
        return rewrite_at(lake, table, history, None).await;
    };
    if current.exact_for(&history) {
        return Ok(None);
    }
    // A command killed between the two commits of a merge or a rewrite (see
    // `commit_exact`) left copies whose older rows no deletion vector deletes yet, and a
    // state that need not name the history before them: only writing it again is sure. A
    // table without the columns it keeps now gets them by being written again.
    if !current.history.complete
        || current.rewrite_due(rewrite_after)
        || !current.has_added_columns(table)
    {
        return rewrite_at(lake, table, history, Some(current)).await;
    }
    // The history as the latest table last saw it: the files since are what it lacks. A log
    // that no longer has that version, or not as it was, calls for writing it again.
    let log = DeltaLog::new(lake, table.name())?;
    let then = current.history.history_version;
    let before = match log.snapshot_at(then).await {
        Ok(before) if then < history.version => Some(before),
        _ => None,
    };
    let before = match before {
        Some(b) if log.committed_at(&b).await? == current.history.history_committed_at => b,
        _ => return rewrite_at(lake, table, history, Some(current)).await,
    };
    let before: BTreeSet<String> = log
        .files(&before)
        .await?
        .into_iter()
        .map(|f| f.path)
        .collect();
    let new: Vec<LiveFile> = history
        .files
        .iter()
        .filter(|f| !before.contains(&f.path))
        .cloned()
        .collect();
    merge(lake, table, &history, new, current).await.map(Some)
}

/// At the end of a command that committed rows (under its lake lock), keeps every table's
/// latest table exact (see [`keep_exact`]) and says what it did. The fetched rows are
/// committed by then: a latest table that cannot be kept leaves the views reading the
/// history, and the next command tries again (each failure is logged here).
pub async fn keep_all_exact(lake: &Lake, rewrite_after: f64) -> Vec<LatestReport> {
    let tables = match catalog::tables_in(lake).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot list the lake's tables; no latest table kept");
            return Vec::new();
        }
    };
    let mut done = Vec::new();
    for table in tables {
        match keep_exact(lake, table, rewrite_after).await {
            Ok(Some(report)) => done.push(report),
            Ok(None) => {}
            Err(e) => tracing::warn!(
                %table,
                error = %format!("{e:#}"),
                "the latest table could not be kept exact (the views read the history meanwhile)"
            ),
        }
    }
    done
}

/// Writes `table`'s latest table again from its history's newest version, as one file
/// (`compact` does, after merging partitions).
pub async fn rewrite(lake: &Lake, table: Table) -> Result<Option<LatestReport>> {
    let Some(history) = history_now(lake, table).await? else {
        return Ok(None);
    };
    let current = load(lake, table).await?.map(|(c, _)| c);
    rewrite_at(lake, table, history, current).await
}

fn state_of(history: &History, merged: u64) -> LatestState {
    LatestState {
        history_version: history.version,
        history_committed_at: history.committed_at,
        complete: true,
        merged,
    }
}

/// Up to this share of a history file's rows lost to later versions, the file is copied into
/// the latest table as it is and those rows deleted by a deletion vector; past it, the file is
/// written again without them.
const COPY_UP_TO: f64 = 0.05;

/// Commits `first` (the files `written` added, the rows it deletes from the table's files)
/// and, when copies among `written` hold rows to delete, a second commit deleting them (the
/// kernel puts a deletion vector only on a file a version already has). Only the last commit
/// says the table is exact for `history`; the first says `before` (incomplete), so a crash
/// between them leaves a table the next command writes again ([`keep_exact`]). Returns the
/// last version.
async fn commit_exact(
    log: &DeltaLog,
    table: Table,
    mut first: Commit,
    written: &[LatestFile],
    history: &History,
    before: LatestState,
    merged: u64,
) -> Result<u64> {
    first.adds = written.iter().map(|f| f.file.to_add()).collect();
    let pending: std::collections::BTreeMap<String, Vec<u64>> = written
        .iter()
        .filter(|f| !f.deleted.is_empty())
        .map(|f| (f.file.path.clone(), f.deleted.clone()))
        .collect();
    let schema = current_schema(table);
    crash_point("latest:before-commit");
    if pending.is_empty() {
        first.state = Some(serde_json::to_string(&state_of(history, merged))?);
        let committed = log.commit(schema, first).await?;
        crash_point("latest:after-commit");
        return Ok(committed);
    }
    first.state = Some(serde_json::to_string(&LatestState {
        complete: false,
        ..before
    })?);
    log.commit(Arc::clone(&schema), first).await?;
    crash_point("latest:between-commits");
    let second = Commit {
        deletions: pending,
        state: Some(serde_json::to_string(&state_of(history, merged))?),
        operation: Operation::Merge,
        ..Commit::default()
    };
    let committed = log.commit(schema, second).await?;
    crash_point("latest:after-commit");
    Ok(committed)
}

fn metas(files: &[LiveFile]) -> Vec<ObjectMeta> {
    files.iter().map(LiveFile::object_meta).collect()
}

pub(crate) fn list(lake: &Lake, paths: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    paths
        .into_iter()
        .map(|p| crate::literal(&lake.reader_path(p.as_ref())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most ids fetched more than once that [`fetched_again`] names: so short a list, joined
/// as a table of values, saves each table's SQL the `GROUP BY` of every id that works them
/// out (0.2–0.4 s for a first refresh of 1.3 M jobs), and keeps the SQL short.
pub(crate) const FEW_AGAIN: usize = 256;

/// The ids with more than one version among `files` (a history's), when there are at most
/// [`FEW_AGAIN`]; `None` when there are more (the SQL then works them out itself).
///
/// The latest, changes and lifecycle tables of one refresh ask this of the same files: it is
/// worked out once for them (a `GROUP BY` of every id on two threads, 0.19 s for a first
/// refresh of 1.3 M jobs) and kept for the files it was asked of, which never change.
pub(crate) async fn fetched_again(
    lake: &Lake,
    files: &[LiveFile],
) -> Result<Option<Arc<[String]>>> {
    type Kept = Option<(String, Option<Arc<[String]>>)>;
    static KEPT: std::sync::Mutex<Kept> = std::sync::Mutex::new(None);
    let all = list(lake, files.iter().map(|f| &f.path));
    if let Some((of, again)) = KEPT.lock().expect("not poisoned").as_ref()
        && *of == all
    {
        return Ok(again.clone());
    }
    let sql = format!(
        "SELECT id FROM read_parquet([{all}], union_by_name = true) \
         GROUP BY id HAVING count(*) > 1 LIMIT {}",
        FEW_AGAIN + 1
    );
    let results = duck_in(lake, &GROUPING, String::new(), vec![sql]).await?;
    let ids = strings(&results[0], 0)?;
    let again = (ids.len() <= FEW_AGAIN).then(|| Arc::from(ids));
    *KEPT.lock().expect("not poisoned") = Some((all, again.clone()));
    Ok(again)
}

/// `ids` as a DuckDB table of one column, `(VALUES ('a'), ('b'))`: to join on (`ids` not
/// empty).
pub(crate) fn id_values(ids: &[String]) -> String {
    let rows: Vec<String> = ids
        .iter()
        .map(|id| format!("({})", crate::literal(id)))
        .collect();
    format!("(VALUES {})", rows.join(", "))
}

/// How a [`duck_in`] session runs: on how many threads, and the memory caps it tries in turn,
/// the least first, more only when DuckDB runs out.
struct Session {
    threads: u32,
    memory: &'static [&'static str],
}

/// Ranking narrow columns: one thread (DuckDB's memory grows with its threads), the least
/// memory first (a run's rows fit), more only when DuckDB runs out (its window over millions
/// of ids needs more than it can spill to).
const NARROW: Session = Session {
    threads: 1,
    memory: &["32MB", "128MB", "512MB"],
};

/// Grouping a run's ids (see [`fetched_again`]): on two threads, which want more than one
/// thread's 32 MB (they run out at it). A first refresh of 1.3 M jobs, stock DuckDB: 0.19
/// against 0.37 s on one thread, 73 against 43 MB more resident.
const GROUPING: Session = Session {
    threads: 2,
    memory: &["48MB", "128MB", "512MB"],
};

/// Runs `setup`, then each of `queries`, in one fresh DuckDB session of [`NARROW`].
pub(crate) async fn duck(
    lake: &Lake,
    setup: String,
    queries: Vec<String>,
) -> Result<Vec<Vec<RecordBatch>>> {
    duck_in(lake, &NARROW, setup, queries).await
}

/// Runs `setup`, then each of `queries`, in one fresh DuckDB session as `session` says,
/// capped at each of its memory steps in turn until it does not run out of memory.
async fn duck_in(
    lake: &Lake,
    session: &Session,
    setup: String,
    queries: Vec<String>,
) -> Result<Vec<Vec<RecordBatch>>> {
    let mut last = None;
    for &memory in session.memory {
        let engine = crate::Engine {
            memory_limit: Some(memory.into()),
            threads: Some(session.threads),
            ..engine(lake)
        };
        let (setup, queries) = (setup.clone(), queries.clone());
        match tokio::task::spawn_blocking(move || crate::query_many(&engine, &setup, &queries))
            .await?
        {
            Ok(results) => return Ok(results),
            Err(e) if crate::out_of_memory(&e) => {
                tracing::debug!(memory, "DuckDB ran out of memory; trying with more");
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.expect("a step ran").into())
}

pub(crate) fn int64s(batches: &[RecordBatch], column: usize) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(a) = b.column(column).as_primitive_opt::<Int64Type>() else {
            bail!("DuckDB gave column {column} an unexpected type");
        };
        out.extend(a.iter().map(|v| v.unwrap_or(-1)));
    }
    Ok(out)
}

pub(crate) fn strings(batches: &[RecordBatch], column: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(a) = b.column(column).as_string_opt::<i32>() else {
            bail!("DuckDB gave column {column} an unexpected type");
        };
        out.extend(a.iter().map(|v| v.unwrap_or_default().to_string()));
    }
    Ok(out)
}

/// Adds to `commit` the deletion vectors of `files` that delete `rows` too (one sorted list
/// per file, as [`per_file`] gives them) beside the rows each deletes already; returns how
/// many rows it deletes anew.
pub(crate) fn delete_rows(commit: &mut Commit, files: &[DataFile], rows: Vec<Vec<u64>>) -> u64 {
    let mut deleted = 0;
    for (file, rows) in files.iter().zip(rows) {
        if rows.is_empty() {
            continue;
        }
        deleted += rows.len() as u64;
        let mut all = file.deleted.clone();
        all.extend(rows);
        all.sort_unstable();
        all.dedup();
        commit.deletions.insert(file.path.clone(), all);
    }
    deleted
}

/// Rows a table with deletion vectors holds: its files' rows but those they delete.
pub(crate) fn live_rows(files: &[DataFile]) -> u64 {
    let deleted: u64 = files.iter().map(|f| f.deleted.len() as u64).sum();
    files.iter().filter_map(|f| f.rows).sum::<u64>() - deleted
}

/// Whether a table of `rows` rows, into which merges added or deleted `merged` since it was
/// last written, is due to be written again: once `merged` reaches `after` of it; always when
/// `after` is 0.
pub(crate) fn rewrite_due(after: f64, merged: u64, rows: u64) -> bool {
    after <= 0.0 || merged as f64 >= after * rows as f64
}

/// The newest version of the derived table at `<lake>/<name>/` that holds one row per id
/// (`None` while it has no log): its number, its state read as `S` (or why it cannot be), and
/// its files with the rows their deletion vectors delete.
pub(crate) async fn newest_per_id<S: serde::de::DeserializeOwned>(
    lake: &Lake,
    name: &str,
) -> Result<Option<(u64, std::result::Result<S, String>, Vec<DataFile>)>> {
    let log = DeltaLog::derived_per_id(lake, name)?;
    let Some((snapshot, state)) = log.newest_state::<S>().await? else {
        return Ok(None);
    };
    let files = log.files_with_deletions(&snapshot).await?;
    Ok(Some((snapshot.version(), state, files)))
}

/// After a commit that wrote the per-id table at `<lake>/<name>/` again: deletes every file of
/// it but those in `keep` and the deletion vectors its newest version uses.
pub(crate) async fn delete_unkept_per_id(
    lake: &Lake,
    name: &str,
    mut keep: BTreeSet<String>,
) -> Result<()> {
    let log = DeltaLog::derived_per_id(lake, name)?;
    if let Some(now) = log.snapshot().await? {
        keep.extend(log.deletion_vector_files(&now).await?);
    }
    delete_unkept(lake, name, &keep).await
}

/// Of the rows of a per-id table (`files`) that the DuckDB table `old` holds, by position
/// (`_fi`, the file's index in `files`, and `_fr`, the row's), deletes those the deletion
/// vectors delete already, and says where the rest are; `None` when an id is then there twice
/// (the table cannot be merged into with certainty).
pub(crate) fn live_old_rows(
    work: &crate::Work,
    files: &[DataFile],
) -> Result<Option<Vec<(i64, i64)>>> {
    let positions = |batches: &[RecordBatch]| -> Result<Vec<(i64, i64)>> {
        Ok(int64s(batches, 0)?
            .into_iter()
            .zip(int64s(batches, 1)?)
            .collect())
    };
    let gone: Vec<String> = positions(&work.query("SELECT _fi, _fr FROM old")?)?
        .into_iter()
        .filter(|&(fi, fr)| {
            let file = usize::try_from(fi).ok().and_then(|fi| files.get(fi));
            let row = u64::try_from(fr).ok();
            matches!((file, row), (Some(f), Some(r)) if f.deleted.binary_search(&r).is_ok())
        })
        .map(|(fi, fr)| format!("({fi}, {fr})"))
        .collect();
    if !gone.is_empty() {
        work.execute(&format!(
            "DELETE FROM old USING (VALUES {}) AS g(_fi, _fr) WHERE old._fi = g._fi AND old._fr = g._fr;",
            gone.join(", ")
        ))?;
    }
    let twice = work.query("SELECT (count(*) - count(DISTINCT id))::BIGINT FROM old")?;
    if int64s(&twice, 0)?.first().copied().unwrap_or(0) > 0 {
        return Ok(None);
    }
    Ok(Some(positions(&work.query("SELECT _fi, _fr FROM old")?)?))
}

/// Positions (file in `files`, row) as one sorted list per file.
pub(crate) fn per_file(
    n: usize,
    positions: impl IntoIterator<Item = (i64, i64)>,
) -> Result<Vec<Vec<u64>>> {
    let mut out = vec![Vec::new(); n];
    for (f, r) in positions {
        let rows = usize::try_from(f)
            .ok()
            .and_then(|f| out.get_mut(f))
            .context("DuckDB named a file it was not given")?;
        rows.push(u64::try_from(r)?);
    }
    for rows in &mut out {
        rows.sort_unstable();
        rows.dedup();
    }
    Ok(out)
}

/// Merges into `current` what the history's version `history` gained since the version it is
/// exact for: `new`, the history's files since (a run's, or a compaction's outputs, whose
/// rows it already has). Their latest version of each id replaces the table's, unless the
/// table's is later (see [`catalog::LATEST_FIRST`]).
async fn merge(
    lake: &Lake,
    table: Table,
    history: &History,
    new: Vec<LiveFile>,
    current: LatestTable,
) -> Result<LatestReport> {
    let name = table_name(table);
    let log = DeltaLog::latest(lake, &name)?;
    let mut commit = Commit {
        operation: Operation::Merge,
        ..Commit::default()
    };
    let mut written = Vec::new();
    let (mut added, mut replaced) = (0, 0);
    if !new.is_empty() {
        let ranked = format!(
            "CREATE TEMP TABLE ranked AS\n\
             SELECT id, _run_id, _page::BIGINT AS _page, _row::BIGINT AS _row,\n\
               file_index::BIGINT AS fi, file_row_number::BIGINT AS fr,\n\
               row_number() OVER (PARTITION BY id ORDER BY {}) AS rn\n\
             FROM read_parquet([{}], union_by_name = true, file_row_number = true);",
            catalog::LATEST_FIRST,
            list(lake, new.iter().map(|f| &f.path))
        );
        let mut queries = vec![
            "SELECT fi, fr FROM ranked WHERE rn > 1".to_string(),
            "SELECT count(*)::BIGINT FROM ranked WHERE rn = 1".to_string(),
        ];
        if !current.files.is_empty() {
            queries.push(format!(
                "SELECT e.file_index::BIGINT, e.file_row_number::BIGINT,\n\
                   e._run_id, e._page::BIGINT, e._row::BIGINT, c.fi, c.fr, c._run_id, c._page, c._row\n\
                 FROM read_parquet([{}], union_by_name = true, file_row_number = true) AS e\n\
                 JOIN (SELECT * FROM ranked WHERE rn = 1) AS c USING (id)",
                list(lake, current.files.iter().map(|f| &f.path))
            ));
        }
        let results = duck(lake, ranked, queries).await?;
        let older = &results[0];
        let mut skip: Vec<(i64, i64)> = int64s(older, 0)?
            .into_iter()
            .zip(int64s(older, 1)?)
            .collect();
        let candidates = int64s(&results[1], 0)?.first().copied().unwrap_or(0) as u64;
        // Each match of a run's id in the table: deleted already (an earlier version the
        // table replaced), replaced now, or later than the run's (the run's row is not added).
        let mut deletes: Vec<(i64, i64)> = Vec::new();
        let mut lost = BTreeSet::new();
        if let Some(m) = results.get(2) {
            let (efi, efr) = (int64s(m, 0)?, int64s(m, 1)?);
            let (erun, epage, erow) = (strings(m, 2)?, int64s(m, 3)?, int64s(m, 4)?);
            let (cfi, cfr) = (int64s(m, 5)?, int64s(m, 6)?);
            let (crun, cpage, crow) = (strings(m, 7)?, int64s(m, 8)?, int64s(m, 9)?);
            for i in 0..efi.len() {
                let file = current
                    .files
                    .get(usize::try_from(efi[i])?)
                    .context("DuckDB named a latest file it was not given")?;
                if file.deleted.binary_search(&u64::try_from(efr[i])?).is_ok() {
                    continue;
                }
                if (&erun[i], epage[i], erow[i]) >= (&crun[i], cpage[i], crow[i]) {
                    lost.insert((cfi[i], cfr[i]));
                } else {
                    deletes.push((efi[i], efr[i]));
                }
            }
        }
        added = candidates - lost.len() as u64;
        skip.extend(lost);
        if added > 0 {
            let skip = per_file(new.len(), skip)?;
            written = write_rows(lake, table, &new, &skip).await?;
            // A copy's rows to delete were not added.
            added -= written.iter().map(|f| f.deleted.len() as u64).sum::<u64>();
        }
        let deletes = per_file(current.files.len(), deletes)?;
        replaced += delete_rows(&mut commit, &current.files, deletes);
    }
    let before = current.history.clone();
    let merged = before.merged + added + replaced;
    let committed = commit_exact(&log, table, commit, &written, history, before, merged).await?;
    Ok(LatestReport {
        table: table.name().to_string(),
        version: committed,
        history_version: history.version,
        ids: current.ids() + added - replaced,
        added,
        replaced,
        rewritten: false,
    })
}

/// The schema a latest table is made with (or, made before it kept its added columns, gains
/// them with): the history's and its [`added_columns`].
fn current_schema(table: Table) -> arrow::datatypes::SchemaRef {
    let history = joblake_schema::arrow_schema(table);
    let added = added_columns(table);
    if added.is_empty() {
        return history;
    }
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        history
            .fields()
            .iter()
            .cloned()
            .chain(added.into_iter().map(Arc::new))
            .collect::<Vec<_>>(),
        history.metadata().clone(),
    ))
}

/// The columns `table`'s latest table keeps beyond its history's: the salaries per year for
/// jobs (see [`crate::salaries`]).
pub fn added_columns(table: Table) -> Vec<arrow::datatypes::Field> {
    match table {
        Table::Jobs => crate::salaries::fields(),
        _ => Vec::new(),
    }
}

/// Writes the rows of history `files` but those at `skip` (per file) into the latest table,
/// each file copied as it is when it loses few (see [`joblake_writer::write_latest`]), with
/// the table's [`added_columns`].
async fn write_rows(
    lake: &Lake,
    table: Table,
    files: &[LiveFile],
    skip: &[Vec<u64>],
) -> Result<Vec<LatestFile>> {
    let salaries = crate::salaries::Salaries { lake: lake.clone() };
    let added: Option<&dyn joblake_writer::AddedColumns> = match table {
        Table::Jobs => Some(&salaries),
        _ => None,
    };
    let into = joblake_writer::LatestTarget {
        table: &table_name(table),
        copy_up_to: COPY_UP_TO,
        run_id: &layout::new_run_id(),
        opts: &joblake_writer::WriterOptions::default(),
        added,
    };
    Ok(joblake_writer::write_latest(lake, &metas(files), skip, &into).await?)
}

/// Writes `table`'s latest table again from the history's version `history`,
/// as one file, in one commit that removes every file `current` had; then deletes the files
/// no reader needs any more (those of the version before are kept, for DuckDB sessions
/// still holding views of them).
async fn rewrite_at(
    lake: &Lake,
    table: Table,
    history: History,
    current: Option<LatestTable>,
) -> Result<Option<LatestReport>> {
    let files = &history.files;
    if files.is_empty() {
        return Ok(None);
    }
    let all = list(lake, files.iter().map(|f| &f.path));
    // Which versions lost to a later one, by file (its place in `files`) and row: a window
    // over four narrow columns, which DuckDB spills rather than hold whole rows (job
    // descriptions and all), of the ids with more than one version only (a first refresh has
    // a handful: 0.4 against 0.9 s for 1.3 M jobs; no slower when a fifth are).
    let versions = format!("read_parquet([{all}], union_by_name = true, file_row_number = true)");
    // Only a history of one run (a first refresh) has so few ids fetched again that naming
    // them pays; in a longer one, working them out apart would only add a `GROUP BY`.
    let (first_run, last_run) = crate::changes::run_ids(lake, &versions).await?;
    let again = match first_run == last_run {
        true => fetched_again(lake, files).await?,
        false => None,
    };
    let superseded = match again.as_deref() {
        // Every id has one version: none lost.
        Some([]) => vec![Vec::new(); files.len()],
        again => {
            let ids = match again {
                // A join on this one narrow column costs next to nothing.
                Some(ids) => format!("id IN (SELECT * FROM {})", id_values(ids)),
                None => {
                    format!("id IN (SELECT id FROM {versions} GROUP BY id HAVING count(*) > 1)")
                }
            };
            let superseded_sql = format!(
                "SELECT file_index::BIGINT, file_row_number::BIGINT FROM (\n\
                   SELECT id, _run_id, _page, _row, file_index, file_row_number\n\
                   FROM {versions}\n\
                   WHERE {ids})\n\
                 QUALIFY row_number() OVER (PARTITION BY id ORDER BY {}) > 1",
                catalog::LATEST_FIRST
            );
            let results = duck(lake, String::new(), vec![superseded_sql]).await?;
            per_file(
                files.len(),
                int64s(&results[0], 0)?
                    .into_iter()
                    .zip(int64s(&results[0], 1)?),
            )?
        }
    };
    let name = table_name(table);
    let written = write_rows(lake, table, files, &superseded).await?;
    let commit = Commit {
        removes: current
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.clone()))
            .collect(),
        operation: Operation::Write,
        ..Commit::default()
    };
    let log = DeltaLog::latest(lake, &name)?;
    let before = LatestState {
        complete: false,
        ..state_of(&history, 0)
    };
    let committed = commit_exact(&log, table, commit, &written, &history, before, 0).await?;
    // Nothing but the log, the new files and the files of the version before.
    let mut keep: BTreeSet<String> = current
        .iter()
        .flat_map(|c| c.files.iter().map(|f| f.path.clone()))
        .collect();
    keep.extend(written.iter().map(|f| f.file.path.clone()));
    if let Some(now) = log.snapshot().await? {
        keep.extend(log.deletion_vector_files(&now).await?);
    }
    let rows: u64 = written
        .iter()
        .map(|f| f.file.rows - f.deleted.len() as u64)
        .sum();
    delete_unkept(lake, &name, &keep).await?;
    // What joblake kept before its latest tables.
    let legacy: Vec<Path> = lake
        .list(&layout::legacy_latest_root(table.name()))
        .await?
        .into_iter()
        .map(|m| m.location)
        .chain([layout::legacy_latest_pointer(table.name())])
        .collect();
    lake.delete_all(legacy).await?;
    Ok(Some(LatestReport {
        table: table.name().to_string(),
        version: committed,
        history_version: history.version,
        ids: rows,
        added: rows,
        replaced: 0,
        rewritten: true,
    }))
}

/// Deletes every file of the table at `<lake>/<name>/` but its log and those in `keep`
/// (lake-relative paths): files a command killed before its commit wrote, and those of
/// versions no reader needs any more.
pub(crate) async fn delete_unkept(lake: &Lake, name: &str, keep: &BTreeSet<String>) -> Result<()> {
    let stale: Vec<Path> = lake
        .list(&Path::from(name))
        .await?
        .into_iter()
        .map(|m| m.location)
        .filter(|p| {
            p.parts().nth(1).is_some_and(|d| d.as_ref() != "_delta_log")
                && !keep.contains(p.as_ref())
        })
        .collect();
    lake.delete_all(stale).await?;
    Ok(())
}

/// The latest-version view's SELECT over `latest` (every row of its files but those their
/// deletion vectors delete), and the statement that fills the table of deleted positions it
/// skips (`_joblake_deleted_<table>`), empty when there are none.
pub fn view_select(lake: &Lake, table: Table, latest: &LatestTable) -> (String, String) {
    let name = table.name();
    if latest.files.is_empty() {
        return (
            String::new(),
            format!(
                "SELECT * FROM {} WHERE false",
                crate::ident(&format!("{name}_history"))
            ),
        );
    }
    without_deleted(
        lake,
        &format!("_joblake_deleted_{name}"),
        &latest.files,
        true,
    )
}

/// A SELECT of every row of `files` (a table with deletion vectors) but those their deletion
/// vectors delete, and the statement that fills `deleted`, the DuckDB table of those
/// positions it skips (empty when there are none). `hive`: whether the `dt` partition is a
/// column.
pub(crate) fn without_deleted(
    lake: &Lake,
    deleted: &str,
    files: &[DataFile],
    hive: bool,
) -> (String, String) {
    let list_ = list(lake, files.iter().map(|f| &f.path));
    if files.iter().all(|f| f.deleted.is_empty()) {
        return (
            String::new(),
            format!(
                "SELECT * FROM read_parquet([{list_}], union_by_name = true, hive_partitioning = {hive})"
            ),
        );
    }
    let deleted = crate::ident(deleted);
    let rows = files
        .iter()
        .filter(|f| !f.deleted.is_empty())
        .map(|f| {
            let rows = f
                .deleted
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            format!(
                "SELECT {} AS filename, unnest([{rows}])::BIGINT AS file_row_number",
                crate::literal(&lake.reader_path(&f.path))
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL ");
    let prepare = format!("CREATE OR REPLACE TABLE {deleted} AS\n{rows};\n");
    let view = format!(
        "SELECT * EXCLUDE (filename, file_row_number)\n\
         FROM read_parquet([{list_}], union_by_name = true, hive_partitioning = {hive},\n\
           filename = true, file_row_number = true) AS s\n\
         ANTI JOIN {deleted} AS x\n\
           ON s.filename = x.filename AND s.file_row_number = x.file_row_number"
    );
    (prepare, view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(files: &[(u64, &[u64])]) -> LatestTable {
        LatestTable {
            version: 3,
            history: LatestState {
                history_version: 7,
                history_committed_at: 1,
                complete: true,
                merged: 0,
            },
            files: files
                .iter()
                .enumerate()
                .map(|(i, (rows, deleted))| DataFile {
                    path: format!("jobs_latest/part-{i}.parquet"),
                    bytes: 1,
                    rows: Some(*rows),
                    deleted: deleted.to_vec(),
                })
                .collect(),
            columns: Vec::new(),
        }
    }

    #[test]
    fn a_latest_table_is_written_again_once_merges_changed_a_share_of_it() {
        // 1 000 ids, nothing merged yet: only `latest_after = 0` writes it again.
        let mut t = table(&[(1_000, &[])]);
        assert_eq!(t.ids(), 1_000);
        assert!(!t.rewrite_due(0.2));
        assert!(t.rewrite_due(0.0));
        // Merges added 100 rows and deleted 100: 200 of 1 000 ids. Files and partitions do
        // not count: a partitioned table has many.
        let deleted: Vec<u64> = (0..100).collect();
        t = table(&[(900, &deleted), (100, &[]), (100, &[])]);
        t.history.merged = 200;
        assert_eq!(t.ids(), 1_000);
        assert!(t.rewrite_due(0.2));
        assert!(!t.rewrite_due(0.25));
    }

    /// A history file of jobs `ids` (run `run`, page 0, rows in order) with salaries quoted
    /// as `salaries` says, at `jobs/dt=2026-11-30/part-<run>.parquet`: committed to the
    /// history's Delta log.
    async fn jobs_file(
        lake: &Lake,
        dir: &std::path::Path,
        run: &str,
        ids: &[&str],
        salaries: &[Option<&str>],
    ) -> joblake_writer::FileInfo {
        use arrow::array::{ArrayRef, Int64Array, StringArray, new_null_array};
        let schema = joblake_schema::arrow_schema(Table::Jobs);
        let n = ids.len();
        let texts = |v: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let given: Option<ArrayRef> = match f.name().as_str() {
                    "id" => Some(texts(ids.iter().map(|i| Some(i.to_string())).collect())),
                    "_run_id" => Some(texts(vec![Some(run.to_string()); n])),
                    "_page" => Some(Arc::new(Int64Array::from(vec![0; n]))),
                    "_row" => Some(Arc::new(Int64Array::from_iter_values(0..n as i64))),
                    "_fetched_at" => Some(texts(vec![Some("2026-11-30T00:00:00Z".into()); n])),
                    "salary_offered" => Some(texts(
                        salaries.iter().map(|s| s.map(str::to_string)).collect(),
                    )),
                    "salary_currency" => Some(texts(vec![Some("USD".into()); n])),
                    _ if !f.is_nullable() => Some(texts(vec![Some("0".into()); n])),
                    _ => None,
                };
                match given {
                    Some(a) => arrow::compute::cast(&a, f.data_type()).unwrap(),
                    None => new_null_array(f.data_type(), n),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let rel = format!("jobs/dt=2026-11-30/part-{run}.parquet");
        let file = dir.join(&rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&file).unwrap(),
            Arc::clone(&schema),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let info = joblake_writer::FileInfo {
            path: rel,
            dt: "2026-11-30".into(),
            rows: n as u64,
            bytes: std::fs::metadata(&file).unwrap().len(),
        };
        let commit = Commit {
            adds: vec![info.to_add()],
            ..Commit::default()
        };
        DeltaLog::new(lake, "jobs")
            .unwrap()
            .commit(schema, commit)
            .await
            .unwrap();
        info
    }

    #[tokio::test]
    async fn a_jobs_latest_table_made_before_the_salary_columns_gains_them() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), true).unwrap();
        let file = jobs_file(
            &lake,
            dir.path(),
            "20261130T000000000Z",
            &["a", "b", "c"],
            &[Some("$25.50 an hour"), Some("60,000 per year"), None],
        )
        .await;
        // The latest table as a joblake before the salary columns made it: the history's
        // columns, its file copied as it is.
        let history = history_now(&lake, Table::Jobs).await.unwrap().unwrap();
        let copy = "jobs_latest/dt=2026-11-30/part-20261130T000000000Z.parquet";
        std::fs::create_dir_all(dir.path().join("jobs_latest/dt=2026-11-30")).unwrap();
        std::fs::copy(dir.path().join(&file.path), dir.path().join(copy)).unwrap();
        let old = Commit {
            adds: vec![
                joblake_writer::FileInfo {
                    path: copy.into(),
                    ..file.clone()
                }
                .to_add(),
            ],
            state: Some(serde_json::to_string(&state_of(&history, 0)).unwrap()),
            ..Commit::default()
        };
        let log = DeltaLog::latest(&lake, "jobs_latest").unwrap();
        log.commit(joblake_schema::arrow_schema(Table::Jobs), old)
            .await
            .unwrap();
        let before = read(&lake, Table::Jobs).await.unwrap().unwrap();
        assert!(before.exact_for(&history) && !before.has_added_columns(Table::Jobs));
        // Its view works the salaries out from the rows it reads.
        let sql = catalog::view_sql(&lake).await.unwrap();
        assert!(sql.contains("_salary_word"), "{sql}");

        // A run commits more rows: the table is written again, with the columns.
        jobs_file(
            &lake,
            dir.path(),
            "20261130T010000000Z",
            &["c", "d"],
            &[Some("up to 45K a year"), None],
        )
        .await;
        let report = keep_exact(&lake, Table::Jobs, 0.2).await.unwrap().unwrap();
        assert!(report.rewritten && report.ids == 4, "{report:?}");
        let after = read(&lake, Table::Jobs).await.unwrap().unwrap();
        assert!(after.has_added_columns(Table::Jobs), "{:?}", after.columns);
        let sql = catalog::view_sql(&lake).await.unwrap();
        assert!(!sql.contains("_salary_word"), "{sql}");
        // Its files hold them, worked out as the SQL says.
        let rows = crate::query_many(
            &crate::Engine::default(),
            "",
            &[format!(
                "SELECT id, salary_period, salary_annual_from, salary_annual_to \
                 FROM read_parquet([{}]) ORDER BY id",
                list(&lake, after.files.iter().map(|f| &f.path))
            )],
        )
        .unwrap();
        let got: Vec<String> = (0..rows[0][0].num_rows())
            .map(|r| {
                (0..4)
                    .map(|c| {
                        arrow::util::display::array_value_to_string(rows[0][0].column(c), r)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        assert_eq!(
            got,
            [
                "a|hour|53040.0|",
                "b|year|60000.0|",
                "c|year||45000.0",
                "d|||",
            ]
        );
    }

    #[test]
    fn the_view_skips_exactly_the_rows_the_deletion_vectors_delete() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), false).unwrap();
        let plain = table(&[(10, &[]), (5, &[])]);
        let (prepare, view) = view_select(&lake, Table::Jobs, &plain);
        assert!(prepare.is_empty(), "{prepare}");
        assert!(view.contains("part-0.parquet") && view.contains("part-1.parquet"));
        assert!(!view.contains("ANTI JOIN"), "{view}");

        let with_dvs = table(&[(10, &[2, 7]), (5, &[])]);
        let (prepare, view) = view_select(&lake, Table::Jobs, &with_dvs);
        assert!(prepare.contains("_joblake_deleted_jobs"), "{prepare}");
        assert!(prepare.contains("unnest([2,7])"), "{prepare}");
        assert!(!prepare.contains("part-1.parquet"), "{prepare}");
        assert!(view.contains("ANTI JOIN"), "{view}");
    }
}
