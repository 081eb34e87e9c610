//! Lake behaviour that must hold the same on a local directory and on S3: write, commit,
//! resume after a crash, list, state round-trip, ledger, unfinished uploads.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use joblake_writer::{
    Lake, LakeLock, RunRecord, RunStatus, TableWriter, WriterOptions, compact_table,
    finish_compactions, read_ledger, write_ledger,
};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use crate::conformance;
use crate::support::{StageExt, TestLake, decoder, raw_page, schema};

conformance!(
    many_pages_make_one_file_per_partition_and_commit_the_cursor,
    pages_handed_over_together_make_the_files_one_at_a_time_would,
    a_file_being_written_is_invisible_until_its_commit,
    a_crash_before_commit_loses_nothing_and_publishes_once,
    a_crash_after_publishing_but_before_the_state_rewrites_the_same_file,
    staged_pages_already_committed_are_only_cleaned_up,
    an_empty_page_moves_the_checkpoint_without_a_file,
    files_roll_at_the_row_target,
    a_corrupt_state_file_is_a_clear_error_and_changes_nothing,
    a_large_file_is_uploaded_in_parts_and_an_aborted_one_leaves_nothing,
    a_crash_mid_upload_is_ignored_by_readers_and_recovered,
    objects_list_read_and_delete,
    the_ledger_round_trips,
    one_lock_holder_at_a_time,
    compaction_merges_each_partition_and_keeps_every_row_version,
    an_interrupted_compaction_is_finished_or_undone_by_the_next_run,
    the_delta_log_is_checkpointed_and_reads_the_same,
    a_long_run_keeps_its_staging_small_and_a_crash_recovers_it_whole,
    a_discarded_log_is_closed_and_gives_its_space_back,
);

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

/// Rows whose ids are long and random, so Parquet cannot shrink them: `rows` × ~1 kB.
fn incompressible(page: i64, rows: usize) -> RecordBatch {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ page as u64;
    let ids: Vec<String> = (0..rows)
        .map(|_| {
            (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{:016x}", x)
                })
                .collect()
        })
        .collect();
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

async fn open(lake: &Lake, run: &str) -> (TableWriter, joblake_writer::Recovery) {
    open_with(lake, run, WriterOptions::default()).await
}

async fn open_with(
    lake: &Lake,
    run: &str,
    opts: WriterOptions,
) -> (TableWriter, joblake_writer::Recovery) {
    TableWriter::open(lake, "t", schema(), run, opts, decoder())
        .await
        .unwrap()
}

/// The data files in table `t`'s partitions (its Delta log aside).
async fn data_files(lake: &Lake) -> Vec<object_store::ObjectMeta> {
    lake.list(&Path::from("t"))
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.location.as_ref().starts_with("t/_delta_log/"))
        .collect()
}

/// Asserts that table `t`'s Delta log names exactly the files in its partitions.
async fn assert_log_matches(lake: &Lake) {
    let mut logged: Vec<String> = joblake_writer::delta::live_files(lake, "t")
        .await
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.path)
        .collect();
    let mut listed: Vec<String> = data_files(lake)
        .await
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    logged.sort();
    listed.sort();
    assert_eq!(logged, listed, "the Delta log and the partitions disagree");
}

