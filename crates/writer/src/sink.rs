//! One Parquet file being written: streamed to an upload no reader sees, then published
//! whole (an S3 multipart upload completed, or a local file renamed into place), or aborted.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::TypePtr;
use tokio::io::AsyncWriteExt;

use crate::{Error, FileInfo, Lake, LakeLocation, Result, WriterOptions};

/// Size of the pieces a row group is serialised into.
const PIECE: usize = 1 << 20;

/// Where the Parquet encoder writes a finished row group: pieces of 1 MB, handed on to the
/// upload as soon as the row group is complete. One growing buffer (as parquet's
/// `AsyncArrowWriter` keeps) reallocates as the row group is copied out of its column
/// chunks, so at the moment it doubles it holds old and new copies beside the chunks not yet
/// copied: the peak of a whole run's memory. Pieces never move.
#[derive(Default)]
pub(crate) struct Pieces {
    done: Vec<Bytes>,
    current: Vec<u8>,
}

impl Pieces {
    /// Everything written so far, in order.
    fn take(&mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done
                .push(Bytes::from(std::mem::take(&mut self.current)));
        }
        std::mem::take(&mut self.done)
    }
}

impl std::io::Write for Pieces {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            if self.current.capacity() == 0 {
                self.current.reserve_exact(PIECE);
            }
            let take = (PIECE - self.current.len()).min(buf.len());
            self.current.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.current.len() == PIECE {
                self.done
                    .push(Bytes::from(std::mem::take(&mut self.current)));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What encodes a file: Arrow batches, or column chunks put together by the caller (see
/// [`ParquetSink::create_raw`]).
enum Encoder {
    Arrow(ArrowWriter<Pieces>),
    Raw(SerializedFileWriter<Pieces>),
}

impl Encoder {
    fn pieces(&mut self) -> &mut Pieces {
        match self {
            Encoder::Arrow(w) => w.inner_mut(),
            Encoder::Raw(w) => w.inner_mut(),
        }
    }

    fn finish(&mut self) -> parquet::errors::Result<()> {
        match self {
            Encoder::Arrow(w) => w.finish().map(drop),
            Encoder::Raw(w) => w.finish().map(drop),
        }
    }
}

/// A Parquet file of `table` under way.
pub(crate) struct ParquetSink {
    lake: Lake,
    /// Where readers find the file once it is published.
    path: Path,
    /// Where it is written until then (see [`Lake::upload_path`]).
    upload: Path,
    dt: String,
    /// The encoder; away on an encoder thread (see [`crate::cpu`]) while it encodes, and
    /// gone for good if that failed.
    writer: Option<Encoder>,
    /// The upload the pieces go to; aborted if the file is given up, so a failed or
    /// abandoned file never lingers as a dangling multipart upload.
    upload_writer: BufWriter,
    rows: u64,
}

impl ParquetSink {
    /// Starts `path` (a file of partition `dt` of `table`), zstd-compressed, with row groups
    /// of `opts.row_group_rows` and `metadata` in its footer.
    pub fn create(
        lake: &Lake,
        table: &str,
        path: Path,
        dt: &str,
        schema: SchemaRef,
        opts: &WriterOptions,
        metadata: Vec<(String, String)>,
    ) -> Result<ParquetSink> {
        let props = properties(opts, metadata)?
            .set_max_row_group_row_count(Some(opts.row_group_rows))
            .build();
        let writer = ArrowWriter::try_new(Pieces::default(), schema, Some(props))?;
        Ok(ParquetSink::new(
            lake,
            table,
            path,
            dt,
            Encoder::Arrow(writer),
        ))
    }

    /// Starts `path` as [`Self::create`] does, with the Parquet `schema` and `props` as
    /// they are, for a caller that puts each row group together itself ([`Self::raw`]).
    pub fn create_raw(
        lake: &Lake,
        table: &str,
        path: Path,
        dt: &str,
        schema: TypePtr,
        props: WriterPropertiesPtr,
    ) -> Result<ParquetSink> {
        let writer = SerializedFileWriter::new(Pieces::default(), schema, props)?;
        Ok(ParquetSink::new(
            lake,
            table,
            path,
            dt,
            Encoder::Raw(writer),
        ))
    }

    fn new(lake: &Lake, table: &str, path: Path, dt: &str, writer: Encoder) -> ParquetSink {
        let upload = lake.upload_path(table, &path);
        // At most two parts in flight: a row group arrives whole, and eight 10 MB parts in
        // flight (the default) would hold it twice. On S3 parts of 8 MB (it takes no smaller
        // than 5 MB); on disk each piece goes straight to the file, as the upload's buffer
        // would otherwise hold up to a part's worth between row groups (~7 MB of a jobs run's
        // peak).
        let part = match lake.location() {
            LakeLocation::Local(_) => PIECE,
            LakeLocation::S3 { .. } => 8 << 20,
        };
        let upload_writer =
            BufWriter::with_capacity(Arc::clone(lake.store()), upload.clone(), part)
                .with_max_concurrency(2);
        ParquetSink {
            lake: lake.clone(),
            path,
            upload,
            dt: dt.to_string(),
            writer: Some(writer),
            upload_writer,
            rows: 0,
        }
    }

    /// Appends rows; a row group they complete goes to the upload. The encoding happens on
    /// an encoder thread, one trip for all of `batches`.
    pub async fn write(&mut self, batches: Vec<RecordBatch>) -> Result<()> {
        let Encoder::Arrow(mut writer) = self.take_writer()? else {
            return Err(self.broken());
        };
        let (writer, written) = crate::cpu::run(move || {
            let groups = writer.flushed_row_groups().len();
            let mut rows = 0;
            let written = batches
                .iter()
                .try_for_each(|b| {
                    rows += b.num_rows();
                    writer.write(b)
                })
                .map(|()| (rows, writer.flushed_row_groups().len() != groups));
            (writer, written)
        })
        .await;
        self.writer = Some(Encoder::Arrow(writer));
        let (rows, flushed) = written?;
        self.rows += rows as u64;
        if flushed {
            self.send().await?;
        }
        Ok(())
    }

    /// Puts `rows` rows together with the file's writer (see [`Self::create_raw`]), then
    /// hands what it wrote on to the upload.
    pub async fn raw(
        &mut self,
        rows: u64,
        put: impl FnOnce(&mut SerializedFileWriter<Pieces>) -> Result<()>,
    ) -> Result<()> {
        let Some(Encoder::Raw(writer)) = self.writer.as_mut() else {
            return Err(self.broken());
        };
        if let Err(e) = put(writer) {
            self.writer = None;
            return Err(e);
        }
        self.rows += rows;
        self.send().await
    }

    fn take_writer(&mut self) -> Result<Encoder> {
        self.writer.take().ok_or_else(|| self.broken())
    }

    fn broken(&self) -> Error {
        Error::Io {
            context: format!("cannot write {}", self.upload),
            source: std::io::Error::other("an earlier write to it failed"),
        }
    }

    /// Hands the serialised bytes on to the upload.
    async fn send(&mut self) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(self.broken());
        };
        let pieces = writer.pieces().take();
        for piece in pieces {
            if let Err(e) = self.upload_writer.put(piece).await {
                // A part that did not reach the upload leaves a hole in it: the file can
                // only be given up now, never completed.
                self.writer = None;
                return Err(Error::store(&self.upload, e));
            }
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Completes the file and puts it where readers find it; a file that cannot be completed
    /// is given up (see [`Self::abort`]), never published in part.
    pub async fn publish(mut self) -> Result<FileInfo> {
        match self.complete().await {
            Ok(()) => self.place().await,
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Writes the footer and completes the upload.
    async fn complete(&mut self) -> Result<()> {
        let mut writer = self.take_writer()?;
        let (writer, finished) = crate::cpu::run(move || {
            let finished = writer.finish();
            (writer, finished)
        })
        .await;
        self.writer = Some(writer);
        finished?;
        self.send().await?;
        self.upload_writer
            .shutdown()
            .await
            .map_err(|source| Error::Io {
                context: format!("cannot finish writing {}", self.upload),
                source,
            })
    }

    /// Renames the completed upload into place.
    async fn place(self) -> Result<FileInfo> {
        let ParquetSink {
            lake,
            path,
            upload,
            dt,
            rows,
            ..
        } = self;
        crate::crash_point("publish:after-close");
        let store = lake.store();
        if upload != path {
            store
                .rename(&upload, &path)
                .await
                .map_err(|e| Error::store(&path, e))?;
        }
        crate::crash_point("publish:after-rename");
        let bytes = store
            .head(&path)
            .await
            .map_err(|e| Error::store(&path, e))?
            .size;
        Ok(FileInfo {
            path: path.to_string(),
            dt,
            rows,
            bytes,
        })
    }

    /// Gives the upload up: nothing is published and nothing dangles.
    pub async fn abort(mut self) {
        if let Err(e) = self.upload_writer.abort().await {
            tracing::warn!(path = %self.path, error = %e, "could not abort an upload");
        }
    }
}

/// A Parquet file of the lake, read through the lake's store (its size known from listing,
/// so the footer takes one ranged read).
#[derive(Clone)]
pub(crate) struct LakeFile {
    store: Arc<dyn object_store::ObjectStore>,
    path: Path,
    size: u64,
}

impl LakeFile {
    pub fn new(lake: &Lake, meta: &object_store::ObjectMeta) -> LakeFile {
        LakeFile {
            store: Arc::clone(lake.store()),
            path: meta.location.clone(),
            size: meta.size,
        }
    }
}

fn parquet_err(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl parquet::arrow::async_reader::AsyncFileReader for LakeFile {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(parquet_err)
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_err)
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<parquet::file::metadata::ParquetMetaData>>> {
        Box::pin(async move {
            let size = self.size;
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

/// The properties joblake writes Parquet with: zstd at `opts.zstd_level`, joblake as the
/// writer, `metadata` in the footer.
pub(crate) fn properties(
    opts: &WriterOptions,
    metadata: Vec<(String, String)>,
) -> Result<parquet::file::properties::WriterPropertiesBuilder> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(opts.zstd_level)?))
        .set_created_by(format!("joblake {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(
            metadata
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v))
                .collect(),
        )))
}
