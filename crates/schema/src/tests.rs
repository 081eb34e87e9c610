//! Decoding tests over whole pages: the docs' example rows, value drift, `_extra`, rejects.

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Float64Array, Int64Array, ListArray, StringArray,
    TimestampMicrosecondArray,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::*;

const SENTRION_EXAMPLE: &str = r#"{
    "Job Type": "Full Time",
    "Job Title": "Senior Software Engineer",
    "Apply URL": "https://careers.techcorp.com/apply/98765",
    "Post Date": "2026-03-15",
    "Valid Through": "2026-04-15",
    "City": "San Francisco",
    "Job Board": "Linkedin",
    "Job Description": "We are looking for a Senior Software Engineer to join our platform team.",
    "Country": "United States",
    "Company Name": "TechCorp Inc.",
    "State": "California",
    "Salary Offered": "$150,000 - $200,000/year",
    "Logo URL": "https://media.licdn.com/dms/image/C4D0BAQH/company-logo.png",
    "Is Remote": false,
    "Job URL": "https://www.linkedin.com/jobs/view/3847562910",
    "Department Name": ["Engineering"],
    "Seniority Level": "Mid Level",
    "Salary Currency": "USD",
    "Salary To": 200000.0,
    "Salary From": 150000.0,
    "Skills": ["Python", "Kubernetes", "AWS"]
}"#;

const CAREER_SITE_EXAMPLE: &str = r#"{
    "id": "3f2b8c1e-7a4d-4e0b-9c55-1d2e3f4a5b6c",
    "name": "TechCorp Inc.",
    "website": "https://techcorp.com",
    "logo_url": "https://cdn.jobo.world/logos/techcorp.png",
    "summary": "TechCorp builds developer platforms.",
    "industries": ["developer tools", "saas"],
    "categories": ["b2b", "saas"],
    "linkedin_url": "https://www.linkedin.com/company/techcorp",
    "crunchbase_url": null,
    "ats": "greenhouse",
    "listing_url": "https://boards.greenhouse.io/techcorp",
    "discovered_at": "2026-03-01T08:15:30Z",
    "updated_at": "2026-03-14T22:05:11.250+02:00",
    "details_url": "https://connect.jobo.world/api/companies/3f2b8c1e-7a4d-4e0b-9c55-1d2e3f4a5b6c"
}"#;

/// The page every test decodes (rows borrow their run id from it).
fn ctx() -> &'static PageContext {
    static CTX: std::sync::LazyLock<PageContext> = std::sync::LazyLock::new(|| PageContext {
        run_id: "20260315T120000Z-0001".into(),
        fetched_at: utc("2026-03-15T12:00:00Z"),
        page: 7,
    });
    &CTX
}

fn utc(s: &str) -> DateTime<Utc> {
    parse_timestamp(s).expect("test timestamp")
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("test date")
}

/// A page of rows, kept for the test's life: decoded rows borrow their text from it.
fn page(rows: &[&str]) -> &'static RawRows {
    for row in rows {
        serde_json::from_str::<&serde_json::value::RawValue>(row).expect("valid JSON in test");
    }
    Box::leak(Box::new(RawRows::copied(rows.iter().copied())))
}

fn strs(v: &[&str]) -> Option<Vec<Option<String>>> {
    Some(v.iter().map(|s| Some((*s).to_owned())).collect())
}

fn col<'a, T: 'static>(batch: &'a arrow::record_batch::RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("type of column {name}"))
}

