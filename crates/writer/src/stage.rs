//! Staging: each fetched page made durable, raw and with the checkpoint that follows it,
//! before the next page is asked for. Decoding and Parquet come later, beside the fetching.
//!
//! On S3 a page is one object (`_joblake/staging/<table>/<run>/<page>.page`, one atomic PUT).
//! On disk a new file per page costs the filesystem far more than the page itself (creating
//! an inode is ~0.7 ms where appending 100 kB is ~0.03 ms), so a run's pages are appended to
//! one log, `_joblake/staging/<table>/<run>.log`, each record framed by its length before and
//! after and written before the next page is asked for; a record a crash cut short is the page
//! that was in flight, and is ignored.
//!
//! A record written is safe from a killed process: it is in the kernel's page cache. Making it
//! survive a power cut too takes an `fdatasync`, which a task beside the fetch loop runs at
//! most every [`SYNC_EVERY`] (group commit, as PostgreSQL's WAL writer and Kafka do): a sync
//! per page would cost about a quarter of a bulk run's throughput on this kind of disk. At the
//! APIs' real rates (a page every 0.6 s or more) every page is still synced before the next
//! is asked for; in a bulk run a power cut re-pays at most the pages of the last interval.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use joblake_schema::{ByteString, RawRows};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::layout;
use crate::{Error, Lake, LakeLocation, Result};

/// A page as fetched: its rows' JSON text, before any decoding.
#[derive(Debug, Clone)]
pub struct RawPage {
    /// The run that fetched it.
    pub run_id: String,
    /// Its number within that run (rising).
    pub page: i64,
    /// When it was fetched: its rows' `_fetched_at`, and its UTC date their `dt=` partition.
    pub fetched_at: DateTime<Utc>,
    /// The rows, each exactly as the API sent it.
    pub rows: RawRows,
}

/// A page decoded: its Arrow rows, and the rows that could not load as JSON lines to keep
/// under `_joblake/rejects/`, if any.
#[derive(Debug)]
pub struct Decoded {
    /// The rows that loaded.
    pub batch: RecordBatch,
    /// One JSON line per row that did not, with why.
    pub rejects: Option<Bytes>,
}

/// Turns a raw page into Arrow rows. The schema's job, handed to the writer so that it can
/// also commit the pages an interrupted run staged.
pub type Decoder = Arc<dyn Fn(&RawPage) -> std::result::Result<Decoded, String> + Send + Sync>;

/// What a staged page carries besides its rows.
#[derive(Debug, Deserialize)]
struct Header {
    format: u32,
    run_id: String,
    page: i64,
    fetched_at: DateTime<Utc>,
    /// The source checkpoint once this page is in (format 1).
    #[serde(default)]
    state: Value,
    /// Format 2: the checkpoint as a change to page `patch_of`'s (see `patch.rs`), so that a
    /// long list in it is not written whole with every page.
    #[serde(default)]
    patch: Option<Value>,
    #[serde(default)]
    patch_of: Option<i64>,
}

/// [`Header`] as written: borrowing the page's run and checkpoint rather than copying them.
#[derive(Serialize)]
struct HeaderOut<'a> {
    format: u32,
    run_id: &'a str,
    page: i64,
    fetched_at: DateTime<Utc>,
    state: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_of: Option<i64>,
}

/// A page's whole checkpoint.
const FORMAT: u32 = 1;
/// A page's checkpoint as a change to the page before's.
const FORMAT_PATCHED: u32 = 2;
const MAGIC: &[u8; 4] = b"JLPG";

/// The checkpoint a staged page carries: whole, or as a change to an earlier page's.
#[derive(Debug)]
pub(crate) enum StagedState {
    Whole(Value),
    Patch { of: i64, patch: Value },
}

impl StagedState {
    /// The whole checkpoint, given `before`: the page and checkpoint that came before this
    /// one in the same run (the last staged, or the last committed).
    pub(crate) fn resolve(
        self,
        before: Option<(i64, &Value)>,
    ) -> std::result::Result<Value, String> {
        match (self, before) {
            (StagedState::Whole(v), _) => Ok(v),
            (StagedState::Patch { of, patch }, Some((page, base))) if page == of => {
                crate::patch::apply(base, &patch)
            }
            (StagedState::Patch { of, .. }, _) => Err(format!(
                "its checkpoint is a change to page {of}'s, which is neither staged nor committed"
            )),
        }
    }
}

