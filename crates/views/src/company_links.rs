//! The job_company_keys table: `<lake>/job_company_keys/`, a Delta table of one row per job
//! of the `jobs` view holding its five link keys and the career site they link it to
//! (schemas/job_companies.md), exact for one version of the jobs history and one of the
//! career sites history (its [`LinksState`], in the log's domain metadata), so that the
//! `job_companies` view reads its linked rows rather than take every job's URLs apart.
//!
//! The rows are `queries/job_companies.sql` over `queries/job_keys.sql` (each job's keys) and
//! `queries/site_keys.sql` (the keys that name exactly one career site):
//! - a refresh of jobs merges its runs in ([`keep_exact`]): the keys of each id's last version
//!   among the runs' rows, linked, their old rows deleted by deletion vectors; a cost in
//!   proportion to the run but for one pass over the table's ids;
//! - when the career sites' keys changed (a site came, moved or was renamed), every row is
//!   linked again from the keys it holds, and those whose link changed are replaced: a pass
//!   over the table's keys, no URL taken apart;
//! - once merges added or deleted a share of its rows (`[views] latest_after`), or a merge
//!   would, it is written again from the keys it holds (linked again) and the runs' jobs' new
//!   keys;
//! - whenever a merge cannot be sure of its rows (no table yet, a state joblake cannot read, a
//!   history log made again, files gone from the history, rows of a run no later than the
//!   last it took in), it is written again from the `jobs` latest table.
//!
//! It waits while the latest tables it reads are not exact; the view then works the links
//! out over the views. A lake with no career site has none: nothing links.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Result;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use joblake_schema::Table;
use joblake_writer::delta::{AddFile, Commit, DataFile, DeltaLog, LiveFile, Operation};
use joblake_writer::{Lake, crash_point};
use serde::{Deserialize, Serialize};

use crate::latest::{self, History, LatestTable, list};
use crate::{catalog, changes};

/// The macros of the keys (`joblake_host`, `joblake_company_key`, ...), statements.
pub const MACROS: &str = include_str!("../../../queries/company_keys.sql");
const SITE_KEYS: &str = include_str!("../../../queries/site_keys.sql");
const JOB_KEYS: &str = include_str!("../../../queries/job_keys.sql");
const HOST_DOMAINS: &str = include_str!("../../../queries/host_domains.sql");
const NAME_KEYS: &str = include_str!("../../../queries/name_keys.sql");
const LINKS: &str = include_str!("../../../queries/job_companies.sql");

/// Where the table lies in the lake.
pub const NAME: &str = "job_company_keys";

/// DuckDB's memory while it links (one thread): a run's keys, or every job's when the table
/// is written again, which its joins spill beyond this; and room for the site keys (see
/// [`room_for`]), in MB.
const MEMORY_MB: u64 = 128;

/// What each unique site key adds to [`MEMORY_MB`] once they are known. The link's five joins
/// each build a hash table of one kind of key (two of job boards, two of domains, one of
/// names), which DuckDB holds while the jobs stream through them: the keys of 107,540 career
/// sites (219,058 keys, two fifths of them job boards) ran out of 128 MB in the table's
/// write, which took 144 MB; with 3,610 sites the joins take a few MB.
const MEMORY_PER_KEY: u64 = 128;

/// The statement that gives a link's session `at`'s memory and room for the site keys its
/// fingerprint (see [`FINGERPRINT`]) counts, as much more again when `at` is a retry.
fn room_for(at: &changes::Attempt, fingerprint: &str) -> String {
    let keys: u64 = fingerprint
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let room = (keys * MEMORY_PER_KEY).div_ceil(1 << 20) * at.memory_mb / MEMORY_MB;
    format!("SET memory_limit = '{}MB';", at.memory_mb + room)
}

/// A link's DuckDB work (see [`changes::within_memory`]): [`MEMORY_MB`], then
/// [`changes::MORE`] times that.
async fn linking<T: Send + 'static>(
    lake: &Lake,
    link: impl Fn(&crate::Work, &changes::Attempt) -> Result<T> + Send + Sync + 'static,
) -> Result<T> {
    changes::within_memory(lake, NAME, &changes::and_more(MEMORY_MB), link).await
}

/// The table's columns, in their files' order (`dt`, the partition, last).
const COLUMNS: [&str; 9] = [
    "id",
    "company_id",
    "matched_by",
    "job_listing",
    "apply_listing",
    "apply_domain",
    "job_domain",
    "company_key",
    "dt",
];

