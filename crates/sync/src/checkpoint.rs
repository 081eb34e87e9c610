//! What a source remembers between runs, and the rule for what each page does to it.
//!
//! A checkpoint is committed with the data it covers (the writer keeps it, opaque, in the
//! table's state and in every staged page), so a crash resumes exactly where the last
//! committed page left off.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// A feed's checkpoint (career sites, jobs).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Start of the last scan that finished (career sites: the `updated_after` base).
    pub watermark: Option<DateTime<Utc>>,
    /// The scan under way, if one is; a crash resumes it at `cursor`.
    pub scan: Option<Scan>,
    /// A backfill under way, if one is: kept apart from the incremental scan, so either
    /// can be interrupted and resumed without disturbing the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
}

/// A backfill: a range walked in windows, newest first, each window one scan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backfill {
    /// The run that planned it.
    pub run_id: String,
    /// The range's start (inclusive).
    pub from: DateTime<Utc>,
    /// The range's end (exclusive).
    pub to: DateTime<Utc>,
    /// Windows left, newest first; the first is under way when `scan` is set.
    pub windows: Vec<Window>,
    /// Windows in the plan.
    pub planned: usize,
    /// The scan of the first window, once begun; a crash resumes it at its cursor.
    pub scan: Option<Scan>,
}

/// One window of a backfill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Rows the API said the window holds, where it says (Sentrion's `total_jobs_found`).
    pub expected_rows: Option<u64>,
}

/// One scan: its parameters are fixed when it starts, so a resume asks the same question.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scan {
    /// The run that started it.
    pub run_id: String,
    /// When it started: becomes the watermark once it finishes.
    pub started_at: DateTime<Utc>,
    /// Career sites: only rows updated after this.
    pub updated_after: Option<DateTime<Utc>>,
    /// Jobs: the publication window.
    pub published_after: Option<NaiveDate>,
    /// Jobs: the publication window's end (exclusive).
    pub published_before: Option<NaiveDate>,
    /// Career sites (backfill): first discovered at or after this.
    #[serde(default)]
    pub discovered_after: Option<DateTime<Utc>>,
    /// Career sites (backfill): first discovered before this.
    #[serde(default)]
    pub discovered_before: Option<DateTime<Utc>>,
    /// The cursor of the next page (None: the first page).
    pub cursor: Option<String>,
    /// Pages taken so far.
    pub pages: u64,
    /// Restarts after a dead cursor.
    pub restarts: u32,
    /// Whether the watermark this scan leaves is the server's time (career sites: the
    /// newest `updated_at` it saw) rather than this machine's at its start (jobs).
    #[serde(default)]
    pub server_clock: bool,
    /// The newest `updated_at` among the rows this scan fetched, when it is on the server's
    /// clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_updated: Option<DateTime<Utc>>,
}

impl Scan {
    /// A scan of everything, started at `now` by `run_id`, at its first page.
    pub fn starting(run_id: &str, now: DateTime<Utc>) -> Scan {
        Scan {
            run_id: run_id.to_string(),
            started_at: now,
            updated_after: None,
            published_after: None,
            published_before: None,
            discovered_after: None,
            discovered_before: None,
            cursor: None,
            pages: 0,
            restarts: 0,
            server_clock: false,
            newest_updated: None,
        }
    }

    /// The watermark this scan leaves once done, where the last one was `before`. On the
    /// server's clock: the newest `updated_at` it saw, so a machine whose clock is ahead never
    /// skips the changes in between, nor one behind asks for them again (no row seen: nothing
    /// learnt, the watermark stays). A server stamping rows far in the future is held to a
    /// day past this machine's clock. Otherwise: when the scan started.
    pub fn watermark(&self, before: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        if !self.server_clock {
            return Some(self.started_at);
        }
        match self.newest_updated {
            Some(newest) => Some(newest.min(self.started_at + chrono::Duration::days(1))),
            None => before,
        }
    }
}

/// The company profiles' checkpoint: the profiles Jobo did not have, and since when.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProfilesCheckpoint {
    /// Company ids whose profile answered 404, with the day it did.
    #[serde(default)]
    pub not_found: BTreeMap<String, NaiveDate>,
}

