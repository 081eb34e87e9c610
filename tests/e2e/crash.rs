//! Crash anywhere: `joblake` killed (SIGKILL, as `kill -9`) at named moments spread over
//! fetching, staging, encoding, writing, committing, the views, recovery, a backfill's plan,
//! compaction, enrichment and upgrading a lake to Delta, then run again. After every kill the
//! lake still reads; after the rerun nothing is lost, nothing is doubled, and at most the page
//! in flight was paid again.

use std::os::unix::process::ExitStatusExt;

use joblake_testkit::Moto;
use serde_json::Value;

use super::assert_views_match_truth;
use super::backfill::{assert_each_window_loaded_once, data_windows};
use crate::harness::{
    Lake, Sim, assert_no_keys, assert_same, bucket_objects, py_env, refetched, reliability_section,
};

/// What a crash interrupts, and which command passes the moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Cmd {
    Refresh,
    /// A refresh whose previous run was killed after staging pages, so it recovers them.
    Recover,
    Backfill,
    Compact,
    /// A second refresh (career sites), which keeps the latest table exact: an earlier
    /// run's ids came again.
    Latest,
    /// A second refresh of jobs, which merges its run into the lifecycle table, run again as a
    /// refresh of career sites (which keeps every derived table exact too): a jobs refresh
    /// repeats the day before's pages by design, which would count as paid again.
    LatestJobs,
    /// `enrich companies` after a refresh: the enrichment loop killed, then run again.
    Enrich,
    /// A refresh, then one killed, then `compact` (which must first commit what the killed
    /// run left, or merge its published files away for the next refresh to write again),
    /// then a refresh.
    CompactAfterKill,
    /// A refresh of a lake written before its tables were Delta tables, which registers
    /// each table's files in a new Delta log first.
    Upgrade,
    /// A first refresh (career sites) whose scan the API restarted on its second page (409
    /// restart required), so the run's file holds its first page twice: the latest table
    /// copies that file, then deletes its older rows in a second commit.
    LatestRepeat,
}

impl Cmd {
    /// What the simulator serves beyond its rows.
    fn faults(self) -> &'static [&'static str] {
        match self {
            Cmd::LatestRepeat => &["--faults", "jobo:restart@2"],
            _ => &[],
        }
    }
}

/// (moment, phase, command): `point[:n]` is the n-th pass through the point. Two matrices, each
/// a test of its own so that they run side by side: a run's moments (fetching to its views,
/// recovery, a backfill's plan, the latest table it keeps) and the upkeep's (compaction,
/// enrichment, upgrading a lake to Delta).
const RUN_MOMENTS: &[(&str, &str, Cmd)] = &[
    ("fetch:after-page:3", "fetching", Cmd::Refresh),
    ("stage:before:4", "staging", Cmd::Refresh),
    ("stage:after:5", "staging", Cmd::Refresh),
    ("ledger:after-running", "staging", Cmd::Refresh),
    ("append:after-decode:6", "encoding", Cmd::Refresh),
    ("append:after-write:7", "encoding", Cmd::Refresh),
    ("publish:after-close", "writing", Cmd::Refresh),
    ("publish:after-rename", "writing", Cmd::Refresh),
    ("commit:after-publish", "committing", Cmd::Refresh),
    ("commit:after-state", "committing", Cmd::Refresh),
    ("run:after-commit", "committing", Cmd::Refresh),
    ("ledger:before-final", "committing", Cmd::Refresh),
    ("latest:before-commit", "views", Cmd::Latest),
    ("latest:between-commits", "views", Cmd::LatestRepeat),
    ("latest:after-commit", "views", Cmd::Latest),
    ("changes:before-commit", "views", Cmd::Latest),
    ("changes:after-commit", "views", Cmd::Latest),
    ("lifecycle:before-commit", "views", Cmd::LatestJobs),
    ("lifecycle:after-commit", "views", Cmd::LatestJobs),
    ("job_companies:before-commit", "views", Cmd::LatestJobs),
    ("job_companies:after-commit", "views", Cmd::LatestJobs),
    ("views:before", "views", Cmd::Refresh),
    ("views:before-rename", "views", Cmd::Refresh),
    ("views:after", "views", Cmd::Refresh),
    ("recover:after-page", "recovery", Cmd::Recover),
    ("backfill:after-plan", "backfill plan", Cmd::Backfill),
];

