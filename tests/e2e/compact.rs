//! `joblake compact`: each partition's files merged into one, and the views return exactly
//! the same rows before and after.

use serde_json::Value;

use super::assert_views_match_truth;
use crate::harness::{Lake, Sim, history_columns_of};

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
            lake.query(&format!(
                "SELECT {} FROM {t} ORDER BY id",
                history_columns_of(t)
            ))
            .await,
            by_definition,
            "{t}"
        );
    }
}

/// The commits of `table`'s latest table (`<table>_latest/_delta_log/`), oldest first, each as
/// its list of actions.
fn latest_commits(lake: &Lake, table: &str) -> Vec<Vec<Value>> {
    let log = lake.root().join(format!("{table}_latest/_delta_log"));
    let mut files: Vec<_> = std::fs::read_dir(&log)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .collect()
}

/// The history version a latest table commit says it is exact for.
fn exact_for(commit: &[Value]) -> Option<u64> {
    commit.iter().find_map(|a| {
        let d = a.get("domainMetadata")?;
        (d["domain"] == "joblake.latest")
            .then(|| serde_json::from_str::<Value>(d["configuration"].as_str()?).ok())??
            ["history_version"]
            .as_u64()
    })
}

/// The newest version of `table`'s history (its last commit file).
fn history_version(lake: &Lake, table: &str) -> u64 {
    std::fs::read_dir(lake.root().join(format!("{table}/_delta_log")))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap()
}

