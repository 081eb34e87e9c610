//! End-to-end: the real `joblake` binary against `joblake simulate`, checked against the
//! simulator's own ground truth (`/_sim/truth/*`) and request log (`/_sim/log`).

mod analysts;
mod backfill;
mod baddata;
mod compact;
mod crash;
mod edges;
mod enrich;
mod faults;
mod harness;
mod lease;
mod local;
mod report;
mod s3;
mod writes;

use std::time::{Duration, Instant};

use harness::{Lake, Sim, assert_same, kill_after, py_env, reader_counts, refetched};
use joblake_schema::Table;
use serde_json::Value;

/// Retries that keep a faulty test run short without changing what is retried.
const FAST_RETRY: &str = r#"
[career_sites]
retry_base_ms = 20
retry_cap_secs = 2
[jobs]
retry_base_ms = 20
retry_cap_secs = 2
requests_per_minute = 0
"#;

async fn assert_views_match_truth(lake: &Lake, sim: &Sim) {
    assert_same(
        &lake.view("career_sites").await,
        &lake.truth(sim, Table::CareerSites).await,
        "career_sites",
    );
    assert_same(
        &lake.view("jobs").await,
        &lake.truth(sim, Table::Jobs).await,
        "jobs",
    );
}

fn source<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no {name} in {summary}"))
}

