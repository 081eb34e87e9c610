//! A copy of a Parquet file with columns added: every column chunk of the file copied as it
//! is encoded (no row decoded, its statistics and page index kept), and the new columns
//! encoded into each of its row groups beside them. What a latest table with columns of its
//! own (see [`crate::AddedColumns`]) writes where it would otherwise copy a history file.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::sink::{LakeFile, ParquetSink, properties};
use crate::{AddedColumns, Error, FileInfo, Lake, Result, WriterOptions};

/// The arrow metadata key under which Parquet files carry their Arrow schema.
const ARROW_SCHEMA: &str = "ARROW:schema";

/// Writes the lake's Parquet file `meta` to `to` (a file of partition `dt` of table
/// `table`) with the columns `added` works out after its own, a row group at a time. Fails,
/// writing nothing, when a column of `added` has a name the file has, or it gives other rows
/// than it is asked for.
pub(crate) async fn copy_adding(
    lake: &Lake,
    table: &str,
    meta: &ObjectMeta,
    to: Path,
    dt: &str,
    added: &mut AddedRows<'_>,
    opts: &WriterOptions,
) -> Result<FileInfo> {
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder =
        ParquetRecordBatchStreamBuilder::new_with_options(LakeFile::new(lake, meta), options)
            .await?;
    let metadata = Arc::clone(builder.metadata());
    let source = Arc::clone(builder.schema());
    drop(builder);
    let added_schema = added.added.schema();
    let both = with_added(&source, &added_schema, &meta.location)?;
    let added_parquet = ArrowSchemaConverter::new().convert(&added_schema)?;
    // The file's own Parquet types (so its chunks fit as they are), then the added ones.
    let file_root = metadata.file_metadata().schema();
    let mut fields = file_root.get_fields().to_vec();
    fields.extend(added_parquet.root_schema().get_fields().iter().cloned());
    let root = Type::group_type_builder(file_root.name())
        .with_fields(fields)
        .build()?;
    let footer = metadata
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key != ARROW_SCHEMA)
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect();
    let mut props = properties(opts, footer)?.build();
    add_encoded_arrow_schema_to_metadata(&both, &mut props);
    let props = Arc::new(props);
    // Writers for the added columns alone: a writer of a file of just them lends its schema.
    let alone = SerializedFileWriter::new(
        std::io::sink(),
        added_parquet.root_schema_ptr(),
        Arc::clone(&props),
    )?;
    let factory = ArrowRowGroupWriterFactory::new(&alone, Arc::clone(&added_schema));
    let mut sink = ParquetSink::create_raw(lake, table, to, dt, Arc::new(root), props)?;
    // Each row group's offset in the file and its rows.
    let mut groups = Vec::new();
    let mut offset = 0u64;
    for rg in metadata.row_groups() {
        let n = rg.num_rows().max(0) as usize;
        groups.push((offset, n));
        offset += n as u64;
    }
    let result: Result<()> = async {
        let mut slice = match groups.first() {
            Some(&(offset, n)) => Some(added.rows(offset, n).await?),
            None => None,
        };
        for (group, rg) in metadata.row_groups().iter().enumerate() {
            let n = groups[group].1;
            let this = slice.take().expect("a window for every row group");
            let chunks = row_group_bytes(lake, meta, &metadata, group).await?;
            // The next row group's columns are worked out (on threads of their own) while
            // this one is encoded and written: polled first, so that their work starts first.
            let next = async {
                match groups.get(group + 1) {
                    Some(&(offset, n)) => added.rows(offset, n).await.map(Some),
                    None => Ok(None),
                }
            };
            let write = async {
                let mut writers = factory.create_column_writers(group)?;
                for ((writer, field), column) in writers
                    .iter_mut()
                    .zip(added_schema.fields())
                    .zip(this.columns())
                {
                    for leaf in compute_leaves(field, column)? {
                        writer.write(&leaf)?;
                    }
                }
                let encoded = writers
                    .into_iter()
                    .map(|w| w.close())
                    .collect::<parquet::errors::Result<Vec<_>>>()?;
                let index = metadata.page_index_for_row_group(group);
                sink.raw(n as u64, |file| {
                    let mut group_writer = file.next_row_group()?;
                    for (c, chunk) in rg.columns().iter().enumerate() {
                        let close = ColumnCloseResult {
                            bytes_written: chunk.compressed_size().max(0) as u64,
                            rows_written: n as u64,
                            metadata: chunk.clone(),
                            bloom_filter: None,
                            column_index: index.column_index(c).cloned(),
                            offset_index: index.offset_index(c).cloned(),
                        };
                        group_writer.append_column(&chunks, close)?;
                    }
                    for chunk in encoded {
                        chunk.append_to_row_group(&mut group_writer)?;
                    }
                    group_writer.close()?;
                    Ok(())
                })
                .await
            };
            let (next, written): (Result<Option<RecordBatch>>, Result<()>) =
                futures::join!(next, write);
            written?;
            slice = next?;
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => sink.publish().await,
        Err(e) => {
            sink.abort().await;
            Err(e)
        }
    }
}

