//! Local faults: a disk that fills up mid-write, a read-only lake, a corrupt Delta commit, a
//! lock left by a dead process, a lake path full of quotes; and no key anywhere after any of
//! them.

use serde_json::Value;

use super::assert_views_match_truth;
use crate::harness::{Lake, Run, Sim, assert_no_keys, refetched, reliability_section};

const CONFIG: &str = "[career_sites]\npage_size = 20\nrequests_per_minute = 0\n\
                      [jobs]\npage_size = 20\nrequests_per_minute = 0\n";

/// A lake on the build's own disk (so `chattr` works, whatever `/tmp` is).
fn lake_on_disk(sim: &Sim) -> Lake {
    let mut lake = Lake::new(sim);
    lake.dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    lake.set_config(CONFIG);
    lake
}

fn outputs(runs: &[&Run]) -> Vec<String> {
    runs.iter().map(|r| r.stdout() + &r.stderr()).collect()
}

async fn disk_full() -> String {
    let sim = Sim::start(&["--rows", "1000"]).await;
    let lake = lake_on_disk(&sim);
    // No file may grow past 200 kB: the run's staging log reaches it a few pages in.
    let mut cmd = lake.command(&["--json", "refresh"]);
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 200_000,
                rlim_max: 200_000,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().await.unwrap();
    let first = Run(std::sync::Arc::new(out));
    first.assert_code(1);
    assert!(
        first.stderr().contains("File too large"),
        "{}",
        first.stderr()
    );
    // The views could not be rebuilt under the limit either; status reads the lake itself.
    let status = lake.run(&["status", "--json"]).await;
    status.assert_code(0);
    let status: Value = serde_json::from_str(&status.stdout()).unwrap();
    let committed = status["tables"][1]["rows"].as_i64().unwrap();
    assert_eq!(status["tables"][1]["table"], "jobs");
    assert!(
        committed > 0,
        "the pages before the full disk are committed"
    );
    let second = lake.run(&["--json", "refresh"]).await;
    second.assert_code(0);
    assert_views_match_truth(&lake, &sim).await;
    let log = sim.log().await;
    let again: usize = ["jobo", "sentrion"]
        .iter()
        .map(|api| {
            let r = refetched(&log, api);
            r.values().sum::<usize>() - r.len()
        })
        .sum();
    assert!(again <= 2, "{again} pages paid again");
    let (files, bytes) = assert_no_keys(&lake, &sim, &outputs(&[&first, &second])).await;
    format!(
        "| disk full mid-write (`RLIMIT_FSIZE` 200 kB) | exit 1, \"File too large\" naming the file; \
         {committed} jobs committed before it | finished, views = truth, {again} pages paid again | {files} files, {bytes} bytes: 0 keys |\n"
    )
}

async fn read_only() -> String {
    let sim = Sim::start(&["--rows", "100"]).await;
    let lake = lake_on_disk(&sim);
    lake.refresh_ok(&[]).await;
    sim.advance(2).await;
    let before = lake.files();
    let chattr = |flag: &str| {
        let ok = std::process::Command::new("chattr")
            .args(["-R", flag])
            .arg(lake.root())
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "chattr {flag} failed: the read-only test needs an ext4-like disk"
        );
    };
    chattr("+i");
    let first = lake.run(&["refresh"]).await;
    chattr("-i");
    assert_ne!(first.code(), Some(0));
    assert!(
        first.stderr().contains(&lake.root().display().to_string()),
        "the message names the lake: {}",
        first.stderr()
    );
    assert!(lake.files() == before, "a read-only lake changed");
    let second = lake.run(&["--json", "refresh"]).await;
    second.assert_code(0);
    assert_views_match_truth(&lake, &sim).await;
    let (files, bytes) = assert_no_keys(&lake, &sim, &outputs(&[&first, &second])).await;
    format!(
        "| read-only lake (`chattr +i`) | exit {}, the message names the lake; not a byte changed | \
         finished once writable, views = truth | {files} files, {bytes} bytes: 0 keys |\n",
        first.code().unwrap_or(-1)
    )
}

