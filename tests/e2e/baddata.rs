//! Bad data inside good pages: every row the APIs served is loaded (what does not fit its
//! column kept in `_extra`, counted) or rejected with a counted reason under
//! `_joblake/rejects/`; never a crash, never a silent drop.

use serde_json::Value;

use super::{assert_views_match_truth, source};
use crate::harness::{Lake, Sim, assert_no_keys, reliability_section};

const CONFIG: &str = "[career_sites]\npage_size = 20\nrequests_per_minute = 0\n\
                      [jobs]\npage_size = 20\nrequests_per_minute = 0\n";

struct Case {
    what: &'static str,
    kind: &'static str,
    /// Exit code of the run.
    code: i32,
}

const CASES: &[Case] = &[
    Case {
        what: "unknown fields",
        kind: "unknown",
        code: 0,
    },
    Case {
        what: "a field changing type between pages (number → string, list → string)",
        kind: "drift",
        code: 0,
    },
    Case {
        what: "nulls in every column (and one row null throughout)",
        kind: "nulls",
        code: 0,
    },
    Case {
        what: "100 kB descriptions",
        kind: "bigtext",
        code: 0,
    },
    Case {
        what: "an invalid UTF-16 escape (lone surrogate)",
        kind: "badutf8",
        code: 0,
    },
    Case {
        what: "dates in odd formats (day first, epoch seconds, offsets)",
        kind: "odddates",
        code: 0,
    },
    Case {
        what: "an empty page with `has_more = true`",
        kind: "emptymore",
        code: 0,
    },
    Case {
        what: "a cursor that repeats",
        kind: "repeatcursor",
        code: 1,
    },
];

/// Rows the reject files of `table` list.
fn rejected_in_files(lake: &Lake, table: &str) -> usize {
    lake.files()
        .iter()
        .filter(|(p, _)| {
            p.to_string_lossy()
                .contains(&format!("_joblake/rejects/{table}/"))
        })
        .map(|(_, bytes)| {
            String::from_utf8_lossy(bytes)
                .lines()
                .inspect(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    assert!(!v["reason"].as_str().unwrap().is_empty(), "{l}");
                })
                .count()
        })
        .sum()
}

async fn one(case: &Case) -> String {
    // Page 2 of each API is the bad one (page 1 for an empty first page of jobs).
    let faults = if case.kind == "emptymore" {
        "jobo:emptymore@2,sentrion:emptymore@1".to_string()
    } else {
        format!("{}@2", case.kind)
    };
    let sim = Sim::start(&["--rows", "200", "--faults", &faults]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(CONFIG);
    let run = lake.run(&["--json", "refresh"]).await;
    run.assert_code(case.code);
    let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
    let log = sim.log().await;
    let mut cells = Vec::new();
    for (table, api) in [("career_sites", "jobo"), ("jobs", "sentrion")] {
        let s = source(&summary, table);
        let served: i64 = log
            .iter()
            .filter(|e| e["api"] == api && e["status"] == 200)
            .map(|e| e["rows"].as_i64().unwrap())
            .sum();
        let loaded = lake
            .count(&format!("SELECT count(*) FROM {table}_history"))
            .await;
        let rejected = s["rejected_rows"].as_i64().unwrap();
        assert_eq!(
            served,
            loaded + rejected,
            "{} ({table}): {served} rows served, {loaded} loaded, {rejected} rejected",
            case.what
        );
        assert_eq!(
            rejected_in_files(&lake, table) as i64,
            rejected,
            "{}",
            case.what
        );
        let extra = s["type_mismatches"].as_i64().unwrap() + s["unknown_fields"].as_i64().unwrap();
        cells.push(format!("{served} / {loaded} / {extra} / {rejected}"));
    }
    // What each kind of bad data must have done.
    match case.kind {
        "unknown" => {
            assert!(
                lake.count("SELECT count(*) FROM jobs_history WHERE _extra LIKE '%x_signal_v4%'")
                    .await
                    > 0
            );
        }
        "drift" => {
            assert!(
                lake.count("SELECT count(*) FROM jobs_history WHERE _extra LIKE '%Salary From%'")
                    .await
                    > 0,
                "a salary sent as text is kept, as text, in _extra"
            );
        }
        "bigtext" => {
            assert!(
                lake.count("SELECT max(length(job_description)) FROM jobs_history")
                    .await
                    >= 100_000
            );
            assert!(
                lake.count("SELECT max(length(summary)) FROM career_sites_history")
                    .await
                    >= 100_000
            );
        }
        "badutf8" => {
            // The rows are kept: the bad escape loses only itself.
            assert!(
                lake.count("SELECT count(*) FROM jobs_history WHERE job_title LIKE 'Engineer%' OR _extra LIKE '%Job Title%'")
                    .await
                    >= 20
            );
        }
        "emptymore" => assert_views_match_truth(&lake, &sim).await,
        "repeatcursor" => {
            assert!(
                run.stderr().contains("same cursor twice"),
                "{}",
                run.stderr()
            );
        }
        _ => {}
    }
    assert_no_keys(&lake, &sim, &[run.stdout(), run.stderr()]).await;
    let outcome = match case.code {
        0 => "run finished (exit 0)",
        _ => "stopped with what it fetched committed (exit 1), saying the cursor repeated",
    };
    format!(
        "| {} | `{faults}` | {} | {} | {outcome} |\n",
        case.what, cells[0], cells[1]
    )
}

#[tokio::test]
async fn bad_data_is_loaded_or_rejected_with_a_counted_reason_never_dropped() {
    let mut rows = String::new();
    for case in CASES {
        rows.push_str(&one(case).await);
    }
    reliability_section(
        "bad-data",
        &format!(
            "## Bad data\n\n\
             Bad data served inside otherwise good pages by `joblake simulate --faults` (200 rows \
             per API, 20-row pages). Each cell is *served / loaded / kept in `_extra` / \
             rejected*: every row served is loaded (what does not fit its column kept, as text, \
             in `_extra`) or rejected with its reason under `_joblake/rejects/`; \
             served = loaded + rejected in every case.\n\n\
             | bad data | injected as | career sites | jobs | outcome |\n|---|---|---|---|---|\n{rows}"
        ),
    );
}
