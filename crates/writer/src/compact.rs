//! Compaction: each partition's files merged into one (or into files of `roll_rows`), every
//! row version kept with its metadata, so the views read exactly the same rows after.
//!
//! The swap is one Delta commit (remove the inputs, add the outputs), so a Delta reader sees
//! the partition's files before or after it, never both. A manifest written before any
//! output exists, `_joblake/compact/<table>/<partition>.json`, names the inputs and the
//! outputs' name prefix (and how many rows the inputs hold), so that whoever finds one (the
//! next `compact`, or any run opening the table) finishes what a crash interrupted: after the
//! commit, the inputs (the table's current version no longer needs them) are deleted; before
//! it, the outputs, whole or partial, are. Either way no row is lost or doubled, and readers
//! of the plain Parquet see each version once again.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use object_store::ObjectMeta;
use object_store::path::Path;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use serde::{Deserialize, Serialize};

use crate::delta::{Commit, DeltaLog, Operation};
use crate::sink::{LakeFile, ParquetSink};
use crate::{Error, Lake, LakeLock, Result, WriterOptions};

/// What a compaction of one table did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactReport {
    /// The table.
    pub table: String,
    /// Partitions rewritten.
    pub partitions: usize,
    /// Partitions left alone because their files disagree on a column's type.
    pub skipped: Vec<String>,
    /// Files before and after, over the partitions rewritten.
    pub files_before: usize,
    /// Files the rewritten partitions hold now.
    pub files_after: usize,
    /// Rows moved (every version kept).
    pub rows: u64,
    /// Bytes before and after, over the partitions rewritten.
    pub bytes_before: u64,
    /// Bytes the rewritten partitions hold now.
    pub bytes_after: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// Lake-relative paths of the files being replaced.
    inputs: Vec<String>,
    /// Lake-relative path prefix every output's name starts with.
    output_prefix: String,
    /// Rows the inputs hold: the outputs are complete when they hold as many.
    rows: u64,
}

const MANIFEST_FORMAT: u32 = 1;

/// Merges the files of every partition of `table` that has more than one, under run
/// `run_id`. The lake lock must be held; it is confirmed before each swap.
pub async fn compact_table(
    lake: &Lake,
    lock: &LakeLock,
    table: &str,
    schema: SchemaRef,
    run_id: &str,
    opts: &WriterOptions,
) -> Result<CompactReport> {
    finish_compactions(lake, table).await?;
    lake.clear_uploads(table).await?;
    let log = DeltaLog::new(lake, table)?;
    crate::upgrade::register_existing_files(lake, &log, table, &schema).await?;
    let mut report = CompactReport {
        table: table.to_string(),
        ..Default::default()
    };
    let Some(snapshot) = log.snapshot().await? else {
        return Ok(report);
    };
    let mut partitions: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for file in log.files(&snapshot).await? {
        partitions
            .entry(format!("dt={}", file.dt))
            .or_default()
            .push(ObjectMeta {
                location: Path::from(file.path.as_str()),
                last_modified: chrono::Utc::now(),
                size: file.bytes,
                e_tag: None,
                version: None,
            });
    }
    for (dir, mut inputs) in partitions {
        if inputs.len() < 2 {
            continue;
        }
        inputs.sort_by(|a, b| a.location.cmp(&b.location));
        let dt = dir.trim_start_matches("dt=").to_string();
        let target = Target {
            lake,
            lock,
            log: &log,
            table,
            schema: &schema,
        };
        match compact_partition(&target, &dt, run_id, opts, &inputs).await? {
            Some(outputs) => {
                report.partitions += 1;
                report.files_before += inputs.len();
                report.bytes_before += inputs.iter().map(|m| m.size).sum::<u64>();
                report.files_after += outputs.len();
                report.rows += outputs.iter().map(|f| f.rows).sum::<u64>();
                report.bytes_after += outputs.iter().map(|f| f.bytes).sum::<u64>();
            }
            None => report.skipped.push(dir),
        }
    }
    Ok(report)
}

