//! What every end-to-end test needs: the real `joblake` binary, a simulator it talks to
//! over loopback, a fresh lake, and the simulator's own ground truth to compare with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use joblake_schema::{PageContext, RawRows, Table, decode_page};
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// The binary under test: this build's, or the one `JOBLAKE_TEST_BIN` names (another build,
/// such as `dist/joblake` or an older commit's, run through the same tests).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("JOBLAKE_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_joblake").to_string())
    })
}

/// The columns the `jobs` view adds to the latest versions (schemas/jobs.md, "Salaries per
/// year"): left out where the view is compared with the history or the API's rows.
pub const JOBS_WORKED_OUT: &str =
    "salary_period, salary_period_basis, salary_annual_from, salary_annual_to";

/// `SELECT *` of a latest-version view without the columns it works out, so that it compares
/// with the history's rows.
pub fn history_columns_of(view: &str) -> String {
    if view == "jobs" {
        format!("* EXCLUDE ({JOBS_WORKED_OUT})")
    } else {
        "*".to_string()
    }
}

/// A key nobody else uses, so a test can search every output and file for it.
pub fn unique_key(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{:x}{:x}SECRET", std::process::id(), nanos)
}

/// `joblake simulate` running as a child process, killed on drop.
pub struct Sim {
    /// Killed on drop.
    _child: Child,
    pub url: String,
    pub jobo_key: String,
    pub sentrion_key: String,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Sim {
    /// Starts a simulator with `extra` arguments (faults, rows, latency...).
    pub async fn start(extra: &[&str]) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let url_file = dir.path().join("url");
        let jobo_key = unique_key("jbe_e2e_");
        let sentrion_key = unique_key("sk_e2e_");
        let child = Command::new(bin())
            .arg("simulate")
            .arg("--url-file")
            .arg(&url_file)
            .args(["--jobo-key", &jobo_key, "--sentrion-key", &sentrion_key])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the simulator starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Ok(u) = std::fs::read_to_string(&url_file) {
                break u.trim().to_string();
            }
            assert!(Instant::now() < deadline, "the simulator never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Sim {
            _child: child,
            url,
            jobo_key,
            sentrion_key,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("the simulator answers");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("admin answers are JSON")
    }

    /// Lets simulated time pass: new and updated rows.
    pub async fn advance(&self, hours: u32) {
        self.admin(
            reqwest::Method::POST,
            &format!("/_sim/advance?hours={hours}"),
            None,
        )
        .await;
    }

    /// Sets balances (`{"jobo": n, "sentrion": n}`) or starts a billing cycle.
    pub async fn set_credits(&self, body: Value) {
        self.admin(
            reqwest::Method::POST,
            "/_sim/credits",
            Some(body.to_string()),
        )
        .await;
    }

    /// Replaces the fault plan (and resets its request counters).
    pub async fn set_faults(&self, spec: &str) {
        self.admin(reqwest::Method::POST, "/_sim/faults", Some(spec.into()))
            .await;
    }

    /// What each job served now really is (`/_sim/truth/job_facts`), by the id joblake derives
    /// for it: `{"job", "company_id", "salary_period", "salary_figures"}`.
    pub async fn job_facts(&self) -> BTreeMap<String, Value> {
        let facts = match self
            .admin(reqwest::Method::GET, "/_sim/truth/job_facts", None)
            .await
        {
            Value::Array(v) => v,
            other => panic!("job facts are not an array: {other}"),
        };
        let rows = raw_rows(facts.iter().map(|f| &f["job"]));
        let ctx = PageContext {
            run_id: "truth".into(),
            fetched_at: chrono::Utc::now(),
            page: 1,
        };
        let decoded = decode_page(Table::Jobs, &rows, &ctx).expect("truth decodes");
        assert!(decoded.rejected.is_empty(), "truth rows rejected");
        let ids = decoded
            .batch
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
            .expect("an id column")
            .clone();
        ids.iter()
            .zip(facts)
            .map(|(id, f)| (id.expect("every job has an id").to_string(), f))
            .collect()
    }

    /// Every API request the simulator has seen.
    pub async fn log(&self) -> Vec<Value> {
        match self.admin(reqwest::Method::GET, "/_sim/log", None).await {
            Value::Array(v) => v,
            other => panic!("log is not an array: {other}"),
        }
    }

    /// The raw rows the table should hold right now, as the API would serve them.
    pub async fn truth_rows(&self, table: Table) -> RawRows {
        let path = truth_path(table);
        let text = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        RawRows::parse_array(text.into()).expect("truth is a JSON array")
    }

    /// The raw rows a filtered request would page through (`body` as the API takes it).
    pub async fn truth_filtered(&self, table: Table, body: &str) -> Vec<Value> {
        assert!(
            table != Table::Companies,
            "company profiles take no filters"
        );
        let path = truth_path(table);
        match self
            .admin(reqwest::Method::POST, path, Some(body.into()))
            .await
        {
            Value::Array(v) => v,
            other => panic!("truth is not an array: {other}"),
        }
    }

    /// The truth decoded exactly as joblake would decode it (so ids are derived the
    /// documented way): every row, or with `body` the rows a request with that body would
    /// page through.
    pub async fn truth(&self, table: Table, body: Option<&str>) -> RecordBatch {
        let rows = match body {
            None => self.truth_rows(table).await,
            Some(b) => raw_rows(self.truth_filtered(table, b).await.iter()),
        };
        let ctx = PageContext {
            run_id: "truth".into(),
            fetched_at: chrono::Utc::now(),
            page: 1,
        };
        let decoded = decode_page(table, &rows, &ctx).expect("truth decodes");
        assert!(decoded.rejected.is_empty(), "truth rows rejected");
        decoded.batch
    }

    /// The log entries of one API (`jobo` or `sentrion`).
    pub async fn requests(&self, api: &str) -> Vec<Value> {
        self.log()
            .await
            .into_iter()
            .filter(|e| e["api"] == api)
            .collect()
    }
}

fn truth_path(table: Table) -> &'static str {
    match table {
        Table::CareerSites => "/_sim/truth/career_sites",
        Table::Jobs => "/_sim/truth/jobs",
        Table::Companies => "/_sim/truth/companies",
    }
}

