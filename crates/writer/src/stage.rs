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
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

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
    pub rows: Vec<Box<RawValue>>,
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
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    run_id: String,
    page: i64,
    fetched_at: DateTime<Utc>,
    /// The source checkpoint once this page is in.
    state: Value,
}

const FORMAT: u32 = 1;
const MAGIC: &[u8; 4] = b"JLPG";

/// A header line, then the rows as one JSON array.
fn encode(raw: &RawPage, state_after: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_into(&mut bytes, raw, state_after);
    bytes
}

fn encode_into(bytes: &mut Vec<u8>, raw: &RawPage, state_after: &Value) {
    let header = Header {
        format: FORMAT,
        run_id: raw.run_id.clone(),
        page: raw.page,
        fetched_at: raw.fetched_at,
        state: state_after.clone(),
    };
    serde_json::to_writer(&mut *bytes, &header).expect("header serialises");
    bytes.reserve(raw.rows.iter().map(|r| r.get().len() + 1).sum::<usize>() + 3 + 8);
    bytes.push(b'\n');
    bytes.push(b'[');
    for (i, row) in raw.rows.iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(row.get().as_bytes());
    }
    bytes.push(b']');
}

/// A log record: magic, length, the encoded page, length again.
fn log_record(raw: &RawPage, state_after: &Value) -> Vec<u8> {
    let mut record = Vec::new();
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&[0; 8]);
    encode_into(&mut record, raw, state_after);
    let len = (record.len() - 12) as u64;
    record[4..12].copy_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&len.to_le_bytes());
    record
}

/// A staged page read back: the page and the checkpoint that follows it.
pub(crate) fn decode(bytes: Bytes, what: &str) -> Result<(RawPage, Value)> {
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
    if header.format != FORMAT {
        return Err(corrupt(format!("unknown format {}", header.format)));
    }
    let rows = serde_json::from_slice(&bytes[split + 1..])
        .map_err(|e| corrupt(format!("its rows are not a JSON array: {e}")))?;
    let raw = RawPage {
        run_id: header.run_id,
        page: header.page,
        fetched_at: header.fetched_at,
        rows,
    };
    Ok((raw, header.state))
}

/// The complete records of a staging log, in order; a torn last record is left out.
pub(crate) fn log_records(bytes: &Bytes, what: &str) -> Result<Vec<(RawPage, Value)>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let len_at = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
    };
    while at < bytes.len() {
        if bytes.get(at..at + 4) != Some(MAGIC.as_slice()) {
            break;
        }
        let Some(len) = len_at(at + 4) else { break };
        let start = at + 12;
        let Some(end) = start.checked_add(len as usize) else {
            break;
        };
        if len_at(end) != Some(len) {
            break; // cut short by a crash: the page in flight
        }
        out.push(decode(bytes.slice(start..end), what)?);
        at = end + 8;
    }
    Ok(out)
}

/// The longest a record written to a staging log waits for its `fdatasync`.
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

/// Makes fetched pages durable with the checkpoint that follows each. It is all a fetch
/// loop waits for before asking for the next page.
#[derive(Debug)]
pub struct Stager {
    lake: Lake,
    table: String,
    run_id: String,
    log: Option<Log>,
}

/// A run's open staging log and the task that syncs it.
#[derive(Debug)]
struct Log {
    path: PathBuf,
    file: Arc<std::fs::File>,
    /// Records written so far; the sync task syncs up to the latest.
    written: tokio::sync::watch::Sender<u64>,
    syncing: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Log {
    fn open(path: PathBuf) -> Result<Log> {
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
        })
    }

    /// Stops the sync task where it is: for a log about to be removed.
    fn abandon(self) {
        self.syncing.abort();
    }

    /// Syncs what is left and stops the sync task.
    async fn close(self) -> Result<()> {
        drop(self.written);
        self.syncing
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|source| Error::Io {
                context: format!("cannot sync the staging log {}", self.path.display()),
                source,
            })
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
    pub(crate) fn new(lake: &Lake, table: &str, run_id: &str) -> Stager {
        Stager {
            lake: lake.clone(),
            table: table.to_string(),
            run_id: run_id.to_string(),
            log: None,
        }
    }

    fn log_path(&self, root: &std::path::Path) -> PathBuf {
        root.join(layout::staging_log(&self.table, &self.run_id).as_ref())
    }

    /// Writes `raw` and the checkpoint `state_after`: one object on S3; on disk one record of
    /// the run's log, synced within [`SYNC_EVERY`].
    pub async fn stage(&mut self, raw: &RawPage, state_after: &Value) -> Result<()> {
        crate::crash_point("stage:before");
        let root = match self.lake.location() {
            LakeLocation::Local(root) => root.clone(),
            LakeLocation::S3 { .. } => {
                let path = layout::staged_page(&self.table, &raw.run_id, raw.page);
                return self.lake.put(&path, encode(raw, state_after).into()).await;
            }
        };
        if self.log.is_none() {
            self.log = Some(Log::open(self.log_path(&root))?);
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
        (&*log.file)
            .write_all(&log_record(raw, state_after))
            .map_err(|source| Error::Io {
                context: format!("cannot write to the staging log {}", log.path.display()),
                source,
            })?;
        log.written.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Removes what this run staged; call it once a commit covers every page staged.
    pub async fn discard(self) -> Result<()> {
        match self.lake.location() {
            LakeLocation::Local(root) => {
                let path = self.log_path(root);
                if let Some(log) = self.log {
                    // Every page is committed: the log need not reach the disk any more, so
                    // its sync task stops without the last sync (and its wait of up to
                    // SYNC_EVERY).
                    log.abandon();
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::Io {
                        context: format!("cannot remove the staging log {}", path.display()),
                        source: e,
                    }),
                }
            }
            // Each staged object went with the commit that covered it.
            LakeLocation::S3 { .. } => Ok(()),
        }
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