const UPKEEP_MOMENTS: &[(&str, &str, Cmd)] = &[
    ("compact:after-manifest", "compaction", Cmd::Compact),
    ("compact:after-outputs", "compaction", Cmd::Compact),
    ("compact:after-commit", "compaction", Cmd::Compact),
    ("compact:after-inputs", "compaction", Cmd::Compact),
    ("latest:before-commit", "compaction", Cmd::Compact),
    ("latest:after-commit", "compaction", Cmd::Compact),
    ("changes:before-commit", "compaction", Cmd::Compact),
    ("changes:after-commit", "compaction", Cmd::Compact),
    ("lifecycle:before-commit", "compaction", Cmd::Compact),
    ("lifecycle:after-commit", "compaction", Cmd::Compact),
    ("job_companies:before-commit", "compaction", Cmd::Compact),
    ("job_companies:after-commit", "compaction", Cmd::Compact),
    ("fetch:after-page:3", "enrichment", Cmd::Enrich),
    ("stage:after:5", "enrichment", Cmd::Enrich),
    ("append:after-write:4", "enrichment", Cmd::Enrich),
    ("commit:after-publish", "enrichment", Cmd::Enrich),
    ("run:after-commit", "enrichment", Cmd::Enrich),
    ("ledger:before-final", "enrichment", Cmd::Enrich),
    ("views:before", "enrichment", Cmd::Enrich),
    (
        "commit:after-publish",
        "compact after a kill",
        Cmd::CompactAfterKill,
    ),
    (
        "ledger:after-running",
        "compact after a kill",
        Cmd::CompactAfterKill,
    ),
    ("upgrade:before-commit", "upgrade to Delta", Cmd::Upgrade),
    ("upgrade:after-commit", "upgrade to Delta", Cmd::Upgrade),
    ("commit:after-publish", "upgrade to Delta", Cmd::Upgrade),
];

/// The moments after whose rerun every Delta reader (delta-rs, polars, DuckDB's `delta_scan`,
/// Sail) reads the history and latest tables as the views do: one per kind of commit a kill
/// can interrupt (a run's, the latest table's two, a compaction's, an upgrade's). Each
/// reader takes seconds to start, too long for every moment.
const DELTA_READERS_AFTER: &[(&str, Cmd)] = &[
    ("commit:after-publish", Cmd::Refresh),
    ("latest:between-commits", Cmd::LatestRepeat),
    ("compact:after-commit", Cmd::Compact),
    ("commit:after-publish", Cmd::CompactAfterKill),
    ("upgrade:after-commit", Cmd::Upgrade),
];

const SMALL_PAGES: &str = "[career_sites]\npage_size = 10\nrequests_per_minute = 0\n\
                           [jobs]\npage_size = 10\nrequests_per_minute = 0\n";

fn since() -> String {
    (chrono::Utc::now().date_naive() - chrono::Days::new(40)).to_string()
}

