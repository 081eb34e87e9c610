//! Page rows (raw JSON) -> typed rows -> Arrow `RecordBatch`.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::FieldRef;
use arrow::record_batch::RecordBatch;
use serde_json::value::RawValue;

use crate::columns::{META_COLUMNS, arrow_schema};
use crate::job_id::{job_id, job_location};
use crate::rows::{
    CareerSiteRow, CompanyRow, FundingRound, JobRow, Layoff, Leader, Rating, Row, RowMeta,
};
use crate::values::{RawFields, RowReader, json_kind};
use crate::{DecodeStats, DecodedPage, PageContext, RawRows, Rejected, Result, SchemaError, Table};

/// Typed rows of one page, before they become a `RecordBatch`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRows<T> {
    /// The rows that loaded, in page order.
    pub rows: Vec<T>,
    /// What happened to the page's rows.
    pub stats: DecodeStats,
    /// Rows that could not load, with why.
    pub rejected: Vec<Rejected>,
}

impl<T> DecodedRows<T> {
    fn with_capacity(n: usize) -> Self {
        DecodedRows {
            rows: Vec::with_capacity(n),
            stats: DecodeStats::default(),
            rejected: Vec::new(),
        }
    }

    fn reject(&mut self, row: i64, reason: String, raw: &str) {
        self.stats.rejected += 1;
        self.rejected.push(Rejected {
            row,
            reason,
            raw: raw.to_owned(),
        });
    }
}

/// Reads a row as an object, or says why it is not one.
fn read_object(raw: &str) -> std::result::Result<RowReader<'_>, String> {
    let kind = json_kind(raw);
    if kind != "an object" {
        return Err(format!("row is {kind}, not a JSON object"));
    }
    serde_json::from_str::<RawFields<'_>>(raw)
        .map(RowReader::new)
        .map_err(|e| format!("row could not be read as a JSON object: {e}"))
}

fn meta(ctx: &PageContext, row: i64, extra: Option<String>) -> RowMeta<'_> {
    RowMeta {
        run_id: Cow::Borrowed(&ctx.run_id),
        fetched_at: ctx.fetched_at,
        page: ctx.page,
        row,
        extra,
    }
}

/// Position of the i-th row of a page (pages are far smaller than i64::MAX).
fn position(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// Decodes Jobo career-site rows into typed rows.
pub fn decode_career_sites<'a>(
    rows: &'a RawRows,
    ctx: &'a PageContext,
) -> DecodedRows<CareerSiteRow<'a>> {
    let mut out = DecodedRows::with_capacity(rows.len());
    for (i, raw) in rows.iter().enumerate() {
        let pos = position(i);
        let mut r = match read_object(raw) {
            Ok(r) => r,
            Err(reason) => {
                out.reject(pos, reason, raw);
                continue;
            }
        };
        let id = match r.peek("id") {
            None => Err("career site has no \"id\" field".to_owned()),
            Some(v) => match serde_json::from_str::<String>(v.get()) {
                Ok(s) if s.trim().is_empty() => Err("career site has a blank \"id\"".to_owned()),
                Ok(s) => Ok(s),
                Err(_) => Err(format!(
                    "career site \"id\" is {}, not a string",
                    json_kind(v.get())
                )),
            },
        };
        let id = match id {
            Ok(id) => id,
            Err(reason) => {
                out.reject(pos, reason, raw);
                continue;
            }
        };
        // Mark the id as read so it does not land in `_extra`.
        let _ = r.utf8("id");
        let mut row = CareerSiteRow {
            id,
            name: r.utf8("name"),
            website: r.utf8("website"),
            logo_url: r.utf8("logo_url"),
            summary: r.utf8("summary"),
            industries: r.utf8_list("industries"),
            categories: r.utf8_list("categories"),
            linkedin_url: r.utf8("linkedin_url"),
            crunchbase_url: r.utf8("crunchbase_url"),
            ats: r.utf8("ats"),
            listing_url: r.utf8("listing_url"),
            discovered_at: r.timestamp("discovered_at"),
            updated_at: r.timestamp("updated_at"),
            details_url: r.utf8("details_url"),
            meta: meta(ctx, pos, None),
        };
        let left = r.finish();
        out.stats.rows += 1;
        out.stats.unknown_fields += left.unknown;
        out.stats.type_mismatches += left.mismatched;
        row.meta.extra = left.extra;
        out.rows.push(row);
    }
    out
}

