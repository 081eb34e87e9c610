//! The column catalogue of both tables: names, types, source fields and meaning, in column order.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::Table;

/// The column that keys every table.
pub const ID_COLUMN: &str = "id";

/// Metadata columns, last on every row, in this order.
pub const META_COLUMNS: [&str; 5] = ["_run_id", "_fetched_at", "_page", "_row", "_extra"];

/// The name of the key column of every table (`"id"`).
pub fn id_column() -> &'static str {
    ID_COLUMN
}

/// The logical type of a column; each maps to one Arrow and one DuckDB type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Utf8,
    /// A list of UTF-8 texts (elements may be null).
    Utf8List,
    /// A calendar date.
    Date,
    /// An instant, microseconds, UTC.
    Timestamp,
    /// A 64-bit float.
    Float64,
    /// A 64-bit integer.
    Int64,
    /// A boolean.
    Boolean,
    /// Company funding rounds: a list of structs.
    FundingRounds,
    /// Company leaders: a list of structs.
    Leadership,
    /// Company layoffs: a list of structs.
    Layoffs,
    /// Company ratings: a list of structs.
    Ratings,
}

fn list_of(fields: Vec<Field>) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(fields.into()),
        true,
    )))
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

impl ColumnType {
    /// The Arrow data type this column is stored as.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Utf8List => utf8_list(),
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
            }
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::FundingRounds => list_of(vec![
                Field::new("round", DataType::Utf8, true),
                Field::new("date", DataType::Date32, true),
                Field::new("amount_usd", DataType::Float64, true),
                Field::new("investors", utf8_list(), true),
            ]),
            ColumnType::Leadership => list_of(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("title", DataType::Utf8, true),
                Field::new("linkedin_url", DataType::Utf8, true),
            ]),
            ColumnType::Layoffs => list_of(vec![
                Field::new("date", DataType::Date32, true),
                Field::new("headcount", DataType::Int64, true),
            ]),
            ColumnType::Ratings => list_of(vec![
                Field::new("source", DataType::Utf8, true),
                Field::new("rating", DataType::Float64, true),
                Field::new("review_count", DataType::Int64, true),
            ]),
        }
    }

    /// How the Arrow type is written in `schemas/*.md`.
    pub fn arrow_name(self) -> &'static str {
        match self {
            ColumnType::Utf8 => "Utf8",
            ColumnType::Utf8List => "List<Utf8>",
            ColumnType::Date => "Date32",
            ColumnType::Timestamp => "Timestamp(µs, \"UTC\")",
            ColumnType::Float64 => "Float64",
            ColumnType::Int64 => "Int64",
            ColumnType::Boolean => "Boolean",
            ColumnType::FundingRounds => {
                "List<Struct<round: Utf8, date: Date32, amount_usd: Float64, investors: List<Utf8>>>"
            }
            ColumnType::Leadership => "List<Struct<name: Utf8, title: Utf8, linkedin_url: Utf8>>",
            ColumnType::Layoffs => "List<Struct<date: Date32, headcount: Int64>>",
            ColumnType::Ratings => {
                "List<Struct<source: Utf8, rating: Float64, review_count: Int64>>"
            }
        }
    }

    /// The type DuckDB gives the column when it reads the Parquet files.
    pub fn duckdb(self) -> &'static str {
        match self {
            ColumnType::Utf8 => "VARCHAR",
            ColumnType::Utf8List => "VARCHAR[]",
            ColumnType::Date => "DATE",
            ColumnType::Timestamp => "TIMESTAMP WITH TIME ZONE",
            ColumnType::Float64 => "DOUBLE",
            ColumnType::Int64 => "BIGINT",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::FundingRounds => {
                "STRUCT(round VARCHAR, date DATE, amount_usd DOUBLE, investors VARCHAR[])[]"
            }
            ColumnType::Leadership => "STRUCT(name VARCHAR, title VARCHAR, linkedin_url VARCHAR)[]",
            ColumnType::Layoffs => "STRUCT(date DATE, headcount BIGINT)[]",
            ColumnType::Ratings => "STRUCT(source VARCHAR, rating DOUBLE, review_count BIGINT)[]",
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The column name (snake_case).
    pub name: &'static str,
    /// The API field it is read from; `None` for derived and metadata columns.
    pub source: Option<&'static str>,
    /// The column's type.
    pub ty: ColumnType,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    /// What the column means, in one line.
    pub doc: &'static str,
}

