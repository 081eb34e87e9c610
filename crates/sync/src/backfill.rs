//! A backfill's plan: a long range walked in windows, newest first, each window one scan
//! checkpointed like any other, all under the source's one request budget.
//!
//! Sentrion says how many jobs a search matches (`total_jobs_found`), so a window too deep
//! to page through reliably (a dead cursor restarts the window) is halved until each holds
//! at most `backfill_window_rows`, and windows with nothing in them are dropped. Jobo's feed
//! reports no totals, so its windows are fixed spans of discovery time.

use anyhow::{Result, bail};
use chrono::{DateTime, Days, Months, NaiveDate, TimeZone, Utc};
use joblake_fetcher::Api;

use crate::checkpoint::{Backfill, Checkpoint, Window};
use crate::source::Source;

/// The span of a first-cut window.
const WINDOW_DAYS: u64 = 30;

/// How far back Sentrion searches.
const SENTRION_HISTORY_MONTHS: u32 = 72;

/// The range a backfill walks.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

impl Range {
    /// Jobs published from `since` through `until` (both inclusive; `until` defaults to
    /// today), checked against Sentrion's six years of history.
    pub fn jobs(since: NaiveDate, until: Option<NaiveDate>, today: NaiveDate) -> Result<Range> {
        let oldest = today
            .checked_sub_months(Months::new(SENTRION_HISTORY_MONTHS))
            .unwrap_or(today);
        if since < oldest {
            bail!(
                "--since {since} is older than the six years Sentrion searches; the earliest \
                 date it takes today is {oldest}"
            );
        }
        if since > today {
            bail!("--since {since} is in the future (today is {today}): no job is published yet");
        }
        let until = until.unwrap_or(today);
        if until > today {
            bail!(
                "--until {until} is in the future (today is {today}): leave it out to backfill \
                 through today"
            );
        }
        if until < since {
            bail!("--until {until} is before --since {since}");
        }
        Ok(Range {
            from: midnight(since),
            to: midnight(until + Days::new(1)),
        })
    }

