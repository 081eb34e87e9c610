//! `joblake compact`: each partition's files merged into one, and the views return exactly
//! the same rows before and after.

use serde_json::Value;

use super::assert_views_match_truth;
use crate::harness::{Lake, Sim};

fn data_files(lake: &Lake, table: &str) -> usize {
    lake.files()
        .keys()
        .filter(|p| {
            p.starts_with(lake.root().join(table)) && p.extension().is_some_and(|e| e == "parquet")
        })
        .count()
}

/// Every row of every view, in a fixed order, as the analyst's queries see them.
async fn views_rows(lake: &Lake) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for t in ["career_sites", "jobs"] {
        out.push(
            lake.query(&format!(
                "SELECT * FROM {t}_history ORDER BY _run_id, _page, _row"
            ))
            .await,
        );
        out.push(lake.query(&format!("SELECT * FROM {t} ORDER BY id")).await);
    }
    out
}

/// The latest-version views return what their definition (a window over the history) does.
async fn assert_views_equal_their_definition(lake: &Lake) {
    for t in ["career_sites", "jobs"] {
        let by_definition = lake
            .query(&format!(
                "SELECT * FROM {t}_history QUALIFY row_number() OVER \
                 (PARTITION BY id ORDER BY _run_id DESC, _page DESC, _row DESC) = 1 ORDER BY id"
            ))
            .await;
        assert_eq!(
            lake.query(&format!("SELECT * FROM {t} ORDER BY id")).await,
            by_definition,
            "{t}"
        );
    }
}

/// The pointer to `table`'s latest files, once they were written.
fn latest_pointer(lake: &Lake, table: &str) -> Option<Value> {
    let path = lake
        .files()
        .into_keys()
        .find(|p| p.ends_with(format!("_joblake/latest/{table}.json")))?;
    Some(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
}

/// Refreshes that leave the latest files to `compact`.
pub const NO_AUTO_LATEST: &str = "[views]\nauto_latest = false\n";

#[tokio::test]
async fn compact_merges_each_partition_and_the_views_return_exactly_the_same_rows() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let mut lake = Lake::new(&sim);
    // Only `compact` writes the latest files here, so runs pile up on top of them.
    lake.set_config(NO_AUTO_LATEST);
    lake.refresh_ok(&[]).await;
    for _ in 0..3 {
        sim.advance(3).await;
        lake.refresh_ok(&[]).await;
    }
    let before = views_rows(&lake).await;
    assert!(
        before[0].len() > before[1].len(),
        "superseded versions exist"
    );
    assert_eq!(data_files(&lake, "jobs"), 4);
    assert_eq!(data_files(&lake, "career_sites"), 4);

    let run = lake.run(&["--json", "compact"]).await;
    run.assert_code(0);
    let report: Value = serde_json::from_str(&run.stdout()).unwrap();
    for t in report["tables"].as_array().unwrap() {
        assert_eq!(t["files_before"], 4, "{t}");
        assert_eq!(t["files_after"], 1, "{t}");
    }
    assert_eq!(data_files(&lake, "jobs"), 1);
    assert_eq!(data_files(&lake, "career_sites"), 1);
    assert_eq!(views_rows(&lake).await, before, "the views changed");
    let leftovers: Vec<_> = lake
        .files()
        .into_keys()
        .filter(|p| {
            let p = p.to_string_lossy();
            p.contains("_joblake/uploads") || p.contains("_joblake/compact")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The latest versions were written down: the views read those latest files.
    let latest = report["latest"].as_array().unwrap();
    assert_eq!(latest.len(), 2, "{report}");
    for s in latest {
        let t = s["table"].as_str().unwrap();
        assert_eq!(
            s["ids"].as_i64().unwrap(),
            lake.count(&format!("SELECT count(DISTINCT id) FROM {t}_history"))
                .await
        );
    }

    // A second compaction finds nothing to merge; a later refresh appends beside the merged
    // file, and the views (latest files plus newer rows) still equal their definition.
    let run = lake.run(&["--json", "compact", "--source", "jobs"]).await;
    run.assert_code(0);
    let report: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["tables"][0]["partitions"], 0);
    sim.advance(3).await;
    lake.refresh_ok(&[]).await;
    assert_eq!(data_files(&lake, "jobs"), 2);
    // The refresh fetched changed jobs again: their latest rows are skipped by position.
    let superseded = lake
        .query("SELECT count(*) AS n FROM _joblake_superseded_jobs")
        .await;
    assert!(superseded[0]["n"].as_i64().unwrap() > 0, "{superseded:?}");
    assert_views_equal_their_definition(&lake).await;
    assert_views_match_truth(&lake, &sim).await;

    // An analyst's session holds those views (a copy of the DuckDB file stands for it) while
    // a compaction merges the newer run's file away: what the views return does not change.
    let held = lake.dir.path().join("held.duckdb");
    std::fs::copy(lake.root().join("lake.duckdb"), &held).unwrap();
    let held_arg = held.display().to_string();
    let query_held = |sql: &'static str| {
        let lake = &lake;
        let held_arg = held_arg.clone();
        async move {
            let run = lake
                .run(&[
                    "--duckdb", &held_arg, "query", "--format", "json", "--", sql,
                ])
                .await;
            run.assert_code(0);
            serde_json::from_str::<Vec<Value>>(&run.stdout()).unwrap()
        }
    };
    let before = query_held("SELECT * FROM jobs ORDER BY id").await;
    lake.run(&["compact", "--source", "jobs"])
        .await
        .assert_code(0);
    assert_eq!(data_files(&lake, "jobs"), 1);
    assert_eq!(query_held("SELECT * FROM jobs ORDER BY id").await, before);
}

