//! Every fault of `shared/api/behaviour-notes.md`, injected by the simulator into a real
//! refresh: transient ones are retried to the truth, dead cursors restart exactly once,
//! terminal ones stop the source clearly with what was fetched committed (or, before the
//! first page, the lake untouched), and `status` and the views say so truthfully.

use serde_json::Value;

use super::{assert_views_match_truth, source};
use crate::harness::{Lake, Sim, assert_no_keys, refetched, reliability_section};

/// Both sources in 20-row pages, quick retries, a 1 s request timeout.
const CONFIG: &str = "[career_sites]\npage_size = 20\nrequests_per_minute = 0\n\
                      retry_base_ms = 20\nretry_cap_secs = 2\ntimeout_secs = 1\n\
                      [jobs]\npage_size = 20\nrequests_per_minute = 0\n\
                      retry_base_ms = 20\nretry_cap_secs = 2\ntimeout_secs = 1\n";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Retried (or restarted once) to the truth, exit 0.
    Converges,
    /// The source stops on its first request; the lake stays as it was (none here).
    StopsUntouched,
    /// The source stops mid-scan with its pages committed; the next run finishes.
    StopsThenResumes,
}

struct Case {
    what: &'static str,
    faults: &'static str,
    expect: Expect,
    /// Dead-cursor restarts each affected source must make.
    restarts: u64,
}

const CASES: &[Case] = &[
    Case {
        what: "429 with `Retry-After: 1`",
        faults: "429=1@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "429 without `Retry-After`",
        faults: "429-bare@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "503 with `Retry-After: 5`",
        faults: "503@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "500",
        faults: "500@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "502",
        faults: "502@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "504",
        faults: "504@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "408",
        faults: "408@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "connection reset",
        faults: "reset@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "timeout (no answer within 1 s)",
        faults: "timeout=3@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "truncated body",
        faults: "truncate@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "non-JSON body (an HTML error page)",
        faults: "nonjson@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "Jobo 503 as RFC 9457 problem+json",
        faults: "jobo:503=1@2,jobo:problem@2",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "Jobo's older credit headers",
        faults: "jobo:legacy_headers@1+",
        expect: Expect::Converges,
        restarts: 0,
    },
    Case {
        what: "400 Invalid cursor",
        faults: "dead_cursor@3",
        expect: Expect::Converges,
        restarts: 1,
    },
    Case {
        what: "Jobo 409 feed_cursor_restart_required",
        faults: "jobo:restart@3",
        expect: Expect::Converges,
        restarts: 1,
    },
    Case {
        what: "402 insufficient credits mid-scan",
        faults: "402@3",
        expect: Expect::StopsThenResumes,
        restarts: 0,
    },
    Case {
        what: "401 bad key",
        faults: "401@1",
        expect: Expect::StopsUntouched,
        restarts: 0,
    },
    Case {
        what: "403 forbidden",
        faults: "403@1",
        expect: Expect::StopsUntouched,
        restarts: 0,
    },
    Case {
        what: "422 validation error",
        faults: "422@1",
        expect: Expect::StopsUntouched,
        restarts: 0,
    },
];

/// The table's line of `status --json`.
fn status_of<'a>(status: &'a Value, table: &str) -> &'a Value {
    status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap()
}