/// The schema every input fits: the table's own columns first, then any column only older
/// files have. Which column disagrees, when two files give one column different types.
fn union_schema(table: &SchemaRef, inputs: &[SchemaRef]) -> std::result::Result<SchemaRef, String> {
    let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    for schema in inputs {
        for f in schema.fields() {
            match fields.iter().find(|g| g.name() == f.name()) {
                Some(g) if !same_type(g.data_type(), f.data_type()) => {
                    return Err(format!(
                        "column {} is {} in one file and {} in another",
                        f.name(),
                        g.data_type(),
                        f.data_type()
                    ));
                }
                Some(_) => {}
                None => fields.push(f.as_ref().clone().with_nullable(true)),
            }
        }
    }
    let fields = fields.into_iter().map(|f| {
        // A column absent from some input is filled with nulls there.
        let everywhere = inputs.iter().all(|s| s.field_with_name(f.name()).is_ok());
        if everywhere { f } else { f.with_nullable(true) }
    });
    Ok(Arc::new(Schema::new(fields.collect::<Vec<_>>())))
}

/// Whether two column types hold the same values: equal, or lists whose items are, however
/// each writer names the item field (arrow-rs `item`, DuckDB and pyarrow `element`).
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y))
        | (DataType::LargeList(x), DataType::LargeList(y)) => {
            same_type(x.data_type(), y.data_type())
        }
        _ => a == b,
    }
}

/// `batch` laid out as `schema`: columns by name (a list's item field renamed to the
/// schema's), absent ones null.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(Arc::clone(c)),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

pub(crate) async fn reader(
    lake: &Lake,
    meta: &ObjectMeta,
) -> Result<ParquetRecordBatchStreamBuilder<LakeFile>> {
    Ok(ParquetRecordBatchStreamBuilder::new(LakeFile::new(lake, meta)).await?)
}

/// Copies the rows numbered `rows` (ascending) of the lake's Parquet file `meta` into a new
/// local Parquet file at `to`, every column as the file has it; returns the rows copied. Where
/// the file has a page index (joblake writes one) only the pages holding those rows are
/// fetched and decoded, so a few rows of a large file cost a few pages, not the file.
pub async fn copy_rows(
    lake: &Lake,
    meta: &ObjectMeta,
    rows: &[u64],
    to: &std::path::Path,
) -> Result<u64> {
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection};
    use parquet::file::metadata::PageIndexPolicy;
    // The offset index (where each page starts) is all the skipping needs.
    let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
    let builder =
        ParquetRecordBatchStreamBuilder::new_with_options(LakeFile::new(lake, meta), options)
            .await?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for &row in rows {
        let row = usize::try_from(row).unwrap_or(usize::MAX);
        if row >= total {
            return Err(Error::Compaction {
                partition: meta.location.to_string(),
                detail: format!("row {row} asked of a file of {total} rows"),
            });
        }
        match ranges.last_mut() {
            Some(last) if last.end == row => last.end = row + 1,
            _ => ranges.push(row..row + 1),
        }
    }
    let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), total);
    let mut stream = builder.with_row_selection(selection).build()?;
    let io = |source| Error::Io {
        context: format!("cannot write {}", to.display()),
        source,
    };
    let file = std::fs::File::create(to).map_err(io)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, Arc::clone(stream.schema()), None)?;
    let mut copied = 0u64;
    while let Some(batch) = stream.try_next().await? {
        copied += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(copied)
}

/// The table a compaction rewrites, and under which lock.
struct Target<'a> {
    lake: &'a Lake,
    lock: &'a LakeLock,
    log: &'a DeltaLog,
    table: &'a str,
    schema: &'a SchemaRef,
}