/// A lake (in a temp directory, or on S3) plus the environment a refresh runs with.
pub struct Lake {
    /// The working directory of every command; a local lake lives in it, as does an S3
    /// lake's DuckDB file.
    pub dir: TempDir,
    pub env: Vec<(String, String)>,
    pub config: Option<PathBuf>,
    /// `s3://bucket/prefix` for a lake on S3.
    pub s3: Option<S3Lake>,
    /// The local lake's directory name, in `dir` (`lake`).
    pub root_name: String,
}

/// Where an S3 lake is and how to reach it.
pub struct S3Lake {
    pub url: String,
    pub endpoint: String,
    pub bucket: String,
    /// The `AWS_SECRET_ACCESS_KEY` the commands run with, unique so it can be searched for.
    pub secret: String,
}

impl Lake {
    /// A fresh lake pointed at `sim` with both keys.
    pub fn new(sim: &Sim) -> Lake {
        Lake::with_keys(sim, Some(&sim.jobo_key), Some(&sim.sentrion_key))
    }

    pub fn with_keys(sim: &Sim, jobo: Option<&str>, sentrion: Option<&str>) -> Lake {
        let mut env = vec![
            ("JOBO_BASE_URL".to_string(), sim.url.clone()),
            ("SENTRION_BASE_URL".to_string(), sim.url.clone()),
        ];
        if let Some(k) = jobo {
            env.push(("JOBO_API_KEY".into(), k.into()));
        }
        if let Some(k) = sentrion {
            env.push(("SENTRION_API_KEY".into(), k.into()));
        }
        Lake {
            dir: tempfile::tempdir().unwrap(),
            env,
            config: None,
            s3: None,
            root_name: "lake".to_string(),
        }
    }