/// Runs `args` with the crash armed; insists the process was killed there.
async fn killed(lake: &Lake, args: &[&str], moment: &str) {
    let mut cmd = lake.command(args);
    cmd.env("JOBLAKE_CRASH_AT", moment);
    let out = cmd.output().await.unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{moment}: the run was not killed there ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stock DuckDB opens the views file (if there is one yet) and reads every view.
async fn readable(lake: &Lake) -> bool {
    let db = match &lake.s3 {
        Some(_) => lake.dir.path().join("lake.duckdb"),
        None => lake.root().join("lake.duckdb"),
    };
    if !db.exists() {
        return true;
    }
    let dir = py_env("JOBLAKE_PY_DUCKDB").pop().unwrap();
    // An S3 lake's views need httpfs, which the stock DuckDB cannot fetch here; joblake's own
    // engine (the same file, read-only) stands in for it.
    if lake.s3.is_some() {
        return lake
            .run(&["query", "SELECT count(*) FROM jobs_history"])
            .await
            .code()
            == Some(0);
    }
    let script = "import duckdb, sys\n\
                  c = duckdb.connect(sys.argv[1], read_only=True)\n\
                  for v in ('career_sites', 'jobs', 'career_sites_history', 'jobs_history', 'runs'):\n\
                  \x20   c.sql(f'SELECT count(*) FROM {v}').fetchall()\n";
    let out = tokio::process::Command::new(joblake_testkit::python())
        .env("PYTHONPATH", dir)
        .args(["-c", script])
        .arg(&db)
        .output()
        .await
        .unwrap();
    out.status.success()
}

/// Versions stored twice in the histories of `tables`, in one query.
async fn doubled(lake: &Lake, tables: &[&str]) -> i64 {
    let each: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "(SELECT count(*) - count(DISTINCT (id, _run_id, _page, _row)) FROM {t}_history)"
            )
        })
        .collect();
    lake.count(&format!("SELECT {}", each.join(" + "))).await
}

/// Paid pages fetched more than once in `log`, per API (Jobo, Sentrion).
fn refetches(log: &[Value]) -> [usize; 2] {
    ["jobo", "sentrion"].map(|api| {
        let again = refetched(log, api);
        again.values().sum::<usize>() - again.len()
    })
}

/// The `companies` view equals the simulator's profile of every career site listing one.
async fn assert_profiles_match_truth(lake: &Lake, sim: &Sim) {
    let ids: std::collections::BTreeSet<String> = lake
        .query("SELECT id FROM career_sites WHERE details_url IS NOT NULL")
        .await
        .into_iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let mut truth = lake.truth(sim, joblake_schema::Table::Companies).await;
    truth.retain(|id, _| ids.contains(id));
    assert!(!truth.is_empty());
    assert_same(&lake.view("companies").await, &truth, "companies");
}

