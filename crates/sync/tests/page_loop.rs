//! The page loop against a real simulator on loopback and a real local lake, without DuckDB:
//! every row served lands once, the checkpoint follows the data, a run stopped early resumes
//! at its cursor, and a failed write commits nothing past the rows it could not write.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use joblake_schema::Table;
use joblake_simulator::{SimConfig, SimHandle, Simulator};
use joblake_sync::{
    Checkpoint, RunOptions, Source, SourceSettings, SourceSummary, Task, api_of, run_source,
};
use joblake_writer::{Lake, LakeLock, RunStatus};
use serde_json::Value;

const SENTRION_KEY: &str = "sk_test_joblake_demo";

async fn simulator(rows: usize, faults: &str) -> SimHandle {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let cfg = SimConfig {
        rows,
        career_sites: Some(10),
        faults: joblake_simulator::parse_faults(faults).unwrap(),
        ..SimConfig::default()
    };
    Simulator::start(cfg, listener).await
}

fn jobs(sim: &SimHandle) -> Source {
    jobs_by(sim, 10)
}

fn jobs_by(sim: &SimHandle, page_size: u32) -> Source {
    let mut s = SourceSettings::defaults(api_of(Table::Jobs), SENTRION_KEY.to_string().into());
    s.base_url = sim.url();
    s.page_size = page_size;
    s.requests_per_minute = 0;
    Source::new(Table::Jobs, s).unwrap()
}

const REFRESH: Task = Task::Refresh {
    full: false,
    since: None,
};

async fn run(lake: &Lake, source: &Source, max_pages: Option<u64>) -> SourceSummary {
    let lock = LakeLock::acquire(lake, "the page-loop tests")
        .await
        .unwrap();
    let opts = RunOptions {
        max_pages,
        min_credits: None,
        last_balance: Default::default(),
        stop: Arc::new(AtomicBool::new(false)),
        progress: None,
        lock: Arc::new(lock),
        notice: |_| (),
    };
    let run_id = joblake_writer::layout::new_run_id();
    let summary = run_source(lake, &run_id, source, &REFRESH, &opts).await;
    drop(opts);
    summary
}

