//! One table's writer for one run: stage pages, stream them into Parquet, commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use bytes::Bytes;
use chrono::Utc;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::delta::{AddFile, Commit, DeltaLog};
use crate::layout;
use crate::sink::ParquetSink;
use crate::stage::{Decoder, RawPage, StagedAt, Stager};
use crate::{Error, Lake, LakeLocation, Result};

/// Knobs for file and row-group sizes.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Commit (and so close the open files) once one of them holds this many rows.
    pub roll_rows: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level for Parquet pages. Level 1: on job rows it makes files within a few per
    /// cent of level 3's size for a good part less CPU and encoder memory.
    pub zstd_level: i32,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            roll_rows: 2_000_000,
            row_group_rows: 122_880,
            zstd_level: 1,
        }
    }
}

/// A Parquet file a commit published.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    /// Lake-relative path.
    pub path: String,
    /// The `dt=` partition.
    pub dt: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

impl FileInfo {
    /// The file as a Delta `add`.
    pub fn to_add(&self) -> AddFile {
        AddFile {
            path: self.path.clone(),
            dt: self.dt.clone(),
            bytes: self.bytes,
            rows: self.rows,
        }
    }
}

/// What one commit published.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommitReport {
    /// Files completed by this commit.
    pub files: Vec<FileInfo>,
    /// Pages the commit covered.
    pub pages: u64,
    /// Rows the commit covered.
    pub rows: u64,
    /// The version of the table's Delta log it committed (none when it had nothing to record).
    pub version: Option<u64>,
}

/// What opening a table found and finished from an earlier, interrupted run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recovery {
    /// Staged pages that were committed now.
    pub pages: u64,
    /// Rows in those pages.
    pub rows: u64,
    /// Files published by the recovery.
    pub files: Vec<FileInfo>,
    /// Staged pages found already committed and only cleaned up.
    pub cleaned: u64,
}

/// A staged page recovery found: its own object, or a record of a staging log.
enum Found {
    Object(Path),
    Record(crate::stage::LogRecord),
}

/// The table's state file: the source's own checkpoint plus the last page it covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateFile {
    format: u32,
    table: String,
    /// The source's checkpoint, opaque to the writer.
    pub(crate) source: Value,
    /// The last staged page whose rows are in published files.
    flushed_through: Option<PagePos>,
    written_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct PagePos {
    run_id: String,
    page: i64,
}

const META_DT: &str = "joblake.dt";
const META_STATE: &str = "joblake.state";
const STATE_FORMAT: u32 = 1;

/// Writes one table of one run. Not shared between tasks: the run drives it page by page.
pub struct TableWriter {
    lake: Lake,
    decoder: Decoder,
    table: String,
    run_id: String,
    schema: SchemaRef,
    opts: WriterOptions,
    open: BTreeMap<String, ParquetSink>,
    /// Staged objects the next commit covers (and so deletes).
    staged: Vec<Path>,
    /// Pages and rows the next commit covers.
    pending_pages: u64,
    staged_rows: u64,
    last_staged: Option<(i64, Value)>,
    committed: Option<StateFile>,
    /// The first write that failed, if one did: from then on the open files may lack rows
    /// the staged pages hold, so [`Self::commit`] refuses and only [`Self::abort`] is left.
    failed: Option<String>,
    /// The table's Delta log, which each commit goes to.
    log: DeltaLog,
    /// The last version this writer committed.
    version: Option<u64>,
    /// The last page (and its run) a commit of this writer covers, for its stagers.
    covered: tokio::sync::watch::Sender<(String, i64)>,
}

impl TableWriter {
    /// Opens `table` for run `run_id`, first committing whatever an interrupted earlier run
    /// staged. The lake lock must be held.
    pub async fn open(
        lake: &Lake,
        table: &str,
        schema: SchemaRef,
        run_id: &str,
        opts: WriterOptions,
        decoder: Decoder,
    ) -> Result<(TableWriter, Recovery)> {
        let log = DeltaLog::new(lake, table)?;
        crate::compact::finish_compactions(lake, table).await?;
        crate::upgrade::register_existing_files(lake, &log, table, &schema).await?;
        let committed = read_state(lake, table).await?;
        let mut writer = TableWriter {
            lake: lake.clone(),
            decoder,
            table: table.to_string(),
            run_id: run_id.to_string(),
            schema,
            opts,
            open: BTreeMap::new(),
            staged: Vec::new(),
            pending_pages: 0,
            staged_rows: 0,
            last_staged: None,
            committed,
            failed: None,
            log,
            version: None,
            covered: tokio::sync::watch::Sender::new((String::new(), 0)),
        };
        let recovery = writer.recover().await?;
        Ok((writer, recovery))
    }

