//! The lake's tables as Delta Lake tables, written through the Delta protocol's own Rust
//! kernel (`delta_kernel`): each commit of a run is one Delta commit carrying the files it
//! publishes, the table's checkpoint (as the domain metadata [`STATE_DOMAIN`]) and a `txn`
//! (application [`APP_ID`], one version per commit), so data and cursor land together or not
//! at all, and any Delta reader sees exactly the files the log names.
//!
//! The kernel's calls block; they run on tokio's blocking threads, the kernel's own I/O on
//! one runtime kept for the process.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use arrow::array::{Array, AsArray, StructArray};
use arrow::datatypes::{Schema, SchemaRef};
use chrono::{NaiveDate, Utc};
use delta_kernel::actions::deletion_vector_writer::{
    KernelDeletionVector, StreamingDeletionVectorWriter,
};
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromArrow;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::expressions::Scalar;
use delta_kernel::schema::{DataType as KernelType, StructField, StructType};
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::data_layout::DataLayout;
use delta_kernel::transaction::{
    CommitResult, Transaction, TransactionBuilder, TransactionType, UpdateTableOperation,
};
use delta_kernel::{EngineData, FileMeta, FilteredEngineData, KernelError, Snapshot, SnapshotRef};
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::parquet::DataFileMetadata;
use delta_kernel_default_engine::{DefaultEngine, DefaultEngineBuilder, build_add_file_metadata};
use object_store::path::Path;
use url::Url;

use crate::{Error, Lake, Result};

/// The engine through which joblake reads and writes a lake's Delta logs.
pub(crate) type Engine = DefaultEngine<TokioMultiThreadExecutor>;

/// The domain metadata holding a history table's checkpoint (see `table.rs`'s `StateFile`).
pub const STATE_DOMAIN: &str = "joblake.state";

/// The domain metadata of a latest table: which version of its history table it is exact for
/// (see [`LatestState`]).
pub const LATEST_DOMAIN: &str = "joblake.latest";

/// The domain metadata of a table derived from a history table by SQL (the changes tables):
/// which version of its history table its rows are exact for.
pub const DERIVED_DOMAIN: &str = "joblake.derived";

/// The `txn` application id of joblake's commits; its version counts them.
pub const APP_ID: &str = "joblake";

/// Who wrote a commit, as its `commitInfo` says.
const ENGINE_INFO: &str = concat!("joblake/", env!("CARGO_PKG_VERSION"));

/// The history's partition column.
pub const PARTITION: &str = "dt";

/// A checkpoint of the log every so many versions, so a reader replays a few commits at most.
const CHECKPOINT_EVERY: u64 = 20;

/// The kernel's I/O runs here: one runtime for the process (never dropped, so never dropped
/// inside an async context either).
static EXECUTOR: Mutex<Option<Arc<TokioMultiThreadExecutor>>> = Mutex::new(None);

/// An engine for the store a lake's Delta logs are reached through (rooted at `/` for a
/// local lake, at the bucket for S3, as the kernel resolves table URLs).
pub(crate) fn engine(store: Arc<dyn object_store::ObjectStore>) -> Result<Arc<Engine>> {
    // Made under the lock, so a runtime is never made twice (and one dropped in a task).
    let mut slot = EXECUTOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let executor = match slot.as_ref() {
        Some(e) => Arc::clone(e),
        None => {
            let made = TokioMultiThreadExecutor::new_owned_runtime(Some(1), None).map_err(|e| {
                Error::Delta {
                    table: "(every table)".into(),
                    detail: format!("cannot start the Delta engine's runtime: {e}"),
                }
            })?;
            Arc::clone(slot.insert(Arc::new(made)))
        }
    };
    drop(slot);
    Ok(Arc::new(
        DefaultEngineBuilder::new(Arc::new(crate::log_cache::CommitCache::new(store)))
            .with_task_executor(executor)
            .build(),
    ))
}

/// A file to add to a table in a commit.
#[derive(Debug, Clone)]
pub struct AddFile {
    /// Lake-relative path (`<table>/dt=YYYY-MM-DD/part-….parquet`).
    pub path: String,
    /// The `dt` partition (`YYYY-MM-DD`).
    pub dt: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows in the file.
    pub rows: u64,
}

/// One commit to a table's log.
#[derive(Debug, Default)]
pub struct Commit {
    /// Files the commit adds.
    pub adds: Vec<AddFile>,
    /// Lake-relative paths of files the commit removes.
    pub removes: Vec<String>,
    /// Rows of the table's files that the commit deletes, by lake-relative path: every row
    /// deleted from the file so far, not only the new ones (a file's deletion vector replaces
    /// the one before). Latest tables only.
    pub deletions: BTreeMap<String, Vec<u64>>,
    /// The table's own domain metadata after the commit (JSON), when it moves: a history
    /// table's checkpoint ([`STATE_DOMAIN`]), a latest table's [`LatestState`].
    pub state: Option<String>,
    /// What the commit does, for the log's `commitInfo`.
    pub operation: Operation,
}

