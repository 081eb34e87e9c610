//! Everything DuckDB: sessions for a lake ([`session`]), the view SQL ([`catalog`]), the
//! latest tables the views read ([`latest`]), the changes tables ([`changes`]), the lifecycle
//! table ([`lifecycle`]), the job_company_keys table ([`company_links`]), choosing which companies to enrich
//! ([`companies`]), the status figures ([`status`]) and queries. The one crate that links
//! DuckDB; everything else in joblake builds and tests without it.
#![deny(missing_docs)]

pub mod catalog;
pub mod changes;
pub mod companies;
pub mod company_links;
pub mod latest;
pub mod lifecycle;
pub mod salaries;
pub mod session;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::array::RecordBatch;
use duckdb::{AccessMode, Config, Connection};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The DuckDB release embedded here; extensions loaded into it must be built for it.
pub const DUCKDB_VERSION: &str = "v1.5.5";

/// Where joblake's DuckDB sessions load extensions from (httpfs for S3 lakes; none is ever
/// downloaded): the directory `JOBLAKE_DUCKDB_EXTENSIONS` names when it is set, otherwise
/// `duckdb_extensions/` beside the running binary, where `make build` lays them out; DuckDB's
/// own default (`~/.duckdb/extensions`) when neither is there.
pub fn extension_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("JOBLAKE_DUCKDB_EXTENSIONS").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("duckdb_extensions")).filter(|d| d.is_dir())
}

/// The files `make` fetches, with their SHA-256: DuckDB's library and the extensions laid
/// out beside the binary (`tools/duckdb-fetch` checks them against the same lines).
const PINNED: &str = include_str!("../duckdb.sha256");

/// The extension `name` (`httpfs`, `delta`) in the extension directory `dir`, when its bytes
/// are exactly those pinned in `duckdb.sha256`; `None` when it is missing, unreadable or any
/// other build. Hashed once per process, directory and extension.
fn pinned_extension(dir: &Path, name: &str) -> Option<PathBuf> {
    type Seen = Vec<((PathBuf, String), Option<PathBuf>)>;
    static SEEN: Mutex<Seen> = Mutex::new(Vec::new());
    let key = (dir.to_path_buf(), name.to_string());
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, found)) = seen.iter().find(|(k, _)| *k == key) {
        return found.clone();
    }
    let file = format!("/{name}.duckdb_extension");
    let found = PINNED.lines().find_map(|line| {
        let (sum, pinned) = line.split_once("  ")?;
        let rel = pinned
            .strip_prefix("extensions/")
            .filter(|n| n.ends_with(&file))?;
        let path = dir.join(rel);
        let bytes = std::fs::read(&path).ok()?;
        (hex(&Sha256::digest(&bytes)) == sum).then_some(path)
    });
    seen.push((key, found.clone()));
    found
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How each DuckDB session joblake opens is set up before it runs anything.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    /// A DuckDB extension directory (laid out as `<dir>/v1.5.5/<platform>/httpfs.duckdb_extension`);
    /// DuckDB's own default (`~/.duckdb/extensions`) when `None`.
    pub extension_dir: Option<PathBuf>,
    /// The S3 lake to reach, when the lake is on S3.
    pub s3: Option<S3Secret>,
    /// Cap DuckDB's memory (e.g. `"64MB"`), spilling to a temporary directory beyond it.
    pub memory_limit: Option<String>,
    /// DuckDB's threads: one is leaner still, for work done inside a run; its default (the
    /// machine's cores) when `None`.
    pub threads: Option<u32>,
}

/// Settings of a DuckDB S3 secret, held only in the session's memory (a `TEMPORARY`
/// secret): the DuckDB file never holds a credential.
#[derive(Debug, Clone)]
pub struct S3Secret {
    /// The `s3://bucket/prefix` the secret applies to.
    pub scope: String,
    /// Access key id.
    pub key_id: Option<String>,
    /// Secret access key.
    pub secret: Option<SecretString>,
    /// Session token.
    pub session_token: Option<SecretString>,
    /// Region.
    pub region: Option<String>,
    /// A custom endpoint as `host[:port]`.
    pub endpoint: Option<String>,
    /// Whether to use https.
    pub use_ssl: bool,
    /// `bucket.host` (true) or `host/bucket` (false) requests.
    pub virtual_hosted_style: bool,
}

impl Engine {
    /// `conn` readied by [`Engine::prepare`], with the spill directory it made: for SQL an
    /// analyst wrote (`joblake query`), which may load any extension DuckDB signed. `load`:
    /// pinned extensions to load by their paths first (see [`Engine::pinned_for`]); `conn` was
    /// then opened with `allow_unsigned_extensions`, and nothing autoloads after them.
    fn session(&self, conn: Connection, load: &[PathBuf]) -> Result<Session> {
        let spill = self.prepare(&conn, load, false)?;
        Ok(Session {
            conn,
            _spill: spill,
            _claim: None,
        })
    }

