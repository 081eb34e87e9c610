//! Edges: what a hostile server, an odd setting or an odd lake path does to a run, each tried
//! against the binary as a user would meet it. Every test writes its row of `RELIABILITY.md`'s
//! "Edges" table: what was tried, and what came of it.

use serde_json::Value;

use super::{served_rows, source};
use crate::harness::{Lake, Sim, assert_no_keys, reliability_row};

const HEAD: &str = "## Edges: what was tried, what came of it\n\n\
                    Each row is one test in `tests/e2e/edges.rs`: the binary run as a user would \
                    run it, against `joblake simulate` where a server is involved.\n\n\
                    | what was tried | how | what came of it |\n|---|---|---|";

pub(crate) fn edge(what: &str, how: &str, outcome: &str) {
    reliability_row("edges", HEAD, &format!("| {what} | {how} | {outcome} |"));
}

/// Pages the simulator served `api` with a 200.
fn pages_served(log: &[Value], api: &str) -> usize {
    log.iter()
        .filter(|e| e["api"] == api && e["status"] == 200)
        .count()
}

struct Endless {
    what: &'static str,
    faults: &'static str,
    /// The APIs that page forever, and the most pages each may be asked for.
    apis: &'static [(&'static str, &'static str, usize)],
    /// What stderr says.
    says: &'static str,
    /// What it says, for the table.
    told: &'static str,
}

const ENDLESS: &[Endless] = &[
    Endless {
        what: "a server whose cursors go round in a loop (A → B → A)",
        faults: "jobo:cyclecursor@3+,sentrion:cyclecursor@3+",
        apis: &[("jobo", "career_sites", 3), ("sentrion", "jobs", 3)],
        says: "a loop",
        told: "page 3 leads back to page 2, a loop",
    },
    Endless {
        what: "a server whose pages are empty yet always say there is more",
        faults: "sentrion:emptymore@2+,sentrion:rewind@2+",
        apis: &[("sentrion", "jobs", 4)],
        says: "3 pages in a row with no rows",
        told: "3 pages in a row with no rows that each said more was to come",
    },
    Endless {
        what: "a server that starts its pages over and over, past its own total",
        faults: "sentrion:rewind@2+",
        // At most 200 jobs in 20-row pages: stopped past 2 × 200 + 2 pages, by the 23rd page.
        apis: &[("sentrion", "jobs", 23)],
        says: "far past the",
        told: "the scan fetched rows far past the total the API gave",
    },
];

#[tokio::test]
async fn a_server_that_would_page_forever_is_stopped_after_a_few_pages() {
    for case in ENDLESS {
        let sim = Sim::start(&["--rows", "200", "--faults", case.faults]).await;
        let mut lake = Lake::new(&sim);
        lake.set_config(
            "[career_sites]\npage_size = 20\n[jobs]\npage_size = 20\nrequests_per_minute = 0\n",
        );
        let run = lake.run(&["--json", "refresh"]).await;
        run.assert_code(1);
        assert!(
            run.stderr().contains(case.says),
            "{}: {}",
            case.what,
            run.stderr()
        );
        let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
        let log = sim.log().await;
        let mut pages = Vec::new();
        for &(api, table, most) in case.apis {
            let s = source(&summary, table);
            assert_eq!(s["status"], "failed", "{}: {s}", case.what);
            let served = pages_served(&log, api);
            assert!(
                served <= most,
                "{}: {api} was asked for {served} pages",
                case.what
            );
            // What was fetched is committed: every row served is in the history.
            let loaded = lake
                .count(&format!("SELECT count(*) FROM {table}_history"))
                .await;
            assert_eq!(loaded as u64, served_rows(&log, api), "{}", case.what);
            pages.push(format!("{api}: {served} pages"));
        }
        assert_no_keys(&lake, &sim, &[run.stdout(), run.stderr()]).await;
        edge(
            case.what,
            &format!("`joblake simulate --faults {}`", case.faults),
            &format!(
                "stopped after {}, exit 1, saying {}; every row fetched committed",
                pages.join(", "),
                case.told
            ),
        );
    }
}