async fn compact_partition(
    target: &Target<'_>,
    dt: &str,
    run_id: &str,
    opts: &WriterOptions,
    inputs: &[ObjectMeta],
) -> Result<Option<Vec<crate::FileInfo>>> {
    let Target {
        lake,
        lock,
        log,
        table,
        schema,
    } = *target;
    let mut schemas = Vec::new();
    let mut rows = 0u64;
    for meta in inputs {
        let builder = reader(lake, meta).await?;
        rows += builder.metadata().file_metadata().num_rows() as u64;
        schemas.push(Arc::clone(builder.schema()));
    }
    let out_schema = match union_schema(schema, &schemas) {
        Ok(s) => s,
        Err(why) => {
            tracing::warn!(table, dt, "{why}; the partition is left as it is");
            return Ok(None);
        }
    };
    let output_prefix = format!("{table}/dt={dt}/part-{run_id}-c");
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        inputs: inputs.iter().map(|m| m.location.to_string()).collect(),
        output_prefix: output_prefix.clone(),
        rows,
    };
    let mpath = crate::layout::compact_manifest(table, dt);
    lake.put(
        &mpath,
        serde_json::to_vec_pretty(&manifest)
            .expect("manifest serialises")
            .into(),
    )
    .await?;
    crate::crash_point("compact:after-manifest");

    let mut outputs = Vec::new();
    let mut sink: Option<ParquetSink> = None;
    let result: Result<()> = async {
        for meta in inputs {
            let mut stream = reader(lake, meta).await?.build()?;
            while let Some(batch) = stream.try_next().await? {
                let batch = conform(&batch, &out_schema)?;
                if sink.is_none() {
                    let path = Path::from(format!("{output_prefix}{:05}.parquet", outputs.len()));
                    let metadata = vec![
                        ("joblake.run_id".to_string(), run_id.to_string()),
                        (
                            "joblake.compacted_from".to_string(),
                            inputs.len().to_string(),
                        ),
                    ];
                    sink = Some(ParquetSink::create(
                        lake,
                        table,
                        path,
                        dt,
                        Arc::clone(&out_schema),
                        opts,
                        metadata,
                    )?);
                }
                let s = sink.as_mut().expect("opened above");
                s.write(vec![batch]).await?;
                if s.rows() >= opts.roll_rows as u64 {
                    lock.confirm(lake).await?;
                    outputs.push(sink.take().expect("open").publish().await?);
                }
            }
        }
        if let Some(s) = sink.take() {
            lock.confirm(lake).await?;
            outputs.push(s.publish().await?);
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some(s) = sink.take() {
            s.abort().await;
        }
        // Undo: what was published of the outputs goes, the inputs stay.
        undo(lake, &outputs, mpath).await?;
        return Err(e);
    }
    let moved: u64 = outputs.iter().map(|f| f.rows).sum();
    if moved != rows {
        return Err(Error::Compaction {
            partition: format!("{table}/dt={dt}"),
            detail: format!("the inputs hold {rows} rows but {moved} were written"),
        });
    }
    crate::crash_point("compact:after-outputs");
    lock.confirm(lake).await?;
    let swap = Commit {
        adds: outputs.iter().map(crate::FileInfo::to_add).collect(),
        removes: inputs.iter().map(|m| m.location.to_string()).collect(),
        operation: Operation::Optimize,
        ..Commit::default()
    };
    if let Err(e) = log.commit(Arc::clone(schema), swap).await {
        // The inputs are still the table's files: the outputs go.
        undo(lake, &outputs, mpath).await?;
        return Err(e);
    }
    crate::crash_point("compact:after-commit");
    lake.delete_all(inputs.iter().map(|m| m.location.clone()).collect())
        .await?;
    crate::crash_point("compact:after-inputs");
    lake.delete_all(vec![mpath]).await?;
    Ok(Some(outputs))
}

/// Takes back a swap that did not commit: its outputs, then its manifest.
async fn undo(lake: &Lake, outputs: &[crate::FileInfo], manifest: Path) -> Result<()> {
    let done = outputs
        .iter()
        .map(|f| Path::from(f.path.as_str()))
        .collect();
    lake.delete_all(done).await?;
    lake.delete_all(vec![manifest]).await
}

/// Finishes or undoes the swaps an interrupted compaction of `table` left (see the module
/// docs). The lake lock must be held.
pub async fn finish_compactions(lake: &Lake, table: &str) -> Result<()> {
    let root = crate::layout::compact_root(table);
    let manifests = lake.list(&root).await?;
    if manifests.is_empty() {
        return Ok(());
    }
    // The table's files now, when it has a Delta log: the swap happened if they hold outputs.
    let log = DeltaLog::new(lake, table)?;
    let live: Option<Vec<String>> = match log.snapshot().await? {
        Some(snapshot) => Some(
            log.files(&snapshot)
                .await?
                .into_iter()
                .map(|f| f.path)
                .collect(),
        ),
        None => None,
    };
    for meta in manifests {
        let Some(bytes) = lake.get_opt(&meta.location).await? else {
            continue;
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Compaction {
            partition: meta.location.to_string(),
            detail: format!(
                "its manifest is unreadable ({e}); move it aside and check the partition"
            ),
        })?;
        let dir = manifest
            .output_prefix
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let mut outputs = Vec::new();
        for m in lake.list(&Path::from(dir)).await? {
            if m.location.as_ref().starts_with(&manifest.output_prefix) {
                outputs.push(m);
            }
        }
        let swapped = match &live {
            Some(live) => live.iter().any(|p| p.starts_with(&manifest.output_prefix)),
            // A lake written before its tables were Delta tables: the outputs hold every row.
            None => {
                let mut written = 0u64;
                for m in &outputs {
                    written += reader(lake, m).await?.metadata().file_metadata().num_rows() as u64;
                }
                written == manifest.rows
            }
        };
        if swapped {
            tracing::info!(
                table,
                "finishing an interrupted compaction: its outputs are complete"
            );
            let inputs = manifest
                .inputs
                .iter()
                .map(|p| Path::from(p.as_str()))
                .collect();
            lake.delete_all(inputs).await?;
        } else {
            tracing::info!(
                table,
                "undoing an interrupted compaction: its outputs are partial"
            );
            lake.delete_all(outputs.into_iter().map(|m| m.location).collect())
                .await?;
        }
        lake.delete_all(vec![meta.location]).await?;
    }
    Ok(())
}