    /// A fresh in-memory database for joblake's own SQL, readied by [`Engine::prepare`].
    ///
    /// On an S3 lake DuckDB would check httpfs's signature each time a database loads it: a
    /// SHA-256 of its 21 MB through mbedtls, about a tenth of a CPU-second, twice in a
    /// `refresh` or `compact` and once in a `status` (BENCHMARKS.md, "httpfs checked once, each
    /// Delta commit fetched once"). When the file is byte for byte the build pinned in
    /// `duckdb.sha256` (hashed here once per process, with the CPU's SHA instructions), the
    /// database is opened with `allow_unsigned_extensions`, loads that file by its path and
    /// then autoloads nothing: no other extension, signed or not, can enter such a session.
    /// Any other httpfs (a newer build, a changed file) is loaded as before, its signature
    /// checked by DuckDB.
    ///
    /// The database is the process's own, shared by its sessions one at a time (see
    /// [`Shared`]): opening one costs DuckDB about 13 ms of CPU, and a refresh ran twelve.
    fn own_session(&self) -> Result<Session> {
        let httpfs = self.pinned_httpfs();
        let slot = &SHARED[usize::from(!httpfs.is_empty())];
        let Some(mut claim) = slot.claim() else {
            // Another session of this process holds it: one of its own, as before.
            return self.fresh_session();
        };
        let conn = claim.connection(!httpfs.is_empty())?;
        let spill = self.prepare(&conn, &httpfs, true)?;
        Ok(Session {
            conn,
            _spill: spill,
            _claim: Some(claim),
        })
    }

    /// A session of a fresh in-memory database of its own, readied as [`Engine::own_session`]'s
    /// are: for work that changes what a database allows (`query_confined`) or attaches files
    /// (the views' rebuild), which must not outlive the session.
    fn fresh_session(&self) -> Result<Session> {
        let httpfs = self.pinned_httpfs();
        let conn = open_in_memory(!httpfs.is_empty())?;
        let spill = self.prepare(&conn, &httpfs, false)?;
        Ok(Session {
            conn,
            _spill: spill,
            _claim: None,
        })
    }

    /// httpfs, on an S3 lake, when it is the pinned build (see [`Engine::own_session`]).
    fn pinned_httpfs(&self) -> Vec<PathBuf> {
        self.s3
            .as_ref()
            .and(self.extension_dir.as_deref())
            .and_then(|dir| pinned_extension(dir, "httpfs"))
            .into_iter()
            .collect()
    }

    /// The pinned extensions an analyst's `sql` is likely to need, to be loaded by their paths
    /// rather than checked by DuckDB (a SHA-256 through mbedtls of 21 MB for httpfs and 82 MB
    /// for delta: 0.1 and 0.45 CPU-s, each time a process loads them): httpfs on an S3 lake, and
    /// delta when the SQL names `delta_scan`. Empty when any of them is not the pinned build
    /// (DuckDB checks them all then), or none is needed.
    fn pinned_for(&self, sql: &str) -> Vec<PathBuf> {
        let Some(dir) = self.extension_dir.as_deref() else {
            return Vec::new();
        };
        let mut wanted = Vec::new();
        if self.s3.is_some() {
            wanted.push("httpfs");
        }
        if sql.to_ascii_lowercase().contains("delta_scan") {
            wanted.push("delta");
        }
        wanted
            .into_iter()
            .map(|name| pinned_extension(dir, name))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    }

    /// Readies a fresh session: extensions load from the configured directory when a query
    /// first needs them (httpfs for `s3://`) and are never downloaded; the S3 secret is made.
    /// With a memory limit, DuckDB spills to a private temporary directory (returned: it is
    /// removed when dropped).
    /// The extensions in `load`, when any, are loaded from those paths and autoloading is then
    /// switched off (see [`Engine::own_session`]). In the process's `shared` database, which
    /// spills to its own directory, every setting a session may change is set or reset, as
    /// DuckDB keeps them database-wide.
    fn prepare(
        &self,
        conn: &Connection,
        load: &[PathBuf],
        shared: bool,
    ) -> Result<Option<tempfile::TempDir>> {
        let mut sql = String::from(
            "SET autoinstall_known_extensions = false; SET autoload_known_extensions = true;",
        );
        match &self.extension_dir {
            Some(dir) => sql.push_str(&format!(
                " SET extension_directory = {};",
                literal(&dir.display().to_string())
            )),
            None if shared => sql.push_str(" RESET extension_directory;"),
            None => {}
        }
        for path in load {
            sql.push_str(&format!(" LOAD {};", literal(&path.display().to_string())));
        }
        if !load.is_empty() {
            sql.push_str(" SET autoload_known_extensions = false;");
        }
        conn.execute_batch(&sql)?;
        let mut spill = None;
        if let Some(limit) = &self.memory_limit {
            if !shared {
                let dir = spill_dir()?;
                conn.execute_batch(&format!(
                    "SET temp_directory = {};",
                    literal(&dir.path().display().to_string())
                ))?;
                spill = Some(dir);
            }
            // DuckDB's allocator otherwise keeps what a query frees in bulk (a spilled
            // aggregate's partitions) up to 512 MiB, beyond the limit.
            conn.execute_batch(&format!(
                "SET memory_limit = {}; SET preserve_insertion_order = false; \
                 SET allocator_bulk_deallocation_flush_threshold = '4MB';",
                literal(limit),
            ))?;
        } else if shared {
            conn.execute_batch(
                "RESET memory_limit; RESET preserve_insertion_order; \
                 RESET allocator_bulk_deallocation_flush_threshold;",
            )?;
        }
        if let Some(threads) = self.threads {
            conn.execute_batch(&format!("SET threads = {threads};"))?;
        } else if shared {
            conn.execute_batch("RESET threads;")?;
        }
        if let Some(s3) = &self.s3 {
            // DuckDB's messages may quote the statement, so its own text never leaves here.
            conn.execute_batch(&s3.create_sql())
                .map_err(|e| self.explain(e.into()))
                .map_err(|e| match e {
                    Error::MissingHttpfs { .. } | Error::BadHttpfs { .. } => e,
                    _ => Error::Secret,
                })?;
        }
        Ok(spill)
    }