#[tokio::test]
async fn a_lake_path_holding_braces_and_placeholder_names_works_like_any_other() {
    let sim = Sim::start(&["--rows", "100"]).await;
    let mut lake = Lake::new(&sim);
    lake.root_name = "lake{runs_source}{jobs_latest}".to_string();
    lake.refresh_ok(&[]).await;
    super::assert_views_match_truth(&lake, &sim).await;
    assert_eq!(
        lake.count("SELECT count(DISTINCT run_id) FROM runs").await,
        1
    );
    assert!(lake.root().ends_with("lake{runs_source}{jobs_latest}"));
    edge(
        "a lake path holding `{`, `}` and the views' placeholder names",
        "`--lake 'lake{runs_source}{jobs_latest}'`",
        "the refresh and every view work as on any other path",
    );
}

#[tokio::test]
async fn what_a_server_writes_reaches_stderr_and_the_ledger_inert() {
    // Each API's second page is refused with a message full of terminal escape sequences.
    let sim = Sim::start(&["--rows", "200", "--faults", "escapes@2"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(
        "[career_sites]\npage_size = 20\n[jobs]\npage_size = 20\nrequests_per_minute = 0\n",
    );
    let run = lake.run(&["-v", "refresh"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    let raw = |t: &str| {
        t.chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}')
    };
    assert!(
        !raw(&stderr),
        "stderr holds the server's control characters: {stderr:?}"
    );
    assert!(stderr.contains("Request rejected\\u{1b}[2J"), "{stderr}");
    let messages: Vec<String> = lake
        .query("SELECT coalesce(message, '') AS m FROM runs")
        .await
        .iter()
        .map(|r| r["m"].as_str().unwrap().to_string())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("Request rejected")),
        "{messages:?}"
    );
    for m in &messages {
        assert!(
            !raw(m),
            "the ledger holds the server's control characters: {m:?}"
        );
    }
    edge(
        "error messages full of terminal escape sequences (clear screen, window title, \
         colours, `\\r`, right-to-left override)",
        "`joblake simulate --faults escapes@2`: a 422 with them in its message",
        "stderr and the `runs` ledger show them escaped (`\\u{1b}[2J`); exit 1, the first \
         page committed",
    );
}

/// Flags a user could mistype, each refused before any request (exit 2, `error: ...` naming
/// what is wrong).
const BAD_FLAGS: &[&[&str]] = &[
    &["refresh", "--max-pages", "-1"],
    &["refresh", "--min-credits", "nan"],
    &["refresh", "--min-credits", "-5"],
    &["refresh", "--min-credits", "inf"],
    &["refresh", "--since", "2999-01-01"],
    &["refresh", "--since", "yesterday"],
    &["refresh", "--source", "everything"],
    &["backfill", "--source", "jobs", "--since", "0001-01-01"],
    &[
        "backfill",
        "--source",
        "jobs",
        "--since",
        "2025-01-01",
        "--until",
        "2999-01-01",
    ],
    &["backfill", "--source", "jobs", "--since", "2999-01-01"],
    &[
        "backfill",
        "--source",
        "career_sites",
        "--discovered-after",
        "2025-01-01",
        "--discovered-before",
        "2999-01-01",
    ],
    &[
        "backfill",
        "--source",
        "career_sites",
        "--discovered-after",
        "2999-01-01",
    ],
    &[
        "backfill",
        "--source",
        "career_sites",
        "--discovered-after",
        "+999999-01-01",
    ],
    &[
        "backfill",
        "--source",
        "career_sites",
        "--discovered-after",
        "2025-13-45",
    ],
    &["enrich", "companies", "--stale-after", "99999999999999d"],
    &[
        "enrich",
        "companies",
        "--stale-after",
        "99999999999999999999999999d",
    ],
    &["enrich", "companies", "--stale-after", "-3d"],
    &["enrich", "companies", "--stale-after", "3w"],
    &["enrich", "companies", "--concurrency", "0"],
    &["enrich", "companies", "--concurrency", "100000"],
];

/// `joblake.toml` values a user could mistype, each refused the same way.
const BAD_SETTINGS: &[&str] = &[
    "[career_sites]\noverlap_minutes = -30\n",
    "[career_sites]\noverlap_minutes = 99999999999\n",
    "[career_sites]\npage_size = 0\n",
    "[jobs]\npage_size = 0\n",
    "[jobs]\npage_size = \"ten\"\n",
    "[jobs]\npage_size = 99999999999\n",
    "[jobs]\ntimeout_secs = 0\n",
    "[jobs]\nmax_attempts = 0\n",
    "[jobs]\nretry_base_ms = 0\n",
    "[jobs]\nretry_cap_secs = 0\n",
    "[jobs]\nbackfill_window_rows = 0\n",
    "[jobs]\nwarn_below_credits = -1.0\n",
    "[jobs]\nfilters = 5\n",
    "[views]\nlatest_after = -1.0\n",
    "[views]\nlatest_after = nan\n",
    "[companies]\nstale_after = \"99999999999999d\"\n",
    "[companies]\nconcurrency = 0\n",
    "[jobs]\nunknown_setting = 1\n",
    "not toml at all [[[",
];

#[tokio::test]
async fn odd_flags_and_settings_are_refused_up_front_and_nothing_panics() {
    let sim = Sim::start(&["--rows", "50"]).await;
    let mut lake = Lake::new(&sim);
    let mut refused = 0;
    let mut check = |what: String, run: &crate::harness::Run| {
        assert_ne!(
            run.code(),
            Some(101),
            "{what}: joblake panicked: {}",
            run.stderr()
        );
        assert_eq!(run.code(), Some(2), "{what}: {}", run.stderr());
        assert!(
            run.stderr().trim_start().starts_with("error"),
            "{what}: no message: {}",
            run.stderr()
        );
        assert!(
            !run.stderr().contains("panicked"),
            "{what}: {}",
            run.stderr()
        );
        refused += 1;
    };
    for args in BAD_FLAGS {
        let run = lake.run(args).await;
        check(format!("joblake {}", args.join(" ")), &run);
    }
    for text in BAD_SETTINGS {
        lake.set_config(text);
        let mut args = vec!["refresh"];
        if text.starts_with("[companies]") {
            args = vec!["enrich", "companies"];
        }
        let run = lake.run(&args).await;
        check(format!("{text:?}"), &run);
        let run = lake.run(&["refresh", "--dry-run"]).await;
        if !text.starts_with("[companies]") {
            check(format!("{text:?} (--dry-run)"), &run);
        }
    }
    lake.set_config("");
    for bad in ["0", "2", "99999", "two minutes", "-5"] {
        lake.env
            .push(("JOBLAKE_S3_LEASE_SECONDS".into(), bad.into()));
        let run = lake.run(&["refresh"]).await;
        check(format!("JOBLAKE_S3_LEASE_SECONDS={bad}"), &run);
        assert!(run.stderr().contains("JOBLAKE_S3_LEASE_SECONDS"));
        lake.env.pop();
    }
    // Not one request reached the APIs, and nothing was written.
    assert!(
        sim.log().await.is_empty(),
        "a refused command sent a request"
    );
    assert!(!lake.root().exists(), "a refused command wrote the lake");
    edge(
        "odd flags and `joblake.toml` values: negative, zero, absurd, in the future, \
         non-numeric, of the wrong type",
        &format!(
            "{} command lines and {} config files, e.g. `--stale-after 99999999999999d`, \
             `--discovered-before 2999-01-01`, `overlap_minutes = -30`, `timeout_secs = 0`",
            BAD_FLAGS.len(),
            BAD_SETTINGS.len()
        ),
        &format!(
            "all {refused} refused before any request: exit 2, naming the flag or setting and \
             its valid range; no panic (exit 101) anywhere"
        ),
    );
}

#[tokio::test]
async fn a_key_is_never_sent_in_clear_text_to_another_machine() {
    let sim = Sim::start(&["--rows", "20"]).await;
    let mut lake = Lake::new(&sim);
    // A documentation address (TEST-NET-1): nothing answers there, and nothing may be sent.
    for (k, v) in lake.env.iter_mut() {
        if k == "JOBO_BASE_URL" {
            *v = "http://192.0.2.1:8080".to_string();
        }
    }
    let started = std::time::Instant::now();
    let run = lake.run(&["refresh"]).await;
    run.assert_code(2);
    assert!(
        run.stderr()
            .contains("JOBO_BASE_URL is a plain http:// URL to another machine"),
        "{}",
        run.stderr()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "it tried to connect"
    );
    assert!(sim.log().await.is_empty());
    edge(
        "an `http://` base URL to another machine, which would carry the key in clear text",
        "`JOBO_BASE_URL=http://192.0.2.1:8080 joblake refresh`",
        "refused before any connection (exit 2), saying to use https or set \
         `JOBLAKE_ALLOW_HTTP=1`; loopback addresses (a local proxy, the simulator) are fine",
    );
}

/// Runs `joblake <args>` on `lake` to its end; returns its exit code, its stderr and its own
/// peak RSS in MiB (from `wait4`, which reports on that one process).
// The child is reaped by `wait4`, which clippy does not see as a wait.
#[allow(clippy::zombie_processes)]
fn run_measured(lake: &Lake, args: &[&str]) -> (Option<i32>, String, i64) {
    use std::io::Read;
    let mut cmd = lake.command(args);
    let mut child = cmd
        .as_std_mut()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: wait4 on our own child, with an out-parameter it fills.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let pid = libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
        assert!(pid > 0, "wait4 failed");
        usage
    };
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, stderr, usage.ru_maxrss / 1024)
}