async fn corrupt_state() -> String {
    let sim = Sim::start(&["--rows", "100"]).await;
    let lake = lake_on_disk(&sim);
    lake.refresh_ok(&[]).await;
    lake.refresh_ok(&[]).await;
    // The newest commit of jobs' Delta log (where its checkpoint lives), cut short: a disk
    // fault, or a hand edit.
    let log = lake.root().join("jobs/_delta_log");
    let mut commits: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    let newest = commits.pop().expect("jobs has a Delta log");
    let whole = std::fs::read(&newest).unwrap();
    let cut = &whole[..whole.len() / 2];
    std::fs::write(&newest, cut).unwrap();
    let first = lake.run(&["--json", "refresh"]).await;
    first.assert_code(1);
    assert!(
        first.stderr().contains("jobs/_delta_log") && first.stderr().contains("moved aside"),
        "{}",
        first.stderr()
    );
    assert_eq!(
        std::fs::read(&newest).unwrap(),
        cut,
        "the corrupt commit is left for inspection"
    );
    // As the message says: move it aside; the next run fetches its rows again.
    std::fs::rename(&newest, lake.root().join("corrupt-commit.json")).unwrap();
    let second = lake.run(&["--json", "refresh"]).await;
    second.assert_code(0);
    assert_views_match_truth(&lake, &sim).await;
    let (files, bytes) = assert_no_keys(&lake, &sim, &outputs(&[&first, &second])).await;
    format!(
        "| corrupt Delta commit (jobs' newest, cut short) | jobs: exit 1, names its `_delta_log` \
         and says to move the commit aside; career sites went on | after moving it aside: \
         finished, views = truth | {files} files, {bytes} bytes: 0 keys |\n"
    )
}

async fn leftover_lock() -> String {
    let sim = Sim::start(&["--rows", "100"]).await;
    let lake = lake_on_disk(&sim);
    std::fs::create_dir_all(lake.root().join("_joblake")).unwrap();
    std::fs::write(
        lake.root().join("_joblake/lock"),
        "joblake refresh, pid 999999, started 2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    let run = lake.run(&["--json", "refresh"]).await;
    run.assert_code(0);
    assert_views_match_truth(&lake, &sim).await;
    let (files, bytes) = assert_no_keys(&lake, &sim, &outputs(&[&run])).await;
    format!(
        "| lock file left by a dead process | finished: the OS lock died with its holder | — | \
         {files} files, {bytes} bytes: 0 keys |\n"
    )
}

async fn odd_path() -> String {
    let sim = Sim::start(&["--rows", "100"]).await;
    let lake = lake_on_disk(&sim);
    // Quotes, a semicolon and SQL in the lake's path: the views quote every path they hold.
    let odd = lake.dir.path().join("it's \"a\" lake; DROP VIEW jobs; --");
    std::fs::create_dir_all(&odd).unwrap();
    let run = {
        let mut cmd = lake.command(&["--json", "refresh"]);
        cmd.arg("--lake").arg(&odd);
        cmd.output().await.unwrap()
    };
    let run = Run(std::sync::Arc::new(run));
    run.assert_code(0);
    let q = {
        let mut cmd = lake.command(&[
            "query",
            "--format",
            "json",
            "SELECT count(*) AS n FROM jobs",
        ]);
        cmd.arg("--lake").arg(&odd);
        cmd.output().await.unwrap()
    };
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let rows: Value = serde_json::from_slice(&q.stdout).unwrap();
    assert!(rows[0]["n"].as_i64().unwrap() > 0);
    for entry in walk(&odd) {
        assert!(
            entry.starts_with(&odd),
            "{} is outside the lake",
            entry.display()
        );
    }
    "| a lake path with quotes, `;` and SQL in it | finished; the views read it (every path is a \
     quoted literal) | — | every file written under the lake |\n"
        .to_string()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test]
async fn local_faults_are_clear_errors_that_commit_nothing_half_way() {
    let mut rows = String::new();
    rows.push_str(&disk_full().await);
    rows.push_str(&read_only().await);
    rows.push_str(&corrupt_state().await);
    rows.push_str(&leftover_lock().await);
    rows.push_str(&odd_path().await);
    reliability_section(
        "local-faults",
        &format!(
            "## Local faults and secrets\n\n\
             Each row is a fresh lake on the build's disk against a fresh simulator; *keys* \
             searches both API keys (unique per test) in the runs' stdout and stderr and in \
             every byte of the lake, the DuckDB file included.\n\n\
             | fault | the faulty run | the next run | keys |\n|---|---|---|---|\n{rows}"
        ),
    );
}

/// Input that can mean nothing: a `--lake` that names a file, and `query` with no statement.
/// Each exits 2 saying what is wrong, and the file is left as it was.
#[tokio::test]
async fn a_file_as_the_lake_and_sql_with_no_statement_are_refused_saying_why() {
    let sim = Sim::start(&["--rows", "10"]).await;
    let lake = Lake::new(&sim);
    let file = lake.dir.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    for args in [&["refresh"][..], &["status"], &["views"], &["compact"]] {
        let mut cmd = lake.command(args);
        cmd.arg("--lake").arg(&file);
        let run = Run(std::sync::Arc::new(cmd.output().await.unwrap()));
        run.assert_code(2);
        assert!(
            run.stderr().contains("is a file, not a lake directory"),
            "{args:?}: {}",
            run.stderr()
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    for sql in ["", " ; ", "/* nothing */"] {
        let run = lake.run(&["query", sql]).await;
        run.assert_code(2);
        assert!(
            run.stderr().contains("no SQL statement given"),
            "{sql:?}: {}",
            run.stderr()
        );
    }
}