#[tokio::test]
async fn refreshes_write_the_latest_files_themselves_once_superseded_versions_appear() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    assert_eq!(
        latest_pointer(&lake, "jobs"),
        None,
        "one run: nothing to supersede yet"
    );

    // A second run fetches changed jobs again: the refresh writes the latest versions down,
    // through its own run, and the views read them.
    sim.advance(3).await;
    let summary = lake.refresh_ok(&[]).await;
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    let latest = latest_pointer(&lake, "jobs").expect("the second refresh wrote the latest files");
    assert_eq!(latest["through"], run_id.as_str(), "{latest}");
    let view = lake
        .query("SELECT sql FROM duckdb_views() WHERE view_name = 'jobs'")
        .await;
    assert!(
        view[0]["sql"]
            .as_str()
            .unwrap()
            .contains("_joblake/latest/jobs/"),
        "{view:?}"
    );
    assert_views_equal_their_definition(&lake).await;
    assert_views_match_truth(&lake, &sim).await;
}

#[tokio::test]
async fn with_auto_latest_off_only_compact_writes_them() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(NO_AUTO_LATEST);
    lake.refresh_ok(&[]).await;
    sim.advance(3).await;
    lake.refresh_ok(&[]).await;
    let latest = |lake: &Lake| {
        lake.files()
            .into_keys()
            .filter(|p| p.to_string_lossy().contains("_joblake/latest"))
            .count()
    };
    assert_eq!(latest(&lake), 0);
    lake.run(&["compact"]).await.assert_code(0);
    assert!(latest(&lake) > 0);
    assert_views_match_truth(&lake, &sim).await;
}

#[tokio::test]
async fn latest_after_zero_keeps_the_latest_files_through_every_run() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config("[views]\nlatest_after = 0\n");
    lake.refresh_ok(&[]).await;
    for _ in 0..2 {
        sim.advance(3).await;
        let summary = lake.refresh_ok(&[]).await;
        let latest = latest_pointer(&lake, "jobs").expect("latest files");
        assert_eq!(latest["through"], summary["run_id"], "{latest}");
        assert_views_match_truth(&lake, &sim).await;
    }
}

#[tokio::test]
async fn runs_under_latest_after_are_read_on_top_of_the_latest_files() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let mut lake = Lake::new(&sim);
    // Far above what any run here brings: only the first latest files (none yet) are due.
    lake.set_config("[views]\nlatest_after = 1000\n");
    lake.refresh_ok(&[]).await;
    sim.advance(3).await;
    let second = lake.refresh_ok(&[]).await;
    sim.advance(3).await;
    lake.refresh_ok(&[]).await;
    let latest = latest_pointer(&lake, "jobs").expect("latest files");
    assert_eq!(latest["through"], second["run_id"], "{latest}");
    let superseded = lake
        .query("SELECT count(*) AS n FROM _joblake_superseded_jobs")
        .await;
    assert!(superseded[0]["n"].as_i64().unwrap() > 0, "{superseded:?}");
    assert_views_equal_their_definition(&lake).await;
    assert_views_match_truth(&lake, &sim).await;
}