    /// A fresh lake under `s3://<bucket>/team/lake` on a moto server at `endpoint`, with both
    /// keys and the `AWS_*` variables a user would set.
    pub fn on_s3(sim: &Sim, endpoint: &str, bucket: &str) -> Lake {
        let mut lake = Lake::new(sim);
        let secret = unique_key("awsSecret");
        for (k, v) in joblake_testkit::aws_env(endpoint) {
            let v = if k == "AWS_SECRET_ACCESS_KEY" {
                secret.clone()
            } else {
                v
            };
            lake.env.push((k, v));
        }
        lake.s3 = Some(S3Lake {
            url: format!("s3://{bucket}/team/lake"),
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
            secret,
        });
        lake
    }

    /// What `--lake` says.
    pub fn url(&self) -> String {
        match &self.s3 {
            Some(s3) => s3.url.clone(),
            None => self.root().display().to_string(),
        }
    }

    /// The lake directory (it may not exist yet).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join(&self.root_name)
    }

    /// Writes a `joblake.toml` the following commands use.
    pub fn set_config(&mut self, toml: &str) {
        let p = self.dir.path().join("joblake.toml");
        std::fs::write(&p, toml).unwrap();
        self.config = Some(p);
    }

    /// A `joblake` command on this lake, run from an unrelated working directory with only
    /// `PATH` and the lake's own settings: it finds libduckdb.so and httpfs beside itself, as
    /// it does for a user running it directly (no `LD_LIBRARY_PATH`, no extension variable).
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(Path::new(bin()), args)
    }

    /// [`Lake::command`] with another `joblake` binary (an installed copy, say).
    pub fn command_with(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("--lake")
            .arg(self.url());
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.args(args).stdin(Stdio::null());
        c
    }

    /// Runs `joblake <args>` to the end.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with(Path::new(bin()), args).await
    }

    /// [`Lake::run`] with another `joblake` binary.
    pub async fn run_with(&self, program: &Path, args: &[&str]) -> Run {
        let out = self.command_with(program, args).output().await;
        Run(Arc::new(out.expect("joblake runs")))
    }

    /// Runs `joblake refresh --json <args>` and insists that it succeeded.
    pub async fn refresh_ok(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json", "refresh"];
        all.extend_from_slice(args);
        let run = self.run(&all).await;
        run.assert_code(0);
        serde_json::from_slice(&run.0.stdout).expect("--json summary")
    }

    /// `joblake query --format json`, as JSON rows.
    pub async fn query(&self, sql: &str) -> Vec<Value> {
        let run = self.run(&["query", "--format", "json", "--", sql]).await;
        run.assert_code(0);
        match serde_json::from_slice(&run.0.stdout).expect("query prints JSON") {
            Value::Array(rows) => rows,
            other => panic!("not rows: {other}"),
        }
    }

    /// Replaces joblake's own state (`domain`'s domain metadata) in the newest commit of the
    /// local lake's Delta table `table` with one no joblake reads.
    pub fn break_state(&self, table: &str, domain: &str) {
        let log = self.root().join(table).join("_delta_log");
        let newest = std::fs::read_dir(&log)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .max()
            .unwrap();
        let text = std::fs::read_to_string(&newest).unwrap();
        let broken: Vec<String> = text
            .lines()
            .map(|line| {
                let mut action: Value = serde_json::from_str(line).unwrap();
                if action["domainMetadata"]["domain"] == domain {
                    action["domainMetadata"]["configuration"] = Value::String("{\"v\": 9}".into());
                }
                action.to_string()
            })
            .collect();
        assert_ne!(
            broken.join("\n"),
            text.trim_end(),
            "{table}: no {domain} to break"
        );
        std::fs::write(&newest, broken.join("\n") + "\n").unwrap();
    }

    /// The SQL of one of the DuckDB file's views, as DuckDB keeps it.
    pub async fn view_sql(&self, view: &str) -> String {
        let rows = self
            .query(&format!(
                "SELECT sql FROM duckdb_views() WHERE view_name = '{view}'"
            ))
            .await;
        rows[0]["sql"].as_str().unwrap().to_string()
    }

    /// One number from SQL.
    pub async fn count(&self, sql: &str) -> i64 {
        let rows = self.query(sql).await;
        let row = rows[0].as_object().unwrap();
        row.values().next().unwrap().as_i64().unwrap()
    }

    /// Every file under the lake with its bytes (empty when it does not exist).
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        walk(&self.root(), &mut out);
        out
    }

    /// Every byte the lake holds: for an S3 lake each object in its bucket (keyed
    /// `s3://bucket/key`) plus the files of its working directory (the DuckDB file).
    pub async fn all_bytes(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut out);
        if let Some(s3) = &self.s3 {
            for (location, bytes) in bucket_objects(&s3.endpoint, &s3.bucket).await {
                let key = PathBuf::from(format!("s3://{}/{location}", s3.bucket));
                out.insert(key, bytes);
            }
        }
        out
    }

    /// Deletes the lake's table directory `name` (`jobs_changes`, say), every file of it.
    pub async fn remove_table(&self, name: &str) {
        let Some(s3) = &self.s3 else {
            std::fs::remove_dir_all(self.root().join(name)).unwrap();
            return;
        };
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let store = joblake_testkit::s3_builder(&s3.endpoint)
            .with_bucket_name(&s3.bucket)
            .build()
            .unwrap();
        let prefix = s3
            .url
            .trim_start_matches(&format!("s3://{}", s3.bucket))
            .trim_matches('/');
        let root = object_store::path::Path::from(format!("{prefix}/{name}"));
        let objects: Vec<_> = store.list(Some(&root)).try_collect().await.unwrap();
        assert!(!objects.is_empty(), "{root} holds nothing");
        for meta in objects {
            object_store::ObjectStoreExt::delete(&store, &meta.location)
                .await
                .unwrap();
        }
    }

    /// The rows of a view as id -> row, without the per-fetch metadata columns.
    pub async fn view(&self, view: &str) -> BTreeMap<String, Value> {
        self.view_where(view, "true").await
    }

    /// [`Lake::view`] of the rows matching an SQL predicate (each id at most once).
    /// The columns the `jobs` view works out ([`JOBS_WORKED_OUT`]), which no API row carries,
    /// are left out.
    pub async fn view_where(&self, view: &str, predicate: &str) -> BTreeMap<String, Value> {
        let derived = if view == "jobs" {
            format!(", {JOBS_WORKED_OUT}")
        } else {
            String::new()
        };
        rows_by_id(
            self.query(&format!(
                "SELECT * EXCLUDE (_run_id, _fetched_at, _page, _row, dt{derived}) FROM {view} \
                 WHERE {predicate}"
            ))
            .await,
        )
    }

    /// The truth, passed through the same DuckDB -> JSON path as the view, as id -> row.
    pub async fn truth(&self, sim: &Sim, table: Table) -> BTreeMap<String, Value> {
        self.truth_where(sim, table, None).await
    }

    /// [`Lake::truth`] of the rows a request with `body` would page through.
    pub async fn truth_where(
        &self,
        sim: &Sim,
        table: Table,
        body: Option<&str>,
    ) -> BTreeMap<String, Value> {
        let batch = sim.truth(table, body).await;
        let path = self
            .dir
            .path()
            .join(format!("truth-{}.parquet", table.name()));
        let file = std::fs::File::create(&path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        rows_by_id(
            self.query(&format!(
                "SELECT * EXCLUDE (_run_id, _fetched_at, _page, _row) FROM read_parquet('{}')",
                path.display()
            ))
            .await,
        )
    }
}

