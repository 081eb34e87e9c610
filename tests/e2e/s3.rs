//! The same lake on S3 (a real `moto_server` on loopback): refresh, resume after `kill -9`,
//! views, status and notebooks' readers, with no secret anywhere.

use std::path::{Path, PathBuf};

use joblake_schema::Table;
use joblake_testkit::Moto;
use serde_json::Value;

use super::{assert_views_match_truth, source};
use crate::harness::{Lake, Sim, bin, history_columns_of, kill_after, reader_counts, refetched};

fn s3_lake(sim: &Sim, test: &str) -> Lake {
    let moto = Moto::shared();
    Lake::on_s3(sim, &moto.endpoint, &moto.bucket(test))
}

/// The ids the simulator says the table holds.
async fn truth_ids(sim: &Sim, table: Table) -> Vec<Value> {
    let batch = sim.truth(table, None).await;
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    let mut ids: Vec<Value> = ids.iter().map(|v| v.unwrap().into()).collect();
    ids.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    ids
}

#[tokio::test]
async fn an_s3_lake_holds_the_truth_for_duckdb_pyarrow_and_status_and_no_secret() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let mut lake = s3_lake(&sim, "s3-refresh");
    // The latest tables merged into with deletion vectors, never written again, so that the
    // Delta readers below read them.
    lake.set_config("[views]\nlatest_after = 1000\n");
    let mut outputs = Vec::new();
    let summary = lake.refresh_ok(&[]).await;
    outputs.push(summary.to_string());
    for name in ["career_sites", "jobs"] {
        assert_eq!(source(&summary, name)["status"], "succeeded");
    }
    // The views (in ./lake.duckdb, the S3 default) read the S3 lake through httpfs.
    assert!(lake.dir.path().join("lake.duckdb").is_file());
    assert_views_match_truth(&lake, &sim).await;

    sim.advance(6).await;
    let summary = lake.refresh_ok(&[]).await;
    outputs.push(summary.to_string());
    assert_views_match_truth(&lake, &sim).await;
    let log = sim.log().await;
    assert!(refetched(&log, "jobo").is_empty() && refetched(&log, "sentrion").is_empty());

    // A notebook's pyarrow, with its own S3 client, reads the same Parquet.
    let s3 = lake.s3.as_ref().unwrap();
    let got = reader_counts(None, "pyarrow-s3", &s3.url, &lake.env).await;
    for (name, table) in [("career_sites", Table::CareerSites), ("jobs", Table::Jobs)] {
        let history = lake
            .count(&format!("SELECT count(*) FROM {name}_history"))
            .await;
        assert_eq!(got[format!("{name}_history")], history, "{name}");
        assert!(history > lake.count(&format!("SELECT count(*) FROM {name}")).await);
        assert_eq!(
            got[format!("{name}_id_list")],
            Value::Array(truth_ids(&sim, table).await),
            "{name}: the ids pyarrow reads are the truth's"
        );
    }

    // Any Delta reader, with its own S3 client, reads the same tables.
    crate::assert_delta_readers_match_views(&lake, &s3.url, &lake.env).await;

    // status reads the lake on S3.
    let status = lake.run(&["status", "--json"]).await;
    status.assert_code(0);
    outputs.push(status.stdout() + &status.stderr());
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(status["lake"], s3.url);
    for t in status["tables"].as_array().unwrap() {
        let name = t["table"].as_str().unwrap();
        let rows = lake
            .count(&format!("SELECT count(*) FROM {name}_history"))
            .await;
        assert_eq!(t["rows"].as_i64().unwrap(), rows, "{name}");
        assert_eq!(t["last_status"], "succeeded");
        assert_eq!(t["staged_pages"], 0);
        assert!(t["files"].as_u64().unwrap() >= 2, "{t}");
    }

    // `views --duckdb PATH` puts the views anywhere; they still read the S3 lake.
    let elsewhere = lake.dir.path().join("analyst").join("team.duckdb");
    let views = lake
        .run(&["views", "--duckdb", elsewhere.to_str().unwrap()])
        .await;
    views.assert_code(0);
    outputs.push(views.stdout() + &views.stderr());
    let q = lake
        .run(&[
            "--duckdb",
            elsewhere.to_str().unwrap(),
            "query",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM jobs",
        ])
        .await;
    q.assert_code(0);
    assert_eq!(
        q.stdout().lines().nth(1).unwrap(),
        lake.count("SELECT count(*) FROM jobs").await.to_string()
    );

    // Nothing of the run is left behind: no staged page, no lease, no upload.
    let bytes = lake.all_bytes().await;
    let keys: Vec<String> = bytes.keys().map(|k| k.display().to_string()).collect();
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("/_joblake/staging/") || k.ends_with("lease.json")),
        "{keys:?}"
    );
    assert_eq!(Moto::shared().unfinished_uploads(&s3.bucket), 0);

    // Neither API key nor the AWS secret is in any output, object, or DuckDB file.
    for secret in [&sim.jobo_key, &sim.sentrion_key, &s3.secret] {
        for text in &outputs {
            assert!(!text.contains(secret.as_str()), "an output holds a secret");
        }
        for (path, data) in &bytes {
            assert!(
                !data.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
    assert!(keys.iter().any(|k| k.ends_with("team.duckdb")));
}

#[tokio::test]
async fn kill_9_on_an_s3_lake_loses_nothing_and_the_next_run_goes_on_at_once() {
    let sim = Sim::start(&["--rows", "600", "--latency-ms", "20"]).await;
    let mut lake = s3_lake(&sim, "s3-kill");
    lake.set_config(
        "[career_sites]\npage_size = 10\nrequests_per_minute = 0\n\
         [jobs]\npage_size = 10\nrequests_per_minute = 0\n",
    );
    kill_after(&lake, &sim, "jobo", 4).await;
    // The killed run's lease names a process that is gone: no wait for it to expire.
    kill_after(&lake, &sim, "sentrion", 5).await;
    let summary = lake.refresh_ok(&[]).await;
    for name in ["career_sites", "jobs"] {
        assert!(source(&summary, name)["recovered_rows"].as_u64().unwrap() > 0);
    }
    assert_views_match_truth(&lake, &sim).await;
    let log = sim.log().await;
    for (name, api) in [("career_sites", "jobo"), ("jobs", "sentrion")] {
        let history = lake
            .count(&format!("SELECT count(*) FROM {name}_history"))
            .await;
        assert_eq!(
            history,
            lake.count(&format!("SELECT count(*) FROM {name}")).await
        );
        let again = refetched(&log, api);
        assert!(
            again.values().sum::<usize>() - again.len() <= 2,
            "{name}: {again:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_bucket_fails_at_once_and_says_what_to_fix() {
    let sim = Sim::start(&[]).await;
    let moto = Moto::shared();
    let lake = Lake::on_s3(&sim, &moto.endpoint, "no-such-bucket");
    let run = lake.run(&["refresh"]).await;
    run.assert_code(2);
    let err = run.stderr();
    assert!(
        err.contains("bucket no-such-bucket does not exist") && err.contains("AWS_ENDPOINT_URL"),
        "{err}"
    );
    assert!(!err.contains(&lake.s3.as_ref().unwrap().secret));
    assert!(
        sim.log().await.is_empty(),
        "nothing was fetched (or paid for)"
    );
}

#[tokio::test]
async fn without_httpfs_the_views_fail_saying_how_to_install_it() {
    let sim = Sim::start(&["--rows", "50"]).await;
    let mut lake = s3_lake(&sim, "no-httpfs");
    lake.refresh_ok(&[]).await;
    let empty = tempfile::tempdir().unwrap();
    lake.env.push((
        "JOBLAKE_DUCKDB_EXTENSIONS".into(),
        empty.path().display().to_string(),
    ));
    let run = lake.run(&["views"]).await;
    assert_ne!(run.code(), Some(0));
    assert!(
        run.stderr().contains("httpfs") && run.stderr().contains("duckdb_extensions"),
        "{}",
        run.stderr()
    );
}

/// Copies what `make build` lays out (the binary, libduckdb.so, duckdb_extensions/) into an
/// install directory of its own under `root`, and links `root/bin/joblake` to it, as a user
/// installing it by hand would; `with_extensions` false leaves the extensions behind.
fn install(root: &Path, with_extensions: bool) -> PathBuf {
    let release = Path::new(bin()).parent().unwrap();
    let dir = root.join("opt/joblake");
    let mut files = vec![PathBuf::from("joblake"), PathBuf::from("libduckdb.so")];
    if with_extensions {
        let ext = Path::new("duckdb_extensions/v1.5.5/linux_amd64/httpfs.duckdb_extension");
        files.push(ext.to_path_buf());
    }
    for f in &files {
        std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
        std::fs::copy(release.join(f), dir.join(f))
            .unwrap_or_else(|e| panic!("{} (run the tests with `make test`): {e}", f.display()));
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let link = root.join("bin/joblake");
    std::os::unix::fs::symlink(dir.join("joblake"), &link).unwrap();
    link
}

/// joblake installed elsewhere and run through a symlink, from an unrelated directory with
/// only PATH set (no LD_LIBRARY_PATH, no JOBLAKE_DUCKDB_EXTENSIONS, no HOME): DuckDB's library
/// and httpfs are found beside the binary, and an S3 lake's refresh, views and queries work.
#[tokio::test]
async fn installed_elsewhere_it_finds_duckdb_and_httpfs_beside_itself() {
    let sim = Sim::start(&["--rows", "50"]).await;
    let lake = s3_lake(&sim, "installed");
    let root = tempfile::tempdir().unwrap();
    let joblake = install(root.path(), true);

    lake.run_with(&joblake, &["refresh"]).await.assert_code(0);
    let sql = "SELECT count(*) AS n FROM jobs";
    let out = lake
        .run_with(&joblake, &["query", "--format", "json", "--", sql])
        .await;
    out.assert_code(0);
    let rows: Value = serde_json::from_str(&out.stdout()).unwrap();
    let truth = truth_ids(&sim, Table::Jobs).await.len() as i64;
    assert_eq!(rows[0]["n"].as_i64(), Some(truth), "{rows}");

    // The same install without its extensions: the views cannot read S3, and say where
    // httpfs belongs (so it was beside the binary that it was found above).
    let bare = tempfile::tempdir().unwrap();
    let run = lake
        .run_with(&install(bare.path(), false), &["views"])
        .await;
    assert_ne!(run.code(), Some(0));
    let stderr = run.stderr();
    assert!(
        stderr.contains("httpfs") && stderr.contains("duckdb_extensions"),
        "{stderr}"
    );
}

#[tokio::test]
async fn compact_on_an_s3_lake_keeps_the_views_and_writes_the_latest_tables_there() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let mut lake = s3_lake(&sim, "s3-compact");
    // Only `compact` writes the latest tables here, so runs pile up in the history.
    lake.set_config(super::compact::NO_AUTO_LATEST);
    lake.refresh_ok(&[]).await;
    sim.advance(4).await;
    lake.refresh_ok(&[]).await;
    let before = lake.query("SELECT * FROM jobs ORDER BY id").await;
    let run = lake.run(&["--json", "compact"]).await;
    run.assert_code(0);
    let report: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(report["latest"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(lake.query("SELECT * FROM jobs ORDER BY id").await, before);
    assert_views_match_truth(&lake, &sim).await;
    // A later run, keeping the latest table: the latest rows it replaced are deleted with
    // deletion vectors on S3, and the views skip them by position, read over S3 like the rest.
    lake.set_config("[views]\nlatest_after = 1000\n");
    sim.advance(3).await;
    lake.refresh_ok(&[]).await;
    let deleted = lake
        .count("SELECT count(*) FROM _joblake_deleted_jobs")
        .await;
    assert!(deleted > 0);
    let by_definition = lake
        .query(
            "SELECT * FROM jobs_history QUALIFY row_number() OVER \
             (PARTITION BY id ORDER BY _run_id DESC, _page DESC, _row DESC) = 1 ORDER BY id",
        )
        .await;
    assert_eq!(
        lake.query(&format!(
            "SELECT {} FROM jobs ORDER BY id",
            history_columns_of("jobs")
        ))
        .await,
        by_definition
    );
    assert_views_match_truth(&lake, &sim).await;
    let keys: Vec<String> = lake
        .all_bytes()
        .await
        .into_keys()
        .map(|k| k.display().to_string())
        .collect();
    assert!(
        keys.iter().any(|k| k.contains("/jobs_latest/_delta_log/"))
            && keys
                .iter()
                .any(|k| k.contains("/jobs_latest/deletion_vector_")),
        "{keys:?}"
    );
    // The changes tables, written by `compact`, appended to by the refresh, on S3 as well.
    crate::analysts::assert_changes_tables_exact(&lake).await;
}

/// Each S3 request of `bucket` that `log` (a [`Moto::start_logged`] log) recorded from line
/// `from` on, as `(method, key)`.
fn requests_of(log: &Path, bucket: &str, from: usize) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap();
    let prefix = format!("/{bucket}/");
    text.lines()
        .skip(from)
        .filter_map(|line| {
            let mut request = line.split('"').nth(1)?;
            // werkzeug colours some lines (a 206, a 404): `ESC[35mESC[1mGET /…`.
            while let Some(rest) = request.strip_prefix('\x1b') {
                request = rest.split_once('m')?.1;
            }
            let mut parts = request.split(' ');
            let (method, target) = (parts.next()?, parts.next()?);
            let key = target.strip_prefix(&prefix)?.split('?').next()?;
            Some((method.to_string(), key.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn a_refresh_fetches_each_delta_commit_of_an_s3_lake_once() {
    let sim = Sim::start(&[
        "--rows",
        "200",
        "--career-sites",
        "60",
        "--history-days",
        "60",
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("moto.log");
    let moto = Moto::start_logged(&log);
    let bucket = moto.bucket("commits");
    let mut lake = Lake::on_s3(&sim, &moto.endpoint, &bucket);
    lake.set_config(
        "[career_sites]\npage_size = 20\nrequests_per_minute = 0\n\
         [jobs]\npage_size = 20\nrequests_per_minute = 0\n",
    );
    // Several runs' commits in every table's log, none yet folded into a log checkpoint.
    for _ in 0..4 {
        lake.refresh_ok(&[]).await;
        sim.advance(3).await;
    }
    let from = std::fs::read_to_string(&log).unwrap().lines().count();
    lake.refresh_ok(&[]).await;

    let mut fetched: std::collections::BTreeMap<String, usize> = Default::default();
    for (method, key) in requests_of(&log, &bucket, from) {
        let commit = key.contains("/_delta_log/") && key.ends_with(".json");
        if method == "GET" && commit {
            *fetched.entry(key).or_default() += 1;
        }
    }
    // Every table's log was replayed (history and latest tables alike) ...
    for table in ["career_sites", "jobs", "career_sites_latest", "jobs_latest"] {
        let commits = fetched
            .keys()
            .filter(|k| k.starts_with(&format!("team/lake/{table}/_delta_log/")))
            .count();
        assert!(commits >= 4, "{table}: {commits} commits read: {fetched:?}");
    }
    // ... and no commit was fetched twice.
    let again: Vec<_> = fetched.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        again.is_empty(),
        "commits fetched more than once: {again:?}"
    );
}