/// The schema of a file of `source` with the columns of `added` after its own; an error when
/// `file` (a file of `source`) has a column of that name already.
pub(crate) fn with_added(source: &SchemaRef, added: &SchemaRef, file: &Path) -> Result<SchemaRef> {
    if let Some(f) = added
        .fields()
        .iter()
        .find(|f| source.field_with_name(f.name()).is_ok())
    {
        return Err(Error::Io {
            context: format!(
                "cannot add columns to a copy of {file}: the file has a column {} already",
                f.name()
            ),
            source: std::io::ErrorKind::InvalidData.into(),
        });
    }
    Ok(Arc::new(Schema::new_with_metadata(
        source
            .fields()
            .iter()
            .chain(added.fields().iter())
            .cloned()
            .collect::<Vec<_>>(),
        source.metadata().clone(),
    )))
}

/// How many rows [`AddedRows`] asks for at least at a time.
const ADDED_AT_ONCE: u64 = 65_536;

/// The added columns of one file's rows, asked for in order: a window of at least
/// [`ADDED_AT_ONCE`] rows at a time, so that a file of millions never has them all in memory.
pub(crate) struct AddedRows<'a> {
    pub added: &'a dyn AddedColumns,
    file: &'a ObjectMeta,
    /// The file's rows.
    file_rows: u64,
    /// The rows had last: from this row on.
    window: Option<(u64, RecordBatch)>,
}

impl<'a> AddedRows<'a> {
    /// For `file`, of `file_rows` rows.
    pub fn new(added: &'a dyn AddedColumns, file: &'a ObjectMeta, file_rows: u64) -> AddedRows<'a> {
        AddedRows {
            added,
            file,
            file_rows,
            window: None,
        }
    }

    /// The added columns of the `n` rows from row `start` on.
    pub async fn rows(&mut self, start: u64, n: usize) -> Result<RecordBatch> {
        let end = start + n as u64;
        let held = |w: &Option<(u64, RecordBatch)>| {
            w.as_ref()
                .is_some_and(|(from, b)| *from <= start && end <= from + b.num_rows() as u64)
        };
        if !held(&self.window) {
            self.window = None;
            let upto = end.max(start + ADDED_AT_ONCE).min(self.file_rows.max(end));
            let batch = self
                .added
                .of(self.file, start..upto)
                .await
                .map_err(|detail| Error::Io {
                    context: format!(
                        "cannot work out the latest table's columns for {}: {detail}",
                        self.file.location
                    ),
                    source: std::io::ErrorKind::InvalidData.into(),
                })?;
            let names = |schema: &SchemaRef| {
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (want, got) = (names(&self.added.schema()), names(&batch.schema()));
            if batch.num_rows() as u64 != upto - start || want != got {
                return Err(Error::Io {
                    context: format!(
                        "cannot add columns to rows {start}..{upto} of {}: {} rows of ({got}) \
                         came for {} rows of ({want})",
                        self.file.location,
                        batch.num_rows(),
                        upto - start
                    ),
                    source: std::io::ErrorKind::InvalidData.into(),
                });
            }
            self.window = Some((start, batch));
        }
        let (from, batch) = self.window.as_ref().expect("held");
        Ok(batch.slice((start - from) as usize, n))
    }
}

/// The bytes of row group `group` of the file: one ranged read from its first chunk's start
/// to its last chunk's end.
async fn row_group_bytes(
    lake: &Lake,
    meta: &ObjectMeta,
    metadata: &ParquetMetaData,
    group: usize,
) -> Result<Window> {
    let rg = metadata.row_group(group);
    let (mut start, mut end) = (u64::MAX, 0u64);
    for chunk in rg.columns() {
        let (from, len) = chunk.byte_range();
        start = start.min(from);
        end = end.max(from + len);
    }
    if start >= end {
        return Ok(Window {
            base: 0,
            bytes: Bytes::new(),
        });
    }
    let bytes = lake
        .store()
        .get_range(&meta.location, start..end)
        .await
        .map_err(|e| Error::store(&meta.location, e))?;
    Ok(Window { base: start, bytes })
}

/// Bytes of a file from offset `base` on, read as the file itself at its own offsets.
struct Window {
    base: u64,
    bytes: Bytes,
}

impl Window {
    fn at(&self, start: u64) -> parquet::errors::Result<Bytes> {
        start
            .checked_sub(self.base)
            .and_then(|s| usize::try_from(s).ok())
            .filter(|s| *s <= self.bytes.len())
            .map(|s| self.bytes.slice(s..))
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!(
                    "offset {start} lies outside the row group read ({} bytes from {})",
                    self.bytes.len(),
                    self.base
                ))
            })
    }
}

impl Length for Window {
    fn len(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
}

impl ChunkReader for Window {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self.at(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let rest = self.at(start)?;
        if length > rest.len() {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "{length} bytes asked at offset {start}, {} there",
                rest.len()
            )));
        }
        Ok(rest.slice(..length))
    }
}
