//! What analysts ask of the lake (schemas/changes.md, jobs_lifecycle.md, job_companies.md,
//! jobs.md "Salaries per year"), checked against what the simulator knows it served.

use std::collections::{BTreeMap, BTreeSet};

use joblake_schema::Table;
use serde_json::Value;

use crate::harness::{Lake, Sim};

/// The columns whose values differ between two rows of a table (as `Lake::truth` gives them).
fn differing(before: &Value, after: &Value) -> BTreeSet<String> {
    let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
    a.keys()
        .chain(b.keys())
        .filter(|k| *k != "id" && b.get(*k) != a.get(*k))
        .cloned()
        .collect()
}

/// `(change, changed_columns, previous_run_id)` per id, of the changes one run brought.
async fn changes_of(
    lake: &Lake,
    view: &str,
    run_id: &str,
) -> BTreeMap<String, (String, BTreeSet<String>, Value)> {
    lake.query(&format!(
        "SELECT id, change, changed_columns, previous_run_id FROM {view} WHERE _run_id = '{run_id}'"
    ))
    .await
    .into_iter()
    .map(|r| {
        let columns = r["changed_columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let change = r["change"].as_str().unwrap().to_string();
        (
            r["id"].as_str().unwrap().to_string(),
            (change, columns, r["previous_run_id"].clone()),
        )
    })
    .collect()
}

/// The run ids of `source`'s runs that fetched pages, oldest first.
async fn runs_of(lake: &Lake, source: &str) -> Vec<String> {
    lake.query(&format!(
        "SELECT run_id FROM runs WHERE source = '{source}' AND pages > 0 ORDER BY run_id"
    ))
    .await
    .iter()
    .map(|r| r["run_id"].as_str().unwrap().to_string())
    .collect()
}

/// Each changes view reads its changes table, and `jobs_lifecycle` its lifecycle table
/// (`<lake>/<view>/`, kept exact by the commands that commit rows), and holds exactly the rows
/// their SQL works out from the history: read, then those tables deleted and the views made
/// again (so they work the rows out), read again. The lake is left without them (the next
/// refresh writes them again).
pub(crate) async fn assert_changes_tables_exact(lake: &Lake) {
    // Each view, the order of its rows and the table it reads.
    let views = [
        (
            "career_sites_changes",
            "id, _run_id",
            "career_sites_changes",
        ),
        ("jobs_changes", "id, _run_id", "jobs_changes"),
        ("jobs_lifecycle", "id", "jobs_lifecycle"),
        ("job_companies", "id", "job_company_keys"),
    ];
    // Each view's SQL, and its rows (each as DuckDB's JSON of the whole row), each in one
    // query: a query is a process that opens DuckDB, a quarter of a second on an S3 lake.
    let sqls = async || -> BTreeMap<String, String> {
        let names: Vec<String> = views.iter().map(|(v, ..)| format!("'{v}'")).collect();
        lake.query(&format!(
            "SELECT view_name, sql FROM duckdb_views() WHERE view_name IN ({})",
            names.join(", ")
        ))
        .await
        .iter()
        .map(|r| {
            let (name, sql) = (r["view_name"].as_str(), r["sql"].as_str());
            (name.unwrap().to_string(), sql.unwrap().to_string())
        })
        .collect()
    };
    let rows = async || -> Vec<Vec<String>> {
        let union: Vec<String> = views
            .iter()
            .enumerate()
            .map(|(i, (view, order, _))| {
                format!(
                    "SELECT {i} AS _view, row_number() OVER (ORDER BY {order}) AS _n, \
                     to_json(r)::VARCHAR AS _row FROM {view} AS r"
                )
            })
            .collect();
        let mut out = vec![Vec::new(); views.len()];
        let sql = format!("{}\nORDER BY _view, _n", union.join("\nUNION ALL "));
        for r in lake.query(&sql).await {
            let view = r["_view"].as_u64().unwrap() as usize;
            out[view].push(r["_row"].as_str().unwrap().to_string());
        }
        out
    };
    let before = sqls().await;
    for (view, _, table) in views {
        assert!(
            before[view].contains(&format!("/{table}/")),
            "{view} does not read its table: {}",
            before[view]
        );
    }
    let kept = rows().await;
    for (_, _, table) in views {
        lake.remove_table(table).await;
    }
    lake.run(&["views"]).await.assert_code(0);
    let after = sqls().await;
    for ((view, _, table), (kept, worked_out)) in views.iter().zip(kept.iter().zip(rows().await)) {
        assert!(!kept.is_empty(), "{view} is empty");
        assert!(
            !after[*view].contains(&format!("/{table}/")),
            "{view} still reads its table"
        );
        assert_eq!(
            kept.len(),
            worked_out.len(),
            "{view}: rows kept, worked out"
        );
        if let Some((k, w)) = kept.iter().zip(&worked_out).find(|(k, w)| k != w) {
            panic!("{view}: kept {k}, worked out {w}");
        }
    }
}

/// The files of `view`'s table (a changes or the lifecycle table) its view reads.
async fn changes_files(lake: &Lake, view: &str) -> BTreeSet<String> {
    files_read(lake, view, view).await
}

/// The files of `table` (`<lake>/<table>/`) that `view` reads.
async fn files_read(lake: &Lake, view: &str, table: &str) -> BTreeSet<String> {
    let sql = lake.view_sql(view).await;
    sql.split('\'')
        .filter(|s| s.ends_with(".parquet") && s.contains(&format!("/{table}/")))
        .map(str::to_string)
        .collect()
}

/// `job_companies` as schemas/job_companies.md documents it for any engine:
/// queries/job_companies.sql over queries/job_keys.sql (the `jobs` view, its lookups
/// queries/host_domains.sql and queries/name_keys.sql as subqueries) and
/// queries/site_keys.sql (the `career_sites` views), the linked rows.
fn documented_links() -> String {
    let fill = |sql: &str, values: &[(&str, &str)]| {
        values.iter().fold(sql.to_string(), |sql, (k, v)| {
            sql.replace(&format!("{{{k}}}"), v)
        })
    };
    let lookup = |sql: &str| format!("({})", fill(sql, &[("jobs", "jobs")]));
    let hosts = lookup(include_str!("../../queries/host_domains.sql"));
    let names = lookup(include_str!("../../queries/name_keys.sql"));
    let keys = fill(
        include_str!("../../queries/job_keys.sql"),
        &[
            ("jobs", "jobs"),
            ("host_domains", &hosts),
            ("name_keys", &names),
        ],
    );
    let sites = fill(
        include_str!("../../queries/site_keys.sql"),
        &[
            ("career_sites", "career_sites"),
            ("career_sites_history", "career_sites_history"),
        ],
    );
    let links = fill(
        include_str!("../../queries/job_companies.sql"),
        &[("keys", &format!("(\n{keys}\n)")), ("site_keys", &sites)],
    );
    format!("SELECT id, company_id, matched_by FROM (\n{links}\n) WHERE company_id IS NOT NULL")
}

/// The rows `job_companies` and the documented SQL ([`documented_links`]) disagree on.
async fn links_off_the_documented_sql(lake: &Lake) -> i64 {
    let sql = documented_links();
    lake.count(&format!(
        "SELECT count(*) FROM ((SELECT * FROM job_companies EXCEPT ALL ({sql})) \
         UNION ALL (({sql}) EXCEPT ALL SELECT * FROM job_companies))"
    ))
    .await
}

/// A lake of jobs alone links none (there is no career site to link to): no job_company_keys
/// table, and a view that reads no job to say so; the refresh that brings the first career
/// sites writes the table, and the view reads it.
#[tokio::test]
async fn a_lake_of_jobs_alone_links_none_and_its_first_career_sites_make_the_job_company_keys_table()
 {
    let sim = Sim::start(&["--rows", "300"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&["--source", "jobs"]).await;
    assert!(!lake.root().join("job_company_keys").exists());
    assert_eq!(lake.count("SELECT count(*) FROM job_companies").await, 0);
    let sql = lake.view_sql("job_companies").await;
    assert!(!sql.contains("jobs"), "{sql}");
    lake.refresh_ok(&["--source", "career_sites"]).await;
    assert!(
        !files_read(&lake, "job_companies", "job_company_keys")
            .await
            .is_empty()
    );
    assert!(lake.count("SELECT count(*) FROM job_companies").await > 0);
    assert_eq!(links_off_the_documented_sql(&lake).await, 0);
}

/// The job_company_keys table (schemas/job_companies.md): a jobs refresh merges its jobs in, a
/// career sites refresh whose keys now link jobs otherwise replaces just those jobs' rows, and
/// `compact` merges its files into one a day; after each, `job_companies` reads it and is
/// exactly the documented SQL over the views.
#[tokio::test]
async fn job_company_keys_takes_in_each_run_links_jobs_again_when_career_sites_change_and_is_tidied_by_compact()
 {
    let sim = Sim::start(&["--rows", "2000", "--career-sites", "200"]).await;
    let mut lake = Lake::new(&sim);
    // Merged into, never written again for its share of merged rows.
    lake.set_config("[views]\nlatest_after = 1000\n");
    lake.refresh_ok(&[]).await;
    let files = async || files_read(&lake, "job_companies", "job_company_keys").await;
    let links = async || lake.query("SELECT * FROM job_companies ORDER BY id").await;
    let first = files().await;
    assert!(!first.is_empty());
    assert_eq!(links_off_the_documented_sql(&lake).await, 0);
    // A jobs refresh: its jobs' rows added, their old ones deleted by deletion vectors.
    sim.advance(30).await;
    lake.refresh_ok(&["--source", "jobs"]).await;
    let merged = files().await;
    assert!(
        first.is_subset(&merged) && merged.len() > first.len(),
        "{first:?} {merged:?}"
    );
    assert!(lake.view_sql("job_companies").await.contains("ANTI JOIN"));
    assert_eq!(links_off_the_documented_sql(&lake).await, 0);
    assert_eq!(
        lake.count("SELECT count(*) FROM job_companies").await,
        lake.count("SELECT count(DISTINCT id) FROM job_companies")
            .await
    );
    // A career sites refresh: new sites, moved boards and names shared anew link jobs
    // otherwise; only those rows are replaced, the files stay.
    let before = links().await;
    sim.advance(30).await;
    lake.refresh_ok(&["--source", "career_sites"]).await;
    let relinked = files().await;
    assert!(
        merged.is_subset(&relinked) && relinked.len() > merged.len(),
        "{merged:?} {relinked:?}"
    );
    assert_ne!(
        links().await,
        before,
        "no job's link changed: the test tests nothing"
    );
    assert_eq!(links_off_the_documented_sql(&lake).await, 0);
    // `compact`: one file a day, nothing deleted, the same links.
    let before = links().await;
    lake.run(&["compact"]).await.assert_code(0);
    let tidied = files().await;
    let days: BTreeSet<&str> = tidied
        .iter()
        .filter_map(|f| f.split('/').find(|p| p.starts_with("dt=")))
        .collect();
    assert_eq!(tidied.len(), days.len(), "{tidied:?}");
    assert!(tidied.is_disjoint(&relinked), "{tidied:?}");
    assert!(!lake.view_sql("job_companies").await.contains("ANTI JOIN"));
    assert_eq!(links().await, before);
    crate::assert_delta_readers_match_views(&lake, &lake.url(), &lake.env).await;
    assert_changes_tables_exact(&lake).await;
}

#[tokio::test]
async fn each_refresh_appends_to_the_changes_tables_and_merges_into_the_lifecycle_table_and_a_compaction_merges_their_files()
 {
    let sim = Sim::start(&["--rows", "400"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    let first = changes_files(&lake, "jobs_changes").await;
    assert!(!first.is_empty());
    let first_life = changes_files(&lake, "jobs_lifecycle").await;
    assert!(!first_life.is_empty());
    sim.advance(6).await;
    lake.refresh_ok(&[]).await;
    // The lifecycle table took the run in: its files stay, the rows of the ids the run
    // fetched again deleted by deletion vectors, their new rows added.
    let merged = changes_files(&lake, "jobs_lifecycle").await;
    assert!(
        first_life.is_subset(&merged) && merged.len() > first_life.len(),
        "{first_life:?} {merged:?}"
    );
    assert!(lake.view_sql("jobs_lifecycle").await.contains("ANTI JOIN"));
    assert_eq!(
        lake.count("SELECT count(*) FROM jobs_lifecycle").await,
        lake.count("SELECT count(DISTINCT id) FROM jobs_history")
            .await
    );
    // Nothing new: fetched again, no change, and the table is still exact.
    lake.refresh_ok(&[]).await;
    // Appended to, never written again: the first run's files are still its files.
    let appended = changes_files(&lake, "jobs_changes").await;
    assert!(
        first.is_subset(&appended) && appended.len() > first.len(),
        "{first:?} {appended:?}"
    );
    // A compaction leaves one file a day (the runs ran today), the same rows.
    let rows = lake.count("SELECT count(*) FROM jobs_changes").await;
    lake.run(&["compact"]).await.assert_code(0);
    for view in ["jobs_changes", "career_sites_changes"] {
        let files = changes_files(&lake, view).await;
        let days: BTreeSet<&str> = files
            .iter()
            .filter_map(|f| f.split('/').find(|p| p.starts_with("dt=")))
            .collect();
        assert_eq!(files.len(), days.len(), "{view}: {files:?}");
    }
    assert_eq!(lake.count("SELECT count(*) FROM jobs_changes").await, rows);
    // The lifecycle table written again: one file a day, no row deleted.
    let life = changes_files(&lake, "jobs_lifecycle").await;
    assert!(life.is_disjoint(&merged), "{life:?}");
    assert!(!lake.view_sql("jobs_lifecycle").await.contains("ANTI JOIN"));
    let compacted = changes_files(&lake, "jobs_changes").await;
    sim.advance(30).await;
    lake.refresh_ok(&[]).await;
    let last = changes_files(&lake, "jobs_changes").await;
    assert!(
        compacted.is_subset(&last) && last.len() > compacted.len(),
        "{compacted:?} {last:?}"
    );
    // `runs` counts each run's new ids from the changes tables' `new` changes: the same
    // counts as each id's first run out of the history.
    let runs = lake.view_sql("runs").await;
    assert!(runs.contains("/jobs_changes/"), "{runs}");
    let mismatched = lake
        .count(
            "SELECT count(*) FROM (SELECT * FROM runs WHERE pages > 0) r \
             FULL JOIN (SELECT source, run_id, count(*) AS n FROM ( \
                 SELECT 'jobs' AS source, min(_run_id) AS run_id FROM jobs_history GROUP BY id \
                 UNION ALL \
                 SELECT 'career_sites', min(_run_id) FROM career_sites_history GROUP BY id) \
               GROUP BY ALL) f USING (source, run_id) \
             WHERE coalesce(r.new_ids, 0) <> coalesce(f.n, 0)",
        )
        .await;
    assert_eq!(mismatched, 0);
    crate::assert_delta_readers_match_views(&lake, &lake.url(), &lake.env).await;
    assert_changes_tables_exact(&lake).await;
}

#[tokio::test]
async fn a_changes_or_lifecycle_table_whose_state_cannot_be_read_is_written_again_without_doubling_a_row()
 {
    let sim = Sim::start(&["--rows", "300"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    let rows = lake.count("SELECT count(*) FROM jobs_changes").await;
    // The state in the table's newest commit, as a joblake that cannot read it would find it.
    lake.break_state("jobs_changes", "joblake.derived");
    lake.break_state("jobs_lifecycle", "joblake.derived");
    sim.advance(6).await;
    lake.refresh_ok(&[]).await;
    // Written again from the history: every change once, the first run's too.
    assert!(lake.count("SELECT count(*) FROM jobs_changes").await > rows);
    crate::assert_delta_readers_match_views(&lake, &lake.url(), &lake.env).await;
    assert_changes_tables_exact(&lake).await;
}

#[tokio::test]
async fn changes_and_lifecycle_say_what_each_run_brought_and_refetches_are_no_change() {
    let sim = Sim::start(&["--rows", "400"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    let before = [
        lake.truth(&sim, Table::CareerSites).await,
        lake.truth(&sim, Table::Jobs).await,
    ];
    sim.advance(6).await;
    let after = [
        lake.truth(&sim, Table::CareerSites).await,
        lake.truth(&sim, Table::Jobs).await,
    ];
    lake.refresh_ok(&[]).await;
    // Nothing new: the third run fetches again (the overlap, the last day's jobs), and brings
    // no change.
    lake.refresh_ok(&[]).await;

    for (i, (table, view)) in [
        ("career_sites", "career_sites_changes"),
        ("jobs", "jobs_changes"),
    ]
    .into_iter()
    .enumerate()
    {
        let runs = runs_of(&lake, table).await;
        assert_eq!(runs.len(), 3, "{table}: {runs:?}");
        // The first run: every id new, with no columns and no previous run.
        let first = changes_of(&lake, view, &runs[0]).await;
        assert_eq!(first.len(), before[i].len(), "{view}: the first run");
        assert!(
            first
                .values()
                .all(|(c, cols, prev)| c == "new" && cols.is_empty() && prev.is_null())
        );
        // The second: exactly what the simulated hours changed, with the columns that changed.
        let mut expected = BTreeMap::new();
        for (id, row) in &after[i] {
            match before[i].get(id) {
                None => {
                    expected.insert(id.clone(), ("new".to_string(), BTreeSet::new()));
                }
                Some(old) if old != row => {
                    let cols = differing(old, row);
                    let change = if table == "jobs" && cols.contains("post_date") {
                        "reposted"
                    } else {
                        "changed"
                    };
                    expected.insert(id.clone(), (change.to_string(), cols));
                }
                Some(_) => {}
            }
        }
        let second: BTreeMap<_, _> = changes_of(&lake, view, &runs[1])
            .await
            .into_iter()
            .map(|(id, (c, cols, prev))| {
                if c != "new" {
                    assert_eq!(prev, Value::String(runs[0].clone()), "{view} {id}");
                }
                (id, (c, cols))
            })
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(second, expected, "{view}: the second run");
        let kinds: BTreeSet<&str> = second.values().map(|(c, _)| c.as_str()).collect();
        let want: &[&str] = if table == "jobs" {
            &["new", "reposted"]
        } else {
            &["changed", "new"]
        };
        assert!(want.iter().all(|k| kinds.contains(k)), "{view}: {kinds:?}");
        // The third fetched rows again and changed nothing.
        let fetched = lake
            .count(&format!(
                "SELECT count(*) FROM {table}_history WHERE _run_id = '{}'",
                runs[2]
            ))
            .await;
        assert!(fetched > 0, "{table}: the third run fetched nothing");
        assert!(
            changes_of(&lake, view, &runs[2]).await.is_empty(),
            "{view}: the third run"
        );
    }

    // The lifecycle of every job, and of a reposted one in detail.
    let jobs = runs_of(&lake, "jobs").await;
    assert_eq!(
        lake.count("SELECT count(*) FROM jobs_lifecycle").await,
        lake.count("SELECT count(DISTINCT id) FROM jobs_history")
            .await
    );
    let mismatched = lake
        .count(
            "SELECT count(*) FROM jobs_lifecycle l \
             FULL JOIN (SELECT id, count(*) AS v, count(*) FILTER (WHERE change = 'reposted') AS r \
                        FROM jobs_changes GROUP BY id) c USING (id) \
             FULL JOIN (SELECT id, count(*) AS f FROM jobs_history GROUP BY id) h USING (id) \
             WHERE l.versions IS DISTINCT FROM c.v OR l.reposts IS DISTINCT FROM c.r \
                OR l.fetches IS DISTINCT FROM h.f",
        )
        .await;
    assert_eq!(mismatched, 0);
    let reposted = lake
        .query(&format!(
            "SELECT id FROM jobs_changes WHERE change = 'reposted' AND _run_id = '{}' LIMIT 1",
            jobs[1]
        ))
        .await;
    let id = reposted[0]["id"].as_str().unwrap();
    let life = &lake
        .query(&format!(
            "SELECT *, current_date AS today FROM jobs_lifecycle WHERE id = '{id}'"
        ))
        .await[0];
    let (old, new) = (&before[1][id], &after[1][id]);
    assert_eq!(life["first_post_date"], old["post_date"]);
    assert_eq!(life["last_post_date"], new["post_date"]);
    assert_eq!(life["valid_through"], new["valid_through"]);
    assert_eq!(
        (life["versions"].as_i64(), life["reposts"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(life["first_run_id"], Value::String(jobs[0].clone()));
    assert_eq!(life["last_run_id"], Value::String(jobs[2].clone()));
    let days =
        |v: &Value| chrono::NaiveDate::parse_from_str(v.as_str().unwrap(), "%Y-%m-%d").unwrap();
    let listed = (chrono::Utc::now().date_naive() - days(&old["post_date"])).num_days();
    // The runs ran just now; a test crossing midnight UTC may see one day more.
    let got = life["days_listed"].as_i64().unwrap();
    assert!(
        got == listed || got == listed - 1,
        "days_listed {got}, expected {listed}"
    );
}

#[tokio::test]
async fn salaries_are_put_per_year_as_the_simulator_drew_them_and_the_rest_is_counted() {
    let sim = Sim::start(&["--rows", "3000"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&["--source", "jobs"]).await;
    let facts = sim.job_facts().await;
    let rows = lake
        .query(
            "SELECT id, salary_offered, salary_from, salary_to, salary_currency, salary_period, \
             salary_period_basis, salary_annual_from, salary_annual_to FROM jobs",
        )
        .await;
    assert_eq!(
        rows.len(),
        lake.count("SELECT count(DISTINCT id) FROM jobs_history")
            .await as usize
    );
    let factor = |p: &str| match p {
        "hour" => 2080.0,
        "day" => 260.0,
        "week" => 52.0,
        "month" => 12.0,
        "year" => 1.0,
        other => panic!("period {other}"),
    };
    let (mut quoted, mut told, mut by_text, mut by_amount, mut not_per_year) = (0, 0, 0, 0, 0);
    let mut periods = BTreeSet::new();
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        let fact = &facts[id];
        let has_salary = ["salary_offered", "salary_from", "salary_to"]
            .iter()
            .any(|k| !row[*k].is_null());
        quoted += usize::from(has_salary);
        let got = row["salary_period"].as_str();
        let truth = fact["salary_period"].as_str();
        match got {
            Some(p) => {
                // Never a wrong period.
                assert_eq!(Some(p), truth, "{row}");
                told += 1;
                periods.insert(p.to_string());
                match row["salary_period_basis"].as_str() {
                    Some("text") => by_text += 1,
                    Some("amount") => by_amount += 1,
                    other => panic!("basis {other:?}: {row}"),
                }
                // The yearly figures are the drawn figures times the period's factor, whether
                // the posting gave them in its fields or only in its text.
                for (col, i) in [("salary_annual_from", 0), ("salary_annual_to", 1)] {
                    let want = fact["salary_figures"][i].as_f64().map(|v| v * factor(p));
                    let have = row[col].as_f64();
                    match (want, have) {
                        (Some(w), Some(h)) => assert!((w - h).abs() < 0.01, "{col}: {row} {fact}"),
                        (w, h) => assert_eq!(w, h, "{col}: {row} {fact}"),
                    }
                }
            }
            None => {
                // Not told only when nothing in the posting says: no period word, and no
                // figure large enough to be a year's in a known currency.
                let text = row["salary_offered"].as_str().unwrap_or("");
                assert!(
                    ![
                        "hour", "/hr", "day", "week", "month", "year", "annum", "p.a."
                    ]
                    .iter()
                    .any(|w| text.contains(w)),
                    "a worded salary with no period: {row}"
                );
                if has_salary {
                    not_per_year += 1;
                }
            }
        }
    }
    eprintln!(
        "salaries: {quoted} of {} jobs quote one; a period told for {told} ({by_text} by its \
         words, {by_amount} by its figures), none wrong; {not_per_year} not put per year",
        rows.len()
    );
    assert_eq!(
        periods,
        ["day", "hour", "month", "week", "year"]
            .iter()
            .map(|p| p.to_string())
            .collect()
    );
    assert!(by_amount > 0 && by_text > by_amount);
    assert!(
        not_per_year > 0,
        "free text and unworded figures are counted"
    );
    // The latest table keeps the four columns (the view reads them, parsing nothing), each as
    // the documented SQL works it out over the history's latest versions, and a Delta reader
    // of `jobs_latest` has them too.
    let view = lake.view_sql("jobs").await;
    assert!(
        view.contains("/jobs_latest/") && !view.contains("_salary_word"),
        "{view}"
    );
    let documented = include_str!("../../queries/jobs_salaries.sql")
        .trim_end()
        .trim_end_matches(';')
        .replace(
        "{rows}",
        "SELECT * FROM jobs_history \
         QUALIFY row_number() OVER (PARTITION BY id ORDER BY _run_id DESC, _page DESC, _row DESC) = 1",
    );
    let cols = "id, salary_period, salary_period_basis, salary_annual_from, salary_annual_to";
    let sources = [
        format!("SELECT {cols} FROM jobs"),
        format!("SELECT {cols} FROM ({documented})"),
        format!(
            "SELECT {cols} FROM delta_scan('{}/jobs_latest')",
            lake.url()
        ),
    ];
    for other in &sources[1..] {
        for (a, b) in [(&sources[0], other), (other, &sources[0])] {
            let differ = lake
                .count(&format!("SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))"))
                .await;
            assert_eq!(differ, 0, "rows of\n{a}\nnot in\n{b}");
        }
    }
    // A query that reads no salary column works none out: its plan holds no join but the
    // latest table's deleted rows' (an IN list of period words was planned as a mark join,
    // which made every query of `jobs` work out every row's salary).
    for sql in [
        "SELECT count(*) FROM jobs",
        "SELECT country, count(*) FROM jobs GROUP BY ALL",
    ] {
        let plan = lake.query(&format!("EXPLAIN {sql}")).await;
        let plan = plan[0]["explain_value"].as_str().unwrap();
        assert!(
            !plan.contains("MARK") && plan.matches("HASH_JOIN").count() <= 1,
            "{sql} works out the salaries:\n{plan}"
        );
    }
    // `status` counts the same.
    let run = lake.run(&["status", "--json"]).await;
    run.assert_code(0);
    let status: Value = serde_json::from_slice(&run.0.stdout).unwrap();
    assert_eq!(status["salaries"]["quoted"], quoted);
    assert_eq!(status["salaries"]["not_per_year"], not_per_year);
    // And the credits this lake spent, per API, with what the balance lasts.
    let credits = status["credits"].as_array().unwrap();
    let sentrion = credits.iter().find(|c| c["api"] == "sentrion").unwrap();
    let used: f64 = lake
        .query("SELECT sum(credits_used) AS used FROM runs WHERE source = 'jobs'")
        .await[0]["used"]
        .as_f64()
        .unwrap();
    assert_eq!(sentrion["used_7_days"].as_f64(), Some(used));
    assert_eq!(sentrion["per_day"].as_f64(), Some(used));
    assert!(sentrion["days_left"].as_f64().unwrap() > 0.0);
    assert!(
        credits.iter().all(|c| c["api"] != "jobo"),
        "no Jobo run, no Jobo line"
    );
}

/// The key macros `lake.duckdb` carries give the keys schemas/job_companies.md shows, the
/// forms that take a host already extracted (the view's) agree with the forms that take a URL,
/// and `joblake_host`'s quick path gives its rule's host, odd URLs too.
#[tokio::test]
async fn the_link_key_macros_give_the_documented_keys() {
    let sim = Sim::start(&["--rows", "20"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    let cases = [
        (
            "joblake_listing_key('https://boards.greenhouse.io/Acme/jobs/12?gh_src=x')",
            "boards.greenhouse.io/acme",
        ),
        (
            "joblake_listing_key('https://Careers.Acme.com/jobs/12')",
            "careers.acme.com",
        ),
        (
            "joblake_domain('https://jobs.acme.co.uk/apply?id=3')",
            "acme.co.uk",
        ),
        (
            "joblake_domain('http://user@www.Acme-Labs.com:8080/x')",
            "acme-labs.com",
        ),
        ("joblake_company_key('Acme Labs, Inc.')", "acme labs"),
        ("joblake_company_key('ACME LABS Corp')", "acme labs"),
        ("joblake_company_key('The Acme Labs Company')", "acme labs"),
        (
            "joblake_company_key('Société Générale SA')",
            "societe generale",
        ),
    ];
    for (sql, want) in cases {
        let got = lake.query(&format!("SELECT {sql} AS k")).await;
        assert_eq!(got[0]["k"], want, "{sql}");
    }
    // The host of plain URLs (taken without a capture group) is the full rule's, and so is
    // that of URLs with a user, a port, spaces, upper case or another scheme.
    let rule = |col: &str| {
        format!(
            r"lower(regexp_extract({col}, '^\s*[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^/@?#]*@)?([^/:?#\s]+)', 1))"
        )
    };
    let urls = [
        "https://a.com",
        "https://a.com/x",
        "https://A.COM?x",
        "https://a.com#f",
        "https://u:p@h.com/x",
        "https://u@h.com",
        "https://h.com:8080/x",
        "https://:80",
        "https://",
        "https:///x",
        " https://a.com",
        "HTTPS://A.com/",
        "http://a b.com/",
        "https://a.com /x",
        "ftp://x.org/",
        "https://a@b@c/",
        "https://u@:80/",
        "https://h.com\t/x",
        "https://é.com/x",
        "mailto:x@y.com",
        "",
        "https://h.com@evil.com/",
        "https://x.com?q=a@b",
        "https://x.com/a@b",
        "https://x.com:@y/",
    ];
    let values = urls
        .iter()
        .map(|u| format!("('{}')", u.replace('\'', "''")))
        .chain(["(NULL)".to_string()])
        .collect::<Vec<_>>()
        .join(", ");
    let differ = lake
        .query(&format!(
            "SELECT u, joblake_host(u) AS host, {0} AS rule FROM (VALUES {values}) AS t(u) \
             WHERE joblake_host(u) IS DISTINCT FROM {0}",
            rule("u")
        ))
        .await;
    assert!(
        differ.is_empty(),
        "joblake_host differs from its rule: {differ:?}"
    );
    let disagree = lake
        .count(&format!(
            "SELECT count(*) FROM jobs WHERE \
             joblake_listing_key(job_url) IS DISTINCT FROM \
                 joblake_listing_key_at(job_url, joblake_host(job_url)) \
             OR joblake_domain(apply_url) IS DISTINCT FROM \
                 joblake_domain_of_host(joblake_host(apply_url)) \
             OR joblake_host(job_url) IS DISTINCT FROM {} \
             OR joblake_host(apply_url) IS DISTINCT FROM {}",
            rule("job_url"),
            rule("apply_url")
        ))
        .await;
    assert_eq!(disagree, 0);
}

#[tokio::test]
async fn job_companies_link_jobs_to_the_companies_the_simulator_posted_them_for() {
    // 200 career sites: enough for companies to share a name ("Acme Labs Inc." and "Acme Labs
    // GmbH"), which the rule must not link by name.
    let sim = Sim::start(&["--rows", "3000", "--career-sites", "200"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    let facts = sim.job_facts().await;
    let links = lake
        .query("SELECT id, company_id, matched_by FROM job_companies")
        .await;
    let jobs = lake.count("SELECT count(*) FROM jobs").await as usize;
    let mut correct = 0;
    let mut per_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for link in &links {
        let id = link["id"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "{id} linked twice");
        let right = facts[id]["company_id"] == link["company_id"];
        correct += usize::from(right);
        let e = per_rule
            .entry(link["matched_by"].as_str().unwrap().to_string())
            .or_default();
        e.0 += 1;
        e.1 += usize::from(right);
    }
    let with_company = lake
        .query("SELECT id FROM jobs")
        .await
        .iter()
        .filter(|r| !facts[r["id"].as_str().unwrap()]["company_id"].is_null())
        .count();
    let precision = correct as f64 / links.len() as f64;
    let recall = correct as f64 / with_company as f64;
    eprintln!(
        "job_companies: {} of {jobs} jobs linked; precision {:.4}, recall {:.4}; by rule \
         (linked, right): {per_rule:?}",
        links.len(),
        precision,
        recall
    );
    assert_eq!(
        per_rule.keys().map(String::as_str).collect::<Vec<_>>(),
        ["company_name", "listing_url", "website"]
    );
    assert!(precision >= 0.99, "precision {precision}");
    assert!(recall >= 0.9, "recall {recall}");
}
