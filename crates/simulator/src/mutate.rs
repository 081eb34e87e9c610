//! Bad data inside a good page, as the real APIs have been seen to send it (the `--faults`
//! kinds `unknown`, `drift`, `nulls`, `bigtext`, `badutf8`, `odddates`; `emptymore`,
//! `repeatcursor` and `cyclecursor` change the page's envelope, in each API's handler).

use serde_json::{Map, Value, json};

use crate::fault::{Api, DataFault};

/// Stands in a string for a lone surrogate escape until the body is text (`serde_json` cannot
/// hold one in a `Value`); [`body_text`] puts the escape in its place.
const LONE_SURROGATE: &str = "@@lone-surrogate@@";

/// The page's rows with `faults` applied.
pub(crate) fn rows(api: Api, rows: &mut [Value], faults: &[DataFault]) {
    for fault in faults {
        for (i, row) in rows.iter_mut().enumerate() {
            if let Value::Object(m) = row {
                mutate(api, m, *fault, i);
            }
        }
    }
}

/// The response body as sent, lone surrogate escapes included.
pub(crate) fn body_text(body: &Value) -> String {
    body.to_string().replace(LONE_SURROGATE, "\\ud800")
}

fn big_text(seed: usize) -> String {
    let words = [
        "lake", "parquet", "arrow", "cursor", "credit", "window", "career", "job",
    ];
    let mut s = String::with_capacity(100_050);
    let mut i = seed;
    while s.len() < 100_000 {
        s.push_str(words[i % words.len()]);
        s.push(if i.is_multiple_of(13) { '\n' } else { ' ' });
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    s
}

fn mutate(api: Api, m: &mut Map<String, Value>, fault: DataFault, i: usize) {
    use DataFault::*;
    match (fault, api) {
        (Unknown, _) => {
            m.insert(
                "x_signal_v4".into(),
                json!({"since": "2026-11", "scores": [1, 2.5, null]}),
            );
            m.insert("x_flag".into(), json!(i.is_multiple_of(2)));
        }
        (Drift, Api::Sentrion) => {
            for k in ["Salary From", "Salary To"] {
                if let Some(Value::Number(n)) = m.get(k).cloned() {
                    m.insert(k.into(), json!(n.to_string()));
                }
            }
            if let Some(Value::Bool(b)) = m.get("Is Remote").cloned() {
                m.insert("Is Remote".into(), json!(if b { "yes" } else { "no" }));
            }
        }
        (Drift, Api::Jobo) => {
            if let Some(Value::Array(a)) = m.get("industries").cloned() {
                let joined: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                m.insert("industries".into(), json!(joined.join(", ")));
            }
        }
        (Nulls, _) => {
            // Every field null but the row's handle; the first row has none left at all.
            let handle = match api {
                Api::Jobo | Api::Companies => "id",
                Api::Sentrion => "Job URL",
            };
            for (k, v) in m.iter_mut() {
                if i == 0 || k != handle {
                    *v = Value::Null;
                }
            }
        }
        (BigText, Api::Companies) => {
            m.insert("description".into(), json!(big_text(i)));
        }
        (Drift, Api::Companies) => {
            if let Some(Value::Number(n)) = m.get("founding_year").cloned() {
                m.insert("founding_year".into(), json!(n.to_string()));
            }
        }
        (BadUtf8, Api::Companies) => {
            m.insert(
                "legal_name".into(),
                json!(format!("Acme {LONE_SURROGATE} Ltd.")),
            );
        }
        (OddDates, Api::Companies) => {
            if let Some(t) = m
                .get("updated_at")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                m.insert("updated_at".into(), json!(t.replace('T', " ")));
            }
        }
        (BigText, Api::Jobo) => {
            m.insert("summary".into(), json!(big_text(i)));
        }
        (BigText, Api::Sentrion) => {
            m.insert("Job Description".into(), json!(big_text(i)));
        }
        (BadUtf8, Api::Jobo) => {
            m.insert("name".into(), json!(format!("Acme {LONE_SURROGATE} GmbH")));
        }
        (BadUtf8, Api::Sentrion) => {
            m.insert(
                "Job Title".into(),
                json!(format!("Engineer {LONE_SURROGATE}")),
            );
        }
        (OddDates, Api::Sentrion) => {
            if let Some(d) = m
                .get("Post Date")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                // Day first, as a European source would write it.
                let parts: Vec<&str> = d.split('-').collect();
                if let [y, mo, da] = parts.as_slice() {
                    m.insert("Post Date".into(), json!(format!("{da}/{mo}/{y}")));
                }
            }
            if let Some(d) = m
                .get("Valid Through")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                m.insert("Valid Through".into(), json!(format!("{d}T23:59:00+02:00")));
            }
        }
        (OddDates, Api::Jobo) => {
            if let Some(t) = m.get("updated_at").and_then(Value::as_str)
                && let Ok(t) = chrono::DateTime::parse_from_rfc3339(t)
            {
                m.insert("updated_at".into(), json!(t.timestamp()));
            }
            if let Some(t) = m
                .get("discovered_at")
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                m.insert(
                    "discovered_at".into(),
                    json!(t.replace('T', " ").replace('Z', "")),
                );
            }
        }
        (EmptyMore | RepeatCursor | CycleCursor | Rewind, _) => {}
    }
}