/// The unique site keys (`queries/site_keys.sql`) over `career_sites` (the latest version of
/// every site) and `history` (every version).
pub fn site_keys(career_sites: &str, history: &str) -> String {
    let values = BTreeMap::from([
        ("career_sites".to_string(), career_sites.to_string()),
        ("career_sites_history".to_string(), history.to_string()),
    ]);
    catalog::fill(SITE_KEYS, &values)
}

/// Each job's keys (`queries/job_keys.sql`) over `jobs`, rows with `id`, `job_url`,
/// `apply_url`, `company_name` and `dt`, looking each host's domain and each name's key up in
/// `host_domains` and `name_keys` (tables, or what [`lookups`] gives over the same jobs).
pub fn job_keys(jobs: &str, host_domains: &str, name_keys: &str) -> String {
    let values = BTreeMap::from([
        ("jobs".to_string(), jobs.to_string()),
        ("host_domains".to_string(), host_domains.to_string()),
        ("name_keys".to_string(), name_keys.to_string()),
    ]);
    catalog::fill(JOB_KEYS, &values)
}

/// `queries/host_domains.sql` and `queries/name_keys.sql` over `jobs`: each host's domain and
/// each company name's key, once per distinct host and name.
pub fn lookups(jobs: &str) -> (String, String) {
    let values = BTreeMap::from([("jobs".to_string(), jobs.to_string())]);
    (
        catalog::fill(HOST_DOMAINS, &values),
        catalog::fill(NAME_KEYS, &values),
    )
}

/// The statements that make `host_domains` and `name_keys`, temporary tables of the lookups
/// over `jobs`, and the keys of `jobs` looking them up: where joblake works the keys out, the
/// lookups are tables DuckDB knows the size of, and the jobs stream through their joins (a
/// first refresh's 279 k jobs: 1.6 s and 128 MB peak in a Python process of 50 MB, where one
/// statement with a CTE of every job's hosts took 195 MB).
fn keys_via_tables(jobs: &str) -> (String, String) {
    let (hosts, names) = lookups(jobs);
    let setup = format!(
        "CREATE OR REPLACE TEMP TABLE host_domains AS\n{hosts};\n\
         CREATE OR REPLACE TEMP TABLE name_keys AS\n{names};\n"
    );
    (
        setup,
        format!("(\n{}\n)", job_keys(jobs, "host_domains", "name_keys")),
    )
}

/// Every row of `keys` (a job's keys, and any other columns) with the `company_id` and
/// `matched_by` of `queries/job_companies.sql`, the site keys being `site_keys` (a SELECT).
pub fn links(keys: &str, site_keys: &str) -> String {
    let values = BTreeMap::from([
        ("keys".to_string(), keys.to_string()),
        ("site_keys".to_string(), site_keys.to_string()),
    ]);
    catalog::fill(LINKS, &values)
}

/// The `job_companies` view's rows out of `rows` (every job with its link): those with one.
/// `matched_by` is null exactly when `company_id` is, and takes three values, which DuckDB
/// reads from a dictionary; the ids of thousands of sites are written plain, and reading them
/// for every job made a count of the view 40 times a count of the history.
fn linked(rows: &str) -> String {
    format!("SELECT id, company_id, matched_by FROM (\n{rows}\n) WHERE matched_by IS NOT NULL")
}

/// Rows in each row group of the table's files (see [`crate::Work::copy_partitioned_in`]).
const ROW_GROUP: u32 = 10_240;

/// The table's rows, every column in its order, out of `links` (a [`links`] SELECT).
fn in_order(links: &str) -> String {
    format!("SELECT {} FROM (\n{links}\n)", COLUMNS.join(", "))
}

/// The `job_companies` view worked out over the views: every job's keys linked, the lookups
/// worked out once each (CTEs).
fn over_views() -> String {
    let (hosts, names) = lookups("jobs");
    let keys = format!(
        "(\nWITH host_domains AS (\n{hosts}\n),\nname_keys AS (\n{names}\n)\n{}\n)",
        job_keys("jobs", "host_domains", "name_keys")
    );
    linked(&links(
        &keys,
        &site_keys("career_sites", "career_sites_history"),
    ))
}

/// What the table is exact for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinksState {
    /// The jobs history's version.
    pub jobs_version: u64,
    /// When it was committed (milliseconds since 1970).
    pub jobs_committed_at: i64,
    /// The career sites history's version (`None` while it has no log).
    pub sites_version: Option<u64>,
    /// When it was committed (milliseconds since 1970; 0 for none).
    pub sites_committed_at: i64,
    /// The unique site keys the rows were linked with, as their count and the sum of their
    /// hashes: a career sites version that gives the same has changed no link.
    pub site_keys: String,
    /// The latest `_run_id` among the jobs history's rows at that version: a merge takes in
    /// only rows of later runs.
    pub last_run_id: String,
    /// Rows merges added or deleted since the table was last written again.
    pub merged: u64,
}