    /// The source checkpoint of the last commit (after any recovery), if there was one.
    pub fn state(&self) -> Option<&Value> {
        self.committed.as_ref().map(|s| &s.source)
    }

    /// The last version of the table's Delta log this writer committed (a recovery's
    /// included).
    pub fn delta_version(&self) -> Option<u64> {
        self.version
    }

    /// Rows staged since the last commit.
    pub fn pending_rows(&self) -> u64 {
        self.staged_rows
    }

    /// The run this writer writes for.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The handle that makes this run's pages durable (see [`Stager`]).
    pub fn stager(&self) -> Stager {
        Stager::new(
            &self.lake,
            &self.table,
            &self.run_id,
            self.covered.subscribe(),
        )
    }

    /// Decodes a page [`Stager::stage`] made durable and streams its rows into the open file
    /// of its partition; `state_after` becomes the table's state once a commit covers it.
    /// Pages come in the order they were staged. An empty page still moves the checkpoint.
    /// Returns the rows that loaded.
    pub async fn append(&mut self, raw: RawPage, state_after: Value) -> Result<u64> {
        self.append_pages(vec![(raw, state_after)]).await
    }

    /// [`Self::append`] for several pages in order: one trip to an encoder thread decodes
    /// them all, and one per partition encodes their rows. A fetch loop ahead of the encoder
    /// hands over what queued up, so the threads trade work a few pages at a time.
    ///
    /// An error here leaves the writer unable to commit: some of the pages may be in the open
    /// files and some not, so the caller aborts and the next run commits the staged pages.
    pub async fn append_pages(&mut self, pages: Vec<(RawPage, Value)>) -> Result<u64> {
        self.refuse_if_failed()?;
        let appended = self.append_staged(pages).await;
        if let Err(e) = &appended {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        appended
    }

    /// An error when a write of this run failed before (see [`Error::WriteFailed`]).
    fn refuse_if_failed(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(cause) => Err(Error::WriteFailed {
                table: self.table.clone(),
                cause: cause.clone(),
            }),
        }
    }

    async fn append_staged(&mut self, pages: Vec<(RawPage, Value)>) -> Result<u64> {
        let n = pages.len();
        let pages = pages
            .into_iter()
            .map(|(raw, state)| {
                let at = match self.lake.location() {
                    LakeLocation::Local(_) => {
                        StagedAt::Log(layout::staging_log(&self.table, &raw.run_id))
                    }
                    LakeLocation::S3 { .. } => {
                        StagedAt::Object(layout::staged_page(&self.table, &raw.run_id, raw.page))
                    }
                };
                (at, raw, state)
            })
            .collect();
        let rows = self.take_in(pages).await?;
        for _ in 0..n {
            crate::crash_point("append:after-write");
        }
        let full = self
            .open
            .values()
            .any(|f| f.rows() >= self.opts.roll_rows as u64);
        if full {
            self.commit(None).await?;
        }
        Ok(rows)
    }

