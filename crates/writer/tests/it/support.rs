//! The writer's test fixtures: a lake under test (local or on the shared moto server) and
//! the macro that runs each conformance case against both.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{NaiveDate, TimeZone, Utc};
use joblake_schema::RawRows;
pub use joblake_testkit::{Fault, FaultProxy, Moto, s3_builder};
use joblake_writer::{Decoded, Decoder, Lake, RawPage, TableWriter};
use serde_json::Value;

/// The test table: an id and the page it came on.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("_page", DataType::Int64, false),
    ]))
}

/// The test table's decoder: a JSON array of `{"id": ...}` to rows, `_page` from the page.
pub fn decoder() -> Decoder {
    Arc::new(|raw: &RawPage| {
        let ids: Vec<String> = raw
            .rows
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(r).map_err(|e| e.to_string())?;
                v["id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or("no id".to_string())
            })
            .collect::<Result<_, _>>()?;
        let n = ids.len();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Int64Array::from(vec![raw.page; n])),
            ],
        )
        .map_err(|e| e.to_string())?;
        Ok(Decoded {
            batch,
            rejects: None,
        })
    })
}

/// Stages and appends a page the way a run does: the rows' ids as the API's JSON, made
/// durable, then decoded into the table.
pub trait StageExt {
    async fn stage(
        &mut self,
        page: i64,
        dt: NaiveDate,
        batch: &RecordBatch,
        state: &Value,
    ) -> joblake_writer::Result<()>;
}

impl StageExt for TableWriter {
    async fn stage(
        &mut self,
        page: i64,
        dt: NaiveDate,
        batch: &RecordBatch,
        state: &Value,
    ) -> joblake_writer::Result<()> {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let raw = raw_page(self.run_id(), page, dt, ids.iter().map(Option::unwrap));
        self.stager().stage(&raw, state).await?;
        self.append(raw, state.clone()).await.map(|_| ())
    }
}

/// A page as the API would send it: rows `{"id": ...}`, fetched on `dt`.
pub fn raw_page<'a>(
    run_id: &str,
    page: i64,
    dt: NaiveDate,
    ids: impl Iterator<Item = &'a str>,
) -> RawPage {
    RawPage {
        run_id: run_id.to_string(),
        page,
        fetched_at: Utc.from_utc_datetime(&dt.and_hms_opt(0, 0, 0).unwrap()),
        rows: RawRows::copied(
            ids.map(|id| serde_json::json!({ "id": id }).to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        ),
    }
}

/// A lake at `s3://bucket/prefix` on `moto` (or through `endpoint`, a proxy in front of it).
pub fn s3_lake(endpoint: &str, bucket: &str, prefix: &str) -> Lake {
    Lake::open_s3(s3_builder(endpoint), bucket, prefix).unwrap()
}

/// A lake under test and whatever keeps it alive.
pub struct TestLake {
    pub lake: Lake,
    /// The bucket, for S3 lakes.
    pub bucket: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestLake {
    type Target = Lake;
    fn deref(&self) -> &Lake {
        &self.lake
    }
}

impl TestLake {
    /// A fresh lake in a temp directory.
    pub fn local() -> TestLake {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().join("lake").to_str().unwrap(), true).unwrap();
        TestLake {
            lake,
            bucket: None,
            _dir: Some(dir),
        }
    }

    /// A fresh lake under a prefix of a new bucket on the shared moto server.
    pub fn s3(test: &str) -> TestLake {
        let moto = Moto::shared();
        let bucket = moto.bucket(test);
        TestLake {
            lake: s3_lake(&moto.endpoint, &bucket, "team/lake"),
            bucket: Some(bucket),
            _dir: None,
        }
    }

    /// Unfinished uploads the lake still holds: S3 multipart uploads neither completed nor
    /// aborted, or partial files on disk.
    pub fn unfinished_uploads(&self) -> usize {
        match (&self.bucket, self.lake.location()) {
            (Some(bucket), _) => Moto::shared().unfinished_uploads(bucket),
            (None, joblake_writer::LakeLocation::Local(root)) => {
                files_under(&root.join("_joblake/uploads")).len()
            }
            (None, _) => unreachable!(),
        }
    }
}

/// Every file below `dir` on disk, hidden ones included.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Runs each named conformance case against a local lake and an S3 lake on moto.
#[macro_export]
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::TestLake::local()).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case($crate::support::TestLake::s3(stringify!($case))).await
                }
            )*
        }
    };
}