fn operation(commit: &[Value]) -> String {
    commit
        .iter()
        .find_map(|a| {
            a.get("commitInfo")?["operation"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Refreshes that leave the latest tables to `compact`.
pub const NO_AUTO_LATEST: &str = "[views]\nauto_latest = false\n";

#[tokio::test]
async fn compact_merges_each_partition_and_the_views_return_exactly_the_same_rows() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let mut lake = Lake::new(&sim);
    // Only `compact` writes the latest tables here, so runs pile up in the history.
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

    // The latest tables were written again: one row per id.
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

    // A second compaction finds nothing to merge; a later refresh (keeping the latest table
    // now) appends beside the merged file, and the views still equal their definition.
    let run = lake.run(&["--json", "compact", "--source", "jobs"]).await;
    run.assert_code(0);
    let report: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["tables"][0]["partitions"], 0);
    lake.set_config("[views]\nlatest_after = 1000\n");
    sim.advance(3).await;
    lake.refresh_ok(&[]).await;
    assert_eq!(data_files(&lake, "jobs"), 2);
    // The refresh fetched changed jobs again: their latest rows are deleted from the latest
    // table, and the views skip them by position.
    let deleted = lake
        .count("SELECT count(*) FROM _joblake_deleted_jobs")
        .await;
    assert!(deleted > 0);
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
async fn every_refresh_keeps_the_latest_table_exact_with_deletion_vectors() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let mut lake = Lake::new(&sim);
    // Far above what any run here brings: the latest table is merged into, never written again.
    lake.set_config("[views]\nlatest_after = 1000\n");
    lake.refresh_ok(&[]).await;
    let commits = latest_commits(&lake, "jobs");
    assert_eq!(commits.len(), 1, "the first refresh makes the latest table");
    assert_eq!(exact_for(&commits[0]), Some(history_version(&lake, "jobs")));
    let view = lake.view_sql("jobs").await;
    assert!(view.contains("/jobs_latest/"), "{view}");

    for round in 0..2 {
        // Changed jobs fetched again: the refresh deletes their rows from the latest table
        // with deletion vectors and adds their new versions, in one commit.
        sim.advance(3).await;
        lake.refresh_ok(&[]).await;
        let commits = latest_commits(&lake, "jobs");
        let last = commits.last().unwrap();
        assert_eq!(operation(last), "MERGE", "round {round}: {last:?}");
        assert_eq!(exact_for(last), Some(history_version(&lake, "jobs")));
        assert!(
            last.iter().any(|a| a
                .get("add")
                .is_some_and(|add| add.get("deletionVector").is_some())),
            "round {round}: replaced rows are deleted with a deletion vector: {last:?}"
        );
        let deleted = lake
            .count("SELECT count(*) FROM _joblake_deleted_jobs")
            .await;
        assert!(deleted > 0);
        assert_views_equal_their_definition(&lake).await;
        assert_views_match_truth(&lake, &sim).await;
    }
    crate::assert_delta_readers_match_views(&lake, &lake.root().display().to_string(), &[]).await;

    // `compact` writes it again as one file, without deletion vectors.
    lake.run(&["compact"]).await.assert_code(0);
    let last = latest_commits(&lake, "jobs").pop().unwrap();
    let adds: Vec<&Value> = last.iter().filter_map(|a| a.get("add")).collect();
    assert_eq!(adds.len(), 1, "{last:?}");
    assert!(adds[0].get("deletionVector").is_none_or(Value::is_null));
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
    assert!(latest_commits(&lake, "jobs").is_empty());
    assert_views_equal_their_definition(&lake).await;
    lake.run(&["compact"]).await.assert_code(0);
    assert_eq!(
        exact_for(latest_commits(&lake, "jobs").last().unwrap()),
        Some(history_version(&lake, "jobs"))
    );
    assert_views_match_truth(&lake, &sim).await;
}

#[tokio::test]
async fn latest_after_zero_writes_the_latest_table_again_after_every_run() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config("[views]\nlatest_after = 0\n");
    lake.refresh_ok(&[]).await;
    for _ in 0..2 {
        sim.advance(3).await;
        let before = latest_commits(&lake, "jobs").len();
        lake.refresh_ok(&[]).await;
        // The refresh's commits: the table written again (every file of the version before
        // removed), then, when files it copied hold rows a later version replaced, the commit
        // deleting those rows (`commit_exact`); the last says the table is exact.
        let made = latest_commits(&lake, "jobs").split_off(before);
        assert!(!made.is_empty() && made.len() <= 2, "{made:?}");
        let write = &made[0];
        assert_eq!(operation(write), "WRITE", "{write:?}");
        assert!(write.iter().any(|a| a.get("remove").is_some()), "{write:?}");
        if let Some(second) = made.get(1) {
            assert_eq!(operation(second), "MERGE", "{second:?}");
        }
        let last = made.last().unwrap();
        assert_eq!(exact_for(last), Some(history_version(&lake, "jobs")));
        // The files of the version before stay, for sessions holding views of them (a rewrite
        // removes them all); older ones, and old deletion vectors, go.
        let named: std::collections::BTreeSet<String> = made
            .iter()
            .flatten()
            .filter_map(|a| a.get("add").or(a.get("remove"))?["path"].as_str())
            .map(str::to_string)
            .collect();
        let root = lake.root().join("jobs_latest");
        let on_disk: std::collections::BTreeSet<String> = lake
            .files()
            .into_keys()
            .filter_map(|p| {
                p.strip_prefix(&root)
                    .ok()
                    .map(|r| r.to_string_lossy().to_string())
            })
            .filter(|r| !r.starts_with("_delta_log"))
            .collect();
        // Deletion vectors are named by their add's `deletionVector` (a uuid, z85-encoded):
        // as many files as the refresh's commits give its files.
        let (vectors, data): (Vec<&String>, Vec<&String>) = on_disk
            .iter()
            .partition(|r| r.starts_with("deletion_vector_"));
        let named_vectors: std::collections::BTreeSet<&str> = made
            .iter()
            .flatten()
            .filter_map(|a| a.get("add")?["deletionVector"]["pathOrInlineDv"].as_str())
            .collect();
        assert_eq!(vectors.len(), named_vectors.len(), "{vectors:?}");
        assert!(
            data.iter().all(|r| named.contains(*r)),
            "{data:?} beyond {named:?}"
        );
        assert_views_match_truth(&lake, &sim).await;
    }
}

#[tokio::test]
async fn a_run_that_fetched_ids_twice_is_copied_and_their_older_rows_deleted() {
    // The scan restarts once (a dead cursor on the third page): its first pages come twice,
    // under 5 % of the run's rows. The derived tables name those ids (at most 256).
    let (sim, lake, twice) = first_refresh_fetching_twice(3, 1..=256).await;

    // The run's file is in the latest table as it is (same name, no row decoded), and a
    // second commit deletes its older rows: only that one says the table is exact.
    let commits = latest_commits(&lake, "jobs");
    let (first, last) = (&commits[commits.len() - 2], &commits[commits.len() - 1]);
    assert_eq!(exact_for(last), Some(history_version(&lake, "jobs")));
    let state = |c: &[Value]| {
        c.iter()
            .find_map(|a| a["domainMetadata"]["configuration"].as_str())
            .map(|s| serde_json::from_str::<Value>(s).unwrap())
            .unwrap()
    };
    assert_eq!(state(first)["complete"], false, "{first:?}");
    assert_eq!(state(last)["complete"], true, "{last:?}");
    let history_file = lake
        .files()
        .into_keys()
        .find(|p| {
            p.strip_prefix(lake.root())
                .is_ok_and(|r| r.to_string_lossy().starts_with("jobs/dt="))
        })
        .unwrap();
    let name = history_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let deleted: u64 = last
        .iter()
        .filter_map(|a| a.get("add"))
        .filter(|add| add["path"].as_str().unwrap().ends_with(&name))
        .map(|add| add["deletionVector"]["cardinality"].as_u64().unwrap())
        .sum();
    assert_eq!(deleted, twice as u64, "{last:?}");
    assert_eq!(
        lake.count("SELECT count(*) FROM _joblake_deleted_jobs")
            .await,
        twice
    );
    assert_every_table_exact(&lake, &sim).await;
}

#[tokio::test]
async fn a_run_that_fetched_more_ids_twice_than_are_named_is_kept_exact_all_the_same() {
    // A dead cursor on the seventh page: 300 ids come twice, more than the derived tables
    // name, so their SQL works them out itself (on two threads, within 48 MB).
    let (sim, lake, _) = first_refresh_fetching_twice(7, 257..=5000).await;
    assert_every_table_exact(&lake, &sim).await;
}

/// A first refresh of jobs whose scan restarts once, at a dead cursor on page `dead_at` of
/// 50 jobs, so that a number of ids within `expected` comes twice; that number.
async fn first_refresh_fetching_twice(
    dead_at: u32,
    expected: std::ops::RangeInclusive<i64>,
) -> (Sim, Lake, i64) {
    let fault = format!("sentrion:dead_cursor@{dead_at}");
    let sim = Sim::start(&["--rows", "5000", "--faults", &fault]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(
        "[career_sites]\nrequests_per_minute = 0\n[jobs]\npage_size = 50\nrequests_per_minute = 0\n",
    );
    lake.refresh_ok(&[]).await;
    let twice = lake
        .count("SELECT count(*) - count(DISTINCT id) FROM jobs_history")
        .await;
    assert!(expected.contains(&twice), "{twice} ids fetched twice");
    (sim, lake, twice)
}

/// The views are what their definitions and the simulator say, every Delta reader reads
/// them, and the derived tables hold the rows their SQL works out.
async fn assert_every_table_exact(lake: &Lake, sim: &Sim) {
    assert_views_equal_their_definition(lake).await;
    assert_views_match_truth(lake, sim).await;
    crate::assert_delta_readers_match_views(lake, &lake.root().display().to_string(), &[]).await;
    // The changes of a history of one run, ids twice in it, taken without the changes SQL:
    // the rows that SQL works out.
    crate::analysts::assert_changes_tables_exact(lake).await;
}

#[tokio::test]
async fn a_latest_table_whose_state_cannot_be_read_is_written_again_without_losing_a_file() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    lake.break_state("jobs_latest", "joblake.latest");
    sim.advance(6).await;
    // Written again, its old files removed from the log before they are deleted.
    lake.refresh_ok(&[]).await;
    assert!(lake.view_sql("jobs").await.contains("/jobs_latest/"));
    assert_views_match_truth(&lake, &sim).await;
    crate::assert_delta_readers_match_views(&lake, &lake.url(), &lake.env).await;
    // And by `compact`, which writes it again whatever its state.
    lake.break_state("jobs_latest", "joblake.latest");
    lake.run(&["compact"]).await.assert_code(0);
    assert_views_match_truth(&lake, &sim).await;
    crate::assert_delta_readers_match_views(&lake, &lake.url(), &lake.env).await;
}
