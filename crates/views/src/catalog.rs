//! The view SQL: `queries/views.sql` filled in for one lake.
//!
//! The latest-version views read each table's latest table (`<table>_latest/`, see
//! [`crate::latest`]) when it is exact for the history version the views read: its files
//! without the rows its deletion vectors delete, whose positions go into a small table of
//! the DuckDB file as the views are built. Without one (or while it lags), they are the last
//! version of every id out of the whole history, a window over every row.

use std::collections::BTreeMap;

use anyhow::Result;
use joblake_schema::{Table, columns};
use joblake_writer::{Lake, layout};
use object_store::ObjectMeta;
use object_store::path::Path;

use crate::{ident, literal};

const VIEWS_SQL: &str = include_str!("../../../queries/views.sql");

/// The order in which a later version beats an earlier one.
pub const LATEST_FIRST: &str = "_run_id DESC, _page DESC, _row DESC";

/// The Parquet files of `table`'s history (every `dt=` partition), in path order: those its
/// Delta log names, so the views read exactly what any Delta reader does (a file a crash left
/// before its commit, or a compaction's input not yet deleted, is not among them). A lake
/// written before its tables were Delta tables, and not written to since, is listed.
pub async fn history_files(lake: &Lake, table: Table) -> Result<Vec<ObjectMeta>> {
    if let Some(live) = joblake_writer::delta::live_files(lake, table.name()).await? {
        return Ok(live.iter().map(|f| f.object_meta()).collect());
    }
    let mut files: Vec<ObjectMeta> = lake
        .list(&Path::from(table.name()))
        .await?
        .into_iter()
        .filter(|m| {
            m.location.as_ref().ends_with(".parquet")
                && m.location
                    .parts()
                    .nth(1)
                    .is_some_and(|d| d.as_ref().starts_with("dt="))
        })
        .collect();
    files.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(files)
}