/// A job with only handles, plus `extra` JSON members.
fn job(extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!(r#"{{"Job URL":"https://x.io/jobs/1"{sep}{extra}}}"#)
}

#[test]
fn sentrion_example_decodes_to_exact_values() {
    let decoded = decode_jobs(page(&[SENTRION_EXAMPLE]), ctx());
    assert_eq!(decoded.rejected, vec![]);
    assert_eq!(
        decoded.stats,
        DecodeStats {
            rows: 1,
            ..Default::default()
        }
    );
    let want = JobRow {
        id: job_id(
            Some("https://www.linkedin.com/jobs/view/3847562910"),
            None,
            None,
            None,
            None,
            None,
        )
        .expect("id"),
        job_type: Some("Full Time".into()),
        job_title: Some("Senior Software Engineer".into()),
        apply_url: Some("https://careers.techcorp.com/apply/98765".into()),
        post_date: Some(date(2026, 3, 15)),
        valid_through: Some(date(2026, 4, 15)),
        city: Some("San Francisco".into()),
        job_board: Some("Linkedin".into()),
        job_description: Some(
            "We are looking for a Senior Software Engineer to join our platform team.".into(),
        ),
        country: Some("United States".into()),
        company_name: Some("TechCorp Inc.".into()),
        state: Some("California".into()),
        salary_offered: Some("$150,000 - $200,000/year".into()),
        logo_url: Some("https://media.licdn.com/dms/image/C4D0BAQH/company-logo.png".into()),
        is_remote: Some(false),
        job_url: Some("https://www.linkedin.com/jobs/view/3847562910".into()),
        department_name: strs(&["Engineering"]),
        seniority_level: Some("Mid Level".into()),
        salary_currency: Some("USD".into()),
        salary_to: Some(200_000.0),
        salary_from: Some(150_000.0),
        skills: strs(&["Python", "Kubernetes", "AWS"]),
        meta: RowMeta {
            run_id: "20260315T120000Z-0001".into(),
            fetched_at: utc("2026-03-15T12:00:00Z"),
            page: 7,
            row: 0,
            extra: None,
        },
    };
    assert_eq!(decoded.rows, vec![want]);

    // And the same values come out of the Arrow batch.
    let out = decode_page(Table::Jobs, page(&[SENTRION_EXAMPLE]), ctx()).expect("decode");
    let b = &out.batch;
    assert_eq!(b.num_rows(), 1);
    assert_eq!(
        col::<StringArray>(b, "job_title").value(0),
        "Senior Software Engineer"
    );
    let post = col::<Date32Array>(b, "post_date");
    assert_eq!(post.value_as_date(0), Some(date(2026, 3, 15)));
    assert!(!col::<BooleanArray>(b, "is_remote").value(0));
    assert_eq!(col::<Float64Array>(b, "salary_to").value(0), 200_000.0);
    let skills = col::<ListArray>(b, "skills");
    let first = skills.value(0);
    let first = first.as_string::<i32>();
    assert_eq!(
        first.iter().collect::<Vec<_>>(),
        vec![Some("Python"), Some("Kubernetes"), Some("AWS")]
    );
    let fetched = col::<TimestampMicrosecondArray>(b, "_fetched_at");
    assert_eq!(
        fetched.value(0),
        utc("2026-03-15T12:00:00Z").timestamp_micros()
    );
    assert_eq!(col::<Int64Array>(b, "_page").value(0), 7);
    assert_eq!(col::<Int64Array>(b, "_row").value(0), 0);
    assert!(col::<StringArray>(b, "_extra").is_null(0));
    assert_eq!(
        col::<StringArray>(b, "id").value(0),
        decoded_id_of(SENTRION_EXAMPLE)
    );
}

fn decoded_id_of(row: &str) -> String {
    decode_jobs(page(&[row]), ctx())
        .rows
        .first()
        .map(|r| r.id.clone())
        .unwrap_or_default()
}

#[test]
fn career_site_example_decodes_to_exact_values() {
    let decoded = decode_career_sites(page(&[CAREER_SITE_EXAMPLE]), ctx());
    assert_eq!(decoded.rejected, vec![]);
    assert_eq!(decoded.stats.rows, 1);
    assert_eq!(
        decoded.stats.unknown_fields + decoded.stats.type_mismatches,
        0
    );
    let want = CareerSiteRow {
        id: "3f2b8c1e-7a4d-4e0b-9c55-1d2e3f4a5b6c".into(),
        name: Some("TechCorp Inc.".into()),
        website: Some("https://techcorp.com".into()),
        logo_url: Some("https://cdn.jobo.world/logos/techcorp.png".into()),
        summary: Some("TechCorp builds developer platforms.".into()),
        industries: strs(&["developer tools", "saas"]),
        categories: strs(&["b2b", "saas"]),
        linkedin_url: Some("https://www.linkedin.com/company/techcorp".into()),
        crunchbase_url: None,
        ats: Some("greenhouse".into()),
        listing_url: Some("https://boards.greenhouse.io/techcorp".into()),
        discovered_at: Some(utc("2026-03-01T08:15:30Z")),
        updated_at: Some(utc("2026-03-14T20:05:11.250Z")),
        details_url: Some(
            "https://connect.jobo.world/api/companies/3f2b8c1e-7a4d-4e0b-9c55-1d2e3f4a5b6c".into(),
        ),
        meta: RowMeta {
            run_id: "20260315T120000Z-0001".into(),
            fetched_at: utc("2026-03-15T12:00:00Z"),
            page: 7,
            row: 0,
            extra: None,
        },
    };
    assert_eq!(decoded.rows, vec![want]);

    let out = decode_page(Table::CareerSites, page(&[CAREER_SITE_EXAMPLE]), ctx()).expect("ok");
    let updated = col::<TimestampMicrosecondArray>(&out.batch, "updated_at");
    assert_eq!(
        updated.value(0),
        utc("2026-03-14T20:05:11.25Z").timestamp_micros()
    );
    assert_eq!(updated.timezone(), Some("UTC"));
    assert!(col::<StringArray>(&out.batch, "crunchbase_url").is_null(0));
}

#[test]
fn batch_schema_equals_arrow_schema_exactly() {
    for (table, rows) in [
        (Table::Jobs, page(&[SENTRION_EXAMPLE, &job("")])),
        (Table::CareerSites, page(&[CAREER_SITE_EXAMPLE])),
    ] {
        let out = decode_page(table, rows, ctx()).expect("decode");
        assert_eq!(out.batch.schema(), arrow_schema(table));
        let schema = out.batch.schema();
        let id = schema.field_with_name("id").expect("id");
        assert!(!id.is_nullable());
        assert_eq!(schema.fields()[0].name(), "id");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names[names.len() - 5..], META_COLUMNS);
        // The typed rows serialise in column order, so the field order is the DTO's too.
        assert_eq!(
            names,
            columns(table).iter().map(|c| c.name).collect::<Vec<_>>()
        );
    }
}