impl ProfilesCheckpoint {
    /// Forgets the 404s older than `cutoff` (they are asked again, as a profile that old
    /// would be); true when one was dropped.
    pub fn forget_before(&mut self, cutoff: NaiveDate) -> bool {
        let before = self.not_found.len();
        self.not_found.retain(|_, since| *since >= cutoff);
        self.not_found.len() != before
    }
}

/// What a run does with a feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Fetch what is new since the watermark, or finish the interrupted scan.
    Refresh {
        /// Ignore the watermark and scan everything again.
        full: bool,
        /// Jobs: first-run window start instead of the API's two-month default.
        since: Option<NaiveDate>,
    },
    /// Walk `[from, to)` in windows, newest first (or resume that walk).
    Backfill(crate::backfill::Range),
}

impl Task {
    /// The word the ledger and the summary use.
    pub fn command(&self) -> &'static str {
        match self {
            Task::Refresh { .. } => "refresh",
            Task::Backfill(_) => "backfill",
        }
    }

    /// The rule: the checkpoint once `scan` has taken one more page (`done`: its last).
    /// A refresh's finished scan becomes the watermark; a backfill's finished scan takes its
    /// window off the plan, and the plan goes once no window is left.
    pub fn record(&self, checkpoint: &mut Checkpoint, scan: &Scan, done: bool) {
        match self {
            Task::Refresh { .. } => {
                if done {
                    checkpoint.watermark = scan.watermark(checkpoint.watermark);
                    checkpoint.scan = None;
                } else {
                    checkpoint.scan = Some(scan.clone());
                }
            }
            Task::Backfill(_) => {
                let Some(bf) = checkpoint.backfill.as_mut() else {
                    return;
                };
                if done {
                    bf.windows.remove(0);
                    bf.scan = None;
                    if bf.windows.is_empty() {
                        checkpoint.backfill = None;
                    }
                } else {
                    bf.scan = Some(scan.clone());
                }
            }
        }
    }

    /// The window whose scan follows a finished one, if the task goes on.
    pub fn next_window<'a>(&self, checkpoint: &'a Checkpoint) -> Option<&'a Window> {
        match self {
            Task::Refresh { .. } => None,
            Task::Backfill(_) => checkpoint.backfill.as_ref()?.windows.first(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn scan(cursor: Option<&str>) -> Scan {
        Scan {
            cursor: cursor.map(str::to_string),
            pages: 1,
            ..Scan::starting("r1", t("2026-11-28T10:00:00Z"))
        }
    }

    fn window(from: &str, to: &str) -> Window {
        Window {
            from: t(from),
            to: t(to),
            expected_rows: None,
        }
    }

    #[test]
    fn a_refresh_page_keeps_the_scan_and_its_last_page_moves_the_watermark() {
        let task = Task::Refresh {
            full: false,
            since: None,
        };
        let mut cp = Checkpoint {
            watermark: Some(t("2026-11-27T10:00:00Z")),
            ..Default::default()
        };
        task.record(&mut cp, &scan(Some("c2")), false);
        assert_eq!(cp.scan.as_ref().unwrap().cursor.as_deref(), Some("c2"));
        assert_eq!(
            cp.watermark,
            Some(t("2026-11-27T10:00:00Z")),
            "the watermark moves only once the scan is done"
        );
        task.record(&mut cp, &scan(None), true);
        assert_eq!(cp.scan, None);
        assert_eq!(
            cp.watermark,
            Some(t("2026-11-28T10:00:00Z")),
            "the scan's start, not its end: rows updated while it ran come again"
        );
        assert_eq!(task.next_window(&cp), None);
    }

    #[test]
    fn a_career_sites_watermark_is_the_servers_newest_update() {
        let task = Task::Refresh {
            full: false,
            since: None,
        };
        let before = Some(t("2026-11-27T10:00:00Z"));
        let on_server = |newest: Option<&str>, started: &str| Scan {
            server_clock: true,
            newest_updated: newest.map(t),
            ..Scan::starting("r1", t(started))
        };
        let mut cp = Checkpoint {
            watermark: before,
            ..Default::default()
        };
        // This machine's clock three hours ahead of the server's: the server's time.
        task.record(
            &mut cp,
            &on_server(Some("2026-11-28T10:00:00Z"), "2026-11-28T13:00:00Z"),
            true,
        );
        assert_eq!(cp.watermark, Some(t("2026-11-28T10:00:00Z")));
        // Three hours behind: still the server's, nothing asked for twice.
        cp.watermark = before;
        task.record(
            &mut cp,
            &on_server(Some("2026-11-28T10:00:00Z"), "2026-11-28T07:00:00Z"),
            true,
        );
        assert_eq!(cp.watermark, Some(t("2026-11-28T10:00:00Z")));
        // No row seen: the watermark stays.
        cp.watermark = before;
        task.record(&mut cp, &on_server(None, "2026-11-28T13:00:00Z"), true);
        assert_eq!(cp.watermark, before);
        // A row stamped in 2999: a day past this machine's clock at most.
        task.record(
            &mut cp,
            &on_server(Some("2999-01-01T00:00:00Z"), "2026-11-28T10:00:00Z"),
            true,
        );
        assert_eq!(cp.watermark, Some(t("2026-11-29T10:00:00Z")));
        // A scan from before (no server clock): its start, as always.
        let old: Scan = serde_json::from_value(serde_json::json!({
            "run_id": "r0", "started_at": "2026-11-28T09:00:00Z", "updated_after": null,
            "published_after": null, "published_before": null, "cursor": "c", "pages": 3,
            "restarts": 0
        }))
        .unwrap();
        task.record(&mut cp, &old, true);
        assert_eq!(cp.watermark, Some(t("2026-11-28T09:00:00Z")));
    }

    #[test]
    fn a_backfill_page_leaves_the_incremental_scan_alone() {
        let task = Task::Backfill(crate::backfill::Range {
            from: t("2026-01-01T00:00:00Z"),
            to: t("2026-03-01T00:00:00Z"),
        });
        let mut cp = Checkpoint {
            watermark: Some(t("2026-11-27T10:00:00Z")),
            scan: Some(scan(Some("refresh-cursor"))),
            backfill: Some(Backfill {
                run_id: "r0".into(),
                from: t("2026-01-01T00:00:00Z"),
                to: t("2026-03-01T00:00:00Z"),
                windows: vec![
                    window("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"),
                    window("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
                ],
                planned: 2,
                scan: None,
            }),
        };
        let refresh_scan = cp.scan.clone();
        task.record(&mut cp, &scan(Some("b2")), false);
        let bf = cp.backfill.as_ref().unwrap();
        assert_eq!(bf.scan.as_ref().unwrap().cursor.as_deref(), Some("b2"));
        assert_eq!(bf.windows.len(), 2);
        assert_eq!(cp.scan, refresh_scan);

        task.record(&mut cp, &scan(None), true);
        let bf = cp.backfill.as_ref().unwrap();
        assert_eq!(bf.scan, None);
        assert_eq!(bf.windows.len(), 1, "the finished window is off the plan");
        assert_eq!(
            task.next_window(&cp).unwrap().from,
            t("2026-01-01T00:00:00Z")
        );

        task.record(&mut cp, &scan(None), true);
        assert_eq!(cp.backfill, None, "the plan goes with its last window");
        assert_eq!(task.next_window(&cp), None);
        assert_eq!(cp.watermark, Some(t("2026-11-27T10:00:00Z")));
        assert_eq!(cp.scan, refresh_scan);
    }

    #[test]
    fn old_404s_are_forgotten_and_asked_again() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let mut cp = ProfilesCheckpoint::default();
        cp.not_found.insert("old".into(), d("2026-10-01"));
        cp.not_found.insert("new".into(), d("2026-11-20"));
        assert!(cp.forget_before(d("2026-10-29")));
        assert_eq!(cp.not_found.keys().collect::<Vec<_>>(), ["new"]);
        assert!(!cp.forget_before(d("2026-10-29")));
    }

    #[test]
    fn a_checkpoint_written_before_backfills_existed_still_reads() {
        let v = serde_json::json!({
            "watermark": "2026-11-27T10:00:00Z",
            "scan": null,
        });
        let cp: Checkpoint = serde_json::from_value(v).unwrap();
        assert_eq!(cp.backfill, None);
        assert_eq!(cp.watermark, Some(t("2026-11-27T10:00:00Z")));
    }
}
