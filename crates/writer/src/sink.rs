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
use parquet::arrow::AsyncArrowWriter;
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWriteExt;

use crate::{Error, FileInfo, Lake, Result, WriterOptions};

/// An `AsyncFileWriter` over an object-store upload that can be aborted, so a failed or
/// abandoned file never lingers as a dangling multipart upload.
struct Upload(BufWriter);

impl AsyncFileWriter for Upload {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            self.0
                .put(bs)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        Box::pin(async move {
            self.0
                .shutdown()
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
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
    writer: AsyncArrowWriter<Upload>,
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
        let upload = lake.upload_path(table, &path);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(opts.zstd_level)?))
            .set_max_row_group_row_count(Some(opts.row_group_rows))
            .set_created_by(format!("joblake {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        // Parts of 8 MB (S3 takes no smaller than 5 MB), at most two in flight: a row group
        // arrives whole, and eight 10 MB parts in flight (the default) would hold it twice.
        let sink = Upload(
            BufWriter::with_capacity(Arc::clone(lake.store()), upload.clone(), 8 << 20)
                .with_max_concurrency(2),
        );
        Ok(ParquetSink {
            lake: lake.clone(),
            path,
            upload,
            dt: dt.to_string(),
            writer: AsyncArrowWriter::try_new(sink, schema, Some(props))?,
            rows: 0,
        })
    }

    /// Appends rows.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).await?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Completes the file and puts it where readers find it.
    pub async fn publish(self) -> Result<FileInfo> {
        let ParquetSink {
            lake,
            path,
            upload,
            dt,
            writer,
            rows,
        } = self;
        writer.close().await?;
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
    pub async fn abort(self) {
        let mut upload = self.writer.into_inner();
        if let Err(e) = upload.0.abort().await {
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
