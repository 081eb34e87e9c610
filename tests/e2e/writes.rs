//! Writes that fail under a run: a store that refuses a page's rejects, and a disk briefly
//! full under a Parquet upload. Neither may move a checkpoint past rows that are not in a
//! readable file, nor publish a file with a hole: the run exits 1, nothing of what it wrote
//! since its last commit is published, its pages stay staged, and the next run commits them
//! (paying for no page again).

use std::path::PathBuf;

use serde_json::Value;

use super::served_rows;
use crate::harness::{Lake, Sim, assert_no_keys, refetched, reliability_section, repo_root};

/// Versions stored twice in a table's history.
async fn doubled(lake: &Lake, table: &str) -> i64 {
    lake.count(&format!(
        "SELECT count(*) - count(DISTINCT (id, _run_id, _page, _row)) FROM {table}_history"
    ))
    .await
}

/// Paid pages served more than once by `api`.
async fn paid_again(sim: &Sim, api: &str) -> usize {
    let again = refetched(&sim.log().await, api);
    again.values().sum::<usize>() - again.len()
}

/// The write-fault shim (`shim/failwrite.c`), built with the system's C compiler.
fn failwrite_shim(dir: &std::path::Path) -> PathBuf {
    let so = dir.join("failwrite.so");
    let out = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(repo_root().join("tests/e2e/shim/failwrite.c"))
        .arg("-ldl")
        .output()
        .expect("cc (the C compiler Rust links with) builds the write-fault shim");
    assert!(
        out.status.success(),
        "cannot build the write-fault shim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    so
}

/// Rows of `table`'s history any reader sees, asked of joblake's DuckDB; panics when a file
/// cannot be read.
async fn history_rows(lake: &Lake, table: &str) -> i64 {
    lake.count(&format!("SELECT count(*) FROM {table}_history"))
        .await
}

#[tokio::test]
async fn write_errors_never_commit_past_unwritten_rows_nor_publish_a_file_with_a_hole() {
    let rows = [
        rejects_store_unwritable().await,
        upload_part_fails_once().await,
    ];
    reliability_section(
        "write-faults",
        &format!(
            "## Write errors\n\n\
             A write failing under a run, then the same command again with the fault gone. \
             *Rows* are served / loaded / rejected (with their reason) after the second run; \
             *paid again* counts pages the simulator served twice.\n\n\
             | write error | first run (exit) | rows | versions doubled | pages paid again |\n\
             |---|---|---|---|---|\n{}",
            rows.concat()
        ),
    );
}

/// The rejects store cannot be written: the page's rows are in no file, so no checkpoint may
/// cover them.
async fn rejects_store_unwritable() -> String {
    // Page 3 of jobs holds rows that cannot load; their reasons go under _joblake/rejects/,
    // which is a plain file here, so that write fails.
    let sim = Sim::start(&[
        "--rows",
        "300",
        "--career-sites",
        "20",
        "--faults",
        "sentrion:nulls@3",
    ])
    .await;
    let mut lake = Lake::new(&sim);
    lake.set_config("[jobs]\npage_size = 10\nrequests_per_minute = 0\n");
    let blocker = lake.root().join("_joblake/rejects");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a directory").unwrap();

    let failed = lake.run(&["--json", "refresh", "--source", "jobs"]).await;
    failed.assert_code(1);
    let before = served_rows(&sim.log().await, "sentrion");
    assert!(before >= 30, "the run fetched on past the bad page");

    // The store is writable again: the next run commits the staged pages, then goes on.
    std::fs::remove_file(&blocker).unwrap();
    let summary = lake.refresh_ok(&["--source", "jobs"]).await;
    let jobs = super::source(&summary, "jobs");
    let served = served_rows(&sim.log().await, "sentrion");
    let loaded = history_rows(&lake, "jobs").await;
    let rejected: i64 = lake
        .files()
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("_joblake/rejects/jobs/"))
        .map(|(_, b)| String::from_utf8_lossy(b).lines().count() as i64)
        .sum();
    assert_eq!(
        served as i64,
        loaded + rejected,
        "every row served is loaded or rejected: {served} served, {loaded} loaded, {rejected} rejected ({jobs})"
    );
    assert_eq!(doubled(&lake, "jobs").await, 0);
    assert_eq!(
        paid_again(&sim, "sentrion").await,
        0,
        "the staged pages were committed, not fetched again"
    );
    assert!(rejected > 0, "the bad rows are rejected with their reason");
    assert!(
        failed.stderr().contains("staged") && failed.stderr().contains("rejects"),
        "the error says what failed and that the pages stay staged: {}",
        failed.stderr()
    );
    assert_no_keys(&lake, &sim, &[failed.stdout(), failed.stderr()]).await;
    format!(
        "| the rejects store cannot be written (`_joblake/rejects` is a file; page 3 of jobs \
         has rows to reject) | 1, saying the pages stay staged | {served} / {loaded} / \
         {rejected} | 0 | 0 |\n"
    )
}

/// A Parquet upload's part fails once: the file must never be completed without it.
async fn upload_part_fails_once() -> String {
    // Enough jobs for a Parquet row group (122 880 rows) to be uploaded mid-run, part by
    // part; the first part's write fails once with ENOSPC.
    let sim = Sim::start(&["--rows", "200000", "--career-sites", "20"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config("[jobs]\nrequests_per_minute = 0\n");
    let shim = failwrite_shim(lake.dir.path());
    // Every job the simulator has (75 days of history), not the API's two-month default.
    let since = (chrono::Utc::now().date_naive() - chrono::Days::new(80)).to_string();
    let args = ["--source", "jobs", "--since", since.as_str()];
    let mut cmd = lake.command(&[&["--json", "refresh"][..], &args].concat());
    cmd.env("LD_PRELOAD", &shim)
        .env("JOBLAKE_TEST_FAIL_WRITE", "_joblake/uploads/");
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        stderr.contains("failwrite: write to"),
        "the shim failed no write (is LD_PRELOAD honoured?): {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Whatever was published reads whole.
    let readable = lake
        .run(&["query", "SELECT count(*) FROM jobs_history"])
        .await;
    readable.assert_code(0);

    let summary: Value = lake.refresh_ok(&args).await;
    let served = served_rows(&sim.log().await, "sentrion") as i64;
    let loaded = history_rows(&lake, "jobs").await;
    assert_eq!(served, loaded, "every row served is in a file ({summary})");
    assert!(
        loaded > 122_880,
        "{loaded} rows: too few for a row group to go up mid-run"
    );
    assert_eq!(doubled(&lake, "jobs").await, 0);
    let again = paid_again(&sim, "sentrion").await;
    assert!(again <= 1, "{again} pages paid again");
    assert!(stderr.contains("staged"), "{stderr}");
    format!(
        "| a disk briefly full: one `write` of a Parquet upload part fails with ENOSPC (an \
         `LD_PRELOAD` shim), mid-run, once 122 880 jobs filled a row group | 1, saying the pages stay staged; \
         no file published with a hole | {served} / {loaded} / 0 | 0 | {again} |\n"
    )
}