fn rows_by_id(rows: Vec<Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for row in rows {
        let id = row["id"].as_str().expect("every row has an id").to_string();
        assert!(out.insert(id.clone(), row).is_none(), "id {id} twice");
    }
    out
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
        }
    }
}

/// Every object in `bucket` on the S3 server at `endpoint`, with its bytes.
pub async fn bucket_objects(
    endpoint: &str,
    bucket: &str,
) -> Vec<(object_store::path::Path, Vec<u8>)> {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let store = joblake_testkit::s3_builder(endpoint)
        .with_bucket_name(bucket)
        .build()
        .unwrap();
    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = Vec::with_capacity(objects.len());
    for meta in objects {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((meta.location, bytes.to_vec()));
    }
    out
}

/// Asserts two id -> row maps are equal, naming the first differences.
pub fn assert_same(view: &BTreeMap<String, Value>, truth: &BTreeMap<String, Value>, what: &str) {
    let missing: Vec<_> = truth.keys().filter(|k| !view.contains_key(*k)).collect();
    let extra: Vec<_> = view.keys().filter(|k| !truth.contains_key(*k)).collect();
    let differ: Vec<_> = truth
        .iter()
        .filter(|(k, v)| view.get(*k).is_some_and(|w| w != *v))
        .map(|(k, v)| format!("{k}:\n  lake  {}\n  truth {v}", view[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{what}: {} rows in the lake, {} in the truth; {} missing (e.g. {:?}), {} extra (e.g. {:?}), {} differ, e.g.\n{}",
        view.len(),
        truth.len(),
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first(),
        differ.len(),
        differ.first().map(String::as_str).unwrap_or("")
    );
}

/// A finished command.
#[derive(Clone)]
pub struct Run(pub Arc<Output>);

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code(),
            Some(code),
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }
}