/// The table as its newest version holds it.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its Delta version.
    pub version: u64,
    /// The histories it is exact for.
    pub state: LinksState,
    /// Its files, with the rows their deletion vectors delete.
    pub files: Vec<DataFile>,
}

impl Kept {
    /// Whether its rows are exactly the links of `jobs` and `sites`.
    pub fn exact_for(&self, jobs: &History, sites: Option<&History>) -> bool {
        self.state.jobs_version == jobs.version
            && self.state.jobs_committed_at == jobs.committed_at
            && self.state.sites_version == sites.map(|s| s.version)
            && self.state.sites_committed_at == sites.map_or(0, |s| s.committed_at)
    }

    /// Rows it holds: one per job.
    pub fn ids(&self) -> u64 {
        latest::live_rows(&self.files)
    }

    /// Whether writing it again is due rather than merging (as for a latest table).
    fn rewrite_due(&self, after: f64) -> bool {
        latest::rewrite_due(after, self.state.merged, self.ids())
    }
}

/// What keeping the table exact did, as for a latest table (`replaced`: rows of jobs a run
/// brought again or whose link changed; `rewritten`: written again whole).
pub type LinksReport = latest::LatestReport;

/// The table, or `None` while there is none.
pub async fn read(lake: &Lake) -> Result<Option<Kept>> {
    match load(lake).await? {
        Some((_, Some(unread))) => Err(anyhow::Error::msg(unread)),
        kept => Ok(kept.map(|(k, _)| k)),
    }
}

/// The table (`None` while there is none), and why its state cannot be read when it cannot:
/// it is then exact for nothing, its files still listed (writing it again removes them).
async fn load(lake: &Lake) -> Result<Option<(Kept, Option<String>)>> {
    let Some((version, state, files)) = latest::newest_per_id::<LinksState>(lake, NAME).await?
    else {
        return Ok(None);
    };
    let (state, unread) = match state {
        Ok(state) => (state, None),
        Err(why) => (
            LinksState {
                jobs_version: u64::MAX,
                jobs_committed_at: 0,
                sites_version: None,
                sites_committed_at: 0,
                site_keys: String::new(),
                last_run_id: String::new(),
                merged: 0,
            },
            Some(why),
        ),
    };
    let kept = Kept {
        version,
        state,
        files,
    };
    Ok(Some((kept, unread)))
}

/// The `job_companies` view's SELECT for the histories the views read, and the statement
/// that fills the DuckDB table of the positions it skips (empty when none): the linked rows
/// of the table when it is exact for them, otherwise the links worked out over the views.
pub async fn view_select(
    lake: &Lake,
    jobs: Option<&History>,
    sites: Option<&History>,
) -> (String, String) {
    let kept = match jobs {
        Some(jobs) => read(lake)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %format!("{e:#}"), "the job_company_keys table cannot be read; the view works the links out");
                None
            })
            .filter(|k| k.exact_for(jobs, sites) && !k.files.is_empty()),
        None => None,
    };
    if sites.is_none() && no_career_sites(lake).await {
        return (String::new(), linked(&in_order(NONE)));
    }
    match kept {
        Some(kept) => {
            let (prepare, rows) = latest::without_deleted(
                lake,
                &format!("_joblake_deleted_{NAME}"),
                &kept.files,
                false,
            );
            (prepare, linked(&rows))
        }
        None => (String::new(), over_views()),
    }
}

/// No row of the table: its columns, typed.
const NONE: &str = "SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS company_id, \
     NULL::VARCHAR AS matched_by, NULL::VARCHAR AS job_listing, NULL::VARCHAR AS apply_listing, \
     NULL::VARCHAR AS apply_domain, NULL::VARCHAR AS job_domain, NULL::VARCHAR AS company_key, \
     NULL::DATE AS dt WHERE false";

/// Whether the lake holds no career site at all (no Delta log and no file of an older
/// joblake's): then no job links to one, and the view needs no SQL to say so.
async fn no_career_sites(lake: &Lake) -> bool {
    catalog::history_files(lake, Table::CareerSites)
        .await
        .is_ok_and(|files| files.is_empty())
}