/// Decodes Sentrion job rows into typed rows, deriving each job's id.
pub fn decode_jobs<'a>(rows: &'a RawRows, ctx: &'a PageContext) -> DecodedRows<JobRow<'a>> {
    let mut out = DecodedRows::with_capacity(rows.len());
    for (i, raw) in rows.iter().enumerate() {
        let pos = position(i);
        let mut r = match read_object(raw) {
            Ok(r) => r,
            Err(reason) => {
                out.reject(pos, reason, raw);
                continue;
            }
        };
        // A post date in an odd format still identifies the job: use its text as given.
        let post_date_text = r
            .peek("Post Date")
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
        let mut row = JobRow {
            id: String::new(),
            job_type: r.utf8("Job Type"),
            job_title: r.utf8("Job Title"),
            apply_url: r.utf8("Apply URL"),
            post_date: r.date("Post Date"),
            valid_through: r.date("Valid Through"),
            city: r.utf8("City"),
            job_board: r.utf8("Job Board"),
            job_description: r.utf8("Job Description"),
            country: r.utf8("Country"),
            company_name: r.utf8("Company Name"),
            state: r.utf8("State"),
            salary_offered: r.utf8("Salary Offered"),
            logo_url: r.utf8("Logo URL"),
            is_remote: r.boolean("Is Remote"),
            job_url: r.utf8("Job URL"),
            department_name: r.utf8_list("Department Name"),
            seniority_level: r.utf8("Seniority Level"),
            salary_currency: r.utf8("Salary Currency"),
            salary_to: r.float64("Salary To"),
            salary_from: r.float64("Salary From"),
            skills: r.utf8_list("Skills"),
            meta: meta(ctx, pos, None),
        };
        let post_date = row
            .post_date
            .map(|d| d.to_string()) // YYYY-MM-DD, without a format string parsed per row
            .or(post_date_text);
        let location = job_location(
            row.city.as_deref(),
            row.state.as_deref(),
            row.country.as_deref(),
        );
        let Some(id) = job_id(
            row.job_url.as_deref(),
            row.apply_url.as_deref(),
            row.company_name.as_deref(),
            row.job_title.as_deref(),
            location.as_deref(),
            post_date.as_deref(),
        ) else {
            out.reject(pos, "no stable handle for a job id".to_owned(), raw);
            continue;
        };
        row.id = id;
        let left = r.finish();
        out.stats.rows += 1;
        out.stats.unknown_fields += left.unknown;
        out.stats.type_mismatches += left.mismatched;
        row.meta.extra = left.extra;
        out.rows.push(row);
    }
    out
}

/// Builds the `RecordBatch` of `table` from typed rows and checks it has the table's schema.
///
/// serde_arrow builds the API columns; the metadata columns, the same few values down a page,
/// are built here straight from each row's [`RowMeta`].
pub fn to_record_batch<T: Row>(table: Table, rows: &[T]) -> Result<RecordBatch> {
    let schema = arrow_schema(table);
    let (api, meta) = schema
        .fields()
        .split_at(schema.fields().len() - META_COLUMNS.len());
    debug_assert!(meta.iter().map(|f| f.name()).eq(META_COLUMNS));
    let front = serde_arrow::to_record_batch(api, &rows)
        .map_err(|source| SchemaError::Arrow { table, source })?;
    let mut columns = front.columns().to_vec();
    columns.extend(meta_columns(rows.iter().map(Row::meta), meta));
    let batch =
        RecordBatch::try_new(schema.clone(), columns).map_err(|_| SchemaError::SchemaDrift {
            table,
            found: front.schema().to_string(),
        })?;
    Ok(batch)
}

/// The metadata columns (`META_COLUMNS`, typed as `fields`) of rows with these metadata.
fn meta_columns<'a, 'r: 'a>(
    metas: impl ExactSizeIterator<Item = &'a RowMeta<'r>> + Clone,
    fields: &[FieldRef],
) -> Vec<ArrayRef> {
    let run_id: StringArray = metas.clone().map(|m| Some(&*m.run_id)).collect();
    let fetched_at = TimestampMicrosecondArray::from_iter_values(
        metas.clone().map(|m| m.fetched_at.timestamp_micros()),
    )
    .with_data_type(fields[1].data_type().clone());
    let page = Int64Array::from_iter_values(metas.clone().map(|m| m.page));
    let row = Int64Array::from_iter_values(metas.clone().map(|m| m.row));
    let extra: StringArray = metas.map(|m| m.extra.as_deref()).collect();
    vec![
        Arc::new(run_id),
        Arc::new(fetched_at),
        Arc::new(page),
        Arc::new(row),
        Arc::new(extra),
    ]
}

fn finish<T: Row>(table: Table, decoded: DecodedRows<T>) -> Result<DecodedPage> {
    Ok(DecodedPage {
        batch: to_record_batch(table, &decoded.rows)?,
        stats: decoded.stats,
        rejected: decoded.rejected,
    })
}