/// What a commit does.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A run's pages.
    #[default]
    Write,
    /// A compaction: the same rows in fewer files.
    Optimize,
    /// A latest table taking in a run's rows: the ids it replaced deleted, its latest rows
    /// added.
    Merge,
}

/// The two kinds of Delta table in a lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Every row version, partitioned by `dt`, its checkpoint in [`STATE_DOMAIN`].
    History,
    /// The latest version of every id, partitioned by `dt` too, with deletion vectors, its
    /// [`LatestState`] in [`LATEST_DOMAIN`].
    Latest,
    /// Rows worked out from a history table's (a changes table), partitioned by `dt`,
    /// appended to or written again whole, its state in [`DERIVED_DOMAIN`].
    Derived,
    /// Rows worked out from a history table's, one per id (the lifecycle table), partitioned
    /// by `dt`, merged into with deletion vectors, its state in [`DERIVED_DOMAIN`].
    DerivedPerId,
}

impl Kind {
    /// The domain metadata the table's own state lies in.
    fn domain(self) -> &'static str {
        match self {
            Kind::History => STATE_DOMAIN,
            Kind::Latest => LATEST_DOMAIN,
            Kind::Derived | Kind::DerivedPerId => DERIVED_DOMAIN,
        }
    }
}

/// The newest snapshot of each table (by its root) this process has read. A table's log
/// only grows (versions are never rewritten or removed), so a snapshot stays a valid
/// starting point for reading the versions after it.
static SNAPSHOTS: LazyLock<Mutex<HashMap<Url, SnapshotRef>>> = LazyLock::new(Default::default);

fn read_before(root: &Url) -> Option<SnapshotRef> {
    SNAPSHOTS.lock().ok()?.get(root).cloned()
}

fn remember(root: &Url, snapshot: &SnapshotRef) {
    if let Ok(mut known) = SNAPSHOTS.lock() {
        let newer = known
            .get(root)
            .is_none_or(|k| k.version() < snapshot.version());
        if newer {
            known.insert(root.clone(), Arc::clone(snapshot));
        }
    }
}

/// What was read of a table's version (its state, its files, when it was committed), by
/// table root and what: a version never changes, so a command that asks again (a status
/// makes the views' SQL for each of its queries) gets the answer without replaying the log
/// again. Only the newest version asked of each is kept.
type Recalled = (u64, Arc<dyn Any + Send + Sync>);
static READ: LazyLock<Mutex<HashMap<(Url, &'static str), Recalled>>> =
    LazyLock::new(Default::default);

fn recall<T: Clone + 'static>(root: &Url, what: &'static str, version: u64) -> Option<T> {
    let read = READ.lock().ok()?;
    let (at, value) = read.get(&(root.clone(), what))?;
    (*at == version)
        .then(|| value.downcast_ref::<T>().cloned())
        .flatten()
}

fn keep<T: Clone + Send + Sync + 'static>(root: &Url, what: &'static str, version: u64, value: &T) {
    if let Ok(mut read) = READ.lock() {
        let key = (root.clone(), what);
        if read.get(&key).is_none_or(|(at, _)| *at <= version) {
            read.insert(key, (version, Arc::new(value.clone())));
        }
    }
}

/// A table's Delta log.
#[derive(Clone)]
pub struct DeltaLog {
    engine: Arc<Engine>,
    lake: Lake,
    table: String,
    kind: Kind,
    /// The table's root URL, with a trailing slash.
    root: Url,
}

impl DeltaLog {
    /// The log of history table `table`.
    pub fn new(lake: &Lake, table: &str) -> Result<DeltaLog> {
        Self::of_kind(lake, table, Kind::History)
    }

    /// The log of the latest table at `<lake>/<name>/`.
    pub fn latest(lake: &Lake, name: &str) -> Result<DeltaLog> {
        Self::of_kind(lake, name, Kind::Latest)
    }

    /// The log of the derived table at `<lake>/<name>/` (see [`DERIVED_DOMAIN`]).
    pub fn derived(lake: &Lake, name: &str) -> Result<DeltaLog> {
        Self::of_kind(lake, name, Kind::Derived)
    }

    /// The log of the derived table at `<lake>/<name>/` that holds one row per id and is
    /// merged into with deletion vectors (see [`DERIVED_DOMAIN`]).
    pub fn derived_per_id(lake: &Lake, name: &str) -> Result<DeltaLog> {
        Self::of_kind(lake, name, Kind::DerivedPerId)
    }

    fn of_kind(lake: &Lake, table: &str, kind: Kind) -> Result<DeltaLog> {
        Ok(DeltaLog {
            engine: lake.delta_engine()?,
            lake: lake.clone(),
            table: table.to_string(),
            kind,
            root: lake.table_url(table)?,
        })
    }

    /// The table's version `version`.
    pub async fn snapshot_at(&self, version: u64) -> Result<SnapshotRef> {
        let (engine, root) = (Arc::clone(&self.engine), self.root.clone());
        self.blocking(move || {
            Snapshot::builder_for(root.as_str())
                .at_version(version)
                .build(engine.as_ref())
        })
        .await
    }