/// Request keys the simulator saw more than once with a 200, and how often.
pub fn refetched(log: &[Value], api: &str) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in log.iter().filter(|e| e["api"] == api && e["status"] == 200) {
        *counts
            .entry(e["request_key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

/// The python test tools `make test` installs (see `make py-tools`); the stock readers are
/// part of the contract, so a run without them fails rather than skips.
pub fn py_env(var: &str) -> Vec<String> {
    let dirs = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the tests with `make test`, which installs the stock readers")
    });
    dirs.split_whitespace().map(str::to_string).collect()
}

/// What a stock reader sees (`tests/readers/counts.py`), run by the venv's python with
/// `pythonpath` (a stock DuckDB's directory) or nothing more on its path.
pub async fn reader_counts(
    pythonpath: Option<&str>,
    reader: &str,
    target: impl AsRef<std::ffi::OsStr>,
    env: &[(String, String)],
) -> Value {
    let script = repo_root().join("tests/readers/counts.py");
    let mut cmd = tokio::process::Command::new(joblake_testkit::python());
    match pythonpath {
        Some(p) => cmd.env("PYTHONPATH", p),
        None => cmd.env_remove("PYTHONPATH"),
    };
    let out = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg(script)
        .arg(reader)
        .arg(target)
        .output()
        .await
        .expect("the venv's python runs");
    assert!(
        out.status.success(),
        "{reader} from {pythonpath:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Kills `joblake refresh` with SIGKILL once the simulator has served `pages` pages of `api`.
pub async fn kill_after(lake: &Lake, sim: &Sim, api: &str, pages: usize) {
    signal_after(lake, sim, &["refresh"], api, pages, "KILL").await;
}

/// Sends `signal` to `joblake <args>` once the simulator has served `pages` more pages of
/// `api`, and returns how the process ended.
pub async fn signal_after(
    lake: &Lake,
    sim: &Sim,
    args: &[&str],
    api: &str,
    pages: usize,
    signal: &str,
) -> Output {
    let before = sim
        .requests(api)
        .await
        .iter()
        .filter(|e| e["status"] == 200)
        .count();
    let mut child = lake
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let served = sim
            .requests(api)
            .await
            .iter()
            .filter(|e| e["status"] == 200)
            .count();
        if served >= before + pages {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "refresh ended before the kill"
        );
        assert!(Instant::now() < deadline, "refresh made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().await.unwrap();
    assert!(!out.status.success());
    out
}

/// The checkout under test. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test, so a test
/// binary a shared target dir carries over from another checkout still uses this one's files.
pub fn repo_root() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    crate_dir.join("../..")
}

/// Runs `f` on `RELIABILITY.md`'s text, holding a lock every test that writes it takes, and
/// writes back what `f` returns: concurrent tests take turns.
fn edit_reliability(f: impl FnOnce(String) -> String) {
    let path = repo_root().join("RELIABILITY.md");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("joblake-reliability.lock"))
        .unwrap();
    lock.lock().unwrap();
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Reliability\n\nWhat the end-to-end tests (`tests/e2e`) inject into real runs of \
         `joblake` against `joblake simulate`, how often, and what came of it. Every table \
         below is written by the test that measured it, on each `make test`; none is typed \
         in.\n"
            .to_string()
    });
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, f(old)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    lock.unlock().unwrap();
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    )
}

