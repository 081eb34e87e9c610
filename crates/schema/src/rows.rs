//! The typed rows of both tables, serialised by `serde_arrow` into the columns of `columns.rs`.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Serialize, Serializer};

/// A text value of a row: borrowed from the page's JSON when it has no escapes (most do),
/// so decoding a page copies each string once, into its Arrow column, not twice.
pub type Text<'a> = Cow<'a, str>;

/// One career site (Jobo CareerSiteDto) plus the row metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CareerSiteRow<'a> {
    /// `id`: Jobo company id (uuid).
    pub id: String,
    /// `name`.
    pub name: Option<Text<'a>>,
    /// `website`.
    pub website: Option<Text<'a>>,
    /// `logo_url`.
    pub logo_url: Option<Text<'a>>,
    /// `summary`.
    pub summary: Option<Text<'a>>,
    /// `industries`.
    pub industries: Option<Vec<Option<String>>>,
    /// `categories`.
    pub categories: Option<Vec<Option<String>>>,
    /// `linkedin_url`.
    pub linkedin_url: Option<Text<'a>>,
    /// `crunchbase_url`.
    pub crunchbase_url: Option<Text<'a>>,
    /// `ats`.
    pub ats: Option<Text<'a>>,
    /// `listing_url`.
    pub listing_url: Option<Text<'a>>,
    /// `discovered_at`.
    #[serde(serialize_with = "ts_opt")]
    pub discovered_at: Option<DateTime<Utc>>,
    /// `updated_at`.
    #[serde(serialize_with = "ts_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// `details_url`.
    pub details_url: Option<Text<'a>>,
    /// Row metadata (`_run_id`, ..., `_extra`): columns built straight from it, not by serde.
    #[serde(skip)]
    pub meta: RowMeta<'a>,
}

/// One Jobo company profile (`GET /api/companies/{id}`) plus the row metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompanyRow<'a> {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: Option<Text<'a>>,
    /// `legal_name`.
    pub legal_name: Option<Text<'a>>,
    /// `description`.
    pub description: Option<Text<'a>>,
    /// `website`.
    pub website: Option<Text<'a>>,
    /// `listing_url`.
    pub listing_url: Option<Text<'a>>,
    /// `logo_url`.
    pub logo_url: Option<Text<'a>>,
    /// `linkedin_url`.
    pub linkedin_url: Option<Text<'a>>,
    /// `crunchbase_url`.
    pub crunchbase_url: Option<Text<'a>>,
    /// `twitter_url`.
    pub twitter_url: Option<Text<'a>>,
    /// `headquarters_city`.
    pub headquarters_city: Option<Text<'a>>,
    /// `headquarters_state`.
    pub headquarters_state: Option<Text<'a>>,
    /// `headquarters_country`.
    pub headquarters_country: Option<Text<'a>>,
    /// `country_code`.
    pub country_code: Option<Text<'a>>,
    /// `founding_year`.
    pub founding_year: Option<i64>,
    /// `company_size`.
    pub company_size: Option<Text<'a>>,
    /// `revenue`.
    pub revenue: Option<Text<'a>>,
    /// `is_agency`.
    pub is_agency: Option<bool>,
    /// `industries`.
    pub industries: Option<Vec<Option<String>>>,
    /// `naics_codes`.
    pub naics_codes: Option<Vec<Option<String>>>,
    /// `company_type`.
    pub company_type: Option<Text<'a>>,
    /// `funding_stage`.
    pub funding_stage: Option<Text<'a>>,
    /// `total_funding_usd`.
    pub total_funding_usd: Option<f64>,
    /// `funding_rounds`.
    pub funding_rounds: Option<Vec<FundingRound<'a>>>,
    /// `leadership`.
    pub leadership: Option<Vec<Leader<'a>>>,
    /// `layoffs`.
    pub layoffs: Option<Vec<Layoff>>,
    /// `ratings`.
    pub ratings: Option<Vec<Rating<'a>>>,
    /// `h1b_filings`.
    pub h1b_filings: Option<i64>,
    /// `tech_stack`.
    pub tech_stack: Option<Vec<Option<String>>>,
    /// `page_rank`.
    pub page_rank: Option<f64>,
    /// `updated_at`.
    #[serde(serialize_with = "ts_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Row metadata (`_run_id`, ..., `_extra`): columns built straight from it, not by serde.
    #[serde(skip)]
    pub meta: RowMeta<'a>,
}

