//! The view SQL: `queries/views.sql` filled in for one lake.
//!
//! The latest-version views keep the last version of every id out of the whole history, a
//! window over every row. `joblake compact` also writes that result down, as a *snapshot*
//! under `_joblake/latest/<table>/`, with a pointer naming the last run it covers; the views
//! then read the snapshot as it is when no run came after it, and otherwise the snapshot
//! without the ids newer runs fetched again, plus the latest of those newer rows.

use anyhow::Result;
use joblake_schema::{Table, columns};
use joblake_views::{ident, literal};
use joblake_writer::Lake;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

const VIEWS_SQL: &str = include_str!("../../../queries/views.sql");

/// The order in which a later version beats an earlier one.
pub const LATEST_FIRST: &str = "_run_id DESC, _page DESC, _row DESC";

/// `_joblake/latest/<table>.json`: the snapshot the latest-version view starts from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The format of this pointer.
    pub format: u32,
    /// The last run whose rows the snapshot covers.
    pub through: String,
    /// The compaction that made it: its merged files hold only rows the snapshot covers.
    pub made_by: String,
    /// Lake-relative paths of the snapshot's files.
    pub files: Vec<String>,
    /// The snapshot before, kept until the next one so readers holding views of it finish.
    #[serde(default)]
    pub previous: Vec<String>,
    /// Rows (ids) in it.
    pub rows: u64,
}

/// Where a table's snapshot pointer lives.
pub fn snapshot_pointer(table: Table) -> Path {
    Path::from(format!("_joblake/latest/{}.json", table.name()))
}

/// The table's snapshot pointer, if a compaction wrote one.
pub async fn read_snapshot(lake: &Lake, table: Table) -> Result<Option<Snapshot>> {
    Ok(lake
        .get_opt(&snapshot_pointer(table))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The history's run id of a data file `part-<run>-<n>.parquet`.
fn file_run(path: &Path) -> Option<&str> {
    let name = path.filename()?.strip_prefix("part-")?;
    name.split('-').next()
}

/// The statements that create every view over `lake`.
pub async fn view_sql(lake: &Lake) -> Result<String> {
    let mut sql = VIEWS_SQL.to_string();
    for table in Table::all() {
        let name = table.name();
        let files: Vec<Path> = lake
            .list(&Path::from(name))
            .await?
            .into_iter()
            .map(|m| m.location)
            .filter(|p| p.as_ref().ends_with(".parquet"))
            .collect();
        let latest = match read_snapshot(lake, table).await? {
            None => latest_of(&format!("{name}_history")),
            Some(snap) => {
                let snapshot = format!(
                    "read_parquet([{}])",
                    snap.files
                        .iter()
                        .map(|f| literal(&lake.reader_path(f)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let newer = files.iter().any(|p| {
                    file_run(p)
                        .is_some_and(|run| run > snap.through.as_str() && run != snap.made_by)
                });
                if newer {
                    let history = ident(&format!("{name}_history"));
                    let after = literal(&snap.through);
                    format!(
                        "SELECT * FROM {snapshot} ANTI JOIN \
                         (SELECT DISTINCT id FROM {history} WHERE _run_id > {after}) USING (id)\n\
                         UNION ALL BY NAME\n\
                         SELECT * FROM {history} WHERE _run_id > {after}\n\
                         QUALIFY row_number() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) = 1"
                    )
                } else {
                    format!("SELECT * FROM {snapshot}")
                }
            }
        };
        sql = sql.replace(&format!("{{{name}_latest}}"), &latest);
        let source = if !files.is_empty() {
            read_parquet(&lake.reader_path(&format!("{name}/dt=*/*.parquet")), true)
        } else {
            let cols = columns(table)
                .iter()
                .map(|c| format!("CAST(NULL AS {}) AS {}", c.ty.duckdb(), ident(c.name)))
                .chain(std::iter::once("CAST(NULL AS DATE) AS dt".to_string()));
            empty_select(cols)
        };
        sql = sql.replace(&format!("{{{name}_source}}"), &source);
    }
    let runs = if has_parquet(lake, "_joblake/runs").await? {
        read_parquet(&lake.reader_path("_joblake/runs/*.parquet"), false)
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
    let first_seen = Table::all()
        .iter()
        .map(|t| {
            format!(
                "SELECT {} AS source, run_id, count(*) AS new_ids \
                 FROM (SELECT min(_run_id) AS run_id FROM {} GROUP BY id) GROUP BY run_id",
                literal(t.name()),
                ident(&format!("{}_history", t.name()))
            )
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL\n");
    Ok(sql
        .replace("{runs_source}", &runs)
        .replace("{first_seen}", &first_seen))
}

/// The tables a user of `lake` sees: both feeds, and company profiles once enriched.
pub async fn tables_in(lake: &Lake) -> Result<Vec<Table>> {
    let mut tables = Table::feeds().to_vec();
    let enriched = lake
        .get_opt(&Path::from(format!(
            "_joblake/state/{}.json",
            Table::Companies.name()
        )))
        .await?
        .is_some()
        || has_parquet(lake, Table::Companies.name()).await?;
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
