//! The lake lock, on a local directory and on a real S3-compatible server: one holder at a
//! time, a clear message naming the holder, and no lake kept forever by a crashed holder.

mod support;

use std::time::Duration;

use joblake_writer::{Error, Lake, LakeLock};
use support::{Moto, local_lake};

async fn second_holder_is_refused_then_admitted(lake: &Lake) {
    let first = LakeLock::acquire(lake, "pid 1 refresh").await.unwrap();
    let err = LakeLock::acquire(lake, "pid 2 refresh").await.unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("pid 1 refresh") && msg.contains("wait"),
        "{msg}"
    );
    first.confirm(lake).await.unwrap();
    first.release().await;
    let again = LakeLock::acquire(lake, "pid 2 refresh").await.unwrap();
    again.release().await;
}

/// One test, run in order: a local flock is inherited by any child process forked while
/// it is held, so no other test of this binary may start moto while the local part runs.
#[tokio::test]
async fn one_holder_at_a_time_on_local_and_s3_lakes() {
    let (_dir, lake) = local_lake();
    second_holder_is_refused_then_admitted(&lake).await;

    let moto = Moto::start().await;
    s3_lease_admits_one_holder_and_outlives_no_crash(&moto).await;
    s3_holder_that_lost_its_lease_cannot_confirm(&moto).await;
}

async fn s3_lease_admits_one_holder_and_outlives_no_crash(moto: &Moto) {
    let bucket = moto.bucket("lock-lake").await;
    let lake = moto.lake(&bucket, "team/lake");
    second_holder_is_refused_then_admitted(&lake).await;

    // A holder that dies without releasing keeps the lake only until its lease expires.
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
    let other = moto.lake(&bucket, "team/other");
    LakeLock::acquire(&other, "pid 5")
        .await
        .unwrap()
        .release()
        .await;
    taker.release().await;
}

async fn s3_holder_that_lost_its_lease_cannot_confirm(moto: &Moto) {
    let bucket = moto.bucket("lost-lease").await;
    let lake = moto.lake(&bucket, "");
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