    /// Turns DuckDB's "extension not found" into what to do about it.
    fn explain(&self, e: Error) -> Error {
        let text = e.to_string();
        let dir = || {
            self.extension_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "~/.duckdb/extensions (DuckDB's default)".into())
        };
        if text.contains("httpfs") && (text.contains("not found") || text.contains("INSTALL")) {
            return Error::MissingHttpfs { dir: dir() };
        }
        if text.contains("httpfs") && text.contains("signature") {
            return Error::BadHttpfs { dir: dir() };
        }
        e
    }
}

/// A DuckDB connection readied by [`Engine::prepare`], and the private directory it spills
/// to, removed once the connection is closed (fields drop in order).
struct Session {
    conn: Connection,
    _spill: Option<tempfile::TempDir>,
    /// The process's shared database, held until the session ends.
    _claim: Option<Claim>,
}

/// The process's own in-memory DuckDB database, one for sessions with DuckDB's defaults and one
/// for those opened with `allow_unsigned_extensions` to load the pinned httpfs: used by one
/// session at a time (a session that finds it in use opens one of its own), and closed by
/// [`close_shared`]. It spills to a directory of its own, which DuckDB makes when it first
/// spills and removes when the database closes, so that a command killed before it spilled
/// leaves nothing in the temporary directory.
struct Shared {
    busy: std::sync::atomic::AtomicBool,
    db: Mutex<Option<Connection>>,
}

static SHARED: [Shared; 2] = [Shared::new(), Shared::new()];

impl Shared {
    const fn new() -> Shared {
        Shared {
            busy: std::sync::atomic::AtomicBool::new(false),
            db: Mutex::new(None),
        }
    }

    /// The database for one session, unless another holds it.
    fn claim(&'static self) -> Option<Claim> {
        use std::sync::atomic::Ordering;
        (!self.busy.swap(true, Ordering::AcqRel)).then_some(Claim(self))
    }
}