/// A header line, then the rows as one JSON array; the checkpoint whole, or (with `before`,
/// the page before's) as a change to that page's.
fn encode(raw: &RawPage, state_after: &Value, before: Option<(i64, &Value)>) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_into(&mut bytes, raw, state_after, before);
    bytes
}

fn encode_into(
    bytes: &mut Vec<u8>,
    raw: &RawPage,
    state_after: &Value,
    before: Option<(i64, &Value)>,
) {
    head_into(bytes, raw, state_after, before);
    bytes.reserve(raw.rows.text_len() + raw.rows.len() + 1);
    for piece in row_pieces(raw) {
        bytes.extend_from_slice(piece);
    }
    bytes.push(b']');
}

/// What [`encode_into`] writes between the array's `[` and `]`: each row's text as the API
/// sent it, a comma between two.
fn row_pieces(raw: &RawPage) -> impl Iterator<Item = &[u8]> {
    raw.rows.iter().enumerate().flat_map(|(i, row)| {
        let comma: &[u8] = if i > 0 { b"," } else { b"" };
        [comma, row.as_bytes()]
            .into_iter()
            .filter(|p| !p.is_empty())
    })
}

/// What [`encode_into`] writes before the rows: the header line and the array's `[`.
///
/// With `before`, a checkpoint holding a list (a backfill's windows, the profiles `enrich`
/// found gone) is written as its change to that page's; one without is written whole, which
/// is as short and spares the fetch loop working out the change with every page (a feed
/// scan's checkpoint: about 10 µs a page, a tenth of what staging costs the loop).
fn head_into(
    bytes: &mut Vec<u8>,
    raw: &RawPage,
    state_after: &Value,
    before: Option<(i64, &Value)>,
) {
    let patch = before
        .filter(|_| holds_a_list(state_after))
        .map(|(page, base)| (page, crate::patch::diff(base, state_after)));
    let header = HeaderOut {
        format: if patch.is_some() {
            FORMAT_PATCHED
        } else {
            FORMAT
        },
        run_id: &raw.run_id,
        page: raw.page,
        fetched_at: raw.fetched_at,
        state: if patch.is_some() {
            &Value::Null
        } else {
            state_after
        },
        patch_of: patch.as_ref().map(|(page, _)| *page),
        patch: patch.as_ref().map(|(_, p)| p),
    };
    serde_json::to_writer(&mut *bytes, &header).expect("header serialises");
    bytes.push(b'\n');
    bytes.push(b'[');
}

/// Whether `v` has a list anywhere in it: what makes writing a checkpoint as a change worth
/// its cost.
fn holds_a_list(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::Object(m) => m.values().any(holds_a_list),
        _ => false,
    }
}

/// A log record of `raw` is magic, length, the encoded page ([`encode_into`]), length again.
/// This builds its head in `head` (emptied first), up to the rows, and says its length; the
/// rows go from the page where they lie ([`write_log_record`]).
fn log_record_head(
    head: &mut Vec<u8>,
    raw: &RawPage,
    state_after: &Value,
    before: Option<(i64, &Value)>,
) -> u64 {
    head.clear();
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&[0; 8]);
    head_into(head, raw, state_after, before);
    let rows = raw.rows.len();
    let len = (head.len() - 12 + raw.rows.text_len() + rows.saturating_sub(1) + 1) as u64;
    head[4..12].copy_from_slice(&len.to_le_bytes());
    len
}