/// Columns a latest table has beyond its history table's, worked out from the rows of each
/// history file written there.
pub trait AddedColumns: Send + Sync {
    /// The columns, in order.
    fn schema(&self) -> SchemaRef;

    /// Their values for the rows numbered `rows` (from 0) of the history file `file`, in
    /// order, as one batch of [`Self::schema`]; the error says why they cannot be had. Asked
    /// for a row group or so at a time, so that a large file's never are all in memory.
    fn of<'a>(
        &'a self,
        file: &'a ObjectMeta,
        rows: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'a, std::result::Result<RecordBatch, String>>;
}

/// Where and how [`write_latest`] writes.
#[derive(Clone, Copy)]
pub struct LatestTarget<'a> {
    /// The latest table (`<table>_latest`).
    pub table: &'a str,
    /// The share of a file's rows, skipped, up to which it is copied (see [`write_latest`]).
    pub copy_up_to: f64,
    /// The run that writes, named in the files written again.
    pub run_id: &'a str,
    /// How Parquet is written.
    pub opts: &'a WriterOptions,
    /// The columns the latest table has beyond the history's.
    pub added: Option<&'a dyn AddedColumns>,
}

/// Writes the rows of history `files` but those at the positions `skip` names (for each file,
/// its row numbers in ascending order) into the latest table `into.table`, each into the
/// same `dt=` partition, with the columns `into.added` works out after the file's own. A file
/// with at most `into.copy_up_to` (a share) of its rows skipped is copied as it is, the
/// skipped rows left for a deletion vector: the store copies it, or, with added columns, its
/// column chunks are copied as they are encoded (see [`crate::widen`]); either way no row is
/// decoded. One with more is written again without them (streamed, so the memory it takes
/// does not grow with the file); one all of whose rows are skipped leaves nothing. Returns
/// the files written, named after their sources (a copy keeps its source's name, so copying
/// it again writes the same bytes; a file written again adds `into.run_id`).
pub async fn write_latest(
    lake: &Lake,
    files: &[ObjectMeta],
    skip: &[Vec<u64>],
    into: &LatestTarget<'_>,
) -> Result<Vec<LatestFile>> {
    let LatestTarget {
        table: latest,
        copy_up_to,
        run_id,
        opts,
        added,
    } = *into;
    let mut written = Vec::new();
    for (i, meta) in files.iter().enumerate() {
        let gone = skip.get(i).map_or(&[][..], Vec::as_slice);
        let (Some(dt), Some(name)) = (
            partition_of(&meta.location),
            meta.location
                .filename()
                .and_then(|n| n.strip_suffix(".parquet")),
        ) else {
            return Err(Error::Compaction {
                partition: meta.location.to_string(),
                detail: "the file is not a Parquet file under a dt=YYYY-MM-DD partition".into(),
            });
        };
        let builder = reader(lake, meta).await?;
        let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
        if gone.len() as u64 >= rows {
            continue;
        }
        let mut extra = added.map(|a| crate::widen::AddedRows::new(a, meta, rows));
        if gone.len() as f64 <= copy_up_to * rows as f64 {
            let to = Path::from(format!("{latest}/dt={dt}/{name}.parquet"));
            let file = match &mut extra {
                Some(extra) => {
                    crate::widen::copy_adding(lake, latest, meta, to, &dt, extra, opts).await?
                }
                None => {
                    lake.copy(&meta.location, &to).await?;
                    crate::FileInfo {
                        path: to.to_string(),
                        dt,
                        rows,
                        bytes: meta.size,
                    }
                }
            };
            written.push(LatestFile {
                file,
                deleted: gone.to_vec(),
            });
            continue;
        }
        let schema = match added {
            Some(added) => {
                crate::widen::with_added(builder.schema(), &added.schema(), &meta.location)?
            }
            None => Arc::clone(builder.schema()),
        };
        let to = Path::from(format!("{latest}/dt={dt}/{name}-{run_id}.parquet"));
        let mut sink = ParquetSink::create(
            lake,
            latest,
            to,
            &dt,
            Arc::clone(&schema),
            opts,
            vec![("joblake.run_id".to_string(), run_id.to_string())],
        )?;
        let result: Result<()> = async {
            let mut next_gone = 0;
            let mut offset = 0u64;
            let mut stream = builder.build()?;
            while let Some(batch) = stream.try_next().await? {
                let n = batch.num_rows() as u64;
                let end = offset + n;
                let mut keep = vec![true; batch.num_rows()];
                while next_gone < gone.len() && gone[next_gone] < end {
                    if let Some(k) = gone[next_gone]
                        .checked_sub(offset)
                        .and_then(|p| keep.get_mut(p as usize))
                    {
                        *k = false;
                    }
                    next_gone += 1;
                }
                let batch = match &mut extra {
                    Some(extra) => {
                        let mut columns = batch.columns().to_vec();
                        let rows = extra.rows(offset, batch.num_rows()).await?;
                        columns.extend(rows.columns().iter().cloned());
                        RecordBatch::try_new(Arc::clone(&schema), columns)?
                    }
                    None => batch,
                };
                offset = end;
                let batch = arrow::compute::filter_record_batch(
                    &batch,
                    &arrow::array::BooleanArray::from(keep),
                )?;
                if batch.num_rows() > 0 {
                    sink.write(vec![batch]).await?;
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => written.push(LatestFile {
                file: sink.publish().await?,
                deleted: Vec::new(),
            }),
            Err(e) => {
                sink.abort().await;
                return Err(e);
            }
        }
    }
    Ok(written)
}

/// A file [`write_latest`] put in a latest table, and the rows of it a deletion vector is to
/// delete (those a later version replaced, when it was copied with them).
#[derive(Debug, Clone)]
pub struct LatestFile {
    /// The file.
    pub file: crate::FileInfo,
    /// Its rows to delete, in order.
    pub deleted: Vec<u64>,
}

/// The `dt` of a path under a `dt=YYYY-MM-DD` partition.
fn partition_of(path: &Path) -> Option<String> {
    path.parts()
        .find_map(|p| p.as_ref().strip_prefix("dt=").map(str::to_string))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, ArrayRef, ListArray, ListBuilder, StringArray, StringBuilder};

    use super::*;

    fn list_of(item: &str) -> DataType {
        DataType::List(Arc::new(Field::new(item, DataType::Utf8, true)))
    }

    /// Added columns worked out from a file's `n` (given here per file): `n * 10` as `tens`,
    /// and its text as `said`, null for every seventh row. Notes the most rows asked at once.
    struct Tens(BTreeMap<String, Vec<i64>>, std::sync::Mutex<u64>);

    impl AddedColumns for Tens {
        fn schema(&self) -> SchemaRef {
            Arc::new(Schema::new(vec![
                Field::new("tens", DataType::Int64, true),
                Field::new("said", DataType::Utf8, true),
            ]))
        }

        fn of<'a>(
            &'a self,
            file: &'a ObjectMeta,
            rows: std::ops::Range<u64>,
        ) -> futures::future::BoxFuture<'a, std::result::Result<RecordBatch, String>> {
            {
                let mut most = self.1.lock().unwrap();
                *most = (*most).max(rows.end - rows.start);
            }
            let all = &self.0[file.location.as_ref()];
            let at = |r: u64| (r as usize).min(all.len());
            let n = all[at(rows.start)..at(rows.end)].to_vec();
            Box::pin(async move {
                let tens = arrow::array::Int64Array::from_iter_values(n.iter().map(|i| i * 10));
                let said = StringArray::from_iter(
                    n.iter().map(|i| (i % 7 != 0).then(|| (i * 10).to_string())),
                );
                RecordBatch::try_new(self.schema(), vec![Arc::new(tens), Arc::new(said)])
                    .map_err(|e| e.to_string())
            })
        }
    }

    /// A file of `n` and its text `s` at `rel` in `dir`, in pages of 100 rows and row groups
    /// of 5 000.
    fn numbers_file(dir: &std::path::Path, rel: &str, n: &[i64]) -> ObjectMeta {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(arrow::array::Int64Array::from(n.to_vec())),
                Arc::new(StringArray::from_iter_values(
                    n.iter().map(|i| format!("row {i}")),
                )),
            ],
        )
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .set_max_row_group_row_count(Some(5_000))
            .build();
        let file = dir.join(rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&file).unwrap(),
            schema,
            Some(props),
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        ObjectMeta {
            location: Path::from(rel),
            last_modified: chrono::Utc::now(),
            size: std::fs::metadata(&file).unwrap().len(),
            e_tag: None,
            version: None,
        }
    }

    /// Appends the `n` and `s` of a batch of a [`numbers_file`] to `n` and `s`.
    fn numbers_of(b: &RecordBatch, n: &mut Vec<i64>, s: &mut Vec<String>) {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        n.extend(
            b.column(0)
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .copied(),
        );
        s.extend(
            b.column(1)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string()),
        );
    }

    #[tokio::test]
    async fn a_latest_file_gets_its_added_columns_whether_copied_or_written_again() {
        use arrow::array::AsArray;
        use arrow::datatypes::Int64Type;
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
        use parquet::file::metadata::PageIndexPolicy;
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), true).unwrap();
        let (copied, rewritten): (Vec<i64>, Vec<i64>) =
            ((0..150_000).collect(), (0..300).collect());
        let files = [
            numbers_file(dir.path(), "jobs/dt=2026-01-01/part-a.parquet", &copied),
            numbers_file(dir.path(), "jobs/dt=2026-01-02/part-b.parquet", &rewritten),
        ];
        let tens = Tens(
            BTreeMap::from([
                (files[0].location.to_string(), copied.clone()),
                (files[1].location.to_string(), rewritten.clone()),
            ]),
            Default::default(),
        );
        // Two rows of the first file lost to later versions (copied, a deletion vector's),
        // half of the second (written again without them).
        let skip = vec![vec![3, 5_000, 149_999], (0..150).map(|i| i * 2).collect()];
        let into = LatestTarget {
            table: "jobs_latest",
            copy_up_to: 0.05,
            run_id: "20260102T000000000Z",
            opts: &WriterOptions::default(),
            added: Some(&tens),
        };
        let written = write_latest(&lake, &files, &skip, &into).await.unwrap();
        assert_eq!(written.len(), 2, "{written:?}");
        assert_eq!(
            written[0].file.path,
            "jobs_latest/dt=2026-01-01/part-a.parquet"
        );
        assert_eq!(
            (written[0].file.rows, &written[0].deleted[..]),
            (150_000, &[3, 5_000, 149_999][..])
        );
        assert!(
            written[1]
                .file
                .path
                .starts_with("jobs_latest/dt=2026-01-02/part-b-")
        );
        assert_eq!((written[1].file.rows, written[1].deleted.len()), (150, 0));
        for (w, kept) in written.iter().zip([
            copied.clone(),
            rewritten.iter().copied().filter(|i| i % 2 == 1).collect(),
        ]) {
            let path = dir.path().join(&w.file.path);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), w.file.bytes);
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
            let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(
                std::fs::File::open(&path).unwrap(),
                options,
            )
            .unwrap();
            let names: Vec<_> = builder
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(names, ["n", "s", "tens", "said"]);
            // Every column chunk, copied or encoded, has its pages indexed.
            let metadata = builder.metadata().clone();
            for g in 0..metadata.num_row_groups() {
                let index = metadata.page_index_for_row_group(g);
                for c in 0..4 {
                    assert!(index.offset_index(c).is_some(), "row group {g}, column {c}");
                }
            }
            let (mut n, mut s, mut t, mut said) = (vec![], vec![], vec![], vec![]);
            for b in builder.build().unwrap() {
                let b = b.unwrap();
                numbers_of(&b, &mut n, &mut s);
                t.extend(b.column(2).as_primitive::<Int64Type>().iter());
                said.extend(
                    b.column(3)
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.map(str::to_string)),
                );
            }
            assert_eq!(n, kept);
            assert_eq!(
                s,
                kept.iter().map(|i| format!("row {i}")).collect::<Vec<_>>()
            );
            assert_eq!(t, kept.iter().map(|i| Some(i * 10)).collect::<Vec<_>>());
            let want: Vec<_> = kept
                .iter()
                .map(|i| (i % 7 != 0).then(|| (i * 10).to_string()))
                .collect();
            assert_eq!(said, want);
        }
        // The copy keeps the source's row groups (its chunks copied as they were).
        let copy = parquet::file::reader::SerializedFileReader::new(
            std::fs::File::open(dir.path().join(&written[0].file.path)).unwrap(),
        )
        .unwrap();
        use parquet::file::reader::FileReader;
        assert_eq!(copy.metadata().num_row_groups(), 30);

        // Added columns whose rows are not the file's: an error, and nothing written.
        // A file's added columns are asked for a window at a time, never the whole file's.
        assert!(*tens.1.lock().unwrap() <= 65_536, "{:?}", tens.1);
        let short = Tens(
            BTreeMap::from([(files[0].location.to_string(), vec![1, 2, 3])]),
            Default::default(),
        );
        let into = LatestTarget {
            table: "other_latest",
            added: Some(&short),
            ..into
        };
        let e = write_latest(&lake, &files[..1], &[vec![]], &into)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot add columns to rows 0..65536")
                && e.contains("3 rows of (tens: Int64, said: Utf8) came for 65536 rows"),
            "{e}"
        );
        assert!(
            !dir.path()
                .join("other_latest")
                .join("dt=2026-01-01")
                .exists()
        );
    }

    #[tokio::test]
    async fn copy_rows_copies_exactly_the_rows_asked_from_a_file_of_many_pages() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), true).unwrap();
        // 10 000 rows in pages of 100 (so the page index has something to skip), two row groups.
        let n: Vec<i64> = (0..10_000).collect();
        let meta = numbers_file(dir.path(), "jobs/dt=2026-01-01/part-x.parquet", &n);
        let asked = [0, 3, 4, 5, 777, 4_999, 5_000, 9_999];
        let to = dir.path().join("out.parquet");
        let copied = copy_rows(&lake, &meta, &asked, &to).await.unwrap();
        assert_eq!(copied, asked.len() as u64);
        let read = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&to).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let (mut got_n, mut got_s) = (Vec::new(), Vec::new());
        for b in read {
            numbers_of(&b.unwrap(), &mut got_n, &mut got_s);
        }
        let want: Vec<i64> = asked.iter().map(|&r| r as i64).collect();
        assert_eq!(got_n, want);
        assert_eq!(
            got_s,
            want.iter().map(|i| format!("row {i}")).collect::<Vec<_>>()
        );
        // A row the file does not have is an error, not a shorter copy.
        assert!(copy_rows(&lake, &meta, &[10_000], &to).await.is_err());
    }

    #[test]
    fn lists_whose_item_fields_are_named_differently_merge_under_the_table_type() {
        // arrow-rs names a list's item `item`; DuckDB and pyarrow name it `element`.
        let table: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "skills",
            list_of("item"),
            true,
        )]));
        let duckdb: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "skills",
            list_of("element"),
            true,
        )]));
        let merged = union_schema(&table, &[Arc::clone(&duckdb)]).expect("same values");
        assert_eq!(merged.field(0).data_type(), &list_of("item"));

        let mut skills = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
            "element",
            DataType::Utf8,
            true,
        )));
        skills.values().append_value("rust");
        skills.append(true);
        let strings: ArrayRef = Arc::new(skills.finish());
        let batch = RecordBatch::try_new(duckdb, vec![strings]).unwrap();
        let conformed = conform(&batch, &merged).unwrap();
        let list = conformed
            .column(0)
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        let items = list.value(0);
        let items = items.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(items.value(0), "rust");
        assert_eq!(list.len(), 1);

        let other: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "skills",
            DataType::Utf8,
            true,
        )]));
        assert!(
            union_schema(&table, &[other]).is_err(),
            "a real type clash still stops"
        );
    }

    #[test]
    fn a_file_s_partition_comes_from_its_path() {
        let p = Path::from("jobs/dt=2026-11-02/part-20261102T000001000Z-000001.parquet");
        assert_eq!(partition_of(&p).as_deref(), Some("2026-11-02"));
        assert_eq!(partition_of(&Path::from("jobs/part-1.parquet")), None);
    }
}