/// One session's hold on a [`Shared`] database, given up when dropped.
struct Claim(&'static Shared);

impl Claim {
    /// A new connection to the database, opened (with `unsigned` extensions allowed or not) if
    /// it was not yet.
    fn connection(&mut self, unsigned: bool) -> Result<Connection> {
        let mut db = self.0.db.lock().unwrap_or_else(|p| p.into_inner());
        if db.is_none() {
            let conn = open_in_memory(unsigned)?;
            // A name no one can guess (the standard library's per-process random keys), so
            // that no one can have put a link there first.
            let unguessable = {
                use std::hash::{BuildHasher, Hasher};
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            };
            let spill = std::env::temp_dir().join(format!(
                "joblake-duckdb-{}-{unguessable:016x}",
                std::process::id()
            ));
            conn.execute_batch(&format!(
                "SET temp_directory = {};",
                literal(&spill.display().to_string())
            ))?;
            *db = Some(conn);
        }
        Ok(db.as_ref().expect("opened above").try_clone()?)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0
            .busy
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Closes the process's shared DuckDB databases, and with them their spill directories: for
/// the end of a command (a database left open is only closed by the OS, a directory it spilled
/// to left behind).
pub fn close_shared() {
    for shared in &SHARED {
        let db = shared.db.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(db);
    }
}

fn open_in_memory(unsigned: bool) -> Result<Connection> {
    Ok(match unsigned {
        true => {
            Connection::open_in_memory_with_flags(Config::default().allow_unsigned_extensions()?)?
        }
        false => Connection::open_in_memory()?,
    })
}

impl std::ops::Deref for Session {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// A fresh directory only this process can use (0700), for DuckDB to spill to: never a
/// predictable path in a shared `/tmp` another user could have put a link at.
pub(crate) fn spill_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("joblake-duckdb-")
        .tempdir()
        .map_err(|source| Error::Io {
            context: "cannot create a temporary directory for DuckDB".into(),
            source,
        })
}

impl S3Secret {
    fn create_sql(&self) -> String {
        let mut opts = vec![
            "TYPE s3".to_string(),
            format!("SCOPE {}", literal(&self.scope)),
            format!("USE_SSL {}", self.use_ssl),
            format!(
                "URL_STYLE {}",
                literal(if self.virtual_hosted_style {
                    "vhost"
                } else {
                    "path"
                })
            ),
        ];
        let mut add = |name: &str, value: Option<&str>| {
            if let Some(v) = value {
                opts.push(format!("{name} {}", literal(v)));
            }
        };
        add("KEY_ID", self.key_id.as_deref());
        add("SECRET", self.secret.as_ref().map(|s| s.expose_secret()));
        add(
            "SESSION_TOKEN",
            self.session_token.as_ref().map(|s| s.expose_secret()),
        );
        add("REGION", self.region.as_deref());
        add("ENDPOINT", self.endpoint.as_deref());
        format!(
            "CREATE OR REPLACE TEMPORARY SECRET joblake_lake ({})",
            opts.join(", ")
        )
    }
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        Error::Duck(e)
    }
}

/// The storage format written into the DuckDB file: old enough for the DuckDB 1.4 and 1.5
/// CLIs analysts still run, new enough for everything the views use.
pub const STORAGE_VERSION: &str = "v1.4.0";

/// What can go wrong with the DuckDB file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// DuckDB refused a statement. Its message is all of it: not also a `source()`, or
    /// `{:#}` would print it twice.
    #[error("DuckDB: {0}")]
    Duck(duckdb::Error),
    /// The file could not be put in place.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A result could not be handed over from DuckDB's arrow to ours.
    #[error("cannot read DuckDB's result: {0}")]
    Arrow(String),
    /// httpfs, which reading an S3 lake needs, is not where DuckDB looks for it.
    #[error(
        "DuckDB needs its httpfs extension ({DUCKDB_VERSION}) to read an S3 lake and found none \
         in {dir}; `make build` lays it out beside the joblake binary (in duckdb_extensions/), \
         or point JOBLAKE_DUCKDB_EXTENSIONS at a DuckDB extension directory that holds it"
    )]
    MissingHttpfs {
        /// Where DuckDB looked.
        dir: String,
    },
    /// The httpfs extension found is not one DuckDB signed: a changed or damaged file.
    #[error(
        "DuckDB refused the httpfs extension in {dir}: its signature is missing or invalid (a \
         changed or damaged file); `make build` lays DuckDB's signed build out again"
    )]
    BadHttpfs {
        /// The extension directory it was in.
        dir: String,
    },
    /// DuckDB refused the S3 settings (its message is withheld: it may quote the secret).
    #[error(
        "DuckDB refused the S3 settings made from the AWS_* variables; check AWS_REGION, \
         AWS_ENDPOINT_URL and AWS_ALLOW_HTTP"
    )]
    Secret,
    /// There is no DuckDB file yet.
    #[error("no DuckDB file at {0}; run `joblake refresh` or `joblake views` first")]
    Missing(PathBuf),
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes a fresh DuckDB file at `db` holding exactly the objects `statements` create, then
/// swaps it in with one rename: a reader never sees a file with half the views, and an
/// analyst holding the old file open is not in the way.
/// `before_rename` runs between writing the new file and swapping it in (the crash tests
/// stop there).
pub fn rebuild(
    engine: &Engine,
    db: &Path,
    statements: &[String],
    before_rename: &dyn Fn(),
) -> Result<()> {
    let io = |context: String| move |source| Error::Io { context, source };
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    }
    let tmp = db.with_extension(format!("duckdb.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(wal(&tmp));
    let alias = db
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("lake")
        .to_string();
    let result = (|| -> Result<()> {
        let conn = engine.fresh_session()?;
        conn.execute_batch(&format!(
            "ATTACH {} AS {} (STORAGE_VERSION '{STORAGE_VERSION}'); USE {};",
            literal(&tmp.display().to_string()),
            ident(&alias),
            ident(&alias)
        ))?;
        for sql in statements {
            conn.execute_batch(sql)
                .map_err(|e| engine.explain(e.into()))?;
        }
        conn.execute_batch(&format!(
            "CHECKPOINT {}; USE memory; DETACH {};",
            ident(&alias),
            ident(&alias)
        ))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(wal(&tmp));
        return Err(e);
    }
    before_rename();
    let _ = std::fs::remove_file(wal(db));
    std::fs::rename(&tmp, db).map_err(io(format!(
        "cannot move the new views into {}",
        db.display()
    )))
}

fn wal(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".wal");
    PathBuf::from(s)
}

/// Runs one SQL statement against the views, read-only, and returns its rows.
///
/// The extensions it is likely to need are loaded by their paths when they are the pinned
/// builds ([`Engine::pinned_for`]); should it need another after all, it runs again in a
/// session where DuckDB loads what it needs, checking each signature.
pub fn query(engine: &Engine, db: &Path, sql: &str) -> Result<Vec<RecordBatch>> {
    let load = engine.pinned_for(sql);
    if !load.is_empty() {
        let conn = engine.session(open_read_only(db, true)?, &load)?;
        match run(&conn, sql) {
            Err(e) if needs_another_extension(&e) => {
                tracing::debug!(error = %e, "the query needs another extension; running it again");
            }
            rows => return rows.map_err(|e| engine.explain(e)),
        }
    }
    let conn = engine.session(open_read_only(db, false)?, &[])?;
    run(&conn, sql).map_err(|e| engine.explain(e))
}

/// Whether DuckDB gave up on `e` for want of memory: a step that may try again with more.
pub(crate) fn out_of_memory(e: &impl std::fmt::Display) -> bool {
    format!("{e:#}").contains("Out of Memory")
}

/// Whether DuckDB refused `e` for an extension it was not to load (autoloading off).
fn needs_another_extension(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("Missing Extension")
        || text.contains("requires the extension")
        || (text.contains("exists in the") && text.contains("extension"))
}

/// Runs `sql` and hands its rows over in the workspace's arrow. DuckDB speaks its own
/// release of arrow, so the batches cross as one Arrow IPC stream: query results are small
/// (status figures, analyst answers), and IPC is the format both releases keep stable.
fn run(conn: &Connection, sql: &str) -> Result<Vec<RecordBatch>> {
    let mut stmt = conn.prepare(sql)?;
    let batches: Vec<_> = stmt.query_arrow([])?.collect();
    let schema = stmt.schema();
    let mut ipc = Vec::new();
    {
        let mut writer = duckdb_arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &schema)
            .map_err(|e| Error::Arrow(e.to_string()))?;
        for batch in &batches {
            writer
                .write(batch)
                .map_err(|e| Error::Arrow(e.to_string()))?;
        }
        writer.finish().map_err(|e| Error::Arrow(e.to_string()))?;
    }
    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
        .and_then(|reader| reader.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Arrow(e.to_string()))
}

