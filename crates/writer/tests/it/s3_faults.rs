//! Object-store faults: throttling and server errors are retried until the commit lands;
//! a missing bucket or refused credentials fail at once with a message saying what to fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use chrono::NaiveDate;
use joblake_writer::{Lake, LakeLock, TableWriter, WriterOptions};
use object_store::path::Path;
use serde_json::json;

use crate::support::{Fault, FaultProxy, Moto, StageExt, decoder, s3_builder, s3_lake, schema};

fn batch(page: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec![format!("p{page}")])),
            Arc::new(Int64Array::from(vec![page])),
        ],
    )
    .unwrap()
}

/// Stages and commits three pages; returns the rows the lake then holds.
async fn write_three_pages(lake: &Lake) -> usize {
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let lock = LakeLock::acquire(lake, "faults").await.unwrap();
    let (mut w, _) = TableWriter::open(
        lake,
        "t",
        schema(),
        "R1",
        WriterOptions::default(),
        decoder(),
    )
    .await
    .unwrap();
    for page in 1..=3 {
        w.stage(page, day, &batch(page), &json!({"p": page}))
            .await
            .unwrap();
    }
    lock.confirm(lake).await.unwrap();
    let report = w.commit(None).await.unwrap();
    lock.release().await;
    report.files.iter().map(|f| f.rows as usize).sum()
}

#[tokio::test]
async fn throttling_server_errors_and_resets_are_retried_until_the_commit_lands() {
    let moto = Moto::shared();
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let bucket = moto.bucket("retried");
    let lake = s3_lake(&proxy.endpoint, &bucket, "lake");
    proxy.inject(&[
        Fault::SlowDown,
        Fault::SlowDown,
        Fault::InternalError,
        Fault::Reset,
        Fault::SlowDown,
    ]);
    assert_eq!(write_three_pages(&lake).await, 3);
    assert_eq!(proxy.injected(), 5, "every fault was met and got past");
    let direct = s3_lake(&moto.endpoint, &bucket, "lake");
    let data: Vec<_> = direct
        .list(&Path::from("t"))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.location.as_ref().contains("_delta_log"))
        .collect();
    assert_eq!(data.len(), 1);
    let logged = joblake_writer::delta::live_files(&direct, "t")
        .await
        .unwrap();
    assert_eq!(
        logged.map(|f| f.len()),
        Some(1),
        "the commit landed in the Delta log"
    );
}

#[tokio::test]
async fn a_missing_bucket_fails_at_once_naming_the_bucket_and_what_to_check() {
    let moto = Moto::shared();
    let lake = s3_lake(&moto.endpoint, "no-such-bucket", "lake");
    let started = Instant::now();
    let err = LakeLock::acquire(&lake, "x").await.unwrap_err().to_string();
    assert!(
        err.contains("bucket no-such-bucket does not exist") && err.contains("AWS_ENDPOINT_URL"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");
}

#[tokio::test]
async fn refused_credentials_fail_at_once_naming_the_variables() {
    // A server of its own that checks credentials (moto's IAM mode), knowing no key at all.
    let moto = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let lake = Lake::open_s3(
        s3_builder(&moto.endpoint).with_secret_access_key("wrong-secret-abc123"),
        "any-bucket",
        "lake",
    )
    .unwrap();
    let started = Instant::now();
    let err = LakeLock::acquire(&lake, "x").await.unwrap_err().to_string();
    assert!(
        err.contains("S3 refused the credentials") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret-abc123"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");
}

#[tokio::test]
async fn an_unreachable_endpoint_says_which_variable_to_check() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let builder =
        s3_builder(&format!("http://127.0.0.1:{port}")).with_retry(object_store::RetryConfig {
            max_retries: 1,
            retry_timeout: Duration::from_secs(2),
            ..Default::default()
        });
    let lake = Lake::open_s3(builder, "b", "lake").unwrap();
    let err = LakeLock::acquire(&lake, "x").await.unwrap_err().to_string();
    assert!(
        err.contains("cannot reach the S3 endpoint") && err.contains("AWS_ENDPOINT_URL"),
        "{err}"
    );
}