/// What the table is worked out from: the histories' newest versions and the latest tables
/// exact for them.
struct Inputs {
    jobs: History,
    jobs_latest: LatestTable,
    sites: History,
    sites_latest: LatestTable,
}

impl Inputs {
    /// The statements that make the Work session ready (the macros, and the site keys as
    /// `site_keys`), and the query of their fingerprint (see [`LinksState::site_keys`]).
    fn setup(&self, lake: &Lake) -> (String, String) {
        let mut setup = MACROS.to_string();
        let (sites, history) = if self.sites_latest.files.is_empty() {
            let none = "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS listing_url, \
                        NULL::VARCHAR AS website, NULL::VARCHAR AS name WHERE false)";
            (none.to_string(), none.to_string())
        } else {
            let (prepare, sites) =
                latest::without_deleted(lake, "deleted_sites", &self.sites_latest.files, true);
            setup.push_str(&prepare);
            let all = format!(
                "(SELECT * FROM read_parquet([{}], hive_partitioning = true, union_by_name = true))",
                list(lake, self.sites.files.iter().map(|f| &f.path))
            );
            (format!("({sites})"), all)
        };
        setup.push_str(&format!(
            "\nCREATE TEMP TABLE site_keys AS\n{};\n",
            site_keys(&sites, &history)
        ));
        (setup, FINGERPRINT.to_string())
    }

    /// The statement that makes the table of the `jobs` latest table's deleted positions (it
    /// lists each: only where the jobs are read), and the jobs' rows.
    fn jobs(&self, lake: &Lake) -> (String, String) {
        if self.jobs_latest.files.is_empty() {
            let none = "(SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS job_url, \
                        NULL::VARCHAR AS apply_url, NULL::VARCHAR AS company_name, \
                        NULL::DATE AS dt WHERE false)";
            return (String::new(), none.to_string());
        }
        let (prepare, jobs) =
            latest::without_deleted(lake, "deleted_jobs", &self.jobs_latest.files, true);
        (prepare, format!("({jobs})"))
    }
}

/// The unique site keys as their count and the sum of their hashes (see
/// [`LinksState::site_keys`]).
const FINGERPRINT: &str = "SELECT count(*)::VARCHAR || ':' || \
     coalesce(sum(hash(matched_by, key, company_id)::HUGEINT), 0)::VARCHAR FROM site_keys";

/// The histories' newest versions and the latest tables exact for them; `None` when there is
/// no jobs history, or while a latest table is not exact (the view works the links out
/// meanwhile).
async fn inputs(lake: &Lake) -> Result<Option<Inputs>> {
    let Some(jobs) = latest::history_now(lake, Table::Jobs).await? else {
        return Ok(None);
    };
    let exact = async |table: Table, history: &History| -> Option<LatestTable> {
        let latest = latest::read(lake, table).await.ok().flatten();
        latest.filter(|l| l.exact_for(history))
    };
    let Some(jobs_latest) = exact(Table::Jobs, &jobs).await else {
        tracing::info!(
            "the jobs latest table is not exact; the job_company_keys table waits for it"
        );
        return Ok(None);
    };
    // No job links to a career site while the lake has none: the table is made when the first
    // come, and a lake of jobs alone (a first jobs refresh) spends nothing on keys meanwhile.
    let Some(sites) = latest::history_now(lake, Table::CareerSites).await? else {
        return Ok(None);
    };
    let Some(sites_latest) = exact(Table::CareerSites, &sites).await else {
        tracing::info!(
            "the career sites latest table is not exact; the job_company_keys table waits for it"
        );
        return Ok(None);
    };
    Ok(Some(Inputs {
        jobs,
        jobs_latest,
        sites,
        sites_latest,
    }))
}

