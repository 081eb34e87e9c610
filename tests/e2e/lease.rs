//! The S3 lease at the edges: a run that loses the lake stops paying, and a lease is judged
//! on the store's clock and by who really holds it, whatever the machines' clocks, hostnames
//! and PIDs. Each test writes its row of `RELIABILITY.md`'s edges table.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

use joblake_schema::Table;

use super::source;
use crate::edges::edge;
use crate::harness::{Lake, Sim, assert_same, refetched};

fn s3_lake(sim: &Sim, test: &str) -> Lake {
    let moto = joblake_testkit::Moto::shared();
    Lake::on_s3(sim, &moto.endpoint, &moto.bucket(test))
}

fn store(lake: &Lake) -> impl ObjectStore {
    let s3 = lake.s3.as_ref().unwrap();
    joblake_testkit::s3_builder(&s3.endpoint)
        .with_bucket_name(&s3.bucket)
        .build()
        .unwrap()
}

/// The lease object of the lake (`Lake::on_s3` puts the lake under `team/lake`).
fn lease_path() -> Path {
    Path::from("team/lake/_joblake/lease.json")
}

/// Writes the lake's lease as another holder would have: `body`'s fields over a holder that
/// lasts two minutes after each renewal.
async fn plant_lease(lake: &Lake, body: Value) {
    let mut lease = json!({
        "holder": "joblake refresh on another machine, pid 7",
        "expires_at": Utc::now() + chrono::Duration::minutes(2),
        "ttl_ms": 120_000,
        "machine": "another-host/another-boot/pid:[4026531836]",
        "pid": 7,
    });
    for (k, v) in body.as_object().unwrap() {
        lease[k] = v.clone();
    }
    store(lake)
        .put(
            &lease_path(),
            PutPayload::from(serde_json::to_vec(&lease).unwrap()),
        )
        .await
        .unwrap();
}