/// Runs `setup` (e.g. the view statements) on a fresh in-memory database, then each of
/// `queries` in turn in the same session (temporary tables `setup` made among what they
/// read): for readers such as `status` that must not depend on the DuckDB file being current.
/// One session, since each new database loads its extensions again (on an S3 lake, DuckDB
/// checks httpfs's signature, a SHA-256 of its 21 MB, each time).
pub fn query_many(
    engine: &Engine,
    setup: &str,
    queries: &[String],
) -> Result<Vec<Vec<RecordBatch>>> {
    let conn = engine.own_session()?;
    conn.execute_batch(setup)
        .map_err(|e| engine.explain(e.into()))?;
    queries
        .iter()
        .map(|sql| run(&conn, sql).map_err(|e| engine.explain(e)))
        .collect()
}

/// A Parquet file [`copy_partitioned`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Where, as DuckDB was told it (under the directory it was given).
    pub path: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Rows in each row group of the files joblake's DuckDB writes, unless a write says otherwise
/// ([`Work::copy_partitioned_in`]): DuckDB's own default.
pub(crate) const ROW_GROUP: u32 = 122_880;

/// The most distinct values a string column's dictionary takes in a row group of the files
/// joblake's DuckDB writes before the column is written plain. Above a thousand, a column of
/// ids or timestamps costs DuckDB a dictionary it gives up on, for no smaller file: a first
/// refresh's 1.3 M changes rows in 2.1 against 2.6 s, 24.8 against 25.6 MB.
const DICTIONARY_SIZE_LIMIT: u32 = 1000;

/// One of joblake's own DuckDB sessions (see [`Engine::own_session`]) kept open for work done
/// in steps: a query, something done outside DuckDB with its answer, then more SQL in the
/// same database, its temporary tables still there.
pub struct Work {
    session: Session,
    engine: Engine,
}

impl Work {
    /// A fresh in-memory database readied by `engine`.
    pub fn open(engine: &Engine) -> Result<Work> {
        Ok(Work {
            session: engine.own_session()?,
            engine: engine.clone(),
        })
    }