#[test]
fn empty_page_gives_an_empty_batch_with_the_schema() {
    for table in Table::all() {
        let out = decode_page(table, &RawRows::default(), ctx()).expect("decode");
        assert_eq!(out.batch.num_rows(), 0);
        assert_eq!(out.batch.schema(), arrow_schema(table));
        assert_eq!(out.stats, DecodeStats::default());
        assert!(out.rejected.is_empty());
    }
}

#[test]
fn salaries_int_or_float_and_country_as_given() {
    let rows = page(&[
        &job(r#""Salary From":150000,"Salary To":200000,"Country":"US""#),
        &job(r#""Salary From":150000.5,"Salary To":2.0e5,"Country":"United States""#),
    ]);
    let d = decode_jobs(rows, ctx());
    assert_eq!(d.stats.type_mismatches, 0);
    assert_eq!(d.rows[0].salary_from, Some(150_000.0));
    assert_eq!(d.rows[0].salary_to, Some(200_000.0));
    assert_eq!(d.rows[0].country.as_deref(), Some("US"));
    assert_eq!(d.rows[1].salary_from, Some(150_000.5));
    assert_eq!(d.rows[1].salary_to, Some(200_000.0));
    assert_eq!(d.rows[1].country.as_deref(), Some("United States"));
}

#[test]
fn all_null_row_loads_with_handles_only() {
    let row = r#"{"Job Type":null,"Job Title":null,"Apply URL":null,"Post Date":null,
        "Valid Through":null,"City":null,"Job Board":null,"Job Description":null,"Country":null,
        "Company Name":null,"State":null,"Salary Offered":null,"Logo URL":null,"Is Remote":null,
        "Job URL":"https://x.io/jobs/1","Department Name":null,"Seniority Level":null,
        "Salary Currency":null,"Salary To":null,"Salary From":null,"Skills":null}"#;
    let out = decode_page(Table::Jobs, page(&[row]), ctx()).expect("decode");
    assert_eq!(
        out.stats,
        DecodeStats {
            rows: 1,
            ..Default::default()
        }
    );
    let b = &out.batch;
    for c in columns(Table::Jobs) {
        let array = b.column_by_name(c.name).expect("column");
        let want_null = !matches!(c.name, "id" | "job_url") && c.nullable;
        assert_eq!(array.is_null(0), want_null, "{}", c.name);
    }

    // A career site with only its id.
    let out = decode_page(
        Table::CareerSites,
        page(&[r#"{"id":"a","name":null,"industries":null,"updated_at":null}"#]),
        ctx(),
    )
    .expect("decode");
    assert_eq!(out.stats.rows, 1);
    assert!(col::<ListArray>(&out.batch, "industries").is_null(0));
    assert!(col::<StringArray>(&out.batch, "_extra").is_null(0));
}

#[test]
fn lists_null_empty_and_null_elements() {
    let rows = page(&[
        &job(r#""Skills":null"#),
        &job(r#""Skills":[]"#),
        &job(r#""Skills":["a",null,"b"]"#),
        &job(r#""Skills":"Python, AWS""#),
        &job(r#""Skills":["a",1]"#),
    ]);
    let d = decode_jobs(rows, ctx());
    assert_eq!(d.rows[0].skills, None);
    assert_eq!(d.rows[1].skills, Some(vec![]));
    assert_eq!(
        d.rows[2].skills,
        Some(vec![Some("a".into()), None, Some("b".into())])
    );
    assert_eq!(d.rows[3].skills, None);
    assert_eq!(
        d.rows[3].meta.extra.as_deref(),
        Some(r#"{"Skills":"Python, AWS"}"#)
    );
    assert_eq!(d.rows[4].skills, None);
    assert_eq!(
        d.rows[4].meta.extra.as_deref(),
        Some(r#"{"Skills":["a",1]}"#)
    );
    assert_eq!(d.stats.type_mismatches, 2);

    let out = decode_page(Table::Jobs, rows, ctx()).expect("decode");
    let skills = col::<ListArray>(&out.batch, "skills");
    assert!(skills.is_null(0));
    assert!(!skills.is_null(1));
    assert_eq!(skills.value(1).len(), 0);
    let third = skills.value(2);
    assert_eq!(third.len(), 3);
    assert!(third.is_null(1));
}

#[test]
fn unknown_fields_land_in_extra() {
    let rows = page(&[&job(
        r#""Industry":"Software","Remote Policy":{"days":2},"Tags":[1,2]"#,
    )]);
    let out = decode_page(Table::Jobs, rows, ctx()).expect("decode");
    assert_eq!(out.stats.unknown_fields, 3);
    assert_eq!(out.stats.type_mismatches, 0);
    let extra = col::<StringArray>(&out.batch, "_extra").value(0);
    assert_eq!(
        extra,
        r#"{"Industry":"Software","Remote Policy":{"days":2},"Tags":[1,2]}"#
    );
    // _extra is JSON an analyst can parse.
    let parsed: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(extra).expect("JSON object");
    assert_eq!(parsed.len(), 3);

    // A snake_case or differently cased name is not the documented field: kept, not guessed.
    let d = decode_career_sites(
        page(&[r#"{"id":"a","Name":"X","company_size":"11-50"}"#]),
        ctx(),
    );
    assert_eq!(d.rows[0].name, None);
    assert_eq!(
        d.rows[0].meta.extra.as_deref(),
        Some(r#"{"Name":"X","company_size":"11-50"}"#)
    );
    assert_eq!(d.stats.unknown_fields, 2);
}

#[test]
fn number_as_string_salary_is_kept_and_counted() {
    let rows = page(&[&job(r#""Salary From":"150000","Salary To":200000"#)]);
    let out = decode_page(Table::Jobs, rows, ctx()).expect("decode");
    assert_eq!(out.stats.type_mismatches, 1);
    assert_eq!(out.stats.unknown_fields, 0);
    assert!(col::<Float64Array>(&out.batch, "salary_from").is_null(0));
    assert_eq!(
        col::<Float64Array>(&out.batch, "salary_to").value(0),
        200_000.0
    );
    assert_eq!(
        col::<StringArray>(&out.batch, "_extra").value(0),
        r#"{"Salary From":"150000"}"#
    );
}

#[test]
fn other_type_mismatches_are_kept_verbatim() {
    let rows = page(&[&job(
        r#""City":12345,"Is Remote":"yes","Salary To":1e999,"Job Title":{"en":"Dev"},"Country":true"#,
    )]);
    let d = decode_jobs(rows, ctx());
    assert_eq!(d.stats.type_mismatches, 5);
    let r = &d.rows[0];
    assert_eq!(
        (r.city.as_ref(), r.is_remote, r.salary_to),
        (None, None, None)
    );
    assert_eq!(r.job_title, None);
    assert_eq!(r.country, None);
    assert_eq!(
        r.meta.extra.as_deref(),
        Some(
            r#"{"City":12345,"Is Remote":"yes","Salary To":1e999,"Job Title":{"en":"Dev"},"Country":true}"#
        )
    );
}

#[test]
fn a_field_changing_type_between_pages() {
    let p1 = decode_page(Table::Jobs, page(&[&job(r#""Salary To":200000"#)]), ctx()).expect("p1");
    let p2 = decode_page(
        Table::Jobs,
        page(&[&job(r#""Salary To":"200k""#)]),
        &PageContext {
            page: 8,
            ..ctx().clone()
        },
    )
    .expect("p2");
    // Both batches keep the table's schema; the second keeps the odd value in _extra.
    assert_eq!(p1.batch.schema(), p2.batch.schema());
    assert_eq!(
        col::<Float64Array>(&p1.batch, "salary_to").value(0),
        200_000.0
    );
    assert!(col::<Float64Array>(&p2.batch, "salary_to").is_null(0));
    assert_eq!(
        col::<StringArray>(&p2.batch, "_extra").value(0),
        r#"{"Salary To":"200k"}"#
    );
    let mut total = p1.stats;
    total.add(&p2.stats);
    assert_eq!(
        total,
        DecodeStats {
            rows: 2,
            unknown_fields: 0,
            type_mismatches: 1,
            rejected: 0
        }
    );
}

#[test]
fn odd_date_and_timestamp_formats() {
    let rows = page(&[
        &job(r#""Post Date":"2026-03-15T09:30:00Z","Valid Through":"2026-04-15 00:00:00""#),
        &job(r#""Post Date":"03/15/2026","Valid Through":1776211200000"#),
        &job(r#""Post Date":"March 15, 2026","Valid Through":"2026-02-30""#),
    ]);
    let d = decode_jobs(rows, ctx());
    assert_eq!(d.rows[0].post_date, Some(date(2026, 3, 15)));
    assert_eq!(d.rows[0].valid_through, Some(date(2026, 4, 15)));
    assert_eq!(d.rows[0].meta.extra, None);
    assert_eq!(d.rows[1].post_date, None);
    assert_eq!(
        d.rows[1].meta.extra.as_deref(),
        Some(r#"{"Post Date":"03/15/2026","Valid Through":1776211200000}"#)
    );
    assert_eq!(d.rows[2].valid_through, None);
    assert_eq!(d.stats.type_mismatches, 4);

    let sites = page(&[
        r#"{"id":"a","updated_at":"2026-03-15 12:30:00","discovered_at":"2026-03-15T12:30:00.123456-01:00"}"#,
        r#"{"id":"b","updated_at":"15/03/2026","discovered_at":1773577800}"#,
    ]);
    let d = decode_career_sites(sites, ctx());
    assert_eq!(d.rows[0].updated_at, Some(utc("2026-03-15T12:30:00Z")));
    assert_eq!(
        d.rows[0].discovered_at,
        Some(utc("2026-03-15T13:30:00.123456Z"))
    );
    assert_eq!(d.rows[1].updated_at, None);
    assert_eq!(
        d.rows[1].meta.extra.as_deref(),
        Some(r#"{"updated_at":"15/03/2026","discovered_at":1773577800}"#)
    );
    assert_eq!(d.stats.type_mismatches, 2);
}

#[test]
fn plain_text_is_borrowed_from_the_page_and_escaped_text_unescaped() {
    use std::borrow::Cow;
    let rows = page(&[&job(
        r#""Job Title":"Data Engineer","City":"Say \"hi\" \\ \n there""#,
    )]);
    let d = decode_jobs(rows, ctx());
    assert_eq!(d.rejected, vec![]);
    // No escapes: a slice of the page's own text, not a copy.
    let Some(Cow::Borrowed(title)) = &d.rows[0].job_title else {
        panic!("the title was copied: {:?}", d.rows[0].job_title);
    };
    assert_eq!(*title, "Data Engineer");
    assert!(
        rows.get(0)
            .unwrap()
            .as_bytes()
            .as_ptr_range()
            .contains(&title.as_ptr())
    );
    // Escapes: the text they stand for.
    assert_eq!(d.rows[0].city.as_deref(), Some("Say \"hi\" \\ \n there"));
    let out = decode_page(Table::Jobs, rows, ctx()).expect("decode");
    assert_eq!(
        col::<StringArray>(&out.batch, "city").value(0),
        "Say \"hi\" \\ \n there"
    );
}

#[test]
fn lone_surrogate_escape_is_kept_verbatim() {
    let rows = page(&[&job(r#""City":"Caf\ud800","State":"Ok \u00e9""#)]);
    let d = decode_jobs(rows, ctx());
    assert_eq!(d.rejected, vec![]);
    assert_eq!(d.rows[0].city, None);
    assert_eq!(d.rows[0].state.as_deref(), Some("Ok é"));
    assert_eq!(
        d.rows[0].meta.extra.as_deref(),
        Some(r#"{"City":"Caf\ud800"}"#)
    );
    assert_eq!(d.stats.type_mismatches, 1);
    // A lone surrogate in a list element or a key.
    let d = decode_jobs(page(&[&job(r#""Skills":["a","\udc00"]"#)]), ctx());
    assert_eq!(d.rows[0].skills, None);
    assert_eq!(
        d.rows[0].meta.extra.as_deref(),
        Some(r#"{"Skills":["a","\udc00"]}"#)
    );
    // A field name that is not valid text cannot be kept under its name: the row is rejected.
    let d = decode_jobs(page(&[&job(r#""K\ud800":1"#)]), ctx());
    assert_eq!(d.rows.len(), 0);
    assert_eq!(d.stats.rejected, 1);
    assert!(
        d.rejected[0]
            .reason
            .starts_with("row could not be read as a JSON object: "),
        "{}",
        d.rejected[0].reason
    );
}

#[test]
fn large_description_loads_whole() {
    let description = "é".repeat(50_000) + &"x".repeat(10);
    let text = job(&format!(
        r#""Job Description":{}"#,
        serde_json::to_string(&description).expect("json")
    ));
    assert!(text.len() > 100_000);
    let out = decode_page(Table::Jobs, page(&[&text]), ctx()).expect("decode");
    assert_eq!(
        col::<StringArray>(&out.batch, "job_description").value(0),
        description
    );
}

#[test]
fn non_object_rows_and_missing_ids_are_rejected_with_reasons() {
    let rows = page(&[
        "[1,2]",
        "\"text\"",
        "null",
        "42",
        r#"{"Job Title":"no handle"}"#,
        r#"{"Job Title":"Engineer","Company Name":"X"}"#,
        r#"{"Job URL":"   ","Apply URL":null}"#,
    ]);
    let out = decode_page(Table::Jobs, rows, ctx()).expect("decode");
    assert_eq!(out.stats.rows, 2);
    assert_eq!(out.stats.rejected, 5);
    let reasons: Vec<(i64, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.row, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (0, "row is an array, not a JSON object"),
            (1, "row is a string, not a JSON object"),
            (2, "row is null, not a JSON object"),
            (3, "row is a number, not a JSON object"),
            (6, "no stable handle for a job id"),
        ]
    );
    assert_eq!(out.rejected[0].raw, "[1,2]");
    // Loaded rows keep their position in the page.
    let rows_col = col::<Int64Array>(&out.batch, "_row");
    assert_eq!(rows_col.values().to_vec(), vec![4, 5]);

    let sites = page(&[
        r#"{"name":"no id"}"#,
        r#"{"id":null}"#,
        r#"{"id":12}"#,
        r#"{"id":" "}"#,
        r#"{"id":"ok"}"#,
    ]);
    let d = decode_career_sites(sites, ctx());
    assert_eq!(d.rows.len(), 1);
    assert_eq!(d.rows[0].meta.row, 4);
    let reasons: Vec<&str> = d.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "career site has no \"id\" field",
            "career site \"id\" is null, not a string",
            "career site \"id\" is a number, not a string",
            "career site has a blank \"id\"",
        ]
    );
    assert_eq!(d.stats.rejected, 4);
}

#[test]
fn job_ids_in_a_page_are_stable_across_url_variants() {
    let a = decoded_id_of(r#"{"Job URL":"https://WWW.example.com/jobs/9/?utm_source=x#top"}"#);
    let b = decoded_id_of(r#"{"Job URL":"https://www.example.com/jobs/9"}"#);
    let c = decoded_id_of(r#"{"Job URL":"https://www.example.com/jobs/10"}"#);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Without URLs, the fields make the id; an odd post date still counts as given.
    let f1 = decoded_id_of(
        r#"{"Company Name":"TechCorp Inc.","Job Title":"Senior Software Engineer","City":"San Francisco","State":"California","Country":"United States","Post Date":"2026-03-15"}"#,
    );
    let f2 = decoded_id_of(
        r#"{"Company Name":"techcorp inc.","Job Title":"Senior Software Engineer ","City":"San Francisco","State":"California","Country":"United States","Post Date":"2026-03-15T10:00:00Z"}"#,
    );
    let f3 = decoded_id_of(
        r#"{"Company Name":"TechCorp Inc.","Job Title":"Senior Software Engineer","City":"San Francisco","State":"California","Country":"United States","Post Date":"03/15/2026"}"#,
    );
    assert!(f1.starts_with("j_") && f1.len() == 34);
    assert_eq!(f1, f2);
    assert_ne!(f1, f3);
    let loc = job_location(
        Some("San Francisco"),
        Some("California"),
        Some("United States"),
    );
    assert_eq!(
        Some(f1),
        job_id(
            None,
            None,
            Some("TechCorp Inc."),
            Some("Senior Software Engineer"),
            loc.as_deref(),
            Some("2026-03-15")
        )
    );
}

#[test]
fn repeated_fields_are_all_kept() {
    let d = decode_jobs(
        page(&[r#"{"Job URL":"https://x.io/1","City":1,"City":"Paris","City":"Lyon"}"#]),
        ctx(),
    );
    let r = &d.rows[0];
    assert_eq!(r.city, None);
    assert_eq!(
        r.meta.extra.as_deref(),
        Some(r#"{"City":1,"City#2":"Paris","City#3":"Lyon"}"#)
    );
    assert_eq!(d.stats.type_mismatches, 1);
    assert_eq!(d.stats.unknown_fields, 2);
}

#[test]
fn table_names_round_trip() {
    for t in Table::all() {
        assert_eq!(t.name().parse::<Table>().expect("parses"), t);
        assert_eq!(t.to_string(), t.name());
    }
    assert!("Jobs".parse::<Table>().is_err());
    assert_eq!(id_column(), "id");
}

#[test]
fn fetched_at_is_stored_as_utc_micros() {
    let fetched = Utc
        .with_ymd_and_hms(2026, 3, 15, 12, 0, 0)
        .single()
        .expect("valid")
        + chrono::Duration::microseconds(42);
    let out = decode_page(
        Table::Jobs,
        page(&[&job("")]),
        &PageContext {
            fetched_at: fetched,
            ..ctx().clone()
        },
    )
    .expect("decode");
    let array = col::<TimestampMicrosecondArray>(&out.batch, "_fetched_at");
    assert_eq!(array.value(0), fetched.timestamp_micros());
    assert_eq!(
        col::<StringArray>(&out.batch, "_run_id").value(0),
        "20260315T120000Z-0001"
    );
}

fn doc_line(c: &Column) -> String {
    let source = c.source.map_or("—".to_owned(), |s| format!("`{s}`"));
    format!(
        "| `{}` | `{}` | `{}` | {} | {} | {} |",
        c.name,
        c.ty.arrow_name(),
        c.ty.duckdb(),
        if c.nullable { "yes" } else { "no" },
        source,
        c.doc
    )
}

/// `schemas/*.md` documents every column, in order, with the types, source field and meaning
/// of `columns.rs` (run `print_schema_tables` with `--ignored --nocapture` to regenerate).
#[test]
fn schema_docs_list_every_column() {
    for table in Table::all() {
        // Cargo and nextest set the variable when they run a test: the checkout being tested,
        // even where a shared target dir reuses a binary built in another checkout.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let path = format!("{dir}/../../schemas/{}.md", table.name());
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut at = 0;
        for c in columns(table) {
            let line = doc_line(c);
            let found = doc[at..].find(&line);
            assert!(
                found.is_some(),
                "{path} lacks, or misorders, the line\n{line}"
            );
            at += found.unwrap_or_default() + line.len();
        }
    }
}

#[test]
#[ignore = "prints the column tables of schemas/*.md"]
fn print_schema_tables() {
    for table in Table::all() {
        println!("## {table}\n");
        println!("| column | Arrow type | DuckDB type | nullable | source field | meaning |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for c in columns(table) {
            println!("{}", doc_line(c));
        }
        println!();
    }
}

#[test]
fn company_profiles_decode_with_nested_lists_and_keep_what_does_not_fit() {
    let rows = RawRows::copied([
        r#"{"id":"c1","name":"Acme","founding_year":2015,"total_funding_usd":1500000,
                "funding_rounds":[{"round":"seed","date":"2019-05-01","amount_usd":500000,"investors":["A","B"]},
                                  {"round":"series_a","date":"2021-02-01","amount_usd":1000000.0,"investors":[]}],
                "leadership":[{"name":"Ada","title":"CEO","linkedin_url":null}],
                "layoffs":null,
                "ratings":[{"source":"glassdoor","rating":4.1,"review_count":120}],
                "tech_stack":["rust"],"updated_at":"2026-11-01T10:00:00Z","esg_score":7}"#,
        r#"{"id":"c2","founding_year":"2015","ratings":[{"source":"indeed","rating":"4.5"}]}"#,
        r#"{"name":"no id"}"#,
    ]);
    let ctx = PageContext {
        run_id: "r".into(),
        fetched_at: Utc::now(),
        page: 1,
    };
    let page = decode_page(Table::Companies, &rows, &ctx).unwrap();
    assert_eq!(page.batch.num_rows(), 2);
    assert_eq!(page.rejected.len(), 1);
    assert_eq!(page.batch.schema(), arrow_schema(Table::Companies));
    let decoded = decode_companies(&rows, &ctx);
    let acme = &decoded.rows[0];
    let rounds = acme.funding_rounds.as_ref().unwrap();
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[1].amount_usd, Some(1_000_000.0));
    assert_eq!(rounds[0].date, NaiveDate::from_ymd_opt(2019, 5, 1));
    assert_eq!(
        acme.leadership.as_ref().unwrap()[0].title.as_deref(),
        Some("CEO")
    );
    assert!(acme.meta.extra.as_deref().unwrap().contains("esg_score"));
    // A rating sent as text sends that list, verbatim, to `_extra`; the rest of the row loads.
    let c2 = &decoded.rows[1];
    assert_eq!(c2.ratings, None);
    assert_eq!(c2.founding_year, None);
    let extra = c2.meta.extra.as_deref().unwrap();
    assert!(
        extra.contains("\"ratings\"") && extra.contains("\"founding_year\":\"2015\""),
        "{extra}"
    );
    assert_eq!(decoded.stats.type_mismatches, 2);
}