    async fn take_in(&mut self, pages: Vec<(StagedAt, RawPage, Value)>) -> Result<u64> {
        let decoder = Arc::clone(&self.decoder);
        let decoded = crate::cpu::run(move || {
            pages
                .into_iter()
                .map(|(at, raw, state)| {
                    let decoded = decoder(&raw);
                    (at, raw, state, decoded)
                })
                .collect::<Vec<_>>()
        })
        .await;
        // Each partition's rows in page order, with the page that opens its file if needed.
        // The pages count as covered (by the next commit) only once all their rows are
        // written: a failure before that leaves the checkpoint where it was.
        let mut by_dt: Vec<(String, i64, Vec<RecordBatch>)> = Vec::new();
        let mut covered = Vec::new();
        let mut pages = 0;
        let mut last = None;
        let mut rows = 0;
        for (at, raw, state_after, decoded) in decoded {
            let decoded = decoded.map_err(|detail| Error::CorruptStage {
                path: format!("{} (page {} of run {})", self.table, raw.page, raw.run_id),
                detail: format!("its rows cannot be decoded: {detail}"),
            })?;
            crate::crash_point("append:after-decode");
            if let Some(rejects) = decoded.rejects {
                let path = layout::rejects(&self.table, &raw.run_id, raw.page);
                self.lake.put(&path, rejects).await?;
            }
            // A log outlives the commits of its run's pages: its run discards it at the end.
            if let StagedAt::Object(path) = at {
                covered.push(path);
            }
            pages += 1;
            last = Some((raw.page, state_after));
            if decoded.batch.num_rows() == 0 {
                continue;
            }
            rows += decoded.batch.num_rows() as u64;
            let dt = raw.fetched_at.format("%Y-%m-%d").to_string();
            match by_dt.iter_mut().find(|(d, _, _)| *d == dt) {
                Some((_, _, batches)) => batches.push(decoded.batch),
                None => by_dt.push((dt, raw.page, vec![decoded.batch])),
            }
        }
        for (dt, first_page, batches) in by_dt {
            self.write_rows(first_page, &dt, batches).await?;
        }
        self.pending_pages += pages;
        self.staged.extend(covered);
        if let Some(last) = last {
            self.last_staged = Some(last);
        }
        Ok(rows)
    }