const fn col(
    name: &'static str,
    source: &'static str,
    ty: ColumnType,
    doc: &'static str,
) -> Column {
    Column {
        name,
        source: Some(source),
        ty,
        nullable: true,
        doc,
    }
}

use ColumnType as T;

const META: [Column; 5] = [
    Column {
        name: "_run_id",
        source: None,
        ty: T::Utf8,
        nullable: false,
        doc: "Id of the joblake run that fetched the row; sorts in time order.",
    },
    Column {
        name: "_fetched_at",
        source: None,
        ty: T::Timestamp,
        nullable: false,
        doc: "When the page holding the row was fetched (UTC).",
    },
    Column {
        name: "_page",
        source: None,
        ty: T::Int64,
        nullable: false,
        doc: "Number of the page within the run's scan of this table, as the fetcher counts it.",
    },
    Column {
        name: "_row",
        source: None,
        ty: T::Int64,
        nullable: false,
        doc: "0-based position of the row in its page (rejected rows keep their position).",
    },
    Column {
        name: "_extra",
        source: None,
        ty: T::Utf8,
        nullable: true,
        doc: "JSON object text of unknown fields and of values that could not take their column's type, verbatim; null when none.",
    },
];

static CAREER_SITES: [Column; 19] = [
    Column {
        name: "id",
        source: Some("id"),
        ty: T::Utf8,
        nullable: false,
        doc: "Stable Jobo company identifier (uuid); the key. A row without a string id is rejected.",
    },
    col("name", "name", T::Utf8, "Company display name."),
    col(
        "website",
        "website",
        T::Utf8,
        "Company marketing website, when known.",
    ),
    col("logo_url", "logo_url", T::Utf8, "Hosted logo URL."),
    col(
        "summary",
        "summary",
        T::Utf8,
        "Short (one-paragraph) company summary.",
    ),
    col(
        "industries",
        "industries",
        T::Utf8List,
        "1-3 industry tags describing what the company does.",
    ),
    col(
        "categories",
        "categories",
        T::Utf8List,
        "Business-model bucket tags (b2b, b2c, saas, service-provider).",
    ),
    col(
        "linkedin_url",
        "linkedin_url",
        T::Utf8,
        "Company LinkedIn profile URL.",
    ),
    col(
        "crunchbase_url",
        "crunchbase_url",
        T::Utf8,
        "Company Crunchbase profile URL.",
    ),
    col(
        "ats",
        "ats",
        T::Utf8,
        "ATS / job-board provider the career site runs on (greenhouse, lever, workday, ...).",
    ),
    col(
        "listing_url",
        "listing_url",
        T::Utf8,
        "Career-site URL where the company's jobs are listed.",
    ),
    col(
        "discovered_at",
        "discovered_at",
        T::Timestamp,
        "When Jobo first discovered the career site; stable across re-enrichment.",
    ),
    col(
        "updated_at",
        "updated_at",
        T::Timestamp,
        "When Jobo last updated the company profile.",
    ),
    col(
        "details_url",
        "details_url",
        T::Utf8,
        "URL of the fully enriched company profile (GET /api/companies/{id}).",
    ),
    META[0],
    META[1],
    META[2],
    META[3],
    META[4],
];