    /// Career sites first discovered in `[after, before)` (`before` defaults to now).
    pub fn career_sites(
        after: DateTime<Utc>,
        before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Range> {
        // A day's grace, for a date written in a time zone ahead of UTC; never past now.
        if let Some(b) = before
            && b > now + chrono::Duration::days(1)
        {
            bail!(
                "--discovered-before {b} is in the future (it is {now} now); leave it out to \
                 backfill up to now"
            );
        }
        if after >= now {
            bail!(
                "--discovered-after {after} is not in the past (it is {now} now): nothing has \
                 been discovered since"
            );
        }
        let before = before.map_or(now, |b| b.min(now));
        if before <= after {
            bail!("--discovered-before {before} is not after --discovered-after {after}");
        }
        Ok(Range {
            from: after,
            to: before,
        })
    }
}

/// A date or an RFC 3339 timestamp (UTC midnight for a date).
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = s.parse::<NaiveDate>() {
        return Ok(midnight(d));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 timestamp"))
}

/// Continues the backfill of `range` that `checkpoint` holds, or plans a new one (asking the
/// API for its totals) and puts it in `checkpoint`; says which (the plan itself, when new) to
/// `notice`. Returns whether a new plan was made, which the
/// caller commits before the first page.
pub async fn resume_or_plan(
    source: &Source,
    range: &Range,
    checkpoint: &mut Checkpoint,
    run_id: &str,
    notice: fn(&str),
) -> Result<bool> {
    if let Some(bf) = &checkpoint.backfill {
        if bf.from == range.from && bf.to == range.to {
            notice(&format!(
                "{}: resuming the backfill {}: {} of {} windows left\n",
                source.table,
                span(bf.from, bf.to),
                bf.windows.len(),
                bf.planned
            ));
            return Ok(false);
        }
        tracing::warn!(
            source = %source.table,
            "dropping the unfinished backfill {} ({} windows left) for the new range",
            span(bf.from, bf.to),
            bf.windows.len()
        );
    }
    let plan = plan(source, range, run_id).await?;
    notice(&describe(source, &plan));
    checkpoint.backfill = (!plan.windows.is_empty()).then_some(plan);
    Ok(true)
}

/// The windows of `range`, newest first, split until each is shallow enough.
pub async fn plan(source: &Source, range: &Range, run_id: &str) -> Result<Backfill> {
    let max_rows = source.backfill_window_rows();
    let days = |n: u64| chrono::Duration::days(n as i64);
    // First cut: fixed spans from the newest end back.
    let mut todo = Vec::new();
    let mut to = range.to;
    while to > range.from {
        let from = (to - days(WINDOW_DAYS)).max(range.from);
        todo.push(Window {
            from,
            to,
            expected_rows: None,
        });
        to = from;
    }
    todo.reverse(); // a stack: the newest window on top
    let mut windows = Vec::new();
    while let Some(mut w) = todo.pop() {
        let count = source
            .count(&source.window_scan(&w, run_id))
            .await
            .map_err(anyhow::Error::new)?;
        w.expected_rows = count;
        let span_days = (w.to - w.from).num_days();
        match count {
            Some(0) => {}
            Some(n) if n > max_rows && span_days >= 2 && source.api == Api::Sentrion => {
                let mid = w.from + days((span_days / 2) as u64);
                let older = Window {
                    from: w.from,
                    to: mid,
                    expected_rows: None,
                };
                let newer = Window {
                    from: mid,
                    to: w.to,
                    expected_rows: None,
                };
                todo.push(older);
                todo.push(newer);
            }
            _ => windows.push(w),
        }
    }
    Ok(Backfill {
        run_id: run_id.to_string(),
        from: range.from,
        to: range.to,
        planned: windows.len(),
        windows,
        scan: None,
    })
}

/// The plan as the user sees it before the first page: windows, rows, pages, credits, time.
pub fn describe(source: &Source, plan: &Backfill) -> String {
    let mut out = format!(
        "{}: backfill plan for {}: {} windows, newest first\n",
        source.table,
        span(plan.from, plan.to),
        plan.windows.len()
    );
    let page = u64::from(source.page_size());
    let mut rows = 0;
    let mut known = true;
    for w in &plan.windows {
        let what = match w.expected_rows {
            Some(n) => {
                rows += n;
                format!("{n:>9} rows {:>6} pages", n.div_ceil(page))
            }
            None => {
                known = false;
                format!("{:>9} rows {:>6} pages", "?", "?")
            }
        };
        out.push_str(&format!("  {}  {what}\n", span(w.from, w.to)));
    }
    if known {
        let pages = plan
            .windows
            .iter()
            .map(|w| w.expected_rows.unwrap_or(0).div_ceil(page))
            .sum::<u64>();
        let minutes = source
            .requests_per_minute()
            .map(|rpm| {
                format!(
                    ", about {:.0} min at {rpm} requests/min",
                    pages as f64 / rpm
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  total {rows} rows in {pages} pages{minutes}; at most {rows} credits \
             (Sentrion charges only jobs new in the billing cycle)\n"
        ));
    } else {
        out.push_str(
            "  Jobo's feed reports no totals, so rows and credits cannot be known ahead \
             (each row returned is charged)\n",
        );
    }
    out
}

fn span(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    if from.time() == chrono::NaiveTime::MIN && to.time() == chrono::NaiveTime::MIN {
        format!("{} .. {}", day(from), day(to - chrono::Duration::days(1)))
    } else {
        format!("{} .. {} (exclusive)", from.to_rfc3339(), to.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_jobs_range_is_inclusive_and_kept_within_six_years() {
        let today = d("2026-11-26");
        let r = Range::jobs(d("2026-01-01"), Some(d("2026-01-31")), today).unwrap();
        assert_eq!(r.from, midnight(d("2026-01-01")));
        assert_eq!(r.to, midnight(d("2026-02-01")));
        let r = Range::jobs(d("2020-11-26"), None, today).unwrap();
        assert_eq!(r.to, midnight(d("2026-11-27")), "until defaults to today");
        let err = Range::jobs(d("2020-11-25"), None, today).unwrap_err();
        assert!(err.to_string().contains("2020-11-26"), "{err}");
        assert!(Range::jobs(d("2026-02-01"), Some(d("2026-01-01")), today).is_err());
        // Nothing is published in the future.
        let err = Range::jobs(d("2026-11-01"), Some(d("2026-12-01")), today).unwrap_err();
        assert!(
            err.to_string()
                .contains("--until 2026-12-01 is in the future"),
            "{err}"
        );
        let err = Range::jobs(d("2027-01-01"), None, today).unwrap_err();
        assert!(
            err.to_string()
                .contains("--since 2027-01-01 is in the future"),
            "{err}"
        );
    }

    #[test]
    fn a_career_sites_range_ends_by_now() {
        let now = parse_instant("2026-11-26T10:00:00Z").unwrap();
        let at = |s: &str| parse_instant(s).unwrap();
        // 2999 would plan thousands of empty windows.
        let err = Range::career_sites(at("2026-01-01"), Some(at("2999-01-01")), now).unwrap_err();
        assert!(
            err.to_string().contains("--discovered-before 2999-01-01"),
            "{err}"
        );
        let err = Range::career_sites(at("2026-12-01"), None, now).unwrap_err();
        assert!(
            err.to_string().contains("--discovered-after 2026-12-01"),
            "{err}"
        );
        // Tomorrow's date (a day ahead in some time zone) means now.
        let r = Range::career_sites(at("2026-11-01"), Some(at("2026-11-27")), now).unwrap();
        assert_eq!(r.to, now);
    }

    #[test]
    fn instants_take_dates_or_timestamps() {
        assert_eq!(
            parse_instant("2026-03-01").unwrap(),
            midnight(d("2026-03-01"))
        );
        assert_eq!(
            parse_instant("2026-03-01T12:00:00+01:00").unwrap(),
            "2026-03-01T11:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_instant("March").is_err());
    }
}