/// When the simulator logged `entry`.
fn at(entry: &Value) -> DateTime<Utc> {
    entry["at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_run_whose_s3_lease_is_taken_over_stops_fetching_within_a_renewal_period() {
    let sim = Sim::start(&["--rows", "600", "--latency-ms", "150"]).await;
    let mut lake = s3_lake(&sim, "lease-lost");
    lake.set_config("[career_sites]\npage_size = 10\nrequests_per_minute = 0\n");
    // A lease of 3 s, renewed every second.
    lake.env
        .push(("JOBLAKE_S3_LEASE_SECONDS".into(), "3".into()));
    let child = lake
        .command(&["refresh", "--source", "career_sites"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.log().await.len() < 4 {
        assert!(Instant::now() < deadline, "the run never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another run takes the lake over (as after this one hung past its lease).
    plant_lease(&lake, json!({})).await;
    let taken = Utc::now();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the run went on paying after losing the lake")
        .unwrap();
    let stopped = Utc::now();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lost the lake's S3 lease"), "{stderr}");
    let log = sim.log().await;
    let fetched = log.len();
    let last = log.iter().map(at).max().unwrap();
    // One renewal period (1 s) to notice, plus the request in flight.
    let after = (last - taken).num_milliseconds();
    assert!(
        after < 2_000,
        "asked for a page {after} ms after losing the lake"
    );
    // The other run's lease is untouched: the lost run neither renewed nor deleted it.
    let held = store(&lake)
        .get(&lease_path())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&held).contains("another machine"));

    // Once the other run is done, the next run commits what the lost one fetched and
    // finishes the scan: nothing lost, nothing paid twice but the page in flight.
    store(&lake).delete(&lease_path()).await.unwrap();
    let summary = lake.refresh_ok(&["--source", "career_sites"]).await;
    let recovered = source(&summary, "career_sites")["recovered_rows"]
        .as_u64()
        .unwrap();
    assert!(recovered > 0, "{summary}");
    assert_same(
        &lake.view("career_sites").await,
        &lake.truth(&sim, Table::CareerSites).await,
        "career_sites",
    );
    let again = refetched(&sim.log().await, "jobo");
    assert!(
        again.values().sum::<usize>() - again.len() <= 1,
        "{again:?}"
    );
    edge(
        "an S3 lake's lease taken over by another run while a run is fetching (the run hung \
         past its lease, say)",
        "`JOBLAKE_S3_LEASE_SECONDS=3` (renewed every second), the lease object overwritten \
         by another holder after 4 pages",
        &format!(
            "the run noticed at its next renewal and asked for no page after that: its last \
             request came {after} ms after the takeover, and it exited 1 ({} ms) without \
             committing, renewing or deleting the other holder's lease. The next run \
             committed the {recovered} rows it had staged (of {fetched} requests), re-fetching at most one page",
            (stopped - taken).num_milliseconds()
        ),
    );
}

#[tokio::test]
async fn an_s3_lease_runs_out_by_the_stores_clock_and_its_real_holder() {
    let sim = Sim::start(&["--rows", "40"]).await;
    let lake = s3_lake(&sim, "lease-clock");
    let busy = |run: &crate::harness::Run, holder: &str| {
        run.assert_code(2);
        let err = run.stderr();
        assert!(
            err.contains(holder) && err.contains("store's clock"),
            "{err}"
        );
    };

    // A holder whose clock runs 3 h behind: by its own clock its lease ran out hours ago,
    // but it renewed it just now. It keeps the lake.
    plant_lease(
        &lake,
        json!({"expires_at": Utc::now() - chrono::Duration::hours(3)}),
    )
    .await;
    busy(&lake.run(&["refresh"]).await, "pid 7");
    assert!(
        sim.log().await.is_empty(),
        "nothing fetched while the lake is held"
    );

    // A holder whose clock runs 3 h ahead, gone for longer than its 2 s lease: by its own
    // clock the lease lasts hours more, by the store's it ran out. The lake is free.
    plant_lease(
        &lake,
        json!({"expires_at": Utc::now() + chrono::Duration::hours(3), "ttl_ms": 2_000}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    lake.refresh_ok(&[]).await;

    // Another container on this host: the same hostname and boot (a lease of an older
    // joblake names no PID namespace), a PID unused here. Whether it lives cannot be told
    // from here, so it keeps the lake until its lease runs out.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let host_and_boot = joblake_testkit::this_machine()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    plant_lease(
        &lake,
        json!({"machine": host_and_boot, "pid": gone.id(), "holder": "joblake refresh in another container"}),
    )
    .await;
    busy(&lake.run(&["refresh"]).await, "another container");
    // The same in the container's own format: its PID namespace is not ours.
    plant_lease(
        &lake,
        json!({"machine": format!("{host_and_boot}/pid:[1]"), "pid": gone.id(), "holder": "joblake refresh in another container"}),
    )
    .await;
    busy(&lake.run(&["refresh"]).await, "another container");

    // On this machine, a holder whose PID now belongs to another process (this test's):
    // the holder is gone, so the lake is taken at once, without waiting out the lease.
    plant_lease(
        &lake,
        json!({"machine": joblake_testkit::this_machine(), "pid": std::process::id(), "started": 1, "holder": "joblake refresh, crashed"}),
    )
    .await;
    let run = lake.run(&["refresh"]).await;
    run.assert_code(0);
    assert!(run.stderr().contains("took over"), "{}", run.stderr());
    edge(
        "an S3 lake's lease written by machines whose clocks are 3 h off, by another \
         container with the same hostname, and by a crashed process whose PID was reused",
        "lease objects planted in moto: `expires_at` 3 h in the past but just renewed; \
         3 h in the future but not renewed for longer than its 2 s; this host's hostname \
         and boot with a PID unused here; this machine with a live PID of another start time",
        "expiry is judged by the store's clock (the lease's `Last-Modified` against a probe \
         object's), so the slow clock's holder kept the lake (exit 2, nothing fetched) and \
         the fast clock's lost it once 2 s passed; the other container kept the lake, its \
         PIDs meaning nothing here; the reused PID's lease was taken at once",
    );
}