/// Makes the table exact for the newest jobs and career sites histories: merging in the runs
/// the jobs history gained since and linking again the rows whose keys the career sites no
/// longer give the same site, or writing it again (see the module's doc). `compacted_from`:
/// the jobs history a compaction just started from (its rows moved, none changed), when the
/// table was exact for it. `None` when it already was exact, or while it waits.
pub async fn keep_exact(
    lake: &Lake,
    rewrite_after: f64,
    compacted_from: Option<&History>,
) -> Result<Option<LinksReport>> {
    let Some(inputs) = inputs(lake).await? else {
        return Ok(None);
    };
    let current = match load(lake).await? {
        Some((current, Some(why))) => {
            tracing::warn!(error = %why, "the job_company_keys table cannot be read; writing it again");
            return rewrite_at(lake, &inputs, Some(current)).await;
        }
        current => current.map(|(c, _)| c),
    };
    let Some(current) = current else {
        return rewrite_at(lake, &inputs, None).await;
    };
    if current.exact_for(&inputs.jobs, Some(&inputs.sites)) {
        return Ok(None);
    }
    if current.files.is_empty() {
        return rewrite_at(lake, &inputs, Some(current)).await;
    }
    // Due to be written again: from the keys it holds, no job's URLs taken apart again.
    let whole = current.rewrite_due(rewrite_after);
    let then = (current.state.jobs_version, current.state.jobs_committed_at);
    let new: Vec<LiveFile> = match compacted_from {
        // A compaction moved the rows the table was exact for, and changed none.
        Some(before) if then == (before.version, before.committed_at) => Vec::new(),
        _ if then == (inputs.jobs.version, inputs.jobs.committed_at) => Vec::new(),
        _ => {
            let Some(before) = changes::history_then(lake, Table::Jobs, then, &inputs.jobs).await?
            else {
                return rewrite_at(lake, &inputs, Some(current)).await;
            };
            let then: BTreeSet<&str> = before.iter().map(|f| f.path.as_str()).collect();
            let now: BTreeSet<&str> = inputs.jobs.files.iter().map(|f| f.path.as_str()).collect();
            // Files gone from the history (a compaction not carried over): its rows moved.
            if !then.is_subset(&now) {
                return rewrite_at(lake, &inputs, Some(current)).await;
            }
            inputs
                .jobs
                .files
                .iter()
                .filter(|f| !then.contains(f.path.as_str()))
                .cloned()
                .collect()
        }
    };
    match merge(lake, &inputs, &current, &new, rewrite_after, whole).await? {
        Some(report) => Ok(Some(report)),
        None => rewrite_at(lake, &inputs, Some(current)).await,
    }
}

/// After a compaction of the histories (which moves rows and changes none), makes the table
/// exact for the compacted histories (`before`: the jobs history the compaction started
/// from), carried over rather than written again when it was exact for `before`, then writes
/// its rows again as one file a day without the rows its deletion vectors delete (its own
/// rows, no job's URLs taken apart again); a commit with no data change.
pub async fn carry_over(lake: &Lake, before: Option<&History>) -> Result<Option<LinksReport>> {
    let kept = keep_exact(lake, f64::INFINITY, before).await?;
    if kept.as_ref().is_some_and(|k| k.rewritten) {
        return Ok(kept);
    }
    let Some(inputs) = inputs(lake).await? else {
        return Ok(kept);
    };
    let Some(current) = read(lake).await.ok().flatten() else {
        return Ok(kept);
    };
    let days: BTreeSet<&str> = current
        .files
        .iter()
        .filter_map(|f| f.path.split('/').find(|p| p.starts_with("dt=")))
        .collect();
    let tidy =
        days.len() == current.files.len() && current.files.iter().all(|f| f.deleted.is_empty());
    if tidy || !current.exact_for(&inputs.jobs, Some(&inputs.sites)) {
        tracing::debug!(tidy, state = ?current.state, "the job_company_keys table is not merged into one file a day");
        return Ok(kept);
    }
    let (setup, rows) = latest::without_deleted(lake, "deleted_links", &current.files, true);
    let adds = write(lake, setup, in_order(&rows)).await?;
    let ids = adds.iter().map(|a| a.rows).sum();
    let commit = Commit {
        adds,
        removes: current.files.iter().map(|f| f.path.clone()).collect(),
        state: Some(serde_json::to_string(&LinksState {
            merged: 0,
            ..current.state.clone()
        })?),
        operation: Operation::Optimize,
        ..Commit::default()
    };
    published(lake, commit, Some(&current), &inputs, ids).await
}