/// Rows the simulator served with a 200 to one API.
fn served_rows(log: &[Value], api: &str) -> u64 {
    log.iter()
        .filter(|e| e["api"] == api && e["status"] == 200)
        .map(|e| e["rows"].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn first_run_loads_exactly_the_truth_and_says_so() {
    let sim = Sim::start(&["--rows", "400"]).await;
    let lake = Lake::new(&sim);
    let summary = lake.refresh_ok(&[]).await;
    assert_views_match_truth(&lake, &sim).await;

    let log = sim.log().await;
    for (name, api) in [("career_sites", "jobo"), ("jobs", "sentrion")] {
        let s = source(&summary, name);
        assert_eq!(s["status"], "succeeded", "{s}");
        assert_eq!(
            s["rows"].as_u64().unwrap(),
            served_rows(&log, api),
            "{name} rows"
        );
        assert!(s["files"].as_u64().unwrap() >= 1);
        // Many pages per file: a first run of one day writes one file per table.
        assert!(s["pages"].as_u64().unwrap() > s["files"].as_u64().unwrap());
        // Each row stored once.
        let history = lake
            .count(&format!("SELECT count(*) FROM {name}_history"))
            .await;
        let ids = lake.count(&format!("SELECT count(*) FROM {name}")).await;
        assert_eq!(history, ids, "{name}: a first run stores every row once");
        assert!(
            refetched(&log, api).is_empty(),
            "{name}: a page was paid for twice"
        );
    }

    // status agrees with the data, and the ledger recorded the run.
    let status = lake.run(&["status", "--json"]).await;
    status.assert_code(0);
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    for t in status["tables"].as_array().unwrap() {
        let name = t["table"].as_str().unwrap();
        let rows = lake
            .count(&format!("SELECT count(*) FROM {name}_history"))
            .await;
        assert_eq!(t["rows"].as_i64().unwrap(), rows, "{name}");
        assert_eq!(t["ids"].as_i64().unwrap(), rows, "{name}");
        assert_eq!(t["last_status"], "succeeded");
        assert_eq!(t["scan_in_progress"], false);
        assert_eq!(t["staged_pages"], 0);
    }
    let runs = lake
        .query("SELECT source, status, rows, new_ids FROM runs ORDER BY source")
        .await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        assert_eq!(r["status"], "succeeded");
        assert_eq!(r["rows"], r["new_ids"], "{r}");
    }

    // Partitions are by fetch date, and nothing half-written is visible (the first run makes
    // the latest tables too).
    for path in lake.files().keys() {
        let rel = path
            .strip_prefix(lake.root())
            .unwrap()
            .to_string_lossy()
            .to_string();
        if rel.contains("_latest/") {
            // The latest tables are partitioned as the history, their files the history's.
            let today = chrono::Utc::now().date_naive();
            assert!(
                rel.contains("_latest/_delta_log/")
                    || rel.contains(&format!("_latest/dt={today}/part-")),
                "unexpected latest table file {rel}"
            );
        } else if rel.ends_with(".parquet") && !rel.starts_with("_joblake") {
            let today = chrono::Utc::now().date_naive();
            assert!(
                rel.contains(&format!("/dt={today}/part-")),
                "unexpected data file {rel}"
            );
        }
    }
}

#[tokio::test]
async fn incremental_run_fetches_only_changes_and_the_later_version_wins() {
    let sim = Sim::start(&["--rows", "400"]).await;
    let lake = Lake::new(&sim);
    let first = lake.refresh_ok(&[]).await;
    sim.advance(6).await;
    let second = lake.refresh_ok(&[]).await;
    assert_views_match_truth(&lake, &sim).await;

    for name in ["career_sites", "jobs"] {
        let a = source(&first, name)["rows"].as_u64().unwrap();
        let b = source(&second, name)["rows"].as_u64().unwrap();
        assert!(
            b > 0 && b * 3 < a,
            "{name}: the second run fetched {b} rows after {a}"
        );
        // Updated rows have two versions; the view shows the one fetched last.
        let versions = lake
            .count(&format!(
                "SELECT count(*) FROM (SELECT id FROM {name}_history GROUP BY id HAVING count(*) > 1)"
            ))
            .await;
        assert!(versions > 0, "{name}: no row was updated between the runs");
        let stale = lake
            .count(&format!(
                "SELECT count(*) FROM {name} v JOIN (SELECT id, max(_run_id) AS r FROM {name}_history GROUP BY id) h USING (id) WHERE v._run_id <> h.r"
            ))
            .await;
        assert_eq!(stale, 0, "{name}: the view shows an older version");
    }
    let runs = lake
        .count("SELECT count(*) FROM runs WHERE status = 'succeeded'")
        .await;
    assert_eq!(runs, 4);
}

#[tokio::test]
async fn faults_and_dead_cursors_still_converge_to_the_truth() {
    let sim = Sim::start(&[
        "--rows",
        "400",
        "--faults",
        "jobo:429=1@2,jobo:503@4,jobo:dead_cursor@6,jobo:restart@9,\
         sentrion:503@2,sentrion:429=1@3,sentrion:dead_cursor@5",
    ])
    .await;
    let mut lake = Lake::new(&sim);
    lake.set_config(FAST_RETRY);
    let summary = lake.refresh_ok(&[]).await;
    assert_views_match_truth(&lake, &sim).await;

    let jobo = source(&summary, "career_sites");
    assert_eq!(jobo["restarts"], 2, "{jobo}");
    assert!(jobo["retries"].as_u64().unwrap() >= 2, "{jobo}");
    assert!(jobo["http_429"].as_u64().unwrap() >= 1, "{jobo}");
    let sentrion = source(&summary, "jobs");
    assert_eq!(sentrion["restarts"], 1, "{sentrion}");
    assert!(sentrion["http_429"].as_u64().unwrap() >= 1, "{sentrion}");

    // Retry-After: 1 was honoured before the next request to the same API.
    let log = sim.log().await;
    for api in ["jobo", "sentrion"] {
        let reqs: Vec<&Value> = log.iter().filter(|e| e["api"] == api).collect();
        let i = reqs.iter().position(|e| e["status"] == 429).unwrap();
        let at =
            |e: &Value| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
        let waited = at(reqs[i + 1]) - at(reqs[i]);
        assert!(
            waited.num_milliseconds() >= 900,
            "{api}: retried {waited} after a 429 with Retry-After: 1"
        );
    }

    // The restarts fetched pages twice within the run: the Delta readers see the latest
    // tables' deletion vectors on those rows, as the views do.
    assert!(
        lake.count("SELECT count(*) - count(DISTINCT id) FROM career_sites_history")
            .await
            > 0
    );
    assert_delta_readers_match_views(&lake, &lake.url(), &[]).await;
}

#[tokio::test]
async fn a_402_stops_the_source_and_keeps_what_was_paid_for() {
    let sim = Sim::start(&["--rows", "400", "--faults", "jobo:402@4"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(FAST_RETRY);
    let run = lake.run(&["--json", "refresh"]).await;
    run.assert_code(1);
    let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
    let jobo = source(&summary, "career_sites");
    assert_eq!(jobo["status"], "failed");
    assert!(jobo["message"].as_str().unwrap().contains("402"), "{jobo}");
    assert_eq!(jobo["pages"], 3);
    assert_eq!(source(&summary, "jobs")["status"], "succeeded");
    // The three paid pages are queryable now...
    assert_eq!(lake.count("SELECT count(*) FROM career_sites").await, 150);
    // ...and the next run resumes after them instead of paying again.
    sim.set_faults("").await;
    lake.refresh_ok(&["--source", "career_sites"]).await;
    assert_views_match_truth(&lake, &sim).await;
    assert!(refetched(&sim.log().await, "jobo").is_empty());
}

#[tokio::test]
async fn max_pages_stops_early_and_the_next_run_resumes() {
    let sim = Sim::start(&["--rows", "400"]).await;
    let lake = Lake::new(&sim);
    let run = lake.run(&["refresh", "--max-pages", "2"]).await;
    run.assert_code(3);
    assert_eq!(lake.count("SELECT count(*) FROM career_sites").await, 100);
    lake.refresh_ok(&[]).await;
    assert_views_match_truth(&lake, &sim).await;
    let log = sim.log().await;
    assert!(refetched(&log, "jobo").is_empty());
    assert!(refetched(&log, "sentrion").is_empty());
}

#[tokio::test]
async fn kill_9_mid_run_loses_nothing_duplicates_nothing_and_refetches_at_most_a_page() {
    let sim = Sim::start(&["--rows", "1000", "--latency-ms", "20"]).await;
    let mut lake = Lake::new(&sim);
    // Small pages, so both sources are mid-scan at every kill.
    lake.set_config(
        "[career_sites]\npage_size = 10\nrequests_per_minute = 0\n\
         [jobs]\npage_size = 10\nrequests_per_minute = 0\n",
    );
    kill_after(&lake, &sim, "jobo", 4).await;
    kill_after(&lake, &sim, "sentrion", 5).await;
    kill_after(&lake, &sim, "jobo", 7).await;
    let summary = lake.refresh_ok(&[]).await;
    for name in ["career_sites", "jobs"] {
        let s = source(&summary, name);
        assert!(s["recovered_rows"].as_u64().unwrap() > 0, "{s}");
    }
    assert_views_match_truth(&lake, &sim).await;

    let log = sim.log().await;
    let crashes = 3;
    for (name, api) in [("career_sites", "jobo"), ("jobs", "sentrion")] {
        let history = lake
            .count(&format!("SELECT count(*) FROM {name}_history"))
            .await;
        let ids = lake.count(&format!("SELECT count(*) FROM {name}")).await;
        assert_eq!(history, ids, "{name}: a row was stored twice");
        let again = refetched(&log, api);
        assert!(
            again.values().sum::<usize>() - again.len() <= crashes,
            "{name}: {crashes} crashes re-fetched {again:?}"
        );
    }
    let crashed = lake
        .count("SELECT count(*) FROM runs WHERE status = 'crashed'")
        .await;
    // One entry per source that had staged a page when its process was killed.
    assert!(
        (crashes as i64..=2 * crashes as i64).contains(&crashed),
        "{crashed} crashed runs in the ledger after {crashes} kills"
    );
}

#[tokio::test]
async fn a_bad_key_fails_clearly_and_leaves_the_lake_untouched() {
    let sim = Sim::start(&[]).await;
    // A new lake is not even created.
    let bad = Lake::with_keys(&sim, Some("jbe_wrong_key_0000"), None);
    let run = bad.run(&["refresh"]).await;
    run.assert_code(1);
    assert!(run.stderr().contains("JOBO_API_KEY"), "{}", run.stderr());
    assert!(!run.stderr().contains("jbe_wrong_key_0000"));
    assert!(bad.files().is_empty(), "{:?}", bad.files().keys());

    // An existing lake keeps every byte.
    let mut lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    let before = lake.files();
    lake.env.retain(|(k, _)| k != "SENTRION_API_KEY");
    lake.env
        .push(("SENTRION_API_KEY".into(), "sk_wrong_key_0000".into()));
    let run = lake.run(&["refresh", "--source", "jobs"]).await;
    run.assert_code(1);
    assert!(
        run.stderr().contains("SENTRION_API_KEY"),
        "{}",
        run.stderr()
    );
    assert!(lake.files() == before, "the failed run changed the lake");
}

#[tokio::test]
async fn no_key_at_all_points_at_the_demo() {
    let sim = Sim::start(&[]).await;
    let lake = Lake::with_keys(&sim, None, None);
    let run = lake.run(&["refresh"]).await;
    assert_ne!(run.code(), Some(0));
    assert!(run.stderr().contains("make demo"), "{}", run.stderr());
    assert!(lake.files().is_empty());
}

#[tokio::test]
async fn a_second_refresh_on_a_busy_lake_exits_with_a_clear_message() {
    let sim = Sim::start(&["--latency-ms", "100"]).await;
    let lake = Lake::new(&sim);
    let first = lake
        .command(&["refresh"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.requests("jobo").await.is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = lake.run(&["refresh"]).await;
    second.assert_code(2);
    assert!(
        second.stderr().contains("another joblake"),
        "{}",
        second.stderr()
    );
    let out = first.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_views_match_truth(&lake, &sim).await;
}

#[tokio::test]
async fn api_keys_never_reach_an_output_or_a_file() {
    let sim = Sim::start(&["--rows", "200", "--faults", "jobo:503@2,sentrion:402@2"]).await;
    let mut lake = Lake::new(&sim);
    // Small job pages, so the jobs scan reaches its second request, the 402.
    lake.set_config(&format!("{FAST_RETRY}page_size = 10\n"));
    lake.env.push(("JOBLAKE_LOG".into(), "trace".into()));
    let mut outputs = Vec::new();
    for args in [
        &["-vv", "refresh"][..],
        &["--json", "refresh"],
        &["status"],
        &["status", "--json"],
        &["views"],
        &["query", "SELECT * FROM runs"],
    ] {
        let run = lake.run(args).await;
        outputs.push((args.join(" "), run.stdout() + &run.stderr()));
    }
    // The runs did happen, with errors and debug logs to leak into.
    assert!(
        outputs[0].1.contains("jobs: failed") && outputs[0].1.contains("402"),
        "{}",
        outputs[0].1
    );
    assert!(lake.count("SELECT count(*) FROM career_sites").await > 0);
    for key in [&sim.jobo_key, &sim.sentrion_key] {
        for (args, text) in &outputs {
            assert!(
                !text.contains(key.as_str()),
                "`joblake {args}` printed a key"
            );
        }
        for (path, bytes) in lake.files() {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} holds a key",
                path.display()
            );
        }
    }
    assert!(lake.files().keys().any(|p| p.ends_with("lake.duckdb")));
}

#[tokio::test]
async fn stock_duckdb_pyarrow_and_polars_read_the_lake_from_anywhere() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let mut lake = Lake::new(&sim);
    // The latest tables merged into with deletion vectors, never written again, so that the
    // Delta readers below read them.
    lake.set_config("[views]\nlatest_after = 1000\n");
    lake.refresh_ok(&[]).await;
    sim.advance(6).await;
    lake.refresh_ok(&[]).await;
    let mut expected = serde_json::Map::new();
    for t in ["career_sites", "jobs"] {
        for (k, sql) in [
            (t.to_string(), format!("SELECT count(*) FROM {t}")),
            (
                format!("{t}_history"),
                format!("SELECT count(*) FROM {t}_history"),
            ),
            (
                format!("{t}_ids"),
                format!("SELECT count(DISTINCT id) FROM {t}"),
            ),
        ] {
            expected.insert(k, lake.count(&sql).await.into());
        }
    }
    expected.insert(
        "runs".into(),
        lake.count("SELECT count(*) FROM runs").await.into(),
    );
    for (k, sql) in [
        ("jobs_changes", "SELECT count(*) FROM jobs_changes"),
        (
            "career_sites_changes",
            "SELECT count(*) FROM career_sites_changes",
        ),
        ("jobs_lifecycle", "SELECT count(*) FROM jobs_lifecycle"),
        ("job_companies", "SELECT count(*) FROM job_companies"),
        (
            "jobs_per_year",
            "SELECT count(salary_annual_from) FROM jobs",
        ),
    ] {
        let n = lake.count(sql).await;
        assert!(n > 0, "{sql}");
        expected.insert(k.into(), n.into());
    }
    assert!(expected["career_sites_history"].as_i64() > expected["career_sites"].as_i64());

    // The .duckdb file, opened by the DuckDB releases analysts run, read-only, from `/`.
    let db = lake.root().join("lake.duckdb");
    let dirs = py_env("JOBLAKE_PY_DUCKDB");
    assert!(dirs.len() >= 2, "{dirs:?}");
    for dir in &dirs {
        let mut got = reader_counts(Some(dir), "duckdb", &db, &[]).await;
        let version = got.as_object_mut().unwrap().remove("version").unwrap();
        assert_eq!(got, Value::Object(expected.clone()), "DuckDB {version}");
    }
    // The Parquet, as notebooks load it: nothing in _joblake/ or half-written is picked up.
    for reader in ["pyarrow", "polars"] {
        let got = reader_counts(None, reader, &lake.root(), &[]).await;
        for t in ["career_sites", "jobs"] {
            for k in [format!("{t}_history"), format!("{t}_ids")] {
                let want = if k.ends_with("_ids") {
                    &expected[t]
                } else {
                    &expected[&k]
                };
                assert_eq!(&got[&k], want, "{reader}: {k}");
            }
        }
    }
    // The Delta tables, as any Delta reader sees them: every version the views hold, row by
    // row, and the latest tables (with their deletion vectors) as the latest-version views.
    assert!(
        lake.count("SELECT count(*) FROM _joblake_deleted_jobs")
            .await
            > 0
    );
    assert_delta_readers_match_views(&lake, &lake.root().display().to_string(), &[]).await;
}

/// Every row version `source` holds, as `[id, _run_id, _page, _row]` in sorted order: what
/// the Delta readers (`tests/readers/counts.py`) are compared with.
async fn row_versions(lake: &Lake, source: &str) -> Vec<Value> {
    rows_of(lake, &VERSION, &[source.to_string()])
        .await
        .remove(0)
}

/// The columns that tell one row version from another.
const VERSION: [&str; 4] = ["id", "_run_id", "_page", "_row"];

/// The rows of each of `sources` (all with `columns`), each as an array of `columns` in
/// sorted order, from one `joblake query`: each query is a process that opens DuckDB and
/// (for `delta_scan`) loads its delta extension, a quarter of a second on an S3 lake.
async fn rows_of(lake: &Lake, columns: &[&str], sources: &[String]) -> Vec<Vec<Value>> {
    let select = columns.join(", ");
    let union = sources
        .iter()
        .enumerate()
        .map(|(i, s)| format!("SELECT {i} AS _source, {select} FROM {s}"))
        .collect::<Vec<_>>()
        .join("\nUNION ALL ");
    let mut out = vec![Vec::new(); sources.len()];
    for r in lake.query(&format!("{union}\nORDER BY ALL")).await {
        let source = r["_source"].as_u64().expect("the source's number") as usize;
        out[source].push(Value::Array(columns.iter().map(|c| r[c].clone()).collect()));
    }
    out
}

/// DuckDB's `delta_scan`, delta-rs (`deltalake`), polars' `scan_delta` and Spark's API (Sail,
/// over Spark Connect) read each history table of `url` with exactly the row versions (`id`,
/// `_run_id`, `_page`, `_row`) its `*_history` view holds, and each latest table
/// (`<table>_latest`, with its deletion vectors) with exactly those of its latest-version view
/// (and `jobs_latest` with the `jobs` view's salary columns);
/// DuckDB's and delta-rs read each changes table (`<table>_changes`) with exactly the changes
/// its view lists, the lifecycle table (`jobs_lifecycle`) with the rows of its view, and the
/// job_company_keys table with every job's link in `job_companies` (or none).
/// Each kind of table's views and `delta_scan`s are read in one query.
pub async fn assert_delta_readers_match_views(lake: &Lake, url: &str, env: &[(String, String)]) {
    // Each Delta table beside the view it must equal.
    let compare = async |columns: &[&str], pairs: &[(String, String)]| {
        let sources: Vec<String> = pairs
            .iter()
            .flat_map(|(table, view)| [view.clone(), format!("delta_scan('{url}/{table}')")])
            .collect();
        let mut rows = rows_of(lake, columns, &sources).await.into_iter();
        let mut views = serde_json::Map::new();
        for (table, _) in pairs {
            let (view, got) = (rows.next().unwrap(), rows.next().unwrap());
            assert!(
                !view.is_empty() || table.ends_with("_changes"),
                "{table}: its view is empty"
            );
            // DuckDB 1.5.5's own Delta reader (its delta extension, laid out beside joblake).
            assert_eq!(
                got, view,
                "delta_scan: {table} as a Delta table is not its view"
            );
            views.insert(table.clone(), Value::Array(view));
        }
        views
    };
    let versions: Vec<(String, String)> = ["career_sites", "jobs"]
        .into_iter()
        .flat_map(|t| {
            [
                (t.to_string(), format!("{t}_history")),
                (format!("{t}_latest"), t.to_string()),
            ]
        })
        .collect();
    let views = compare(&VERSION, &versions).await;
    let tables: Vec<String> = views.keys().cloned().collect();
    // The salary columns `jobs_latest` keeps, as the `jobs` view has them.
    let salaries = [
        "id",
        "salary_period",
        "salary_period_basis",
        "salary_annual_from",
        "salary_annual_to",
    ];
    compare(
        &salaries,
        &[("jobs_latest".to_string(), "jobs".to_string())],
    )
    .await;
    // The changes tables (`<table>_changes`): every change, as their views list them.
    let changed: Vec<(String, String)> = ["career_sites", "jobs"]
        .map(|t| (format!("{t}_changes"), format!("{t}_changes")))
        .to_vec();
    let changes = compare(&["id", "_run_id", "change", "previous_run_id"], &changed).await;
    // The lifecycle table (`jobs_lifecycle`, with deletion vectors): a row per job.
    let lifecycle = ["id", "versions", "reposts", "fetches", "last_run_id"];
    let lifecycle = compare(
        &lifecycle,
        &[("jobs_lifecycle".to_string(), "jobs_lifecycle".to_string())],
    )
    .await;
    // The job_company_keys table (with deletion vectors): a row per job, with its link in
    // `job_companies` or none.
    let links = compare(
        &["id", "company_id", "matched_by"],
        &[(
            "job_company_keys".to_string(),
            "(SELECT id, l.company_id, l.matched_by FROM jobs LEFT JOIN job_companies AS l USING (id))"
                .to_string(),
        )],
    )
    .await;
    for reader in ["deltalake", "polars-delta", "sail"] {
        let got = reader_counts(None, reader, url, env).await;
        for t in &tables {
            assert_eq!(
                got[format!("{t}_versions")],
                views[t],
                "{reader}: {t} as a Delta table is not its view"
            );
        }
        if reader == "deltalake" {
            for (t, view) in &changes {
                assert_eq!(
                    &got[t.as_str()],
                    view,
                    "deltalake: {t} as a Delta table is not its view"
                );
            }
            assert_eq!(
                got["jobs_lifecycle"], lifecycle["jobs_lifecycle"],
                "deltalake: jobs_lifecycle as a Delta table is not its view"
            );
            assert_eq!(
                got["job_company_keys"], links["job_company_keys"],
                "deltalake: job_company_keys as a Delta table is not job_companies"
            );
        }
    }
}

#[tokio::test]
async fn views_read_older_files_that_lack_a_column() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&["--source", "career_sites"]).await;
    let ids = lake.count("SELECT count(*) FROM career_sites").await;
    // A file as an older joblake would have written it: no `website` column, an earlier run.
    let old = lake
        .root()
        .join("career_sites/dt=2020-01-01/part-20200101T000000000Z-000001.parquet");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    let copy = format!(
        "COPY (SELECT * EXCLUDE (website, dt) REPLACE ('20200101T000000000Z' AS _run_id, 'old' AS name) \
         FROM career_sites_history) TO '{}' (FORMAT parquet)",
        old.display()
    );
    lake.query(&copy).await;
    lake.run(&["views"]).await.assert_code(0);
    assert_eq!(
        lake.count("SELECT count(*) FROM career_sites_history")
            .await,
        2 * ids
    );
    assert_eq!(
        lake.count(
            "SELECT count(*) FROM career_sites_history WHERE website IS NULL AND name = 'old'"
        )
        .await,
        ids
    );
    // The newer version still wins, column and all.
    assert_eq!(
        lake.count("SELECT count(*) FROM career_sites WHERE name = 'old'")
            .await,
        0
    );
    assert_same(
        &lake.view("career_sites").await,
        &lake.truth(&sim, Table::CareerSites).await,
        "career_sites",
    );
}