static JOBS: [Column; 27] = [
    Column {
        name: "id",
        source: None,
        ty: T::Utf8,
        nullable: false,
        doc: "Derived job id: j_ + 32 hex chars of SHA-256 over the job's stable handles (see the recipe).",
    },
    col(
        "job_type",
        "Job Type",
        T::Utf8,
        "Employment type (Full Time, Contract, ...).",
    ),
    col("job_title", "Job Title", T::Utf8, "Title of the posting."),
    col("apply_url", "Apply URL", T::Utf8, "Where to apply."),
    col(
        "post_date",
        "Post Date",
        T::Date,
        "Date the job was posted.",
    ),
    col(
        "valid_through",
        "Valid Through",
        T::Date,
        "Date the posting expires.",
    ),
    col("city", "City", T::Utf8, "City of the job."),
    col(
        "job_board",
        "Job Board",
        T::Utf8,
        "Board the posting was found on (Linkedin, ...).",
    ),
    col(
        "job_description",
        "Job Description",
        T::Utf8,
        "Full posting text.",
    ),
    col(
        "country",
        "Country",
        T::Utf8,
        "Country as given by the API (\"US\" and \"United States\" both occur; not rewritten).",
    ),
    col("company_name", "Company Name", T::Utf8, "Hiring company."),
    col("state", "State", T::Utf8, "State or region of the job."),
    col(
        "salary_offered",
        "Salary Offered",
        T::Utf8,
        "Salary as free text (\"$150,000 - $200,000/year\").",
    ),
    col("logo_url", "Logo URL", T::Utf8, "Company logo URL."),
    col(
        "is_remote",
        "Is Remote",
        T::Boolean,
        "Whether the job is remote.",
    ),
    col("job_url", "Job URL", T::Utf8, "URL of the posting."),
    col(
        "department_name",
        "Department Name",
        T::Utf8List,
        "Departments of the job.",
    ),
    col(
        "seniority_level",
        "Seniority Level",
        T::Utf8,
        "Seniority (Mid Level, ...).",
    ),
    col(
        "salary_currency",
        "Salary Currency",
        T::Utf8,
        "Currency of the salary figures (USD, ...).",
    ),
    col(
        "salary_to",
        "Salary To",
        T::Float64,
        "Upper salary bound (integers and floats both load).",
    ),
    col(
        "salary_from",
        "Salary From",
        T::Float64,
        "Lower salary bound (integers and floats both load).",
    ),
    col(
        "skills",
        "Skills",
        T::Utf8List,
        "Skills named by the posting.",
    ),
    META[0],
    META[1],
    META[2],
    META[3],
    META[4],
];

static COMPANIES: [Column; 36] = [
    Column {
        name: "id",
        source: Some("id"),
        ty: T::Utf8,
        nullable: false,
        doc: "Jobo company id, as in `career_sites.id`; the key. A profile without a string id is rejected.",
    },
    col("name", "name", T::Utf8, "Company display name."),
    col(
        "legal_name",
        "legal_name",
        T::Utf8,
        "Registered legal name.",
    ),
    col(
        "description",
        "description",
        T::Utf8,
        "Company description.",
    ),
    col("website", "website", T::Utf8, "Company website."),
    col(
        "listing_url",
        "listing_url",
        T::Utf8,
        "Career-site URL where its jobs are listed.",
    ),
    col("logo_url", "logo_url", T::Utf8, "Hosted logo URL."),
    col(
        "linkedin_url",
        "linkedin_url",
        T::Utf8,
        "LinkedIn company page.",
    ),
    col(
        "crunchbase_url",
        "crunchbase_url",
        T::Utf8,
        "Crunchbase organisation page.",
    ),
    col(
        "twitter_url",
        "twitter_url",
        T::Utf8,
        "X (Twitter) profile.",
    ),
    col(
        "headquarters_city",
        "headquarters_city",
        T::Utf8,
        "City of the headquarters.",
    ),
    col(
        "headquarters_state",
        "headquarters_state",
        T::Utf8,
        "State or region of the headquarters.",
    ),
    col(
        "headquarters_country",
        "headquarters_country",
        T::Utf8,
        "Country of the headquarters.",
    ),
    col(
        "country_code",
        "country_code",
        T::Utf8,
        "ISO 3166-1 alpha-2 country code.",
    ),
    col(
        "founding_year",
        "founding_year",
        T::Int64,
        "Year the company was founded.",
    ),
    col(
        "company_size",
        "company_size",
        T::Utf8,
        "Size band (1-10, 11-50, ...).",
    ),
    col("revenue", "revenue", T::Utf8, "Revenue band, as text."),
    col(
        "is_agency",
        "is_agency",
        T::Boolean,
        "Whether the company is a staffing agency.",
    ),
    col("industries", "industries", T::Utf8List, "Industry tags."),
    col(
        "naics_codes",
        "naics_codes",
        T::Utf8List,
        "NAICS industry codes.",
    ),
    col(
        "company_type",
        "company_type",
        T::Utf8,
        "for_profit or non_profit.",
    ),
    col(
        "funding_stage",
        "funding_stage",
        T::Utf8,
        "Latest funding stage tag.",
    ),
    col(
        "total_funding_usd",
        "total_funding_usd",
        T::Float64,
        "Total funding raised, USD.",
    ),
    col(
        "funding_rounds",
        "funding_rounds",
        T::FundingRounds,
        "Funding rounds: round, date, amount in USD, investors.",
    ),
    col(
        "leadership",
        "leadership",
        T::Leadership,
        "Leaders: name, title, LinkedIn URL.",
    ),
    col(
        "layoffs",
        "layoffs",
        T::Layoffs,
        "Layoffs reported: date and headcount.",
    ),
    col(
        "ratings",
        "ratings",
        T::Ratings,
        "Employer ratings: source, rating, number of reviews.",
    ),
    col(
        "h1b_filings",
        "h1b_filings",
        T::Int64,
        "H-1B visa filings counted.",
    ),
    col(
        "tech_stack",
        "tech_stack",
        T::Utf8List,
        "Technologies the company is seen to use.",
    ),
    col(
        "page_rank",
        "page_rank",
        T::Float64,
        "Jobo's importance score of the company.",
    ),
    col(
        "updated_at",
        "updated_at",
        T::Timestamp,
        "When Jobo last updated the profile (UTC).",
    ),
    META[0],
    META[1],
    META[2],
    META[3],
    META[4],
];