/// Merges the jobs history's files `new` (rows of runs after the last the table took in)
/// into `current`, and links again every row when the site keys changed, in one commit. When
/// `whole`, or when the rows it would add and delete reach `rewrite_after` of the table with
/// those merged before, it writes the table again instead, from the keys it holds and the runs'
/// jobs' new keys (no deletion vector of millions of rows). `None` when it cannot be sure of
/// the result (a row of a run no later than the table's last, a job with two rows): the table
/// is then written again from the `jobs` latest table.
async fn merge(
    lake: &Lake,
    inputs: &Inputs,
    current: &Kept,
    new: &[LiveFile],
    rewrite_after: f64,
    whole: bool,
) -> Result<Option<LinksReport>> {
    let last = current.state.last_run_id.clone();
    let (setup, fingerprint) = inputs.setup(lake);
    // The table's rows, for writing it again from them (the table of the positions they skip
    // made only then: its SQL lists each).
    let (prepare, kept) = latest::without_deleted(lake, "deleted_links", &current.files, true);
    let fresh = match new.is_empty() {
        true => "CREATE TEMP TABLE fresh AS SELECT NULL::VARCHAR AS id, NULL::VARCHAR AS job_url, \
                 NULL::VARCHAR AS apply_url, NULL::VARCHAR AS company_name, NULL::DATE AS dt, \
                 NULL::VARCHAR AS _run_id WHERE false;"
            .to_string(),
        false => format!(
            "CREATE TEMP TABLE fresh AS\n\
             SELECT id, job_url, apply_url, company_name, dt, _run_id\n\
             FROM read_parquet([{}], hive_partitioning = true, union_by_name = true)\n\
             QUALIFY row_number() OVER (PARTITION BY id ORDER BY {}) = 1;",
            list(lake, new.iter().map(|f| &f.path)),
            catalog::LATEST_FIRST
        ),
    };
    let was = current.state.site_keys.clone();
    let (merged, ids) = (current.state.merged, current.ids());
    let files = current.files.clone();
    let table_files = list(lake, current.files.iter().map(|f| &f.path));
    let taken = last.clone();
    let dir = lake.reader_path(NAME);
    let done = linking(lake, move |work, at| -> Result<Option<_>> {
        let last = &taken;
        let (target, prefix) = (&at.dir, &at.prefix);
        work.execute(&setup)?;
        let now = latest::strings(&work.query(&fingerprint)?, 0)?
            .pop()
            .unwrap_or_default();
        work.execute(&room_for(at, &now))?;
        work.execute(&fresh)?;
        let runs = work.query(
            "SELECT coalesce(min(_run_id), ''), coalesce(max(_run_id), '') FROM fresh",
        )?;
        let first = latest::strings(&runs, 0)?.pop().unwrap_or_default();
        let newest = latest::strings(&runs, 1)?.pop().unwrap_or_default();
        if !first.is_empty() && first <= *last {
            tracing::info!(run = %first, last = %last, "rows of a run no later than the job_company_keys table's last; writing it again");
            return Ok(None);
        }
        let (lookups, fresh_keys) = keys_via_tables("fresh");
        work.execute(&lookups)?;
        // Written again: the rows it holds but those of the runs' jobs, linked again, and the
        // runs' jobs with their new keys.
        let write_whole = |work: &crate::Work| -> Result<Option<_>> {
            if !prepare.is_empty() {
                work.execute(&prepare)?;
            }
            // Each half in a write of its own: one link's joins at a time, not two.
            let held = in_order(&links(
                &format!(
                    "(SELECT * EXCLUDE (company_id, matched_by) FROM ({kept})\n\
                     WHERE id NOT IN (SELECT id FROM fresh))"
                ),
                "SELECT * FROM site_keys",
            ));
            let mut written = work.copy_partitioned_in(&held, target, prefix, None, ROW_GROUP)?;
            written.extend(work.copy_partitioned_in(
                &in_order(&links(&fresh_keys, "SELECT * FROM site_keys")),
                target,
                &format!("{prefix}runs-"),
                None,
                ROW_GROUP,
            )?);
            Ok(Some((written, newest.clone(), None, now.clone())))
        };
        if whole {
            return write_whole(work);
        }
        let relink = now != was;
        // The table's rows to replace: those of the runs' jobs, and, when the site keys
        // changed, those whose keys now link them otherwise.
        let stored = format!(
            "(SELECT file_index::BIGINT AS _fi, file_row_number::BIGINT AS _fr,\n\
               company_id AS _was_company, matched_by AS _was_matched,\n\
               * EXCLUDE (file_row_number, company_id, matched_by)\n\
             FROM read_parquet([{table_files}], union_by_name = true, hive_partitioning = true,\n\
               file_row_number = true))"
        );
        let replaced = match relink {
            false => format!(
                "SELECT *, NULL::VARCHAR AS company_id, NULL::VARCHAR AS matched_by\n\
                 FROM {stored} WHERE id IN (SELECT id FROM fresh)"
            ),
            true => format!(
                "SELECT * FROM (\n{}\n)\n\
                 WHERE id IN (SELECT id FROM fresh)\n\
                    OR company_id IS DISTINCT FROM _was_company\n\
                    OR matched_by IS DISTINCT FROM _was_matched",
                links(stored.as_str(), "SELECT * FROM site_keys")
            ),
        };
        work.execute(&format!("CREATE TEMP TABLE old AS\n{replaced};"))?;
        // Those the table's deletion vectors delete already are no rows of it.
        let Some(live) = latest::live_old_rows(work, &files)? else {
            tracing::warn!("the job_company_keys table holds a job twice; writing it again");
            return Ok(None);
        };
        // Rows it would add and delete: when they reach the share that writes the table again
        // (a lake's first career sites link most of its jobs), it is written again rather than
        // given deletion vectors of millions of rows.
        let changing = work.query(
            "SELECT ((SELECT count(*) FROM fresh) + 2 * count(*) \
                     - count(*) FILTER (WHERE id IN (SELECT id FROM fresh)))::BIGINT FROM old",
        )?;
        let changing = latest::int64s(&changing, 0)?.first().copied().unwrap_or(0);
        if (merged + changing.max(0) as u64) as f64 >= rewrite_after * ids as f64 {
            tracing::info!(rows = changing, "the merge would change a share of the job_company_keys table; writing it again");
            return write_whole(work);
        }
        // The runs' jobs with their new keys, and the other rows replaced with their new link.
        let rows = format!(
            "{}\nUNION ALL\n{}",
            in_order(&links(&fresh_keys, "SELECT * FROM site_keys")),
            in_order("SELECT * FROM old WHERE id NOT IN (SELECT id FROM fresh)")
        );
        let written = work.copy_partitioned_in(&rows, target, prefix, None, ROW_GROUP)?;
        Ok(Some((written, newest, Some(live), now)))
    })
    .await?;
    let Some((written, newest, live, site_keys)) = done else {
        return Ok(None);
    };
    let Some(live) = live else {
        // Written again whole, in one commit that removes every file it had.
        let adds = changes::to_adds_of(NAME, &dir, written)?;
        let ids = adds.iter().map(|a| a.rows).sum();
        let commit = Commit {
            adds,
            removes: current.files.iter().map(|f| f.path.clone()).collect(),
            state: Some(serde_json::to_string(&state_of(
                inputs,
                site_keys,
                last.max(newest),
                0,
            ))?),
            operation: Operation::Write,
            ..Commit::default()
        };
        return published(lake, commit, Some(current), inputs, ids).await;
    };
    let mut commit = Commit {
        operation: Operation::Merge,
        adds: changes::to_adds_of(NAME, &dir, written)?,
        ..Commit::default()
    };
    let added: u64 = commit.adds.iter().map(|a| a.rows).sum();
    let mut replaced = 0;
    let deletes = latest::per_file(current.files.len(), live)?;
    replaced += latest::delete_rows(&mut commit, &current.files, deletes);
    commit.state = Some(serde_json::to_string(&state_of(
        inputs,
        site_keys,
        last.max(newest),
        current.state.merged + added + replaced,
    ))?);
    let version = commit_links(lake, commit).await?;
    Ok(Some(LinksReport {
        table: NAME.to_string(),
        version,
        history_version: inputs.jobs.version,
        ids: current.ids() + added - replaced,
        added,
        replaced,
        rewritten: false,
    }))
}