#[tokio::test]
async fn filters_from_joblake_toml_reach_the_apis() {
    let sim = Sim::start(&["--rows", "400"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(
        r#"
[career_sites]
filters = { industries = ["fintech", "ai"], is_agency = false }
[jobs]
filters = { jobs_locations = [{ country = "Germany" }] }
"#,
    );
    lake.refresh_ok(&[]).await;
    let sites = sim
        .truth_filtered(
            Table::CareerSites,
            r#"{"industries": ["fintech", "ai"], "is_agency": false}"#,
        )
        .await;
    let jobs = sim
        .truth_filtered(
            Table::Jobs,
            r#"{"jobs_locations": [{"country": "Germany"}]}"#,
        )
        .await;
    let all = sim.truth_rows(Table::CareerSites).await.len();
    assert!(
        !sites.is_empty() && sites.len() < all,
        "{} of {all}",
        sites.len()
    );
    assert!(!jobs.is_empty());
    let ids = |rows: Vec<Value>| -> std::collections::BTreeSet<String> {
        rows.into_iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(lake.query("SELECT id FROM career_sites").await),
        ids(sites)
    );
    // Jobs carry no id of their own; compare by the URL the id is derived from.
    let urls: std::collections::BTreeSet<String> = jobs
        .iter()
        .map(|j| j["Job URL"].as_str().unwrap_or_default().to_string())
        .collect();
    let got: std::collections::BTreeSet<String> = lake
        .query("SELECT coalesce(job_url, '') AS u FROM jobs")
        .await
        .into_iter()
        .map(|r| r["u"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, urls);
    assert_eq!(
        lake.count("SELECT count(*) FROM jobs").await as usize,
        jobs.len()
    );
}

#[tokio::test]
async fn a_lake_of_a_newer_format_is_refused_and_left_untouched() {
    let sim = Sim::start(&["--rows", "50"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    let marker = lake.root().join("_joblake/format.json");
    let recorded: Value = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert_eq!(recorded["format"], 2, "{recorded}");
    // As a later joblake would leave it.
    std::fs::write(&marker, r#"{"format": 99, "written_by": "joblake 9.0.0"}"#).unwrap();
    let before = lake.files();
    for args in [
        &["refresh"][..],
        &["compact"],
        &["views"],
        &["status"],
        &["query", "SELECT 1"],
        &["enrich", "companies"],
    ] {
        let run = lake.run(args).await;
        run.assert_code(2);
        assert!(
            run.stderr().contains("format 99")
                && run.stderr().contains("joblake 9.0.0")
                && run.stderr().contains("format 2 at most"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    assert!(lake.files() == before, "a newer lake changed");
}

#[tokio::test]
async fn the_runs_view_names_the_delta_version_to_read_the_lake_as_of_a_run() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    sim.advance(6).await;
    lake.refresh_ok(&[]).await;
    let runs = lake
        .query("SELECT source, run_id, delta_version FROM runs ORDER BY run_id, source")
        .await;
    assert_eq!(runs.len(), 4, "{runs:?}");
    let first_run = runs[0]["run_id"].as_str().unwrap().to_string();
    let mut versions = serde_json::Map::new();
    for r in runs.iter().filter(|r| r["run_id"] == first_run.as_str()) {
        versions.insert(
            r["source"].as_str().unwrap().into(),
            r["delta_version"].clone(),
        );
    }
    for r in runs.iter().filter(|r| r["run_id"] != first_run.as_str()) {
        let source = r["source"].as_str().unwrap();
        assert!(
            r["delta_version"].as_i64() > versions[source].as_i64(),
            "the later run committed a later version: {runs:?}"
        );
    }
    // Any Delta reader reads the lake as the first run left it: the version the runs view
    // names for it.
    let script = crate::harness::repo_root().join("tests/readers/counts.py");
    let out = tokio::process::Command::new(joblake_testkit::python())
        .env_remove("PYTHONPATH")
        .arg(script)
        .arg("deltalake-as-of")
        .arg(lake.root())
        .arg(Value::Object(versions).to_string())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    for t in ["career_sites", "jobs"] {
        let want = row_versions(
            &lake,
            &format!("{t}_history WHERE _run_id <= '{first_run}'"),
        )
        .await;
        assert!(!want.is_empty());
        assert_eq!(
            got[format!("{t}_versions")],
            Value::Array(want),
            "{t} as of the first run"
        );
        assert!(
            lake.count(&format!("SELECT count(*) FROM {t}_history"))
                .await
                > got[format!("{t}_history")].as_i64().unwrap(),
            "{t}: the second run added versions"
        );
    }
}