/// The statements that create every view over `lake`.
pub async fn view_sql(lake: &Lake) -> Result<String> {
    let mut values = BTreeMap::new();
    // The tables of deleted positions the latest-version views skip.
    let mut deleted = String::new();
    // The tables whose changes views read their changes tables, with that SELECT.
    let mut kept_changes = Vec::new();
    // Each history's newest version, for the job_company_keys table after them.
    let mut histories = BTreeMap::new();
    for table in Table::all() {
        let name = table.name();
        let history = crate::latest::history_now(lake, table).await?;
        let latest = match &history {
            Some(history) => crate::latest::read(lake, table)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(%table, error = %format!("{e:#}"), "the latest table cannot be read; the views read the history");
                    None
                })
                .filter(|l| l.exact_for(history)),
            None => None,
        };
        // Whether the rows read keep the columns the latest table adds (see
        // `latest::added_columns`): the salaries per year `jobs` has.
        let mut added = false;
        let latest = match latest {
            // The latest table, exact for the history the views read.
            Some(latest) => {
                let (prepare, select) = crate::latest::view_select(lake, table, &latest);
                deleted.push_str(&prepare);
                added = !latest.files.is_empty() && latest.has_added_columns(table);
                select
            }
            // None yet, or behind: the last version of every id out of the whole history.
            None => latest_of(&ident(&format!("{name}_history"))),
        };
        if table == Table::Jobs {
            let jobs = if added {
                crate::salaries::kept(&latest)
            } else {
                crate::salaries::over(&latest)
            };
            values.insert("jobs".to_string(), jobs);
        }
        values.insert(format!("{name}_latest"), latest);
        if let Some(changes) = crate::changes::view_select(lake, table, history.as_ref()).await {
            if changes.kept {
                kept_changes.push((table, changes.select.clone()));
            }
            values.insert(format!("{name}_changes"), changes.select);
        }
        let has_files = match &history {
            Some(history) => !history.files.is_empty(),
            None => !history_files(lake, table).await?.is_empty(),
        };
        // A glob, not the log's list of files: a session holding these views keeps reading
        // the table's rows while a compaction swaps its files (the log and the partitions
        // name the same files once each command ends; see `history_files`).
        let source = if has_files {
            read_parquet(&lake.reader_path(&format!("{name}/dt=*/*.parquet")), true)
        } else {
            let cols = columns(table)
                .iter()
                .map(|c| format!("CAST(NULL AS {}) AS {}", c.ty.duckdb(), ident(c.name)))
                .chain(std::iter::once("CAST(NULL AS DATE) AS dt".to_string()));
            empty_select(cols)
        };
        values.insert(format!("{name}_source"), source);
        if table == crate::lifecycle::TABLE {
            let (prepare, select) = crate::lifecycle::view_select(lake, history.as_ref()).await;
            deleted.push_str(&prepare);
            values.insert(crate::lifecycle::table_name(), select);
        }
        histories.insert(table.name(), history);
    }
    let history = |t: Table| histories.get(t.name()).and_then(Option::as_ref);
    let (prepare, links) =
        crate::company_links::view_select(lake, history(Table::Jobs), history(Table::CareerSites))
            .await;
    deleted.push_str(&prepare);
    values.insert("job_companies".into(), links);
    values.insert(
        "company_key_macros".into(),
        crate::company_links::MACROS.to_string(),
    );
    let runs = if has_parquet(lake, layout::ledger_root().as_ref()).await? {
        read_parquet(
            &lake.reader_path(&format!("{}/*.parquet", layout::ledger_root())),
            false,
        )
    } else {
        let schema = joblake_writer::ledger_schema();
        empty_select(schema.fields().iter().map(|f| {
            format!(
                "CAST(NULL AS {}) AS {}",
                duck_type(f.data_type()),
                ident(f.name())
            )
        }))
    };
    // An id's first version is its `new` change, so a kept changes table counts them
    // without the window over every version (which every query of `runs` would pay: DuckDB
    // keeps the join whether or not `new_ids` is read).
    let first_seen = Table::all()
        .iter()
        .map(|t| {
            if let Some((_, kept)) = kept_changes.iter().find(|(k, _)| k == t) {
                format!(
                    "SELECT {} AS source, _run_id AS run_id, count(*) AS new_ids \
                     FROM ({kept}) WHERE change = 'new' GROUP BY _run_id",
                    literal(t.name()),
                )
            } else {
                format!(
                    "SELECT {} AS source, run_id, count(*) AS new_ids \
                     FROM (SELECT min(_run_id) AS run_id FROM {} GROUP BY id) GROUP BY run_id",
                    literal(t.name()),
                    ident(&format!("{}_history", t.name()))
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n");
    values.insert("deleted".into(), deleted);
    values.insert("runs_source".into(), runs);
    values.insert("first_seen".into(), first_seen);
    Ok(fill(VIEWS_SQL, &values))
}

/// A changes SQL's `{hashed}`, `{compared}` and `{flags}` for `table`: the columns whose
/// values make a version differ from the one before (all but the id and the fetch's own
/// `_run_id`, `_fetched_at`, `_page` and `_row`; `_extra` is compared), as their hashes, as
/// "its name when it differs from the version before", and as that list.
pub(crate) fn change_columns(table: Table) -> BTreeMap<String, String> {
    let compared: Vec<&str> = columns(table)
        .iter()
        .map(|c| c.name)
        .filter(|name| *name == "_extra" || (*name != "id" && !name.starts_with('_')))
        .collect();
    let join =
        |f: &dyn Fn(&str) -> String| compared.iter().map(|c| f(c)).collect::<Vec<_>>().join(", ");
    BTreeMap::from([
        (
            "hashed".to_string(),
            join(&|c| format!("hash({0}) AS {0}", ident(c))),
        ),
        (
            "compared".to_string(),
            join(&|c| {
                format!(
                    "CASE WHEN {0} IS DISTINCT FROM lag({0}) OVER w THEN {1} END AS {0}",
                    ident(c),
                    literal(c)
                )
            }),
        ),
        ("flags".to_string(), join(&|c| ident(c))),
    ])
}

/// `template` with each `{name}` that `values` has replaced by its value, in one pass: a
/// value is never searched for placeholders itself, so a lake path such as `lake{runs_source}`
/// stays what it is. Other braces (a comment's, a struct literal's) are left as they are.
pub(crate) fn fill(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after
            .find('}')
            .and_then(|close| Some((close, values.get(&after[..close])?)));
        match value {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The tables a user of `lake` sees: both feeds, and company profiles once enriched.
pub async fn tables_in(lake: &Lake) -> Result<Vec<Table>> {
    let mut tables = Table::feeds().to_vec();
    let companies = Table::Companies.name();
    let enriched = lake.get_opt(&layout::state(companies)).await?.is_some()
        || has_parquet(lake, companies).await?
        || !lake
            .list(&Path::from(format!("{companies}/_delta_log")))
            .await?
            .is_empty();
    if enriched {
        tables.push(Table::Companies);
    }
    Ok(tables)
}

/// The last version of every id of `history`.
pub fn latest_of(history: &str) -> String {
    format!(
        "SELECT * FROM {history}\nQUALIFY row_number() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) = 1"
    )
}

async fn has_parquet(lake: &Lake, prefix: &str) -> Result<bool> {
    Ok(lake
        .list(&Path::from(prefix))
        .await?
        .iter()
        .any(|m| m.location.as_ref().ends_with(".parquet")))
}

fn read_parquet(glob: &str, hive: bool) -> String {
    format!(
        "read_parquet({}, union_by_name = true, hive_partitioning = {hive})",
        literal(glob)
    )
}

fn empty_select(cols: impl Iterator<Item = String>) -> String {
    format!(
        "(SELECT {} WHERE false)",
        cols.collect::<Vec<_>>().join(", ")
    )
}

fn duck_type(t: &arrow::datatypes::DataType) -> &'static str {
    use arrow::datatypes::DataType::*;
    match t {
        Int64 => "BIGINT",
        Float64 => "DOUBLE",
        Boolean => "BOOLEAN",
        Timestamp(_, Some(_)) => "TIMESTAMPTZ",
        Timestamp(_, None) => "TIMESTAMP",
        Date32 => "DATE",
        _ => "VARCHAR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in_one_pass() {
        let values = BTreeMap::from([
            ("a".to_string(), "read_parquet('/x/lake{b}/t')".to_string()),
            ("b".to_string(), "B".to_string()),
        ]);
        assert_eq!(
            fill("{a} {b} {c} {'k': 1} {", &values),
            "read_parquet('/x/lake{b}/t') B {c} {'k': 1} {"
        );
    }
}