/// The state of a table exact for `inputs`, linked with `site_keys`.
fn state_of(inputs: &Inputs, site_keys: String, last_run_id: String, merged: u64) -> LinksState {
    LinksState {
        jobs_version: inputs.jobs.version,
        jobs_committed_at: inputs.jobs.committed_at,
        sites_version: Some(inputs.sites.version),
        sites_committed_at: inputs.sites.committed_at,
        site_keys,
        last_run_id,
        merged,
    }
}

/// Writes the table again from the `jobs` latest table, in one commit that removes every
/// file `current` had; then deletes the files no reader needs any more (those of the version
/// before are kept, for DuckDB sessions still holding views of them).
async fn rewrite_at(
    lake: &Lake,
    inputs: &Inputs,
    current: Option<Kept>,
) -> Result<Option<LinksReport>> {
    let (setup, fingerprint) = inputs.setup(lake);
    let (prepare, jobs) = inputs.jobs(lake);
    let setup = setup + &prepare;
    let last_run_id = match inputs.jobs.files.is_empty() {
        true => String::new(),
        false => {
            let versions = format!(
                "read_parquet([{}], hive_partitioning = true, union_by_name = true)",
                list(lake, inputs.jobs.files.iter().map(|f| &f.path))
            );
            changes::run_ids(lake, &versions).await?.1
        }
    };
    let (lookups, keys) = keys_via_tables(&jobs);
    let setup = setup + &lookups;
    let rows = in_order(&links(&keys, "SELECT * FROM site_keys"));
    // A lake's first refresh fetched every job on one day (the latest rows are history rows,
    // each in its day): its rows go to one file as they come, not through DuckDB's
    // partitioned write, which holds each partition's rows.
    let day = changes::one_day(&inputs.jobs);
    let dir = lake.reader_path(NAME);
    let (written, site_keys) = linking(lake, move |work, at| -> Result<_> {
        work.execute(&setup)?;
        let site_keys = latest::strings(&work.query(&fingerprint)?, 0)?
            .pop()
            .unwrap_or_default();
        work.execute(&room_for(at, &site_keys))?;
        Ok((
            work.copy_partitioned_in(&rows, &at.dir, &at.prefix, day.as_deref(), ROW_GROUP)?,
            site_keys,
        ))
    })
    .await?;
    let adds = changes::to_adds_of(NAME, &dir, written)?;
    let ids = adds.iter().map(|a| a.rows).sum();
    let commit = Commit {
        adds,
        removes: current
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.clone()))
            .collect(),
        state: Some(serde_json::to_string(&state_of(
            inputs,
            site_keys,
            last_run_id,
            0,
        ))?),
        operation: Operation::Write,
        ..Commit::default()
    };
    published(lake, commit, current.as_ref(), inputs, ids).await
}

