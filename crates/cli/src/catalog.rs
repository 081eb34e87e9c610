//! The view SQL: `queries/views.sql` filled in for one lake.

use anyhow::Result;
use joblake_schema::{Table, columns};
use joblake_views::{ident, literal};
use joblake_writer::Lake;
use object_store::path::Path;

const VIEWS_SQL: &str = include_str!("../../../queries/views.sql");

/// The statements that create every view over `lake`.
pub async fn view_sql(lake: &Lake) -> Result<String> {
    let mut sql = VIEWS_SQL.to_string();
    for table in Table::all() {
        let name = table.name();
        let source = if has_parquet(lake, name).await? {
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
    Ok(sql.replace("{runs_source}", &runs))
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