/// Appends the log record of `raw` with `head` ([`log_record_head`]) to `file` in one
/// `writev`, so that the fetch loop copies a page once (into the page cache) rather than
/// into a record buffer first.
fn write_log_record(
    file: &std::fs::File,
    head: &[u8],
    len: u64,
    raw: &RawPage,
) -> std::io::Result<()> {
    use std::io::IoSlice;
    let mut tail = [b']'; 9];
    tail[1..].copy_from_slice(&len.to_le_bytes());
    let mut parts = Vec::with_capacity(2 * raw.rows.len() + 2);
    parts.push(IoSlice::new(head));
    parts.extend(row_pieces(raw).map(IoSlice::new));
    parts.push(IoSlice::new(&tail));
    let mut parts = &mut parts[..];
    while !parts.is_empty() {
        match (&*file).write_vectored(parts) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut parts, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The most a stager keeps of its record head buffer between pages: a head is its page's
/// checkpoint, or the change to it, usually well under a kilobyte; one far larger is not kept
/// for the rest of the run.
const RECORD_KEPT: usize = 4 << 20;

/// A staged page read back: the page and the checkpoint that follows it.
pub(crate) fn decode(bytes: Bytes, what: &str) -> Result<(RawPage, StagedState)> {
    let corrupt = |detail: String| Error::CorruptStage {
        path: what.to_string(),
        detail,
    };
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header line".into()))?;
    let header: Header =
        serde_json::from_slice(&bytes[..split]).map_err(|e| corrupt(e.to_string()))?;
    let state = match (header.format, header.patch, header.patch_of) {
        (FORMAT, None, None) => StagedState::Whole(header.state),
        (FORMAT_PATCHED, Some(patch), Some(of)) => StagedState::Patch { of, patch },
        (format, ..) => return Err(corrupt(format!("unknown format {format}"))),
    };
    let rows = ByteString::try_from(bytes.slice(split + 1..))
        .map_err(|e| corrupt(format!("its rows are not UTF-8: {e}")))
        .and_then(|text| {
            RawRows::parse_array(text)
                .map_err(|e| corrupt(format!("its rows are not a JSON array: {e}")))
        })?;
    let raw = RawPage {
        run_id: header.run_id,
        page: header.page,
        fetched_at: header.fetched_at,
        rows,
    };
    Ok((raw, state))
}

/// Where a complete record of a staging log is, and which page it holds.
#[derive(Debug, Clone)]
pub(crate) struct LogRecord {
    /// The staging log's path in the lake.
    pub log: Path,
    /// Where the encoded page starts in the file, and its length.
    offset: u64,
    len: u64,
    pub run_id: String,
    pub page: i64,
}

/// The complete records of the staging log at `file` (`log` in the lake), in order, read
/// one record header at a time: memory does not grow with the log. A torn last record is
/// left out.
pub(crate) fn index_log(file: &std::path::Path, log: &Path) -> Result<Vec<LogRecord>> {
    use std::io::{BufRead, Read};
    #[derive(Deserialize)]
    struct Pos {
        run_id: String,
        page: i64,
    }
    let io = |source| Error::Io {
        context: format!("cannot read the staging log {}", file.display()),
        source,
    };
    let size = std::fs::metadata(file).map_err(io)?.len();
    let mut reader =
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file).map_err(io)?);
    let mut out = Vec::new();
    let mut at = 0u64;
    let mut line = Vec::new();
    loop {
        let mut prefix = [0u8; 12];
        if at + 12 > size || reader.read_exact(&mut prefix).is_err() || &prefix[..4] != MAGIC {
            break;
        }
        let len = u64::from_le_bytes(prefix[4..12].try_into().expect("8 bytes"));
        let Some(end) = (at + 12).checked_add(len).filter(|e| e + 8 <= size) else {
            break; // cut short by a crash: the page in flight
        };
        line.clear();
        let read = (&mut reader)
            .take(len)
            .read_until(b'\n', &mut line)
            .map_err(io)?;
        reader
            .seek_relative((len - read as u64) as i64)
            .map_err(io)?;
        let mut trailer = [0u8; 8];
        if reader.read_exact(&mut trailer).is_err() || u64::from_le_bytes(trailer) != len {
            break;
        }
        let pos: Pos =
            serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(&line)).map_err(|e| {
                Error::CorruptStage {
                    path: log.to_string(),
                    detail: format!("a record's header at byte {at}: {e}"),
                }
            })?;
        out.push(LogRecord {
            log: log.clone(),
            offset: at + 12,
            len,
            run_id: pos.run_id,
            page: pos.page,
        });
        at = end + 8;
    }
    Ok(out)
}

/// Reads the page of `record` from the staging log at `file`.
pub(crate) fn read_record(file: &std::path::Path, record: &LogRecord) -> Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let io = |source| Error::Io {
        context: format!("cannot read the staging log {}", file.display()),
        source,
    };
    let mut bytes = vec![0u8; record.len as usize];
    std::fs::File::open(file)
        .and_then(|f| f.read_exact_at(&mut bytes, record.offset))
        .map_err(io)?;
    Ok(Bytes::from(bytes))
}

/// The longest a record written to a staging log waits for its `fdatasync`.
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