/// Every column of `table`, in column order: id, the API fields, then the metadata columns.
pub fn columns(table: Table) -> &'static [Column] {
    match table {
        Table::CareerSites => &CAREER_SITES,
        Table::Jobs => &JOBS,
        Table::Companies => &COMPANIES,
    }
}

/// The API field a column is read from; `None` for derived/metadata columns and unknown names.
pub fn source_field_name(table: Table, column: &str) -> Option<&'static str> {
    columns(table)
        .iter()
        .find(|c| c.name == column)
        .and_then(|c| c.source)
}

fn build_schema(table: Table) -> SchemaRef {
    let fields: Vec<Field> = columns(table)
        .iter()
        .map(|c| Field::new(c.name, c.ty.arrow(), c.nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of `table` (built once, then shared).
pub fn arrow_schema(table: Table) -> SchemaRef {
    static CAREER: OnceLock<SchemaRef> = OnceLock::new();
    static JOBS_SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    static COMPANIES_SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    let cell = match table {
        Table::CareerSites => &CAREER,
        Table::Jobs => &JOBS_SCHEMA,
        Table::Companies => &COMPANIES_SCHEMA,
    };
    Arc::clone(cell.get_or_init(|| build_schema(table)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_columns_follow_the_source_name_rule() {
        for c in columns(Table::Jobs) {
            if let Some(source) = c.source {
                assert_eq!(c.name, source.to_lowercase().replace(' ', "_"));
            }
        }
    }

    #[test]
    fn every_table_ends_with_the_metadata_columns_and_starts_with_id() {
        for table in Table::all() {
            let cols = columns(table);
            assert_eq!(cols[0].name, ID_COLUMN);
            assert!(!cols[0].nullable);
            let tail: Vec<&str> = cols[cols.len() - 5..].iter().map(|c| c.name).collect();
            assert_eq!(tail, META_COLUMNS);
            let schema = arrow_schema(table);
            assert_eq!(schema.fields().len(), cols.len());
            let mut names: Vec<&str> = cols.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), cols.len(), "duplicate column in {table}");
        }
    }

    #[test]
    fn timestamps_are_utc_microseconds() {
        let schema = arrow_schema(Table::CareerSites);
        let f = schema.field_with_name("updated_at").expect("column");
        assert_eq!(
            f.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn source_names() {
        assert_eq!(
            source_field_name(Table::Jobs, "job_title"),
            Some("Job Title")
        );
        assert_eq!(source_field_name(Table::Jobs, "id"), None);
        assert_eq!(source_field_name(Table::CareerSites, "id"), Some("id"));
        assert_eq!(source_field_name(Table::Jobs, "_extra"), None);
        assert_eq!(source_field_name(Table::Jobs, "nope"), None);
    }
}
