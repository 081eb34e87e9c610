//! History and credits: `backfill` walks a range in windows (newest first, split where the
//! API says a window is too deep, resumable at the window and page it stopped),
//! `--dry-run` estimates without fetching, `--min-credits` stops in time, Ctrl-C commits.

use chrono::{Days, NaiveDate, Utc};
use joblake_schema::Table;
use serde_json::{Value, json};

use super::{assert_views_match_truth, source};
use crate::harness::{Lake, Sim, assert_same, refetched, signal_after};

/// Jobs published over 300 days, so there is history to walk.
async fn history_sim(extra: &[&str]) -> Sim {
    let mut args = vec!["--rows", "4000", "--history-days", "300"];
    args.extend_from_slice(extra);
    Sim::start(&args).await
}

/// Windows of at most 60 jobs, unpaced: many windows, quickly.
const SMALL_WINDOWS: &str = "[jobs]\nrequests_per_minute = 0\nbackfill_window_rows = 60\n";

fn days_ago(n: u64) -> NaiveDate {
    Utc::now().date_naive() - Days::new(n)
}

/// The data windows the simulator was asked for (in pages of `limit` rows; the plan's
/// questions use 10), in the order asked: (after, before).
pub(crate) fn data_windows(log: &[Value], limit: u64) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in log
        .iter()
        .filter(|e| e["api"] == "sentrion" && e["status"] == 200 && e["params"]["limit"] == limit)
    {
        let w = (
            e["params"]["published_after"].as_str().unwrap().to_string(),
            e["params"]["published_before"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        if out.last() != Some(&w) {
            out.push(w);
        }
    }
    out
}

/// Every window was loaded exactly once: the history rows published in it are exactly what
/// a search of that window returns.
pub(crate) async fn assert_each_window_loaded_once(
    lake: &Lake,
    sim: &Sim,
    windows: &[(String, String)],
) {
    for (after, before) in windows {
        let body = json!({"published_after": after, "published_before": before}).to_string();
        assert_same(
            &lake
                .view_where(
                    "jobs_history",
                    &format!("post_date >= DATE '{after}' AND post_date < DATE '{before}'"),
                )
                .await,
            &lake.truth_where(sim, Table::Jobs, Some(&body)).await,
            &format!("window {after} .. {before}"),
        );
    }
}

#[tokio::test]
async fn backfill_walks_the_range_newest_first_in_windows_split_by_the_apis_totals() {
    let sim = history_sim(&[]).await;
    let mut lake = Lake::with_keys(&sim, None, Some(&sim.sentrion_key));
    lake.set_config(SMALL_WINDOWS);
    let (since, until) = (days_ago(250), days_ago(30));
    let run = lake
        .run(&[
            "--json",
            "backfill",
            "--source",
            "jobs",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
        ])
        .await;
    run.assert_code(0);
    assert!(run.stderr().contains("backfill plan"), "{}", run.stderr());
    let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(summary["command"], "backfill");
    let jobs = source(&summary, "jobs");
    assert_eq!(jobs["status"], "succeeded");
    assert_eq!(jobs["windows"]["left"], 0);

    let log = sim.log().await;
    let windows = data_windows(&log, 100);
    assert_eq!(jobs["windows"]["done"], windows.len());
    // Newest first, contiguous, covering exactly since ..= until.
    assert_eq!(
        windows.first().unwrap().1,
        (until + Days::new(1)).to_string()
    );
    assert_eq!(windows.last().unwrap().0, since.to_string());
    for pair in windows.windows(2) {
        assert_eq!(pair[0].0, pair[1].1, "windows meet without gap or overlap");
    }
    // Split where the API said a window was too deep: far more windows than 30-day cuts,
    // and none deeper than 60 jobs unless a single day.
    assert!(windows.len() > 220 / 30 + 1, "{} windows", windows.len());
    for (after, before) in &windows {
        let body = json!({"published_after": after, "published_before": before}).to_string();
        let n = sim.truth_filtered(Table::Jobs, &body).await.len();
        let one_day = (after.parse::<NaiveDate>().unwrap() + Days::new(1)).to_string() == *before;
        assert!(n <= 60 || one_day, "{after} .. {before}: {n} jobs");
    }
    // The plan (one small request per window) came before the first page of data.
    let first_data = log
        .iter()
        .position(|e| e["params"]["limit"] == 100)
        .unwrap();
    assert!(
        log[first_data..]
            .iter()
            .all(|e| e["params"]["limit"] == 100)
    );
    assert_each_window_loaded_once(&lake, &sim, &windows).await;
    assert!(
        refetched(&log, "sentrion").is_empty(),
        "a page was paid twice"
    );
    let runs = lake.query("SELECT command, status FROM runs").await;
    assert_eq!(
        runs,
        [json!({"command": "backfill", "status": "succeeded"})]
    );
}

#[tokio::test]
async fn a_backfill_killed_twice_resumes_at_the_window_and_page_it_stopped() {
    let sim = history_sim(&["--latency-ms", "15"]).await;
    let mut lake = Lake::with_keys(&sim, None, Some(&sim.sentrion_key));
    lake.set_config(SMALL_WINDOWS);
    let since = days_ago(200).to_string();
    let args = ["backfill", "--source", "jobs", "--since", &since];
    // A dry run asks the same totals the plan does: kill the real run a few pages after them.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    lake.run(&dry).await.assert_code(0);
    let probes = sim.log().await.len();
    signal_after(&lake, &sim, &args, "sentrion", probes + 5, "KILL").await;
    let planned = sim.log().await.len();
    signal_after(&lake, &sim, &args, "sentrion", 12, "KILL").await;
    let run = lake.run(&args).await;
    run.assert_code(0);
    assert!(
        run.stderr().contains("resuming the backfill"),
        "{}",
        run.stderr()
    );

    let log = sim.log().await;
    // The plan was made once: no window was asked its total again after the first kill.
    assert!(
        log[planned..].iter().all(|e| e["params"]["limit"] != 10),
        "the plan was made again"
    );
    // Pages of data paid twice: at most the one in flight at each kill (the dry run's
    // questions of totals repeat the plan's by design).
    let data: Vec<Value> = log
        .iter()
        .filter(|e| e["params"]["limit"] == 100)
        .cloned()
        .collect();
    let again = refetched(&data, "sentrion");
    assert!(
        again.values().sum::<usize>() - again.len() <= 2,
        "{again:?}"
    );
    assert_each_window_loaded_once(&lake, &sim, &data_windows(&log, 100)).await;
    let history = lake.count("SELECT count(*) FROM jobs_history").await;
    let ids = lake
        .count("SELECT count(DISTINCT id) FROM jobs_history")
        .await;
    assert!(history >= ids, "{history} {ids}");
}

#[tokio::test]
async fn a_backfill_older_than_six_years_is_refused_before_any_request() {
    let sim = Sim::start(&[]).await;
    let lake = Lake::new(&sim);
    let since = days_ago(6 * 366).to_string();
    let run = lake
        .run(&["backfill", "--source", "jobs", "--since", &since])
        .await;
    run.assert_code(2);
    assert!(run.stderr().contains("six years"), "{}", run.stderr());
    assert!(sim.log().await.is_empty());
    assert!(lake.files().is_empty());
}

#[tokio::test]
async fn dry_runs_estimate_from_the_apis_totals_without_fetching_the_data() {
    let sim = history_sim(&[]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(SMALL_WINDOWS);
    let run = lake.run(&["--json", "refresh", "--dry-run"]).await;
    run.assert_code(0);
    let est: Value = serde_json::from_str(&run.stdout()).unwrap();
    let est = |name: &str| {
        est.as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == name)
            .unwrap()
            .clone()
    };
    let truth = sim.truth_rows(Table::Jobs).await.len() as u64;
    assert_eq!(est("jobs")["rows"], truth);
    assert_eq!(est("jobs")["credits_at_most"], truth);
    assert!(
        est("jobs")["basis"]
            .as_str()
            .unwrap()
            .contains("total_jobs_found")
    );
    assert_eq!(est("career_sites")["rows"], Value::Null);
    assert!(
        est("career_sites")["basis"]
            .as_str()
            .unwrap()
            .contains("no totals")
    );

    let since = days_ago(120).to_string();
    let run = lake
        .run(&[
            "backfill",
            "--source",
            "jobs",
            "--since",
            &since,
            "--dry-run",
        ])
        .await;
    run.assert_code(0);
    assert!(run.stdout().contains("backfill plan") && run.stdout().contains("credits"));
    // Only the smallest pages were asked for, and nothing was written anywhere.
    let log = sim.log().await;
    assert!(
        log.iter()
            .all(|e| e["api"] == "sentrion" && e["params"]["limit"] == 10)
    );
    assert!(
        lake.files().is_empty(),
        "a dry run wrote {:?}",
        lake.files().keys()
    );
}

#[tokio::test]
async fn min_credits_stops_in_time_and_the_runs_view_keeps_the_books() {
    let sim = Sim::start(&["--rows", "3000", "--credits", "3000"]).await;
    let mut lake = Lake::with_keys(&sim, Some(&sim.jobo_key), None);
    lake.set_config("[career_sites]\nrequests_per_minute = 0\nwarn_below_credits = 2500\n");
    let run = lake
        .run(&["--json", "refresh", "--min-credits", "1000"])
        .await;
    run.assert_code(3);
    assert!(
        run.stderr().contains("--min-credits 1000"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("credit balance is low"),
        "{}",
        run.stderr()
    );
    let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
    let sites = source(&summary, "career_sites");
    let balance = sites["credits_balance"].as_f64().unwrap();
    assert!((1000.0..1050.0).contains(&balance), "stopped at {balance}");
    let log = sim.log().await;
    let served: u64 = log.iter().map(|e| e["rows"].as_u64().unwrap()).sum();
    assert_eq!(
        lake.count("SELECT count(*) FROM career_sites_history")
            .await as u64,
        served
    );
    let runs = lake
        .query("SELECT status, credits_used, credits_balance FROM runs")
        .await;
    assert_eq!(
        runs,
        [
            json!({"status": "interrupted", "credits_used": 3000.0 - balance, "credits_balance": balance})
        ]
    );

    // Known from the ledger: the next run does not even ask while the balance is short.
    let run = lake.run(&["refresh", "--min-credits", "1000"]).await;
    run.assert_code(3);
    assert_eq!(sim.log().await.len(), log.len(), "no request was made");
    // Topped up, the run resumes and finishes the scan.
    sim.set_credits(json!({"jobo": 100000})).await;
    lake.refresh_ok(&[]).await;
    assert_same(
        &lake.view("career_sites").await,
        &lake.truth(&sim, Table::CareerSites).await,
        "career_sites",
    );
}

#[tokio::test]
async fn ctrl_c_commits_what_was_fetched_and_the_next_run_resumes_without_refetching() {
    let sim = Sim::start(&["--rows", "800", "--latency-ms", "25"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(
        "[career_sites]\npage_size = 10\nrequests_per_minute = 0\n\
         [jobs]\npage_size = 10\nrequests_per_minute = 0\n",
    );
    let out = signal_after(&lake, &sim, &["refresh"], "jobo", 6, "INT").await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    // What was fetched is committed and queryable, and status says where to resume.
    let served: i64 = sim
        .requests("jobo")
        .await
        .iter()
        .map(|e| e["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(
        lake.count("SELECT count(*) FROM career_sites_history")
            .await,
        served
    );
    let status = lake.run(&["status", "--json"]).await;
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    assert!(
        status["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["scan_in_progress"] == true && t["last_status"] == "interrupted"),
        "{status}"
    );
    lake.refresh_ok(&[]).await;
    assert_views_match_truth(&lake, &sim).await;
    let log = sim.log().await;
    assert!(
        refetched(&log, "jobo").is_empty(),
        "a graceful stop re-fetches nothing"
    );
    assert!(refetched(&log, "sentrion").is_empty());
}

#[tokio::test]
async fn career_sites_backfill_walks_discovery_windows_newest_first() {
    let sim = Sim::start(&["--rows", "600"]).await;
    let mut lake = Lake::with_keys(&sim, Some(&sim.jobo_key), None);
    lake.set_config("[career_sites]\nrequests_per_minute = 0\n");
    let after = days_ago(200).to_string();
    let run = lake
        .run(&[
            "--json",
            "backfill",
            "--source",
            "career_sites",
            "--discovered-after",
            &after,
        ])
        .await;
    run.assert_code(0);
    assert!(
        run.stderr().contains("reports no totals"),
        "{}",
        run.stderr()
    );
    let log = sim.log().await;
    let mut starts: Vec<&str> = log
        .iter()
        .map(|e| e["params"]["discovered_after"].as_str().unwrap())
        .collect();
    starts.dedup();
    assert!(starts.len() >= 6, "{starts:?}");
    assert!(
        starts.windows(2).all(|w| w[0] > w[1]),
        "newest first: {starts:?}"
    );
    let body = json!({"discovered_after": format!("{after}T00:00:00Z")}).to_string();
    assert_same(
        &lake.view("career_sites").await,
        &lake
            .truth_where(&sim, Table::CareerSites, Some(&body))
            .await,
        "career sites discovered since --discovered-after",
    );
    assert!(refetched(&log, "jobo").is_empty());
}

#[tokio::test]
async fn a_killed_backfill_staged_its_window_list_once_not_with_every_page() {
    let sim = history_sim(&[]).await;
    let mut lake = Lake::with_keys(&sim, None, Some(&sim.sentrion_key));
    lake.set_config(SMALL_WINDOWS);
    let since = days_ago(200).to_string();
    let args = ["backfill", "--source", "jobs", "--since", &since];
    lake.env
        .push(("JOBLAKE_CRASH_AT".into(), "fetch:after-page:25".into()));
    let killed = lake.run(&args).await;
    assert_eq!(killed.code(), None, "{}", killed.stderr());
    lake.env.pop();

    // The killed run's staging log, as it is on disk.
    let dir = lake.root().join("_joblake/staging/jobs");
    let mut log = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            log.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    let count =
        |bytes: &[u8], what: &[u8]| bytes.windows(what.len()).filter(|w| *w == what).count();
    let pages = count(&log, b"JLPG");
    // The first record's header holds the whole plan: one `expected_rows` a window.
    let header_end = 12 + log[12..].iter().position(|&b| b == b'\n').unwrap();
    let windows = count(&log[12..header_end], b"\"expected_rows\"");
    let written = count(&log, b"\"expected_rows\"");
    assert!(
        pages >= 20 && windows >= 10,
        "{pages} pages, {windows} windows"
    );
    // Staged whole with every page, the list would be there about pages × windows / 2 times.
    assert!(
        written <= windows + 2 * pages,
        "{written} windows written for {pages} pages of a {windows}-window plan"
    );

    // The next run commits the staged pages and finishes the backfill.
    let run = lake.run(&args).await;
    run.assert_code(0);
    crate::edges::edge(
        "a backfill of many windows killed after 24 pages: does each staged page carry the \
         whole window list?",
        "`JOBLAKE_CRASH_AT=fetch:after-page:25 joblake backfill --source jobs --since <200 days \
         ago>` with `backfill_window_rows = 60`, then the staging log read as it is on disk",
        &format!(
            "the plan's {windows} windows are written once, in the first page's record; the \
             other {} pages carry only what changed ({written} window entries in the whole \
             log). The next run committed the staged pages and finished the backfill",
            pages - 1
        ),
    );
}
