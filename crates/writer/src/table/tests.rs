use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use super::*;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("_page", DataType::Int64, false),
    ]))
}

fn batch(page: i64, rows: usize) -> RecordBatch {
    let ids: Vec<String> = (0..rows).map(|r| format!("p{page}r{r}")).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(Int64Array::from(vec![page; rows])),
        ],
    )
    .unwrap()
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

async fn published(lake: &Lake, table: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for meta in lake.list(&Path::from(table)).await.unwrap() {
        let bytes: Bytes = lake.get_opt(&meta.location).await.unwrap().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let mut ids = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let col = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            ids.extend(col.iter().map(|v| v.unwrap().to_string()));
        }
        out.push((meta.location.to_string(), ids));
    }
    out.sort();
    out
}

fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap(), true).unwrap();
    (dir, lake)
}

#[tokio::test]
async fn many_pages_make_one_file_per_partition_and_commit_the_cursor() {
    let (_d, lake) = lake();
    let (mut w, rec) = TableWriter::open(&lake, "t", schema(), "R1", WriterOptions::default())
        .await
        .unwrap();
    assert_eq!(rec.pages, 0);
    for page in 1..=3 {
        let state = json!({"cursor": format!("c{page}")});
        w.stage(page, day(1), &batch(page, 10), &state)
            .await
            .unwrap();
    }
    w.stage(4, day(2), &batch(4, 5), &json!({"cursor": "c4"}))
        .await
        .unwrap();
    let report = w
        .commit(Some(json!({"cursor": null, "done": true})))
        .await
        .unwrap();
    assert_eq!(report.pages, 4);
    assert_eq!(report.rows, 35);
    let files = published(&lake, "t").await;
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0].0, "t/dt=2026-11-01/part-R1-000001.parquet");
    assert_eq!(files[0].1.len(), 30);
    assert_eq!(files[1].0, "t/dt=2026-11-02/part-R1-000004.parquet");
    assert!(
        lake.list(&paths::staging_root("t"))
            .await
            .unwrap()
            .is_empty()
    );

    let (w2, rec) = TableWriter::open(&lake, "t", schema(), "R2", WriterOptions::default())
        .await
        .unwrap();
    assert_eq!(rec.pages, 0);
    assert_eq!(w2.state(), Some(&json!({"cursor": null, "done": true})));
}

#[tokio::test]
async fn a_crash_before_commit_loses_nothing_and_publishes_once() {
    let (_d, lake) = lake();
    let (mut w, _) = TableWriter::open(&lake, "t", schema(), "R1", WriterOptions::default())
        .await
        .unwrap();
    w.stage(1, day(1), &batch(1, 10), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    w.commit(None).await.unwrap();
    w.stage(2, day(1), &batch(2, 10), &json!({"cursor": "c2"}))
        .await
        .unwrap();
    w.stage(3, day(1), &batch(3, 7), &json!({"cursor": "c3"}))
        .await
        .unwrap();
    // The process dies here: no commit, no abort.
    std::mem::forget(w);
    assert_eq!(
        published(&lake, "t").await.len(),
        1,
        "uncommitted file must be invisible"
    );

    let (w2, rec) = TableWriter::open(&lake, "t", schema(), "R2", WriterOptions::default())
        .await
        .unwrap();
    assert_eq!((rec.pages, rec.rows), (2, 17));
    assert_eq!(w2.state(), Some(&json!({"cursor": "c3"})));
    let files = published(&lake, "t").await;
    let names: Vec<_> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "t/dt=2026-11-01/part-R1-000001.parquet",
            "t/dt=2026-11-01/part-R1-000002.parquet"
        ]
    );
    let mut all: Vec<String> = files.into_iter().flat_map(|f| f.1).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (27, 27), "no row lost or doubled");

    // Opening again finds nothing more to do.
    let (_, rec) = TableWriter::open(&lake, "t", schema(), "R3", WriterOptions::default())
        .await
        .unwrap();
    assert_eq!((rec.pages, rec.cleaned), (0, 0));
}

#[tokio::test]
async fn a_crash_after_publishing_but_before_the_state_rewrites_the_same_file() {
    let (_d, lake) = lake();
    let (mut w, _) = TableWriter::open(&lake, "t", schema(), "R1", WriterOptions::default())
        .await
        .unwrap();
    w.stage(1, day(1), &batch(1, 4), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    // Publish the file by hand the way commit does, then die before the state is written.
    for (_, f) in std::mem::take(&mut w.open) {
        f.writer.close().await.unwrap();
    }
    std::mem::forget(w);
    assert_eq!(published(&lake, "t").await.len(), 1);

    let (w2, rec) = TableWriter::open(&lake, "t", schema(), "R2", WriterOptions::default())
        .await
        .unwrap();
    assert_eq!(rec.pages, 1);
    assert_eq!(w2.state(), Some(&json!({"cursor": "c1"})));
    let files = published(&lake, "t").await;
    assert_eq!(files.len(), 1, "same name, so no second copy: {files:?}");
    assert_eq!(files[0].1.len(), 4);
}

#[tokio::test]
async fn staged_pages_already_committed_are_only_cleaned_up() {
    let (_d, lake) = lake();
    let (mut w, _) = TableWriter::open(&lake, "t", schema(), "R1", WriterOptions::default())
        .await
        .unwrap();
    w.stage(1, day(1), &batch(1, 4), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    let leftover = encode_stage(&batch(1, 4), 1, "2026-11-01", &json!({"cursor": "c1"})).unwrap();
    w.commit(None).await.unwrap();
    // As if the process died between writing the state and deleting the staged page.
    lake.put(&paths::staged_page("t", "R1", 1), leftover)
        .await
        .unwrap();
    let (_, rec) = TableWriter::open(&lake, "t", schema(), "R2", WriterOptions::default())
        .await
        .unwrap();
    assert_eq!((rec.pages, rec.cleaned), (0, 1));
    assert_eq!(published(&lake, "t").await[0].1.len(), 4);
}

#[tokio::test]
async fn an_empty_page_moves_the_checkpoint_without_a_file() {
    let (_d, lake) = lake();
    let (mut w, _) = TableWriter::open(&lake, "t", schema(), "R1", WriterOptions::default())
        .await
        .unwrap();
    w.stage(1, day(1), &batch(1, 0), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    let report = w.commit(None).await.unwrap();
    assert!(report.files.is_empty());
    assert_eq!(w.state(), Some(&json!({"cursor": "c1"})));
}

#[tokio::test]
async fn files_roll_at_the_row_target() {
    let (_d, lake) = lake();
    let opts = WriterOptions {
        roll_rows: 20,
        ..WriterOptions::default()
    };
    let (mut w, _) = TableWriter::open(&lake, "t", schema(), "R1", opts)
        .await
        .unwrap();
    for page in 1..=5 {
        w.stage(page, day(1), &batch(page, 10), &json!({"p": page}))
            .await
            .unwrap();
    }
    w.commit(None).await.unwrap();
    let sizes: Vec<usize> = published(&lake, "t")
        .await
        .iter()
        .map(|f| f.1.len())
        .collect();
    assert_eq!(sizes, [20, 20, 10]);
}

#[tokio::test]
async fn a_corrupt_state_file_is_a_clear_error() {
    let (_d, lake) = lake();
    lake.put(&paths::state("t"), Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let err = TableWriter::open(&lake, "t", schema(), "R1", WriterOptions::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("corrupt"), "{err}");
}