/// A list of objects, each read by `item` from its fields; `None` (so the whole value goes
/// to `_extra`) when the value is not a list of objects or an item does not fit.
fn list_of<'a, T>(raw: &'a str, item: impl Fn(&mut RowReader<'a>) -> Option<T>) -> Option<Vec<T>> {
    let items: Vec<&'a RawValue> = serde_json::from_str(raw).ok()?;
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let fields = serde_json::from_str::<RawFields<'a>>(it.get()).ok()?;
        let mut r = RowReader::new(fields);
        let value = item(&mut r)?;
        // A nested value that does not fit, or a field nobody knows, sends the whole list to
        // `_extra`, where it is kept verbatim.
        let left = r.finish();
        if left.extra.is_some() {
            return None;
        }
        out.push(value);
    }
    Some(out)
}

/// Decodes Jobo company profiles into typed rows.
pub fn decode_companies<'a>(
    rows: &'a RawRows,
    ctx: &'a PageContext,
) -> DecodedRows<CompanyRow<'a>> {
    let mut out = DecodedRows::with_capacity(rows.len());
    for (i, raw) in rows.iter().enumerate() {
        let pos = position(i);
        let mut r = match read_object(raw) {
            Ok(r) => r,
            Err(reason) => {
                out.reject(pos, reason, raw);
                continue;
            }
        };
        let Some(id) = r
            .peek("id")
            .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
            .filter(|s| !s.trim().is_empty())
        else {
            out.reject(pos, "company profile has no string \"id\"".to_owned(), raw);
            continue;
        };
        let _ = r.utf8("id");
        let mut row = CompanyRow {
            id,
            name: r.utf8("name"),
            legal_name: r.utf8("legal_name"),
            description: r.utf8("description"),
            website: r.utf8("website"),
            listing_url: r.utf8("listing_url"),
            logo_url: r.utf8("logo_url"),
            linkedin_url: r.utf8("linkedin_url"),
            crunchbase_url: r.utf8("crunchbase_url"),
            twitter_url: r.utf8("twitter_url"),
            headquarters_city: r.utf8("headquarters_city"),
            headquarters_state: r.utf8("headquarters_state"),
            headquarters_country: r.utf8("headquarters_country"),
            country_code: r.utf8("country_code"),
            founding_year: r.int64("founding_year"),
            company_size: r.utf8("company_size"),
            revenue: r.utf8("revenue"),
            is_agency: r.boolean("is_agency"),
            industries: r.utf8_list("industries"),
            naics_codes: r.utf8_list("naics_codes"),
            company_type: r.utf8("company_type"),
            funding_stage: r.utf8("funding_stage"),
            total_funding_usd: r.float64("total_funding_usd"),
            funding_rounds: r.with("funding_rounds", |raw| {
                list_of(raw, |f| {
                    Some(FundingRound {
                        round: f.utf8("round"),
                        date: f.date("date"),
                        amount_usd: f.float64("amount_usd"),
                        investors: f.utf8_list("investors"),
                    })
                })
            }),
            leadership: r.with("leadership", |raw| {
                list_of(raw, |f| {
                    Some(Leader {
                        name: f.utf8("name"),
                        title: f.utf8("title"),
                        linkedin_url: f.utf8("linkedin_url"),
                    })
                })
            }),
            layoffs: r.with("layoffs", |raw| {
                list_of(raw, |f| {
                    Some(Layoff {
                        date: f.date("date"),
                        headcount: f.int64("headcount"),
                    })
                })
            }),
            ratings: r.with("ratings", |raw| {
                list_of(raw, |f| {
                    Some(Rating {
                        source: f.utf8("source"),
                        rating: f.float64("rating"),
                        review_count: f.int64("review_count"),
                    })
                })
            }),
            h1b_filings: r.int64("h1b_filings"),
            tech_stack: r.utf8_list("tech_stack"),
            page_rank: r.float64("page_rank"),
            updated_at: r.timestamp("updated_at"),
            meta: meta(ctx, pos, None),
        };
        let left = r.finish();
        out.stats.rows += 1;
        out.stats.unknown_fields += left.unknown;
        out.stats.type_mismatches += left.mismatched;
        row.meta.extra = left.extra;
        out.rows.push(row);
    }
    out
}

/// Decodes one page of raw API rows of `table` into a `RecordBatch`, with counts and rejects.
pub fn decode_page(table: Table, rows: &RawRows, ctx: &PageContext) -> Result<DecodedPage> {
    match table {
        Table::CareerSites => finish(table, decode_career_sites(rows, ctx)),
        Table::Jobs => finish(table, decode_jobs(rows, ctx)),
        Table::Companies => finish(table, decode_companies(rows, ctx)),
    }
}