/// Makes fetched pages durable with the checkpoint that follows each. It is all a fetch
/// loop waits for before asking for the next page.
///
/// On disk the log is kept in segments: once a commit (a roll commit of a long run) covers
/// pages of the open segment, the next page starts a new one, and a segment goes as soon as
/// a commit covers its last page, so a run's log holds about what no commit covers yet.
#[derive(Debug)]
pub struct Stager {
    lake: Lake,
    table: String,
    run_id: String,
    log: Option<Log>,
    /// Closed segments holding pages no commit covers yet: their path, last page and file,
    /// kept open so that removing it is only its name going ([`remove_log`]).
    older: Vec<(PathBuf, i64, Arc<std::fs::File>)>,
    /// The number of the open (or next) segment.
    segment: u32,
    /// The page staged last and its checkpoint: the next page's checkpoint is written as a
    /// change to it.
    before: Option<(i64, Value)>,
    /// The last page of this run a commit covers, from its writer.
    covered: tokio::sync::watch::Receiver<(String, i64)>,
    /// The buffer each page's log record head (its header and checkpoint) is encoded in,
    /// kept from page to page; the rows are written from the page itself
    /// ([`write_log_record`]).
    record: Vec<u8>,
}

/// A run's open staging log and the task that syncs it.
#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: Arc<std::fs::File>,
    /// Records written so far; the sync task syncs up to the latest.
    written: tokio::sync::watch::Sender<u64>,
    syncing: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The first and last page written to it.
    first_page: i64,
    last_page: i64,
}

impl Log {
    fn open(path: PathBuf, first_page: i64) -> Result<Log> {
        let io = |context: String| move |source| Error::Io { context, source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!(
                "cannot open the staging log {}",
                path.display()
            )))?;
        let file = Arc::new(file);
        let (written, records) = tokio::sync::watch::channel(0);
        let syncing = tokio::spawn(sync_log(Arc::clone(&file), records));
        Ok(Log {
            path,
            file,
            written,
            syncing,
            first_page,
            last_page: first_page,
        })
    }

    /// Stops the sync task where it is, for a log about to be removed; gives back the file. A
    /// sync already under way still holds it until it ends, on a blocking thread of its own,
    /// which then closes it if it holds it last: either way, not the caller's thread.
    async fn abandon(self) -> Arc<std::fs::File> {
        self.syncing.abort();
        // Cancelled (or done): either way the task and its handle on the file are gone.
        let _ = self.syncing.await;
        self.file
    }

    /// Syncs what is left and stops the sync task; gives back the file, which nothing else
    /// holds then.
    async fn close(self) -> Result<Arc<std::fs::File>> {
        drop(self.written);
        self.syncing
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| Error::Io {
                context: format!("cannot sync the staging log {}", self.path.display()),
                source,
            })?;
        Ok(self.file)
    }
}

/// Syncs `file` whenever records were written since its last sync, at most every
/// [`SYNC_EVERY`]; once the stager is gone, syncs what is left and ends.
async fn sync_log(
    file: Arc<std::fs::File>,
    mut records: tokio::sync::watch::Receiver<u64>,
) -> std::io::Result<()> {
    let mut synced = 0;
    loop {
        let open = records.changed().await.is_ok();
        let written = *records.borrow_and_update();
        if written > synced {
            let file = Arc::clone(&file);
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(std::io::Error::other)??;
            synced = written;
        }
        if !open {
            return Ok(());
        }
        tokio::time::sleep(SYNC_EVERY).await;
    }
}

impl Stager {
    pub(crate) fn new(
        lake: &Lake,
        table: &str,
        run_id: &str,
        covered: tokio::sync::watch::Receiver<(String, i64)>,
    ) -> Stager {
        Stager {
            lake: lake.clone(),
            table: table.to_string(),
            run_id: run_id.to_string(),
            log: None,
            older: Vec::new(),
            segment: 0,
            before: None,
            covered,
            record: Vec::new(),
        }
    }

    fn log_path(&self, root: &std::path::Path, segment: u32) -> PathBuf {
        root.join(layout::staging_log_segment(&self.table, &self.run_id, segment).as_ref())
    }