/// The simulator's log of Sentrion requests answered 200: rows served, and pages served
/// more than once.
async fn served(sim: &SimHandle) -> (u64, usize) {
    let log: Vec<Value> = reqwest::get(format!("{}/_sim/log", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rows = 0;
    let mut keys = std::collections::BTreeMap::<String, usize>::new();
    for e in log
        .iter()
        .filter(|e| e["api"] == "sentrion" && e["status"] == 200)
    {
        rows += e["rows"].as_u64().unwrap();
        *keys
            .entry(e["request_key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    (rows, keys.values().map(|n| n - 1).sum())
}

/// Rows in the table's published Parquet files, from their footers.
fn rows_in_files(root: &Path, table: &str) -> u64 {
    let mut rows = 0;
    let mut dirs = vec![root.join(table)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let file = std::fs::File::open(&p).unwrap();
                let reader =
                    parquet::file::serialized_reader::SerializedFileReader::new(file).unwrap();
                rows += parquet::file::reader::FileReader::metadata(&reader)
                    .file_metadata()
                    .num_rows() as u64;
            }
        }
    }
    rows
}

/// The rows the simulator served, once the run succeeded with every one of them in the
/// lake's files and none fetched twice.
async fn landed_once(summary: &SourceSummary, sim: &SimHandle, dir: &tempfile::TempDir) -> u64 {
    assert_eq!(
        summary.status,
        RunStatus::Succeeded,
        "{:?}",
        summary.message
    );
    let (rows, again) = served(sim).await;
    assert_eq!(summary.rows, rows);
    assert_eq!(rows_in_files(&dir.path().join("lake"), "jobs"), rows);
    assert_eq!(again, 0, "no page was fetched twice");
    rows
}

async fn committed(lake: &Lake) -> Checkpoint {
    joblake_sync::open::committed_checkpoint(lake, Table::Jobs)
        .await
        .unwrap()
}

fn new_lake(dir: &tempfile::TempDir) -> Lake {
    Lake::open(dir.path().join("lake").to_str().unwrap(), true).unwrap()
}

#[tokio::test]
async fn a_refresh_lands_every_page_once_and_moves_the_watermark() {
    let sim = simulator(200, "").await;
    let dir = tempfile::tempdir().unwrap();
    let lake = new_lake(&dir);
    let summary = run(&lake, &jobs(&sim), None).await;
    let rows = landed_once(&summary, &sim, &dir).await;
    assert!(rows > 50);
    let cp = committed(&lake).await;
    assert!(
        cp.watermark.is_some(),
        "a finished scan becomes the watermark"
    );
    assert_eq!(cp.scan, None);
    assert!(
        !dir.path()
            .join("lake/_joblake/staging/jobs")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "the staging goes once a commit covers it"
    );
}

#[tokio::test]
async fn a_run_stopped_at_max_pages_resumes_at_its_cursor_without_paying_twice() {
    let sim = simulator(200, "").await;
    let dir = tempfile::tempdir().unwrap();
    let lake = new_lake(&dir);
    let source = jobs(&sim);
    let first = run(&lake, &source, Some(3)).await;
    assert_eq!(first.status, RunStatus::Interrupted);
    assert_eq!(first.pages, 3);
    let cp = committed(&lake).await;
    let scan = cp.scan.expect("the scan under way is committed");
    assert_eq!(scan.pages, 3);
    assert!(scan.cursor.is_some());
    assert_eq!(cp.watermark, None, "the watermark waits for the scan's end");
    assert_eq!(rows_in_files(&dir.path().join("lake"), "jobs"), 30);

    let second = run(&lake, &source, None).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{:?}", second.message);
    let (rows, again) = served(&sim).await;
    assert_eq!(rows_in_files(&dir.path().join("lake"), "jobs"), rows);
    assert_eq!(
        again, 0,
        "the second run asked from the committed cursor on"
    );
}

#[tokio::test]
async fn a_failed_write_commits_nothing_past_it_and_the_next_run_commits_the_staged_pages() {
    // Page 3 holds rows that cannot load; their reasons cannot be written.
    let sim = simulator(200, "sentrion:nulls@3").await;
    let dir = tempfile::tempdir().unwrap();
    let lake = new_lake(&dir);
    let blocker = dir.path().join("lake/_joblake/rejects");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a directory").unwrap();
    let source = jobs(&sim);
    let failed = run(&lake, &source, None).await;
    assert_eq!(failed.status, RunStatus::Failed);
    let message = failed.message.unwrap_or_default();
    assert!(message.contains("stay staged"), "{message}");
    // Whatever the checkpoint covers is in the files.
    let covered = committed(&lake).await.scan.map_or(0, |s| s.pages);
    assert!(
        rows_in_files(&dir.path().join("lake"), "jobs") >= covered * 10,
        "the checkpoint covers {covered} pages of 10 rows, more than the files hold"
    );
    assert!(
        covered < 3,
        "no checkpoint past the page that could not be written"
    );

    std::fs::remove_file(&blocker).unwrap();
    let next = run(&lake, &source, None).await;
    assert_eq!(next.status, RunStatus::Succeeded, "{:?}", next.message);
    assert!(next.recovered_rows > 0, "the staged pages were committed");
    let (rows, again) = served(&sim).await;
    let rejected = next.rejected_rows;
    assert!(rejected > 0);
    assert_eq!(
        rows_in_files(&dir.path().join("lake"), "jobs") + rejected,
        rows,
        "every row served is in a file or rejected with its reason"
    );
    assert_eq!(again, 0, "nothing staged was fetched again");
}

#[tokio::test]
async fn pages_larger_than_the_writers_queue_each_wait_for_the_one_before_and_all_land() {
    // Descriptions of 100 kB: each page of 100 jobs is about 10 MB, past the 8 MB the fetch
    // loop may hold ahead of the writer, so every page but the first waits for the writer to
    // take the one before, which the loop must have handed over first.
    let sim = simulator(600, "sentrion:bigtext").await;
    let dir = tempfile::tempdir().unwrap();
    let lake = new_lake(&dir);
    let source = jobs_by(&sim, 100);
    // A guard against a hang, not a timing: the run takes seconds.
    let summary = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        run(&lake, &source, None),
    )
    .await
    .expect("the page loop waited for queue space it held itself");
    landed_once(&summary, &sim, &dir).await;
    assert!(summary.pages >= 3, "{} pages", summary.pages);
}
