//! Salaries per year (schemas/jobs.md): the four columns the `jobs` view has beyond the jobs
//! table's, worked out from the salary fields alone by `queries/jobs_salaries.sql`.
//!
//! The jobs latest table keeps them: its writer runs that SQL over each history file it
//! writes there ([`Salaries`]), so a Delta reader of `jobs_latest` has them and the `jobs`
//! view reads them as they are ([`kept`]) rather than parse every job's salary in every
//! query. While there is no latest table exact for the history, the view runs the same SQL
//! over the latest versions it works out ([`over`]).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use futures::future::BoxFuture;
use joblake_writer::{AddedColumns, Lake};
use object_store::ObjectMeta;

use crate::{ident, literal};

const SQL: &str = include_str!("../../../queries/jobs_salaries.sql");

/// The columns, in the order the SQL adds them.
pub const COLUMNS: [&str; 4] = [
    "salary_period",
    "salary_period_basis",
    "salary_annual_from",
    "salary_annual_to",
];

/// Their Arrow fields, as the jobs latest table keeps them.
pub fn fields() -> Vec<Field> {
    vec![
        Field::new(COLUMNS[0], DataType::Utf8, true),
        Field::new(COLUMNS[1], DataType::Utf8, true),
        Field::new(COLUMNS[2], DataType::Float64, true),
        Field::new(COLUMNS[3], DataType::Float64, true),
    ]
}

/// The SQL over `rows` (a SELECT of jobs rows): each row with the four columns after its own.
pub fn over(rows: &str) -> String {
    let sql = SQL.trim_end().trim_end_matches(';');
    crate::catalog::fill(
        sql,
        &BTreeMap::from([("rows".to_string(), rows.to_string())]),
    )
}

/// The `jobs` view's SELECT over `latest`, rows of the latest table that keeps the columns:
/// the columns where [`over`] puts them, after the table's own and `dt`.
pub fn kept(latest: &str) -> String {
    let cols = COLUMNS.map(ident).join(", ");
    format!("SELECT * EXCLUDE ({cols}), {cols}\nFROM ({latest})")
}

/// The jobs latest table's [`AddedColumns`]: the SQL run by DuckDB over a history file's
/// salary fields.
pub(crate) struct Salaries {
    pub lake: Lake,
}

impl AddedColumns for Salaries {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(fields()))
    }

    fn of<'a>(
        &'a self,
        file: &'a ObjectMeta,
        rows: Range<u64>,
    ) -> BoxFuture<'a, Result<RecordBatch, String>> {
        Box::pin(async move {
            // Two halves side by side, each in a DuckDB session of one thread: the parse is
            // most of the work (regular expressions), and the other core is free while the
            // latest table is written (the fetching is over).
            let path = self.lake.reader_path(file.location.as_ref());
            let middle = rows.start + (rows.end - rows.start) / 2;
            let (first, second) = futures::try_join!(
                self.parse(&path, rows.start..middle),
                self.parse(&path, middle..rows.end)
            )
            .map_err(|e| format!("{e:#}"))?;
            let batches: Vec<RecordBatch> = first.into_iter().chain(second).collect();
            in_order(&batches, rows).map_err(|e| format!("{e:#}"))
        })
    }
}

impl Salaries {
    /// DuckDB's answer for rows `rows` of the file at `path` (as DuckDB reads it): each row's
    /// number in its file, then the columns.
    async fn parse(&self, path: &str, rows: Range<u64>) -> anyhow::Result<Vec<RecordBatch>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // DuckDB reads only the row groups that hold these rows.
        let source = format!(
            "SELECT salary_offered, salary_from, salary_to, salary_currency, file_row_number\n\
             FROM read_parquet({}, file_row_number = true)\n\
             WHERE file_row_number >= {} AND file_row_number < {}",
            literal(path),
            rows.start,
            rows.end
        );
        let sql = format!(
            "SELECT file_row_number::BIGINT, {} FROM ({})",
            COLUMNS.map(ident).join(", "),
            over(&source)
        );
        let mut results = crate::latest::duck(&self.lake, String::new(), vec![sql]).await?;
        Ok(results.pop().unwrap_or_default())
    }
}

/// DuckDB's answer for the file's `rows` (the row's number in its file, then the columns), in
/// the file's order, as one batch of the four columns with [`fields`]' types.
fn in_order(batches: &[RecordBatch], rows: Range<u64>) -> anyhow::Result<RecordBatch> {
    let schema: SchemaRef = Arc::new(Schema::new(fields()));
    if batches.is_empty() {
        anyhow::ensure!(rows.is_empty(), "DuckDB gave no rows for rows {rows:?}");
        return Ok(RecordBatch::new_empty(schema));
    }
    let all = arrow::compute::concat_batches(&batches[0].schema(), batches)?;
    let numbers = all
        .column(0)
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| anyhow::anyhow!("DuckDB gave the row numbers an unexpected type"))?;
    anyhow::ensure!(
        numbers.len() as u64 == rows.end - rows.start,
        "DuckDB gave {} rows for rows {rows:?}",
        numbers.len()
    );
    // Each row once: its number is its place.
    let mut order = vec![u64::MAX; numbers.len()];
    for (i, n) in numbers.iter().enumerate() {
        let slot = n
            .and_then(|n| u64::try_from(n).ok())
            .and_then(|n| n.checked_sub(rows.start))
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| order.get_mut(n))
            .filter(|s| **s == u64::MAX)
            .ok_or_else(|| {
                anyhow::anyhow!("DuckDB gave row number {n:?} of {} rows", numbers.len())
            })?;
        *slot = i as u64;
    }
    let take = UInt64Array::from(order);
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let column = arrow::compute::take(all.column(i + 1).as_ref(), &take, None)?;
            Ok(arrow::compute::cast(&column, f.data_type())?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}