    async fn write_rows(&mut self, page: i64, dt: &str, batches: Vec<RecordBatch>) -> Result<()> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(());
        }
        if !self.open.contains_key(dt) {
            let path = layout::data_file(&self.table, dt, &self.run_id, page);
            let metadata = vec![
                ("joblake.run_id".to_string(), self.run_id.clone()),
                ("joblake.first_page".to_string(), page.to_string()),
            ];
            let sink = ParquetSink::create(
                &self.lake,
                &self.table,
                path,
                dt,
                Arc::clone(&self.schema),
                &self.opts,
                metadata,
            )?;
            self.open.insert(dt.to_string(), sink);
        }
        let file = self.open.get_mut(dt).expect("inserted above");
        file.write(batches).await?;
        self.staged_rows += rows as u64;
        Ok(())
    }

    /// Publishes the open files, then records `state` (or, when `None`, the checkpoint of
    /// the last staged page) as the table's state, then drops the staged pages.
    ///
    /// Refused after a failed write (see [`Self::append_pages`]); a commit that fails leaves
    /// the writer refusing too, as some files may be published and the state not written.
    pub async fn commit(&mut self, state: Option<Value>) -> Result<CommitReport> {
        self.refuse_if_failed()?;
        let committed = self.commit_pending(state).await;
        if let Err(e) = &committed {
            self.failed.get_or_insert_with(|| e.to_string());
        }
        committed
    }

    async fn commit_pending(&mut self, state: Option<Value>) -> Result<CommitReport> {
        // Before any file is published: a run that lost the lake publishes nothing.
        self.lake.confirm_lease().await?;
        let mut report = CommitReport {
            pages: self.pending_pages,
            rows: self.staged_rows,
            files: self.publish().await?,
            version: None,
        };
        crate::crash_point("commit:after-publish");
        let mut delta = Commit {
            adds: report.files.iter().map(FileInfo::to_add).collect(),
            ..Commit::default()
        };
        let source = match (state, &self.last_staged) {
            (Some(s), _) => Some(s),
            (None, Some((_, s))) => Some(s.clone()),
            (None, None) => None,
        };
        if let Some(source) = source {
            let flushed_through = match &self.last_staged {
                Some((page, _)) => Some(PagePos {
                    run_id: self.run_id.clone(),
                    page: *page,
                }),
                None => self
                    .committed
                    .as_ref()
                    .and_then(|c| c.flushed_through.clone()),
            };
            let file = StateFile {
                format: STATE_FORMAT,
                table: self.table.clone(),
                source,
                flushed_through,
                written_at: Utc::now().to_rfc3339(),
            };
            delta.state = Some(serde_json::to_string(&file).expect("state serialises"));
            self.committed = Some(file);
        }
        if !delta.adds.is_empty() || delta.state.is_some() {
            // Files and checkpoint land together, in one Delta commit, or not at all.
            let version = self.log.commit(Arc::clone(&self.schema), delta).await?;
            self.version = Some(version);
            report.version = Some(version);
            crate::crash_point("commit:after-state");
        }
        self.lake
            .delete_all(std::mem::take(&mut self.staged))
            .await?;
        if let Some((page, _)) = &self.last_staged {
            // The stager may let go of the log segments this covers.
            self.covered.send_replace((self.run_id.clone(), *page));
        }
        self.pending_pages = 0;
        self.staged_rows = 0;
        self.last_staged = None;
        Ok(report)
    }

    /// Completes the open files and puts them where readers find them.
    async fn publish(&mut self) -> Result<Vec<FileInfo>> {
        let mut files = Vec::new();
        let mut sinks = std::mem::take(&mut self.open).into_values();
        while let Some(sink) = sinks.next() {
            match sink.publish().await {
                Ok(file) => files.push(file),
                Err(e) => {
                    // The rest are given up too, so no upload dangles; the staged pages
                    // still hold every row.
                    for sink in sinks {
                        sink.abort().await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(files)
    }

    /// Publishes the open files and then stops, as a process killed between publishing
    /// and writing the state would (for the crash tests).
    #[doc(hidden)]
    pub async fn publish_then_crash_for_tests(mut self) -> Result<()> {
        self.publish().await?;
        std::mem::forget(self);
        Ok(())
    }

    /// Gives up the open uploads without publishing them. Staged pages stay, so the next
    /// run commits them; nothing a reader sees changes.
    pub async fn abort(mut self) {
        for (_, sink) in std::mem::take(&mut self.open) {
            sink.abort().await;
        }
    }

    async fn recover(&mut self) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        // Files an interrupted run was still writing go: their rows are in its staged pages
        // (an interrupted compaction was finished or undone by `open`).
        self.lake.clear_uploads(&self.table).await?;
        // Every staged page, wherever it is kept, in the order the pages were fetched. A
        // log is only indexed here; each record is read when its turn comes, so recovering a
        // run that staged more than memory holds takes one page at a time.
        let mut staged: BTreeMap<PagePos, Found> = BTreeMap::new();
        let mut logs = Vec::new();
        for meta in self.lake.list(&layout::staging_root(&self.table)).await? {
            let path = meta.location;
            if path.as_ref().ends_with(".log") {
                let LakeLocation::Local(root) = self.lake.location() else {
                    continue;
                };
                let file = root.join(path.as_ref());
                let at = path.clone();
                let records = crate::cpu::run(move || crate::stage::index_log(&file, &at)).await?;
                for record in records {
                    let pos = PagePos {
                        run_id: record.run_id.clone(),
                        page: record.page,
                    };
                    staged.insert(pos, Found::Record(record));
                }
                logs.push(path);
            } else if let Some(pos) = parse_staged(&path) {
                staged.insert(pos, Found::Object(path));
            }
        }
        if staged.is_empty() {
            self.lake.delete_all(logs).await?;
            return Ok(recovery);
        }
        let done = self
            .committed
            .as_ref()
            .and_then(|c| c.flushed_through.clone());
        let (old, todo): (Vec<_>, Vec<_>) = staged
            .into_iter()
            .partition(|(pos, _)| done.as_ref().is_some_and(|d| pos <= d));
        recovery.cleaned = old.len() as u64;
        let old_objects = old
            .into_iter()
            .filter_map(|(_, found)| match found {
                Found::Object(p) => Some(p),
                Found::Record(_) => None,
            })
            .collect();
        self.lake.delete_all(old_objects).await?;

        let own_run = std::mem::take(&mut self.run_id);
        // The checkpoint of the page before the next, which a staged checkpoint may be
        // written as a change to: the last committed page's, at first.
        let mut before: Option<(PagePos, Value)> = self
            .committed
            .as_ref()
            .and_then(|c| Some((c.flushed_through.clone()?, c.source.clone())));
        let mut todo = todo.into_iter().peekable();
        while let Some((pos, found)) = todo.next() {
            // Pages are committed under the run that fetched them, so files keep their names.
            self.run_id = pos.run_id.clone();
            let (at, bytes) = match found {
                Found::Record(record) => {
                    let LakeLocation::Local(root) = self.lake.location() else {
                        unreachable!("staging logs are only listed on a local lake");
                    };
                    let file = root.join(record.log.as_ref());
                    let log = record.log.clone();
                    let bytes =
                        crate::cpu::run(move || crate::stage::read_record(&file, &record)).await?;
                    (StagedAt::Log(log), bytes)
                }
                Found::Object(path) => {
                    let bytes =
                        self.lake
                            .get_opt(&path)
                            .await?
                            .ok_or_else(|| Error::CorruptStage {
                                path: path.to_string(),
                                detail: "it vanished while being read".into(),
                            })?;
                    (StagedAt::Object(path), bytes)
                }
            };
            let what = match &at {
                StagedAt::Object(p) | StagedAt::Log(p) => p.to_string(),
            };
            let rows = if what.ends_with(".arrow") {
                // Staged by joblake before pages were staged raw.
                let StagedAt::Object(path) = at else {
                    unreachable!("an .arrow stage is an object")
                };
                let (batch, dt, state) = decode_stage(&path, bytes)?;
                self.staged.push(path);
                self.pending_pages += 1;
                self.last_staged = Some((pos.page, state.clone()));
                before = Some((pos.clone(), state));
                let rows = batch.num_rows() as u64;
                self.write_rows(pos.page, &dt, vec![batch]).await?;
                rows
            } else {
                let (raw, state) = crate::stage::decode(bytes, &what)?;
                let base = before
                    .as_ref()
                    .filter(|(p, _)| p.run_id == pos.run_id)
                    .map(|(p, v)| (p.page, v));
                let state = state.resolve(base).map_err(|detail| Error::CorruptStage {
                    path: format!("{what} (page {} of run {})", pos.page, pos.run_id),
                    detail,
                })?;
                before = Some((pos.clone(), state.clone()));
                self.take_in(vec![(at, raw, state)]).await?
            };
            recovery.pages += 1;
            recovery.rows += rows;
            crate::crash_point("recover:after-page");
            let run_ends = todo
                .peek()
                .is_none_or(|(next, _)| next.run_id != pos.run_id);
            if run_ends {
                let report = self.commit(None).await?;
                recovery.files.extend(report.files);
            }
        }
        // Every log's pages are committed now (or were before).
        self.lake.delete_all(logs).await?;
        self.run_id = own_run;
        Ok(recovery)
    }
}

/// The table's checkpoint: the domain metadata of its Delta log's last commit, or, in a lake
/// written before its tables were Delta tables (and not yet upgraded), its state file.
pub(crate) async fn read_state(lake: &Lake, table: &str) -> Result<Option<StateFile>> {
    let log = DeltaLog::new(lake, table)?;
    if let Some(snapshot) = log.snapshot().await? {
        let Some(json) = log.state(&snapshot).await? else {
            return Ok(None);
        };
        let file: StateFile = serde_json::from_str(&json).map_err(|e| Error::CorruptState {
            path: format!("{table}/_delta_log ({})", crate::delta::STATE_DOMAIN),
            detail: e.to_string(),
        })?;
        return Ok(Some(file));
    }
    read_legacy_state(lake, table).await
}

/// The state file of a table written before it was a Delta table.
pub(crate) async fn read_legacy_state(lake: &Lake, table: &str) -> Result<Option<StateFile>> {
    let path = layout::state(table);
    let Some(bytes) = lake.get_opt(&path).await? else {
        return Ok(None);
    };
    let corrupt = |detail: String| Error::CorruptState {
        path: lake.reader_path(path.as_ref()),
        detail,
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.format != STATE_FORMAT || file.table != table {
        return Err(corrupt(format!(
            "format {} for table {:?}, expected format {STATE_FORMAT} for {table:?}",
            file.format, file.table
        )));
    }
    Ok(Some(file))
}

fn decode_stage(path: &Path, bytes: Bytes) -> Result<(RecordBatch, String, Value)> {
    let corrupt = |detail: String| Error::CorruptStage {
        path: path.to_string(),
        detail,
    };
    let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| corrupt(e.to_string()))?;
    let meta = reader.custom_metadata().clone();
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    let batch = arrow::compute::concat_batches(&schema, &batches)?;
    let dt = meta
        .get(META_DT)
        .cloned()
        .ok_or_else(|| corrupt("no partition date".into()))?;
    let state = meta
        .get(META_STATE)
        .ok_or_else(|| corrupt("no checkpoint".into()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| corrupt(e.to_string())))?;
    Ok((batch, dt, state))
}

fn parse_staged(path: &Path) -> Option<PagePos> {
    let mut parts: Vec<_> = path.parts().collect();
    let file = parts.pop()?;
    let run = parts.pop()?;
    let name = file.as_ref();
    let page = name
        .strip_suffix(".page")
        .or_else(|| name.strip_suffix(".arrow"))?
        .parse()
        .ok()?;
    Some(PagePos {
        run_id: run.as_ref().to_string(),
        page,
    })
}