/// One funding round of a company profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FundingRound<'a> {
    /// `round`.
    pub round: Option<Text<'a>>,
    /// `date`.
    #[serde(serialize_with = "date_opt")]
    pub date: Option<NaiveDate>,
    /// `amount_usd`.
    pub amount_usd: Option<f64>,
    /// `investors`.
    pub investors: Option<Vec<Option<String>>>,
}

/// One leader of a company profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leader<'a> {
    /// `name`.
    pub name: Option<Text<'a>>,
    /// `title`.
    pub title: Option<Text<'a>>,
    /// `linkedin_url`.
    pub linkedin_url: Option<Text<'a>>,
}

/// One layoff of a company profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layoff {
    /// `date`.
    #[serde(serialize_with = "date_opt")]
    pub date: Option<NaiveDate>,
    /// `headcount`.
    pub headcount: Option<i64>,
}

/// One employer rating of a company profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rating<'a> {
    /// `source`.
    pub source: Option<Text<'a>>,
    /// `rating`.
    pub rating: Option<f64>,
    /// `review_count`.
    pub review_count: Option<i64>,
}

/// One Sentrion job plus its derived id and the row metadata.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow<'a> {
    /// Derived id (see [`crate::job_id`]).
    pub id: String,
    /// `Job Type`.
    pub job_type: Option<Text<'a>>,
    /// `Job Title`.
    pub job_title: Option<Text<'a>>,
    /// `Apply URL`.
    pub apply_url: Option<Text<'a>>,
    /// `Post Date`.
    #[serde(serialize_with = "date_opt")]
    pub post_date: Option<NaiveDate>,
    /// `Valid Through`.
    #[serde(serialize_with = "date_opt")]
    pub valid_through: Option<NaiveDate>,
    /// `City`.
    pub city: Option<Text<'a>>,
    /// `Job Board`.
    pub job_board: Option<Text<'a>>,
    /// `Job Description`.
    pub job_description: Option<Text<'a>>,
    /// `Country`.
    pub country: Option<Text<'a>>,
    /// `Company Name`.
    pub company_name: Option<Text<'a>>,
    /// `State`.
    pub state: Option<Text<'a>>,
    /// `Salary Offered`.
    pub salary_offered: Option<Text<'a>>,
    /// `Logo URL`.
    pub logo_url: Option<Text<'a>>,
    /// `Is Remote`.
    pub is_remote: Option<bool>,
    /// `Job URL`.
    pub job_url: Option<Text<'a>>,
    /// `Department Name`.
    pub department_name: Option<Vec<Option<String>>>,
    /// `Seniority Level`.
    pub seniority_level: Option<Text<'a>>,
    /// `Salary Currency`.
    pub salary_currency: Option<Text<'a>>,
    /// `Salary To`.
    pub salary_to: Option<f64>,
    /// `Salary From`.
    pub salary_from: Option<f64>,
    /// `Skills`.
    pub skills: Option<Vec<Option<String>>>,
    /// Row metadata (`_run_id`, ..., `_extra`): columns built straight from it, not by serde.
    #[serde(skip)]
    pub meta: RowMeta<'a>,
}

/// The metadata columns every row ends with.
///
/// The rows' other fields go through serde_arrow; these are built as Arrow arrays directly
/// (`decode::to_record_batch`). A flattened field would make serde serialise every row as a
/// map, which serde_arrow then matches key by key: a third of its time on 50-row pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMeta<'a> {
    /// `_run_id`.
    pub run_id: Text<'a>,
    /// `_fetched_at`.
    pub fetched_at: DateTime<Utc>,
    /// `_page`.
    pub page: i64,
    /// `_row`.
    pub row: i64,
    /// `_extra`.
    pub extra: Option<String>,
}

/// A typed row of one of the tables: its API fields serialise, its metadata is read here.
pub trait Row: Serialize {
    /// The row's metadata columns.
    fn meta(&self) -> &RowMeta<'_>;
}

impl Row for CareerSiteRow<'_> {
    fn meta(&self) -> &RowMeta<'_> {
        &self.meta
    }
}

impl Row for JobRow<'_> {
    fn meta(&self) -> &RowMeta<'_> {
        &self.meta
    }
}

impl Row for CompanyRow<'_> {
    fn meta(&self) -> &RowMeta<'_> {
        &self.meta
    }
}

// serde_arrow takes Timestamp(µs) as i64 microseconds and Date32 as i32 days since 1970-01-01.

fn ts_opt<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&v.timestamp_micros()),
        None => s.serialize_none(),
    }
}

fn date_opt<S: Serializer>(v: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&v.to_epoch_days()),
        None => s.serialize_none(),
    }
}
