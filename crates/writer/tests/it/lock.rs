//! The S3 lease beyond what the conformance suite checks of every lock: no lake kept
//! forever by a crashed holder, and no commit by a holder that lost its lease.

use std::time::Duration;

use joblake_writer::LakeLock;

use crate::support::{Moto, s3_lake};

#[tokio::test]
async fn a_crashed_holder_keeps_an_s3_lake_only_until_its_lease_expires() {
    let moto = Moto::shared();
    let bucket = moto.bucket("lease-expiry");
    let lake = s3_lake(&moto.endpoint, &bucket, "team/lake");
    let crashed = LakeLock::acquire_with_ttl(&lake, "pid 3 (crashes)", Duration::from_secs(2))
        .await
        .unwrap();
    drop(crashed); // the renewer stops, as when the process dies
    let err = LakeLock::acquire(&lake, "pid 4").await.unwrap_err();
    assert!(err.to_string().contains("pid 3 (crashes)"), "{err}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let taker = LakeLock::acquire(&lake, "pid 4").await.unwrap();
    taker.confirm(&lake).await.unwrap();

    // Another lake prefix in the same bucket is a different lake.
    let other = s3_lake(&moto.endpoint, &bucket, "team/other");
    LakeLock::acquire(&other, "pid 5")
        .await
        .unwrap()
        .release()
        .await;
    taker.release().await;
}

#[tokio::test]
async fn an_s3_holder_that_lost_its_lease_cannot_confirm_or_release_the_new_one() {
    let moto = Moto::shared();
    let bucket = moto.bucket("lost-lease");
    let lake = s3_lake(&moto.endpoint, &bucket, "");
    let slow = LakeLock::acquire_with_ttl(&lake, "pid 1 (hangs)", Duration::from_secs(2))
        .await
        .unwrap();
    // The holder hangs past its lease (its renewer stalls); someone else takes over.
    slow.pause_renewal_for_tests();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let taker = LakeLock::acquire(&lake, "pid 2").await.unwrap();
    let err = slow.confirm(&lake).await.unwrap_err();
    assert!(err.to_string().contains("taken over"), "{err}");
    slow.release().await; // must not delete the new holder's lease
    let err = LakeLock::acquire(&lake, "pid 3").await.unwrap_err();
    assert!(err.to_string().contains("pid 2"), "{err}");
    taker.release().await;
}

#[tokio::test]
async fn an_s3_lease_is_renewed_while_the_holders_runtime_is_busy() {
    // Commands run on a one-thread runtime (as this test does): a stretch of blocking work
    // there, longer than the lease, must not let another run take the lake.
    let moto = Moto::shared();
    let bucket = moto.bucket("busy-holder");
    let lake = s3_lake(&moto.endpoint, &bucket, "");
    let busy = LakeLock::acquire_with_ttl(&lake, "pid 1 (busy)", Duration::from_secs(3))
        .await
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(!busy.is_lost());
    let err = LakeLock::acquire(&lake, "pid 2").await.unwrap_err();
    assert!(err.to_string().contains("pid 1 (busy)"), "{err}");
    busy.confirm(&lake).await.unwrap();
    busy.release().await;
    LakeLock::acquire(&lake, "pid 3")
        .await
        .unwrap()
        .release()
        .await;
}

#[tokio::test]
async fn a_crashed_local_holder_frees_the_lake_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = joblake_writer::Lake::open(dir.path().to_str().unwrap(), true).unwrap();
    let held = LakeLock::acquire(&lake, "pid 1").await.unwrap();
    drop(held); // the OS lock goes with the process
    LakeLock::acquire(&lake, "pid 2")
        .await
        .unwrap()
        .release()
        .await;
}

/// A lease as a holder wrote it: expiring in an hour, held by `pid` on `machine`.
async fn plant_lease(lake: &joblake_writer::Lake, machine: &str, pid: u32) {
    let body = serde_json::json!({
        "holder": format!("joblake refresh, pid {pid}"),
        "expires_at": chrono::Utc::now() + chrono::Duration::hours(1),
        "machine": machine,
        "pid": pid,
    });
    lake.put(
        &object_store::path::Path::from("_joblake/lease.json"),
        serde_json::to_vec(&body).unwrap().into(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_killed_holder_on_this_machine_frees_an_s3_lake_at_once() {
    let moto = Moto::shared();
    let bucket = moto.bucket("killed-holder");
    let lake = s3_lake(&moto.endpoint, &bucket, "lake");
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();

    // Its process is gone: the lease is taken at once, not after its hour.
    plant_lease(&lake, &joblake_testkit::this_machine(), gone.id()).await;
    let lock = LakeLock::acquire(&lake, "pid 2").await.unwrap();
    lock.release().await;

    // A live process on this machine keeps it.
    plant_lease(&lake, &joblake_testkit::this_machine(), std::process::id()).await;
    let err = LakeLock::acquire(&lake, "pid 2").await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );

    // On another machine, whether it lives cannot be told here: it keeps the lease.
    plant_lease(&lake, "elsewhere/0000", gone.id()).await;
    assert!(LakeLock::acquire(&lake, "pid 2").await.is_err());
}

#[tokio::test]
async fn a_holder_that_lost_its_lease_publishes_nothing_not_even_at_a_roll() {
    use crate::support::{StageExt, decoder, schema};
    use joblake_writer::{TableWriter, WriterOptions};

    let moto = Moto::shared();
    let bucket = moto.bucket("lost-at-roll");
    let lake = s3_lake(&moto.endpoint, &bucket, "lake");
    let slow = LakeLock::acquire_with_ttl(&lake, "pid 1 (hangs)", Duration::from_secs(2))
        .await
        .unwrap();
    let opts = WriterOptions {
        roll_rows: 3,
        ..WriterOptions::default()
    };
    let (mut w, _) = TableWriter::open(&lake, "t", schema(), "R1", opts, decoder())
        .await
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    // One page in (2 rows, under the roll), then the holder hangs past its lease.
    let batch = |n: i64| {
        arrow::array::RecordBatch::try_new(
            schema(),
            vec![
                std::sync::Arc::new(arrow::array::StringArray::from(vec![
                    format!("p{n}a"),
                    format!("p{n}b"),
                ])),
                std::sync::Arc::new(arrow::array::Int64Array::from(vec![n; 2])),
            ],
        )
        .unwrap()
    };
    w.stage(1, day, &batch(1), &serde_json::json!({"p": 1}))
        .await
        .unwrap();
    slow.pause_renewal_for_tests();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Another process (its own view of the lake) takes over.
    let elsewhere = s3_lake(&moto.endpoint, &bucket, "lake");
    let taker = LakeLock::acquire(&elsewhere, "pid 2").await.unwrap();
    // The second page fills a file past the roll: its commit must not publish it.
    let err = w
        .stage(2, day, &batch(2), &serde_json::json!({"p": 2}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("taken over"), "{err}");
    assert!(slow.is_lost());
    let published = lake
        .list(&object_store::path::Path::from("t"))
        .await
        .unwrap();
    assert!(
        published
            .iter()
            .all(|m| !m.location.as_ref().ends_with(".parquet")),
        "{published:?}"
    );
    taker.release().await;
}