    /// Writes `raw` and the checkpoint `state_after`: one object on S3; on disk one record of
    /// the run's log, synced within [`SYNC_EVERY`].
    pub async fn stage(&mut self, raw: &RawPage, state_after: &Value) -> Result<()> {
        crate::crash_point("stage:before");
        let before = self
            .before
            .as_ref()
            .filter(|(page, _)| *page == raw.page - 1)
            .map(|(page, state)| (*page, state));
        let root = match self.lake.location() {
            LakeLocation::Local(root) => root.clone(),
            LakeLocation::S3 { .. } => {
                let path = layout::staged_page(&self.table, &raw.run_id, raw.page);
                let bytes = encode(raw, state_after, before);
                self.lake.put(&path, bytes.into()).await?;
                self.before = Some((raw.page, state_after.clone()));
                return Ok(());
            }
        };
        let mut record = std::mem::take(&mut self.record);
        let len = log_record_head(&mut record, raw, state_after, before);
        self.drop_covered_segments(raw.page).await?;
        if self.log.is_none() {
            let path = self.log_path(&root, self.segment);
            self.log = Some(Log::open(path, raw.page)?);
        }
        let log = self.log.as_mut().expect("opened above");
        if log.syncing.is_finished() {
            // The sync task only ends early on an error: report it.
            let log = self.log.take().expect("opened above");
            let path = log.path.display().to_string();
            log.close().await?;
            return Err(Error::Io {
                context: format!("cannot sync the staging log {path}"),
                source: std::io::Error::other("its sync task stopped"),
            });
        }
        // Written in place: the fetch loop waits for it whatever thread does it, and copying a
        // page into the page cache takes less than handing it to another thread would.
        write_log_record(&log.file, &record, len, raw).map_err(|source| Error::Io {
            context: format!("cannot write to the staging log {}", log.path.display()),
            source,
        })?;
        log.last_page = raw.page;
        log.written.send_modify(|n| *n += 1);
        self.before = Some((raw.page, state_after.clone()));
        if record.capacity() <= RECORD_KEPT {
            self.record = record;
        }
        Ok(())
    }

    /// Once a commit covers pages of the open segment, closes it so that `next_page` starts
    /// a new one; removes the segments a commit covers whole.
    async fn drop_covered_segments(&mut self, next_page: i64) -> Result<()> {
        let covered = {
            let c = self.covered.borrow();
            if c.0 != self.run_id { 0 } else { c.1 }
        };
        if let Some(log) = self.log.take_if(|log| covered >= log.first_page) {
            let (path, last) = (log.path.clone(), log.last_page);
            let file = log.close().await?;
            self.older.push((path, last, file));
            self.segment += 1;
            tracing::debug!(table = %self.table, next_page, "a new staging log segment");
        }
        let mut kept = Vec::new();
        for (path, last, file) in std::mem::take(&mut self.older) {
            if last <= covered {
                remove_log(&path)?;
                close_in_background(file);
            } else {
                kept.push((path, last, file));
            }
        }
        self.older = kept;
        Ok(())
    }

    /// Removes what this run staged; call it once a commit covers every page staged.
    pub async fn discard(self) -> Result<()> {
        match self.lake.location() {
            LakeLocation::Local(root) => {
                // Every page is committed: the log need not reach the disk any more, so its
                // sync task stops without the last sync (and its wait of up to SYNC_EVERY).
                let open = match self.log {
                    Some(log) => Some(log.abandon().await),
                    None => None,
                };
                let files: Vec<_> = open
                    .into_iter()
                    .chain(self.older.into_iter().map(|(_, _, file)| file))
                    .collect();
                // Every segment of this run's log, whichever stager wrote it.
                let dir = root.join(layout::staging_root(&self.table).as_ref());
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(source) => {
                        return Err(Error::Io {
                            context: format!("cannot list {}", dir.display()),
                            source,
                        });
                    }
                };
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let segment = name
                        .to_str()
                        .and_then(|n| n.strip_prefix(self.run_id.as_str()))
                        .and_then(|n| n.strip_suffix(".log"));
                    let ours = segment.is_some_and(|s| {
                        s.is_empty()
                            || s.strip_prefix('.')
                                .is_some_and(|n| n.parse::<u32>().is_ok())
                    });
                    if ours {
                        remove_log(&entry.path())?;
                    }
                }
                // Their names gone, closing them is what frees their blocks.
                files.into_iter().for_each(close_in_background);
                Ok(())
            }
            // Each staged object went with the commit that covered it.
            LakeLocation::S3 { .. } => Ok(()),
        }
    }
}