/// `text` with section `name` replaced by `body` (or added at the end).
fn with_section(text: &str, name: &str, body: &str) -> String {
    let (begin, end) = markers(name);
    let section = format!("{begin}\n{}\n{end}", body.trim_end());
    match (text.find(&begin), text.find(&end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &text[..a], &text[b + end.len()..])
        }
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    }
}

/// Replaces section `name` of `RELIABILITY.md` (the repository's) with `body`: the tests
/// publish what they injected and what came of it themselves.
pub fn reliability_section(name: &str, body: &str) {
    edit_reliability(|text| with_section(&text, name, body));
}

/// Puts `row` (a Markdown table row, its first cell the key) into the table of section `name`
/// of `RELIABILITY.md`, replacing the row with the same first cell, rows in key order: tests
/// that each try one thing write one table together. `head` is the section's text up to and
/// including the table's header lines.
pub fn reliability_row(name: &str, head: &str, row: &str) {
    let first_cell = |r: &str| r.split('|').nth(1).unwrap_or_default().trim().to_string();
    edit_reliability(|text| {
        let (begin, end) = markers(name);
        let mut rows: BTreeMap<String, String> = match (text.find(&begin), text.find(&end)) {
            (Some(a), Some(b)) if a < b => text[a + begin.len()..b]
                .lines()
                .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
                .skip(1)
                .map(|l| (first_cell(l), l.to_string()))
                .collect(),
            _ => BTreeMap::new(),
        };
        rows.insert(first_cell(row), row.trim_end().to_string());
        let body = format!(
            "{}\n{}",
            head.trim_end(),
            rows.into_values().collect::<Vec<_>>().join("\n")
        );
        with_section(&text, name, &body)
    });
}

/// Asserts neither API key is in `outputs` or any byte of the lake (its objects and its
/// working directory, the DuckDB file included); returns the files and bytes searched.
pub async fn assert_no_keys(lake: &Lake, sim: &Sim, outputs: &[String]) -> (usize, usize) {
    let bytes = lake.all_bytes().await;
    for key in [&sim.jobo_key, &sim.sentrion_key] {
        for text in outputs {
            assert!(!text.contains(key.as_str()), "an output holds a key");
        }
        for (path, data) in &bytes {
            assert!(
                !data.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} holds a key",
                path.display()
            );
        }
    }
    (bytes.len(), bytes.values().map(Vec::len).sum())
}

/// JSON values as the rows of one page.
fn raw_rows<'a>(values: impl Iterator<Item = &'a Value>) -> RawRows {
    let texts: Vec<String> = values.map(Value::to_string).collect();
    RawRows::copied(texts.iter().map(String::as_str))
}