/// Company profiles served (200) more than once in `log`.
fn profiles_paid_again(log: &[Value]) -> usize {
    let mut served: std::collections::BTreeMap<String, usize> = Default::default();
    for e in log
        .iter()
        .filter(|e| e["api"] == "companies" && e["status"] == 200)
    {
        *served
            .entry(e["params"]["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    served.values().map(|n| n - 1).sum()
}

struct Outcome {
    readable: bool,
    /// Whether the Delta readers were compared with the views after the rerun.
    delta_readers: bool,
    doubled: i64,
    refetched: [usize; 2],
}

/// The settings every command of a moment runs with.
fn configure(lake: &mut Lake, cmd: Cmd) {
    if cmd == Cmd::Backfill {
        // Pages of 20, apart from the plan's questions of 10.
        lake.set_config(
            "[jobs]\npage_size = 20\nrequests_per_minute = 0\nbackfill_window_rows = 40\n",
        );
    } else {
        // Profiles one at a time: at most one in flight at a kill.
        lake.set_config(&format!("{SMALL_PAGES}[companies]\nconcurrency = 1\n"));
    }
}

/// What runs before the killed command: the same for every moment of a kind.
async fn set_up(lake: &Lake, sim: &Sim, cmd: Cmd) {
    match cmd {
        Cmd::Refresh | Cmd::Backfill | Cmd::LatestRepeat => {}
        Cmd::Recover => killed(lake, &["refresh"], "stage:after:8").await,
        // Two runs' files in today's partitions for CompactAfterKill, so that compact has
        // files to merge.
        Cmd::Latest | Cmd::LatestJobs | Cmd::CompactAfterKill => {
            lake.refresh_ok(&[]).await;
            sim.advance(3).await;
        }
        Cmd::Compact => {
            lake.refresh_ok(&[]).await;
            sim.advance(3).await;
            lake.refresh_ok(&[]).await;
        }
        Cmd::Enrich => {
            lake.refresh_ok(&[]).await;
        }
        Cmd::Upgrade => {
            lake.refresh_ok(&[]).await;
            make_legacy(lake).await;
            sim.advance(3).await;
        }
    }
}

/// Kills the moment's command at `moment` after [`set_up`], runs it again, and checks the
/// lake. `paid` is what the simulator served before the moment's own requests, which start
/// at `from` in its log (a kind's set-up is made once, see [`Prepared`]).
async fn crash_once(
    lake: &mut Lake,
    sim: &Sim,
    moment: &str,
    cmd: Cmd,
    paid: &[Value],
    from: usize,
) -> Outcome {
    let log = async || [paid, &sim.log().await[from..]].concat();
    let since = since();
    let backfill = ["backfill", "--source", "jobs", "--since", since.as_str()];
    match cmd {
        Cmd::Refresh | Cmd::Recover => killed(lake, &["refresh"], moment).await,
        Cmd::Backfill => killed(lake, &backfill, moment).await,
        // Career sites only: the rerun then asks both APIs for what it would have anyway (a
        // jobs refresh repeats the day before's pages by design, which would count as paid
        // again).
        Cmd::Latest | Cmd::Upgrade | Cmd::LatestRepeat => {
            killed(lake, &["refresh", "--source", "career_sites"], moment).await;
        }
        Cmd::LatestJobs => killed(lake, &["refresh", "--source", "jobs"], moment).await,
        Cmd::Compact => killed(lake, &["compact"], moment).await,
        Cmd::Enrich => killed(lake, &["enrich", "companies"], moment).await,
        Cmd::CompactAfterKill => {
            killed(lake, &["refresh", "--source", "career_sites"], moment).await;
            lake.run(&["compact"]).await.assert_code(0);
        }
    }
    // Pages the killed command itself fetched twice, by the API's own restart, are not the
    // kill's doing.
    let by_the_api = match cmd {
        Cmd::LatestRepeat => refetches(&log().await),
        _ => [0, 0],
    };
    assert!(
        cmd != Cmd::LatestRepeat || by_the_api[0] > 0,
        "{moment}: no page came twice"
    );
    let readable = readable(lake).await;
    match cmd {
        Cmd::Backfill => lake.run(&backfill).await.assert_code(0),
        Cmd::Compact => lake.run(&["compact"]).await.assert_code(0),
        Cmd::Enrich => lake.run(&["enrich", "companies"]).await.assert_code(0),
        Cmd::LatestJobs => {
            lake.refresh_ok(&["--source", "career_sites"]).await;
        }
        Cmd::Refresh
        | Cmd::Recover
        | Cmd::Latest
        | Cmd::CompactAfterKill
        | Cmd::Upgrade
        | Cmd::LatestRepeat => {
            lake.refresh_ok(&[]).await;
        }
    }
    if cmd == Cmd::Backfill {
        // Each window's jobs exactly once (a job re-posted in two windows is two versions).
        let windows = data_windows(&log().await, 20);
        assert!(!windows.is_empty());
        assert_each_window_loaded_once(lake, sim, &windows).await;
    } else {
        assert_views_match_truth(lake, sim).await;
    }
    let delta_readers = DELTA_READERS_AFTER
        .iter()
        .any(|&(m, c)| m == moment && c == cmd);
    if delta_readers {
        crate::assert_delta_readers_match_views(lake, &lake.url(), &lake.env).await;
    }
    let log = log().await;
    let mut refetched = refetches(&log);
    for (n, api) in refetched.iter_mut().zip(by_the_api) {
        *n -= api;
    }
    let histories: &[&str] = match cmd {
        Cmd::Enrich => &["jobs", "career_sites", "companies"],
        _ => &["jobs", "career_sites"],
    };
    let doubled_versions = doubled(lake, histories).await;
    if cmd == Cmd::Enrich {
        assert_profiles_match_truth(lake, sim).await;
        refetched[0] += profiles_paid_again(&log);
    }
    assert_no_keys(lake, sim, &[]).await;
    // The changes tables after a kill while they were kept, or (on a local lake: the S3 code
    // is the same, and each check there costs seconds of requests) while the history's files
    // moved under them (recovery, compaction, an upgrade): exactly what the SQL works out.
    if moment.starts_with("changes:")
        || moment.starts_with("lifecycle:")
        || moment.starts_with("job_companies:")
        || (lake.s3.is_none()
            && matches!(
                cmd,
                Cmd::Compact | Cmd::CompactAfterKill | Cmd::Recover | Cmd::Upgrade
            ))
    {
        crate::analysts::assert_changes_tables_exact(lake).await;
    }
    Outcome {
        readable,
        delta_readers,
        doubled: doubled_versions,
        refetched,
    }
}

/// Turns `lake` into what joblake wrote before its tables were Delta tables: each table's
/// checkpoint in `_joblake/state/<table>.json` (as its Delta log's domain metadata holds it),
/// and no Delta log.
async fn make_legacy(lake: &Lake) {
    use object_store::path::Path;
    let store = match &lake.s3 {
        None => joblake_writer::Lake::open(lake.root().to_str().unwrap(), false).unwrap(),
        Some(s3) => {
            let mut builder = object_store::aws::AmazonS3Builder::new();
            for (k, v) in joblake_testkit::aws_env(&s3.endpoint) {
                builder = builder.with_config(k.to_lowercase().parse().unwrap(), v);
            }
            joblake_writer::Lake::open_s3(builder, &s3.bucket, "team/lake").unwrap()
        }
    };
    for table in ["career_sites", "jobs", "companies"] {
        let mut commits = store
            .list(&Path::from(format!("{table}/_delta_log")))
            .await
            .unwrap();
        commits.sort_by(|a, b| a.location.cmp(&b.location));
        let mut state = None;
        for meta in &commits {
            if !meta.location.as_ref().ends_with(".json") {
                continue;
            }
            let bytes = store.get_opt(&meta.location).await.unwrap().unwrap();
            for line in String::from_utf8_lossy(&bytes).lines() {
                let action: serde_json::Value = serde_json::from_str(line).unwrap();
                let dm = &action["domainMetadata"];
                if dm["domain"] == "joblake.state" {
                    state = dm["configuration"].as_str().map(str::to_string);
                }
            }
        }
        if let Some(state) = state {
            let path = Path::from(format!("_joblake/state/{table}.json"));
            store.put(&path, state.into_bytes().into()).await.unwrap();
        }
        store
            .delete_all(commits.into_iter().map(|m| m.location).collect())
            .await
            .unwrap();
    }
}

/// Moments run on a local lake alone: the lifecycle and job_company_keys tables commit
/// through the same code as the changes tables (`DeltaLog` over the lake's object store),
/// whose moments run on S3 too, and each S3 moment costs seconds of requests; e2e
/// `compact_on_an_s3_lake_...` checks both tables on S3.
const LOCAL_ONLY: &[&str] = &["lifecycle:", "job_companies:"];

/// The simulator's arguments for a moment of `cmd`.
fn sim_args(cmd: Cmd) -> Vec<&'static str> {
    [&["--rows", "300", "--history-days", "60"][..], cmd.faults()].concat()
}

/// A fresh lake on `backend` pointed at `sim`, named after `hint` on S3.
fn fresh_lake(backend: &str, sim: &Sim, hint: &str) -> Lake {
    match backend {
        "S3" => {
            let moto = Moto::shared();
            Lake::on_s3(sim, &moto.endpoint, &moto.bucket(hint))
        }
        _ => Lake::new(sim),
    }
}

/// A kind of moment's set-up, made once and shared by its moments: its simulator, and its lake
/// as [`set_up`] left it, which [`Prepared::restore`] puts back, byte for byte and at the
/// same place (a local lake's DuckDB file names its files by their paths), before each moment.
/// The simulator's world stays the same (it only moves when told to), so each moment starts
/// where a fresh simulator and a fresh lake would after the set-up; what the set-up was
/// served is kept, and a moment's own requests are read from the log past it, so that pages
/// paid twice count as they would.
struct Prepared {
    sim: Sim,
    lake: Lake,
    /// What the set-up was served.
    paid: Vec<Value>,
    /// The lake's working directory as the set-up left it (a local lake, or an S3 lake's
    /// DuckDB file).
    copy: tempfile::TempDir,
    /// An S3 lake's objects as the set-up left them, in a bucket of their own.
    bucket_copy: Option<String>,
}

impl Prepared {
    async fn make(backend: &str, cmd: Cmd) -> Prepared {
        let sim = Sim::start(&sim_args(cmd)).await;
        let mut lake = fresh_lake(backend, &sim, &format!("set-up-{cmd:?}"));
        configure(&mut lake, cmd);
        set_up(&lake, &sim, cmd).await;
        let paid = sim.log().await;
        let copy = tempfile::tempdir().unwrap();
        copy_dir(lake.dir.path(), copy.path());
        let bucket_copy = match &lake.s3 {
            Some(s3) => {
                let moto = Moto::shared();
                let to = moto.bucket(&format!("copy-{cmd:?}"));
                copy_bucket(&s3.endpoint, &s3.bucket, &to).await;
                Some(to)
            }
            None => None,
        };
        Prepared {
            sim,
            lake,
            paid,
            copy,
            bucket_copy,
        }
    }

    /// Puts the lake back as the set-up left it.
    async fn restore(&self) {
        let dir = self.lake.dir.path();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        copy_dir(self.copy.path(), dir);
        if let (Some(s3), Some(from)) = (&self.lake.s3, &self.bucket_copy) {
            copy_bucket(&s3.endpoint, from, &s3.bucket).await;
        }
    }
}

/// Copies the files under `from` into `to`, as they are (`cp -a`).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Makes bucket `to` hold exactly what bucket `from` holds.
async fn copy_bucket(endpoint: &str, from: &str, to: &str) {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let target = joblake_testkit::s3_builder(endpoint)
        .with_bucket_name(to)
        .build()
        .unwrap();
    let stale: Vec<_> = target.list(None).try_collect().await.unwrap();
    for meta in stale {
        target.delete(&meta.location).await.unwrap();
    }
    for (location, bytes) in bucket_objects(endpoint, from).await {
        target.put(&location, bytes.into()).await.unwrap();
    }
}

async fn matrix(backend: &str, moments: &[(&str, &str, Cmd)]) -> String {
    let mut rows = String::new();
    let moments: Vec<_> = moments
        .iter()
        .filter(|(m, ..)| backend != "S3" || !LOCAL_ONLY.iter().any(|p| m.starts_with(p)))
        .collect();
    // A set-up is shared by the moments of its kind when there are several and it kills
    // nothing (Recover's kills a run); the rest start from a fresh simulator and lake.
    let shared = |cmd: Cmd| {
        !matches!(
            cmd,
            Cmd::Refresh | Cmd::Backfill | Cmd::LatestRepeat | Cmd::Recover
        ) && moments.iter().filter(|(.., c)| *c == cmd).count() > 1
    };
    let mut prepared: std::collections::HashMap<Cmd, Prepared> = Default::default();
    for &&(moment, phase, cmd) in &moments {
        let mut own = None;
        let (lake, sim, paid, from) = if shared(cmd) {
            let p = match prepared.entry(cmd) {
                std::collections::hash_map::Entry::Occupied(p) => {
                    let p = p.into_mut();
                    p.restore().await;
                    p
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Prepared::make(backend, cmd).await)
                }
            };
            let from = p.sim.log().await.len();
            (&mut p.lake, &p.sim, p.paid.as_slice(), from)
        } else {
            let sim = Sim::start(&sim_args(cmd)).await;
            let mut lake = fresh_lake(backend, &sim, moment);
            configure(&mut lake, cmd);
            set_up(&lake, &sim, cmd).await;
            let (sim, lake) = own.insert((sim, lake));
            (lake, &*sim, &[][..], 0)
        };
        let crashes = if cmd == Cmd::Recover { 2 } else { 1 };
        let o = crash_once(lake, sim, moment, cmd, paid, from).await;
        assert!(
            o.readable,
            "{backend} {moment}: the lake did not read after the kill"
        );
        assert_eq!(
            o.doubled, 0,
            "{backend} {moment}: a version was stored twice"
        );
        // At most the page in flight per API per kill (the two sources run side by side).
        assert!(
            o.refetched.iter().all(|n| *n <= crashes),
            "{backend} {moment}: {:?} pages paid again after {crashes} kills",
            o.refetched
        );
        rows.push_str(&format!(
            "| `{moment}` | {phase} | {crashes} | yes | 0 | {} | {} | {} | {} |\n",
            o.doubled,
            o.refetched[0],
            o.refetched[1],
            if o.delta_readers {
                "same as the views"
            } else {
                ""
            }
        ));
    }
    rows
}

fn section(title: &str, rows: &str) -> String {
    format!(
        "## Crash anywhere: {title}\n\n\
         Each moment starts from a fresh simulator (300 rows per API, 10-row pages) and a \
         fresh lake, run through the commands its killed command follows (one or two \
         refreshes, say); moments of one kind share that set-up, made once and put back byte \
         for byte before each of them. `JOBLAKE_CRASH_AT=<moment>` makes the process SIGKILL \
         itself there (`point:n` is the n-th pass), then the same command runs again to the \
         end. *Lost* compares the views with the simulator's truth row by row; *doubled* \
         counts versions stored twice; *re-fetched* counts paid pages served twice \
         (`/_sim/log`, the set-up's requests and the moment's own) per API (company profiles, \
         fetched one at a time here, count as Jobo's), less those the API's own restart had \
         the killed command fetch twice (`latest:between-commits`); the two sources run side \
         by side, so each may have its page in flight at a kill. *Delta readers*: after the \
         rerun, DuckDB's `delta_scan`, delta-rs, polars and Sail (Spark Connect) read every \
         history and latest table with the views' rows, row by row (one moment per kind of \
         commit: each reader takes seconds to start).\n\n\
         | moment | phase | kills | lake read after the kill | rows lost | versions doubled | pages re-fetched: Jobo | pages re-fetched: Sentrion | Delta readers |\n\
         |---|---|---|---|---|---|---|---|---|\n{rows}"
    )
}

/// Runs `moments` on a `backend` lake and writes them as RELIABILITY.md's section `name`.
async fn crash_matrix(backend: &str, moments: &[(&str, &str, Cmd)], name: &str, title: &str) {
    let rows = matrix(backend, moments).await;
    reliability_section(name, &section(title, &rows));
}

#[tokio::test]
async fn crash_anywhere_in_a_run_on_a_local_lake_loses_nothing_and_doubles_nothing() {
    crash_matrix("local", RUN_MOMENTS, "crash-local", "a run on a local lake").await;
}

#[tokio::test]
async fn crash_anywhere_in_upkeep_on_a_local_lake_loses_nothing_and_doubles_nothing() {
    let title = "compaction, enrichment and upgrade on a local lake";
    crash_matrix("local", UPKEEP_MOMENTS, "crash-local-upkeep", title).await;
}

#[tokio::test]
async fn crash_anywhere_in_a_run_on_an_s3_lake_loses_nothing_and_doubles_nothing() {
    crash_matrix("S3", RUN_MOMENTS, "crash-s3", "a run on an S3 lake").await;
}

#[tokio::test]
async fn crash_anywhere_in_upkeep_on_an_s3_lake_loses_nothing_and_doubles_nothing() {
    let title = "compaction, enrichment and upgrade on an S3 lake";
    crash_matrix("S3", UPKEEP_MOMENTS, "crash-s3-upkeep", title).await;
}