/// Commits `commit`, which writes the table again (`ids` rows), then deletes the files no
/// reader needs any more: all but the new ones, those of the version before (`previous`),
/// which DuckDB sessions still holding views of it read, and the deletion vectors the table
/// still uses.
async fn published(
    lake: &Lake,
    commit: Commit,
    previous: Option<&Kept>,
    inputs: &Inputs,
    ids: u64,
) -> Result<Option<LinksReport>> {
    let mut keep: BTreeSet<String> = commit.adds.iter().map(|a| a.path.clone()).collect();
    keep.extend(
        previous
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.path.clone())),
    );
    let version = commit_links(lake, commit).await?;
    latest::delete_unkept_per_id(lake, NAME, keep).await?;
    Ok(Some(LinksReport {
        table: NAME.to_string(),
        version,
        history_version: inputs.jobs.version,
        ids,
        added: ids,
        replaced: 0,
        rewritten: true,
    }))
}

/// Writes the rows of `select` (ending with `dt`) into the table's directory, one file per
/// `dt`, in row groups of [`ROW_GROUP`] rows, after the statements `setup`, within the link's
/// memory (see [`linking`]); says what to add.
async fn write(lake: &Lake, setup: String, select: String) -> Result<Vec<AddFile>> {
    let written = linking(lake, move |work, at| {
        work.execute(&setup)?;
        Ok(work.copy_partitioned_in(&select, &at.dir, &at.prefix, None, ROW_GROUP)?)
    })
    .await?;
    changes::to_adds_of(NAME, &lake.reader_path(NAME), written)
}

/// Commits `commit` to the table (creating it when it has no log).
async fn commit_links(lake: &Lake, commit: Commit) -> Result<u64> {
    let log = DeltaLog::derived_per_id(lake, NAME)?;
    crash_point("job_companies:before-commit");
    let version = log.commit(schema(), commit).await?;
    crash_point("job_companies:after-commit");
    Ok(version)
}

/// The table's Delta schema: [`COLUMNS`], `dt` (the day the job's latest version was
/// fetched, its partition) a date, the rest text.
fn schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|&c| match c {
            "dt" => Field::new(c, DataType::Date32, true),
            _ => Field::new(c, DataType::Utf8, true),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(memory_mb: u64) -> changes::Attempt {
        changes::Attempt {
            dir: String::new(),
            prefix: String::new(),
            memory_mb,
        }
    }

    /// The site keys get room of their own beside the link's memory, four times as much on a
    /// retry; a fingerprint joblake cannot read gives none.
    #[test]
    fn a_link_gets_room_for_its_site_keys() {
        assert_eq!(
            room_for(&at(128), "219058:-42"),
            "SET memory_limit = '155MB';"
        );
        assert_eq!(
            room_for(&at(512), "219058:-42"),
            "SET memory_limit = '620MB';"
        );
        assert_eq!(room_for(&at(128), "3:1"), "SET memory_limit = '129MB';");
        assert_eq!(room_for(&at(128), "0:0"), "SET memory_limit = '128MB';");
        assert_eq!(room_for(&at(128), "what"), "SET memory_limit = '128MB';");
    }
}
