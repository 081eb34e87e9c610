//! `joblake enrich companies` and `refresh --enrich`: the profiles of the career sites a
//! predicate chooses, each fetched once within `--stale-after`, 404s remembered, checked
//! against the simulator's profiles (`/_sim/truth/companies`) and its request log.

use std::collections::{BTreeMap, BTreeSet};

use joblake_schema::Table;
use serde_json::Value;

use super::source;
use crate::harness::{Lake, Sim, assert_no_keys, assert_same, repo_root, signal_after};

/// No pacing (the simulator has no rate limit here) and quick retries.
const FAST: &str = r#"
[career_sites]
requests_per_minute = 0
retry_base_ms = 20
retry_cap_secs = 2
[jobs]
requests_per_minute = 0
"#;

const FINTECH: &str = "list_contains(industries, 'fintech') OR list_contains(industries, 'saas')";

/// The ids of the career sites `predicate` chooses that list a profile.
async fn chosen(lake: &Lake, predicate: &str) -> BTreeSet<String> {
    lake.query(&format!(
        "SELECT id FROM career_sites WHERE ({predicate}) AND details_url IS NOT NULL"
    ))
    .await
    .into_iter()
    .map(|r| r["id"].as_str().unwrap().to_string())
    .collect()
}

/// The ids of company profiles the simulator served (200) since log entry `from`, counted.
fn profiles_asked(log: &[Value], from: usize, status: u64) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in log.iter().skip(from).filter(|e| e["api"] == "companies") {
        if e["status"] == status {
            *out.entry(e["params"]["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

/// The simulator's profiles of `ids`, through the same DuckDB -> JSON path as the view.
async fn expected(lake: &Lake, sim: &Sim, ids: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let mut truth = lake.truth(sim, Table::Companies).await;
    truth.retain(|id, _| ids.contains(id));
    truth
}

async fn enrich(lake: &Lake, args: &[&str]) -> Value {
    let mut all = vec!["--json", "enrich", "companies"];
    all.extend_from_slice(args);
    let run = lake.run(&all).await;
    run.assert_code(0);
    serde_json::from_str(&run.stdout()).expect("--json summary")
}

#[tokio::test]
async fn enrich_fetches_the_chosen_profiles_once_and_remembers_404s() {
    let sim = Sim::start(&["--rows", "400"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(FAST);
    lake.refresh_ok(&[]).await;
    let ids = chosen(&lake, FINTECH).await;
    let want = expected(&lake, &sim, &ids).await;
    let gone: BTreeSet<String> = ids
        .iter()
        .filter(|id| !want.contains_key(*id))
        .cloned()
        .collect();
    assert!(
        ids.len() > 50 && !gone.is_empty(),
        "{} chosen, {} gone",
        ids.len(),
        gone.len()
    );

    // --dry-run says how many are due, and asks for none.
    let from = sim.log().await.len();
    let plan = enrich(&lake, &["--where", FINTECH, "--dry-run"]).await;
    assert_eq!(plan["due"], ids.len(), "{plan}");
    assert_eq!(sim.log().await.len(), from);
    assert!(!lake.root().join("companies").exists());

    let summary = enrich(&lake, &["--where", FINTECH]).await;
    let companies = source(&summary, "companies");
    assert_eq!(companies["status"], "succeeded", "{summary}");
    assert_eq!(companies["profiles"]["due"], ids.len(), "{summary}");
    assert_eq!(companies["profiles"]["fetched"], want.len());
    assert_eq!(companies["profiles"]["not_found"], gone.len());
    assert_eq!(companies["rows"], want.len());
    assert_same(&lake.view("companies").await, &want, "companies");
    let log = sim.log().await;
    let served = profiles_asked(&log, from, 200);
    assert_eq!(
        served.keys().cloned().collect::<BTreeSet<_>>(),
        want.keys().cloned().collect()
    );
    assert!(
        served.values().all(|n| *n == 1),
        "a profile was asked twice"
    );
    let missing = profiles_asked(&log, from, 404);
    assert_eq!(missing.keys().cloned().collect::<BTreeSet<_>>(), gone);

    // The nested lists are LIST<STRUCT> DuckDB can UNNEST, row for row as served.
    let truth_rows: Vec<Value> = sim
        .truth_rows(Table::Companies)
        .await
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .filter(|r: &Value| ids.contains(r["id"].as_str().unwrap()))
        .collect();
    let rounds: usize = truth_rows
        .iter()
        .map(|r| r["funding_rounds"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(rounds > 0);
    assert_eq!(
        lake.count(
            "SELECT count(*) FROM companies, UNNEST(funding_rounds) AS t(r) \
             WHERE r.round IS NOT NULL AND r.date IS NOT NULL"
        )
        .await as usize,
        rounds
    );
    let leaders: usize = truth_rows
        .iter()
        .map(|r| r["leadership"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        lake.count("SELECT count(*) FROM (SELECT unnest(leadership) AS l FROM companies) WHERE l.name IS NOT NULL")
            .await as usize,
        leaders
    );

    // Within --stale-after nothing is fetched again, and the 404s are not asked again.
    let from = sim.log().await.len();
    let again = enrich(&lake, &["--where", FINTECH]).await;
    assert_eq!(source(&again, "companies")["profiles"]["due"], 0, "{again}");
    let plan = enrich(&lake, &["--where", FINTECH, "--dry-run"]).await;
    assert_eq!(plan["due"], 0, "{plan}");
    assert_eq!(
        sim.log()
            .await
            .iter()
            .skip(from)
            .filter(|e| e["api"] == "companies")
            .count(),
        0
    );

    // A wider choice with --limit takes only that many of the new ones.
    let from = sim.log().await.len();
    let more = enrich(&lake, &["--limit", "5"]).await;
    assert_eq!(source(&more, "companies")["profiles"]["due"], 5, "{more}");
    let asked: BTreeSet<String> = profiles_asked(&sim.log().await, from, 200)
        .into_keys()
        .chain(profiles_asked(&sim.log().await, from, 404).into_keys())
        .collect();
    assert_eq!(asked.len(), 5);
    assert!(
        asked.is_disjoint(&ids),
        "an enriched company was fetched again"
    );

    // Past --stale-after a profile is fetched again: a second version, the later one wins.
    let stale = enrich(
        &lake,
        &["--where", FINTECH, "--stale-after", "0h", "--limit", "3"],
    )
    .await;
    assert_eq!(
        source(&stale, "companies")["profiles"]["fetched"],
        3,
        "{stale}"
    );
    assert_eq!(
        lake.count("SELECT count(*) FROM (SELECT id FROM companies_history GROUP BY id HAVING count(*) = 2)")
            .await,
        3
    );
    assert_eq!(
        lake.count("SELECT count(*) - count(DISTINCT id) FROM companies")
            .await,
        0
    );
    // The ledger holds the three runs that fetched something (as for the feeds, a run with
    // nothing to do leaves no entry).
    assert_eq!(
        lake.count(
            "SELECT count(*) FROM runs WHERE source = 'companies' AND command = 'enrich' \
             AND status = 'succeeded'"
        )
        .await,
        3
    );
    assert_no_keys(&lake, &sim, &[]).await;
}

#[tokio::test]
async fn example_queries_run_on_an_enriched_lake() {
    let sim = Sim::start(&["--rows", "300"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(FAST);
    lake.refresh_ok(&[]).await;
    enrich(&lake, &[]).await;
    let dir = repo_root().join("queries/examples");
    let mut ran = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        let rows = lake.query(&sql).await;
        assert!(!rows.is_empty(), "{} returned nothing", path.display());
        ran += 1;
    }
    assert!(ran >= 5);
    // The join finds jobs for the enriched companies, by name or website domain.
    let joined = lake
        .query(
            &std::fs::read_to_string(repo_root().join("queries/examples/05_companies.sql"))
                .unwrap(),
        )
        .await;
    assert!(
        joined.iter().any(|r| r["jobs"].as_i64().unwrap() > 0),
        "{joined:?}"
    );
}

#[tokio::test]
async fn refresh_enrich_keeps_the_configured_profiles_current() {
    let sim = Sim::start(&["--rows", "200"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(&format!(
        "{FAST}\n[companies]\nwhere = \"{FINTECH}\"\nstale_after = \"30d\"\n"
    ));
    let first = lake.refresh_ok(&["--enrich"]).await;
    let names: Vec<&str> = first["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["career_sites", "jobs", "companies"]);
    let ids = chosen(&lake, FINTECH).await;
    assert_same(
        &lake.view("companies").await,
        &expected(&lake, &sim, &ids).await,
        "companies after the first refresh",
    );

    // New career sites arrive; only the new ones the predicate chooses are fetched.
    sim.advance(48).await;
    let from = sim.log().await.len();
    lake.refresh_ok(&["--enrich"]).await;
    let now = chosen(&lake, FINTECH).await;
    assert!(
        now.len() > ids.len(),
        "the feed brought new chosen companies"
    );
    let asked: BTreeSet<String> = profiles_asked(&sim.log().await, from, 200)
        .into_keys()
        .chain(profiles_asked(&sim.log().await, from, 404).into_keys())
        .collect();
    assert_eq!(asked, now.difference(&ids).cloned().collect());
    // Companies enriched before stay, even those the predicate no longer chooses.
    let view = lake.view("companies").await;
    let want = expected(&lake, &sim, &now).await;
    let kept: BTreeSet<&String> = view.keys().collect();
    assert!(want.keys().all(|id| kept.contains(id)));
    assert!(kept.iter().all(|id| now.contains(*id) || ids.contains(*id)));

    // Status lists the table; compact keeps its rows.
    let status = lake.run(&["--json", "status"]).await;
    status.assert_code(0);
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    let row = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "companies")
        .expect("companies in status")
        .clone();
    assert_eq!(row["ids"].as_u64().unwrap() as usize, view.len());
    lake.run(&["compact"]).await.assert_code(0);
    assert_eq!(lake.view("companies").await, view);
    assert_no_keys(&lake, &sim, &[]).await;
}

#[tokio::test]
async fn enrich_needs_the_jobo_key_and_refresh_says_it_skipped() {
    let sim = Sim::start(&["--rows", "50"]).await;
    let mut lake = Lake::with_keys(&sim, None, Some(&sim.sentrion_key));
    lake.set_config(&format!("{FAST}\n[companies]\nlimit = 10\n"));
    let run = lake.run(&["enrich", "companies"]).await;
    run.assert_code(2);
    assert!(run.stderr().contains("JOBO_API_KEY"), "{}", run.stderr());
    let run = lake.run(&["refresh", "--enrich"]).await;
    run.assert_code(0);
    assert!(
        run.stderr()
            .contains("skipped companies: JOBO_API_KEY is not set"),
        "{}",
        run.stderr()
    );

    // Without a [companies] section, refresh --enrich enriches nothing and says why.
    let mut lake = Lake::new(&sim);
    lake.set_config(FAST);
    let run = lake.run(&["--json", "refresh", "--enrich"]).await;
    run.assert_code(0);
    assert!(
        run.stderr()
            .contains("skipped companies: the config has no [companies] section"),
        "{}",
        run.stderr()
    );
    let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(summary["sources"].as_array().unwrap().len(), 2);

    // A predicate DuckDB refuses, or an age joblake cannot read, is a clear error.
    let run = lake
        .run(&["enrich", "companies", "--where", "no_such_column = 1"])
        .await;
    run.assert_code(1);
    assert!(run.stderr().contains("no_such_column"), "{}", run.stderr());
    let run = lake
        .run(&["enrich", "companies", "--stale-after", "3 weeks"])
        .await;
    run.assert_code(2);
    assert!(run.stderr().contains("--stale-after"), "{}", run.stderr());
}

#[tokio::test]
async fn enrich_retries_faults_and_resumes_after_a_kill_without_refetching() {
    let sim = Sim::start(&["--rows", "300", "--latency-ms", "5"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(FAST);
    lake.refresh_ok(&[]).await;
    let ids = chosen(&lake, "true").await;
    let want = expected(&lake, &sim, &ids).await;

    // Killed once 60 profiles were served; the rerun commits what was staged and fetches
    // only the rest.
    let from = sim.log().await.len();
    signal_after(
        &lake,
        &sim,
        &["enrich", "companies"],
        "companies",
        60,
        "KILL",
    )
    .await;
    sim.set_faults("companies:503=0@3,companies:500@7,companies:429=0@11")
        .await;
    let summary = enrich(&lake, &[]).await;
    let companies = source(&summary, "companies");
    assert!(
        companies["recovered_rows"].as_u64().unwrap() >= 40,
        "{summary}"
    );
    assert!(companies["retries"].as_u64().unwrap() >= 3, "{summary}");
    assert_same(
        &lake.view("companies").await,
        &want,
        "companies after the kill",
    );
    let served = profiles_asked(&sim.log().await, from, 200);
    let twice = served.values().filter(|n| **n > 1).count();
    // At most the profiles in flight (4): each is staged as it arrives.
    assert!(twice <= 4, "{twice} profiles fetched twice");
    assert_eq!(
        lake.count("SELECT count(*) - count(DISTINCT id) FROM companies")
            .await,
        0
    );
    assert_eq!(
        lake.count("SELECT count(*) FROM runs WHERE source = 'companies' AND status = 'crashed'")
            .await,
        1
    );
    assert_no_keys(&lake, &sim, &[]).await;
}

#[tokio::test]
async fn enrich_on_an_s3_lake_commits_and_resumes_the_same_way() {
    let sim = Sim::start(&["--rows", "200", "--latency-ms", "5"]).await;
    let moto = joblake_testkit::Moto::shared();
    let mut lake = Lake::on_s3(&sim, &moto.endpoint, &moto.bucket("s3-enrich"));
    lake.set_config(FAST);
    lake.refresh_ok(&[]).await;
    let ids = chosen(&lake, "true").await;
    let want = expected(&lake, &sim, &ids).await;

    let from = sim.log().await.len();
    signal_after(
        &lake,
        &sim,
        &["enrich", "companies"],
        "companies",
        40,
        "KILL",
    )
    .await;
    let summary = enrich(&lake, &[]).await;
    assert!(
        source(&summary, "companies")["recovered_rows"]
            .as_u64()
            .unwrap()
            >= 20,
        "{summary}"
    );
    assert_same(&lake.view("companies").await, &want, "companies on S3");
    let twice = profiles_asked(&sim.log().await, from, 200)
        .values()
        .filter(|n| **n > 1)
        .count();
    assert!(twice <= 4, "{twice} profiles fetched twice");
    assert_no_keys(&lake, &sim, &[]).await;
}

#[tokio::test]
async fn odd_profiles_are_loaded_or_rejected_with_a_counted_reason() {
    let sim = Sim::start(&["--rows", "100"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(FAST);
    lake.refresh_ok(&[]).await;
    sim.set_faults(
        "companies:drift@2,companies:nulls@3,companies:bigtext@4,companies:badutf8@5,\
         companies:odddates@6,companies:unknown@7,companies:nonjson@8,companies:truncate@9",
    )
    .await;
    let summary = enrich(&lake, &[]).await;
    let s = source(&summary, "companies");
    let served: i64 = sim
        .requests("companies")
        .await
        .iter()
        .filter(|e| e["status"] == 200)
        .map(|e| e["rows"].as_i64().unwrap())
        .sum();
    let loaded = lake.count("SELECT count(*) FROM companies_history").await;
    let rejected = s["rejected_rows"].as_i64().unwrap();
    assert_eq!(served, loaded + rejected, "{summary}");
    // The profile with no id at all cannot load; its reason is kept.
    assert_eq!(rejected, 1, "{summary}");
    assert!(s["type_mismatches"].as_u64().unwrap() >= 1, "{summary}");
    assert!(s["unknown_fields"].as_u64().unwrap() >= 1, "{summary}");
    assert!(
        lake.count("SELECT count(*) FROM companies WHERE _extra LIKE '%founding_year%'")
            .await
            >= 1,
        "a year sent as text is kept, as text, in _extra"
    );
    assert!(
        lake.count("SELECT max(length(description)) FROM companies")
            .await
            >= 100_000
    );
    // The non-JSON and cut-short bodies were asked again, not loaded.
    assert!(s["retries"].as_u64().unwrap() >= 2, "{summary}");
    assert_eq!(
        lake.count("SELECT count(*) - count(DISTINCT id) FROM companies")
            .await,
        0
    );
    assert_no_keys(&lake, &sim, &[summary.to_string()]).await;
}