/// Closes a removed log's `file` on a thread of its own. The last close of a removed file
/// frees its blocks, and for a run's gigabytes of pages the disk takes about half a second
/// over that (ext4 discarding them), which nothing needs to wait for: a first refresh of
/// 1.3 M jobs closed its 1.9 GB log in 0.59 s on the thread that goes on to the derived tables.
/// Should the process end first, it ends with the file closed all the same.
fn close_in_background(file: Arc<std::fs::File>) {
    let closing = std::thread::Builder::new()
        .name("joblake-log-close".into())
        .spawn(move || drop(file));
    // Without a thread of its own, it was closed here, when the closure was dropped.
    if let Err(e) = closing {
        tracing::debug!(error = %e, "closed the staging log in place");
    }
}

fn remove_log(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            context: format!("cannot remove the staging log {}", path.display()),
            source: e,
        }),
    }
}

/// Where a staged page is kept, for clean-up once a commit covers it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StagedAt {
    /// Its own object, deleted by the commit that covers it.
    Object(Path),
    /// A record of a run's log, which goes once the run's last page is committed.
    Log(Path),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page(n: i64, rows: &str) -> RawPage {
        let text = ByteString::try_from(Bytes::from(rows.to_string())).expect("UTF-8");
        RawPage {
            run_id: "r1".into(),
            page: n,
            fetched_at: DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
                .expect("a date")
                .with_timezone(&Utc),
            rows: RawRows::parse_array(text).expect("a JSON array"),
        }
    }

    /// A record written from the page's own rows is byte for byte the record of its encoding
    /// ([`encode`]) framed by its length, and reads back as the page it was: with no rows
    /// (a checkpoint alone), one, and several, spaced as an API may space them.
    #[test]
    fn a_log_record_written_from_the_page_is_its_encoding_framed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("run.log");
        let file = std::fs::File::create(&path).expect("a log");
        let pages = [
            page(1, "[]"),
            page(2, r#"[{"id":"a"}]"#),
            page(
                3,
                "[ {\"id\":\"b\",\"t\":\"x\\\"y\"} ,\n {\"id\":\"c\"},{}]",
            ),
        ];
        let states = [
            json!({"cursor": "1"}),
            json!({"cursor": "2"}),
            json!({"cursor": "3"}),
        ];
        let mut want = Vec::new();
        let mut head = Vec::new();
        for (i, raw) in pages.iter().enumerate() {
            let before = i.checked_sub(1).map(|b| (pages[b].page, &states[b]));
            let len = log_record_head(&mut head, raw, &states[i], before);
            write_log_record(&file, &head, len, raw).expect("written");
            let encoded = encode(raw, &states[i], before);
            assert_eq!(len, encoded.len() as u64, "page {}", raw.page);
            want.extend_from_slice(MAGIC);
            want.extend_from_slice(&len.to_le_bytes());
            want.extend_from_slice(&encoded);
            want.extend_from_slice(&len.to_le_bytes());
        }
        assert_eq!(std::fs::read(&path).expect("read back"), want);
        let records = index_log(&path, &Path::from("run.log")).expect("indexed");
        assert_eq!(records.len(), 3);
        for (record, raw) in records.iter().zip(&pages) {
            let bytes = read_record(&path, record).expect("a record");
            let (back, _) = decode(bytes, "run.log").expect("decoded");
            assert_eq!(back.page, raw.page);
            let rows: Vec<&str> = back.rows.iter().collect();
            let sent: Vec<&str> = raw.rows.iter().collect();
            assert_eq!(rows, sent);
        }
    }

    /// A checkpoint without a list is written whole even after a page of the same run (it is
    /// as short, and the fetch loop need not work out a change); one holding a list is written
    /// as its change to the page before's. Either reads back as the checkpoint staged.
    #[test]
    fn a_checkpoint_is_written_as_a_change_only_when_it_holds_a_list() {
        let raw = page(2, r#"[{"id":"a"}]"#);
        let read_back = |state: &Value, before: &Value| {
            let bytes = encode(&raw, state, Some((1, before)));
            let (_, staged) = decode(Bytes::from(bytes), "run.log").expect("decoded");
            let whole = matches!(staged, StagedState::Whole(_));
            (whole, staged.resolve(Some((1, before))).expect("resolved"))
        };
        let scan =
            |cursor: &str| json!({"scan": {"cursor": cursor, "pages": 2}, "watermark": null});
        assert_eq!(read_back(&scan("c2"), &scan("c1")), (true, scan("c2")));
        let windows = |n: usize| json!({"windows": (0..n).collect::<Vec<_>>(), "cursor": n});
        assert_eq!(read_back(&windows(9), &windows(10)), (false, windows(9)));
    }
}
