//! Date-partitioned Parquet to a local or S3 lake through `object_store`, with commits
//! that put data and checkpoint down together.
//!
//! The commit protocol (see `ARCHITECTURE.md`):
//! 1. every fetched page is *staged* first, raw and with the source's checkpoint (cursor,
//!    watermark) that follows it, by a [`Stager`]: one object per page on S3 (a single atomic
//!    PUT), one record of the run's log on disk (synced within 50 ms); only then is the next
//!    page asked for;
//! 2. [`TableWriter::append`], beside the fetching, decodes the page (with the schema's
//!    [`Decoder`]) and streams its rows into an open Parquet upload for its `dt=` partition,
//!    which no reader can see until it completes (a multipart upload on S3, a file under
//!    `_joblake/uploads/` on disk);
//! 3. a *commit* completes the uploads (renaming them into place on disk), then
//!    makes one Delta commit ([`delta`]) of their `add` actions and the checkpoint naming the
//!    last page it covers, then drops the staged pages.
//!
//! A crash at any point leaves staged pages that the next [`TableWriter::open`] turns into
//! the very same files (names derive from the first page they hold), so nothing fetched is
//! lost, nothing is published twice, and at most the page in flight is fetched again.
#![deny(missing_docs)]

mod compact;
mod cpu;
mod crash;
pub mod delta;
mod error;
pub mod format;
mod lake;
pub mod layout;
mod ledger;
mod lock;
mod log_cache;
mod patch;
mod sink;
mod stage;
mod table;
mod upgrade;
mod widen;

pub use compact::{
    AddedColumns, CompactReport, LatestFile, LatestTarget, compact_table, copy_rows,
    finish_compactions, write_latest,
};
pub use crash::crash_point;
pub use error::{Error, Result};
pub use lake::{Lake, LakeLocation, S3Access};
pub use ledger::{
    RunRecord, RunStatus, last_ledger_run, ledger_schema, next_run_id, read_ledger, write_ledger,
};
pub use lock::{LEASE_ENV, LakeLock, lease_ttl_from_env};
pub use stage::{Decoded, Decoder, RawPage, Stager};
pub use table::{CommitReport, FileInfo, Recovery, TableWriter, WriterOptions};