    /// Runs `sql` (statements, no rows wanted).
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.session
            .execute_batch(sql)
            .map_err(|e| self.engine.explain(e.into()))
    }

    /// The rows of `sql`.
    pub fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        run(&self.session, sql).map_err(|e| self.engine.explain(e))
    }

    /// Writes the rows of `select` as zstd Parquet files under `dir` (a local path or an
    /// `s3://` URL), one directory per value of its `dt` column (`dt=YYYY-MM-DD/`, the column
    /// itself left out of the files), each file named `<prefix><n>.parquet`; files already
    /// there are left alone. Returns each file written. DuckDB spills to a directory of its
    /// own past the engine's memory limit.
    ///
    /// With `day`, every row's `dt` is that day (a row of another day fails the write): the
    /// rows go to one file, `dt=<day>/<prefix>0.parquet`, written as it comes rather than
    /// through DuckDB's partitioned write, which buffers each partition's rows (1.7 against
    /// 0.9 s for a first refresh's 1.3 M lifecycle rows). No file when there is no row.
    pub fn copy_partitioned(
        &self,
        select: &str,
        dir: &str,
        prefix: &str,
        day: Option<&str>,
    ) -> Result<Vec<Written>> {
        self.copy_partitioned_in(select, dir, prefix, day, ROW_GROUP)
    }

    /// [`Work::copy_partitioned`] in row groups of `row_group` rows: DuckDB holds a row group
    /// of every file it writes before it encodes it, so rows of long texts take a smaller one
    /// to write within the same memory (a million jobs' keys: 124 MB peak at 122,880 rows,
    /// 84 MB at 30,720).
    pub fn copy_partitioned_in(
        &self,
        select: &str,
        dir: &str,
        prefix: &str,
        day: Option<&str>,
        row_group: u32,
    ) -> Result<Vec<Written>> {
        // The files are compressed at the history's zstd level rather than DuckDB's own 3: a
        // first refresh's 1.3 M lifecycle rows at level 1, on two threads, in 0.40–0.43 against
        // 0.52–0.55 s, and 22.7 against 24.6 MB.
        let zstd_level = joblake_writer::WriterOptions::default().zstd_level;
        let options = format!(
            "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL {zstd_level}, \
             ROW_GROUP_SIZE {row_group}, DICTIONARY_SIZE_LIMIT {DICTIONARY_SIZE_LIMIT}, \
             RETURN_STATS"
        );
        let copy = match day {
            None => format!(
                "COPY ({select}) TO {} ({options}, PARTITION_BY (dt), FILENAME_PATTERN {}, \
                 OVERWRITE_OR_IGNORE)",
                literal(dir),
                literal(&format!("{prefix}{{i}}"))
            ),
            Some(day) => {
                let folder = format!("{}/dt={day}", dir.trim_end_matches('/'));
                // DuckDB's plain write makes no directory (on S3 there are none to make).
                if !folder.starts_with("s3://") {
                    std::fs::create_dir_all(&folder).map_err(|source| Error::Io {
                        context: format!("cannot create the directory {folder}"),
                        source,
                    })?;
                }
                format!(
                    "COPY (SELECT * EXCLUDE (dt) FROM ({select})\n\
                   WHERE CAST(dt AS VARCHAR) = {day} \
                   OR error('a row of day ' || coalesce(CAST(dt AS VARCHAR), 'NULL') || \
                            ' in a write of day ' || {day}))\n\
                 TO {} ({options})",
                    literal(&format!("{folder}/{prefix}0.parquet")),
                    day = literal(day),
                )
            }
        };
        let batches = self.query(&copy)?;
        let column = |b: &RecordBatch, name: &str, ty: &arrow::datatypes::DataType| {
            b.column_by_name(name)
                .ok_or_else(|| Error::Arrow(format!("COPY ... RETURN_STATS gave no {name}")))
                .and_then(|c| arrow::compute::cast(c, ty).map_err(|e| Error::Arrow(e.to_string())))
        };
        let mut written = Vec::new();
        for b in &batches {
            use arrow::array::AsArray;
            use arrow::datatypes::{DataType, Int64Type};
            let paths = column(b, "filename", &DataType::Utf8)?;
            let rows = column(b, "count", &DataType::Int64)?;
            let bytes = column(b, "file_size_bytes", &DataType::Int64)?;
            let (paths, rows, bytes) = (
                paths.as_string::<i32>(),
                rows.as_primitive::<Int64Type>(),
                bytes.as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                written.push(Written {
                    path: paths.value(i).to_string(),
                    rows: rows.value(i).max(0) as u64,
                    bytes: bytes.value(i).max(0) as u64,
                });
            }
        }
        // The partitioned write makes no file for no rows; the plain one makes an empty one,
        // which no commit names and the next commit's clean-up removes: not a file written.
        written.retain(|w| w.rows > 0);
        Ok(written)
    }
}

/// Runs `setup`, then `sql`, in a fresh session that can open no file outside `allowed`
/// (directories or `s3://` prefixes, each ending in `/`) but its own spill directory, and
/// cannot be given that access back (`lock_configuration`): for SQL a user put in a setting
/// (`--where`), which may only read the lake.
pub fn query_confined(
    engine: &Engine,
    allowed: &[String],
    setup: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    let spill = spill_dir()?;
    let conn = engine.fresh_session()?;
    let spill_path = format!("{}/", spill.path().display());
    let dirs = allowed
        .iter()
        .chain(std::iter::once(&spill_path))
        .map(|d| literal(d))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "SET temp_directory = {}; SET allowed_directories = [{dirs}]; \
         SET enable_external_access = false; SET lock_configuration = true;",
        literal(&spill_path)
    ))?;
    conn.execute_batch(setup)
        .map_err(|e| engine.explain(e.into()))?;
    let rows = run(&conn, sql).map_err(|e| engine.explain(e));
    drop(conn);
    drop(spill);
    rows
}