    /// The table's newest snapshot, or `None` while it has no log.
    ///
    /// The newest snapshot this process has read of the table is the starting point: only
    /// the log past it is listed and read (the kernel's incremental snapshot), where a
    /// command that reads a table's state, files and views several times would otherwise
    /// list and replay its whole log each time (on S3, a request per commit file each time).
    pub async fn snapshot(&self) -> Result<Option<SnapshotRef>> {
        let known = read_before(&self.root);
        if known.is_none() {
            let log = Path::from(format!("{}/_delta_log", self.table));
            if self.lake.list(&log).await?.is_empty() {
                return Ok(None);
            }
        }
        let (engine, root) = (Arc::clone(&self.engine), self.root.clone());
        let snapshot = self
            .blocking(move || match known {
                Some(known) => Snapshot::builder_from(known).build(engine.as_ref()),
                None => Snapshot::builder_for(root.as_str()).build(engine.as_ref()),
            })
            .await
            .map_err(|e| match e {
                Error::Delta { table, detail } => Error::Delta {
                    detail: format!(
                        "it cannot be read ({detail}); a commit file under \
                         {table}/_delta_log/ that cannot be read can be moved aside, and the \
                         next run then fetches its rows again"
                    ),
                    table,
                },
                e => e,
            })?;
        remember(&self.root, &snapshot);
        Ok(Some(snapshot))
    }