/// Every published data file of table `t`, with the ids it holds, read back through the
/// lake's own store.
async fn published(lake: &Lake) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for meta in data_files(lake).await {
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

/// What is staged for table `t`: its staged objects, or its staging logs.
async fn staged_meta(lake: &Lake) -> Vec<object_store::ObjectMeta> {
    lake.list(&Path::from("_joblake/staging/t")).await.unwrap()
}

async fn staged(lake: &Lake) -> Vec<Path> {
    staged_meta(lake)
        .await
        .into_iter()
        .map(|m| m.location)
        .collect()
}

/// What a reader of the lake directory sees besides the tool's own `_joblake/`: on disk,
/// every file (hidden or partial ones included), since pyarrow datasets read them all.
fn reader_visible_files(lake: &TestLake) -> Option<Vec<std::path::PathBuf>> {
    match lake.location() {
        joblake_writer::LakeLocation::Local(root) => Some(
            crate::support::files_under(root)
                .into_iter()
                .filter(|p| {
                    let rel = p.strip_prefix(root).unwrap();
                    !rel.starts_with("_joblake") && !rel.to_string_lossy().contains("_delta_log")
                })
                .collect(),
        ),
        _ => None,
    }
}

async fn many_pages_make_one_file_per_partition_and_commit_the_cursor(lake: TestLake) {
    let (mut w, rec) = open(&lake, "R1").await;
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
    assert_eq!((report.pages, report.rows), (4, 35));
    let files = published(&lake).await;
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0].0, "t/dt=2026-11-01/part-R1-000001.parquet");
    assert_eq!(files[0].1.len(), 30);
    assert_eq!(files[1].0, "t/dt=2026-11-02/part-R1-000004.parquet");
    assert_eq!(report.files.iter().map(|f| f.rows).sum::<u64>(), 35);
    w.stager().discard().await.unwrap();
    assert!(staged(&lake).await.is_empty());
    assert_eq!(lake.unfinished_uploads(), 0);

    // The state round-trips: a later run starts from exactly this checkpoint.
    let (w2, rec) = open(&lake, "R2").await;
    assert_eq!(rec.pages, 0);
    assert_eq!(w2.state(), Some(&json!({"cursor": null, "done": true})));
}

/// A worker that fell behind takes the pages queued for it in one go; the files, their names
/// (from the first page with rows in each partition) and the checkpoint are what appending
/// them one by one gives, so a later recovery replaying them one by one agrees.
async fn pages_handed_over_together_make_the_files_one_at_a_time_would(lake: TestLake) {
    let (mut w, _) = open(&lake, "R1").await;
    let mut pages = Vec::new();
    for (page, d, rows) in [(1, 1, 0), (2, 1, 10), (3, 2, 5), (4, 1, 10)] {
        let ids: Vec<String> = (0..rows).map(|r| format!("p{page}r{r}")).collect();
        let raw = raw_page("R1", page, day(d), ids.iter().map(String::as_str));
        let state = json!({"cursor": format!("c{page}")});
        w.stager().stage(&raw, &state).await.unwrap();
        pages.push((raw, state));
    }
    assert_eq!(w.append_pages(pages).await.unwrap(), 25);
    let report = w.commit(None).await.unwrap();
    assert_eq!((report.pages, report.rows), (4, 25));
    let files = published(&lake).await;
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "t/dt=2026-11-01/part-R1-000002.parquet",
            "t/dt=2026-11-02/part-R1-000003.parquet"
        ]
    );
    let first: Vec<String> = (0..10)
        .map(|r| format!("p2r{r}"))
        .chain((0..10).map(|r| format!("p4r{r}")))
        .collect();
    assert_eq!(files[0].1, first, "rows stay in page order");
    assert_eq!(files[1].1.len(), 5);
    let (w2, _) = open(&lake, "R2").await;
    assert_eq!(w2.state(), Some(&json!({"cursor": "c4"})));
}

async fn a_file_being_written_is_invisible_until_its_commit(lake: TestLake) {
    let (mut w, _) = open(&lake, "R1").await;
    w.stage(1, day(1), &batch(1, 10), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    assert!(published(&lake).await.is_empty());
    if let Some(files) = reader_visible_files(&lake) {
        assert!(files.is_empty(), "a reader would pick up {files:?}");
    }
    w.commit(None).await.unwrap();
    assert_eq!(published(&lake).await.len(), 1);
}

async fn a_crash_before_commit_loses_nothing_and_publishes_once(lake: TestLake) {
    let (mut w, _) = open(&lake, "R1").await;
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
        published(&lake).await.len(),
        1,
        "uncommitted rows stay invisible"
    );

    let (w2, rec) = open(&lake, "R2").await;
    assert_eq!((rec.pages, rec.rows), (2, 17));
    assert_eq!(w2.state(), Some(&json!({"cursor": "c3"})));
    let files = published(&lake).await;
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
    if let Some(files) = reader_visible_files(&lake) {
        assert_eq!(files.len(), 2, "only the two published files: {files:?}");
    }

    assert_log_matches(&lake).await;

    // Opening again finds nothing more to do.
    let (_, rec) = open(&lake, "R3").await;
    assert_eq!((rec.pages, rec.cleaned), (0, 0));
}