async fn one(case: &Case) -> String {
    let sim = Sim::start(&["--rows", "200", "--faults", case.faults]).await;
    let mut lake = Lake::new(&sim);
    lake.set_config(CONFIG);
    let run = lake.run(&["--json", "refresh"]).await;
    let injected = sim
        .log()
        .await
        .iter()
        .filter(|e| !e["fault"].is_null())
        .count();
    assert!(injected >= 1, "{}: no fault fired", case.what);
    let stderr = run.stderr();
    let outcome = match case.expect {
        Expect::Converges => {
            run.assert_code(0);
            let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
            let mut retries = 0;
            for name in ["career_sites", "jobs"] {
                let s = source(&summary, name);
                assert_eq!(s["status"], "succeeded", "{}: {s}", case.what);
                let restarts = s["restarts"].as_u64().unwrap();
                assert!(restarts <= case.restarts, "{}: {s}", case.what);
                retries += s["retries"].as_u64().unwrap();
                if case.faults.starts_with("jobo:legacy") && name == "career_sites" {
                    assert!(
                        s["credits_balance"].is_number(),
                        "credits from the old headers: {s}"
                    );
                }
            }
            assert_views_match_truth(&lake, &sim).await;
            if case.restarts > 0 {
                "converged to the truth; one restart from the watermark per affected source"
                    .to_string()
            } else {
                format!("converged to the truth after {retries} retries")
            }
        }
        Expect::StopsUntouched => {
            run.assert_code(1);
            assert!(
                stderr.contains("JOBO_API_KEY")
                    || stderr.contains("SENTRION_API_KEY")
                    || stderr.contains("422"),
                "{}: {stderr}",
                case.what
            );
            assert!(
                lake.files().is_empty(),
                "{}: the lake was created",
                case.what
            );
            "stopped at once, exit 1, the message names what to fix; no lake created".to_string()
        }
        Expect::StopsThenResumes => {
            run.assert_code(1);
            assert!(stderr.contains("402"), "{stderr}");
            let committed = lake
                .count("SELECT count(*) FROM career_sites_history")
                .await
                + lake.count("SELECT count(*) FROM jobs_history").await;
            assert_eq!(
                committed, 80,
                "two paid pages of 20 per source are committed"
            );
            let status = lake.run(&["status", "--json"]).await;
            status.assert_code(0);
            let status: Value = serde_json::from_str(&status.stdout()).unwrap();
            for t in ["career_sites", "jobs"] {
                let s = status_of(&status, t);
                assert_eq!(s["last_status"], "failed", "{s}");
                assert_eq!(s["scan_in_progress"], true, "{s}");
            }
            sim.set_faults("").await;
            lake.refresh_ok(&[]).await;
            assert_views_match_truth(&lake, &sim).await;
            let log = sim.log().await;
            assert!(refetched(&log, "jobo").is_empty() && refetched(&log, "sentrion").is_empty());
            "stopped with the paid pages committed (exit 1, `status`: failed, scan in progress); \
             the next run resumed without paying a page twice"
                .to_string()
        }
    };
    assert_no_keys(&lake, &sim, &[run.stdout(), stderr.clone()]).await;
    format!(
        "| {} | `{}` | {injected} | {outcome} |\n",
        case.what, case.faults
    )
}

#[tokio::test]
async fn every_documented_fault_ends_in_a_state_the_views_and_status_describe() {
    let mut rows = String::new();
    for case in CASES {
        rows.push_str(&one(case).await);
    }
    reliability_section(
        "faults",
        &format!(
            "## API faults\n\n\
             Every fault of `shared/api/behaviour-notes.md`, injected by `joblake simulate \
             --faults` into a first refresh of both sources (200 rows per API, 20-row pages). \
             A spec without `api:` hits both APIs; `@N` is the N-th request to each. After \
             every case neither key is in the run's output or any byte of the lake.\n\n\
             | fault | injected as | requests hit | outcome |\n|---|---|---|---|\n{rows}"
        ),
    );
}

#[tokio::test]
async fn a_dead_cursor_on_every_continuation_never_loops() {
    let sim = Sim::start(&["--rows", "200", "--faults", "jobo:dead_cursor@2+"]).await;
    let mut lake = Lake::with_keys(&sim, Some(&sim.jobo_key), None);
    lake.set_config(CONFIG);
    let run = lake.run(&["--json", "refresh"]).await;
    run.assert_code(1);
    let summary: Value = serde_json::from_str(&run.stdout()).unwrap();
    let s = source(&summary, "career_sites");
    assert_eq!(s["status"], "failed");
    let restarts = s["restarts"].as_u64().unwrap();
    assert!((1..=2).contains(&restarts), "{s}");
    let requests = sim.requests("jobo").await.len();
    assert!(
        requests <= 2 + 2 * restarts as usize,
        "{requests} requests: it looped"
    );
    // What was fetched is committed and the run says why it stopped.
    assert_eq!(lake.count("SELECT count(*) FROM career_sites").await, 20);
    assert!(
        s["message"].as_str().unwrap().contains("Invalid cursor"),
        "{s}"
    );
    reliability_section(
        "dead-cursor-loop",
        &format!(
            "## A cursor that is always dead\n\n\
             `jobo:dead_cursor@2+`: every continuation answers 400 Invalid cursor. The scan \
             restarts from the watermark {} times, then stops with exit 1 after {requests} \
             requests in all: it never loops.\n",
            s["restarts"]
        ),
    );
}