    /// The table's newest version (`None` while it has no log) and its own state (see
    /// [`Commit::state`]) read as `S`: why not, when the log holds none or one that does not
    /// read as `S` (a table joblake derives is then written again from its files).
    pub async fn newest_state<S: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Option<(SnapshotRef, std::result::Result<S, String>)>> {
        let Some(snapshot) = self.snapshot().await? else {
            return Ok(None);
        };
        let state = match self.state(&snapshot).await? {
            None => Err(format!(
                "the log of {} does not say which history version it holds",
                self.table
            )),
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                format!(
                    "the log of {} holds a state joblake cannot read: {e}",
                    self.table
                )
            }),
        };
        Ok(Some((snapshot, state)))
    }

    /// The names of the table's columns as `snapshot` has them (`dt` among them).
    pub fn columns(snapshot: &SnapshotRef) -> Vec<String> {
        snapshot
            .schema()
            .fields()
            .map(|f| f.name().to_string())
            .collect()
    }

    /// The table's own domain metadata (see [`Commit::state`]) as `snapshot` has it.
    pub async fn state(&self, snapshot: &SnapshotRef) -> Result<Option<String>> {
        self.remembered(snapshot, "state", async {
            let (engine, snapshot) = (Arc::clone(&self.engine), Arc::clone(snapshot));
            let domain = self.kind.domain();
            self.blocking(move || snapshot.get_domain_metadata(domain, engine.as_ref()))
                .await
        })
        .await
    }

    /// The files of a snapshot with their rows and the rows their deletion vectors delete,
    /// in path order.
    pub async fn files_with_deletions(&self, snapshot: &SnapshotRef) -> Result<Vec<DataFile>> {
        self.remembered(snapshot, "files_with_deletions", async {
            let (engine, snapshot) = (Arc::clone(&self.engine), Arc::clone(snapshot));
            let (table, root) = (self.table.clone(), self.root.clone());
            let mut files = self
                .blocking(move || {
                    let scan = Arc::clone(&snapshot).scan_builder().build()?;
                    let mut scanned = Vec::new();
                    for meta in scan.scan_metadata(engine.as_ref())? {
                        scanned =
                            meta?.visit_scan_files(scanned, |files, file| files.push(file))?;
                    }
                    scanned
                        .into_iter()
                        .map(|file| {
                            let deleted = file
                                .dv_info
                                .get_row_indexes(engine.as_ref(), &root)?
                                .unwrap_or_default();
                            Ok(DataFile {
                                path: format!("{table}/{}", decode_path(&file.path)),
                                bytes: file.size.max(0) as u64,
                                rows: file.stats.map(|s| s.num_records),
                                deleted,
                            })
                        })
                        .collect::<delta_kernel::KernelResult<Vec<_>>>()
                })
                .await?;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await
    }

    /// The deletion vector files `snapshot`'s files use (lake-relative paths).
    pub async fn deletion_vector_files(&self, snapshot: &SnapshotRef) -> Result<Vec<String>> {
        let (engine, snapshot) = (Arc::clone(&self.engine), Arc::clone(snapshot));
        let table = self.table.clone();
        self.blocking(move || {
            let mut out = Vec::new();
            for files in scan_files(&snapshot, engine.as_ref())? {
                let Some(dv) = files
                    .column("deletionVector")
                    .ok()
                    .and_then(|c| c.as_struct_opt())
                else {
                    continue;
                };
                let (Some(kind), Some(path)) = (
                    dv.column_by_name("storageType")
                        .and_then(|c| c.as_string_opt::<i32>()),
                    dv.column_by_name("pathOrInlineDv")
                        .and_then(|c| c.as_string_opt::<i32>()),
                ) else {
                    continue;
                };
                for row in 0..dv.len() {
                    if !files.live(row) || dv.is_null(row) || kind.value(row) != "u" {
                        continue;
                    }
                    if let Some(rel) = dv_file(path.value(row)) {
                        out.push(format!("{table}/{rel}"));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// When `snapshot`'s version was committed (milliseconds since 1970).
    pub async fn committed_at(&self, snapshot: &SnapshotRef) -> Result<i64> {
        self.remembered(snapshot, "committed_at", async {
            let (engine, snapshot) = (Arc::clone(&self.engine), Arc::clone(snapshot));
            self.blocking(move || snapshot.get_timestamp(engine.as_ref()))
                .await
        })
        .await
    }

    /// The files of a snapshot: lake-relative path, size and `dt`, in path order.
    pub async fn files(&self, snapshot: &SnapshotRef) -> Result<Vec<LiveFile>> {
        self.remembered(snapshot, "files", async {
            let (engine, snapshot) = (Arc::clone(&self.engine), Arc::clone(snapshot));
            let table = self.table.clone();
            let mut files = self
                .blocking(move || {
                    let mut files = Vec::new();
                    for scanned in scan_files(&snapshot, engine.as_ref())? {
                        let paths = scanned.paths()?;
                        let sizes = scanned
                            .column("size")?
                            .as_primitive::<arrow::datatypes::Int64Type>()
                            .clone();
                        for row in 0..paths.len() {
                            if scanned.live(row) {
                                let rel = decode_path(paths.value(row));
                                files.push(LiveFile {
                                    dt: partition_of(&rel).unwrap_or_default(),
                                    path: format!("{table}/{rel}"),
                                    bytes: sizes.value(row).max(0) as u64,
                                });
                            }
                        }
                    }
                    Ok(files)
                })
                .await?;
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await
    }

    /// Commits `commit` on top of the table's newest version (creating the table, with
    /// `schema`, when it has no log yet). Returns the version committed.
    pub async fn commit(&self, schema: SchemaRef, commit: Commit) -> Result<u64> {
        self.lake.confirm_lease().await?;
        self.lake.record_format().await?;
        let snapshot = self.snapshot().await?;
        if snapshot.is_none()
            && let crate::LakeLocation::Local(lake_root) = self.lake.location()
        {
            // The kernel creates a table only in a directory that exists.
            let dir = lake_root.join(&self.table);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|source| Error::Io {
                    context: format!("cannot create the table directory {}", dir.display()),
                    source,
                })?;
        }
        let target = Target {
            engine: Arc::clone(&self.engine),
            lake: self.lake.clone(),
            root: self.root.clone(),
            table: self.table.clone(),
            kind: self.kind,
        };
        let runtime = tokio::runtime::Handle::current();
        let version = self
            .blocking(move || target.commit(&runtime, snapshot, schema, commit))
            .await?;
        if version > 0 && version % CHECKPOINT_EVERY == 0 {
            // A checkpoint only saves readers time: one that fails changes nothing.
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(table = %self.table, error = %e, "could not checkpoint the Delta log");
            }
        }
        Ok(version)
    }

    async fn checkpoint(&self) -> Result<()> {
        let Some(snapshot) = self.snapshot().await? else {
            return Ok(());
        };
        let engine = Arc::clone(&self.engine);
        self.blocking(move || snapshot.checkpoint(engine.as_ref(), None).map(|_| ()))
            .await
    }

    /// What `read` answers of `snapshot`'s version, read once per process (see [`READ`]).
    async fn remembered<T: Clone + Send + Sync + 'static>(
        &self,
        snapshot: &SnapshotRef,
        what: &'static str,
        read: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let version = snapshot.version();
        if let Some(value) = recall(&self.root, what, version) {
            return Ok(value);
        }
        let value = read.await?;
        keep(&self.root, what, version, &value);
        Ok(value)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> delta_kernel::KernelResult<T> + Send + 'static,
    ) -> Result<T> {
        let table = self.table.clone();
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Delta {
                table: table.clone(),
                detail: format!("the Delta kernel's task failed: {e}"),
            })?
            .map_err(|e| Error::Delta {
                table,
                detail: e.without_backtrace().to_string(),
            })
    }
}

/// The files of `table`'s current version, as any Delta reader sees them (in path order), or
/// `None` while the table has no Delta log.
pub async fn live_files(lake: &Lake, table: &str) -> Result<Option<Vec<LiveFile>>> {
    let log = DeltaLog::new(lake, table)?;
    match log.snapshot().await? {
        Some(snapshot) => Ok(Some(log.files(&snapshot).await?)),
        None => Ok(None),
    }
}

/// A file of a table's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// Lake-relative path.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// The `dt` partition, when the table has one.
    pub dt: String,
}

impl LiveFile {
    /// The file as the store lists it (its date unknown: now).
    pub fn object_meta(&self) -> object_store::ObjectMeta {
        object_store::ObjectMeta {
            location: Path::from(self.path.as_str()),
            last_modified: Utc::now(),
            size: self.bytes,
            e_tag: None,
            version: None,
        }
    }
}

/// A file of a latest table's version: its rows, and which of them its deletion vector
/// deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Lake-relative path.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows in the file, as its `add` says.
    pub rows: Option<u64>,
    /// The rows its deletion vector deletes, in order (none without one).
    pub deleted: Vec<u64>,
}

/// A latest table's [`LATEST_DOMAIN`]: the version of its history table whose every id's
/// latest version it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LatestState {
    /// The version of the history table it is exact for.
    pub history_version: u64,
    /// When that version was committed (milliseconds since 1970), so that a history log made
    /// again from its first version is not taken for the one it replaced.
    pub history_committed_at: i64,
    /// False between the two commits of a merge whose copied files hold rows to delete (see
    /// `views/latest.rs`): the table is not exact until the second.
    #[serde(default = "complete")]
    pub complete: bool,
    /// Rows merges added or deleted since the table was last written again from the history.
    #[serde(default)]
    pub merged: u64,
}

fn complete() -> bool {
    true
}

/// Where a commit goes, moved onto a blocking thread.
struct Target {
    engine: Arc<Engine>,
    lake: Lake,
    root: Url,
    table: String,
    kind: Kind,
}

impl Target {
    fn commit(
        &self,
        runtime: &tokio::runtime::Handle,
        snapshot: Option<SnapshotRef>,
        schema: SchemaRef,
        commit: Commit,
    ) -> delta_kernel::KernelResult<u64> {
        let engine: &Engine = self.engine.as_ref();
        let (root, table) = (&self.root, self.table.as_str());
        let txn_version = match &snapshot {
            Some(s) => s.get_app_id_version(APP_ID, engine)?.unwrap_or(0) + 1,
            None => 1,
        };
        let snapshot = match snapshot {
            Some(snapshot) => snapshot,
            None => {
                if !commit.removes.is_empty() || !commit.deletions.is_empty() {
                    return Err(KernelError::generic(
                        "cannot remove or delete from a table with no log",
                    ));
                }
                // Every kind partitioned by `dt`; a table of one row per id deletes with
                // deletion vectors.
                let mut properties = vec![
                    ("delta.feature.domainMetadata", "supported"),
                    ("delta.dataSkippingNumIndexedCols", "0"),
                ];
                if matches!(self.kind, Kind::Latest | Kind::DerivedPerId) {
                    properties.push(("delta.enableDeletionVectors", "true"));
                }
                let builder = create_table(
                    root.as_str(),
                    Arc::new(table_schema(&schema)?),
                    ENGINE_INFO,
                    true,
                )
                .with_table_properties(properties)
                .with_data_layout(DataLayout::partitioned([PARTITION]));
                let domain = self.kind.domain();
                let mut txn = stamp(builder, txn_version, domain, commit.state)
                    .build(engine, Box::new(FileSystemCommitter::new()))?;
                add_all(&mut txn, root, table, &commit.adds)?;
                return finish(table, txn.commit(engine)?);
            }
        };
        let operation = match commit.operation {
            Operation::Write => UpdateTableOperation::Write,
            Operation::Optimize => UpdateTableOperation::Optimize,
            Operation::Merge => UpdateTableOperation::Merge,
        };
        let data_change = commit.operation != Operation::Optimize;
        let mut builder = Arc::clone(&snapshot).update_table(operation, ENGINE_INFO, data_change);
        if self.kind == Kind::Latest {
            // A latest table made before it kept a column of its own (a jobs latest table
            // before the salary columns) gains it with the commit that first writes it.
            let have = snapshot.schema();
            for field in table_schema(&schema)?.fields() {
                if have.field(field.name()).is_none() {
                    builder = builder.add_column(field.clone());
                }
            }
        }
        let mut txn = stamp(builder, txn_version, self.kind.domain(), commit.state)
            .build(engine, Box::new(FileSystemCommitter::new()))?;
        add_all(&mut txn, root, table, &commit.adds)?;
        let relative = |p: &String| {
            p.strip_prefix(&format!("{table}/"))
                .unwrap_or(p)
                .to_string()
        };
        if !commit.removes.is_empty() {
            let wanted: HashSet<String> = commit.removes.iter().map(relative).collect();
            let mut found = 0;
            for files in scan_files(&snapshot, engine)? {
                let paths = files.paths()?;
                let selection: Vec<bool> = (0..paths.len())
                    .map(|row| files.live(row) && wanted.contains(&decode_path(paths.value(row))))
                    .collect();
                let n = selection.iter().filter(|s| **s).count();
                if n > 0 {
                    found += n;
                    txn.remove_files(FilteredEngineData::try_new(files.batch, selection)?);
                }
            }
            if found != wanted.len() {
                return Err(KernelError::generic(format!(
                    "{} of the {} files to remove are not in the table",
                    wanted.len() - found,
                    wanted.len()
                )));
            }
        }
        if !commit.deletions.is_empty() {
            let deletions: HashMap<String, &Vec<u64>> = commit
                .deletions
                .iter()
                .map(|(path, rows)| (relative(path), rows))
                .collect();
            self.delete_rows(runtime, &snapshot, &mut txn, deletions)?;
        }
        finish(table, txn.commit(engine)?)
    }

    /// Stages new deletion vectors: every one written into one new file beside the data, then
    /// put in place of the files' old ones.
    fn delete_rows(
        &self,
        runtime: &tokio::runtime::Handle,
        snapshot: &SnapshotRef,
        txn: &mut Transaction,
        deletions: HashMap<String, &Vec<u64>>,
    ) -> delta_kernel::KernelResult<()> {
        let write_state = txn.write_state()?;
        // Deletion vectors lie at the table's root whatever the partition; a context needs one.
        let dt = deletions
            .keys()
            .find_map(|p| partition_of(p))
            .ok_or_else(|| KernelError::generic("no file to delete rows from"))?;
        let day = NaiveDate::parse_from_str(&dt, "%Y-%m-%d")
            .map_err(|e| KernelError::generic(format!("partition {dt:?}: {e}")))?;
        let days = (day - NaiveDate::default()).num_days() as i32;
        let context = write_state
            .write_context_builder()
            .with_partition_values(HashMap::from([(PARTITION.to_string(), Scalar::Date(days))]))
            .build()?;
        let dv_path = context.new_deletion_vector_path(String::new());
        // The log names a file as it was added (URL-encoded); the scan gives that name.
        let mut by_log_path = HashMap::new();
        let mut scanned = Vec::new();
        for files in scan_files(snapshot, self.engine.as_ref())? {
            let paths = files.paths()?;
            for row in 0..paths.len() {
                let raw = paths.value(row);
                if files.live(row) && deletions.contains_key(&decode_path(raw)) {
                    by_log_path.insert(decode_path(raw), raw.to_string());
                }
            }
            let (batch, selected) = (files.batch, files.selected);
            scanned.push(FilteredEngineData::try_new(batch, selected));
        }
        let mut bytes = Vec::new();
        let mut descriptors = HashMap::new();
        {
            let mut writer = StreamingDeletionVectorWriter::new(&mut bytes);
            for (path, rows) in &deletions {
                let log_path = by_log_path.get(path).ok_or_else(|| {
                    KernelError::generic(format!("{path} is not a file of the table"))
                })?;
                let mut dv = KernelDeletionVector::new();
                dv.add_deleted_row_indexes(rows.iter().copied());
                let written = writer.write_deletion_vector(dv)?;
                descriptors.insert(log_path.clone(), written.to_descriptor(&dv_path));
            }
            writer.finalize()?;
        }
        let url = dv_path.absolute_path()?;
        let rel = url
            .as_str()
            .strip_prefix(self.root.as_str())
            .ok_or_else(|| KernelError::generic(format!("{url} is outside the table")))?;
        let location = Path::from(format!("{}/{rel}", self.table));
        let lake = self.lake.clone();
        runtime
            .block_on(async move { lake.put(&location, bytes.into()).await })
            .map_err(|e| KernelError::generic(format!("cannot write a deletion vector: {e}")))?;
        txn.update_deletion_vectors(descriptors, scanned.into_iter())
    }
}

/// One batch of a snapshot's file list, as the kernel's scan gives it: a row per file, and
/// which rows are files of the snapshot.
struct ScanFiles {
    batch: Box<ArrowEngineData>,
    selected: Vec<bool>,
}

impl ScanFiles {
    fn column(&self, name: &str) -> delta_kernel::KernelResult<&arrow::array::ArrayRef> {
        self.batch
            .record_batch()
            .column_by_name(name)
            .ok_or_else(|| KernelError::generic(format!("scan files lack {name}")))
    }

    /// Each file's path, as the log writes it.
    fn paths(&self) -> delta_kernel::KernelResult<arrow::array::StringArray> {
        Ok(self.column("path")?.as_string::<i32>().clone())
    }

    /// Whether row `row` is a file of the snapshot (a selection vector shorter than the batch
    /// selects the rows past its end).
    fn live(&self, row: usize) -> bool {
        self.selected.get(row).copied().unwrap_or(true)
    }
}

/// The snapshot's file list, batch by batch.
fn scan_files(
    snapshot: &SnapshotRef,
    engine: &Engine,
) -> delta_kernel::KernelResult<Vec<ScanFiles>> {
    let scan = Arc::clone(snapshot).scan_builder().build()?;
    scan.scan_metadata(engine)?
        .map(|meta| {
            let (data, selected) = meta?.scan_files.into_parts();
            Ok(ScanFiles {
                batch: ArrowEngineData::try_from_engine_data(data)?,
                selected,
            })
        })
        .collect()
}

/// What every commit of joblake carries: its `txn`, and the table's checkpoint when it moves.
fn stamp<T: TransactionType>(
    builder: TransactionBuilder<T>,
    txn_version: i64,
    domain: &str,
    state: Option<String>,
) -> TransactionBuilder<T> {
    let builder = builder.with_transaction_id(APP_ID, txn_version);
    match state {
        Some(state) => builder.with_domain_metadata(domain, state),
        None => builder,
    }
}

/// Stages an `add` for each of `adds`.
fn add_all<S>(
    txn: &mut Transaction<S>,
    root: &Url,
    table: &str,
    adds: &[AddFile],
) -> delta_kernel::KernelResult<()> {
    let write_state = txn.write_state()?;
    for add in adds {
        txn.add_files(add_action(&write_state, root, table, add)?);
    }
    Ok(())
}

fn finish<S>(table: &str, result: CommitResult<S>) -> delta_kernel::KernelResult<u64> {
    match result {
        CommitResult::Committed(c) => Ok(c.commit_version()),
        CommitResult::Conflicted(c) => Err(KernelError::generic(format!(
            "another writer committed version {} of {table} first",
            c.conflict_version()
        ))),
        CommitResult::Retryable(r) => Err(KernelError::generic(format!(
            "the commit to {table} failed and may be retried: {}",
            r.error
        ))),
    }
}

/// The Delta schema of a history table: the files' columns plus the `dt` partition.
fn table_schema(schema: &Schema) -> delta_kernel::KernelResult<StructType> {
    let data = StructType::try_from_arrow(schema)?;
    let fields = data
        .fields()
        .filter(|f| f.name() != PARTITION)
        .cloned()
        .chain([StructField::nullable(PARTITION, KernelType::DATE)]);
    StructType::try_new(fields)
}

fn add_action(
    write_state: &Arc<delta_kernel::transaction::WriteState>,
    root: &Url,
    table: &str,
    add: &AddFile,
) -> delta_kernel::KernelResult<Box<dyn EngineData>> {
    let day = NaiveDate::parse_from_str(&add.dt, "%Y-%m-%d")
        .map_err(|e| KernelError::generic(format!("partition {:?}: {e}", add.dt)))?;
    let days = (day - NaiveDate::default()).num_days() as i32;
    let context = write_state
        .write_context_builder()
        .with_partition_values(HashMap::from([(PARTITION.to_string(), Scalar::Date(days))]))
        .build()?;
    let rel = add
        .path
        .strip_prefix(&format!("{table}/"))
        .unwrap_or(&add.path);
    let location = root.join(rel)?;
    // The row count only: the table's `delta.dataSkippingNumIndexedCols` is 0, so no
    // column's min and max is due.
    let stats = count_stats(add.rows);
    let meta = FileMeta::new(location, Utc::now().timestamp_millis(), add.bytes);
    build_add_file_metadata(DataFileMetadata::new(meta, stats), &context)
}

/// Statistics that give the row count.
fn count_stats(rows: u64) -> StructArray {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};
    StructArray::from(vec![(
        Arc::new(Field::new("numRecords", DataType::Int64, true)),
        Arc::new(Int64Array::from(vec![rows as i64])) as Arc<dyn Array>,
    )])
}

/// A path as the log writes it (relative, URL-encoded) as a plain relative path.
fn decode_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The table-relative file of a deletion vector stored as `u` (`<prefix><z85 of its uuid>`),
/// as the Delta protocol names it: `<prefix>/deletion_vector_<uuid>.bin`.
fn dv_file(encoded: &str) -> Option<String> {
    let split = encoded.len().checked_sub(20)?;
    let (prefix, id) = (encoded.get(..split)?, encoded.get(split..)?);
    let uuid = uuid::Uuid::from_slice(&z85::decode(id).ok()?).ok()?;
    Some(if prefix.is_empty() {
        format!("deletion_vector_{uuid}.bin")
    } else {
        format!("{prefix}/deletion_vector_{uuid}.bin")
    })
}

/// The `dt` of a table-relative path (`dt=YYYY-MM-DD/…`).
fn partition_of(rel: &str) -> Option<String> {
    rel.split('/')
        .find_map(|p| p.strip_prefix("dt="))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};
    use object_store::aws::AmazonS3Builder;

    /// Two writers that skip the lake lock and commit at once, on moto's S3: each version is
    /// written once (put-if-absent), the loser of a race is told so, and the log holds exactly
    /// the winners' files.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_never_commit_the_same_version() {
        let moto = joblake_testkit::Moto::shared();
        let bucket = moto.bucket("delta-race");
        let mut builder = AmazonS3Builder::new();
        for (k, v) in joblake_testkit::aws_env(&moto.endpoint) {
            builder = builder.with_config(k.to_lowercase().parse().unwrap(), v);
        }
        let lake = Lake::open_s3(builder, &bucket, "lake").unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        let log = DeltaLog::new(&lake, "t").unwrap();
        log.commit(Arc::clone(&schema), Commit::default())
            .await
            .unwrap();
        let writer = |w: usize| {
            let (log, schema) = (log.clone(), Arc::clone(&schema));
            tokio::spawn(async move {
                let mut won = Vec::new();
                for n in 0..8 {
                    let add = AddFile {
                        path: format!("t/dt=2026-11-28/part-w{w}-{n}.parquet"),
                        dt: "2026-11-28".into(),
                        bytes: 1,
                        rows: 1,
                    };
                    let commit = Commit {
                        adds: vec![add.clone()],
                        ..Commit::default()
                    };
                    match log.commit(Arc::clone(&schema), commit).await {
                        Ok(v) => won.push((v, add.path)),
                        Err(e) => assert!(e.to_string().contains("committed version"), "{e}"),
                    }
                }
                won
            })
        };
        let (a, b) = (writer(1), writer(2));
        let mut won: Vec<(u64, String)> = a.await.unwrap();
        won.extend(b.await.unwrap());
        let mut versions: Vec<u64> = won.iter().map(|(v, _)| *v).collect();
        versions.sort();
        let n = versions.len();
        versions.dedup();
        assert_eq!(versions.len(), n, "a version was committed twice: {won:?}");
        let mut logged: Vec<String> = live_files(&lake, "t")
            .await
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        let mut winners: Vec<String> = won.into_iter().map(|(_, p)| p).collect();
        logged.sort();
        winners.sort();
        assert_eq!(
            logged, winners,
            "the log holds exactly the commits that won"
        );

        // A race lost for certain: a commit built on a version another writer moved past.
        let stale = log.snapshot().await.unwrap().unwrap();
        log.commit(Arc::clone(&schema), Commit::default())
            .await
            .unwrap();
        let target = Target {
            engine: Arc::clone(&log.engine),
            lake: lake.clone(),
            root: log.root.clone(),
            table: "t".into(),
            kind: Kind::History,
        };
        let runtime = tokio::runtime::Handle::current();
        let lost = tokio::task::spawn_blocking(move || {
            target.commit(&runtime, Some(stale), schema, Commit::default())
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(lost.to_string().contains("committed version"), "{lost}");
    }

    /// A process remembers the newest version it read of each table, and still sees every
    /// version another writer (here, another opening of the lake) commits after it.
    #[tokio::test]
    async fn a_remembered_snapshot_still_sees_later_commits() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().display().to_string();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
        let commit = |n: u64| Commit {
            adds: vec![AddFile {
                path: format!("t/dt=2026-11-28/part-{n}.parquet"),
                dt: "2026-11-28".into(),
                bytes: n,
                rows: n,
            }],
            state: Some(format!("{{\"n\":{n}}}")),
            ..Commit::default()
        };
        let ours = DeltaLog::new(&Lake::open(&url, true).unwrap(), "t").unwrap();
        assert!(ours.snapshot().await.unwrap().is_none());
        ours.commit(Arc::clone(&schema), commit(1)).await.unwrap();
        let first = ours.snapshot().await.unwrap().unwrap();
        assert_eq!(
            ours.state(&first).await.unwrap().as_deref(),
            Some("{\"n\":1}")
        );
        assert_eq!(ours.files(&first).await.unwrap().len(), 1);
        let again = ours.snapshot().await.unwrap().unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "an unchanged log is not read again"
        );

        let theirs = DeltaLog::new(&Lake::open(&url, false).unwrap(), "t").unwrap();
        for n in 2..=3 {
            theirs.commit(Arc::clone(&schema), commit(n)).await.unwrap();
        }
        let now = ours.snapshot().await.unwrap().unwrap();
        assert_eq!(now.version(), first.version() + 2);
        assert_eq!(
            ours.state(&now).await.unwrap().as_deref(),
            Some("{\"n\":3}")
        );
        let files = ours.files(&now).await.unwrap();
        assert_eq!(files.iter().map(|f| f.bytes).collect::<Vec<_>>(), [1, 2, 3]);
        // What was read of an older version stays its own.
        assert_eq!(
            ours.state(&first).await.unwrap().as_deref(),
            Some("{\"n\":1}")
        );
        assert_eq!(ours.files(&first).await.unwrap().len(), 1);
    }

    #[test]
    fn log_paths_decode_to_lake_paths() {
        assert_eq!(
            decode_path("dt=2026-11-28/part-20261128T000000000Z-000001.parquet"),
            "dt=2026-11-28/part-20261128T000000000Z-000001.parquet"
        );
        assert_eq!(
            decode_path("a%20b%3Dc/%E2%82%AC.parquet"),
            "a b=c/€.parquet"
        );
        assert_eq!(decode_path("bad%zz%4"), "bad%zz%4");
        // The kernel's own test table's deletion vector.
        assert_eq!(
            dv_file("vBn[lx{q8@P<9BNH/isA").as_deref(),
            Some("deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e.bin")
        );
        assert_eq!(dv_file("short"), None);
        assert_eq!(
            partition_of("dt=2026-01-02/x.parquet").as_deref(),
            Some("2026-01-02")
        );
    }
}