async fn a_crash_after_publishing_but_before_the_state_rewrites_the_same_file(lake: TestLake) {
    let (mut w, _) = open(&lake, "R1").await;
    w.stage(1, day(1), &batch(1, 4), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    w.publish_then_crash_for_tests().await.unwrap();
    assert_eq!(published(&lake).await.len(), 1);

    let (w2, rec) = open(&lake, "R2").await;
    assert_eq!(rec.pages, 1);
    assert_eq!(w2.state(), Some(&json!({"cursor": "c1"})));
    let files = published(&lake).await;
    assert_eq!(files.len(), 1, "same name, so no second copy: {files:?}");
    assert_eq!(files[0].1.len(), 4);
}

async fn staged_pages_already_committed_are_only_cleaned_up(lake: TestLake) {
    let (mut w, _) = open(&lake, "R1").await;
    w.stage(1, day(1), &batch(1, 4), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    let page = staged(&lake).await.pop().unwrap();
    let leftover = lake.get_opt(&page).await.unwrap().unwrap();
    w.commit(None).await.unwrap();
    // As if the process died between writing the state and deleting the staged page.
    lake.put(&page, leftover).await.unwrap();
    let (_, rec) = open(&lake, "R2").await;
    assert_eq!((rec.pages, rec.cleaned), (0, 1));
    assert!(staged(&lake).await.is_empty());
    let files = published(&lake).await;
    assert_eq!((files.len(), files[0].1.len()), (1, 4));
}

async fn an_empty_page_moves_the_checkpoint_without_a_file(lake: TestLake) {
    let (mut w, _) = open(&lake, "R1").await;
    w.stage(1, day(1), &batch(1, 0), &json!({"cursor": "c1"}))
        .await
        .unwrap();
    let report = w.commit(None).await.unwrap();
    assert!(report.files.is_empty());
    assert_eq!(w.state(), Some(&json!({"cursor": "c1"})));
    assert!(published(&lake).await.is_empty());
}

async fn files_roll_at_the_row_target(lake: TestLake) {
    let opts = WriterOptions {
        roll_rows: 20,
        ..WriterOptions::default()
    };
    let (mut w, _) = open_with(&lake, "R1", opts).await;
    for page in 1..=5 {
        w.stage(page, day(1), &batch(page, 10), &json!({"p": page}))
            .await
            .unwrap();
    }
    w.commit(None).await.unwrap();
    let sizes: Vec<usize> = published(&lake).await.iter().map(|f| f.1.len()).collect();
    assert_eq!(sizes, [20, 20, 10]);
}

async fn a_corrupt_state_file_is_a_clear_error_and_changes_nothing(lake: TestLake) {
    let state = Path::from("_joblake/state/t.json");
    lake.put(&state, Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let err = TableWriter::open(
        &lake,
        "t",
        schema(),
        "R1",
        WriterOptions::default(),
        decoder(),
    )
    .await
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(msg.contains("corrupt") && msg.contains("t.json"), "{msg}");
    assert_eq!(
        lake.get_opt(&state).await.unwrap().unwrap(),
        Bytes::from_static(b"{not json"),
        "the state file is left for the user to inspect"
    );
}

/// Stages three pages of ~4.3 MB of Parquet each into one file: past the 10 MB at which a
/// file goes up in parts.
async fn stage_large(w: &mut TableWriter, d: u32) {
    for page in 1..=3 {
        w.stage(
            page,
            day(d),
            &incompressible(page, 8_000),
            &json!({"p": page}),
        )
        .await
        .unwrap();
    }
}

fn large_opts() -> WriterOptions {
    WriterOptions {
        row_group_rows: 4_000,
        ..WriterOptions::default()
    }
}

async fn a_large_file_is_uploaded_in_parts_and_an_aborted_one_leaves_nothing(lake: TestLake) {
    let (mut w, _) = open_with(&lake, "R1", large_opts()).await;
    stage_large(&mut w, 1).await;
    assert!(lake.unfinished_uploads() >= 1, "the upload is under way");
    let report = w.commit(None).await.unwrap();
    assert_eq!(report.files.len(), 1);
    assert!(
        report.files[0].bytes > 10 * 1024 * 1024,
        "{:?}",
        report.files
    );
    assert_eq!(published(&lake).await[0].1.len(), 24_000);
    assert_eq!(lake.unfinished_uploads(), 0);
    if lake.bucket.is_some() {
        // S3 gives an object completed from parts an ETag of the form "<md5>-<parts>".
        let head = lake
            .store()
            .head(&Path::from(report.files[0].path.as_str()))
            .await
            .unwrap();
        let parts: u32 = head
            .e_tag
            .as_deref()
            .unwrap()
            .trim_matches('"')
            .rsplit('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(parts >= 2, "{head:?}");
    }

    // A run that gives up (an error, Ctrl-C) aborts its upload: nothing dangles, and what it
    // staged is committed by the next run.
    let (mut w, _) = open_with(&lake, "R2", large_opts()).await;
    stage_large(&mut w, 2).await;
    assert!(lake.unfinished_uploads() >= 1, "the upload is under way");
    w.abort().await;
    assert_eq!(lake.unfinished_uploads(), 0);
    assert_eq!(published(&lake).await.len(), 1);
    let (_, rec) = open_with(&lake, "R3", large_opts()).await;
    assert_eq!((rec.pages, rec.rows), (3, 24_000));
    assert_eq!(published(&lake).await.len(), 2);
}

async fn a_crash_mid_upload_is_ignored_by_readers_and_recovered(lake: TestLake) {
    let (mut w, _) = open_with(&lake, "R1", large_opts()).await;
    stage_large(&mut w, 1).await;
    std::mem::forget(w); // killed with parts uploaded
    assert!(lake.unfinished_uploads() >= 1);
    assert!(published(&lake).await.is_empty());
    if let Some(files) = reader_visible_files(&lake) {
        assert!(files.is_empty(), "a reader would pick up {files:?}");
    }
    let (_, rec) = open_with(&lake, "R2", large_opts()).await;
    assert_eq!((rec.pages, rec.rows), (3, 24_000));
    let files = published(&lake).await;
    assert_eq!((files.len(), files[0].1.len()), (1, 24_000));
    if let Some(files) = reader_visible_files(&lake) {
        assert_eq!(files.len(), 1, "only the published file: {files:?}");
        assert_eq!(lake.unfinished_uploads(), 0, "the partial file was cleared");
    }
}

async fn objects_list_read_and_delete(lake: TestLake) {
    let a = Path::from("_joblake/x/a.json");
    let b = Path::from("_joblake/x/deep/b.json");
    assert_eq!(lake.get_opt(&a).await.unwrap(), None);
    lake.put(&a, Bytes::from_static(b"1")).await.unwrap();
    lake.put(&b, Bytes::from_static(b"2")).await.unwrap();
    lake.put(&a, Bytes::from_static(b"3")).await.unwrap();
    let mut listed: Vec<String> = lake
        .list(&Path::from("_joblake/x"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, ["_joblake/x/a.json", "_joblake/x/deep/b.json"]);
    assert_eq!(
        lake.get_opt(&a).await.unwrap().unwrap(),
        Bytes::from_static(b"3")
    );
    assert!(
        lake.list(&Path::from("nothing/here"))
            .await
            .unwrap()
            .is_empty()
    );
    // Deleting twice, or what is not there, is fine.
    lake.delete_all(vec![a.clone(), b.clone()]).await.unwrap();
    lake.delete_all(vec![a.clone()]).await.unwrap();
    assert!(
        lake.list(&Path::from("_joblake/x"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_ledger_round_trips(lake: TestLake) {
    let mut rec = RunRecord::new("20261123T100000000Z", "jobs", Utc::now());
    write_ledger(&lake, &rec).await.unwrap();
    rec.status = RunStatus::Succeeded;
    rec.rows = 42;
    rec.credits_balance = Some(99.5);
    rec.finished_at = Some(Utc::now());
    write_ledger(&lake, &rec).await.unwrap();
    let other = RunRecord::new("20261123T110000000Z", "jobs", Utc::now());
    write_ledger(&lake, &other).await.unwrap();
    let back = read_ledger(&lake).await.unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].status, RunStatus::Succeeded);
    assert_eq!((back[0].rows, back[0].credits_balance), (42, Some(99.5)));
    assert_eq!(
        back[0].started_at.timestamp_micros(),
        rec.started_at.timestamp_micros()
    );
    assert_eq!(back[1].run_id, other.run_id, "oldest run first");
}

async fn one_lock_holder_at_a_time(lake: TestLake) {
    let first = LakeLock::acquire(&lake, "pid 1 refresh").await.unwrap();
    let err = LakeLock::acquire(&lake, "pid 2 refresh").await.unwrap_err();
    assert!(matches!(err, joblake_writer::Error::Busy { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("pid 1 refresh") && msg.contains("wait") && msg.contains(&lake.url()),
        "{msg}"
    );
    first.confirm(&lake).await.unwrap();
    first.release().await;
    let again = LakeLock::acquire(&lake, "pid 2 refresh").await.unwrap();
    again.release().await;
}

/// Three runs of a few pages each: day 1 gets a file from every run, day 2 one file.
async fn three_runs(lake: &Lake) {
    for (n, run) in ["R1", "R2", "R3"].iter().enumerate() {
        let (mut w, _) = open(lake, run).await;
        for page in 1..=3 {
            let p = n as i64 * 10 + page;
            w.stage(page, day(1), &batch(p, 5), &json!({"p": p}))
                .await
                .unwrap();
        }
        if *run == "R2" {
            w.stage(4, day(2), &batch(99, 7), &json!({"p": 99}))
                .await
                .unwrap();
        }
        w.commit(None).await.unwrap();
    }
}

/// Every row of table `t` as (id, _page), sorted: the versions a reader sees.
async fn all_rows(lake: &Lake) -> Vec<String> {
    let mut rows: Vec<String> = published(lake)
        .await
        .into_iter()
        .flat_map(|f| f.1)
        .collect();
    rows.sort();
    rows
}

async fn compaction_merges_each_partition_and_keeps_every_row_version(lake: TestLake) {
    three_runs(&lake).await;
    let before = all_rows(&lake).await;
    assert_eq!(published(&lake).await.len(), 4);
    let lock = LakeLock::acquire(&lake, "compact").await.unwrap();
    let report = compact_table(&lake, &lock, "t", schema(), "C1", &WriterOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (report.partitions, report.files_before, report.files_after),
        (1, 3, 1)
    );
    assert_eq!(report.rows, 45);
    assert_log_matches(&lake).await;
    let files = published(&lake).await;
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "t/dt=2026-11-01/part-C1-c00000.parquet",
            "t/dt=2026-11-02/part-R2-000004.parquet"
        ]
    );
    assert_eq!(all_rows(&lake).await, before, "every row version, once");
    assert_eq!(lake.unfinished_uploads(), 0);
    // Nothing left to do the second time.
    let again = compact_table(&lake, &lock, "t", schema(), "C2", &WriterOptions::default())
        .await
        .unwrap();
    assert_eq!(again.partitions, 0);
    lock.release().await;
}

async fn an_interrupted_compaction_is_finished_or_undone_by_the_next_run(lake: TestLake) {
    three_runs(&lake).await;
    let before = all_rows(&lake).await;
    let mut inputs = Vec::new();
    for meta in lake.list(&Path::from("t/dt=2026-11-01")).await.unwrap() {
        inputs.push((
            meta.location.clone(),
            lake.get_opt(&meta.location).await.unwrap().unwrap(),
        ));
    }
    let output = Path::from("t/dt=2026-11-01/part-C1-c00000.parquet");
    let manifest = Path::from("_joblake/compact/t/2026-11-01.json");
    let plant = |rows: u64| {
        json!({
            "format": 1,
            "inputs": inputs.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(),
            "output_prefix": "t/dt=2026-11-01/part-C1-c",
            "rows": rows,
        })
        .to_string()
    };

    // Killed before its Delta commit, output written (whole or not): the next run (here:
    // opening the table) undoes it, as the log still names the inputs.
    lake.put(&output, inputs[0].1.clone()).await.unwrap();
    lake.put(&manifest, plant(45).into()).await.unwrap();
    open(&lake, "R4").await;
    assert_eq!(all_rows(&lake).await, before);
    assert_eq!(
        published(&lake).await.len(),
        4,
        "the inputs stay, the uncommitted output went"
    );
    assert_eq!(lake.get_opt(&manifest).await.unwrap(), None);
    assert_log_matches(&lake).await;

    // Killed after its commit, before the inputs went: the next run finishes.
    let lock = LakeLock::acquire(&lake, "compact").await.unwrap();
    compact_table(&lake, &lock, "t", schema(), "C1", &WriterOptions::default())
        .await
        .unwrap();
    for (path, bytes) in &inputs {
        lake.put(path, bytes.clone()).await.unwrap();
    }
    lake.put(&manifest, plant(45).into()).await.unwrap();
    finish_compactions(&lake, "t").await.unwrap();
    assert_eq!(all_rows(&lake).await, before);
    assert_eq!(published(&lake).await.len(), 2);
    assert_eq!(lake.get_opt(&manifest).await.unwrap(), None);
    assert_log_matches(&lake).await;
    lock.release().await;
}

/// On disk a run's pages are records of one log: a crash in the middle of a record leaves a
/// torn tail, which is the page that was in flight and is ignored.
#[tokio::test]
async fn a_record_torn_by_a_crash_is_the_page_in_flight() {
    let lake = TestLake::local();
    let (mut w, _) = open(&lake, "R1").await;
    for page in 1..=3 {
        w.stage(page, day(1), &batch(page, 5), &json!({"cursor": page}))
            .await
            .unwrap();
    }
    std::mem::forget(w);
    let joblake_writer::LakeLocation::Local(root) = lake.location() else {
        unreachable!()
    };
    let log = root.join("_joblake/staging/t/R1.log");
    let whole = std::fs::read(&log).unwrap();
    // Page 4's record, cut short: its header and half its rows.
    let mut torn = whole.clone();
    torn.extend_from_slice(&whole[..whole.len() / 3 / 2]);
    std::fs::write(&log, &torn).unwrap();

    let (w2, rec) = open(&lake, "R2").await;
    assert_eq!((rec.pages, rec.rows), (3, 15));
    assert_eq!(w2.state(), Some(&json!({"cursor": 3})));
    assert!(!log.exists(), "the log goes once its pages are committed");
    assert_eq!(all_rows(&lake).await.len(), 15);
}

/// Every 20th version of a table's Delta log gets a checkpoint, so readers replay a few
/// commits at most; the table reads the same through it.
async fn the_delta_log_is_checkpointed_and_reads_the_same(lake: TestLake) {
    for n in 1..=21 {
        let (mut w, _) = open(&lake, &format!("R{n:02}")).await;
        w.stage(1, day(1), &batch(n, 2), &json!({"n": n}))
            .await
            .unwrap();
        w.commit(None).await.unwrap();
    }
    let log = lake.list(&Path::from("t/_delta_log")).await.unwrap();
    assert!(
        log.iter().any(|m| m
            .location
            .as_ref()
            .ends_with("00000000000000000020.checkpoint.parquet")),
        "{log:?}"
    );
    assert_log_matches(&lake).await;
    assert_eq!(published(&lake).await.len(), 21);
    let (w, _) = open(&lake, "R99").await;
    assert_eq!(w.state(), Some(&json!({"n": 21})));
}

/// Bytes staged for table `t`.
async fn staged_bytes(lake: &Lake) -> u64 {
    staged_meta(lake).await.iter().map(|m| m.size).sum()
}

/// One stager for a whole run, as the page loop has: a checkpoint holding a long list (a
/// backfill's windows) is written whole once, then as its changes; the pages roll commits
/// cover leave the staging; a crash then loses nothing and doubles nothing. Pages of 17 rows
/// and of 3 take turns, so that each record is written from the buffer the one before it
/// (longer or shorter) was encoded in.
async fn a_long_run_keeps_its_staging_small_and_a_crash_recovers_it_whole(lake: TestLake) {
    let opts = WriterOptions {
        roll_rows: 25,
        ..WriterOptions::default()
    };
    let (mut w, _) = open_with(&lake, "R1", opts).await;
    let mut stager = w.stager();
    let windows: Vec<serde_json::Value> = (0..1000)
        .map(|i| json!({"from": format!("2026-01-01T00:{i:04}"), "to": "2026-01-02", "expected_rows": i}))
        .collect();
    let whole = serde_json::to_vec(&json!({ "windows": windows }))
        .unwrap()
        .len() as u64;
    let checkpoint = |page: i64| {
        let done = (page / 5) as usize;
        json!({"windows": &windows[done..], "cursor": format!("c{page}")})
    };
    let mut most_staged = 0;
    for page in 1..=20 {
        let rows = if page % 2 == 1 { 17 } else { 3 };
        let ids: Vec<String> = (0..rows).map(|r| format!("p{page}r{r}")).collect();
        let raw = raw_page("R1", page, day(1), ids.iter().map(String::as_str));
        stager.stage(&raw, &checkpoint(page)).await.unwrap();
        // Every second or third page fills a file past 25 rows: a roll commit.
        w.append(raw, checkpoint(page)).await.unwrap();
        most_staged = most_staged.max(staged_bytes(&lake).await);
    }
    assert!(
        most_staged < whole * 2,
        "{most_staged} bytes staged at most, for a {whole}-byte checkpoint over 20 pages"
    );
    if matches!(lake.location(), joblake_writer::LakeLocation::Local(_)) {
        let logs = staged(&lake).await;
        assert!(logs.len() <= 2, "the covered segments are gone: {logs:?}");
    }
    // The process dies: no commit, no abort.
    std::mem::forget(stager);
    std::mem::forget(w);

    let (w2, rec) = open(&lake, "R2").await;
    assert!(rec.pages > 0, "{rec:?}");
    assert_eq!(w2.state(), Some(&checkpoint(20)));
    let mut all: Vec<String> = published(&lake)
        .await
        .into_iter()
        .flat_map(|f| f.1)
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (200, 200), "no row lost or doubled");
    assert!(staged(&lake).await.is_empty());
}

/// The log of a run whose every page is committed goes: its name at once, and its file is
/// closed (on a thread of its own, since freeing a run's gigabytes takes the disk a while), so
/// the space goes back to the disk rather than stay held by the process (Linux's `/proc` says
/// which files a process holds, removed ones included). Segments that roll commits covered go
/// the same way.
async fn a_discarded_log_is_closed_and_gives_its_space_back(lake: TestLake) {
    let joblake_writer::LakeLocation::Local(root) = lake.location().clone() else {
        return;
    };
    let staging = root.join("_joblake/staging");
    let opts = WriterOptions {
        roll_rows: 25,
        ..WriterOptions::default()
    };
    let (mut w, _) = open_with(&lake, "R1", opts).await;
    let mut stager = w.stager();
    for page in 1..=6 {
        let ids: Vec<String> = (0..17).map(|r| format!("p{page}r{r}")).collect();
        let raw = raw_page("R1", page, day(1), ids.iter().map(String::as_str));
        let checkpoint = json!({"cursor": format!("c{page}")});
        stager.stage(&raw, &checkpoint).await.unwrap();
        // Every second page fills a file past 25 rows: a roll commit, then a new segment.
        w.append(raw, checkpoint).await.unwrap();
    }
    w.commit(Some(json!({"cursor": "c6"}))).await.unwrap();
    // Files this process holds open under the staging directory, removed or not.
    let held = || -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .map(|fds| {
                fds.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                    .map(|target| target.display().to_string())
                    .filter(|target| target.starts_with(&*staging.to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(!held().is_empty(), "the open log is among the files held");
    stager.discard().await.unwrap();
    assert!(staged(&lake).await.is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !held().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(held(), Vec::<String>::new(), "removed logs still held open");
}
