//! Typed rows of both APIs, their Arrow schemas, the page -> `RecordBatch` mapping and the
//! derived job id.
//!
//! A page's rows arrive as raw JSON. Each row is read as field name -> raw value, each known
//! field is parsed leniently into its typed column, and whatever does not fit (unknown fields,
//! values of the wrong type) is kept verbatim in the `_extra` column and counted. Nothing is
//! dropped silently: a row that cannot load at all comes back in [`DecodedPage::rejected`].
//!
//! ```no_run
//! use joblake_schema::{PageContext, RawRows, Table, decode_page};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rows = RawRows::copied([r#"{"Job URL":"https://x.io/1"}"#]);
//! let ctx = PageContext { run_id: "20260315T120000Z-abcd".into(), fetched_at: chrono::Utc::now(), page: 0 };
//! let page = decode_page(Table::Jobs, &rows, &ctx)?;
//! assert_eq!(page.batch.num_rows(), 1);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod columns;
mod decode;
mod job_id;
mod raw;
mod rows;
mod values;

use std::fmt;
use std::str::FromStr;

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};

pub use bytestring::ByteString;
pub use columns::{
    Column, ColumnType, ID_COLUMN, META_COLUMNS, arrow_schema, columns, id_column,
    source_field_name,
};
pub use decode::{
    DecodedRows, decode_career_sites, decode_companies, decode_jobs, decode_page, to_record_batch,
};
pub use job_id::{TRACKING_PARAMS, UNIT_SEPARATOR, job_id, job_location, normalize_url};
pub use raw::RawRows;
pub use rows::{CareerSiteRow, CompanyRow, JobRow, Row, RowMeta};
pub use values::{parse_date, parse_timestamp};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// serde_arrow could not build the batch (a bug in the row types, not bad data).
    #[error("could not build the {table} record batch: {source}")]
    Arrow {
        /// The table being built.
        table: Table,
        /// The underlying error.
        source: serde_arrow::Error,
    },
    /// The batch came out with a schema other than [`arrow_schema`] (a bug in this crate).
    #[error("the {table} record batch came out with schema {found}, not the table's schema")]
    SchemaDrift {
        /// The table being built.
        table: Table,
        /// The schema the batch had.
        found: String,
    },
    /// A table name that is neither `career_sites` nor `jobs`.
    #[error("unknown table {0:?}: use \"career_sites\", \"jobs\" or \"companies\"")]
    UnknownTable(String),
}

/// Result with [`SchemaError`].
pub type Result<T, E = SchemaError> = std::result::Result<T, E>;

/// The tables of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Jobo career sites (`career_sites`).
    CareerSites,
    /// Sentrion jobs (`jobs`).
    Jobs,
    /// Jobo company profiles of chosen career sites (`companies`, by `joblake enrich`).
    Companies,
}

impl Table {
    /// The table's name in the lake and in DuckDB.
    pub fn name(self) -> &'static str {
        match self {
            Table::CareerSites => "career_sites",
            Table::Jobs => "jobs",
            Table::Companies => "companies",
        }
    }

    /// Every table.
    pub fn all() -> [Table; 3] {
        [Table::CareerSites, Table::Jobs, Table::Companies]
    }

    /// The tables `refresh` fills from the two feeds.
    pub fn feeds() -> [Table; 2] {
        [Table::CareerSites, Table::Jobs]
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Table {
    type Err = SchemaError;
    fn from_str(s: &str) -> Result<Self> {
        Table::all()
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| SchemaError::UnknownTable(s.to_owned()))
    }
}

/// Where a page came from; stamped on each of its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageContext {
    /// The run that fetched the page.
    pub run_id: String,
    /// When the page was fetched.
    pub fetched_at: DateTime<Utc>,
    /// The page's number within the run's scan.
    pub page: i64,
}

/// One decoded page.
#[derive(Debug, Clone)]
pub struct DecodedPage {
    /// The rows that loaded, with [`arrow_schema`] of the table.
    pub batch: RecordBatch,
    /// What happened to the page's rows.
    pub stats: DecodeStats,
    /// Rows that could not load, with why.
    pub rejected: Vec<Rejected>,
}

/// Counts of what decoding did; summed over pages for the run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Rows loaded.
    pub rows: u64,
    /// Fields the schema does not know (kept in `_extra`).
    pub unknown_fields: u64,
    /// Values that could not take their column's type (kept in `_extra`).
    pub type_mismatches: u64,
    /// Rows not loaded (see [`Rejected`]).
    pub rejected: u64,
}

impl DecodeStats {
    /// Adds another page's counts to these.
    pub fn add(&mut self, other: &DecodeStats) {
        self.rows += other.rows;
        self.unknown_fields += other.unknown_fields;
        self.type_mismatches += other.type_mismatches;
        self.rejected += other.rejected;
    }
}

/// A row that could not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its 0-based position in the page.
    pub row: i64,
    /// Why it was rejected.
    pub reason: String,
    /// The row's JSON text as received.
    pub raw: String,
}

#[cfg(test)]
mod tests;