/// Opens the DuckDB file read-only, so a query never blocks a refresh or another reader.
fn open_read_only(db: &Path, unsigned: bool) -> Result<Connection> {
    if !db.is_file() {
        return Err(Error::Missing(db.to_path_buf()));
    }
    let mut config = Config::default().access_mode(AccessMode::ReadOnly)?;
    if unsigned {
        config = config.allow_unsigned_extensions()?;
    }
    Ok(Connection::open_with_flags(db, config)?)
}

/// Quotes an SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes an SQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_replaces_the_file_and_query_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lake.duckdb");
        rebuild(
            &Engine::default(),
            &db,
            &["CREATE VIEW v AS SELECT 1 AS x".into()],
            &|| {},
        )
        .unwrap();
        rebuild(
            &Engine::default(),
            &db,
            &["CREATE VIEW v AS SELECT 2 AS x".into()],
            &|| {},
        )
        .unwrap();
        let batches = query(&Engine::default(), &db, "SELECT x FROM v").unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains('2') && !text.contains('1'), "{text}");
    }

    #[test]
    fn a_failed_rebuild_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lake.duckdb");
        rebuild(
            &Engine::default(),
            &db,
            &["CREATE VIEW v AS SELECT 1 AS x".into()],
            &|| {},
        )
        .unwrap();
        assert!(
            rebuild(
                &Engine::default(),
                &db,
                &["CREATE VIEW broken AS SELECT FROM nowhere".into()],
                &|| {}
            )
            .is_err()
        );
        assert_eq!(
            query(&Engine::default(), &db, "SELECT x FROM v").unwrap()[0].num_rows(),
            1
        );
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp file left behind");
    }

    /// The extension directory `make build` lays out beside the binaries; this test binary
    /// runs from `release/deps/`.
    fn laid_out_extensions() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let dir = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("duckdb_extensions");
        assert!(
            dir.is_dir(),
            "{} is missing: run `make build`",
            dir.display()
        );
        dir
    }

    #[test]
    fn only_the_pinned_httpfs_skips_duckdbs_signature_check_and_nothing_else_loads_after_it() {
        let on_s3 = |dir: &Path| Engine {
            extension_dir: Some(dir.to_path_buf()),
            s3: Some(S3Secret {
                scope: "s3://bucket/lake".into(),
                key_id: Some("id".into()),
                secret: Some("secret".to_string().into()),
                session_token: None,
                region: Some("us-east-1".into()),
                endpoint: Some("127.0.0.1:9".into()),
                use_ssl: false,
                virtual_hosted_style: false,
            }),
            ..Engine::default()
        };
        let settings = [
            "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'".to_string(),
            "SELECT current_setting('allow_unsigned_extensions')".to_string(),
            "SELECT current_setting('autoload_known_extensions')".to_string(),
        ];
        let values = |engine: &Engine| -> Vec<String> {
            query_many(engine, "", &settings)
                .unwrap()
                .iter()
                .map(|batches| {
                    arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
                })
                .collect()
        };

        // The build make lays out: loaded by its path, unchecked, and nothing autoloads after.
        let real = laid_out_extensions();
        assert!(pinned_extension(&real, "httpfs").is_some());
        assert_eq!(values(&on_s3(&real)), ["true", "true", "false"]);
        // A local lake needs no httpfs: DuckDB's defaults stay.
        let local = Engine {
            s3: None,
            ..on_s3(&real)
        };
        assert_eq!(values(&local), ["false", "false", "true"]);

        // One byte changed in its code: not the pinned build, so DuckDB checks its signature,
        // which fails, and says so.
        let tampered = tempfile::tempdir().unwrap();
        let rel = Path::new(DUCKDB_VERSION)
            .join("linux_amd64")
            .join("httpfs.duckdb_extension");
        let mut bytes = std::fs::read(real.join(&rel)).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::create_dir_all(tampered.path().join(&rel).parent().unwrap()).unwrap();
        std::fs::write(tampered.path().join(&rel), bytes).unwrap();
        assert!(pinned_extension(tampered.path(), "httpfs").is_none());
        let e = query_many(&on_s3(tampered.path()), "", &settings).unwrap_err();
        assert!(
            matches!(e, Error::BadHttpfs { .. }) && e.to_string().contains("signature"),
            "{e}"
        );
    }

    #[test]
    fn an_analysts_query_loads_the_pinned_extensions_it_names_and_any_other_as_duckdb_checks_it() {
        let real = laid_out_extensions();
        let local = Engine {
            extension_dir: Some(real.clone()),
            ..Engine::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lake.duckdb");
        drop(Connection::open(&db).unwrap());
        let one = |sql: &str| -> Vec<String> {
            let batches = query(&local, &db, sql).unwrap();
            (0..batches[0].num_columns())
                .map(|c| {
                    arrow::util::display::array_value_to_string(batches[0].column(c), 0).unwrap()
                })
                .collect()
        };
        let loaded = "SELECT count(*) FILTER (WHERE loaded AND extension_name = 'delta'), \
                      current_setting('allow_unsigned_extensions') FROM duckdb_extensions()";

        // Naming delta_scan loads the pinned delta by its path, unchecked.
        assert_eq!(
            local.pinned_for("SELECT * FROM DELTA_SCAN('t')"),
            [pinned_extension(&real, "delta").unwrap()]
        );
        assert_eq!(one(&format!("{loaded} -- delta_scan")), ["1", "true"]);
        // Other SQL keeps DuckDB's defaults.
        assert!(local.pinned_for("SELECT 1").is_empty());
        assert_eq!(one(loaded), ["0", "false"]);

        // It needs httpfs too, which was not loaded: it runs again with DuckDB autoloading it
        // (and failing only to reach the closed port).
        let e = query(
            &local,
            &db,
            "SELECT * FROM read_parquet('http://127.0.0.1:9/t.parquet') -- delta_scan",
        )
        .unwrap_err();
        assert!(!needs_another_extension(&e), "{e}");
        assert!(e.to_string().contains("127.0.0.1:9"), "{e}");

        // Not the pinned build: DuckDB checks every extension.
        let other = tempfile::tempdir().unwrap();
        let elsewhere = Engine {
            extension_dir: Some(other.path().to_path_buf()),
            ..Engine::default()
        };
        assert!(
            elsewhere
                .pinned_for("SELECT * FROM delta_scan('t')")
                .is_empty()
        );
    }

    /// The process's shared database keeps its settings database-wide: a session must not
    /// inherit the limits of the one before it, and two at once must not share one database.
    #[test]
    fn sessions_of_the_shared_database_start_from_their_own_settings() {
        let settings = |engine: &Engine| -> Vec<String> {
            let sql = "SELECT current_setting('memory_limit'), current_setting('threads'), \
                       current_setting('preserve_insertion_order')"
                .to_string();
            let batches = query_many(engine, "", &[sql]).unwrap().remove(0);
            (0..3)
                .map(|c| {
                    arrow::util::display::array_value_to_string(batches[0].column(c), 0).unwrap()
                })
                .collect()
        };
        let lean = Engine {
            memory_limit: Some("48MB".into()),
            threads: Some(1),
            ..Engine::default()
        };
        let defaults = settings(&Engine::default());
        let limited = settings(&lean);
        assert_eq!(limited[1..], ["1", "false"]);
        assert_ne!(limited[0], defaults[0]);
        assert_eq!(settings(&Engine::default()), defaults);

        // A session held open (a temporary table in it) while another runs: the second gets
        // a database of its own, without the first one's table.
        let held = Work::open(&Engine::default()).unwrap();
        held.execute("CREATE TEMP TABLE t AS SELECT 42 AS x")
            .unwrap();
        let other = Work::open(&Engine::default()).unwrap();
        let tables = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'";
        let count = |w: &Work| {
            let b = w.query(tables).unwrap();
            arrow::util::display::array_value_to_string(b[0].column(0), 0).unwrap()
        };
        assert_eq!((count(&held), count(&other)), ("1".into(), "0".into()));
        drop((held, other));
        // Given back: its temporary table went with its session.
        let again = Work::open(&Engine::default()).unwrap();
        assert_eq!(count(&again), "0");
    }

    #[test]
    fn the_s3_secret_lives_in_the_session_only_and_is_quoted() {
        let secret = S3Secret {
            scope: "s3://b/p".into(),
            key_id: Some("AKIA".into()),
            secret: Some(SecretString::from("it's secret")),
            session_token: None,
            region: Some("eu-west-1".into()),
            endpoint: Some("127.0.0.1:9000".into()),
            use_ssl: false,
            virtual_hosted_style: false,
        };
        let sql = secret.create_sql();
        assert!(
            sql.starts_with("CREATE OR REPLACE TEMPORARY SECRET"),
            "{sql}"
        );
        assert!(sql.contains("SECRET 'it''s secret'"), "{sql}");
        assert!(sql.contains("URL_STYLE 'path'") && sql.contains("USE_SSL false"));
        assert!(!sql.contains("SESSION_TOKEN"));
        assert!(
            !format!("{secret:?}").contains("it's secret"),
            "Debug redacts"
        );
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = query(
            &Engine::default(),
            Path::new("/nonexistent/x.duckdb"),
            "SELECT 1",
        )
        .unwrap_err();
        assert!(err.to_string().contains("joblake refresh"));
    }
}