/// Bytes of the files under `dir`, all the way down.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => bytes_under(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn recovering_a_killed_run_reads_its_staging_log_a_page_at_a_time() {
    // About 50 k jobs match the default search: a staging log of about 75 MiB.
    let sim = Sim::start(&["--rows", "95000", "--history-days", "58"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config("[jobs]\nrequests_per_minute = 0\n");
    // Killed at its one commit: every page staged, nothing committed.
    lake.env
        .push(("JOBLAKE_CRASH_AT".into(), "commit:after-publish".into()));
    let killed = lake.run(&["refresh", "--source", "jobs"]).await;
    assert_eq!(killed.code(), None, "{}", killed.stderr());
    lake.env.pop();
    let staged = bytes_under(&lake.root().join("_joblake/staging")) >> 20;
    assert!(staged >= 50, "only {staged} MiB staged");

    let (code, stderr, rss) = run_measured(&lake, &["refresh", "--source", "jobs"]);
    assert_eq!(code, Some(0), "{stderr}");
    let fetched = served_rows(&sim.log().await, "sentrion");
    let history = lake.count("SELECT count(*) FROM jobs_history").await as u64;
    // Every row either run fetched is in once: the killed run's pages, the new run's few.
    assert_eq!(history, fetched);
    assert!(history > 40_000, "{history}");
    // Reading the log whole took about twice its size on top of the run's usual ~100 MiB; a
    // record at a time, the log's size at most comes on top (one run here: 95 MiB staged,
    // 156 MiB peak, on a loaded machine).
    assert!(
        rss < 100 + staged as i64,
        "recovering {staged} MiB of staged pages peaked at {rss} MiB"
    );
    edge(
        "a run killed after staging tens of MiB of pages, then the run that recovers them",
        &format!(
            "`JOBLAKE_CRASH_AT=commit:after-publish joblake refresh --source jobs` over {history} \
             jobs ({staged} MiB staged), then `joblake refresh --source jobs` measured with `wait4`"
        ),
        &format!(
            "the log is indexed, then read one record at a time: the recovering run peaked at \
             {rss} MiB, every row in once. `make bench` recovers 1.3 GiB the same way \
             (BENCHMARKS.md); the log also drops the segments a long run's commits cover, and a \
             page's checkpoint is staged as its change to the page before's"
        ),
    );
}

#[tokio::test]
async fn a_body_that_inflates_to_a_gigabyte_is_refused_within_the_memory_budget() {
    // Sentrion's second page: 1 MB of gzip that inflates to 1 GiB.
    let sim = Sim::start(&["--rows", "100", "--faults", "sentrion:gzipbomb@2"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config("[jobs]\npage_size = 20\nrequests_per_minute = 0\n");
    let (code, stderr, rss) = run_measured(&lake, &["refresh", "--source", "jobs"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("larger than 32 MiB once decompressed"),
        "{stderr}"
    );
    // Refused, not retried: one bomb asked for, and the page before it committed.
    let log = sim.log().await;
    assert_eq!(
        log.iter()
            .filter(|e| e["fault"].as_str() == Some("gzipbomb"))
            .count(),
        1,
        "{log:?}"
    );
    assert_eq!(
        lake.count("SELECT count(*) FROM jobs_history").await as u64,
        served_rows(&log, "sentrion")
    );
    assert!(rss < 200, "joblake peaked at {rss} MiB");
    edge(
        "a compressed body that inflates to 1 GiB (a gzip bomb of about 1 MB)",
        "`joblake simulate --faults sentrion:gzipbomb@2`",
        &format!(
            "refused once 32 MiB were inflated, not retried (exit 1, saying why); the page \
             before it committed; peak RSS {rss} MiB"
        ),
    );
}

#[tokio::test]
async fn a_long_wait_is_said_on_stderr_and_a_signal_ends_it_at_once() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    // The server allows two requests a minute and says so (X-RateLimit-Remaining: 0 and
    // X-RateLimit-Reset); joblake's own pacing is off, so the server's word is the wait.
    let sim = Sim::start(&["--rows", "200", "--rpm", "2"]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config("[career_sites]\npage_size = 20\nrequests_per_minute = 0\n");
    let mut child = lake
        .command(&["refresh", "--source", "career_sites"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let said = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("waiting") {
                return line;
            }
        }
        panic!("stderr ended without a word about the wait");
    })
    .await
    .expect("no word about the wait within a minute");
    assert!(said.contains("until") && said.contains("UTC"), "{said}");
    assert!(said.contains("rate-limit window"), "{said}");
    let pid = child.id().unwrap().to_string();
    let asked = std::time::Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().await.unwrap();
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(130), "{said}");
    // Well within a second in practice; the bound leaves room for a loaded machine.
    assert!(
        took < std::time::Duration::from_secs(3),
        "stopped {took:?} after SIGTERM"
    );
    // The pages fetched before the wait are committed.
    let log = sim.log().await;
    assert!(served_rows(&log, "jobo") > 0);
    assert_eq!(
        lake.count("SELECT count(*) FROM career_sites_history")
            .await as u64,
        served_rows(&log, "jobo")
    );
    edge(
        "a server that says its rate-limit window is spent for most of a minute \
         (`X-RateLimit-Remaining: 0`, a far `X-RateLimit-Reset`), then SIGTERM during the wait",
        "`joblake simulate --rpm 2`, `kill -TERM` once the wait is announced",
        &format!(
            "stderr says what it waits for and until when; SIGTERM ended the run {} ms later \
             (exit 130) with every page fetched committed. Waits past 15 minutes are refused \
             as a `Retry-After` that long is",
            took.as_millis()
        ),
    );
}

#[tokio::test]
async fn a_where_condition_is_one_condition_and_reads_nothing_but_the_lake() {
    let sim = Sim::start(&["--rows", "60"]).await;
    let mut lake = Lake::new(&sim);
    lake.refresh_ok(&["--source", "career_sites"]).await;
    let outside = lake.dir.path().join("outside.csv");
    let out = outside.display().to_string();
    let secret = lake.dir.path().join("secret.txt");
    std::fs::write(&secret, "id\nnot-for-joblake\n").unwrap();
    let statements = format!("true); COPY (SELECT 1) TO '{out}'; SELECT (1");
    let attach = format!("true; ATTACH '{out}.db'");
    let comment = "country = 'Nowhere' --".to_string();
    // Each refused before anything runs (exit 2), also under --dry-run and from joblake.toml.
    for predicate in [&statements, &attach, &comment] {
        for dry in [false, true] {
            let mut args = vec!["enrich", "companies", "--where", predicate.as_str()];
            if dry {
                args.push("--dry-run");
            }
            let run = lake.run(&args).await;
            run.assert_code(2);
            assert!(
                run.stderr().contains("one SQL condition"),
                "{}",
                run.stderr()
            );
        }
        lake.set_config(&format!(
            "[companies]\nwhere = {}\n",
            toml_string(predicate)
        ));
        let run = lake.run(&["enrich", "companies", "--dry-run"]).await;
        run.assert_code(2);
        std::fs::remove_file(lake.dir.path().join("joblake.toml")).unwrap();
        lake.config = None;
    }
    // One condition that reads (or writes) a file outside the lake: the session cannot.
    let reads = format!("id IN (SELECT id FROM read_csv('{}'))", secret.display());
    let run = lake.run(&["enrich", "companies", "--where", &reads]).await;
    assert_ne!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        run.stderr().contains("disabled by configuration") || run.stderr().contains("Permission"),
        "{}",
        run.stderr()
    );
    assert!(!outside.exists(), "a condition wrote {out}");
    assert!(
        sim.log().await.iter().all(|e| e["api"] != "companies"),
        "a refused condition fetched profiles"
    );
    edge(
        "`--where` / `[companies] where` holding more than a condition: `true); COPY ... TO \
         '<file>'; SELECT (1`, `ATTACH`, a trailing `--`, or a condition reading a file \
         outside the lake",
        "`joblake enrich companies --where ...` (also with `--dry-run`, and from \
         `joblake.toml`)",
        "refused before any query (exit 2) unless it is one condition; the condition runs in \
         a DuckDB session confined to the lake (no file elsewhere read, written or attached)",
    );
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[tokio::test]
async fn a_lake_directory_that_links_outside_the_lake_is_refused() {
    let sim = Sim::start(&["--rows", "40"]).await;
    let lake = Lake::new(&sim);
    lake.refresh_ok(&[]).await;
    // Someone's directory, and the lake's uploads directory made a link to it.
    let theirs = lake.dir.path().join("theirs");
    std::fs::create_dir_all(theirs.join("keep")).unwrap();
    std::fs::write(theirs.join("keep/file.txt"), "mine").unwrap();
    let uploads = lake.root().join("_joblake/uploads");
    let _ = std::fs::remove_dir_all(&uploads);
    std::fs::create_dir_all(uploads.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&theirs, &uploads).unwrap();
    for args in [&["refresh"][..], &["compact"], &["views"]] {
        let run = lake.run(args).await;
        run.assert_code(2);
        assert!(
            run.stderr().contains("_joblake/uploads is a symbolic link"),
            "{}",
            run.stderr()
        );
    }
    assert_eq!(
        std::fs::read_to_string(theirs.join("keep/file.txt")).unwrap(),
        "mine"
    );
    edge(
        "a directory inside the lake (`_joblake/uploads`) made a symbolic link to a directory \
         outside it",
        "`ln -s ~/elsewhere lake/_joblake/uploads`, then `refresh`, `compact`, `views`",
        "each refused (exit 2) naming the link; nothing outside the lake written or deleted",
    );
}

/// Debian's libfaketime, which shifts the clock of the process it is preloaded into
/// (`.ci/run` installs the `faketime` package).
fn libfaketime() -> String {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} is missing: install Debian's faketime package (apt-get install faketime; \
         .ci/run does)"
    );
    lib.to_string()
}

