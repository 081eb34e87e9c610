//! The view SQL: `queries/views.sql` filled in for one lake.
//!
//! The latest-version views keep the last version of every id out of the whole history, a
//! window over every row. That result is also written down, as the table's *latest* files
//! under `_joblake/latest/<table>/` (see [`crate::latest`]), with a pointer naming the last
//! run they cover; the views then read the latest files as they are when no run came after
//! them, and otherwise the latest files without the ids newer runs fetched again, plus the
//! latest of those newer rows.

use anyhow::Result;
use joblake_schema::{Table, columns};
use joblake_writer::{Lake, layout};
use object_store::ObjectMeta;
use object_store::path::Path;

use crate::latest::read_latest;
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
        return Ok(live
            .into_iter()
            .map(|f| ObjectMeta {
                location: Path::from(f.path.as_str()),
                last_modified: chrono::Utc::now(),
                size: f.bytes,
                e_tag: None,
                version: None,
            })
            .collect());
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
    let mut sql = VIEWS_SQL.to_string();
    // The superseded-position tables the latest-version views read.
    let mut superseded = String::new();
    for table in Table::all() {
        let name = table.name();
        let files = history_files(lake, table).await?;
        let latest = match read_latest(lake, table).await? {
            None => latest_of(&format!("{name}_history")),
            Some(snap) => {
                let snapshot = snap
                    .files
                    .iter()
                    .map(|f| literal(&lake.reader_path(f)))
                    .collect::<Vec<_>>()
                    .join(", ");
                // The last run after the snapshot, of those whose files are there now.
                let last = files
                    .iter()
                    .filter_map(|m| layout::file_run(&m.location))
                    .filter(|run| *run > snap.through.as_str() && *run != snap.made_by)
                    .max();
                match last {
                    None => format!("SELECT * FROM read_parquet([{snapshot}])"),
                    Some(last) => {
                        let (prepare, view) =
                            snapshot_and_newer(name, &snapshot, &snap.through, last);
                        superseded.push_str(&prepare);
                        view
                    }
                }
            }
        };
        sql = sql.replace(&format!("{{{name}_latest}}"), &latest);
        // A glob, not the log's list of files: a session holding these views keeps reading
        // the table's rows while a compaction swaps its files (the log and the partitions
        // name the same files once each command ends; see `history_files`).
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
        .replace("{superseded}", &superseded)
        .replace("{runs_source}", &runs)
        .replace("{first_seen}", &first_seen))
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

/// The latest-version view of a table whose snapshot (the files `snapshot`, quoted and
/// comma-separated) covers runs through `through`, with runs after it up to `last`: the
/// snapshot without the rows those runs fetched again, plus the latest of their rows. Which
/// snapshot rows those are is worked out once, as the views are built, into a table of their
/// positions (`_joblake_superseded_<table>`): a query then skips them by file and row number,
/// which costs far less than matching every snapshot id against the newer ones, as each
/// query would otherwise. The newer rows are the history's between the two runs, wherever
/// they lie: a compaction that merges their files away leaves a session holding these views
/// reading the same rows. A run after `last` shows once the views are built again. Returns
/// the statement that fills the table, and the view's SELECT.
fn snapshot_and_newer(name: &str, snapshot: &str, through: &str, last: &str) -> (String, String) {
    let superseded = ident(&format!("_joblake_superseded_{name}"));
    let snapshot = format!("read_parquet([{snapshot}], filename = true, file_row_number = true)");
    let newer = format!(
        "{} WHERE _run_id > {} AND _run_id <= {}",
        ident(&format!("{name}_history")),
        literal(through),
        literal(last)
    );
    let prepare = format!(
        "CREATE OR REPLACE TABLE {superseded} AS\n\
         SELECT filename, file_row_number FROM {snapshot}\n\
         SEMI JOIN (SELECT DISTINCT id FROM {newer}) USING (id);\n"
    );
    // `_keep` leads both sides so that a query needing no column (count(*)) reads none: a
    // UNION keeps its first column when nothing above asks for any.
    let view = format!(
        "SELECT * EXCLUDE (_keep) FROM (\n\
         SELECT true AS _keep, * EXCLUDE (filename, file_row_number) FROM {snapshot} AS s\n\
         ANTI JOIN {superseded} AS x\n\
           ON s.filename = x.filename AND s.file_row_number = x.file_row_number\n\
         UNION ALL BY NAME\n\
         SELECT true AS _keep, * FROM {newer}\n\
         QUALIFY row_number() OVER (PARTITION BY id ORDER BY {LATEST_FIRST}) = 1)"
    );
    (prepare, view)
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