/// Runs `lake`'s commands with a wall clock `shift` off (`+3h`, `-3h`): what a machine with a
/// wrong clock has. Its monotonic clock, which timers run on, keeps time.
fn shift_clock(lake: &mut Lake, shift: &str) {
    lake.env.push(("LD_PRELOAD".into(), libfaketime()));
    lake.env.push(("FAKETIME".into(), shift.into()));
    lake.env
        .push(("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()));
}

/// Undoes [`shift_clock`].
fn right_clock(lake: &mut Lake) {
    lake.env
        .retain(|(k, _)| !k.starts_with("FAKETIME") && k != "LD_PRELOAD");
}

#[tokio::test]
async fn a_clock_set_back_still_lets_the_rows_fetched_last_win() {
    // Enough jobs that the last day (what the later run asks for again) holds some.
    let sim = Sim::start(&["--rows", "1000"]).await;
    let mut lake = Lake::new(&sim);
    // A run on a machine whose clock is three hours ahead...
    shift_clock(&mut lake, "+3h");
    lake.refresh_ok(&["--source", "jobs"]).await;
    let ahead = lake.query("SELECT max(run_id) AS r FROM runs").await[0]["r"]
        .as_str()
        .unwrap()
        .to_string();
    let three_hours_on = chrono::Utc::now() + chrono::Duration::minutes(170);
    assert!(
        ahead > joblake_writer::layout::run_id(three_hours_on),
        "{ahead}"
    );
    // ... then one with the right clock, three hours behind it (a clock set back, or a
    // second machine sharing the lake).
    right_clock(&mut lake);
    lake.refresh_ok(&["--source", "jobs"]).await;
    let runs: Vec<String> = lake
        .query("SELECT DISTINCT run_id FROM runs ORDER BY run_id")
        .await
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs[0], ahead,
        "the later run sorts after the one before it: {runs:?}"
    );
    let last = &runs[1];
    // Every id the later run fetched again shows the version it fetched.
    let again = lake
        .count(&format!(
            "SELECT count(DISTINCT id) FROM jobs_history WHERE _run_id = '{last}' \
             AND id IN (SELECT id FROM jobs_history WHERE _run_id = '{ahead}')"
        ))
        .await;
    assert!(again > 0, "the later run fetched no id again");
    let stale = lake
        .count(&format!(
            "SELECT count(*) FROM jobs WHERE id IN \
             (SELECT id FROM jobs_history WHERE _run_id = '{last}') AND _run_id <> '{last}'"
        ))
        .await;
    assert_eq!(stale, 0, "ids show a version fetched before the last");
    edge(
        "a run whose clock is three hours behind the run before it (a clock set back, or two \
         machines with skewed clocks sharing an S3 lake)",
        "`refresh` under `faketime +3h`, then `refresh` with the right clock",
        &format!(
            "the later run's id sorts after the earlier one's (a millisecond after it), so \
             the {again} ids it fetched again show its versions: fetched last wins"
        ),
    );
}

#[tokio::test]
async fn a_clock_ahead_or_behind_never_skips_a_change() {
    let mut outcomes = Vec::new();
    for shift in ["+3h", "-3h"] {
        let sim = Sim::start(&["--rows", "200"]).await;
        let mut lake = Lake::new(&sim);
        // Two runs on a machine whose clock is three hours off, an hour of the API's
        // changes after each, then a run with the right clock.
        shift_clock(&mut lake, shift);
        lake.refresh_ok(&["--source", "career_sites"]).await;
        sim.advance(1).await;
        lake.refresh_ok(&["--source", "career_sites"]).await;
        sim.advance(1).await;
        right_clock(&mut lake);
        lake.refresh_ok(&["--source", "career_sites"]).await;
        let truth = lake.truth(&sim, joblake_schema::Table::CareerSites).await;
        crate::harness::assert_same(&lake.view("career_sites").await, &truth, shift);
        outcomes.push(format!("{shift}: all {} career sites", truth.len()));
    }
    edge(
        "a machine whose clock is three hours ahead of the API's, or behind it",
        "two `refresh --source career_sites` under `faketime +3h` (and `-3h`), an hour of \
         the API's changes after each, then one with the right clock",
        &format!(
            "the watermark is the newest `updated_at` the API sent, not the local clock: no \
             change skipped ({})",
            outcomes.join("; ")
        ),
    );
}
